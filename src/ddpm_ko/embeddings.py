"""시간 임베딩(time embedding): 정수 타임스텝 t 를 신경망이 쓸 수 있는 벡터로 바꾼다.

Transformer 의 사인파 위치 인코딩(sinusoidal positional encoding)을 그대로 쓴다. 여기서
'위치'는 문장 속 단어의 자리가 아니라 확산 과정의 타임스텝 t 다. 이미지에 더하는 노이즈와는
아무 관계가 없다: 노이즈는 x_t 를 만들 때 쓰고, 이 임베딩은 "지금이 몇 번째 타임스텝인지"를
신경망에 알려 줄 뿐이다.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SinusoidalTimeEmbedding", "sinusoidal_embedding", "TimeMLP"]


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """타임스텝 ``t`` (B,) 를 ``(B, dim)`` 사인파 임베딩으로 바꾼다.

    앞 절반은 sin(t·ω_i), 뒤 절반은 cos(t·ω_i) 이고 ω_i = max_period^(−i/(dim/2 − 1)) 이다 (식 ch4-eq-emb, ch4-eq-freq).
    """
    if dim < 4 or dim % 2:
        raise ValueError(f"임베딩 차원은 4 이상의 짝수여야 한다 / embedding dim must be even and >= 4, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1))
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class SinusoidalTimeEmbedding(nn.Module):
    """``sinusoidal_embedding`` 을 모듈로 감싼 것 (학습하는 매개변수는 없다)."""

    def __init__(self, dim: int, max_period: float = 10000.0) -> None:
        super().__init__()
        self.dim = dim
        self.max_period = max_period

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return sinusoidal_embedding(t, self.dim, self.max_period)


class TimeMLP(nn.Sequential):
    """사인파 임베딩 → Linear → GELU → Linear: c(t) = W₂ GELU(W₁ e(t) + b₁) + b₂ (식 ch4-eq-timemlp).

    U-Net 의 모든 블록이 이 출력을 받는다.
    """

    def __init__(self, dim: int, time_dim: int) -> None:
        super().__init__(
            SinusoidalTimeEmbedding(dim), nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # 사인파 임베딩은 float32 로 계산한다. 모델을 .double() 이나 .half() 로 바꿨으면 그 dtype 으로 맞춘다
        emb = self[0](t).to(self[1].weight.dtype)
        for layer in list(self)[1:]:
            emb = layer(emb)
        return emb
