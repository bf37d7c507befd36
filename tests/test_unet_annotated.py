"""Annotated Diffusion 노트북의 배치 검사 (``ddpm_ko.unet_annotated``, ``UnetConfig.annotated()``)."""

from __future__ import annotations

import pytest
import torch

from ddpm_ko.attention import Attention, LinearAttention
from ddpm_ko.blocks import ConvBlock
from ddpm_ko.unet import Unet, UnetConfig
from ddpm_ko.unet_annotated import AnnotatedUnet


def test_unet_with_the_annotated_layout_builds_the_annotated_network():
    model = Unet(UnetConfig.annotated())
    assert type(model) is AnnotatedUnet and model.config.layout == "annotated"
    assert type(Unet(layout="annotated", dim=28, dim_mults=(1, 2, 4))) is AnnotatedUnet
    assert type(Unet(UnetConfig())) is Unet
    # 처음 합성곱의 채널: Annotated 노트북의 dim·2/3 을 설정이 채운다
    assert UnetConfig.annotated().init_dim == 18 and UnetConfig.annotated(dim=30).init_dim == 20


def test_layout_is_validated_and_old_configs_keep_the_ddpm_ko_layout():
    with pytest.raises(ValueError, match="unknown layout"):
        UnetConfig(layout="vgg")
    d = UnetConfig.annotated().to_dict()
    assert d["layout"] == "annotated" and UnetConfig.from_dict(d) == UnetConfig.annotated()
    # layout 항목이 생기기 전의 체크포인트 사본에는 이 키가 없다: 그때의 신경망은 모두 ddpm_ko 배치였다
    del d["layout"]
    assert UnetConfig.from_dict(d).layout == "ddpm_ko"


def test_annotated_config_builds_and_runs():
    cfg = UnetConfig.annotated()
    assert (cfg.dim, cfg.dim_mults, cfg.block_type, cfg.stage_attention, cfg.attention_from_stage) == (
        28,
        (1, 2, 4),
        "convnext",
        "linear",
        0,
    )
    torch.manual_seed(0)
    model = Unet(cfg).eval()
    # 모든 단계(내려가기·올라가기)에 선형 어텐션이 있다
    assert all(isinstance(stage[2].fn.fn, LinearAttention) for stage in [*model.downs, *model.ups])
    assert isinstance(model.mid_attn.fn.fn, Attention)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        out = model(x, torch.tensor([5, 900]))
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    # 원래 노트북의 신경망(denoising-diffusion-pytorch 0.11.2 의 Unet(dim=28, dim_mults=(1, 2, 4), use_convnext=True))과
    # 매개변수 수가 같다. 출력까지 같은 함수라는 것은 benchmarks/check_annotated_equivalence.py 가 가중치를 옮겨 확인한다.
    assert model.num_parameters() == 2_996_315
    # 그 배치: 올라가기 단계가 하나 적고, 마지막 블록은 t 를 받지 않고, 처음 합성곱은 dim·2/3 채널
    assert len(model.ups) == len(model.downs) - 1 == 2
    assert model.final_block.time_mlp is None and model.init_conv.out_channels == 18
    assert isinstance(model.downs[0][3], torch.nn.Conv2d) and model.downs[0][3].stride == (2, 2)
    assert isinstance(model.ups[0][3], torch.nn.ConvTranspose2d)
    # 덮어쓰기도 된다: Annotated 노트북의 ResNet 블록 구성 (GroupNorm 8 → dim 28 에서 7 그룹)
    resnet = Unet(UnetConfig.annotated(block_type="resnet", heads=1, dim_head=8)).eval()
    groups = {m.norm.num_groups for m in resnet.modules() if isinstance(m, ConvBlock) and m.norm.num_channels == 28}
    assert groups == {7}
    with torch.no_grad():
        assert resnet(x, torch.tensor([5, 900])).shape == x.shape
