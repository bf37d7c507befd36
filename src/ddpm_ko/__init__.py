"""ddpm_ko — 한국어로 풀어 쓴 DDPM 교과서가 import 하는 작은 PyTorch 패키지."""

__version__ = "0.1.0"

from .viz import use_korean_font  # noqa: E402

__all__ = ["__version__", "use_korean_font"]
