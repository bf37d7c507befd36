"""DPM-Solver++(2M) 와 그 시각 간격 검사 (``ddpm_ko.solvers``, ``GaussianDiffusion.dpm_solver_step``).

기준은 두 가지다. (1) 1차 DPM-Solver++ 갱신은 대수적으로 DDIM(η = 0)과 같다. (2) 자료 분포가 화소마다 독립인
N(μ, s²) 이면 최적의 x̂_0 예측기와 확률 흐름 ODE 의 정확한 해를 식으로 쓸 수 있다. 거기서 1차 풀이법의 오차는
단계 수 N 에 대해 1/N, 2차 풀이법의 오차는 1/N² 로 줄어야 한다. 모든 계산은 float64 로 한다.
"""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_ko import solvers
from ddpm_ko.diffusion import GaussianDiffusion
from ddpm_ko.sampling import SAMPLERS, ddim_timesteps
from ddpm_ko.schedules import beta_schedule

F64 = torch.float64
MU, S = 0.3, 0.5


def diffusion64(schedule: str = "linear", T: int = 1000, **kw) -> GaussianDiffusion:
    return GaussianDiffusion(beta_schedule(schedule, T), dtype=F64, **kw)


def gaussian_eps_oracle(d: GaussianDiffusion):
    """자료 ~ N(μ, s²) (화소마다 독립) 일 때의 최적 ε 예측기 E[ε | x_t] (float64)."""
    ab = d.alphas_cumprod

    def model(xt, t):
        a = ab[t].view(-1, *([1] * (xt.ndim - 1)))
        return (1 - a).sqrt() * (xt - a.sqrt() * MU) / (a * S**2 + 1 - a)

    return model


def exact_flow_x0_hat(d: GaussianDiffusion, x_T: torch.Tensor) -> torch.Tensor:
    """확률 흐름 ODE 의 정확한 해를 t = T−1 에서 t = 0 (코드 시각)까지 따라간 뒤 x̂_0 을 낸 값.

    가우스 자료에서는 z = (x_t − α_t μ)/√(α_t² s² + σ_t²) 가 ODE 를 따라 변하지 않는다. 풀이법의 마지막 단계는
    t = 0 의 x̂_0 을 돌려주므로, 기준값도 정확한 x_0(코드 시각 0)에서 최적 예측기가 낼 x̂_0 이다.
    """
    a_T, a_0 = float(d.alphas_cumprod[-1]), float(d.alphas_cumprod[0])
    z = (x_T - math.sqrt(a_T) * MU) / math.sqrt(a_T * S**2 + 1 - a_T)
    x0_code = math.sqrt(a_0) * MU + math.sqrt(a_0 * S**2 + 1 - a_0) * z
    t0 = torch.zeros(x_T.shape[0], dtype=torch.long)
    return d.predict_x0_from_eps(x0_code, t0, gaussian_eps_oracle(d)(x0_code, t0))


def first_order_only(d: GaussianDiffusion, model, x_T: torch.Tensor, ts: list[int]) -> torch.Tensor:
    """history 를 넘기지 않아 매 단계 1차 갱신만 하는 DPM-Solver (= DDIM η = 0)."""
    x = x_T
    for i, t in enumerate(ts):
        x, _ = d.dpm_solver_step(model, x, t, ts[i + 1] if i + 1 < len(ts) else -1, None, clip_x0=False)
    return x


# ---------------------------------------------------------------------------- 시각 간격


@pytest.mark.parametrize("T, steps", [(10, 1), (10, 2), (10, 10), (1000, 7), (1000, 50)])
def test_time_spacing_is_ddim_timesteps(T, steps):
    d = diffusion64("linear", T)
    assert d.solver_timesteps(steps, "time") == ddim_timesteps(T, steps)


@pytest.mark.parametrize("spacing", solvers.SPACINGS)
@pytest.mark.parametrize("steps", [2, 5, 10, 25])
def test_solver_timesteps_shape(spacing, steps):
    d = diffusion64()
    ts = d.solver_timesteps(steps, spacing)
    assert len(ts) == steps  # T = 1000 에서 25 단계까지는 반올림해도 겹치지 않는다
    assert ts[0] == 999 and ts[-1] == 0
    assert all(a > b for a, b in zip(ts, ts[1:])), ts


def test_logsnr_spacing_has_nearly_equal_h():
    """λ 에서 고르게 고른 시각은 정수로 반올림한 뒤에도 h_i 가 거의 같다. t 에서 고르게 고르면 선형 스케줄에서는
    마지막 한 단계(t = 111 → 0)가 λ 범위의 3분의 1 넘게를 건너뛴다."""
    d = diffusion64()
    lam = d.lambdas()
    h_of = lambda ts: [float(lam[b] - lam[a]) for a, b in zip(ts, ts[1:])]  # noqa: E731
    h = h_of(d.solver_timesteps(10, "logsnr"))
    mean = sum(h) / len(h)
    # 반올림은 t 를 ±0.5 옮긴다. t ≈ 5 근처에서 λ 는 한 칸에 약 0.1 변하므로 h(≈1.07)의 10% 안
    assert all(abs(v - mean) < 0.1 * mean for v in h), h
    h_time = h_of(d.solver_timesteps(10, "time"))
    assert h_time[-1] == max(h_time) and h_time[-1] > 0.35 * float(lam[0] - lam[-1]), h_time


def test_karras_spacing_follows_rho_power():
    d = diffusion64()
    lam = d.lambdas()
    ts = d.solver_timesteps(10, "karras")
    s = torch.exp(-lam[ts]) ** (1 / solvers.KARRAS_RHO)  # (σ/α)^{1/ρ} 는 거의 등간격이어야 한다
    gaps = (s[:-1] - s[1:]).tolist()
    mean = sum(gaps) / len(gaps)
    # 정수 시각으로 반올림한 만큼만 어긋난다 (ρ 를 1 로 바꾸면 이 검사가 깨진다)
    assert all(abs(g - mean) < 0.05 * mean for g in gaps), gaps


def test_solver_timesteps_errors():
    d = diffusion64("linear", 20)
    with pytest.raises(ValueError, match="unknown spacing"):
        d.solver_timesteps(5, "quadratic")
    with pytest.raises(ValueError, match="cannot exceed"):
        d.solver_timesteps(21, "logsnr")
    with pytest.raises(ValueError, match="positive integer"):
        d.solver_timesteps(0, "time")


def test_duplicate_times_after_rounding_are_dropped():
    # T = 20 에서 λ 균등 20 개를 고르면 t = 0 근처에서 반올림한 시각이 겹친다. 겹친 시각은 h = 0 이라
    # 2차 보정의 r = h_{i−1}/h_i 를 계산할 수 없으므로 하나만 남겨야 한다
    d = diffusion64("linear", 20)
    ts = d.solver_timesteps(20, "logsnr")
    assert len(ts) < 20
    assert all(a > b for a, b in zip(ts, ts[1:]))
    x = d.sample(
        gaussian_eps_oracle(d),
        (2, 1, 2, 2),
        sampler="dpm-solver++",
        steps=20,
        spacing="logsnr",
        x_T=torch.randn(2, 1, 2, 2, dtype=F64),
        clip_x0=False,
    )
    assert bool(torch.isfinite(x).all())


# ---------------------------------------------------------------------------- 한 단계의 식


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("t, t_prev", [(999, 888), (500, 300), (20, 0), (0, -1), (999, -1)])
def test_first_order_step_equals_ddim_eta0(t, t_prev, clip):
    d = diffusion64()
    model = gaussian_eps_oracle(d)
    x = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * 1.5
    ours, x0 = d.dpm_solver_step(model, x, t, t_prev, None, clip_x0=clip)
    ddim, x0_ddim = d.ddim_step(model, x, t, t_prev, eta=0.0, clip_x0=clip)
    # 같은 값을 다른 순서로 계산한다 (DDIM 은 √ᾱ x̂_0 + √(1−ᾱ) ε̂). float64 반올림 몇 번 분량
    torch.testing.assert_close(ours, ddim, rtol=1e-10, atol=1e-10)
    assert torch.equal(x0, x0_ddim)


def test_second_order_formula_against_hand_computation():
    """2차 갱신을 논문의 식 그대로 손으로 계산한 값과 비교한다 (2차 보정 항을 빼면 실패한다)."""
    d = diffusion64()
    model = gaussian_eps_oracle(d)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 2, 2, generator=g, dtype=F64)
    x0_before = torch.randn(3, 1, 2, 2, generator=g, dtype=F64)
    t_before, t, t_next = 700, 500, 300
    ours, x0 = d.dpm_solver_step(model, x, t, t_next, (t_before, x0_before), clip_x0=False)
    ab = d.alphas_cumprod
    lam = lambda s: 0.5 * math.log(float(ab[s]) / (1 - float(ab[s])))  # noqa: E731
    h, h_before = lam(t_next) - lam(t), lam(t) - lam(t_before)
    r = h_before / h
    D = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_before
    expected = math.sqrt((1 - ab[t_next]) / (1 - ab[t])) * x - math.sqrt(ab[t_next]) * (math.exp(-h) - 1) * D
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)
    first, _ = d.dpm_solver_step(model, x, t, t_next, None, clip_x0=False)
    assert (ours - first).abs().max() > 1e-3  # 2차 보정이 실제로 값을 바꾼다


def test_final_step_returns_clipped_x0():
    d = diffusion64()
    x = torch.full((1, 1, 2, 2), 3.0, dtype=F64)
    out, x0 = d.dpm_solver_step(lambda xt, t: torch.zeros_like(xt), x, 0, -1, (5, torch.zeros_like(x)), clip_x0=True)
    assert torch.equal(out, x0) and float(out.max()) == 1.0


# ---------------------------------------------------------------------------- 전체 풀이의 정확도


def test_whole_first_order_trajectory_equals_ddim_sampler():
    d = diffusion64("linear", 1000)
    model = gaussian_eps_oracle(d)
    x_T = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    ddim = d.sample(model, x_T.shape, sampler="ddim", steps=10, x_T=x_T, clip_x0=False)
    ours = first_order_only(d, model, x_T, ddim_timesteps(1000, 10))
    torch.testing.assert_close(ours, ddim, rtol=1e-9, atol=1e-9)  # float64, 10 단계의 반올림 누적


def test_second_order_converges_faster_than_first_order():
    """단계 수를 두 배로 하면 1차(DDIM)의 오차는 약 절반, 2차 DPM-Solver++ 의 오차는 약 4분의 1 이 된다.

    λ 균등 간격에서 잰다. h ≈ 1 인 N = 10 은 아직 점근 영역이 아니어서 비율은 N = 20, 40, 80 에서 본다.
    """
    d = diffusion64("linear", 1000)
    model = gaussian_eps_oracle(d)
    x_T = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    exact = exact_flow_x0_hat(d, x_T)
    err1, err2 = [], []
    for n in (10, 20, 40, 80):
        ts = d.solver_timesteps(n, "logsnr")
        dpm = d.sample(model, x_T.shape, sampler="dpm-solver++", steps=n, spacing="logsnr", x_T=x_T, clip_x0=False)
        err2.append(float((dpm - exact).abs().max()))
        err1.append(float((first_order_only(d, model, x_T, ts) - exact).abs().max()))
    for a, b in zip(err1[1:], err1[2:]):
        assert 1.7 < a / b < 2.3, err1  # 1차: 오차 ∝ 1/N (반올림으로 실제 단계 수가 조금 줄어 비가 흔들린다)
    for a, b in zip(err2[1:], err2[2:]):
        assert 3.3 < a / b < 4.7, err2  # 2차: 오차 ∝ 1/N²
    assert err2[0] < err1[0] / 5  # 같은 10 번의 호출에서 2차가 훨씬 정확하다


@pytest.mark.parametrize("spacing", solvers.SPACINGS)
def test_dpm_solver_reaches_point_mass_exactly(spacing):
    # 자료가 한 점 c 뿐이면 최적 예측기의 x̂_0 은 늘 c 이고, 1차든 2차든 지수 적분기는 c 에 정확히 도착한다
    d = diffusion64("cosine", 200)
    point = -0.4

    def point_model(xt, t):
        ab = d.alphas_cumprod[t].view(-1, 1, 1, 1)
        return (xt - ab.sqrt() * point) / (1 - ab).sqrt()

    x_T = torch.randn(5, 1, 3, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    out = d.sample(point_model, x_T.shape, sampler="dpm-solver++", steps=6, spacing=spacing, x_T=x_T)
    torch.testing.assert_close(out, torch.full_like(out, point), rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------- SDE 판 (SDE-DPM-Solver++(2M))


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("t, t_prev", [(999, 888), (500, 300), (20, 0), (0, -1)])
def test_sde_first_order_step_equals_ddim_eta1(t, t_prev, clip):
    """SDE 판의 1차 갱신은 DDIM η = 1 과 같은 분포의 같은 값이다 (같은 생성기에서 같은 z 를 뽑는다, 식 ch9-eq-sde-dpm).

    평균 (σ_s/σ_t)e^{−h} x_t + α_s(1 − e^{−2h}) x̂_0 과 표준편차 σ_s √(1 − e^{−2h}) 을 다른 순서로 계산할 뿐이므로
    float64 반올림 몇 번 분량의 차이만 남는다.
    """
    d = diffusion64()
    model = gaussian_eps_oracle(d)
    x = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * 1.5
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ours, x0 = d.dpm_solver_step(model, x, t, t_prev, None, clip_x0=clip, stochastic=True, generator=g1)
    ddim, x0_ddim = d.ddim_step(model, x, t, t_prev, eta=1.0, clip_x0=clip, generator=g2)
    torch.testing.assert_close(ours, ddim, rtol=1e-10, atol=1e-10)
    assert torch.equal(x0, x0_ddim)
    assert torch.equal(g1.get_state(), g2.get_state())  # 두 쪽이 노이즈를 같은 수만큼 뽑았다 (끝 단계는 0 번)


def test_sde_dpm_solver_keeps_the_marginal_and_forgets_x_T():
    """자료 ~ N(μ, s²) 와 최적 예측기에서, SDE 판은 ODE 판처럼 평균과 표준편차를 지키지만 x_T 를 거의 잊는다.

    정방향 과정에서 x_T 와 x_0 의 상관은 √ᾱ_T s / √(ᾱ_T s² + 1 − ᾱ_T) ≈ 0.003 이다. 결정적인 ODE 는 x_T 를 단조롭게
    옮기므로 상관이 1 이고, 스텝마다 새 노이즈를 더하는 SDE 는 그 작은 값 가까이로 돌아간다. N = 20000 이면 평균의
    표준오차는 s/√N ≈ 0.0035, 표준편차의 표준오차는 s/√(2N) ≈ 0.0025 이고, 25 스텝의 이산화 오차(잰 값 ≈ 0.013)를
    더해 평균 0.02, 표준편차 0.03 안으로 본다. 노이즈의 몫을 잘못 쓰면(√ 를 빠뜨리는 등) 표준편차가 여기서 벗어난다.
    """
    d = diffusion64()
    model = gaussian_eps_oracle(d)
    x_T = torch.randn(20000, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=F64)

    def run(sampler: str, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        # λ 간격: 모든 걸음의 h 가 같아 이산화 오차가 고르다 (Karras 간격은 노이즈가 큰 쪽 걸음이 커서 25 스텝에서
        # 이 가우스 자료의 표준편차를 0.04 크게 낸다. 여기서 보려는 것은 간격이 아니라 노이즈의 몫이다)
        return d.sample(
            model, x_T.shape, sampler=sampler, steps=25, spacing="logsnr", clip_x0=False, x_T=x_T, generator=g
        )

    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])

    sde, sde_other_seed, ode = run("sde-dpm-solver++", 1), run("sde-dpm-solver++", 2), run("dpm-solver++", 1)
    for out in (sde, sde_other_seed):
        assert abs(float(out.mean()) - MU) < 0.02 and abs(float(out.std()) - S) < 0.03
    assert abs(corr(x_T, sde)) < 0.05 and corr(x_T, ode) > 0.99
    assert abs(corr(sde, sde_other_seed)) < 0.05  # 같은 x_T 라도 다른 시드면 거의 독립인 표본


def test_sde_dpm_solver_is_reproducible_by_seed_and_has_the_same_defaults():
    d = diffusion64("linear", 100)
    model = gaussian_eps_oracle(d)
    x_T = torch.randn(2, 1, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(5))

    def run(seed: int, **kw) -> torch.Tensor:
        return d.sample(
            model, x_T.shape, sampler="sde-dpm-solver++", x_T=x_T, generator=torch.Generator().manual_seed(seed), **kw
        )

    default = run(0)
    assert torch.equal(default, run(0, steps=solvers.DEFAULT_STEPS, spacing=solvers.DEFAULT_SPACING))
    assert not torch.equal(default, run(1))
    traj = d.sample_trajectory(
        model, x_T.shape, sampler="sde-dpm-solver++", x_T=x_T, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(traj.images, default) and len(traj.frames) == len(d.solver_timesteps()) + 1


# ---------------------------------------------------------------------------- sample() 연결


def test_sampler_name_and_defaults():
    assert "dpm-solver++" in SAMPLERS and "sde-dpm-solver++" in SAMPLERS
    assert solvers.DEFAULT_SPACING in solvers.SPACINGS
    d = diffusion64("linear", 100)
    model = gaussian_eps_oracle(d)
    x_T = torch.randn(2, 1, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    default = d.sample(model, x_T.shape, sampler="dpm-solver++", x_T=x_T)
    explicit = d.sample(
        model, x_T.shape, sampler="dpm-solver++", steps=solvers.DEFAULT_STEPS, spacing=solvers.DEFAULT_SPACING, x_T=x_T
    )
    assert torch.equal(default, explicit)


def test_dpm_solver_argument_errors():
    d = diffusion64("linear", 20)
    model = gaussian_eps_oracle(d)
    with pytest.raises(ValueError, match="cannot exceed"):
        d.sample(model, (1, 1, 2, 2), sampler="dpm-solver++", steps=21)
    with pytest.raises(ValueError, match="eta only applies to DDIM"):
        d.sample(model, (1, 1, 2, 2), sampler="dpm-solver++", eta=0.5)
    with pytest.raises(ValueError, match="use sampler='sde-dpm-solver\\+\\+'"):
        d.sample(model, (1, 1, 2, 2), sampler="sde-dpm-solver++", eta=1.0)
    with pytest.raises(ValueError, match="cannot exceed"):
        d.sample(model, (1, 1, 2, 2), sampler="sde-dpm-solver++", steps=21)
    with pytest.raises(ValueError, match="spacing only applies"):
        d.sample(model, (1, 1, 2, 2), sampler="ddim", spacing="logsnr")
    with pytest.raises(ValueError, match="unknown spacing"):
        d.sample(model, (1, 1, 2, 2), sampler="dpm-solver++", spacing="uniform")


@pytest.mark.parametrize("stride, frames", [(1, 6), (2, 4)])
def test_dpm_solver_trajectory(stride, frames):
    d = diffusion64("linear", 50)
    model = gaussian_eps_oracle(d)
    x_T = torch.randn(3, 1, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(6))
    out, traj = d.sample_trajectory(model, x_T.shape, sampler="dpm-solver++", steps=5, x_T=x_T, stride=stride)
    assert traj.shape == (frames, 3, 1, 4, 4)
    assert torch.equal(traj[0], x_T) and torch.equal(traj[-1], out)
    assert torch.equal(out, d.sample(model, x_T.shape, sampler="dpm-solver++", steps=5, x_T=x_T))
    assert float(out.abs().max()) <= 1.0


def test_float32_default_matches_float64_closely():
    # 책과 명령줄은 float32 로 샘플링한다. 같은 풀이를 float64 로 한 것과의 차이는 float32 반올림
    # (상대 6e-8) 이 20 단계와 x̂_0 변환의 1/√ᾱ_T ≈ 160 배 증폭을 거친 정도라 1e-4 안이다
    d32, d64 = GaussianDiffusion.from_schedule("linear", 1000), diffusion64()
    x_T = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(7), dtype=F64)
    a = d32.sample(
        lambda x, t: gaussian_eps_oracle(d64)(x.double(), t).float(),
        x_T.shape,
        sampler="dpm-solver++",
        steps=20,
        x_T=x_T.float(),
    )
    b = d64.sample(gaussian_eps_oracle(d64), x_T.shape, sampler="dpm-solver++", steps=20, x_T=x_T)
    assert a.dtype == torch.float32
    torch.testing.assert_close(a.double(), b, rtol=0, atol=1e-4)
