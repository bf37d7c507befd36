"""GaussianDiffusion 검사.

기준값은 패키지의 버퍼를 쓰지 않고 ``betas`` 에서 float64 로 따로 계산한다. 통계 검사의 허용
오차는 표본 수 N 에서 나온다: 평균의 표준오차 σ/√N, 표본 분산의 표준오차 σ²·√(2/(N−1)) 에
여유 배수 ``Z`` 를 곱한다 (Z = 5 면 우연히 실패할 확률이 검사 하나당 10⁻⁶ 정도).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ddpm_ko.diffusion import LOSS_TYPES, PREDICTION_TYPES, GaussianDiffusion
from ddpm_ko.schedules import beta_schedule

Z = 5.0


def abar64(betas: torch.Tensor) -> list[float]:
    """ᾱ_t (코드 인덱스 0..T−1) 를 파이썬 float 곱으로 따로 계산한다."""
    out, prod = [], 1.0
    for b in betas.tolist():
        prod *= 1.0 - b
        out.append(prod)
    return out


def assert_mean_var(samples: torch.Tensor, mean, var, what: str = "") -> None:
    """``samples`` (N, …) 의 표본 평균·분산이 기대값과 표본 수에서 나온 허용 오차 안에 있는지."""
    samples = samples.double()
    n = samples.shape[0]
    mean = torch.as_tensor(mean, dtype=torch.float64)
    var = torch.as_tensor(var, dtype=torch.float64)
    m_hat = samples.mean(0)
    v_hat = samples.var(0, unbiased=True)
    tol_m = Z * (var / n).sqrt() + 1e-6
    tol_v = Z * var * math.sqrt(2.0 / (n - 1)) + 1e-6
    assert bool(((m_hat - mean).abs() <= tol_m).all()), f"{what} 평균 {m_hat} ≠ {mean} (허용 {tol_m})"
    assert bool(((v_hat - var).abs() <= tol_v).all()), f"{what} 분산 {v_hat} ≠ {var} (허용 {tol_v})"


# ---------------------------------------------------------------------------- 버퍼와 기본 동작
def test_buffers_match_independent_float64_computation():
    betas = beta_schedule("cosine", 200)
    d = GaussianDiffusion(betas)
    ab = torch.tensor(abar64(betas), dtype=torch.float64)
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    assert d.num_timesteps == 200
    for name, expected in {
        "betas": betas,
        "alphas": 1 - betas,
        "alphas_cumprod": ab,
        "alphas_cumprod_prev": ab_prev,
        "sqrt_alphas_cumprod": ab.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1 - ab).sqrt(),
        "posterior_variance": betas * (1 - ab_prev) / (1 - ab),
    }.items():
        got = getattr(d, name).double()
        assert got.shape == (200,), name
        assert torch.allclose(got, expected, rtol=1e-6, atol=1e-7), name
    assert float(d.posterior_variance[0]) == 0.0  # t = 1 에서 β̃_1 = 0
    assert torch.isfinite(d.posterior_log_variance_clipped).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prediction_type": "score"}, "unknown prediction_type"),
        ({"loss_type": "l3"}, "unknown loss_type"),
    ],
)
def test_constructor_rejects_unknown_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianDiffusion.from_schedule("linear", 10, **kwargs)


@pytest.mark.parametrize("betas", [torch.tensor([0.1, 1.0]), torch.tensor([0.0, 0.1]), torch.tensor([0.1])])
def test_constructor_rejects_bad_betas(betas):
    with pytest.raises(ValueError, match="beta"):
        GaussianDiffusion(betas)


def test_t_validation():
    d = GaussianDiffusion.from_schedule("linear", 10)
    x = torch.zeros(3, 1, 2, 2)
    with pytest.raises(ValueError, match="out of range"):
        d.q_sample(x, torch.tensor([0, 1, 10]))
    with pytest.raises(ValueError, match="out of range"):
        d.q_sample(x, -1)
    with pytest.raises(ValueError, match="integer"):
        d.q_sample(x, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        d.q_sample(x, torch.tensor([0, 1]))
    # (B, 1) 과 스칼라 t 는 받아 준다
    noise = torch.randn(3, 1, 2, 2)
    a = d.q_sample(x + 0.3, torch.tensor([[4], [4], [4]]), noise)
    b = d.q_sample(x + 0.3, 4, noise)
    c = d.q_sample(x + 0.3, torch.tensor(4), noise)
    assert torch.equal(a, b) and torch.equal(b, c)


# ---------------------------------------------------------------------------- 순방향 과정
def test_q_sample_closed_form_matches_iterated_q_step():
    """닫힌 형태 q(x_t|x_0) 와 한 단계 q(x_t|x_{t−1}) 를 t 번 거듭한 것이 같은 분포인지."""
    T = 40
    betas = beta_schedule("linear", T)
    d = GaussianDiffusion(betas)
    ab = abar64(betas)
    n = 20000
    x0_values = torch.tensor([-1.0, 0.0, 0.6, 1.0])
    x0 = x0_values.expand(n, 4).clone()
    g = torch.Generator().manual_seed(1)
    checkpoints = {0, 4, 19, T - 1}
    x = x0
    for t in range(T):
        x = d.q_step(x, torch.full((n,), t), generator=g)
        if t in checkpoints:
            mean, var = math.sqrt(ab[t]) * x0_values, torch.full((4,), 1 - ab[t])
            assert_mean_var(x, mean, var, f"반복 q_step t={t}")
            closed = d.q_sample(x0, t, generator=g)
            assert_mean_var(closed, mean, var, f"q_sample t={t}")
            # 두 방법의 표본 평균끼리도 (두 표준오차를 합친 허용 오차 안에서) 같아야 한다
            tol = Z * math.sqrt(2 * (1 - ab[t]) / n)
            assert torch.allclose(x.mean(0), closed.mean(0), atol=tol)


def test_q_sample_uses_given_noise_and_generator():
    d = GaussianDiffusion.from_schedule("linear", 100)
    x0 = torch.rand(4, 1, 3, 3) * 2 - 1
    t = torch.tensor([0, 10, 50, 99])
    noise = torch.randn_like(x0)
    ab = abar64(d.betas.double())
    expected = torch.stack(
        [math.sqrt(ab[i]) * x0[k] + math.sqrt(1 - ab[i]) * noise[k] for k, i in enumerate(t.tolist())]
    )
    assert torch.allclose(d.q_sample(x0, t, noise), expected, atol=1e-6)
    a = d.q_sample(x0, t, generator=torch.Generator().manual_seed(3))
    b = d.q_sample(x0, t, generator=torch.Generator().manual_seed(3))
    c = d.q_sample(x0, t, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------------------- 사후 분포
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_posterior_matches_gaussian_conditioning(schedule):
    """q(x_{t−1}|x_t, x_0) 를 결합 가우시안의 조건부 분포로 따로 유도해 비교한다.

    x_0 가 주어지면 (x_{t−1}, x_t) 는 결합 가우시안이다:
        x_{t−1} ~ N(√ᾱ_{t−1} x_0, v),  v = 1 − ᾱ_{t−1}
        x_t = √α_t x_{t−1} + √β_t ε
    따라서 Cov(x_{t−1}, x_t) = √α_t v, Var(x_t) = α_t v + β_t 이고
        E[x_{t−1}|x_t] = √ᾱ_{t−1} x_0 + √α_t v/(α_t v + β_t) · (x_t − √ᾱ_t x_0)
        Var[x_{t−1}|x_t] = v − α_t v²/(α_t v + β_t).
    (DDPM 식 7 의 계수와는 다른 길로 구한 값이다.)
    """
    T = 100
    betas = beta_schedule(schedule, T)
    d = GaussianDiffusion(betas)
    ab = abar64(betas)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    xt = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    for t in [0, 1, 2, 10, 50, 98, 99]:
        b = float(betas[t])
        a = 1 - b
        ab_t, ab_prev = ab[t], (ab[t - 1] if t > 0 else 1.0)
        v = 1 - ab_prev
        s_xx = a * v + b
        exp_mean = math.sqrt(ab_prev) * x0 + math.sqrt(a) * v / s_xx * (xt - math.sqrt(ab_t) * x0)
        exp_var = v - a * v * v / s_xx
        mean, var, log_var = d.q_posterior(x0.float(), xt.float(), t)
        assert mean.shape == x0.shape
        assert torch.allclose(mean.double(), exp_mean, atol=2e-6), f"t={t}"
        assert torch.allclose(
            var.double().flatten(), torch.full((6,), exp_var, dtype=torch.float64), rtol=1e-5, atol=1e-9
        ), f"t={t}"
        if t > 0:
            assert torch.allclose(
                log_var.double().flatten(), torch.full((6,), math.log(exp_var), dtype=torch.float64), atol=1e-5
            ), f"t={t}"
    # t = 1 (코드 0) 에서는 x_0 가 정해져 있으므로 평균이 곧 x_0
    mean0, var0, _ = d.q_posterior(x0.float(), xt.float(), 0)
    assert torch.allclose(mean0.double(), x0, atol=1e-6)
    assert float(var0.max()) == 0.0


def test_posterior_matches_monte_carlo():
    """q(x_{t−1}|x_0) 에서 x_{t−1} 을, q_step 으로 x_t 를 뽑고 x_t 가 정해진 값 근처인 표본만 남겨
    (조건부 표본) 평균·분산을 q_posterior 와 비교한다. 창 폭에서 오는 편향이 표준오차보다 작도록 좁게 둔다."""
    T = 20
    d = GaussianDiffusion.from_schedule("linear", T)
    t, x0_val, xt_val, half_width = 6, 0.5, 0.2, 0.005
    n = 2_000_000
    g = torch.Generator().manual_seed(7)
    x0 = torch.full((n,), x0_val)
    x_prev = d.q_sample(x0, t - 1, generator=g)
    x_t = d.q_step(x_prev, t, generator=g)
    keep = (x_t - xt_val).abs() < half_width
    cond = x_prev[keep][:, None]
    assert cond.shape[0] > 2000
    mean, var, _ = d.q_posterior(torch.tensor([x0_val]), torch.tensor([xt_val]), t)
    # 창 안에서 x_t 가 흔들리는 만큼 (기울기² · 폭²/3) 분산이 늘어날 수 있다
    slope = float(d.posterior_mean_coef2[t])
    assert_mean_var(cond, mean.flatten(), var.flatten() + slope**2 * half_width**2 / 3, "몬테카를로 사후 분포")


# ---------------------------------------------------------------------------- ε, x_0, v 변환
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_eps_x0_v_conversions_round_trip(schedule):
    T = 1000
    d = GaussianDiffusion.from_schedule(schedule, T)
    ab = torch.tensor(abar64(beta_schedule(schedule, T)))
    g = torch.Generator().manual_seed(0)
    t = torch.arange(0, T, 7)
    t = torch.cat([t, torch.tensor([T - 1])])
    b = len(t)
    x0 = torch.rand(b, 1, 4, 4, generator=g) * 2 - 1
    eps = torch.randn(b, 1, 4, 4, generator=g)
    xt = d.q_sample(x0, t, eps)
    a = ab[t].view(-1, 1, 1, 1)
    # 변환은 √ᾱ 나 √(1−ᾱ) 로 나누므로 float32 반올림 오차가 그만큼 커진다: 허용 오차도 같이 키운다
    amp = (1 / a.sqrt() + 1 / (1 - a).sqrt()).float()
    tol = 2e-6 * amp

    def close(u, v):
        return bool(((u - v).abs() <= tol).all())

    assert close(d.predict_x0_from_eps(xt, t, eps), x0)
    assert close(d.predict_eps_from_x0(xt, t, x0), eps)
    # 왕복: ε → x̂_0 → ε̂
    assert close(d.predict_eps_from_x0(xt, t, d.predict_x0_from_eps(xt, t, eps)), eps)
    assert close(d.predict_x0_from_eps(xt, t, d.predict_eps_from_x0(xt, t, x0)), x0)
    # v 의 정의와 v → (x_0, ε)
    v = d.get_v(x0, eps, t)
    v_expected = (a.sqrt() * eps.double() - (1 - a).sqrt() * x0.double()).float()
    assert torch.allclose(v, v_expected, atol=1e-6)
    assert torch.allclose(d.predict_x0_from_v(xt, t, v), x0, atol=1e-5)
    assert torch.allclose(d.predict_eps_from_v(xt, t, v), eps, atol=1e-5)
    # (x_t, v) 는 (x_0, ε) 을 회전한 것이라 길이가 보존된다: x_t² + v² = x_0² + ε²
    assert torch.allclose(xt**2 + v**2, x0**2 + eps**2, atol=1e-4)


def test_model_predictions_agree_across_parameterisations():
    """같은 (x_0, ε) 을 ε, x_0, v 로 예측하는 세 '완벽한' 모델은 같은 (ε̂, x̂_0) 를 내야 한다."""
    T = 100
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(5, 1, 4, 4, generator=g) * 1.6 - 0.8
    eps = torch.randn(5, 1, 4, 4, generator=g)
    t = torch.tensor([0, 5, 30, 70, 99])
    results = {}
    for kind in PREDICTION_TYPES:
        d = GaussianDiffusion.from_schedule("linear", T, prediction_type=kind)
        xt = d.q_sample(x0, t, eps)
        target = d.training_target(x0, eps, t)
        results[kind] = d.model_predictions(lambda x, tt, target=target: target, xt, t, clip_x0=False)
    for kind in ("x0", "v"):
        assert torch.allclose(results[kind][0], results["eps"][0], atol=2e-3), kind
        assert torch.allclose(results[kind][1], results["eps"][1], atol=2e-3), kind
    assert torch.allclose(results["x0"][1], x0, atol=1e-6)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_eps_x0_from_output_is_the_conversion_model_predictions_uses(prediction_type):
    """신경망을 부르지 않는 공개 변환이 model_predictions 와 같은 (ε̂, x̂_0) 를 내고, 출력의 해석이 맞다."""
    d = GaussianDiffusion.from_schedule("linear", 100, prediction_type=prediction_type)
    g = torch.Generator().manual_seed(3)
    xt = torch.randn(4, 1, 3, 3, generator=g) * 1.5
    out = torch.randn(4, 1, 3, 3, generator=g)
    t = torch.tensor([0, 10, 50, 99])
    for clip in (False, True):
        eps, x0 = d.eps_x0_from_output(xt, t, out, clip_x0=clip)
        eps_m, x0_m = d.model_predictions(lambda x, tt: out, xt, t, clip_x0=clip)
        assert torch.equal(eps, eps_m) and torch.equal(x0, x0_m)
    eps, x0 = d.eps_x0_from_output(xt, t, out)
    named = {"eps": eps, "x0": x0, "v": d.get_v(x0, eps, t)}[prediction_type]
    # 변환 한 번 갔다 오기: √ᾱ 나 √(1−ᾱ) 로 나누는 float32 반올림 (t = 0 에서 1/√(1−ᾱ) ≈ 100 배)
    assert torch.allclose(named, out, atol=1e-4)


def test_clipping_x0_recomputes_eps():
    d = GaussianDiffusion.from_schedule("linear", 100)
    xt = torch.full((2, 1, 2, 2), 3.0)
    t = torch.tensor([50, 50])
    eps, x0 = d.model_predictions(lambda x, tt: torch.zeros_like(x), xt, t, clip_x0=True)
    assert float(x0.max()) == 1.0  # ε̂ = 0 이면 x̂_0 = x_t/√ᾱ_t > 1 → 1 로 잘린다
    # 잘린 x̂_0 와 ε̂ 은 여전히 x_t = √ᾱ x̂_0 + √(1−ᾱ) ε̂ 를 만족해야 한다
    a = float(d.alphas_cumprod[50])
    assert torch.allclose(math.sqrt(a) * x0 + math.sqrt(1 - a) * eps, xt, atol=1e-5)


# ---------------------------------------------------------------------------- 학습 손실
def _oracle_model(diffusion: GaussianDiffusion, x0: torch.Tensor, ab: list[float]):
    """x_t 와 (알고 있는) x_0 만으로 정확한 목표를 계산하는 '모델'. 노이즈는 x_t 에서 되살린다.

    x_t 를 만드는 식이 틀리면 되살린 ε 도 틀리므로 손실이 0 이 되지 않는다.
    """

    def model(xt, t):
        a = torch.tensor([ab[i] for i in t.tolist()], dtype=torch.float64).view(-1, 1, 1, 1)
        eps = (xt.double() - a.sqrt() * x0.double()) / (1 - a).sqrt()
        if diffusion.prediction_type == "eps":
            out = eps
        elif diffusion.prediction_type == "x0":
            out = x0.double()
        else:
            out = a.sqrt() * eps - (1 - a).sqrt() * x0.double()
        return out.float()

    return model


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_training_loss_oracle_and_zero_model(prediction_type, loss_type):
    T = 200
    d = GaussianDiffusion.from_schedule("linear", T, prediction_type=prediction_type, loss_type=loss_type)
    ab = abar64(beta_schedule("linear", T))
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(16, 1, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(16, 1, 8, 8, generator=g)
    t = torch.randint(0, T, (16,), generator=g)

    oracle = d.training_loss(_oracle_model(d, x0, ab), x0, t, noise)
    assert oracle.ndim == 0
    assert float(oracle) < 1e-4, f"정답 모델의 손실이 {float(oracle)}"

    loss_zero = d.training_loss(lambda x, tt: torch.zeros_like(x), x0, t, noise)
    target = d.training_target(x0, noise, t)
    expected = {
        "l2": (target**2).mean(),
        "l1": target.abs().mean(),
        "huber": F.smooth_l1_loss(torch.zeros_like(target), target),
    }[loss_type]
    assert float(loss_zero) > 0.05
    assert float(loss_zero) == pytest.approx(float(expected), rel=1e-5)
    # 무작위 t, 노이즈도 generator 로 재현된다
    model = lambda x, tt: 0.5 * x  # noqa: E731
    l1 = d.training_loss(model, x0, generator=torch.Generator().manual_seed(5))
    l2 = d.training_loss(model, x0, generator=torch.Generator().manual_seed(5))
    assert float(l1) == float(l2)


def test_training_loss_is_differentiable_and_checks_shape():
    d = GaussianDiffusion.from_schedule("linear", 50)
    w = torch.zeros((), requires_grad=True)
    loss = d.training_loss(lambda x, t: w * x, torch.zeros(4, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert w.grad is not None and float(w.grad.abs()) > 0
    with pytest.raises(ValueError, match="shape mismatch"):
        d.training_loss(lambda x, t: x[:, :, :2], torch.zeros(4, 1, 4, 4))


# ---------------------------------------------------------------------------- 샘플링
# 자료 분포가 화소마다 독립인 N(μ, s²) 이면 최적의 ε 예측기를 식으로 쓸 수 있다:
#   x_t ~ N(√ᾱ μ, ᾱ s² + 1 − ᾱ),   E[ε | x_t] = √(1−ᾱ) (x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ).
MU, S = 0.3, 0.5


def gaussian_oracle(diffusion: GaussianDiffusion):
    ab = torch.tensor(abar64(diffusion.betas.double()), dtype=torch.float64)

    def model(xt, t):
        a = ab[t].view(-1, *([1] * (xt.ndim - 1)))
        return (((1 - a).sqrt() * (xt.double() - a.sqrt() * MU)) / (a * S**2 + 1 - a)).float()

    return model


def exact_ddpm_output_stats(betas: torch.Tensor) -> tuple[float, float]:
    """x̂_0 를 자르지 않으면 조상 샘플링의 각 단계는 x_{t−1} = A x_t + B + σ z 꼴의 선형 가우시안이다.
    x_T ~ N(0, 1) 에서 평균과 분산을 float64 로 정확히 전파한다 (DDPM 식 7 을 그대로 쓴다)."""
    ab = abar64(betas)
    m, v = 0.0, 1.0
    for t in range(len(ab) - 1, -1, -1):
        b, a_t = float(betas[t]), ab[t]
        a_prev = ab[t - 1] if t > 0 else 1.0
        # ε̂ = c (x − √ᾱ μ),   x̂_0 = (x − √(1−ᾱ) ε̂)/√ᾱ = p x + q
        c = math.sqrt(1 - a_t) / (a_t * S**2 + 1 - a_t)
        p = (1 - math.sqrt(1 - a_t) * c) / math.sqrt(a_t)
        q = math.sqrt(1 - a_t) * c * math.sqrt(a_t) * MU / math.sqrt(a_t)
        coef1 = b * math.sqrt(a_prev) / (1 - a_t)
        coef2 = (1 - a_prev) * math.sqrt(1 - b) / (1 - a_t)
        A, B = coef1 * p + coef2, coef1 * q
        var = b * (1 - a_prev) / (1 - a_t) if t > 0 else 0.0
        m, v = A * m + B, A * A * v + var
    return m, v


def test_gaussian_oracle_exact_stats_are_sensible():
    # 검사 자체의 검사: 최적 예측기로 조상 샘플링을 하면 평균은 μ 이고, 분산 β̃_t 는 참 역과정 분산의
    # 하한이라 표준편차가 s 보다 조금 작다. T 가 커질수록 그 차이가 줄어 자료 분포 N(μ, s²) 에 다가간다.
    stds = []
    for T in (50, 200, 1000):
        m, v = exact_ddpm_output_stats(beta_schedule("linear", T))
        assert m == pytest.approx(MU, abs=1e-4)
        stds.append(math.sqrt(v))
    assert stds[0] < stds[1] < stds[2] < S
    assert stds[2] == pytest.approx(S, rel=0.01)


def test_ddpm_and_ddim_eta1_match_exact_statistics():
    T = 50
    d = GaussianDiffusion.from_schedule("linear", T)
    model = gaussian_oracle(d)
    m, v = exact_ddpm_output_stats(d.betas.double())
    shape = (4000, 1, 2, 2)  # 화소가 독립이므로 16000 개의 독립 표본
    ddpm = d.sample(model, shape, sampler="ddpm", clip_x0=False, generator=torch.Generator().manual_seed(1))
    ddim = d.sample(
        model, shape, sampler="ddim", eta=1.0, steps=T, clip_x0=False, generator=torch.Generator().manual_seed(2)
    )
    for name, x in (("ddpm", ddpm), ("ddim η=1", ddim)):
        assert x.shape == shape
        assert_mean_var(x.reshape(-1, 1), [m], [v], name)
    # 두 샘플러끼리: 평균 차이의 표준오차는 √(2v/N)
    n = ddpm.numel()
    assert abs(float(ddpm.mean()) - float(ddim.mean())) < Z * math.sqrt(2 * v / n)
    assert abs(float(ddpm.var()) - float(ddim.var())) < Z * v * math.sqrt(4 / n)


def test_ddim_eta1_all_steps_equals_ddpm_pathwise():
    """η = 1, 모든 T 단계의 DDIM 은 DDPM 과 식이 같다. 같은 난수열이면 표본 하나하나가 같아야 한다."""
    T = 30
    d = GaussianDiffusion.from_schedule("cosine", T)
    model = gaussian_oracle(d)
    for clip in (False, True):
        a = d.sample(model, (64, 1, 3, 3), sampler="ddpm", clip_x0=clip, generator=torch.Generator().manual_seed(3))
        b = d.sample(
            model,
            (64, 1, 3, 3),
            sampler="ddim",
            eta=1.0,
            steps=T,
            clip_x0=clip,
            generator=torch.Generator().manual_seed(3),
        )
        assert torch.allclose(a, b, atol=1e-4), f"clip={clip}: 최대 차이 {float((a - b).abs().max())}"


def test_ddim_eta0_is_deterministic_and_exact_for_a_point_mass():
    T = 100
    d = GaussianDiffusion.from_schedule("linear", T)
    x_T = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    model = gaussian_oracle(d)
    a = d.sample(
        model, x_T.shape, sampler="ddim", steps=10, eta=0.0, x_T=x_T, generator=torch.Generator().manual_seed(1)
    )
    b = d.sample(
        model, x_T.shape, sampler="ddim", steps=10, eta=0.0, x_T=x_T, generator=torch.Generator().manual_seed(2)
    )
    c = d.sample(model, x_T.shape, sampler="ddim", steps=10, eta=0.0, x_T=x_T)
    assert torch.equal(a, b) and torch.equal(a, c)
    # η > 0 이면 난수에 따라 달라진다
    e1 = d.sample(
        model, x_T.shape, sampler="ddim", steps=10, eta=1.0, x_T=x_T, generator=torch.Generator().manual_seed(1)
    )
    e2 = d.sample(
        model, x_T.shape, sampler="ddim", steps=10, eta=1.0, x_T=x_T, generator=torch.Generator().manual_seed(2)
    )
    assert not torch.allclose(e1, e2)
    # 자료가 한 점 c 뿐이면 정확한 ε 예측기에서 x̂_0 = c 이므로 어떤 샘플러든 c 에 도착한다
    point = 0.25

    def point_model(xt, t):
        ab = d.alphas_cumprod[t].view(-1, 1, 1, 1)
        return (xt - ab.sqrt() * point) / (1 - ab).sqrt()

    for sampler, steps in (("ddim", 7), ("ddpm", None)):
        out = d.sample(
            point_model, x_T.shape, sampler=sampler, steps=steps, x_T=x_T, generator=torch.Generator().manual_seed(0)
        )
        assert torch.allclose(out, torch.full_like(out, point), atol=1e-4), sampler


def test_sampling_is_reproducible_with_generator():
    d = GaussianDiffusion.from_schedule("linear", 20)
    model = gaussian_oracle(d)
    for sampler in ("ddpm", "ddim"):
        kw = dict(sampler=sampler, eta=0.5 if sampler == "ddim" else 0.0)
        a = d.sample(model, (3, 1, 4, 4), generator=torch.Generator().manual_seed(11), **kw)
        b = d.sample(model, (3, 1, 4, 4), generator=torch.Generator().manual_seed(11), **kw)
        c = d.sample(model, (3, 1, 4, 4), generator=torch.Generator().manual_seed(12), **kw)
        assert torch.equal(a, b), sampler
        assert not torch.equal(a, c), sampler
        assert float(a.abs().max()) <= 1.0  # clip_x0=True 면 [−1, 1]


def test_p_sample_last_step_is_deterministic_and_uses_variance_choice():
    d = GaussianDiffusion.from_schedule("linear", 10)
    model = gaussian_oracle(d)
    xt = torch.randn(2000, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    a, _ = d.p_sample(model, xt, 0, generator=torch.Generator().manual_seed(1))
    b, _ = d.p_sample(model, xt, 0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)  # t = 1 에서는 노이즈를 더하지 않는다
    # 같은 평균에서 시작하는 한 단계의 분산: "posterior" 는 β̃_t, "beta" 는 β_t
    t = 5
    x = torch.full((20000, 1, 1, 1), 0.1)
    for variance, expected in (("posterior", float(d.posterior_variance[t])), ("beta", float(d.betas[t]))):
        out, _ = d.p_sample(model, x, t, clip_x0=False, generator=torch.Generator().manual_seed(3), variance=variance)
        mean = d.p_mean_variance(model, x[:1], torch.tensor([t]), clip_x0=False)["mean"].flatten()
        assert_mean_var(out.reshape(-1, 1), mean, [expected], variance)
