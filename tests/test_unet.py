"""U-Net 과 그 부품 검사: 출력 모양, 시간 임베딩의 사용, 오류 메시지, 작은 배치 과적합."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from conftest import tiny_unet_config
from ddpm_ko.attention import Attention, LinearAttention
from ddpm_ko.diffusion import GaussianDiffusion
from ddpm_ko.unet import Unet, UnetConfig

GRID = list(
    itertools.product(
        ["resnet", "convnext"],  # 블록
        [8, 28],  # dim (28: Annotated 노트북이 GroupNorm(8, 28) 에서 멈춘 값)
        [(1, 2), (1, 2, 4)],  # dim_mults
        ["linear", "full", "none"],  # 단계 어텐션
    )
)


@pytest.mark.parametrize("block_type, dim, dim_mults, attention", GRID)
def test_output_shape_matches_input(block_type, dim, dim_mults, attention):
    cfg = UnetConfig(
        image_size=28,
        dim=dim,
        dim_mults=dim_mults,
        block_type=block_type,
        stage_attention=attention,
        attention_from_stage=0,
        mid_attention=attention,
        heads=2,
        dim_head=8,
    )
    torch.manual_seed(0)
    model = Unet(cfg).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        out = model(x, torch.tensor([0, 999]))
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert bool(torch.isfinite(out).all())
    if attention != "none":
        kinds = {type(m) for m in model.modules()}
        assert (LinearAttention if attention == "linear" else Attention) in kinds


@pytest.mark.parametrize("channels, size", [(3, 32), (2, 16), (1, 8)])
def test_other_channel_counts_and_sizes(channels, size):
    model = Unet(tiny_unet_config(channels=channels, image_size=size)).eval()
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        assert model(x, torch.tensor([1, 2, 3])).shape == x.shape


@pytest.mark.parametrize("block_type", ["resnet", "convnext"])
def test_output_depends_on_t(block_type):
    torch.manual_seed(0)
    model = Unet(tiny_unet_config(block_type=block_type)).eval()
    x = torch.randn(1, 1, 28, 28).expand(4, -1, -1, -1)
    with torch.no_grad():
        out = model(x, torch.tensor([0, 10, 500, 999]))
    # 같은 입력, 다른 t → 다른 출력 (시간 임베딩이 쓰인다)
    for i in range(1, 4):
        assert float((out[i] - out[0]).abs().max()) > 1e-4, f"t 에 따라 출력이 바뀌지 않는다 ({block_type})"
    # 같은 t 면 같은 출력
    with torch.no_grad():
        again = model(x, torch.tensor([0, 0, 0, 0]))
    assert torch.allclose(again[0], out[0], atol=1e-5) and torch.allclose(again[3], out[0], atol=1e-5)


def test_t_as_column_or_scalar_works(tiny_unet):
    x = torch.randn(3, 1, 28, 28)
    t = torch.tensor([3, 40, 700])
    with torch.no_grad():
        ref = tiny_unet(x, t)
        assert torch.equal(tiny_unet(x, t[:, None]), ref)
        assert torch.allclose(tiny_unet(x, torch.tensor(40)), tiny_unet(x, torch.tensor([40, 40, 40])))


def test_wrong_channel_count_raises(tiny_unet):
    with pytest.raises(ValueError, match=r"expected input \(B, 1, H, W\), got \(2, 3, 28, 28\)"):
        tiny_unet(torch.randn(2, 3, 28, 28), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="expected input"):
        tiny_unet(torch.randn(1, 28, 28), torch.tensor([0]))


def test_indivisible_image_size_raises():
    model = Unet(tiny_unet_config(dim_mults=(1, 2, 4))).eval()
    with pytest.raises(ValueError, match=r"H and W must be divisible by 4, got \(30, 30\)"):
        model(torch.randn(1, 1, 30, 30), torch.tensor([0]))
    with pytest.raises(ValueError, match="image_size 30 must be divisible by 4"):
        UnetConfig(image_size=30, dim_mults=(1, 2, 4))


def test_bad_t_shape_raises(tiny_unet):
    with pytest.raises(ValueError, match="t must have shape"):
        tiny_unet(torch.randn(2, 1, 28, 28), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"block_type": "vit"}, "unknown block_type"),
        ({"stage_attention": "sparse"}, "unknown attention"),
        ({"mid_attention": "sparse"}, "unknown attention"),
        ({"dim": 2}, "dim must be >= 4"),
        ({"dim": 9}, "dim must be even"),  # 고치기 전에는 설정은 통과하고 forward 에서야 실패했다
        ({"dim_mults": (1, 0)}, "dim_mults must be positive"),
        ({"channels": 0}, "channels must be >= 1"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UnetConfig(**kwargs)


def test_config_round_trips_through_dict():
    cfg = tiny_unet_config(block_type="convnext")
    d = cfg.to_dict()
    assert d["dim_mults"] == [1, 2]
    assert UnetConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown UnetConfig fields"):
        UnetConfig.from_dict({**d, "depth": 3})


def test_derived_fields_are_resolved_and_old_sidecars_without_them_still_load():
    cfg = UnetConfig(dim=16)
    assert (cfg.init_dim, cfg.time_dim) == (16, 64)  # 기본값 init_dim = dim, time_dim = 4·dim
    assert UnetConfig(dim=16, init_dim=8, time_dim=40).to_dict()["time_dim"] == 40
    # 두 항목을 비워 둔 예전 사본(None)은 같은 설정으로 읽힌다
    old = {**cfg.to_dict(), "init_dim": None, "time_dim": None}
    assert UnetConfig.from_dict(old) == cfg
    torch.manual_seed(0)
    a = Unet(UnetConfig.from_dict(old)).state_dict()
    torch.manual_seed(0)
    b = Unet(cfg).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert Unet(cfg).time_mlp[1].out_features == cfg.time_dim and Unet(cfg).init_conv.out_channels == cfg.init_dim
    with pytest.raises(ValueError, match="time_dim must be >= 1"):
        UnetConfig(time_dim=0)


def test_config_and_keywords_together_are_refused():
    with pytest.raises(TypeError, match="either a config or keyword arguments"):
        Unet(UnetConfig(), dim=8)


@pytest.mark.parametrize("layout", ["ddpm_ko", "annotated"])
def test_float64_model_runs(layout):  # 두 배치 모두 (annotated 는 unet_annotated.py)
    """사인파 시간 임베딩은 float32 로 계산하지만, 모델을 .double() 로 바꾸면 그 dtype 을 따른다."""
    cfg = tiny_unet_config(layout=layout, block_type="convnext")
    model = Unet(cfg).double().eval()
    x = torch.randn(2, cfg.channels, cfg.image_size, cfg.image_size, dtype=torch.float64)
    with torch.no_grad():
        out = model(x, torch.tensor([1, 7]))
    assert out.dtype == torch.float64 and out.shape == x.shape


def test_num_parameters_counts_trainable_only(tiny_unet):
    n = tiny_unet.num_parameters()
    assert n == sum(p.numel() for p in tiny_unet.parameters())
    tiny_unet.final_conv.weight.requires_grad_(False)
    assert tiny_unet.num_parameters() == n - tiny_unet.final_conv.weight.numel()


# ---------------------------------------------------------------------------- 과적합
@pytest.mark.slow  # 한가한 2코어에서 5 초 남짓, CPU 를 나눠 쓰면 20 초를 넘기도 한다
def test_tiny_model_overfits_a_tiny_batch():
    """작은 U-Net 이 8 장짜리 배치를 외울 수 있어야 한다 (학습 경로 전체: q_sample → U-Net → 손실 → 역전파).

    t 와 노이즈를 고정하면 최적값은 0 이다. 80 번의 Adam 단계 뒤 (마지막 10 단계 평균) 손실이 처음의
    0.1 배 아래로 떨어져야 한다 (실측으로는 25 단계 만에 0.05 배 아래로 떨어진다).
    """
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    size = 16
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    # 서로 다른 8 장의 매끈한 그림 (원, 띠, 격자 …)
    imgs = []
    for k in range(8):
        r = torch.sqrt((xx - 0.3 * math.cos(k)) ** 2 + (yy - 0.3 * math.sin(k)) ** 2)
        imgs.append(torch.tanh(3 * (0.5 - r)) * math.cos(k) + 0.3 * torch.sin((k + 1) * xx))
    x0 = torch.stack(imgs)[:, None].clamp(-1, 1)
    diffusion = GaussianDiffusion.from_schedule("linear", 1000)
    t = torch.randint(0, 1000, (8,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    model = Unet(tiny_unet_config(image_size=size))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss = diffusion.training_loss(model, x0, t, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    first, last = losses[0], sum(losses[-10:]) / 10
    assert all(math.isfinite(v) for v in losses)
    assert first > 0.5  # 처음에는 ε 을 전혀 모른다 (E‖ε‖² = 1 근처)
    assert last < 0.1 * first, f"손실이 {first:.4f} → {last:.4f} 로 충분히 줄지 않았다"
