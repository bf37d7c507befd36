"""``--init-from`` 으로 미세 조정한 모델이 출발점과 전체 학습량을 기억하는지 본다.

책이 싣는 모델은 한 번에 학습하지 않았다: 조건부 모델은 조건 없는 모델에서, 조건 없는 모델의 새 판은 앞선 판에서 미세
조정했다. 미세 조정의 ``step`` 은 0 부터 다시 세므로, 출발점(``init_from_model``: 파일, SHA-256, 학습량)이 메타데이터에
남아야 '모두 몇 스텝, 몇 시간 학습했나' 에 답할 수 있다. 이어 학습(``--resume``)은 그 기록을 그대로 잇는다.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TINY_TRAIN_UNET, tiny_train_config
from ddpm_ko.checkpoint import (
    export_ema,
    file_sha256,
    read_checkpoint,
    total_training_steps,
    total_wall_time_s,
    training_stages,
)
from ddpm_ko.pretrained import pretrained_stages, which_model
from ddpm_ko.train import train

IMAGES = np.random.default_rng(0).integers(0, 256, (32, 8, 8), dtype=np.uint8)
quiet = lambda m: None  # noqa: E731


def _run(out, steps, **kw):
    return train(TINY_TRAIN_UNET, tiny_train_config(out, max_steps=steps, **kw), images=IMAGES, log=quiet)


def _meta(result):
    return read_checkpoint(result["checkpoint"], prefixes=())[1]


def test_fine_tune_records_its_starting_point_and_counts_all_steps(tmp_path):
    donor = _run(tmp_path / "a", 2)
    tuned = _run(tmp_path / "b", 3, init_from=donor["checkpoint"])
    meta = _meta(tuned)
    base = meta["init_from_model"]
    assert base["sha256"] == file_sha256(donor["checkpoint"])
    assert base["file"] == "checkpoint.safetensors" and base["source"] == donor["checkpoint"]
    assert (base["step"], base["total_steps"]) == (2, 2)
    assert meta["step"] == 3 and total_training_steps(meta) == 5
    assert total_wall_time_s(meta) == pytest.approx(meta["wall_time_s"] + _meta(donor)["wall_time_s"], abs=0.02)

    assert base["loss_history"] == _meta(donor)["loss_history"]  # log_every 1: 스텝 1, 2

    # 출발점이 또 이어 학습한 모델이면 그 출발점까지 센다 (2 + 3 + 1). 손실 기록은 전체 스텝으로 이어진다
    again = _run(tmp_path / "c", 1, init_from=tuned["checkpoint"])
    base = _meta(again)["init_from_model"]
    assert total_training_steps(_meta(again)) == 6 and base["total_steps"] == 5
    assert [s for s, _ in base["loss_history"]] == [1, 2, 3, 4, 5]
    assert [v for _, v in base["loss_history"][2:]] == [v for _, v in meta["loss_history"]]


def test_resume_and_export_keep_the_starting_point(tmp_path):
    donor = _run(tmp_path / "a", 2)
    half = _run(tmp_path / "b", 2, init_from=donor["checkpoint"])
    resumed = train(
        TINY_TRAIN_UNET,
        tiny_train_config(tmp_path / "b", max_steps=4),
        resume=half["checkpoint"],
        images=IMAGES,
        log=quiet,
    )
    meta = _meta(resumed)
    assert meta["step"] == 4 and meta["init_from_model"] == _meta(half)["init_from_model"]
    exported = export_ema(resumed["checkpoint"], tmp_path / "ema.safetensors")
    sidecar = json.loads(exported.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["init_from_model"] == meta["init_from_model"] and total_training_steps(sidecar) == 6


def test_models_trained_from_scratch_have_no_starting_point(tmp_path):
    meta = _meta(_run(tmp_path / "a", 2))
    assert "init_from_model" not in meta and total_training_steps(meta) == 2


def test_older_sidecars_without_totals_still_add_up():
    # 조건부 모델의 사이드카처럼 출발점에 total_steps 가 없던 때의 꼴: 출발점의 step 을 전체로 본다
    meta = {"step": 1500, "wall_time_s": 10.0, "init_from_model": {"step": 4750, "wall_time_s": 5.0}}
    assert total_training_steps(meta) == 6250 and total_wall_time_s(meta) == 15.0


def test_training_stages_list_each_run_of_a_chain_with_the_files_it_made(tmp_path):
    # 처음부터 2 스텝 → 미세 조정 3 스텝 → 다시 미세 조정 1 스텝: 단계 셋, 앞 두 단계의 SHA-256 은 그 단계가 만든 파일
    donor = _run(tmp_path / "a", 2)
    tuned = _run(tmp_path / "b", 3, init_from=donor["checkpoint"], flip=True)
    again = _run(tmp_path / "c", 1, init_from=tuned["checkpoint"])
    meta = _meta(again)
    stages = training_stages(meta, file_sha256(again["checkpoint"]))
    assert [s["kind"] for s in stages] == ["scratch", "fine-tune", "fine-tune"]
    assert [s["steps"] for s in stages] == [2, 3, 1] and [s["total_steps"] for s in stages] == [2, 5, 6]
    assert [s["sha256"] for s in stages] == [file_sha256(r["checkpoint"]) for r in (donor, tuned, again)]
    assert [s["flip"] for s in stages] == [_meta(r)["train"]["flip"] for r in (donor, tuned, again)]
    assert stages[1]["flip"] is True
    assert stages[-1]["total_steps"] == total_training_steps(meta)
    assert stages[-1]["total_wall_time_s"] == pytest.approx(total_wall_time_s(meta), abs=0.05)
    assert stages[0]["hardware"]["cpu_count"] == _meta(donor)["environment"]["cpu_count"]
    # 출발점의 기록은 그때까지의 단계를 품는다: 미세 조정한 모델을 다시 내보내도 그대로다
    assert meta["init_from_model"]["stages"] == stages[:-1]
    exported = export_ema(again["checkpoint"], tmp_path / "ema.safetensors")
    assert training_stages(read_checkpoint(exported, prefixes=())[1])[:-1] == stages[:-1]


def test_which_model_names_the_training_stage_a_benchmark_measured(tmp_path, monkeypatch):
    donor = _run(tmp_path / "a", 2)
    tuned = _run(tmp_path / "b", 3, init_from=donor["checkpoint"])
    shipped = export_ema(tuned["checkpoint"], tmp_path / "ema.safetensors")
    monkeypatch.setenv("DDPM_KO_PRETRAINED", str(shipped))  # 이 파일을 '책이 싣는 모델' 로 본다
    assert [s["sha256"] for s in pretrained_stages()] == [file_sha256(donor["checkpoint"]), file_sha256(shipped)]
    assert which_model(file_sha256(shipped)) == "지금 책이 싣는 모델"
    assert which_model(file_sha256(donor["checkpoint"])) == "이전 배포 모델, 2 스텝"
    assert which_model(file_sha256(tuned["checkpoint"])) == "알 수 없는 모델"  # 학습 체크포인트 ≠ 내보낸 파일
    assert which_model(None) == "알 수 없는 모델"


def test_training_stages_read_older_sidecars_without_a_stage_list():
    # 단계 목록이 생기기 전의 사이드카 (지금 싣는 조건부 모델처럼): 출발점이 한 단계가 된다
    first = {"sha256": "a" * 64, "step": 4750, "wall_time_s": 5.0, "flip": True, "command": "ddpm-ko train …"}
    meta = {"step": 1500, "wall_time_s": 10.0, "train": {"flip": False}, "init_from_model": first}
    stages = training_stages(meta)
    assert [(s["kind"], s["steps"], s["total_steps"], s["flip"]) for s in stages] == [
        ("scratch", 4750, 4750, True),
        ("fine-tune", 1500, 6250, False),
    ]
    assert stages[0]["sha256"] == "a" * 64 and stages[0]["command"] == "ddpm-ko train …" and stages[1]["sha256"] is None
    # 출발점 자신도 미세 조정한 모델이었다면 (total_steps > step) 그 앞은 내용을 모르는 한 단계로 센다
    meta["init_from_model"] = {**first, "total_steps": 6000, "total_wall_time_s": 8.0}
    stages = training_stages(meta)
    assert [(s["kind"], s["steps"], s["total_steps"]) for s in stages] == [
        ("unknown", 1250, 1250),
        ("fine-tune", 4750, 6000),
        ("fine-tune", 1500, 7500),
    ]
    assert stages[0]["wall_time_s"] == 3.0 and stages[-1]["total_wall_time_s"] == 18.0
    assert training_stages({"step": 7, "wall_time_s": 1.0})[0]["kind"] == "scratch"
