"""U-Net 을 이루는 작은 층들: 잔차(residual)·프리놈(pre-norm) 감싸개, 다운/업샘플링."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Residual", "PreNorm", "Downsample", "Upsample", "group_count"]


def group_count(channels: int, preferred: int = 8) -> int:
    """``GroupNorm`` 의 그룹 수: ``preferred`` 이하이면서 ``channels`` 를 나누는 가장 큰 수.

    Annotated Diffusion 노트북은 ``GroupNorm(8, 28)`` 을 만들다 dim=28 에서 멈췄다
    (28 은 8 로 나누어지지 않는다). 여기서는 28 이면 7 그룹을 쓴다.
    """
    if channels < 1 or preferred < 1:
        raise ValueError("channels 와 groups 는 1 이상 / channels and groups must be >= 1")
    for g in range(min(preferred, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


class Residual(nn.Module):
    """잔차 연결: ``fn(x) + x``."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.fn(x, *args, **kwargs) + x


class PreNorm(nn.Module):
    """프리놈: ``fn`` 앞에 GroupNorm(1, dim) (채널 전체에 대한 LayerNorm 과 같다) 을 둔다. ``Residual`` 과 함께 식 ch6-eq-prenorm."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Downsample(nn.Module):
    """해상도를 절반으로: 2×2 픽셀을 채널로 옮긴 뒤(픽셀 언셔플) 1×1 합성곱으로 채널 수를 맞춘다.

    stride 2 합성곱과 달리 정보를 버리지 않는다.
    """

    def __init__(self, dim: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim * 4, dim_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(
                f"Downsample 은 짝수 크기만 받는다 / Downsample needs even H and W, got {tuple(x.shape[-2:])}"
            )
        return self.proj(F.pixel_unshuffle(x, 2))


class Upsample(nn.Module):
    """해상도를 두 배로: 최근접 보간 후 3×3 합성곱."""

    def __init__(self, dim: int, dim_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
