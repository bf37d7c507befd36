"""합성곱 블록 검사 (``ddpm_ko.blocks``): 가중치 표준화, 시간 임베딩을 받는 ResNet·ConvNeXt 블록."""

from __future__ import annotations

import pytest
import torch

from ddpm_ko.blocks import ConvNextBlock, ResnetBlock, WeightStandardizedConv2d


def test_weight_standardized_conv_divides_by_std():
    torch.manual_seed(0)
    conv = WeightStandardizedConv2d(3, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.mul_(30)
    # 가중치를 이동해도 표준화 뒤에는 같다 → 출력이 같다
    ref = WeightStandardizedConv2d(3, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        ref.weight.copy_(conv.weight + 2)
    x = torch.randn(2, 3, 6, 6)
    # atol 1e-4: 평균을 빼는 float32 계산이 가중치 크기(≈30)에 비례한 반올림(≈30·1e-7·27 항)을 남긴다
    assert torch.allclose(conv(x), ref(x), atol=1e-4)
    # 상수배해도 같다 (var ≫ ε 이도록 가중치를 키워 두었다). std 를 곱하는 옛 버그라면 30 배 차이가 난다
    half = WeightStandardizedConv2d(3, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        half.weight.copy_(conv.weight * 0.5)
    # 1e-3: ε(1e-5)가 분산과 함께 줄지 않아 남는 상대 차이(ε/var ≈ 1e-6)와 float32 반올림보다 크고,
    #       std 를 곱하던 옛 버그(출력이 0.5 배로 달라진다)보다는 훨씬 작다
    assert torch.allclose(conv(x), half(x), rtol=1e-3, atol=1e-3)
    w = conv.weight
    w_hat = (w - w.mean((1, 2, 3), keepdim=True)) / w.var((1, 2, 3), keepdim=True, unbiased=False).add(1e-5).sqrt()
    assert torch.allclose(conv(x), torch.nn.functional.conv2d(x, w_hat, padding=1), atol=1e-4)


@pytest.mark.parametrize("block", [lambda: ResnetBlock(6, 10, 16, groups=8), lambda: ConvNextBlock(6, 10, 16)])
def test_blocks_use_time_embedding(block):
    torch.manual_seed(0)
    b = block()
    x = torch.randn(2, 6, 8, 8)
    e1, e2 = torch.randn(2, 16), torch.randn(2, 16)
    with torch.no_grad():
        y1, y2 = b(x, e1), b(x, e2)
    assert y1.shape == (2, 10, 8, 8)
    assert float((y1 - y2).abs().max()) > 1e-4
    with pytest.raises(ValueError, match="needs a time embedding"):
        b(x)
