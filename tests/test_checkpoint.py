"""``ddpm_ko.checkpoint`` 검사: safetensors + JSON 사본의 저장·읽기, 옵티마이저 상태의 텐서/JSON 나누기, 경로 해석.

원자적 저장과 임시 파일 치우기는 tests/test_reliability.py, 손상된 파일의 오류 메시지는 test_bad_inputs.py 가 본다.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ddpm_ko.checkpoint import (
    FORMAT,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    read_checkpoint,
    read_safetensors,
    resolve_checkpoint_path,
    save_checkpoint,
    sub_state,
    write_safetensors,
)
from ddpm_ko.pretrained import PRETRAINED_NAME, shipped_file
from ddpm_ko.train import TrainConfig
from ddpm_ko.unet import UnetConfig


def test_save_and_read_round_trip_with_sidecar(tmp_path):
    tensors = {
        "model.w": torch.arange(6.0).reshape(2, 3).t(),
        "ema.model.w": torch.ones(2),
        "optim.0.step": torch.tensor(3.0),
    }
    path = save_checkpoint(tmp_path / "run", tensors, {"step": 7, "note": "한글"})  # 확장자가 없으면 붙인다
    assert path == tmp_path / "run.safetensors"
    got, meta = read_checkpoint(path)
    assert meta == {"format": FORMAT, "step": 7, "note": "한글"}
    assert json.loads(path.with_suffix(".json").read_text(encoding="utf-8")) == meta  # 사람이 읽는 사본도 같다
    assert got.keys() == tensors.keys() and all(torch.equal(got[k], v) for k, v in tensors.items())
    only, _ = read_checkpoint(path, prefixes=("ema.",))
    assert list(only) == ["ema.model.w"]
    assert sub_state(got, "ema") == {"model.w": got["ema.model.w"]}
    assert sub_state(got, "model").keys() == {"w"}  # "model." 로 시작하는 것만: "ema.model.w" 는 아니다


def test_write_safetensors_uses_the_given_header_key(tmp_path):
    path = write_safetensors(tmp_path / "x.safetensors", {"w": torch.zeros(2)}, {"a": 1}, "my_key")
    tensors, header = read_safetensors(path)
    assert json.loads(header["my_key"]) == {"a": 1} and torch.equal(tensors["w"], torch.zeros(2))


def test_optimizer_state_survives_the_tensor_json_split():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        net(torch.randn(4, 3)).square().sum().backward()
        opt.step()
    tensors, meta = optimizer_state_to_tensors(opt)
    meta = json.loads(json.dumps(meta))  # 메타데이터는 JSON 으로 저장된다
    fresh = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=1e-2)
    fresh.load_state_dict(optimizer_state_from_tensors({**tensors, "model.w": torch.zeros(1)}, meta))
    a, b = opt.state_dict(), fresh.state_dict()
    for pid in a["state"]:
        for k, v in a["state"][pid].items():
            assert torch.equal(v, b["state"][pid][k]), (pid, k)
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"]


@pytest.mark.parametrize(
    "given, want",
    [
        ("run", "run.safetensors"),
        ("run.json", "run.safetensors"),
        ("run.safetensors", "run.safetensors"),
    ],
)
def test_resolve_checkpoint_path(tmp_path, given, want):
    assert resolve_checkpoint_path(tmp_path / given) == tmp_path / want
    (tmp_path / "dir").mkdir()
    assert resolve_checkpoint_path(tmp_path / "dir") == tmp_path / "dir" / "checkpoint.safetensors"


def test_shipped_sidecar_configs_have_no_unknown_keys():
    """책이 싣는 모델의 설정은 모르는 항목을 거부하는 from_dict 로도 그대로 읽힌다."""
    _, meta = read_checkpoint(shipped_file(PRETRAINED_NAME), prefixes=())
    assert UnetConfig.from_dict(meta["unet"]).dim == meta["unet"]["dim"]  # 신경망 설정의 모양은 tests/test_unet.py
    loaded = TrainConfig.from_dict(meta["train"]).to_dict()  # 나중에 생긴 항목(precision …)은 기본값을 얻는다
    assert {k: loaded[k] for k in meta["train"]} == meta["train"]
