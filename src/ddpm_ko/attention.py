"""어텐션(attention) 모듈: 소프트맥스 셀프 어텐션과 선형 어텐션.

둘 다 ``(B, C, H, W)`` 특징 지도를 받아 H·W 개의 위치를 토큰으로 본다.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Attention", "LinearAttention"]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, heads·d, H, W) → (B, heads, d, N)."""
    b, c, h, w = x.shape
    return x.reshape(b, heads, c // heads, h * w)


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
        b, _, h, w = x.shape
        q, k, v = (_split_heads(y, self.heads).transpose(-1, -2) for y in self.to_qkv(x).chunk(3, dim=1))
        out = F.scaled_dot_product_attention(q, k, v)          # (B, heads, N, d)
        out = out.transpose(-1, -2).reshape(b, -1, h, w)
        return self.to_out(out)


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
        b, _, h, w = x.shape
        q, k, v = (_split_heads(y, self.heads) for y in self.to_qkv(x).chunk(3, dim=1))  # (B, heads, d, N)
        q = q.softmax(dim=-2) * self.scale      # 각 토큰의 질의를 특징 축으로 정규화
        k = k.softmax(dim=-1)                   # 각 특징의 키를 토큰 축으로 정규화
        context = torch.einsum("bhdn,bhen->bhde", k, v)       # Kᵀ V: (d × d), N 에 무관한 크기
        out = torch.einsum("bhde,bhdn->bhen", context, q)      # 각 토큰: contextᵀ q
        return self.to_out(out.reshape(b, -1, h, w))
