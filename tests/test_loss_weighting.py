"""Min-SNR-γ 손실 가중치 (Hang et al., 2023; 10장): 예측 대상마다의 무게, 설정·명령줄·이어 학습."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_TRAIN_UNET, benchmark_result, import_benchmark, tiny_train_config
from ddpm_ko.cli import build_parser
from ddpm_ko.diffusion import GaussianDiffusion
from ddpm_ko.train import TrainConfig, Trainer, resume_config
from ddpm_ko.training_state import checkpoint_contents

T = 1000
GAMMA = 5.0
IMAGES = np.random.default_rng(0).integers(0, 256, (16, 8, 8), dtype=np.uint8)
#: 같은 학습임을 가리는 처방 연구 행의 항목 (다른 샘플러·평가 시드로 다시 재도 그대로다)
RUN_FINGERPRINT = ("steps", "train_seconds", "final_loss", "recipe", "precision", "unet")


def diffusion(prediction_type: str, gamma: float | None = GAMMA) -> GaussianDiffusion:
    return GaussianDiffusion.from_schedule(
        "linear", T, prediction_type=prediction_type, dtype=torch.float64, min_snr_gamma=gamma
    )


def snr(d: GaussianDiffusion, t: torch.Tensor) -> torch.Tensor:
    abar = d.alphas_cumprod[t]
    return abar / (1 - abar)


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_every_target_weights_the_x0_error_by_min_snr_gamma(prediction_type):
    """어느 예측 대상이든 가중 손실 = min(SNR, γ)·‖x_0 − x̂_0‖² 의 배치 평균 (식 ch10-eq-min-snr).

    신경망 출력을 임의의 값으로 두고, 그 출력에서 x̂_0 을 되살려 x_0 공간의 오차로 직접 계산한 값과 견준다.
    ``training_loss`` 는 신경망 출력을 float32 로 바꿔 계산하므로(혼합 정밀도에서도 손실은 float32) 두 값은
    float32 반올림만큼 다르다: 연산마다 상대 ~1e-7, 여기서는 몇 번의 연산이므로 상대 1e-6 이면 넉넉하다.
    """
    d = diffusion(prediction_type)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 100, 300, 600, 999])  # SNR 이 γ 보다 큰 t 와 작은 t 를 모두
    out = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    loss = d.training_loss(lambda x, tt: out, x0, t=t, noise=noise)

    xt = d.q_sample(x0, t, noise)
    x0_hat = {
        "eps": lambda: d.predict_x0_from_eps(xt, t, out),
        "x0": lambda: out,
        "v": lambda: d.predict_x0_from_v(xt, t, out),
    }[prediction_type]()
    s = snr(d, t)
    expected = (s.clamp(max=GAMMA) * (x0 - x0_hat).square().flatten(1).mean(1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert (s[:2] > GAMMA).all() and (s[-2:] < GAMMA).all()


def test_eps_weight_is_one_where_snr_is_below_gamma_and_shrinks_above():
    d = diffusion("eps")
    t = torch.arange(T)
    w, s = d.loss_weight(t).double(), snr(d, t)
    assert torch.equal(w[s < GAMMA], torch.ones_like(w[s < GAMMA]))
    torch.testing.assert_close(w[s >= GAMMA], GAMMA / s[s >= GAMMA], rtol=1e-6, atol=0)  # float32 로 돌려준다
    assert w[0] < 1e-3  # t = 1 의 SNR ≈ 1e4: 거의 무게가 없다


def test_without_gamma_the_loss_is_plain_l_simple():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    out = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 50, 500, 900])
    plain = diffusion("eps", None)
    assert torch.equal(plain.loss_weight(t), torch.ones(4))
    expected = torch.nn.functional.mse_loss(out.float(), noise)  # training_loss 는 출력을 float32 로 받는다
    assert torch.equal(plain.training_loss(lambda x, tt: out, x0, t=t, noise=noise), expected)
    # γ 가 어떤 SNR 보다 크면 ε 예측의 무게는 모두 1: L_simple 과 같은 값 (반올림 차이만)
    huge = diffusion("eps", 1e12)
    assert huge.training_loss(lambda x, tt: out, x0, t=t, noise=noise).item() == pytest.approx(
        expected.item(), rel=1e-12
    )


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"min_snr_gamma": 0.0}, "min_snr_gamma must be > 0"),
        ({"min_snr_gamma": 5.0, "loss_type": "l1"}, "needs loss_type 'l2'"),
    ],
)
def test_impossible_weighting_is_refused(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        GaussianDiffusion.from_schedule("linear", 10, **kwargs)
    with pytest.raises(ValueError, match="min_snr_gamma must be > 0 with loss 'l2'"):
        TrainConfig(**{"loss_type": "l2", **kwargs})


def test_loss_weight_checks_the_timesteps():
    with pytest.raises(ValueError, match="out of range"):
        diffusion("eps").loss_weight(torch.tensor([T]))


def test_cli_flags_for_weighting_and_flip():
    parse = build_parser().parse_args
    a = parse(["train", "--min-snr-gamma", "0", "--no-flip"])
    assert a.min_snr_gamma == 0 and a.flip is False
    a = parse(["train"])
    assert a.min_snr_gamma is None and a.flip is None  # 주지 않으면 기본값 (이어 학습이면 체크포인트 값)
    with pytest.raises(SystemExit):
        parse(["train", "--min-snr-gamma", "-1"])


def test_trainer_uses_the_weighting_and_records_it(tmp_path):
    cfg = tiny_train_config(tmp_path, max_steps=1, min_snr_gamma=3.0)
    trainer = Trainer(TINY_TRAIN_UNET, cfg, images=IMAGES, log=lambda m: None)
    assert trainer.diffusion.min_snr_gamma == 3.0
    trainer.run()
    _, meta = checkpoint_contents(trainer)
    assert meta["train"]["min_snr_gamma"] == 3.0


def test_a_checkpoint_from_before_the_weighting_resumes_without_it(tmp_path):
    """기본값이 바뀐 설정이 없는 옛 체크포인트는 그때의 기본값(가중치 없음, 반전 켬)으로 학습했다: 이어 학습도 그대로."""
    trainer = Trainer(
        TINY_TRAIN_UNET,
        tiny_train_config(tmp_path, max_steps=1, min_snr_gamma=3.0),
        images=IMAGES,
        log=lambda m: None,
    )
    trainer.run()
    _, meta = checkpoint_contents(trainer)
    assert resume_config(trainer.checkpoint_path, meta=meta).min_snr_gamma == 3.0
    del meta["train"]["min_snr_gamma"], meta["train"]["flip"]
    legacy = resume_config(trainer.checkpoint_path, meta=meta)
    assert legacy.min_snr_gamma is None and legacy.flip is True  # 좌우 반전도 그때의 기본값(켬)으로 잇는다


def test_default_recipe_follows_the_study():
    """기본 처방은 측정이 정한다 (issue 15, 10장): ``benchmarks/results/recipe_study.json`` 에서 같은 20분 시간 예산으로
    학습한 변형 가운데 특징 FID (N ≥ 1000) 가 가장 낮은 것의 좌우 반전·Min-SNR 설정이 ``TrainConfig()`` 의 기본값이다."""
    rows = [r for r in benchmark_result("recipe_study")["results"] if r["minutes"] == 20]
    assert len(rows) >= 4 and all(r["num"] >= 1000 for r in rows)
    assert len({r["seed"] for r in rows}) == 1  # 같은 시드끼리 견준다
    best = min(rows, key=lambda r: r["fid"])
    defaults = TrainConfig()
    assert (defaults.flip, defaults.min_snr_gamma) == (best["recipe"]["flip"], best["recipe"]["min_snr_gamma"])
    # 나머지 처방은 연구하는 동안 바꾸지 않았다: 모든 변형이 지금 기본값과 같은 배치·학습률·예측 대상으로 학습했다
    for r in rows:
        recipe = r["recipe"]
        assert (recipe["batch_size"], recipe["lr"], recipe["prediction_type"]) == (
            defaults.batch_size,
            defaults.lr,
            defaults.prediction_type,
        )


def test_recipe_study_eval_sampler_option():
    """처방 연구의 ``--eval-sampler``: 한 결과 파일의 행은 같은 샘플러로 잰다. ``default`` 는 책의 지금 기본 샘플러다."""
    import argparse

    from ddpm_ko.sampling import DEFAULT_SAMPLER
    from ddpm_ko.solvers import DEFAULT_SPACING, DEFAULT_STEPS

    recipe_study = import_benchmark("recipe_study")
    parse = recipe_study.parse_eval_sampler
    assert parse("pinned") == recipe_study.EVAL_SAMPLER == {"sampler": "dpm-solver++", "steps": 10, "spacing": "logsnr"}
    assert parse("default") == {"sampler": DEFAULT_SAMPLER, "steps": DEFAULT_STEPS, "spacing": DEFAULT_SPACING}
    assert parse("sde-dpm-solver++:20:karras") == {"sampler": "sde-dpm-solver++", "steps": 20, "spacing": "karras"}
    assert parse("ddim:50") == {"sampler": "ddim", "steps": 50, "spacing": None}
    assert parse("dpm-solver++:15") == {"sampler": "dpm-solver++", "steps": 15, "spacing": DEFAULT_SPACING}
    for bad in ("ddim", "ddim:many", "dpm-solver++:10:cosine", "euler:10", "ddim:50:karras"):
        with pytest.raises(argparse.ArgumentTypeError, match="/"):
            parse(bad)
    # 세 번째 연구의 파일은 책의 기본 샘플러로 쟀고, 그 사실이 파일에 적혀 있다
    round3 = benchmark_result("recipe_study_round3")
    assert round3["eval_sampler"]["spacing"] == "karras" and round3["eval_sampler"]["steps"] == 15


def test_recipe_study_rescored_files_are_the_same_runs():
    """샘플러만 바꿔 다시 잰 처방 연구 파일의 행은 같은 연구의 같은 학습이다 (다시 학습하지 않았다).

    같은 (변형, 시드) 의 행끼리 학습 스텝, 학습 시간, 마지막 손실, 처방이 같아야 하고, 평가 샘플러만 다르다.
    """

    def rows(name: str) -> tuple[dict, dict]:
        data = benchmark_result(name)
        return data["eval_sampler"], {(r["variant"], r["seed"]): r for r in data["results"]}

    studies = {  # 기준 파일들 (책의 기본 샘플러로 잰 학습) → 그 학습을 다른 샘플러로 다시 잰 파일들
        ("recipe_study_round3", "recipe_study_round3_dim24"): (
            "recipe_study_round3_pinned",
            "recipe_study_round3_sde20",
        ),
        ("recipe_study_round3_dim40",): ("recipe_study_round3_dim40_sde20",),
        ("recipe_study_round4",): ("recipe_study_round4_sde20",),
        ("recipe_study_round5",): ("recipe_study_round5_sde20",),
        ("recipe_study_samesteps",): ("recipe_study_samesteps_sde20",),
    }
    for base_names, rescored_names in studies.items():
        base_sampler, base = rows(base_names[0])
        for extra in base_names[1:]:
            base.update(rows(extra)[1])
        seen = 0
        for name in rescored_names:
            sampler, rescored = rows(name)
            assert sampler != base_sampler
            for key, r in rescored.items():
                b = base[key]  # 기준 파일에 없는 (변형, 시드) 는 없다
                assert {k: r[k] for k in RUN_FINGERPRINT} == {k: b[k] for k in RUN_FINGERPRINT}, (name, key)
                seen += 1
        assert seen >= 1, rescored_names
    # 세 번째 연구와 그 뒤의 측정은 모든 학습을 두 샘플러로 쟀다 (10장의 표는 두 파일의 같은 행을 짝짓는다)
    for name in ("recipe_study_round4", "recipe_study_round5", "recipe_study_samesteps"):
        assert set(rows(f"{name}_sde20")[1]) == set(rows(name)[1]), name


def test_recipe_study_eval_seeds_option():
    """처방 연구의 ``--eval-seeds``: 서로 다른 0 이상의 정수들만 받는다."""
    import argparse

    parse = import_benchmark("recipe_study").parse_seeds
    assert parse("0,1,2,3") == [0, 1, 2, 3] and parse("5") == [5]
    for bad in ("", "1,1", "-1", "a", "0,,x"):
        with pytest.raises(argparse.ArgumentTypeError, match="/"):
            parse(bad)


def test_recipe_study_seed_grid_rescores_the_same_runs():
    """평가 시드 격자(``recipe_study_seed_grid``): 끝난 학습을 다시 학습하지 않고 같은 평가 시드들로 다시 쟀다.

    - 행마다 그 학습이 기준 파일(기본 처방은 ``recipe_study_round3``, 어텐션 없음은 ``recipe_study_round4``)에 있고
      학습 스텝·시간·마지막 손실·처방이 같다.
    - 학습 시드마다 평가 시드가 모두 같다 (그래야 평가 시드로 짝지어 견준다). 바닥값은 평가 시드만의 값이라 변형과
      학습 시드에 상관없이 같다.
    - 평가 시드가 학습 시드와 같은 행은 같은 계산이다: 같은 체크포인트, 같은 샘플러, 같은 시드로 SDE 판 파일
      (``_sde20``)이 잰 FID 와 같다 (두 번 다 이 종류의 기계에서 쟀다; 네 자리로 반올림한 값을 견준다).
    """
    grid = benchmark_result("recipe_study_seed_grid")
    base = {
        (r["variant"], r["seed"]): r
        for name in ("recipe_study_round3", "recipe_study_round4")
        for r in benchmark_result(name)["results"]
    }
    sde = {
        (r["variant"], r["seed"]): r
        for name in ("recipe_study_round3_sde20", "recipe_study_round4_sde20")
        for r in benchmark_result(name)["results"]
    }
    assert grid["eval_sampler"] == benchmark_result("recipe_study_round4_sde20")["eval_sampler"]
    eval_seeds: dict[tuple, set] = {}
    floors: dict[int, set] = {}
    for r in grid["results"]:
        key = (r["variant"], r["seed"])
        assert {k: r[k] for k in RUN_FINGERPRINT} == {k: base[key][k] for k in RUN_FINGERPRINT}, key
        eval_seeds.setdefault(key, set()).add(r["eval_seed"])
        floors.setdefault(r["eval_seed"], set()).add(r["fid_floor"])
        if r["eval_seed"] == r["seed"]:
            assert r["fid"] == sde[key]["fid"] and r["fid_floor"] == sde[key]["fid_floor"], key
    assert {"default", "attention-none"} <= {k[0] for k in eval_seeds}
    assert len({frozenset(v) for v in eval_seeds.values()}) == 1 and len(next(iter(eval_seeds.values()))) >= 3
    assert all(len(v) == 1 for v in floors.values()), floors


ROOT = Path(__file__).resolve().parents[1]


def test_third_fine_tune_is_scored_like_the_shipped_model():
    """``fine_tune_3_quality.json`` (10장): 책이 싣는 모델에서 출발했고, 평가 시드마다 그 모델의 측정과 같은 N·바닥값(같은 진짜
    이미지)으로 쟀다. 후보 가중치 파일이 그 측정의 파일이다."""
    from ddpm_ko.pretrained import pretrained_stages

    ft3 = benchmark_result("fine_tune_3_quality")
    shipped = pretrained_stages()[-1]  # 책이 싣는 파일 (SHA-256, 그 파일까지의 전체 스텝)
    assert ft3["model"]["init_from_sha256"] == shipped["sha256"]
    assert ft3["model"]["total_steps"] == shipped["total_steps"] + ft3["model"]["steps"]
    assert sorted(e["seed"] for e in ft3["evaluations"]) == [0, 1, 2, 3]
    candidate = ROOT / "benchmarks/candidates/fashion_mnist_ema_ft3.safetensors"
    for e in ft3["evaluations"]:
        ref = benchmark_result("quality_vs_nfe" if e["seed"] == 0 else f"quality_vs_nfe_seed{e['seed']}")
        assert (e["num"], e["fid_floor"]) == (ref["num"], ref["fid_floor"])
        assert e["checkpoint_step"] == ft3["model"]["steps"]
        labels = {r["label"] for r in e["results"]}
        assert (
            labels == {"SDE-DPM-Solver++-20-karras", "DPM-Solver++-15-karras"} <= {r["label"] for r in ref["results"]}
        )
    assert ft3["model"]["checkpoint_sha256"] == ft3["evaluations"][0]["checkpoint_sha256"]
    meta = json.loads(candidate.with_suffix(".json").read_text(encoding="utf-8"))
    assert (
        meta["step"] == ft3["model"]["steps"] and meta["init_from_model"]["sha256"] == ft3["model"]["init_from_sha256"]
    )
