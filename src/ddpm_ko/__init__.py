"""ddpm_ko — 한국어로 풀어 쓴 DDPM 교과서가 import 하는 작은 PyTorch 패키지.

>>> from ddpm_ko import Unet, UnetConfig, GaussianDiffusion, beta_schedule
>>> diffusion = GaussianDiffusion(beta_schedule("linear", 1000))
>>> model = Unet(UnetConfig())
"""

__version__ = "0.1.0"

from .checkpoint import load_model_from_checkpoint, read_checkpoint, save_checkpoint  # noqa: E402
from .data import load_fashion_mnist  # noqa: E402
from .diffusion import GaussianDiffusion  # noqa: E402
from .ema import EMA  # noqa: E402
from .errors import CheckpointError, DdpmKoError, TrainingDivergedError  # noqa: E402
from .pretrained import load_pretrained  # noqa: E402
from .schedules import beta_schedule  # noqa: E402
from .train import TrainConfig, train  # noqa: E402
from .unet import Unet, UnetConfig  # noqa: E402
from .viz import save_gif, save_grid, use_korean_font  # noqa: E402

__all__ = [
    "__version__", "GaussianDiffusion", "beta_schedule", "Unet", "UnetConfig", "EMA", "TrainConfig", "train",
    "load_fashion_mnist", "load_pretrained", "load_model_from_checkpoint", "read_checkpoint", "save_checkpoint",
    "save_grid", "save_gif", "use_korean_font", "DdpmKoError", "CheckpointError", "TrainingDivergedError",
]
