"""재현성 검사: 같은 시드·같은 장치·같은 버전이면 같은 손실 곡선과 같은 샘플이 나온다.

그리고 모든 체크포인트의 JSON 사본이 재현에 필요한 정보(버전, 시드, 하드웨어)를 담는지 본다.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

import ddpm_ko
from conftest import CROSS_BATCH_ATOL, LOSS_HISTORY_ATOL, tiny_train_config
from ddpm_ko.checkpoint import export_ema, read_checkpoint
from ddpm_ko.generate import sample_images
from ddpm_ko.train import train
from ddpm_ko.unet import UnetConfig

TINY_UNET = UnetConfig(image_size=8, channels=1, dim=8, dim_mults=(1, 2), stage_attention="none", mid_attention="full")
IMAGES = np.random.default_rng(5).integers(0, 256, (64, 8, 8), dtype=np.uint8)


def _train(out: Path, seed: int = 0, steps: int = 8, micro_batch: int | None = None) -> dict:
    cfg = tiny_train_config(
        out,
        timesteps=30,
        sample_steps=10,
        warmup_steps=2,
        max_steps=steps,
        checkpoint_every=steps,
        seed=seed,
        micro_batch=micro_batch,
    )
    return train(TINY_UNET, cfg, images=IMAGES, log=lambda m: None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    n = torch.get_num_threads()
    try:
        return Path(_train(tmp_path_factory.mktemp("trained"))["checkpoint"])
    finally:
        torch.set_num_threads(n)


def test_same_seed_gives_same_loss_curve_and_weights(tmp_path, trained):
    again = _train(tmp_path / "again")
    a, ma = read_checkpoint(trained)
    b, mb = read_checkpoint(again["checkpoint"])
    assert len(ma["loss_history"]) == 8
    assert ma["loss_history"] == mb["loss_history"] == again["loss_history"]
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # 대조군: 시드가 다르면 곡선도 다르다 (위 검사가 우연히 통과하는 것이 아님)
    other = _train(tmp_path / "other", seed=1)
    assert other["loss_history"] != ma["loss_history"]


@pytest.mark.parametrize("micro_batch", [1, 3])
def test_micro_batches_give_the_same_training_as_the_whole_batch(tmp_path, trained, micro_batch):
    """그래디언트 누적: 배치 8 을 1장씩, 또는 3+3+2 장으로 나눠도 같은 손실 곡선과 같은 가중치 (부동소수점 오차 안)."""
    split = _train(tmp_path / "split", micro_batch=micro_batch)
    a, ma = read_checkpoint(trained)
    b, mb = read_checkpoint(split["checkpoint"])
    assert mb["train"]["micro_batch"] == micro_batch
    np.testing.assert_allclose(mb["loss_history"], ma["loss_history"], rtol=0, atol=LOSS_HISTORY_ATOL)
    # 가중치: 더하는 순서만 다르다. GroupNorm 바로 앞의 편향처럼 참 그래디언트가 거의 0 인 매개변수에서는 AdamW 가
    # 그 순서 차이(~1e-7)를 학습률 크기의 걸음으로 키우므로, 분산 학습 검사와 같은 5e-4 까지 허용한다.
    for k in a:
        if k.startswith(("model.", "ema.")):
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=5e-4, msg=lambda m, k=k: f"{k}: {m}")


def test_micro_batches_really_split_the_forward_pass(tmp_path):
    """위 검사가 '나누지 않아서' 통과한 것이 아님을 본다: 배치 8, 조각 3 이면 한 단계에 순전파가 3+3+2 장으로 세 번."""
    from ddpm_ko.train import Trainer

    cfg = tiny_train_config(tmp_path, micro_batch=3, timesteps=30, sample_steps=10, max_steps=1)
    trainer = Trainer(TINY_UNET, cfg, images=IMAGES, log=lambda m: None)
    sizes: list[int] = []
    trainer.model.register_forward_hook(lambda mod, args, out: sizes.append(args[0].shape[0]))
    trainer.train_step(trainer.batches.batch(0, 0))
    assert sizes == [3, 3, 2]


@pytest.mark.parametrize(
    "sampler,kwargs", [("ddpm", {}), ("ddim", {"steps": 10, "eta": 0.0}), ("ddim", {"steps": 10, "eta": 1.0})]
)
def test_same_seed_gives_same_samples(trained, sampler, kwargs):
    first, _, _ = sample_images(trained, 6, sampler=sampler, seed=123, device="cpu", **kwargs)
    second, _, _ = sample_images(trained, 6, sampler=sampler, seed=123, device="cpu", **kwargs)
    assert first.shape == (6, 1, 8, 8)
    assert torch.equal(first, second)
    third, _, _ = sample_images(trained, 6, sampler=sampler, seed=124, device="cpu", **kwargs)
    assert not torch.equal(first, third)


def test_deterministic_sampler_does_not_depend_on_batch_size(trained):
    """초기 노이즈 x_T 를 한꺼번에 뽑으므로, DDIM (η = 0) 결과는 배치를 어떻게 나누어도 같다 (float32 반올림 안에서)."""
    whole, _, _ = sample_images(trained, 6, sampler="ddim", steps=10, seed=9, device="cpu", batch_size=6)
    pieces, _, _ = sample_images(trained, 6, sampler="ddim", steps=10, seed=9, device="cpu", batch_size=4)
    torch.testing.assert_close(pieces, whole, rtol=0, atol=CROSS_BATCH_ATOL)  # 이유는 conftest


def test_cli_sampling_twice_writes_identical_files(trained, tmp_path, capsys):
    from ddpm_ko.cli import main

    outs = [tmp_path / "a.npy", tmp_path / "b.npy"]
    for out in outs:
        assert (
            main(
                [
                    "sample",
                    "--checkpoint",
                    str(trained),
                    "--num",
                    "4",
                    "--sampler",
                    "ddim",
                    "--steps",
                    "10",
                    "--eta",
                    "1",
                    "--seed",
                    "5",
                    "--out",
                    str(out),
                    "--device",
                    "cpu",
                    "--no-progress",
                ]
            )
            == 0
        )
    a, b = (np.load(p, allow_pickle=False) for p in outs)
    assert a.dtype == np.uint8 and a.shape == (4, 8, 8, 1)
    assert np.array_equal(a, b)


VERSION_KEYS = {"ddpm_ko", "torch", "numpy", "python"}
HARDWARE_KEYS = {"device", "platform", "cpu_count", "torch_threads"}


def _check_sidecar(ckpt: Path, *, training: bool) -> dict:
    sidecar = json.loads(ckpt.with_suffix(".json").read_text(encoding="utf-8"))
    _, header = read_checkpoint(ckpt, prefixes=())
    assert sidecar == header, "JSON 사본과 safetensors 헤더의 메타데이터가 다르다"
    env = sidecar["environment"]
    assert VERSION_KEYS | HARDWARE_KEYS <= set(env), f"빠진 항목: {(VERSION_KEYS | HARDWARE_KEYS) - set(env)}"
    assert env["ddpm_ko"] == ddpm_ko.__version__ and env["torch"] == torch.__version__
    assert env["numpy"] == np.__version__ and env["python"] == platform.python_version()
    assert env["device"] == "cpu" and isinstance(env["cpu_count"], int)
    assert sidecar["seed"] == 0 and sidecar["train"]["seed"] == 0
    assert {"unet", "diffusion", "step"} <= set(sidecar)
    if training:
        assert {"train_state", "optimizer", "loss_history", "global_batch_size"} <= set(sidecar)
        assert sidecar["distributed"]["world_size"] == 1
    return sidecar


def test_every_checkpoint_sidecar_records_versions_seed_and_hardware(trained, tmp_path):
    meta = _check_sidecar(trained, training=True)
    assert meta["step"] == 8
    exported = export_ema(trained, tmp_path / "ema.safetensors")
    small = _check_sidecar(exported, training=False)
    assert "optimizer" not in small
