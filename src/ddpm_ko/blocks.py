"""합성곱 블록: 시간 임베딩을 받는 ResNet 블록과 ConvNeXt 블록.

두 블록은 시간 임베딩을 넣는 방식이 다르다.
- ResNet 블록: 첫 합성곱 → GroupNorm 뒤에서 임베딩으로 만든 (scale, shift) 로
  h ← h·(1 + scale) + shift 를 한다 (FiLM 방식). 그다음 SiLU.
- ConvNeXt 블록: 깊이별(depthwise) 7×7 합성곱 출력에 임베딩을 선형 사상해 **더한다**.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import group_count

__all__ = ["WeightStandardizedConv2d", "ConvBlock", "ResnetBlock", "ConvNextBlock"]


class WeightStandardizedConv2d(nn.Conv2d):
    """가중치 표준화(weight standardization) 합성곱 (Qiao et al., 2019).

    출력 채널마다 가중치를 평균 0, 분산 1 로 맞춘 뒤 합성곱한다: ŵ = (w − mean) / √(var + ε)  (식 ch6-eq-ws).
    Annotated Diffusion 의 예전 코드는 ``(w − mean) * rsqrt(var)`` 대신 std 를 곱하는 실수가
    있었다. 여기서는 표준편차로 **나눈다**.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (w - mean) * torch.rsqrt(var + eps)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvBlock(nn.Module):
    """3×3 합성곱 → GroupNorm → (scale/shift) → SiLU."""

    def __init__(self, dim: int, dim_out: int, groups: int = 8, weight_standardization: bool = True) -> None:
        super().__init__()
        conv = WeightStandardizedConv2d if weight_standardization else nn.Conv2d
        self.proj = conv(dim, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(group_count(dim_out, groups), dim_out)  # 식 ch6-eq-groupnorm
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.norm(self.proj(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift  # FiLM: h(1 + s) + o (식 ch4-eq-film)
        return self.act(x)


class ResnetBlock(nn.Module):
    """시간 임베딩을 받는 ResNet 블록: ConvBlock(scale/shift) → ConvBlock, 그리고 잔차 연결."""

    def __init__(
        self, dim: int, dim_out: int, time_dim: int | None = None, groups: int = 8, weight_standardization: bool = True
    ) -> None:
        super().__init__()
        # 시간 임베딩 → SiLU → Linear 로 채널마다 (scale, shift) 두 값을 만든다
        self.time_mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, dim_out * 2)) if time_dim else None
        self.block1 = ConvBlock(dim, dim_out, groups, weight_standardization)
        self.block2 = ConvBlock(dim_out, dim_out, groups, weight_standardization)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        scale_shift = None
        if self.time_mlp is not None:
            if time_emb is None:
                raise ValueError("이 블록은 시간 임베딩이 필요하다 / this block needs a time embedding")
            emb = self.time_mlp(time_emb)[:, :, None, None]
            scale_shift = tuple(emb.chunk(2, dim=1))
        h = self.block1(x, scale_shift)
        h = self.block2(h)
        return h + self.res_conv(x)


class ConvNextBlock(nn.Module):
    """시간 임베딩을 받는 ConvNeXt 블록 (Liu et al., 2022 를 Annotated Diffusion 이 줄인 형태).

    깊이별 7×7 합성곱 → (+ 시간 임베딩) → GroupNorm(1) → 3×3 합성곱(채널 ×mult) → GELU
    → GroupNorm(1) → 3×3 합성곱, 그리고 잔차 연결.
    """

    def __init__(self, dim: int, dim_out: int, time_dim: int | None = None, mult: int = 2, norm: bool = True) -> None:
        super().__init__()
        self.time_mlp = nn.Sequential(nn.GELU(), nn.Linear(time_dim, dim)) if time_dim else None
        self.ds_conv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        hidden = dim_out * mult
        self.net = nn.Sequential(
            nn.GroupNorm(1, dim) if norm else nn.Identity(),
            nn.Conv2d(dim, hidden, 3, padding=1),
            nn.GELU(),
            nn.GroupNorm(1, hidden),
            nn.Conv2d(hidden, dim_out, 3, padding=1),
        )
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ds_conv(x)
        if self.time_mlp is not None:
            if time_emb is None:
                raise ValueError("이 블록은 시간 임베딩이 필요하다 / this block needs a time embedding")
            h = h + self.time_mlp(time_emb)[:, :, None, None]  # 채널마다 같은 값을 더한다 (식 ch4-eq-convnext-add)
        h = self.net(h)
        return h + self.res_conv(x)
