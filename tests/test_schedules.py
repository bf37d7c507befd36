"""노이즈 스케줄 β_t 검사: 길이, 범위, ᾱ_t 의 단조 감소, DDPM·코사인 스케줄의 정의, 오류 메시지."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_ko.schedules import MAX_BETA, SCHEDULES, beta_schedule

ALL_T = [2, 10, 50, 250, 1000, 4000]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("T", ALL_T)
def test_every_schedule_is_valid(name, T):
    betas = beta_schedule(name, T)
    assert isinstance(betas, torch.Tensor)
    assert betas.dtype == torch.float64
    assert betas.shape == (T,)
    assert bool(torch.isfinite(betas).all())
    assert bool((betas > 0).all()), f"{name} T={T}: β_t <= 0 at {torch.nonzero(betas <= 0).flatten().tolist()}"
    assert bool((betas < 1).all()), f"{name} T={T}: β_t >= 1"
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    # ᾱ_t 는 엄격히 줄어든다 (매 단계 노이즈를 더하므로)
    assert bool((alphas_cumprod[1:] < alphas_cumprod[:-1]).all())
    assert 0 < float(alphas_cumprod[-1]) < float(alphas_cumprod[0]) < 1


@pytest.mark.parametrize("name", ["linear", "quadratic", "sigmoid"])
def test_increasing_schedules_are_monotone(name):
    betas = beta_schedule(name, 1000)
    assert bool((betas[1:] >= betas[:-1]).all())


def test_linear_matches_ddpm_at_T_1000():
    betas = beta_schedule("linear", 1000)
    assert float(betas[0]) == pytest.approx(1e-4, rel=1e-12)
    assert float(betas[-1]) == pytest.approx(0.02, rel=1e-12)
    # 등간격
    diffs = betas[1:] - betas[:-1]
    assert torch.allclose(diffs, torch.full_like(diffs, (0.02 - 1e-4) / 999), rtol=0, atol=1e-15)


@pytest.mark.parametrize("T", [100, 250, 500, 2000, 4000])
def test_linear_scales_with_1000_over_T(T):
    betas = beta_schedule("linear", T)
    scale = 1000 / T
    assert float(betas[0]) == pytest.approx(1e-4 * scale, rel=1e-12)
    assert float(betas[-1]) == pytest.approx(min(0.02 * scale, MAX_BETA), rel=1e-12)
    expected = torch.linspace(1e-4 * scale, 0.02 * scale, T, dtype=torch.float64)
    assert torch.allclose(betas, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("T", [50, 250, 1000, 4000])
def test_linear_scaling_keeps_terminal_signal_small(T):
    # 1000/T 배 하는 이유: T 를 바꿔도 x_T 가 거의 순수한 노이즈여야 한다
    a_T = float(torch.prod(1 - beta_schedule("linear", T)))
    assert math.sqrt(a_T) < 0.01


@pytest.mark.parametrize("T", [10, 100, 1000, 4000])
def test_cosine_follows_formula_and_is_capped(T):
    s = 0.008
    betas = beta_schedule("cosine", T)
    assert float(betas.max()) <= MAX_BETA == 0.999
    # 마지막 β 는 1 로 발산하려 하므로 상한에 걸린다
    assert float(betas[-1]) == pytest.approx(0.999, abs=1e-12)

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    expected = torch.tensor([f(t) / f(0) for t in range(1, T + 1)], dtype=torch.float64)
    got = torch.cumprod(1 - betas, 0)
    # 상한에 걸리지 않은 구간에서는 ᾱ_t = f(t)/f(0) 이 그대로 성립한다
    unclipped = int(torch.nonzero(betas >= 0.999).flatten()[0])
    assert unclipped >= T - 2, "상한은 마지막 한두 단계에서만 걸려야 한다"
    assert torch.allclose(got[:unclipped], expected[:unclipped], rtol=1e-9, atol=1e-14)
    # 잘린 뒤의 ᾱ 는 공식보다 크지만 여전히 아주 작다
    assert float(got[-1]) < 1e-3


def test_default_training_configuration_ends_in_noise():
    from ddpm_ko.diffusion import GaussianDiffusion
    from ddpm_ko.train import TrainConfig

    cfg = TrainConfig()
    betas = beta_schedule(cfg.schedule, cfg.timesteps)
    sqrt_a_T = math.sqrt(float(torch.prod(1 - betas)))
    assert sqrt_a_T < 0.01, f"기본 설정 {cfg.schedule}/{cfg.timesteps}: √ᾱ_T = {sqrt_a_T:.4f}"
    diffusion = GaussianDiffusion.from_schedule(cfg.schedule, cfg.timesteps)
    assert float(diffusion.sqrt_alphas_cumprod[-1]) < 0.01
    assert diffusion.num_timesteps == cfg.timesteps


def test_unknown_schedule_name_raises_with_choices():
    with pytest.raises(ValueError, match="unknown schedule 'lineer'") as info:
        beta_schedule("lineer", 1000)
    for name in SCHEDULES:
        assert name in str(info.value)


@pytest.mark.parametrize("T", [0, 1, -5, 2.5, "1000", True, None])
def test_bad_timesteps_raise(T):
    with pytest.raises(ValueError, match="timesteps must be an integer >= 2"):
        beta_schedule("linear", T)
