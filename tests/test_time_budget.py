"""시간 예산 학습 (``ddpm_ko.time_budget``, ``ddpm-ko train --time-budget``) 검사.

시간을 재는 검사는 하지 않는다: ``Trainer(clock=...)`` 에 가짜 시계를 준다. ``Trainer.run`` 은 학습 고리 앞에서 한 번,
스텝마다 한 번 시계를 부르므로, 부를 때마다 정해진 만큼 가는 시계는 '한 스텝에 dt 초'인 기계와 같다. dt 와 예산은
2 의 거듭제곱 분수(0.25 초, 15 초)라 float 덧셈이 정확하고, 다다른 스텝 수를 그대로 비교할 수 있다.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist

from conftest import TINY_TRAIN_UNET, tiny_train_config
from ddpm_ko.checkpoint import read_checkpoint
from ddpm_ko.time_budget import (
    EMA_WINDOW_FRACTION,
    LR_FLOOR,
    MEASURE_STEPS,
    SKIP_STEPS,
    TimeBudget,
    budget_ema_decay,
    budget_lr,
)
from ddpm_ko.train import Trainer, lr_at, resume_config

SRC = Path(__file__).resolve().parents[1] / "src"
IMAGES = np.random.default_rng(0).integers(0, 256, (32, 8, 8), dtype=np.uint8)  # 에폭당 4 배치
LR = 1e-3
BUDGET_MIN = 0.25  # 15 초
DT = 0.25  # 가짜 시계의 한 스텝 (초): 예산 15 초 = 60 스텝


def step_clock(dt: float = DT, first: float | None = None) -> Callable[[], float]:
    """가짜 시계: 0 에서 시작해 부를 때마다 dt 초 간다 (첫 스텝만 ``first`` 초: 한 번만 드는 비용)."""
    times = itertools.accumulate(itertools.chain([0.0, dt if first is None else first], itertools.repeat(dt)))
    return lambda: next(times)


def budget_trainer(
    out_dir: Path, clock: Callable[[], float], log: Callable[[str], None] = lambda m: None, **overrides
) -> Trainer:
    """예산 15 초의 아주 작은 학습 (conftest 의 tiny_train_config: 배치 8, 워밍업 3 스텝, 매 스텝 기록)."""
    cfg = tiny_train_config(out_dir, **{"time_budget": BUDGET_MIN, "lr": LR, **overrides})
    return Trainer(TINY_TRAIN_UNET, cfg, images=IMAGES, log=log, clock=clock)


def sidecar(out_dir: Path) -> dict:
    ckpt = out_dir / "checkpoint.safetensors"
    meta = json.loads(ckpt.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta == read_checkpoint(ckpt, prefixes=())[1]  # JSON 사본과 safetensors 헤더가 같다
    return meta


# ------------------------------------------------------------------------------------------ 한 번의 실행
@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> SimpleNamespace:
    """예산 15 초, 한 스텝 0.25 초: 끊지 않고 한 번에 학습한 실행 (여러 검사가 함께 본다)."""
    out = tmp_path_factory.mktemp("straight")
    logs: list[str] = []
    trainer = budget_trainer(out, step_clock(), log=logs.append)
    result = trainer.run()
    return SimpleNamespace(
        out=out,
        result=result,
        logs=logs,
        last_lr=trainer.optimizer.param_groups[0]["lr"],
        lrs=[trainer.lr_at(n) for n in range(trainer.step)],
        ema_decay=trainer.ema.decay,
    )


def test_budget_run_stops_when_the_trained_time_reaches_the_budget(straight):
    result, steps = straight.result, 60  # 15 초 / 0.25 초
    assert result["step"] == steps and result["wall_time_s"] == 15.0
    assert result["end"] == {"step": steps, "reason": "time_budget", "target_steps": steps}
    meta = sidecar(straight.out)
    assert meta["end"] == result["end"] and meta["train"]["time_budget"] == BUDGET_MIN
    assert meta["train"]["max_steps"] is None and meta["train"]["epochs"] is None  # 상한 없이 예산만
    assert meta["time_budget"] == {
        "minutes": BUDGET_MIN,
        "steps_reached": steps,
        "estimated_total_steps": steps,
        "cap_steps": None,
        "schedule_steps": steps,
        "wall_time_s": 15.0,
        "seconds_per_step": DT,
        "ema_decay": budget_ema_decay(steps),
        "ema_window": EMA_WINDOW_FRACTION,
        "lr_floor": LR_FLOOR,
        "reached": True,
    }
    assert not any("warm-up" in m for m in straight.logs)  # 워밍업 3 스텝은 60 스텝 예산에 짧다: 경고 없음


def test_budget_lr_decays_to_the_floor_at_the_end_and_warms_up_as_before(straight):
    # 마지막 스텝이 실제로 쓴 학습률: 코사인 끝 (cos π = −1 은 정확하다)
    assert straight.last_lr == LR * LR_FLOOR
    lrs = straight.lrs
    assert lrs[:2] == [lr_at(n, LR, 3) for n in range(2)]  # 워밍업(3 스텝)은 예산이 없을 때와 같다
    # 워밍업이 끝나는 스텝에서는 코사인이 이미 조금 내려와 있다: (1 + cos(π·3/60))/2 = 0.9938 → 0.994·LR
    assert lrs[2] == pytest.approx(LR * (LR_FLOOR + (1 - LR_FLOOR) * 0.9938), rel=1e-4)  # 넷째 자리까지 쓴 값
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:]))  # 워밍업 뒤에는 끝까지 줄기만 한다
    assert lrs[-1] == LR * LR_FLOOR
    # EMA: 창 1/(1 − d) 가 전체 스텝의 EMA_WINDOW_FRACTION (60 스텝의 10 % = 6 스텝)
    assert straight.ema_decay == budget_ema_decay(60)
    # 0.1 의 float 반올림 때문에 1/(0.1·60) 는 1/6 에서 마지막 비트가 다를 수 있다 (1e-15 상대)
    assert 1 / (1 - straight.ema_decay) == pytest.approx(EMA_WINDOW_FRACTION * 60, rel=1e-12)


def test_ema_window_sets_the_budget_ema_and_is_recorded(tmp_path):
    """``ema_window`` (``--ema-window``): EMA 창 1/(1 − d) 가 전체 스텝의 그 몫이 되고, 사이드카에 남는다."""
    trainer = budget_trainer(tmp_path, step_clock(), ema_window=0.5)
    trainer.run()
    assert trainer.ema.decay == budget_ema_decay(60, 0.5)
    assert 1 / (1 - trainer.ema.decay) == pytest.approx(30, rel=1e-12)  # 60 스텝의 절반
    record = sidecar(tmp_path)["time_budget"]
    assert record["ema_window"] == 0.5 and record["ema_decay"] == trainer.ema.decay
    assert budget_ema_decay(60, 1 / 60) == 0.0  # 창이 한 스텝이면 평균하지 않는다


def test_lr_floor_sets_the_last_lr_and_is_recorded(tmp_path):
    """``lr_floor`` (``--lr-floor``): 예산 끝의 학습률이 lr 의 그 몫이 되고 (0 이면 0), 사이드카에 남는다."""
    trainer = budget_trainer(tmp_path, step_clock(), lr_floor=0.0)
    trainer.run()
    lrs = [trainer.lr_at(n) for n in range(trainer.step)]
    assert trainer.step == 60 and lrs[-1] == 0.0  # 코사인의 끝 cos π = −1 은 정확하다
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:]))  # 워밍업 뒤에는 0 까지 줄기만 한다
    # 같은 스텝의 학습률은 기본 바닥(0.1)의 것보다 낮고, 그 차이는 바닥이 그대로 올리는 몫 f·(1 − c)·lr 이다
    default = [budget_lr(n, lr_at(n, LR, 3), LR, 60.0) for n in range(60)]
    assert lrs[:2] == default[:2]  # 워밍업은 같다
    assert all(d - x == pytest.approx(LR * LR_FLOOR * (1 - x / LR), rel=1e-9) for d, x in zip(default[2:], lrs[2:]))
    assert sidecar(tmp_path)["time_budget"]["lr_floor"] == 0.0
    assert budget_lr(9, LR, LR, 10.0, floor=0.5) == LR * 0.5  # 마지막 스텝 (n + 1 = N̂)


@pytest.mark.parametrize("floor", [-0.1, 1.5, float("nan")])
def test_impossible_lr_floor_is_refused(tmp_path, floor):
    with pytest.raises(ValueError, match=r"lr_floor.*/"):
        tiny_train_config(tmp_path, time_budget=BUDGET_MIN, lr_floor=floor)


@pytest.mark.parametrize("window", [0.0, -0.1, 1.5])
def test_impossible_ema_window_is_refused(tmp_path, window):
    with pytest.raises(ValueError, match=r"ema_window.*/"):
        tiny_train_config(tmp_path, time_budget=BUDGET_MIN, ema_window=window)


def test_without_a_budget_the_schedule_is_the_old_one(tmp_path):
    cfg = tiny_train_config(tmp_path, max_steps=8, lr=LR, warmup_steps=3)
    trainer = Trainer(TINY_TRAIN_UNET, cfg, images=IMAGES, log=lambda m: None, clock=step_clock())
    trainer.run()
    assert trainer.budget is None and trainer.ema.decay == cfg.ema_decay
    assert [trainer.lr_at(n) for n in range(8)] == [LR / 3, 2 * LR / 3] + [LR] * 6
    assert "time_budget" not in sidecar(tmp_path) and sidecar(tmp_path)["end"]["reason"] == "max_steps"


@pytest.mark.parametrize("cap,reason,steps", [({"max_steps": 30}, "max_steps", 30), ({"epochs": 7}, "epochs", 28)])
def test_max_steps_or_epochs_cap_a_budget_run(tmp_path, cap, reason, steps):
    """상한이 예산보다 먼저 오면 거기서 끝나고, 학습률 감쇠와 EMA 창도 예산이 아니라 그 상한에 맞춘다."""
    trainer = budget_trainer(tmp_path, step_clock(), **cap)  # 예산은 60 스텝, 상한은 30 스텝 (또는 7 에폭 × 4)
    result = trainer.run()
    assert result["end"] == {"step": steps, "reason": reason, "target_steps": steps}
    block = sidecar(tmp_path)["time_budget"]
    assert block["steps_reached"] == steps and block["wall_time_s"] == steps * DT and block["reached"] is False
    assert block["estimated_total_steps"] == 60  # 예산이 허락했을 스텝 수
    assert block["cap_steps"] == block["schedule_steps"] == steps  # 학습률·EMA 가 맞춘 스텝 수
    # 끝난 스텝이 코사인의 끝이다: 마지막 스텝이 바닥 학습률을 쓰고, 그 앞은 줄기만 한다
    lrs = [trainer.lr_at(n) for n in range(steps)]
    assert lrs[-1] == trainer.optimizer.param_groups[0]["lr"] == LR * LR_FLOOR
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:]))
    assert trainer.ema.decay == block["ema_decay"] == budget_ema_decay(steps)


def test_a_cap_beyond_the_budget_changes_nothing(tmp_path, straight):
    """상한이 예산이 허락하는 스텝 수보다 크면 예산만 준 학습과 스텝·학습률·손실 기록·EMA 가 모두 같다."""
    trainer = budget_trainer(tmp_path, step_clock(), max_steps=1000)
    result = trainer.run()
    assert result["end"] == straight.result["end"] and result["loss_history"] == straight.result["loss_history"]
    assert [trainer.lr_at(n) for n in range(trainer.step)] == straight.lrs
    assert trainer.ema.decay == straight.ema_decay
    block = sidecar(tmp_path)["time_budget"]
    assert (block["cap_steps"], block["schedule_steps"], block["estimated_total_steps"]) == (1000, 60, 60)


def test_a_warmup_longer_than_half_the_budget_is_reported(tmp_path):
    logs: list[str] = []
    budget_trainer(tmp_path, step_clock(), warmup_steps=40, max_steps=SKIP_STEPS + MEASURE_STEPS, log=logs.append).run()
    hits = [m for m in logs if "lower --warmup-steps" in m]
    assert len(hits) == 1, logs  # 첫 추정(60 스텝)에서 한 번: 워밍업 40 스텝은 그 절반을 넘는다


# ------------------------------------------------------------------------------------------ 재기
def test_first_steps_are_not_measured():
    """첫 스텝의 한 번만 드는 비용(3 초)은 속도에 섞이지 않는다: 첫 추정이 곧바로 맞다."""
    budget = TimeBudget(BUDGET_MIN)
    budget.restart(0, 0.0)
    wall, seen = 0.0, {}
    for step in range(1, 50):
        wall += 3.0 if step == 1 else DT
        budget.observe(step, wall)
        seen[step] = budget.estimated_total
    first = SKIP_STEPS + MEASURE_STEPS
    assert all(seen[s] is None for s in range(1, first))  # 재는 동안에는 추정하지 않는다
    # 첫 스텝 3 초 + 0.25 초씩: 3 + 0.25·(n − 1) ≥ 15 인 첫 n 은 49
    assert seen[first] == 49 and budget.seconds_per_step == DT
    assert budget.reached and seen[49] == 49


def test_budget_trainer_with_a_slow_first_step_ends_at_the_exact_step(tmp_path):
    result = budget_trainer(tmp_path, step_clock(first=3.0)).run()
    assert result["step"] == 49 and result["wall_time_s"] == 15.0
    assert sidecar(tmp_path)["time_budget"]["estimated_total_steps"] == 49


def test_estimate_follows_a_change_of_speed_so_the_decay_still_ends_at_the_budget():
    """스텝 30 부터 두 배 느려지면 (다른 작업이 CPU 를 나눠 씀) 추정을 고쳐, 학습률이 예산 끝에서 바닥에 이른다."""
    budget = TimeBudget(BUDGET_MIN)
    budget.restart(0, 0.0)
    wall, step, lr_used = 0.0, 0, []
    while not budget.reached:
        lr_used.append(budget.lr_at(step, LR, LR))
        step += 1
        wall += DT if step <= 30 else 2 * DT
        budget.observe(step, wall)
    assert step == 45  # 7.5 초에 30 스텝, 남은 7.5 초에 0.5 초씩 15 스텝
    # 처음 추정(60 스텝)에 머물렀다면 마지막 학습률은 바닥의 2 배를 넘는다 (p = 45/60 → 0.23·LR).
    # 잰 구간 전체의 평균 속도는 바뀐 속도를 늦게 따라가 마지막 추정이 0.5 스텝쯤 크다. 코사인은 끝에서 평평해
    # 그 차이가 학습률을 바닥의 0.3 % 안에서만 바꾼다. 1 % 는 그 여유다.
    assert lr_used[-1] == pytest.approx(LR * LR_FLOOR, rel=0.01)
    assert budget.estimated_total == pytest.approx(45, abs=1.0)


def test_budget_lr_is_the_warmup_lr_until_an_estimate_exists():
    assert budget_lr(7, 0.5e-3, LR, None) == 0.5e-3
    assert budget_lr(0, LR / 200, LR, 10.0) == LR / 200  # 워밍업이 코사인보다 낮으면 워밍업
    assert budget_lr(9, LR, LR, 10.0) == LR * LR_FLOOR  # 마지막 스텝 (n + 1 = N̂)
    assert budget_lr(4, LR, LR, 10.0) == pytest.approx(LR * (LR_FLOOR + (1 - LR_FLOOR) / 2))  # 가운데 (cos π/2 ≈ 0)


# ------------------------------------------------------------------------------------------ 이어 학습
@pytest.mark.parametrize("stop_at", [10, 30])
def test_resume_trains_only_the_remaining_budget(tmp_path, straight, stop_at):
    """30 스텝 (7.5 초) 에서 끊은 뒤 이어 학습하면 남은 7.5 초만 학습해, 한 번에 한 학습과 같은 스텝에서 끝난다.

    끊기는 실제처럼 신호로 한다: 가짜 시계가 ``stop_at`` 번째 스텝을 잴 때 이 프로세스에 SIGTERM 을 보내면,
    ``Trainer.run`` 은 그 스텝을 마치고 저장한 뒤 멈춘다 (상한 ``max_steps`` 로 끊으면 학습률이 그 상한에 맞춰
    줄어 한 번에 한 학습과 달라진다). 끊은 곳이 첫 추정 (25 스텝) 뒤면 물려받은 속도로 곧바로 같은 추정을 하므로
    학습률·손실 기록까지 같다. 10 스텝에서 끊으면 새 프로세스가 다시 재는 동안 (스텝 35 까지) 학습률이 감쇠 없이
    워밍업 값이라 손실은 다르지만, 끝나는 스텝은 시간만으로 정해지므로 같다.
    """
    clock, calls = step_clock(), itertools.count()

    def interrupting_clock() -> float:
        if next(calls) == stop_at:  # 0 번째는 학습 고리 앞, n 번째는 n 번째 스텝 뒤
            os.kill(os.getpid(), signal.SIGTERM)
        return clock()

    interrupted = budget_trainer(tmp_path / "run", interrupting_clock).run()
    target = 60 if stop_at > SKIP_STEPS + MEASURE_STEPS else stop_at + 1  # 추정 전에는 목표가 다음 스텝이다
    assert interrupted["end"] == {"step": stop_at, "reason": "signal", "signal": "SIGTERM", "target_steps": target}
    ckpt = tmp_path / "run" / "checkpoint.safetensors"
    assert sidecar(tmp_path / "run")["time_budget"]["wall_time_s"] == stop_at * DT
    cfg = resume_config(ckpt, {"progress": False, "num_threads": 1, "device": "cpu"})
    assert cfg.time_budget == BUDGET_MIN and cfg.max_steps is None
    logs: list[str] = []
    resumed = Trainer(None, cfg, resume=ckpt, images=IMAGES, log=logs.append, clock=step_clock()).run()
    left = (15 - stop_at * DT) / 60
    assert any(f"time budget {BUDGET_MIN:g} min: {left:.2f} min left" in m for m in logs), logs
    assert resumed["end"] == straight.result["end"] == {"step": 60, "reason": "time_budget", "target_steps": 60}
    assert resumed["wall_time_s"] == 15.0
    if stop_at > SKIP_STEPS + MEASURE_STEPS:
        assert resumed["loss_history"] == straight.result["loss_history"]
        a, _ = read_checkpoint(straight.out / "checkpoint.safetensors")
        b, _ = read_checkpoint(ckpt)
        for k in a:
            # 같은 프로세스, 같은 연산: test_cli_usability 의 신호 검사처럼 float32 반올림 몇 개까지만 허용한다
            torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7, msg=lambda m, k=k: f"{k}: {m}")


def test_resume_with_a_spent_or_larger_budget(tmp_path, straight):
    shutil.copytree(straight.out, tmp_path, dirs_exist_ok=True)
    ckpt = tmp_path / "checkpoint.safetensors"
    logs: list[str] = []
    cfg = resume_config(ckpt, {"progress": False, "num_threads": 1, "device": "cpu"})
    spent = Trainer(None, cfg, resume=ckpt, images=IMAGES, log=logs.append, clock=step_clock()).run()
    assert spent["step"] == 60 and spent["end"]["reason"] == "time_budget"
    assert any("already used" in m and "--time-budget" in m for m in logs), logs
    # 예산을 30 초로 늘리면 물려받은 속도로 곧바로 120 스텝을 추정하고, 거기서 끝난다
    cfg = resume_config(ckpt, {"time_budget": 2 * BUDGET_MIN, "progress": False, "num_threads": 1, "device": "cpu"})
    more = Trainer(None, cfg, resume=ckpt, images=IMAGES, log=lambda m: None, clock=step_clock())
    more.budget.start(more)
    assert more.budget.estimated_total == 120
    result = more.run()
    assert result["end"] == {"step": 120, "reason": "time_budget", "target_steps": 120}
    assert more.optimizer.param_groups[0]["lr"] == LR * LR_FLOOR


def test_run_length_on_resume(tmp_path):
    budget_trainer(tmp_path, step_clock(), max_steps=4).run()
    ckpt = tmp_path / "checkpoint.safetensors"
    kept = resume_config(ckpt)
    assert (kept.max_steps, kept.time_budget) == (4, BUDGET_MIN)  # 아무것도 주지 않으면 그대로
    steps = resume_config(ckpt, {"max_steps": 90})
    assert (steps.max_steps, steps.time_budget) == (90, None)  # 스텝 수를 주면 예산은 지운다
    budget = resume_config(ckpt, {"time_budget": 1.0})
    assert (budget.max_steps, budget.epochs, budget.time_budget) == (None, None, 1.0)


# ------------------------------------------------------------------------------------------ 명령줄
def test_cli_passes_the_time_budget(tmp_path, monkeypatch, capsys):
    import importlib

    from ddpm_ko import cli

    train = importlib.import_module("ddpm_ko.train")  # 패키지의 ``ddpm_ko.train`` 이름은 함수라 모듈을 따로 찾는다
    seen = {}

    def fake_train(unet_cfg, cfg, resume=None):
        seen["cfg"] = cfg
        return {"step": 3, "checkpoint": "x", "wall_time_s": 1.0, "end": {"reason": "time_budget"}}

    monkeypatch.setattr(train, "train", fake_train)
    assert cli.main(["train", "--time-budget", "20", "--out-dir", str(tmp_path), "--no-progress"]) == 0
    assert seen["cfg"].time_budget == 20.0 and seen["cfg"].max_steps is None
    assert seen["cfg"].ema_window == EMA_WINDOW_FRACTION
    args = ["train", "--time-budget", "20", "--ema-window", "0.2", "--out-dir", str(tmp_path), "--no-progress"]
    assert cli.main(args) == 0 and seen["cfg"].ema_window == 0.2
    assert seen["cfg"].lr_floor == LR_FLOOR
    args = ["train", "--time-budget", "20", "--lr-floor", "0", "--out-dir", str(tmp_path), "--no-progress"]
    assert cli.main(args) == 0 and seen["cfg"].lr_floor == 0.0
    # 예산 없이 주면 아무 일도 하지 않는 옵션이므로 학습을 시작하기 전에 거부한다
    seen.clear()
    assert cli.main(["train", "--max-steps", "3", "--ema-window", "0.2", "--out-dir", str(tmp_path)]) == 2
    assert cli.main(["train", "--max-steps", "3", "--lr-floor", "0", "--out-dir", str(tmp_path)]) == 2
    both = ["train", "--max-steps", "3", "--ema-window", "0.2", "--lr-floor", "0", "--out-dir", str(tmp_path)]
    assert cli.main(both) == 2
    err = capsys.readouterr().err
    assert "--ema-window, --lr-floor" in err and "--time-budget" in err
    assert not seen


# ------------------------------------------------------------------------------------------ 여러 프로세스
WORKER = """
import itertools, json, os, sys
import numpy as np
from ddpm_ko.train import TrainConfig, Trainer
from ddpm_ko.unet import UnetConfig

rank = int(os.environ["RANK"])
dt = 0.25 if rank == 0 else 0.5  # 프로세스마다 다른 가짜 시계
times = itertools.accumulate(itertools.chain([0.0], itertools.repeat(dt)))
cfg = TrainConfig(
    out_dir=sys.argv[1], batch_size=8, timesteps=50, warmup_steps=3, log_every=1, checkpoint_every=100,
    progress=False, num_threads=1, device="cpu", time_budget=float(sys.argv[2]),
)
unet = UnetConfig(image_size=8, channels=1, dim=8, dim_mults=(1, 2), stage_attention="none", mid_attention="none")
images = np.random.default_rng(0).integers(0, 256, (32, 8, 8), dtype=np.uint8)
result = Trainer(unet, cfg, images=images, log=lambda m: None, clock=lambda: next(times)).run()
with open(os.path.join(sys.argv[3], f"rank{rank}.json"), "w") as f:
    json.dump({"step": result["step"], "end": result["end"]}, f)
"""


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="gloo 백엔드가 필요하다")
def test_processes_with_different_clocks_stop_together(tmp_path):
    """두 프로세스의 시계가 다르면 (0.25 초와 0.5 초) 평균 시간(0.375 초/스텝)으로 함께 정한다: 9 초 예산이면 둘 다 24 스텝.

    프로세스마다 제 시계로 정하면 rank 1 은 18 스텝, rank 0 은 36 스텝에서 멈추려 해 rank 0 이 all-reduce 에서 기다린다.
    """
    script, out, report = tmp_path / "worker.py", tmp_path / "run", tmp_path / "report"
    script.write_text(WORKER)
    report.mkdir()
    env = dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), str(out), str(9 / 60), str(report)], env=env, capture_output=True, text=True, timeout=300
    )  # 새 프로세스 둘이 torch 를 import 한다: 부하가 걸린 2코어에서는 몇십 초
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1] == {"step": 24, "end": {"step": 24, "reason": "time_budget", "target_steps": 24}}
    meta = sidecar(out)
    assert (
        meta["distributed"]["ranks_in_sync"] is True
        and meta["time_budget"]["wall_time_s"] == meta["wall_time_s"] == 9.0
    )
