"""어텐션 검사 (``ddpm_ko.attention``): 모양, 토큰 순서 등가성, 식 그대로 계산한 값과의 비교."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_ko.attention import Attention, LinearAttention

# float32 에서 같은 식을 다른 순서로 계산한 두 값의 차이: 1×1 합성곱과 행렬 곱 몇 번(각각 ≈1e-7 상대 오차, 길이 ≤ 32 의
# 합), 출력 크기는 1 안팎이다. 1e-5 는 그 반올림보다 백 배 넉넉하고, 헤드를 잘못 나누는 실수(차이가 0.1 크기)는 잡는다.
ATOL = 1e-5


@pytest.mark.parametrize("cls", [Attention, LinearAttention])
def test_attention_shape_and_token_permutation_equivariance(cls):
    torch.manual_seed(0)
    attn = cls(8, heads=2, dim_head=4).eval()
    x = torch.randn(2, 8, 4, 4)
    out = attn(x)
    assert out.shape == x.shape
    # 셀프 어텐션은 위치 인코딩이 없으므로 토큰 순서를 섞으면 출력도 똑같이 섞인다
    perm = torch.randperm(16)
    xp = x.flatten(2)[:, :, perm].reshape(2, 8, 4, 4)
    assert torch.allclose(attn(xp).flatten(2), out.flatten(2)[:, :, perm], atol=ATOL)


def test_full_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    attn = Attention(6, heads=2, dim_head=3)
    x = torch.randn(1, 6, 3, 3)
    q, k, v = attn.to_qkv(x).chunk(3, dim=1)
    q, k, v = (y.reshape(1, 2, 3, 9).transpose(-1, -2) for y in (q, k, v))  # (B, heads, N, d)
    w = (q @ k.transpose(-1, -2) / math.sqrt(3)).softmax(-1)
    out = (w @ v).transpose(-1, -2).reshape(1, 6, 3, 3)
    assert torch.allclose(attn(x), attn.to_out(out), atol=ATOL)


def test_linear_attention_matches_quadratic_form():
    """효율적 어텐션(Shen et al., 2021) 을 N×N 가중치 행렬로 풀어 쓴 것과 같은지.

    q̂ = softmax_특징(q)·scale, k̂ = softmax_토큰(k) 이면 A[n, m] = Σ_d q̂[d, n] k̂[d, m],
    출력 n = Σ_m A[n, m] v_m. 가중치는 음수가 아니고 각 행의 합이 scale 이다.
    """
    torch.manual_seed(0)
    heads, dh = 2, 3
    attn = LinearAttention(6, heads=heads, dim_head=dh)
    x = torch.randn(1, 6, 3, 3)
    q, k, v = (y.reshape(1, heads, dh, 9) for y in attn.to_qkv(x).chunk(3, dim=1))  # (B, heads, d, N)
    q_hat = q.softmax(dim=2) * dh**-0.5
    k_hat = k.softmax(dim=3)
    A = torch.einsum("bhdn,bhdm->bhnm", q_hat, k_hat)
    assert bool((A >= 0).all())
    assert torch.allclose(A.sum(-1), torch.full((1, heads, 9), dh**-0.5), atol=1e-6)  # 9 개 합의 float32 반올림
    out = torch.einsum("bhnm,bhem->bhen", A, v).reshape(1, heads * dh, 3, 3)
    assert torch.allclose(attn(x), attn.to_out(out), atol=ATOL)
