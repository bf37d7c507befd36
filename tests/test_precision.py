"""학습 정밀도를 장치의 능력으로 고르기 (GPU 없이: 능력을 바꿔 넣어 검사한다)."""

from __future__ import annotations

import importlib
import json
from contextlib import nullcontext

import pytest
import torch

from ddpm_ko.cli import build_parser
from ddpm_ko.precision import PRECISIONS, autocast_for, cpu_bf16_native, cpu_bf16_supported, resolve_precision
from ddpm_ko.train import TrainConfig, Trainer


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_follows_bf16_support(bf16: bool, expected: str) -> None:
    asked = []
    got = resolve_precision("auto", "cuda", bf16_supported=lambda: asked.append(1) or bf16)
    assert got == expected and asked == [1]


def test_explicit_choices_on_cuda() -> None:
    assert resolve_precision("fp32", "cuda", bf16_supported=lambda: False) == "fp32"
    assert resolve_precision("fp16", "cuda", bf16_supported=lambda: True) == "fp16"
    assert resolve_precision("bf16", "cuda", bf16_supported=lambda: True) == "bf16"
    with pytest.raises(ValueError, match="fp16") as info:  # 예: Colab 의 T4
        resolve_precision("bf16", "cuda", bf16_supported=lambda: False)
    assert "bf16" in str(info.value) and "/" in str(info.value)


def test_mps_stays_fp32() -> None:
    never = lambda: pytest.fail("MPS 에서는 bf16 능력을 묻지 않는다")  # noqa: E731
    assert resolve_precision("auto", "mps", bf16_supported=never) == "fp32"
    assert resolve_precision("fp32", "mps", bf16_supported=never) == "fp32"
    for p in ("bf16", "fp16"):
        with pytest.raises(ValueError, match="mps"):
            resolve_precision(p, "mps", bf16_supported=never)


def test_cpu_auto_is_fp32_and_bf16_needs_cpu_support() -> None:
    """CPU 의 auto 는 fp32 다 (bf16 은 골라야 쓴다). bf16 은 oneDNN 의 bf16 커널이 있는 CPU 에서만 받는다."""
    never = lambda: pytest.fail("auto·fp32 는 CPU 의 bf16 능력을 묻지 않는다")  # noqa: E731
    assert resolve_precision("auto", "cpu", bf16_supported=never) == "fp32"
    assert resolve_precision("fp32", "cpu", bf16_supported=never) == "fp32"
    assert resolve_precision("bf16", "cpu", bf16_supported=lambda: True) == "bf16"
    with pytest.raises(ValueError, match="AVX512") as info:  # AVX2 까지만 있는 CPU: 열 배 느렸다
        resolve_precision("bf16", "cpu", bf16_supported=lambda: False)
    assert "fp32" in str(info.value) and "/" in str(info.value)
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", "cpu", bf16_supported=never)


def test_cpu_bf16_probes(tmp_path) -> None:
    assert isinstance(cpu_bf16_supported(), bool)  # 이 기계의 답이 무엇이든 bool 이고 예외가 없다
    flags = tmp_path / "cpuinfo"
    flags.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_bf16\n", encoding="utf-8")
    assert cpu_bf16_native(flags)
    flags.write_text("processor : 0\nflags : fpu avx2 amx_tile amx_bf16\n", encoding="utf-8")
    assert cpu_bf16_native(flags)
    flags.write_text("processor : 0\nflags : fpu avx2 avx512f\n", encoding="utf-8")
    assert not cpu_bf16_native(flags)
    assert not cpu_bf16_native(tmp_path / "missing")


def test_cpu_bf16_training_step(tmp_path, tiny_config, monkeypatch) -> None:
    """CPU 에서 bf16 을 고르면 순전파가 bf16 autocast 안에서 돌고, 가중치와 EMA 는 fp32 로 남으며 사이드카에 bf16 이 적힌다."""
    train_mod = importlib.import_module("ddpm_ko.train")
    monkeypatch.setattr(
        train_mod, "resolve_precision", lambda requested, device_type: resolve_precision(
            requested, device_type, bf16_supported=lambda: True
        )
    )  # fmt: skip
    images = (torch.arange(8 * 28 * 28) % 255).reshape(8, 28, 28).to(torch.uint8).numpy()
    cfg = TrainConfig(
        out_dir=str(tmp_path), max_steps=2, batch_size=4, timesteps=10, sample_steps=5, progress=False,
        device="cpu", precision="bf16",
    )  # fmt: skip
    trainer = Trainer(tiny_config, cfg, images=images, log=lambda m: None)
    assert trainer.precision == "bf16" and trainer.scaler is None
    seen: list[torch.dtype] = []
    hook = trainer.model.init_conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    result = trainer.run()
    hook.remove()
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert all(torch.isfinite(torch.tensor(v)) for _, v in result["loss_history"])
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert all(p.dtype == torch.float32 for p in trainer.ema.model.parameters())
    meta = json.loads((tmp_path / "checkpoint.json").read_text(encoding="utf-8"))
    assert meta["precision"] == "bf16" and meta["train"]["precision"] == "bf16"


def test_unknown_precision_is_rejected() -> None:
    with pytest.raises(ValueError, match="fp8"):
        resolve_precision("fp8", "cuda", bf16_supported=lambda: True)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="half")


def test_autocast_helper() -> None:
    assert isinstance(autocast_for("fp32", "cuda"), nullcontext)
    # CPU 에서도 만들 수 있는 autocast 로 dtype 을 확인한다
    with autocast_for("bf16", "cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_cpu_training_records_fp32_in_the_sidecar(tmp_path, tiny_config) -> None:
    images = (torch.arange(8 * 28 * 28) % 255).reshape(8, 28, 28).to(torch.uint8).numpy()
    cfg = TrainConfig(
        out_dir=str(tmp_path), max_steps=1, batch_size=4, timesteps=10, sample_steps=5, progress=False, device="cpu"
    )
    trainer = Trainer(tiny_config, cfg, images=images, log=lambda m: None)
    assert trainer.precision == "fp32" and trainer.scaler is None
    trainer.run()
    meta = json.loads((tmp_path / "checkpoint.json").read_text(encoding="utf-8"))
    assert meta["precision"] == "fp32" and meta["train"]["precision"] == "auto" and meta["grad_scaler"] is None


def test_cli_option() -> None:
    args = build_parser().parse_args(["train", "--precision", "fp16"])
    assert args.precision == "fp16" and set(PRECISIONS) == {"auto", "fp32", "bf16", "fp16"}
    assert build_parser().parse_args(["train"]).precision is None  # 주지 않으면 TrainConfig 의 기본값(auto)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--precision", "fp64"])


def _fp16_config(out_dir, max_steps: int) -> TrainConfig:
    return TrainConfig(
        out_dir=str(out_dir),
        max_steps=max_steps,
        batch_size=4,
        timesteps=10,
        sample_steps=5,
        progress=False,
        device="cpu",
        checkpoint_every=2,
    )


def test_fp16_path_with_grad_scaler_runs_and_resumes(tmp_path, tiny_config, monkeypatch) -> None:
    """fp16 + 그래디언트 스케일러의 학습 단계와 체크포인트를 CPU 에서 돌려 본다 (CUDA 의 fp16 과 같은 코드 경로).

    CPU 에서는 auto 가 fp32 를 고르므로, 장치 능력 대신 정밀도 결정을 fp16 으로 바꿔 넣는다.
    """
    train_mod = importlib.import_module("ddpm_ko.train")  # ddpm_ko.train 은 함수 이름이기도 하다

    if not hasattr(torch.amp, "GradScaler"):
        pytest.skip("torch.amp.GradScaler 가 없다")
    monkeypatch.setattr(train_mod, "resolve_precision", lambda requested, device_type: "fp16")
    images = (torch.arange(8 * 28 * 28) % 255).reshape(8, 28, 28).to(torch.uint8).numpy()
    cfg = _fp16_config(tmp_path, max_steps=2)
    trainer = Trainer(tiny_config, cfg, images=images, log=lambda m: None)
    assert trainer.precision == "fp16" and trainer.scaler is not None
    trainer.scaler = torch.amp.GradScaler(
        "cpu", init_scale=1024.0
    )  # 기본값(65536)과 다른 배율: 이어 학습이 되살리는지 본다
    result = trainer.run()
    assert all(torch.isfinite(torch.tensor(v)) for _, v in result["loss_history"])
    meta = json.loads((tmp_path / "checkpoint.json").read_text(encoding="utf-8"))
    assert meta["precision"] == "fp16" and meta["grad_scaler"]["scale"] > 0
    # 이어 학습하면 스케일러의 배율도 이어받는다
    cfg2 = _fp16_config(tmp_path, max_steps=3)
    resumed = Trainer(tiny_config, cfg2, resume=tmp_path / "checkpoint.safetensors", images=images, log=lambda m: None)
    assert resumed.scaler.get_scale() == meta["grad_scaler"]["scale"] <= 1024.0


def test_cpu_auto_follows_the_study() -> None:
    """CPU 의 auto 는 측정이 정한다 (issue 15, 10장): ``recipe_study_round3.json`` 은 AVX512-BF16 이 있는 CPU 에서 같은 20분
    시간 예산으로 fp32 와 bf16 autocast 를 학습해 견줬다. bf16 은 처리량이 더 컸는데도 FID 가 fp32 (기본 처방의 모든 시드)보다
    낮지 않았으므로 auto 는 fp32 다. bf16 이 fp32 의 가장 좋은 시드보다 낮았다면 auto 를 다시 정해야 한다."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks/results/recipe_study_round3.json"
    study = json.loads(path.read_text(encoding="utf-8"))
    rows = {(r["variant"], r["seed"]): r for r in study["results"] if r["minutes"] == 20 and r["num"] >= 1000}
    fp32, bf16 = rows[("default", 0)], rows[("bf16", 0)]
    fp32_best = min(r["fid"] for (variant, _), r in rows.items() if variant == "default")
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")  # 실제로 쓴 정밀도가 사이드카에 남았다
    assert study["cpu_bf16"]["bf16_over_fp32"] > 1 and bf16["steps"] > fp32["steps"]  # bf16 이 빨랐던 기계다
    bf16_wins = bf16["fid"] < fp32_best
    assert (resolve_precision("auto", "cpu", bf16_supported=lambda: True) == "bf16") == bf16_wins
