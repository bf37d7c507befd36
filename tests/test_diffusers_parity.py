"""이 책의 샘플러가 Hugging Face diffusers 의 스케줄러와 같은 계산을 하는지 float64 로 확인한다.

- DDPM (알고리즘 2, 사후 분산, x̂_0 자르기)      ↔ ``DDPMScheduler``
- DDIM (η = 0, η > 0 에서 같은 난수)           ↔ ``DDIMScheduler(use_clipped_model_output=True)``
- DPM-Solver++(2M)                             ↔ ``DPMSolverMultistepScheduler(algorithm_type="dpmsolver++")``
- SDE-DPM-Solver++(2M) (같은 난수)             ↔ ``DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")``

두 쪽에 같은 "신경망 출력"을 주려고 가중치가 필요 없는 결정적 가짜 모델(x 와 t 의 고정된 무작위 선형 사상,
float64)을 쓴다. diffusers 는 스케줄 표(betas, alphas_cumprod, sigmas)를 float32 로 만든다. 여기서는 알고리즘을
견주려는 것이므로 같은 β 로 float64 로 계산한 표를 양쪽에 넣는다 (``_use_float64_tables``). 그러면 남는 차이는
float64 연산 순서뿐이다.

허용 오차 (이슈의 목표는 float64 에서 1e-5):
- DDPM, DDIM: 같은 식을 다른 순서로 계산하는 float64 뿐이다. 한 번에 상대 1e-16 의 반올림이 1000 단계와
  |x| ≲ 40 을 거쳐도 1e-12 안팎이므로 목표보다 훨씬 엄격한 1e-10 으로 본다.
- DPM-Solver++: ``DPMSolverMultistepScheduler.step`` 은 매 단계 현재 표본을 float32 로 바꿔 계산한다
  (``sample.to(torch.float32)``). 그 반올림은 단계마다 |x|·2⁻²⁴ 이고, 자르지 않은 이 가짜 모델에서는 |x| 가 40 까지
  커지므로 한 단계에 2.4e-6 까지다. 앞 단계의 오차는 σ_{t_i}/σ_{t_{i−1}} < 1 배로 줄며 전해지므로 크게 쌓이지
  않는다 (실제 최대 2.6e-6). 그래서 이슈의 목표 1e-5 를 그대로 쓴다. SDE 판은 diffusers 가 노이즈 z 도 float32 로 바꾼다.
  그 반올림은 |z|·2⁻²⁴·σ_t ≲ 3e-7 로 위보다 작고, 앞 단계의 오차는 (σ_{t_i}/σ_{t_{i−1}}) e^{−h_i} < 1 배로 줄며 전해지므로
  같은 1e-5 를 쓴다.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

with warnings.catch_warnings():  # diffusers 가 불러오는 선택적 의존성의 경고를 가린다
    warnings.simplefilter("ignore")
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from ddpm_ko import solvers
from ddpm_ko.diffusion import GaussianDiffusion
from ddpm_ko.schedules import beta_schedule

F64 = torch.float64
T = 1000
SHAPE = (3, 1, 4, 4)
# 허용 오차의 근거는 위 설명 참고
TOL_F64 = dict(rtol=0.0, atol=1e-10)  # DDPM, DDIM: float64 끼리
TOL_DPM = dict(rtol=0.0, atol=1e-5)  # DPM-Solver++: diffusers 가 표본을 float32 로 반올림한다
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


class FakeModel:
    """신경망 대신 쓰는 고정된 무작위 선형 사상  out = W·x + b·(t/T) + c  (float64, 결정적).

    W 는 항등 행렬에 가까워 ε-예측이면 x_t 를 대체로 노이즈로 본다. 그래도 자료의 구조가 없어 x̂_0 이 [−1, 1] 을
    자주 벗어나므로 자르기(clip) 경로도 함께 검사된다.
    """

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        n = int(np.prod(SHAPE[1:]))
        self.W = 0.8 * torch.eye(n, dtype=F64) + 0.2 * torch.randn(n, n, generator=g, dtype=F64) / n**0.5
        self.b = 0.3 * torch.randn(n, generator=g, dtype=F64)
        self.c = 0.1 * torch.randn(n, generator=g, dtype=F64)

    def __call__(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=F64).reshape(-1, 1).expand(x.shape[0], 1)
        out = x.reshape(x.shape[0], -1) @ self.W.T + (t / T) * self.b + self.c
        return out.reshape(x.shape)


def package(prediction_type: str = "eps") -> GaussianDiffusion:
    return GaussianDiffusion(beta_schedule("linear", T), prediction_type=prediction_type, dtype=F64)


def _use_float64_tables(sch, d: GaussianDiffusion) -> None:
    """diffusers 스케줄러의 float32 표를 같은 β 에서 float64 로 계산한 값으로 바꾼다."""
    sch.betas = d.betas.clone()
    sch.alphas = d.alphas.clone()
    sch.alphas_cumprod = d.alphas_cumprod.clone()
    if isinstance(sch, DDIMScheduler):
        sch.final_alpha_cumprod = torch.tensor(1.0, dtype=F64)  # set_alpha_to_one=True


def x_T(seed: int = 1) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_fake_model_is_deterministic_and_float64():
    m = FakeModel()
    x = x_T()
    assert m(x, 10).dtype == F64
    assert torch.equal(m(x, 10), FakeModel()(x, 10))
    assert not torch.equal(m(x, 10), m(x, 900))  # t 에 따라 출력이 바뀐다


# ---------------------------------------------------------------------------- DDPM


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("variance, diffusers_variance", [("posterior", "fixed_small"), ("beta", "fixed_large")])
def test_ddpm_trajectory_matches_ddpm_scheduler(prediction_type, clip, variance, diffusers_variance):
    d, model = package(prediction_type), FakeModel()
    # 양쪽 모두 신경망 출력을 얻은 뒤 같은 생성기에서 z 를 한 번 뽑는다 (t = 0 에서는 뽑지 않는다)
    _, traj = d.sample_trajectory(
        model,
        SHAPE,
        sampler="ddpm",
        clip_x0=clip,
        variance=variance,
        x_T=x_T(),
        generator=torch.Generator().manual_seed(5),
    )
    sch = DDPMScheduler(
        num_train_timesteps=T,
        trained_betas=d.betas.numpy(),
        clip_sample=clip,
        prediction_type=DIFFUSERS_PREDICTION[prediction_type],
        variance_type=diffusers_variance,
    )
    _use_float64_tables(sch, d)
    g = torch.Generator().manual_seed(5)
    x = x_T()
    for i, t in enumerate(range(T - 1, -1, -1)):
        out = sch.step(model(x, t), t, x, generator=g)
        x = out.prev_sample
        torch.testing.assert_close(traj[i + 1], x, **TOL_F64, msg=lambda m, t=t: f"t={t}: {m}")


# ---------------------------------------------------------------------------- DDIM


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_trajectory_matches_ddim_scheduler(prediction_type, clip, eta, steps):
    """diffusers 의 DDIM 은 다음 시각을 t − T/S 로 정하므로 T/S 간격의 ``"trailing"`` 시각(999, 899, …, 99)에서
    패키지의 ``ddim_step`` 을 같은 시각들로 부른다. η > 0 이면 양쪽이 같은 생성기에서 같은 z 를 뽑는다."""
    d, model = package(prediction_type), FakeModel()
    sch = DDIMScheduler(
        num_train_timesteps=T,
        trained_betas=d.betas.numpy(),
        clip_sample=clip,
        set_alpha_to_one=True,
        timestep_spacing="trailing",
        prediction_type=DIFFUSERS_PREDICTION[prediction_type],
    )
    _use_float64_tables(sch, d)
    sch.set_timesteps(steps)
    ts = sch.timesteps.tolist()
    assert ts[0] == T - 1 and len(ts) == steps
    g_ours, g_theirs = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    ours = theirs = x_T()
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        ours, x0 = d.ddim_step(model, ours, t, t_prev, eta=eta, clip_x0=clip, generator=g_ours)
        out = sch.step(model(theirs, t), t, theirs, eta=eta, use_clipped_model_output=True, generator=g_theirs)
        theirs = out.prev_sample
        torch.testing.assert_close(ours, theirs, **TOL_F64, msg=lambda m, t=t: f"t={t}: {m}")
        torch.testing.assert_close(x0, out.pred_original_sample, **TOL_F64)


# ---------------------------------------------------------------------------- DPM-Solver++(2M)


def dpm_scheduler(
    d: GaussianDiffusion, prediction_type: str, clip: bool, timesteps: list[int], algorithm_type: str = "dpmsolver++"
):
    """이 책의 DPM-Solver++(2M) (``algorithm_type="sde-dpmsolver++"`` 이면 그 SDE 판)와 같은 설정의 diffusers 스케줄러.

    ``thresholding=True, sample_max_value=1.0`` 은 동적 임계값의 s 를 1 에 묶으므로 x̂_0 을 [−1, 1] 로 자르는 것과
    같다. 시각은 패키지가 고른 정수 시각을 그대로 넘긴다 (diffusers 의 λ 균등·Karras 간격은 σ 를 반올림 전 값으로
    쓰므로, 정수 시각의 σ 를 쓰는 이 책과 같은 시각을 쓰게 하려는 것이다. 시각 자체가 같다는 것은 아래 검사가 본다).
    """
    sch = DPMSolverMultistepScheduler(
        num_train_timesteps=T,
        trained_betas=d.betas.numpy(),
        algorithm_type=algorithm_type,
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="zero",
        prediction_type=DIFFUSERS_PREDICTION[prediction_type],
        thresholding=clip,
        sample_max_value=1.0,
    )
    _use_float64_tables(sch, d)
    sch.set_timesteps(timesteps=timesteps)
    # set_timesteps 가 float32 로 만든 σ_t/α_t 표를 float64 로: 정수 시각에서의 값과 끝의 0
    ab = d.alphas_cumprod[timesteps]
    sch.sigmas = torch.cat([((1 - ab) / ab).sqrt(), torch.zeros(1, dtype=F64)])
    return sch


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("spacing", solvers.SPACINGS)
@pytest.mark.parametrize("steps", [5, 10, 25])
def test_dpm_solver_trajectory_matches_dpm_solver_multistep_scheduler(prediction_type, clip, spacing, steps):
    d, model = package(prediction_type), FakeModel()
    ts = d.solver_timesteps(steps, spacing)
    _, traj = d.sample_trajectory(
        model, SHAPE, sampler="dpm-solver++", steps=steps, spacing=spacing, clip_x0=clip, x_T=x_T()
    )
    sch = dpm_scheduler(d, prediction_type, clip, ts)
    x = x_T()
    for i, t in enumerate(sch.timesteps.tolist()):
        x = sch.step(model(x, t), t, x).prev_sample
        torch.testing.assert_close(traj[i + 1], x, **TOL_DPM, msg=lambda m, i=i, t=t: f"step {i} (t={t}): {m}")
    assert len(traj) == len(ts) + 1


@pytest.mark.parametrize("prediction_type", ["eps", "v"])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("spacing", ["logsnr", "karras"])
@pytest.mark.parametrize("steps", [5, 10, 25])
def test_sde_dpm_solver_trajectory_matches_sde_dpmsolver_plus_plus(prediction_type, clip, spacing, steps):
    """SDE 판: 이 책은 신경망을 부른 뒤 마지막 단계(σ = 0 으로 가는)를 빼고 단계마다 생성기에서 z 를 하나 뽑는다.
    diffusers 에는 같은 생성기에서 같은 순서로 뽑은 z 를 ``variance_noise`` 로 넘긴다."""
    d, model = package(prediction_type), FakeModel()
    ts = d.solver_timesteps(steps, spacing)
    _, traj = d.sample_trajectory(
        model,
        SHAPE,
        sampler="sde-dpm-solver++",
        steps=steps,
        spacing=spacing,
        clip_x0=clip,
        x_T=x_T(),
        generator=torch.Generator().manual_seed(5),
    )
    sch = dpm_scheduler(d, prediction_type, clip, ts, algorithm_type="sde-dpmsolver++")
    g = torch.Generator().manual_seed(5)
    x = x_T()
    for i, t in enumerate(sch.timesteps.tolist()):
        last = i == len(ts) - 1  # σ = 0 으로 가는 마지막 단계: 노이즈의 몫이 0 이라 이 책은 뽑지 않는다
        z = torch.zeros(SHAPE, dtype=F64) if last else torch.randn(SHAPE, generator=g, dtype=F64)
        x = sch.step(model(x, t), t, x, variance_noise=z).prev_sample
        torch.testing.assert_close(traj[i + 1], x, **TOL_DPM, msg=lambda m, i=i, t=t: f"step {i} (t={t}): {m}")
    assert len(traj) == len(ts) + 1
    ode = d.sample(model, SHAPE, sampler="dpm-solver++", steps=steps, spacing=spacing, clip_x0=clip, x_T=x_T())
    assert (ode - x).abs().max() > 100 * TOL_DPM["atol"]  # 노이즈가 실제로 더해졌다 (ODE 판과 다르다)


@pytest.mark.parametrize("steps", [5, 8, 10, 15, 20, 25])
def test_dpm_solver_spacings_match_diffusers_timesteps(steps):
    """λ 균등 간격은 diffusers 의 ``use_lu_lambdas``, Karras 간격은 ``use_karras_sigmas`` 와 같은 정수 시각을 고른다.

    diffusers 는 그 시각을 float32 표에서 보간한다. 시각 50 개 이상이면 반올림 경계에서 한 칸 어긋나는 경우가
    생기므로 책과 벤치마크가 쓰는 25 단계까지만 견준다.
    """
    d = package()
    for spacing, kw in (("logsnr", {"use_lu_lambdas": True}), ("karras", {"use_karras_sigmas": True})):
        sch = DPMSolverMultistepScheduler(num_train_timesteps=T, trained_betas=d.betas.numpy(), **kw)
        sch.set_timesteps(steps)
        assert d.solver_timesteps(steps, spacing) == sch.timesteps.tolist(), spacing


def test_dpm_solver_first_step_and_final_step_orders():
    """diffusers 와 같이 첫 단계(앞 x̂_0 이 없음)와 σ = 0 으로 가는 마지막 단계는 1차, 나머지는 2차다.

    2차 보정을 빼 버린 풀이(모든 단계 1차)는 diffusers 의 2M 과 달라야 한다. 위 궤적 검사가 2차 항을 실제로
    보고 있음을 확인하는 대조군이다.
    """
    d, model = package(), FakeModel()
    ts = d.solver_timesteps(10, "logsnr")
    sch = dpm_scheduler(d, "eps", True, ts)
    theirs = x_T()
    for t in ts:
        theirs = sch.step(model(theirs, t), t, theirs).prev_sample
    first_only = x_T()
    for i, t in enumerate(ts):
        first_only, _ = d.dpm_solver_step(model, first_only, t, ts[i + 1] if i + 1 < len(ts) else -1, None)
    assert (first_only - theirs).abs().max() > 100 * TOL_DPM["atol"]
