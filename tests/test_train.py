"""``ddpm_ko.train`` 과 그 곁 모듈 검사: 학습률 워밍업, 설정, 손실 기록, 학습 상태 저장·복원, 발산 검사, 분산 도우미.

학습 고리 전체(이어 학습의 곡선, 신호, 분산 학습)는 tests/test_reliability.py, test_reproducibility.py,
test_distributed.py 가 본다. 여기서는 모듈마다의 작은 함수를 따로 본다.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY_TRAIN_UNET, tiny_train_config
from ddpm_ko import distributed
from ddpm_ko.divergence import check_grad_norm, check_loss, check_weights
from ddpm_ko.errors import CheckpointError, TrainingDivergedError
from ddpm_ko.train import TrainConfig, Trainer, lr_at, record_loss, resume_config
from ddpm_ko.training_state import checkpoint_contents

# 8×8 이미지의 아주 작은 U-Net: 한 단계가 수 ms 라 Trainer 를 만들어 몇 단계 돌려도 싸다
TINY_UNET = TINY_TRAIN_UNET
IMAGES = np.random.default_rng(0).integers(0, 256, (32, 8, 8), dtype=np.uint8)


def tiny_trainer(out_dir: Path, **overrides) -> Trainer:
    cfg = tiny_train_config(out_dir, **{"log_every": 2, "ema_decay": TrainConfig.ema_decay, **overrides})
    return Trainer(TINY_UNET, cfg, images=IMAGES, log=lambda m: None)


# ------------------------------------------------------------------------------------------ 학습률
def test_lr_warmup_is_linear_then_constant():
    # 식 (ch7-eq-warmup): η_n = η · min(1, (n + 1)/n_warmup)
    lr, warm = 1e-3, 200
    for n in (0, 1, 99, 199, 200, 201, 10_000):
        assert lr_at(n, lr, warm) == pytest.approx(lr * min(1.0, (n + 1) / warm), rel=1e-15)
    assert lr_at(0, lr, warm) == pytest.approx(lr / warm) and lr_at(warm - 1, lr, warm) == lr
    assert [lr_at(n, lr, 0) for n in range(5)] == [lr] * 5  # 워밍업 없음


def test_trainer_sets_the_warmup_lr_on_every_step(tmp_path):
    trainer = tiny_trainer(tmp_path, lr=2e-3, warmup_steps=4)
    seen = []
    for _ in range(6):
        trainer.train_step(trainer.batches.batch(trainer.epoch, trainer.batch_index))
        seen.append(trainer.optimizer.param_groups[0]["lr"])
    assert seen == [lr_at(n, 2e-3, 4) for n in range(6)] and trainer.lr_at(5) == 2e-3


# ------------------------------------------------------------------------------------------ 설정
def test_train_config_round_trips_and_refuses_unknown_keys():
    cfg = TrainConfig(batch_size=16, adam_betas=(0.8, 0.9))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown TrainConfig fields: \['bogus', 'lr_typo'\]"):
        TrainConfig.from_dict({**cfg.to_dict(), "lr_typo": 1.0, "bogus": 2})


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("batch_size", 0, "batch_size must be >= 1"),
        ("ema_decay", 1.0, "ema_decay must be in [0, 1)"),
        ("schedule", "square", "unknown schedule"),
        ("precision", "fp8", "unknown precision"),
    ],
)
def test_train_config_validation_says_what_to_fix(field, value, needle):
    with pytest.raises(ValueError) as info:
        TrainConfig(**{field: value})
    assert needle in str(info.value) and " / " in str(info.value)


def test_resume_config_refuses_a_checkpoint_with_unknown_training_keys(tmp_path):
    trainer = tiny_trainer(tmp_path, max_steps=1)
    trainer.run()
    _, meta = checkpoint_contents(trainer)
    meta["train"]["not_a_field"] = 1
    with pytest.raises(CheckpointError, match="not_a_field"):
        resume_config(trainer.checkpoint_path, meta=meta)


# ------------------------------------------------------------------------------------------ 손실 기록
def test_record_loss_replaces_a_partial_entry():
    history: list[list[float]] = [[2, 1.0]]
    assert record_loss(history, [0.5, 0.25], partial=False, step=4) == 0.375
    assert history == [[2, 1.0], [4, 0.375]]
    record_loss(history, [0.5], partial=False, step=5)  # 중간 기록 (창을 비우지 않는다)
    assert record_loss(history, [0.5, 0.1], partial=True, step=6) == pytest.approx(0.3)
    assert history == [[2, 1.0], [4, 0.375], [6, 0.3]]


# ------------------------------------------------------------------------------------------ 학습 상태
def test_checkpoint_contents_is_one_call_with_optimizer_tensors(tmp_path):
    trainer = tiny_trainer(tmp_path)
    for _ in range(2):
        trainer.train_step(trainer.batches.batch(trainer.epoch, trainer.batch_index))
    tensors, meta = checkpoint_contents(trainer)
    optim = {k for k in tensors if k.startswith("optim.")}
    assert optim and all(k.rsplit(".", 1)[1] in ("step", "exp_avg", "exp_avg_sq") for k in optim)
    assert meta["step"] == 2 and meta["train_state"]["batch_index"] == 2 and meta["end"]["reason"] == "in_progress"
    assert not hasattr(trainer, "_opt_tensors")  # 저장할 것을 객체에 남기지 않는다
    saved = trainer.save()
    resumed = Trainer(resume=saved, images=IMAGES, log=lambda m: None)
    again, meta2 = checkpoint_contents(resumed)
    assert meta2["train_state"] == meta["train_state"]
    assert json.loads(json.dumps(meta2["optimizer"])) == json.loads(
        json.dumps(meta["optimizer"])
    )  # 튜플은 JSON 에서 목록
    for k in tensors:
        if k != "rng.torch":  # torch 전역 난수는 저장 뒤에도 흐를 수 있다
            assert torch.equal(tensors[k], again[k]), k


# ------------------------------------------------------------------------------------------ 발산 검사
def test_divergence_checks_name_the_step_and_the_kept_checkpoint(tmp_path):
    kept = (tmp_path / "checkpoint.safetensors", 40)
    check_loss(0.5, 41, kept)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step 41.*step 40\) was kept"):
        check_loss(math.nan, 41, kept)
    with pytest.raises(TrainingDivergedError, match="no checkpoint has been written yet"):
        check_grad_norm(torch.tensor(math.inf), 3, None)
    net = nn.Linear(2, 2)
    check_weights(net, lambda: torch.tensor(1.0), 5, kept, world=1, device=torch.device("cpu"))
    with pytest.raises(TrainingDivergedError, match=r"loss on the same batch: inf"):
        check_weights(net, lambda: torch.tensor(math.inf), 5, kept, world=1, device=torch.device("cpu"))
    with torch.no_grad():
        net.weight[0, 0] = math.nan
    with pytest.raises(TrainingDivergedError, match="weights diverged after the update at step 5"):
        check_weights(net, None, 5, kept, world=1, device=torch.device("cpu"))


# ------------------------------------------------------------------------------------------ 분산 도우미 (한 프로세스)
def test_distributed_helpers_are_identity_for_one_process():
    x, t = torch.arange(8.0), torch.arange(8)
    assert distributed.shard(0, 1, x, t) == (x, t)
    a, b = distributed.shard(1, 2, x, t)  # 두 프로세스 중 둘째의 몫: 뒤의 절반
    assert a.tolist() == [4.0, 5.0, 6.0, 7.0] and b.tolist() == [4, 5, 6, 7]
    v = torch.tensor(2.5)
    assert distributed.mean_over_ranks(v, 1) is v
    assert distributed.any_rank(True, 1, torch.device("cpu")) and not distributed.any_rank(
        False, 1, torch.device("cpu")
    )
    assert distributed.rank_fingerprints(nn.Linear(2, 2), 1) == {"world_size": 1}


def test_weights_fingerprint_changes_with_any_weight():
    torch.manual_seed(0)
    net = nn.Linear(3, 3)
    before = distributed.weights_fingerprint(net)
    assert distributed.weights_fingerprint(net) == before and len(before) == 64
    with torch.no_grad():
        net.bias[2] += 1e-7
    assert distributed.weights_fingerprint(net) != before
