"""샘플링 반복과 그 설정 검사 (``ddpm_ko.sampling``): 시각 고르기, ``SamplerOptions`` 의 검사, 궤적, t 검사 횟수.

반복이 만드는 분포(DDPM 과 DDIM 의 정확한 통계)는 한 단계의 식을 검사하는 ``test_diffusion.py`` 에 있다.
"""

from __future__ import annotations

import re

import pytest
import torch

from conftest import import_benchmark
from ddpm_ko import sampling
from ddpm_ko.diffusion import GaussianDiffusion
from ddpm_ko.sampling import SAMPLERS, SamplerOptions, ddim_timesteps, sample, sample_trajectory


def shrink(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """t 를 쓰는 아무 모델: 샘플러가 신경망 출력을 어떻게 쓰는지는 이 파일의 관심이 아니다."""
    return 0.1 * x + 1e-3 * t.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)


# ---------------------------------------------------------------------------- 시각 고르기
@pytest.mark.parametrize("T, steps", [(10, 1), (10, 2), (10, 10), (1000, 50), (1000, 7)])
def test_ddim_timesteps(T, steps):
    ts = ddim_timesteps(T, steps)
    assert len(ts) == steps
    assert ts[0] == T - 1
    if steps > 1:
        assert ts[-1] == 0
    assert all(a > b for a, b in zip(ts, ts[1:])), ts
    assert all(0 <= s < T for s in ts)


def test_each_sampler_calls_the_model_at_its_timesteps():
    d = GaussianDiffusion.from_schedule("linear", 20)
    for options in (SamplerOptions("ddpm"), SamplerOptions("ddim", steps=6), SamplerOptions("dpm-solver++", steps=5)):
        seen: list[int] = []

        def model(x, t, seen=seen):
            seen.append(int(t[0]))
            return shrink(x, t)

        sample(d, model, (2, 1, 2, 2), options, generator=torch.Generator().manual_seed(0))
        assert seen == options.timesteps(d), options
    assert SamplerOptions("ddpm").timesteps(d) == list(range(19, -1, -1))


# ---------------------------------------------------------------------------- 설정 검사 (한 곳)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sampler": "euler"}, "unknown sampler"),
        ({"sampler": "ddim", "eta": 1.5}, "eta must be in [0, 1]"),
        ({"sampler": "ddim", "steps": 0}, "steps must be a positive integer"),
        ({"sampler": "ddim", "steps": 2.5}, "steps must be a positive integer"),
        ({"sampler": "ddim", "spacing": "logsnr"}, "spacing only applies"),
        ({"sampler": "dpm-solver++", "eta": 0.5}, "eta only applies to DDIM"),
        ({"sampler": "sde-dpm-solver++", "eta": 1.0}, "eta only applies to DDIM"),
        ({"sampler": "sde-dpm-solver++", "steps": 0}, "positive integer"),
    ],
)
def test_sampler_options_refuse_bad_values(kwargs, message):
    with pytest.raises(ValueError) as info:
        SamplerOptions(**kwargs)
    assert message in str(info.value) and " / " in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sampler": "ddim", "steps": 21}, "DDIM steps cannot exceed T"),
        ({"sampler": "dpm-solver++", "steps": 21}, "DPM-Solver++ steps cannot exceed T"),
        ({"sampler": "ddpm", "steps": 10}, "the DDPM sampler always runs T steps"),
    ],
)
def test_steps_are_checked_against_T(kwargs, message):
    d = GaussianDiffusion.from_schedule("linear", 20)
    with pytest.raises(ValueError, match=re.escape(message)):
        SamplerOptions(**kwargs).timesteps(d)
    with pytest.raises(ValueError, match=re.escape(message)):  # 메서드도 같은 검사를 거친다
        d.sample(shrink, (1, 1, 2, 2), **kwargs)
    assert SamplerOptions("ddpm", steps=20).timesteps(d)[0] == 19  # steps = T 는 DDPM 에도 허용


def test_unknown_variance_is_refused_by_the_ddpm_step():
    d = GaussianDiffusion.from_schedule("linear", 20)
    with pytest.raises(ValueError, match="variance must be 'posterior' or 'beta'"):
        d.sample(shrink, (1, 1, 2, 2), variance="learned")
    with pytest.raises(ValueError, match="variance must be 'posterior' or 'beta'"):
        d.p_mean_variance(shrink, torch.zeros(1, 1, 2, 2), 3, variance="learned")


def test_bad_options_are_refused_before_any_noise_is_drawn():
    d = GaussianDiffusion.from_schedule("linear", 20)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    with pytest.raises(ValueError):
        d.sample_trajectory(shrink, (1, 1, 2, 2), sampler="ddim", steps=21, generator=g)
    assert torch.equal(g.get_state(), state)


# ---------------------------------------------------------------------------- 결과와 궤적
@pytest.mark.parametrize(
    "sampler, steps, stride, frames",
    [
        ("ddim", 5, 1, 6),
        ("ddpm", None, 1, 13),
        ("ddpm", None, 5, 4),  # 5, 10 번째 단계와 마지막(12) → x_T 포함 4 장
        ("dpm-solver++", 4, 3, 3),
    ],
)
def test_trajectory_frames_and_same_images_as_sample(sampler, steps, stride, frames):
    T = 12
    d = GaussianDiffusion.from_schedule("linear", T)
    B = 3
    x_T = torch.randn(B, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    out, traj = d.sample_trajectory(
        shrink,
        (B, 1, 4, 4),
        sampler=sampler,
        steps=steps,
        stride=stride,
        x_T=x_T,
        generator=torch.Generator().manual_seed(1),
    )
    assert traj.shape == (frames, B, 1, 4, 4)
    assert traj.device.type == "cpu"
    assert torch.equal(traj[-1], out)
    assert torch.equal(traj[0], x_T)
    # 궤적 없이 뽑아도 같은 결과
    plain = d.sample(
        shrink, (B, 1, 4, 4), sampler=sampler, steps=steps, x_T=x_T, generator=torch.Generator().manual_seed(1)
    )
    assert isinstance(plain, torch.Tensor) and torch.equal(plain, out)


def test_trajectory_without_x_T_draws_the_same_start_as_sample():
    d = GaussianDiffusion.from_schedule("linear", 10)
    opts = SamplerOptions("ddpm")
    a = sample(d, shrink, (2, 1, 3, 3), opts, generator=torch.Generator().manual_seed(4))
    b, frames = sample_trajectory(d, shrink, (2, 1, 3, 3), opts, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert torch.equal(frames[0], torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(4)))


def test_trajectory_stride_must_be_positive():
    d = GaussianDiffusion.from_schedule("linear", 10)
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        d.sample_trajectory(shrink, (1, 1, 2, 2), stride=0)


def test_default_sampler_is_one_of_the_samplers():
    assert sampling.DEFAULT_SAMPLER in SAMPLERS
    from ddpm_ko import diffusion

    # 정의는 sampling.py 한 곳뿐이다 (diffusion.py 가 다시 내보내지 않는다)
    assert not hasattr(diffusion, "DEFAULT_SAMPLER") and not hasattr(diffusion, "SAMPLERS")


# ---------------------------------------------------------------------------- t 는 들어오는 곳에서 한 번만 검사
@pytest.fixture
def t_checks(monkeypatch):
    """``check_t`` 와 ``Tensor.any`` (장치와 주고받는 범위 검사)를 부른 횟수를 센다."""
    counts = {"check_t": 0, "any": 0}
    check_t, tensor_any = GaussianDiffusion.check_t, torch.Tensor.any

    def counting_check_t(self, *args, **kwargs):
        counts["check_t"] += 1
        return check_t(self, *args, **kwargs)

    def counting_any(self, *args, **kwargs):
        counts["any"] += 1
        return tensor_any(self, *args, **kwargs)

    monkeypatch.setattr(GaussianDiffusion, "check_t", counting_check_t)
    monkeypatch.setattr(torch.Tensor, "any", counting_any)
    return counts


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_one_p_sample_step_checks_t_once(t_checks, prediction_type):
    d = GaussianDiffusion.from_schedule("linear", 50, prediction_type=prediction_type)
    x = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    d.p_sample(shrink, x, 30, generator=torch.Generator().manual_seed(1))
    assert t_checks == {"check_t": 1, "any": 0}  # 정수 t 는 장치와 주고받지 않고 검사한다
    d.p_mean_variance(shrink, x, torch.tensor([1, 2, 3, 4]))
    assert t_checks == {"check_t": 2, "any": 1}  # 텐서 t 는 .any() 한 번


def test_other_steps_and_the_loss_check_t_once(t_checks):
    d = GaussianDiffusion.from_schedule("linear", 50, prediction_type="v")
    x = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    d.ddim_step(shrink, x, 30, 20, eta=0.5, generator=torch.Generator().manual_seed(1))
    d.dpm_solver_step(shrink, x, 30, 20, history=(40, x))
    assert t_checks["check_t"] == 2
    d.training_loss(shrink, x, torch.tensor([1, 2, 3, 4]))
    assert t_checks == {"check_t": 3, "any": 1}


@pytest.mark.parametrize(
    "call",
    [
        lambda d, x: d.p_sample(shrink, x, 50),
        lambda d, x: d.p_sample(shrink, x, -1),
        lambda d, x: d.ddim_step(shrink, x, 50, 10),
        lambda d, x: d.p_mean_variance(shrink, x, torch.tensor([0, 50])),
        lambda d, x: d.model_predictions(shrink, x, torch.tensor([0, 50])),
        lambda d, x: d.eps_x0_from_output(x, torch.tensor([-1, 0]), x),
        lambda d, x: d.predict_x0_from_eps(x, torch.tensor([0, 50]), x),
        lambda d, x: d.get_v(x, x, torch.tensor([0, 50])),
        lambda d, x: d.training_loss(shrink, x, torch.tensor([0, 50])),
    ],
)
def test_bad_t_still_gets_the_clear_error_at_every_entry(call):
    d = GaussianDiffusion.from_schedule("linear", 50)
    with pytest.raises(ValueError, match=r"t out of range \[0, T-1\]"):
        call(d, torch.zeros(2, 1, 2, 2))


def test_defaults_follow_the_measured_rule():
    """기본 샘플러·스텝 수·간격은 측정이 정한다 (이슈 14, 15): ``benchmarks/results/quality_vs_nfe.json`` 의 점들 가운데
    신경망 호출 25 번 이하에서 기준 FID 의 1.1배 안에 드는 가장 싼 설정. 기준은 DDPM 1000 스텝의 FID 이고, 25 번 이하의
    어느 설정도 그 1.1배 안에 들지 못하면 25 번 이하에서 가장 낮은 FID 다. 결과 파일의 점들에 규칙(벤치마크의
    ``summarize``; 규칙 자체는 tests/test_cli_usability.py 가 만든 점들로 검사한다)을 다시 적용해, 벤치마크가 적은
    ``recommended`` 와 패키지의 상수가 그것과 같은지, 그 결과 파일이 지금 책이 싣는 모델로 잰 것인지 본다."""
    import copy
    import json
    from pathlib import Path

    from ddpm_ko import solvers
    from ddpm_ko.pretrained import PRETRAINED_NAME, SHIPPED_SHA256

    bench = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/quality_vs_nfe.json").read_text())
    assert bench["checkpoint_sha256"] == SHIPPED_SHA256[PRETRAINED_NAME], (
        "기본값을 정한 측정이 지금 싣는 모델의 것이 아니다"
    )
    rows = bench["results"]
    ddpm = [r for r in rows if r["sampler"] == "ddpm"]
    assert len(ddpm) == 1 and ddpm[0]["num"] >= 1000, "DDPM 1000 스텝의 점(N ≥ 1000)이 측정에 없다"
    assert all(r["num"] == ddpm[0]["num"] for r in rows), "모든 점이 같은 N 이어야 견줄 수 있다"
    quality_vs_nfe = import_benchmark("quality_vs_nfe")
    reruns = quality_vs_nfe.load_reruns("quality_vs_nfe", bench)  # 같은 모델·N 을 다른 시드로 다시 잰 점들
    assert all(b["checkpoint_sha256"] == bench["checkpoint_sha256"] and b["num"] == bench["num"] for b in reruns)
    best = quality_vs_nfe.summarize(copy.deepcopy(rows), reruns)  # summarize 는 행에 DDPM 대비 값을 채워 넣는다
    assert best is not None, "호출 상한 안의 점이 측정에 없다"
    assert best["rerun_seeds"] == [b["seed"] for b in reruns]
    # 답은 모든 시드에서 잰 점이어야 한다 (한 시드의 운 좋은 값이 여러 시드의 평균을 이기지 않도록)
    assert best["fid_seeds"] == 1 + len(reruns), "답을 다른 시드의 파일에서도 재야 한다 (quality_vs_nfe.py --seed K)"
    assert bench["recommended"] == best
    assert sampling.DEFAULT_SAMPLER == best["sampler"]
    if best["sampler"] in sampling.SOLVER_SAMPLERS:
        assert (solvers.DEFAULT_STEPS, solvers.DEFAULT_SPACING) == (best["steps"], best["spacing"])
