"""시간 임베딩 검사 (``ddpm_ko.embeddings``): 사인파 임베딩 e(t) 와 TimeMLP."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_ko.embeddings import TimeMLP, sinusoidal_embedding


def test_sinusoidal_embedding():
    t = torch.tensor([0, 1, 10, 999])
    e = sinusoidal_embedding(t, 16)
    assert e.shape == (4, 16)
    assert torch.allclose(e[0], torch.cat([torch.zeros(8), torch.ones(8)]))  # t = 0: sin 0, cos 0
    assert torch.allclose(
        e[:, :8] ** 2 + e[:, 8:] ** 2, torch.ones(4, 8), atol=1e-5
    )  # sin²+cos² 를 float32 로: 몇 ulp(≈1e-7)
    # 첫 주파수는 1, 마지막은 1/10000
    assert float(e[1, 0]) == pytest.approx(math.sin(1.0), abs=1e-6)
    assert float(e[3, 7]) == pytest.approx(math.sin(999 / 10000), abs=1e-5)
    assert len({tuple(row.tolist()) for row in e}) == 4  # 서로 다른 t → 서로 다른 벡터
    with pytest.raises(ValueError, match="even"):
        sinusoidal_embedding(t, 7)
    assert TimeMLP(16, 64)(t).shape == (4, 64)
