"""ddpm_ko.likelihood: 가우스 KL, 이산화한 디코더, 변분 경계(bits/dim)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ddpm_ko.diffusion import GaussianDiffusion
from ddpm_ko.likelihood import (
    discretized_gaussian_log_likelihood,
    normal_kl,
    prior_kl,
    variational_bound,
    vb_terms,
)
from ddpm_ko.unet import Unet, UnetConfig

GRID = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0  # {0..255} → [−1, 1]


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    lv1, lv2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    ours = normal_kl(m1, lv1, m2, lv2)
    ref = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    # float64 의 닫힌 꼴 두 구현: 계산 순서만 다르므로 1e-12 안에서 같다
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    assert float(normal_kl(m1, lv1, m1, lv1).abs().max()) < 1e-15  # 같은 분포의 KL 은 0


@pytest.mark.parametrize(
    "mean, log_scale", [(0.0, math.log(0.05)), (0.97, math.log(0.01)), (-0.3, math.log(0.6)), (2.5, math.log(0.2))]
)
def test_discretized_decoder_sums_to_one_over_256_bins(mean, log_scale):
    m = torch.full_like(GRID, mean)
    ls = torch.full_like(GRID, log_scale)
    total = discretized_gaussian_log_likelihood(GRID, m, ls).exp().sum().item()
    # 칸들이 실수 전체를 빈틈없이 덮으므로 합은 1. float64 의 Φ 차이 256 개를 더한 오차는 1e-12 보다 훨씬 작다
    assert abs(total - 1.0) < 1e-9, total


def test_discretized_decoder_bin_probability_matches_cdf_difference():
    mean, std = torch.tensor(0.1, dtype=torch.float64), torch.tensor(0.05, dtype=torch.float64)
    x = GRID[140]
    expected = Normal(mean, std).cdf(x + 1 / 255) - Normal(mean, std).cdf(x - 1 / 255)
    got = discretized_gaussian_log_likelihood(x[None], mean[None], std.log()[None]).exp()[0]
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=0)  # float64, 같은 식의 다른 구현


def test_prior_kl_matches_closed_form_per_pixel():
    diffusion = GaussianDiffusion.from_schedule("linear", 1000)
    x0 = GRID[torch.randint(0, 256, (2, 1, 4, 4), generator=torch.Generator().manual_seed(1))].reshape(2, 1, 4, 4)
    abar = diffusion.alphas_cumprod.double()[-1]
    ref = kl_divergence(Normal(abar.sqrt() * x0, (1 - abar).sqrt()), Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(prior_kl(diffusion, x0), ref, rtol=1e-6, atol=1e-9)  # ᾱ_T 가 float32 버퍼에서 온다


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = Unet(UnetConfig(dim=8, dim_mults=(1, 2), image_size=8, stage_attention="none", mid_attention="none")).eval()
    diffusion = GaussianDiffusion.from_schedule("linear", 12)
    x0 = GRID[torch.randint(0, 256, (3, 1, 8, 8), generator=torch.Generator().manual_seed(2))]
    return model, diffusion, x0


def test_kl_term_equals_mean_gap_when_variances_match(tiny):
    """t ≥ 1 에서 q 와 p_θ 의 분산이 같으므로 KL = ‖μ̃ − μ_θ‖² / (2 β̃_t)."""
    model, diffusion, x0 = tiny
    t = torch.full((3,), 5)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    kl = vb_terms(diffusion, model, x0, t, noise=noise)
    xt = diffusion.q_sample(x0.float(), t, noise=noise)
    with torch.no_grad():
        mu_theta = diffusion.p_mean_variance(model, xt, t)["mean"].double()
    mu_q, var_q, _ = diffusion.q_posterior(x0.float(), xt, t)
    ref = ((mu_q.double() - mu_theta) ** 2 / (2 * var_q.double())).flatten(1).sum(1)
    torch.testing.assert_close(kl, ref, rtol=1e-5, atol=1e-8)  # 로그 분산(float32 버퍼)을 거친 계산과 직접 나눈 계산


def test_bound_is_finite_positive_and_is_the_sum_of_its_terms(tiny):
    model, diffusion, x0 = tiny
    full = variational_bound(diffusion, model, x0, generator=torch.Generator().manual_seed(4))
    assert full.timesteps_used == diffusion.num_timesteps - 1
    assert torch.isfinite(full.total).all() and (full.total > 0).all()
    # 세 항을 nats 로 더한 뒤 bits/dim 로 바꾼 값과, 바꾼 뒤 더한 값: float64 반올림 몇 번 (상대 1e-14) 차이
    torch.testing.assert_close(full.total, full.prior + full.diffusion + full.decoder, rtol=1e-14, atol=0)
    strat = variational_bound(
        diffusion, model, x0, num_timesteps=diffusion.num_timesteps - 2, generator=torch.Generator().manual_seed(4)
    )
    assert strat.timesteps_used == diffusion.num_timesteps - 2
    assert torch.isfinite(strat.total).all() and (strat.total > 0).all()
    # 층이 하나 줄어 한 층이 두 t 를 덮는다: 같은 크기의 추정이지만 값은 다를 수 있다 (불편 추정의 한 표본)
    assert abs(strat.mean - full.mean) < 0.5 * full.mean


def test_stratified_estimator_is_unbiased_on_average(tiny):
    """층화 추정 여러 번의 평균이 모든 t 를 쓴 값에 가까워진다 (같은 x_0, 다른 t·노이즈)."""
    model, diffusion, x0 = tiny
    x0 = x0[:1]
    full = torch.stack(
        [
            variational_bound(diffusion, model, x0, generator=torch.Generator().manual_seed(s)).diffusion
            for s in range(30)
        ]
    ).mean()
    strat = torch.stack(
        [
            variational_bound(
                diffusion, model, x0, num_timesteps=3, generator=torch.Generator().manual_seed(100 + s)
            ).diffusion
            for s in range(300)
        ]
    )
    # 표본 300 개의 평균: 표준오차의 4 배 안에서 (노이즈만 다른 30 번의 전체 계산 평균과) 같아야 한다
    se = float(strat.std() / math.sqrt(len(strat)))
    assert abs(float(strat.mean()) - float(full)) < 4 * se + 0.02 * float(full), (float(strat.mean()), float(full), se)


def test_bad_inputs_are_rejected(tiny):
    model, diffusion, x0 = tiny
    with pytest.raises(ValueError, match="x0"):
        variational_bound(diffusion, model, x0 * 300)  # [0, 255] 를 그대로 넣은 실수
    with pytest.raises(ValueError, match="num_timesteps"):
        variational_bound(diffusion, model, x0, num_timesteps=0)
    with pytest.raises(ValueError, match="B, C, H, W"):
        variational_bound(diffusion, model, x0[0])


@pytest.mark.parametrize("T, k", [(1000, 1), (1000, 10), (1000, 60), (1000, 999), (12, 5)])
def test_stratum_edges_tile_all_middle_timesteps(T, k):
    from ddpm_ko.likelihood import stratum_edges

    e = stratum_edges(T, k)
    assert len(e) == k + 1 and e[0] == 0 and e[-1] == T - 1
    assert bool((e[1:] > e[:-1]).all())  # 층마다 한 칸 이상, 겹치지 않고 빈틈없이
    sizes = (e[1:] - e[:-1]).tolist()
    assert sizes == sorted(sizes) or k == 1  # 작은 t 의 층이 가장 좁다
