"""작은 층 검사 (``ddpm_ko.layers``): GroupNorm 그룹 수, 다운/업샘플링."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddpm_ko.layers import Downsample, Upsample, group_count


@pytest.mark.parametrize(
    "channels, preferred, expected",
    [(28, 8, 7), (32, 8, 8), (12, 8, 6), (7, 8, 7), (13, 8, 1), (3, 8, 3), (56, 8, 8), (28, 1, 1)],
)
def test_group_count(channels, preferred, expected):
    g = group_count(channels, preferred)
    assert g == expected
    assert channels % g == 0
    nn.GroupNorm(g, channels)  # 만들어져야 한다


def test_down_and_upsample():
    d, u = Downsample(4, 8), Upsample(8, 4)
    x = torch.randn(2, 4, 6, 6)
    assert d(x).shape == (2, 8, 3, 3)
    assert u(d(x)).shape == x.shape
    with pytest.raises(ValueError, match="even"):
        d(torch.randn(1, 4, 5, 5))
