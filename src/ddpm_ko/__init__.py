"""ddpm_ko — 한국어로 풀어 쓴 DDPM 교과서가 import 하는 작은 PyTorch 패키지.

>>> from ddpm_ko import Unet, UnetConfig, GaussianDiffusion, beta_schedule
>>> diffusion = GaussianDiffusion(beta_schedule("linear", 1000))
>>> model = Unet(UnetConfig())
"""

__version__ = "0.1.0"

from .checkpoint import load_model_from_checkpoint, read_checkpoint, save_checkpoint
from .data import load_fashion_mnist
from .diffusion import GaussianDiffusion
from .ema import EMA
from .errors import CheckpointError, DdpmKoError, TrainingDivergedError
from .pretrained import load_pretrained
from .schedules import beta_schedule
from .train import TrainConfig, train
from .unet import Unet, UnetConfig
from .viz import save_gif, save_grid, use_korean_font

__all__ = [
    "__version__",
    "GaussianDiffusion",
    "beta_schedule",
    "Unet",
    "UnetConfig",
    "EMA",
    "TrainConfig",
    "train",
    "load_fashion_mnist",
    "load_pretrained",
    "load_model_from_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "save_grid",
    "save_gif",
    "use_korean_font",
    "DdpmKoError",
    "CheckpointError",
    "TrainingDivergedError",
]
