"""명령줄 ``python -m ddpm_ko`` 연기 검사(smoke test): 아주 작은 학습 → 샘플 → 오류 메시지.

하위 프로세스로 실행해 사용자가 보는 그대로(종료 코드, 표준 오류, 트레이스백 유무)를 검사한다.
학습은 작은 신경망(dim 8, dim_mults 1-2)으로 20 단계만 하고, 실제 Fashion-MNIST 가 없으면
형식만 맞춘 가짜 데이터 디렉터리를 쓴다.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA_DIR, TORCH_THREADS, _real_data_missing
from ddpm_ko.cli import main


def run_cli(*args: str, timeout: float = 300, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update({"MPLBACKEND": "Agg", "OMP_NUM_THREADS": str(TORCH_THREADS), "PYTHONUNBUFFERED": "1"})
    env.update(env_extra or {})
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else src
    return subprocess.run(
        [sys.executable, "-m", "ddpm_ko", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0, f"성공하면 안 된다:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"오류는 한 줄이어야 한다:\n{proc.stderr}"
    assert lines[0].startswith("ddpm-ko: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} 가 없다: {lines[0]}"


@pytest.fixture(scope="module")
def data_dir(request) -> Path:
    """실제 데이터가 있으면 그것을, 없으면 형식만 맞춘 가짜 train 분할 (60000 장) 을 쓴다."""
    if _real_data_missing() is None:
        return REAL_DATA_DIR
    return request.getfixturevalue("fake_train_dir")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("cli-run")
    proc = run_cli(
        "train",
        "--max-steps",
        "20",
        "--subset",
        "256",
        "--batch-size",
        "16",
        "--out-dir",
        str(out),
        "--no-progress",
        "--dim",
        "8",
        "--dim-mults",
        "1-2",
        "--threads",
        str(TORCH_THREADS),
        "--data-dir",
        str(data_dir),
        "--warmup-steps",
        "5",
    )
    assert proc.returncode == 0, f"학습 실패 (rc={proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr
    return out


@pytest.mark.slow
def test_train_writes_checkpoint(trained):
    ckpt, meta_path = trained / "checkpoint.safetensors", trained / "checkpoint.json"
    assert ckpt.is_file() and ckpt.stat().st_size > 10_000
    assert meta_path.is_file()
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    assert meta["step"] == 20
    assert meta["unet"]["dim"] == 8 and meta["unet"]["dim_mults"] == [1, 2]


@pytest.mark.slow
def test_sample_writes_npy_and_animated_gif(trained, tmp_path):
    from PIL import Image

    npy, gif = tmp_path / "x.npy", tmp_path / "x.gif"
    ckpt = str(trained / "checkpoint.safetensors")
    outputs = ["--out", str(npy), "--gif", str(gif)]
    proc = run_cli("sample", "--checkpoint", ckpt, *"--num 4 --sampler ddim --steps 5 --no-progress".split(), *outputs)
    assert proc.returncode == 0, proc.stderr[-4000:]
    arr = np.load(npy)
    assert arr.dtype == np.uint8
    assert arr.shape == (4, 28, 28, 1)
    assert arr.max() > arr.min()  # 단색 이미지가 아니다
    with Image.open(gif) as im:
        assert im.format == "GIF"
        assert im.is_animated and im.n_frames > 1
        assert im.info.get("loop") == 0


@pytest.mark.slow
def test_sample_rejects_too_many_ddim_steps(trained, tmp_path):
    ckpt = str(trained / "checkpoint.safetensors")
    flags = "--num 4 --sampler ddim --steps 5000 --no-progress".split()
    proc = run_cli("sample", "--checkpoint", ckpt, *flags, "--out", str(tmp_path / "x.npy"))
    assert_one_line_error(proc, "5000")
    assert not (tmp_path / "x.npy").exists()


def test_help_works():
    proc = run_cli("--help", timeout=120)
    assert proc.returncode == 0, proc.stderr
    for word in ("train", "sample", "export"):
        assert word in proc.stdout


def test_num_zero_is_rejected(tmp_path):
    proc = run_cli(
        "sample",
        "--checkpoint",
        str(tmp_path / "c.safetensors"),
        "--num",
        "0",
        "--out",
        str(tmp_path / "x.npy"),
        timeout=120,
    )
    assert_one_line_error(proc, "--num", ">= 1")


def test_missing_checkpoint_is_rejected(tmp_path):
    missing = tmp_path / "nope" / "checkpoint.safetensors"
    proc = run_cli(
        "sample",
        "--checkpoint",
        str(missing),
        "--num",
        "2",
        "--out",
        str(tmp_path / "x.npy"),
        "--no-progress",
        timeout=120,
    )
    assert_one_line_error(proc, "nope")


# 아래는 같은 처리(main 의 오류 처리)를 프로세스를 새로 띄우지 않고 확인한다 (import 시간을 아낀다).
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["sample", "--checkpoint", "c.safetensors", "--num", "-3", "--out", "x.npy"], "--num"),
        (
            ["sample", "--checkpoint", "c.safetensors", "--num", "2", "--sampler", "euler", "--out", "x.npy"],
            "--sampler",
        ),
        (["sample", "--out", "x.npy"], "--num"),  # --checkpoint 는 없어도 된다 (기본 pretrained)
        (["train", "--max-steps", "0"], "--max-steps"),
        (["train", "--dim-mults", "1-x"], "1-2-4"),
        (["train", "--epochs", "1", "--max-steps", "5"], "not allowed with"),
        (["fly"], "invalid choice"),
        ([], "required"),
    ],
)
def test_argument_errors_are_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("ddpm-ko: error:"), err
    assert needle in err[0]


def test_user_errors_inside_commands_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DDPM_KO_DATA_DIR", raising=False)
    cases = [
        (
            ["sample", "--checkpoint", str(tmp_path / "c.safetensors"), "--num", "2", "--out", str(tmp_path / "x.png")],
            ".npy",
        ),
        (["sample", "--checkpoint", str(tmp_path / "c.safetensors"), "--num", "2"], "--out"),
        (
            [
                "train",
                "--max-steps",
                "1",
                "--data-dir",
                str(tmp_path / "no-data"),
                "--out-dir",
                str(tmp_path / "run"),
                "--dim",
                "8",
                "--dim-mults",
                "1-2",
            ],
            "no-data",
        ),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("ddpm-ko: error:"), err
        assert needle in err[0], err[0]


def test_train_help_lists_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--max-steps", "--subset", "--batch-size", "--out-dir", "--dim", "--dim-mults", "--no-progress"):
        assert opt in out


def test_evaluate_and_train_classifier_parse_and_refuse_bad_files(tmp_path, capsys):
    from ddpm_ko.cli import build_parser

    args = build_parser().parse_args(["evaluate", "--samples", str(tmp_path / "missing.npy"), "--num", "10"])
    assert args.num == 10 and args.seed == 0 and args.json is None
    for argv, needle in (
        (["evaluate", "--samples", str(tmp_path / "missing.npy"), "--num", "10"], "not found"),
        (["evaluate", "--samples", "x.npy", "--json", "out.txt"], ".json"),
        (["train-classifier", "--out", "clf.pt"], ".safetensors"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("ddpm-ko: error:") and needle in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--samples", "x.npy", "--num", "0"])
