"""어텐션(attention) 모듈: 소프트맥스 셀프 어텐션과 선형 어텐션 (5장).

둘 다 ``(B, C, H, W)`` 특징 지도를 받아 H·W 개의 위치를 토큰으로 본다. 채널을 헤드로 나누고 위치를 토큰으로
펴는 모양 바꾸기는 einops 의 ``rearrange`` 패턴으로 쓴다: ``"b (h d) x y -> b h (x y) d"`` 는 "채널 축을
(헤드 h, 헤드당 차원 d) 로 나누고 두 공간 축 (x, y) 를 토큰 축 하나로 편다" 를 그대로 읽은 것이다.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["Attention", "LinearAttention"]


class Attention(nn.Module):
    """다중 헤드 소프트맥스 셀프 어텐션: softmax(QKᵀ/√d) V.

    계산은 ``F.scaled_dot_product_attention`` 에 맡긴다 (가능하면 메모리 효율 커널을 쓴다).
    시간·메모리가 토큰 수 N = H·W 의 제곱에 비례하므로 해상도가 가장 낮은 곳에만 둔다.
    """

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__()
        self.heads = heads
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (rearrange(y, "b (h d) x y -> b h (x y) d", h=self.heads) for y in self.to_qkv(x).chunk(3, dim=1))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(QKᵀ/√d) V (식 ch5-eq-attention): (B, heads, N, d)
        return self.to_out(rearrange(out, "b h (x y) d -> b (h d) x y", x=x.shape[-2]))


class LinearAttention(nn.Module):
    """선형 어텐션 (Shen et al., 2021 의 efficient attention).

    Q 는 특징 축으로, K 는 토큰 축으로 따로 소프트맥스한 뒤 결합 법칙으로
    (Q Kᵀ) V 대신 Q (Kᵀ V) 를 계산한다. Kᵀ V 는 d×d 행렬이라 비용이 N 에 선형이다.
    """

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden, dim, 1), nn.GroupNorm(1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (rearrange(y, "b (h d) x y -> b h d (x y)", h=self.heads) for y in self.to_qkv(x).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale  # ρ_q: 각 토큰의 질의를 특징 축으로 정규화
        k = k.softmax(dim=-1)  # ρ_k: 각 특징의 키를 토큰 축으로 정규화
        # ρ_q(Q) (ρ_k(K)ᵀ V)  (식 ch5-eq-efficient, 결합 법칙 식 ch5-eq-assoc)
        context = torch.einsum("bhdn,bhen->bhde", k, v)  # Kᵀ V: (d × d), N 에 무관한 크기
        out = torch.einsum("bhde,bhdn->bhen", context, q)  # 각 토큰: contextᵀ q
        return self.to_out(rearrange(out, "b h d (x y) -> b (h d) x y", x=x.shape[-2]))
