"""학습 타임스텝의 분포 p(t) (10장, ``ddpm_ko.timestep_sampling``): 확률표, 뽑기, 설정·명령줄·이어 학습."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import TINY_TRAIN_UNET, benchmark_result, import_benchmark, tiny_train_config
from ddpm_ko.cli import build_parser
from ddpm_ko.diffusion import GaussianDiffusion
from ddpm_ko.schedules import beta_schedule
from ddpm_ko.timestep_sampling import (
    LOGNORMAL_P_MEAN,
    LOGNORMAL_P_STD,
    LOGNORMAL_SHARE,
    TIMESTEP_SAMPLINGS,
    timestep_probabilities,
)
from ddpm_ko.train import TrainConfig, Trainer, resume_config
from ddpm_ko.training_state import checkpoint_contents

T = 1000
IMAGES = np.random.default_rng(0).integers(0, 256, (16, 8, 8), dtype=np.uint8)


def diffusion(kind: str) -> GaussianDiffusion:
    return GaussianDiffusion.from_schedule("linear", T, timestep_sampling=kind)


def half_log_snr_table() -> list[float]:
    """λ_t = ½ log(ᾱ_t / (1 − ᾱ_t)), 선형 β 스케줄을 파이썬 float(64비트)로 곱해 따로 계산한다."""
    out, abar = [], 1.0
    for beta in beta_schedule("linear", T).tolist():
        abar *= 1.0 - beta
        out.append(0.5 * math.log(abar / (1 - abar)))
    return out


@pytest.mark.parametrize("kind", TIMESTEP_SAMPLINGS)
def test_probabilities_are_a_distribution_over_every_timestep(kind):
    p = diffusion(kind).timestep_probs
    assert p.dtype == torch.float64 and p.shape == (T,)
    assert bool((p > 0).all())  # 어느 t 도 빠지지 않는다: 샘플러는 모든 구간에서 신경망을 부른다
    assert abs(float(p.sum()) - 1.0) < 1e-12  # float64 에서 1000 개를 더한 반올림 오차 (~1e-13) 보다 넉넉히


def test_uniform_is_one_over_t_and_draws_the_old_stream():
    """고른 분포는 예전 코드(``randint``)와 같은 난수 흐름이다: 같은 시드의 옛 학습이 비트 단위로 그대로다."""
    d = diffusion("uniform")
    assert torch.equal(d.timestep_probs, torch.full((T,), 1 / T, dtype=torch.float64))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(d.sample_timesteps(64, "cpu", g1), torch.randint(0, T, (64,), generator=g2))


def test_lognormal_cdf_matches_the_closed_form():
    """``lognormal`` 의 누적 분포를 ``math.erf`` 로 따로 계산한 닫힌 꼴과 견준다.

    t 는 λ_t ≤ λ 인 가장 작은 타임스텝이므로 로그 정규 몫의 P(t' ≤ t) = P(λ ≥ λ_t) = 1 − Φ((λ_t − μ)/s),
    μ = −P_mean, s = P_std. 고른 몫을 더한 전체는 share·그것 + (1 − share)·(t + 1)/T 다.
    """
    d = diffusion("lognormal")
    lam = half_log_snr_table()
    cdf = d.timestep_probs.cumsum(0).tolist()
    mu, s = -LOGNORMAL_P_MEAN, LOGNORMAL_P_STD
    for t in range(T - 1):
        phi = 0.5 * (1 + math.erf((lam[t] - mu) / (s * math.sqrt(2))))
        expected = LOGNORMAL_SHARE * (1 - phi) + (1 - LOGNORMAL_SHARE) * (t + 1) / T
        assert abs(cdf[t] - expected) < 1e-12, t  # 둘 다 float64: 누적 합의 반올림 오차만 남는다


def test_lognormal_moves_training_to_low_noise_timesteps():
    """고른 분포는 t < 100 에 10 %, t ≥ 600 에 40 % 를 쓴다. ``lognormal`` 은 그 몫을 노이즈가 작은 쪽으로 옮긴다
    (10장의 진단: 20분 모델의 차이 대부분이 t < 300 에서 나왔다). 숫자는 EDM 의 분포를 선형 스케줄에 옮긴 값이다."""
    p = diffusion("lognormal").timestep_probs
    low, high = float(p[:100].sum()), float(p[600:].sum())
    assert 0.30 < low < 0.34 and 0.19 < high < 0.21
    # 로그 정규 몫만 보면 한가운데(가장 잦은 λ = 1.2)가 t ≈ 88 근처다
    lam = half_log_snr_table()
    t_mid = min(range(T), key=lambda t: abs(lam[t] + LOGNORMAL_P_MEAN))
    assert 80 <= t_mid <= 95


def test_draws_follow_the_probabilities():
    """뽑은 t 의 도수가 확률표를 따른다. 허용치는 n 번 뽑은 다항 분포의 총변동 거리 기댓값
    E ≈ ½ Σ √(2 p(1 − p) / (π n)) 의 1.3 배다 (n = 200,000 에서 그 표준편차는 기댓값의 2 % 쯤이라 1.3 배는 넉넉하다)."""
    d = diffusion("lognormal")
    n = 200_000
    t = d.sample_timesteps(n, "cpu", torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and int(t.min()) >= 0 and int(t.max()) <= T - 1
    freq = torch.bincount(t, minlength=T).double() / n
    p = d.timestep_probs
    tv = 0.5 * float((freq - p).abs().sum())
    expected = 0.5 * float(torch.sqrt(2 * p * (1 - p) / (math.pi * n)).sum())
    assert tv < 1.3 * expected, (tv, expected)
    # 같은 시드면 같은 t (이어 학습이 같은 흐름을 잇는다)
    again = d.sample_timesteps(n, "cpu", torch.Generator().manual_seed(0))
    assert torch.equal(t, again)


def test_impossible_sampling_is_refused():
    with pytest.raises(ValueError, match="unknown timestep"):
        diffusion("logit-normal")
    with pytest.raises(ValueError, match="unknown timestep"):
        timestep_probabilities(torch.linspace(0.99, 0.01, 10), "beta")
    with pytest.raises(ValueError, match="unknown timestep"):
        TrainConfig(timestep_sampling="edm")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--timestep-sampling", "edm"])


def test_cli_flag_reaches_the_config():
    parse = build_parser().parse_args
    assert parse(["train", "--timestep-sampling", "lognormal"]).timestep_sampling == "lognormal"
    assert parse(["train"]).timestep_sampling is None  # 주지 않으면 기본값 (이어 학습이면 체크포인트 값)
    assert TrainConfig().timestep_sampling == "uniform"


def test_trainer_uses_the_sampling_records_it_and_resumes_with_it(tmp_path):
    cfg = tiny_train_config(tmp_path, max_steps=2, timestep_sampling="lognormal")
    trainer = Trainer(TINY_TRAIN_UNET, cfg, images=IMAGES, log=lambda m: None)
    assert trainer.diffusion.timestep_sampling == "lognormal"
    seen: list[torch.Tensor] = []
    draw = trainer.diffusion.sample_timesteps

    def spy(*args, **kwargs):
        seen.append(draw(*args, **kwargs))
        return seen[-1]

    trainer.diffusion.sample_timesteps = spy
    trainer.run()
    assert len(seen) == 2  # 학습 스텝마다 한 번, 이 분포에서 뽑았다
    _, meta = checkpoint_contents(trainer)
    assert meta["train"]["timestep_sampling"] == "lognormal"
    assert resume_config(trainer.checkpoint_path, meta=meta).timestep_sampling == "lognormal"
    # 이 설정이 생기기 전의 체크포인트는 고른 분포로 학습했다: 이어 학습도 그대로
    del meta["train"]["timestep_sampling"]
    assert resume_config(trainer.checkpoint_path, meta=meta).timestep_sampling == "uniform"


# ------------------------------------------------------------------ 10장의 측정 결과 파일
def test_t_sampling_study_is_scored_like_the_seed_grid():
    """``recipe_study_t_sampling.json`` 은 평가 시드 격자와 같은 샘플러·평가 시드로 쟀다: 그래서 바닥값도 같고, 10장이 두 파일의
    학습 시드 평균을 바로 견줄 수 있다. 행마다 실제로 lognormal 로 학습했다."""
    study, grid = benchmark_result("recipe_study_t_sampling"), benchmark_result("recipe_study_seed_grid")
    assert study["eval_sampler"] == grid["eval_sampler"]
    grid_floor = {r["eval_seed"]: r["fid_floor"] for r in grid["results"]}
    eval_seeds: dict[int, set] = {}
    for r in study["results"]:
        assert r["recipe"]["timestep_sampling"] == "lognormal" and r["unet"]["stage_attention"] == "none"
        assert r["fid_floor"] == grid_floor[r["eval_seed"]] and r["num"] == 1000 and r["minutes"] == 20
        eval_seeds.setdefault(r["seed"], set()).add(r["eval_seed"])
    assert eval_seeds == {s: set(grid_floor) for s in (0, 1, 2)}  # 미리 정한 학습 시드 셋, 모두 평가 시드 넷


def test_swap_diagnostic_reproduces_the_unswapped_runs():
    """진단의 '바꾸지 않음' 행은 그 체크포인트를 같은 샘플러·평가 시드로 잰 처방 연구의 행과 같은 계산이다 (같은 FID)."""
    grid = {(r["variant"], r["seed"], r["eval_seed"]): r for r in benchmark_result("recipe_study_seed_grid")["results"]}
    study = {
        (r["variant"], r["seed"], r["eval_seed"]): r for r in benchmark_result("recipe_study_t_sampling")["results"]
    }
    for name, row in (
        ("t_range_swap", grid[("attention-none", 0, 0)]),
        ("t_range_swap_lognormal", study[("attention-none-t-lognormal", 0, 0)]),
    ):
        swap = benchmark_result(name)
        none = next(r for r in swap["results"] if r["swap"] == "none")
        assert swap["eval_seed"] == 0 and swap["weak_steps"] == row["steps"]
        assert abs(none["fid"] - row["fid"]) < 1e-4 and none["strong_calls"] == 0  # 결과 파일은 소수 넷째 자리까지
        assert swap["strong"] == "pretrained"


def test_swap_model_calls_the_strong_network_only_in_its_range():
    """``benchmarks/t_range_swap.py`` 의 ``SwapModel``: t < lo 또는 t ≥ hi 에서만 강한 신경망을 부르고, 배치의 t 가 섞이면 거부한다."""
    swap = import_benchmark("t_range_swap")

    class Const(torch.nn.Module):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value
            self.config = "weak" if value == 0 else "strong"

        def forward(self, x, t):
            return torch.full_like(x, self.value)

    model = swap.SwapModel(Const(0.0), Const(1.0), *swap.SWAPS["below-300"])
    assert model.config == "weak"  # 샘플러는 약한 모델의 설정(모양)을 읽는다
    x = torch.zeros(2, 1, 4, 4)
    for t, expected in ((0, 1.0), (299, 1.0), (300, 0.0), (999, 0.0)):
        assert float(model(x, torch.full((2,), t))[0, 0, 0, 0]) == expected, t
    assert [model.uses_strong(t) for t in (0, 999)] == [True, False]
    high = swap.SwapModel(Const(0.0), Const(1.0), *swap.SWAPS["from-600"])
    assert [high.uses_strong(t) for t in (0, 599, 600, 999)] == [False, False, True, True]
    with pytest.raises(ValueError, match="one timestep"):
        model(x, torch.tensor([0, 500]))
