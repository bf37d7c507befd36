"""신뢰성 검사: 원자적 체크포인트, 정확한 이어 학습, 강제 종료(SIGKILL) 뒤 복구, 발산 감지, 메모리 부족 재시도.

각 검사는 지키려는 성질이 깨지면 실패하도록 만들었다.
- 체크포인트를 제자리에 바로 쓰면 → 쓰는 도중 죽인 뒤 불러오기가 실패한다.
- 옵티마이저·EMA·난수·데이터 순서·손실 창(window) 가운데 하나라도 저장하지 않으면
  → 끊었다 이어 한 학습이 한 번에 한 학습과 달라진다.
- 발산한 가중치를 저장하면 → 마지막 정상 체크포인트의 바이트가 바뀐다.
- 메모리 부족을 잡지 않거나 재시도 때 난수를 되돌리지 않으면 → 결과가 모자라거나 달라진다.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CROSS_BATCH_ATOL, TINY_TRAIN_FLAGS, TINY_TRAIN_UNET, tiny_train_config
from ddpm_ko.checkpoint import (
    atomic_write_bytes,
    clean_stale_temp_files,
    load_model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from ddpm_ko.diffusion import GaussianDiffusion
from ddpm_ko.errors import TrainingDivergedError
from ddpm_ko.sampling import is_out_of_memory, sample_with_oom_retry
from ddpm_ko.train import TrainConfig, Trainer, train
from ddpm_ko.unet import Unet

SRC = Path(__file__).resolve().parents[1] / "src"
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="SIGKILL 은 POSIX 에만 있다")

# 8×8 이미지에 맞춘 아주 작은 U-Net: 한 단계가 수 밀리초다.
TINY_UNET = TINY_TRAIN_UNET
IMAGES = np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8)


def quiet(_msg: str) -> None:
    pass


def tiny_config(out_dir: Path, **overrides) -> TrainConfig:
    return tiny_train_config(out_dir, **{"log_every": 5, **overrides})


def assert_same_checkpoint(a: Path, b: Path, prefixes=("model.", "ema.", "optim.", "rng.")) -> None:
    """두 체크포인트의 상태(가중치, EMA, 옵티마이저, 난수)와 학습 기록이 같은지 (아주 좁은 허용 오차로) 본다."""
    ta, ma = read_checkpoint(a)
    tb, mb = read_checkpoint(b)
    assert ma["step"] == mb["step"]
    assert ma["train_state"] == mb["train_state"]
    assert ma["loss_history"] == mb["loss_history"]
    keys = sorted(k for k in ta if k.startswith(prefixes))
    assert keys == sorted(k for k in tb if k.startswith(prefixes))
    for k in keys:
        torch.testing.assert_close(tb[k], ta[k], rtol=1e-6, atol=1e-7, msg=lambda m, k=k: f"{k}: {m}")


# ---------------------------------------------------------------------------------------------- 원자적 쓰기
def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """쓰는 도중 실패하면 (디스크 가득 참 흉내) 이전 체크포인트가 바이트 그대로 남고 임시 파일도 없다."""
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"w": torch.ones(1000)}, {"step": 1})
    before = path.read_bytes(), path.with_suffix(".json").read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"w": torch.zeros(1000)}, {"step": 2})
    monkeypatch.undo()
    assert (path.read_bytes(), path.with_suffix(".json").read_bytes()) == before
    assert not list(tmp_path.glob(".*.tmp")), "실패한 쓰기가 임시 파일을 남겼다"
    tensors, meta = read_checkpoint(path)
    assert meta["step"] == 1 and torch.equal(tensors["w"], torch.ones(1000))


@pytest.mark.skipif(os.name != "posix", reason="파일 권한은 POSIX 의미")
def test_atomic_write_keeps_normal_permissions(tmp_path):
    """임시 파일(mkstemp, 0600) 을 바꿔치기해도 새 파일은 umask 를 따르고, 있던 파일은 권한을 지킨다."""
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.bin"
        atomic_write_bytes(fresh, b"abc")
        assert fresh.stat().st_mode & 0o777 == 0o644
        fresh.chmod(0o640)
        atomic_write_bytes(fresh, b"def")
        assert fresh.stat().st_mode & 0o777 == 0o640 and fresh.read_bytes() == b"def"
    finally:
        os.umask(old)


def test_clean_stale_temp_files_only_touches_our_temps(tmp_path):
    ckpt = tmp_path / "checkpoint.safetensors"
    stale = [tmp_path / ".checkpoint.safetensors.k3j2.tmp", tmp_path / ".checkpoint.json.zz9.tmp"]
    keep = [tmp_path / ".other.safetensors.a.tmp", tmp_path / "checkpoint.safetensors.bak", tmp_path / "notes.tmp"]
    for p in stale + keep:
        p.write_bytes(b"x")
    assert sorted(clean_stale_temp_files(ckpt)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


# ---------------------------------------------------------------------------------------------- 이어 학습
def test_resume_continues_the_same_loss_curve(tmp_path):
    """12 단계를 한 번에 학습 == 6 단계 학습 → 저장 → 이어서 12 단계.

    6 은 log_every=5 의 배수가 아니므로 아직 기록되지 않은 손실 창도 체크포인트에 들어가야 하고,
    64장/배치 8 = 에폭당 8 배치이므로 이어 학습 중에 에폭 경계(데이터 순서 바뀜)도 지난다.
    """
    straight = train(TINY_UNET, tiny_config(tmp_path / "straight", max_steps=12), images=IMAGES, log=quiet)
    half = train(TINY_UNET, tiny_config(tmp_path / "split", max_steps=6), images=IMAGES, log=quiet)
    assert half["step"] == 6
    resumed = train(
        TINY_UNET, tiny_config(tmp_path / "split", max_steps=12), resume=half["checkpoint"], images=IMAGES, log=quiet
    )
    assert resumed["step"] == 12
    assert resumed["loss_history"] == straight["loss_history"]
    assert [s for s, _ in straight["loss_history"]] == [5, 10, 12]
    assert_same_checkpoint(Path(straight["checkpoint"]), Path(resumed["checkpoint"]))


def test_resume_without_config_inherits_the_saved_one(tmp_path):
    """설정 없이 이어 학습하면 (CLI 의 ``--resume`` 만 준 경우) 저장된 배치·시드·학습률을 그대로 쓴다."""
    first = train(TINY_UNET, tiny_config(tmp_path / "run", max_steps=4, lr=3e-3, seed=7), images=IMAGES, log=quiet)
    t = Trainer(resume=tmp_path / "run", images=IMAGES, log=quiet)  # 디렉터리를 주어도 된다
    assert (t.cfg.batch_size, t.cfg.seed, t.cfg.lr, t.cfg.max_steps) == (8, 7, 3e-3, 4)
    assert t.cfg.out_dir == str(tmp_path / "run") and t.step == 4 and t.unet_config == TINY_UNET
    assert Path(first["checkpoint"]) == t.checkpoint_path


# ---------------------------------------------------------------------------------------------- 발산
def _file_bytes(ckpt: Path) -> tuple[bytes, bytes]:
    return ckpt.read_bytes(), ckpt.with_suffix(".json").read_bytes()


def test_nan_in_data_stops_training_and_keeps_the_checkpoint(tmp_path):
    first = train(TINY_UNET, tiny_config(tmp_path, max_steps=3, checkpoint_every=1), images=IMAGES, log=quiet)
    ckpt = Path(first["checkpoint"])
    before = _file_bytes(ckpt)
    trainer = Trainer(
        TINY_UNET, tiny_config(tmp_path, max_steps=10, checkpoint_every=1), resume=ckpt, images=IMAGES, log=quiet
    )
    clean_batch = trainer.batches.batch

    def poisoned(epoch: int, index: int) -> torch.Tensor:
        x = clean_batch(epoch, index)
        if trainer.step == 3:  # 4번째 단계의 데이터에 NaN 하나
            x[0, 0, 0, 0] = float("nan")
        return x

    trainer.batches.batch = poisoned
    with pytest.raises(TrainingDivergedError) as info:
        trainer.run()
    msg = str(info.value)
    assert "step 4" in msg and "4 스텝" in msg, msg
    assert str(ckpt) in msg and "(step 3)" in msg, "메시지가 남겨 둔 체크포인트를 알려야 한다"
    assert _file_bytes(ckpt) == before


def test_huge_learning_rate_never_overwrites_the_last_good_checkpoint(tmp_path):
    """학습률 1e30: 4번째 단계의 손실은 (갱신 전 가중치로 재므로) 아직 유한하지만 갱신 뒤 가중치는 망가진다.

    checkpoint_every=1 이므로 보호가 없으면 망가진 4단계 가중치가 체크포인트를 덮어쓴다.
    """
    first = train(TINY_UNET, tiny_config(tmp_path, max_steps=3, checkpoint_every=1), images=IMAGES, log=quiet)
    ckpt = Path(first["checkpoint"])
    before = _file_bytes(ckpt)
    with pytest.raises(TrainingDivergedError) as info:
        train(
            TINY_UNET,
            tiny_config(tmp_path, max_steps=10, checkpoint_every=1, lr=1e30, warmup_steps=0),
            resume=ckpt,
            images=IMAGES,
            log=quiet,
        )
    msg = str(info.value)
    assert re.search(r"step [45]\b", msg), msg
    assert _file_bytes(ckpt) == before
    tensors, meta = read_checkpoint(ckpt)
    assert meta["step"] == 3
    assert all(torch.isfinite(v).all() and v.abs().max() < 1e3 for k, v in tensors.items() if k.startswith("model."))


def test_cli_divergence_is_one_line_and_keeps_checkpoint(tmp_path, data_dir, capsys):
    from ddpm_ko.cli import main

    out = tmp_path / "run"
    assert (
        main(["train", *cli_tiny_args(data_dir), "--max-steps", "2", "--checkpoint-every", "1", "--out-dir", str(out)])
        == 0
    )
    ckpt = out / "checkpoint.safetensors"
    before = _file_bytes(ckpt)
    capsys.readouterr()
    code = main(
        [
            "train",
            "--resume",
            str(ckpt),
            "--lr",
            "1e30",
            "--warmup-steps",
            "0",
            "--max-steps",
            "8",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddpm-ko: error: ") and "Traceback" not in err, err
    assert re.search(r"step [34]\b", lines[0]), lines[0]
    assert _file_bytes(ckpt) == before


# ---------------------------------------------------------------------------------------------- 강제 종료
@pytest.fixture(scope="module")
def data_dir(fake_train_dir) -> Path:
    """Fashion-MNIST 와 같은 모양(60000×28×28)의 무작위 IDX 파일 (conftest). 실제 데이터 없이도 CLI 를 돌린다."""
    return fake_train_dir


def cli_tiny_args(data_dir: Path) -> list[str]:
    tail = ["--warmup-steps", "2", "--ema-decay", "0.9", "--log-every", "5", "--no-progress"]
    return ["--data-dir", str(data_dir), "--subset", "64", *TINY_TRAIN_FLAGS, *tail]


TARGET = 20  # 강제 종료 검사의 목표 단계 수


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]),
    )
    return env


def _train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ddpm_ko", "train", *args]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_dir) -> Path:
    """끊김 없이 TARGET 단계까지 학습한 체크포인트 (강제 종료 뒤 이어 학습한 결과와 비교한다).

    하위 프로세스와 같은 명령줄 경로를 이 프로세스에서 돌린다 (스레드 1개로 같으므로 결과도 같다).
    torch 를 한 번 더 import 하는 시간을 아낀다.
    """
    from ddpm_ko.cli import main

    out = tmp_path_factory.mktemp("reference")
    n = torch.get_num_threads()
    try:
        assert (
            main(
                [
                    "train",
                    *cli_tiny_args(data_dir),
                    "--max-steps",
                    str(TARGET),
                    "--checkpoint-every",
                    "1",
                    "--out-dir",
                    str(out),
                ]
            )
            == 0
        )
    finally:
        torch.set_num_threads(n)
    return out / "checkpoint.safetensors"


_REPORT = re.compile(r"^checkpoint step (\d+) -> ", re.M)


def _reported_steps(log: Path) -> list[int]:
    return [int(m) for m in _REPORT.findall(log.read_text(errors="replace"))] if log.exists() else []


def _check_after_kill(ckpt: Path, last_reported: int, previous_step: int) -> int:
    """강제 종료 뒤: 체크포인트가 온전히 읽히고, 보고된 마지막 저장보다 뒤처지지 않는다."""
    tensors, meta = read_checkpoint(ckpt)  # 반쯤 쓴 파일이면 여기서 CheckpointError
    step = int(meta["step"])
    assert step >= last_reported, f"보고된 저장 {last_reported} 보다 체크포인트 {step} 가 뒤에 있다"
    assert step >= previous_step, "저장한 것을 잃었다 (단계가 뒤로 갔다)"
    assert any(k.startswith("optim.") for k in tensors) and "rng.noise" in tensors
    load_model_from_checkpoint(ckpt)
    sidecar = json.loads(ckpt.with_suffix(".json").read_text())  # JSON 사본도 언제나 온전한 JSON 이다
    assert sidecar["step"] <= step
    return step


@POSIX_ONLY
def test_sigkill_at_random_moments_loses_nothing(tmp_path, data_dir, reference_run):
    """--checkpoint-every 1 로 학습하는 프로세스를 아무 때나 (저장 사이든 저장 도중이든) SIGKILL 로 세 번 죽인다."""
    out = tmp_path / "run"
    ckpt = out / "checkpoint.safetensors"
    rng = random.Random(20240601)
    previous, kills = 0, 0
    for attempt in range(3):
        log = tmp_path / f"attempt{attempt}.log"
        args = (
            [*cli_tiny_args(data_dir), "--max-steps", str(TARGET), "--checkpoint-every", "1", "--out-dir", str(out)]
            if attempt == 0
            else ["--resume", str(ckpt), "--threads", "1", "--device", "cpu", "--no-progress"]
        )
        with open(log, "w") as fh:
            proc = subprocess.Popen(_train_cmd(*args), env=_env(), stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while proc.poll() is None and not _reported_steps(log) and time.monotonic() < deadline:
            time.sleep(0.01)  # 학습 고리에 들어갈 때까지
        time.sleep(rng.uniform(0.0, 0.15))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        reported = _reported_steps(log)
        assert reported, log.read_text()
        previous = _check_after_kill(ckpt, reported[-1], previous)
        if previous == TARGET:
            break
    assert kills >= 1
    final = subprocess.run(
        _train_cmd("--resume", str(ckpt), "--threads", "1", "--device", "cpu", "--no-progress"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stdout + final.stderr
    assert read_checkpoint(ckpt)[1]["step"] == TARGET
    assert not list(out.glob(".*.tmp")), "이어 학습이 남은 임시 파일을 치우지 않았다"
    assert_same_checkpoint(reference_run, ckpt)


KILLER = textwrap.dedent('''
    """체크포인트를 쓰는 특정한 순간에 스스로 SIGKILL 로 죽는 ddpm-ko (검사 전용)."""
    import os, signal, sys

    import ddpm_ko.checkpoint as ck
    from ddpm_ko.cli import main

    mode, when, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    state = {"calls": 0, "armed": False}
    real_write, real_fdopen, real_replace = ck.atomic_write_bytes, os.fdopen, os.replace

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def counting_write(path, data):  # save_checkpoint 이 부를 때마다 하나씩 센다
        state["calls"] += 1
        state["armed"] = state["calls"] == when
        return real_write(path, data)

    class HalfWriter:  # 절반만 쓰고 디스크에 내린 뒤 죽는다
        def __init__(self, f):
            self._f = f
        def write(self, data):
            self._f.write(data[: len(data) // 2])
            self._f.flush()
            os.fsync(self._f.fileno())
            print(f"KILLED mid-write of {self._f.name} after {len(data) // 2} of {len(data)} bytes", flush=True)
            die()
        def __getattr__(self, name):
            return getattr(self._f, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

    def fdopen(fd, *a, **k):
        f = real_fdopen(fd, *a, **k)
        return HalfWriter(f) if state["armed"] and mode == "mid-write" else f

    def replace(src, dst):
        if state["armed"] and mode == "before-replace":
            print(f"KILLED before replacing {dst}", flush=True)
            die()
        return real_replace(src, dst)

    ck.atomic_write_bytes = counting_write
    os.fdopen, os.replace = fdopen, replace
    sys.exit(main(argv))
''')


@POSIX_ONLY
def test_sigkill_during_checkpoint_writes_loses_nothing(tmp_path, data_dir, reference_run):
    """저장하는 도중의 정해진 세 순간에 죽인다. 단계마다 쓰기는 두 번 (safetensors, 그다음 JSON 사본).

    A: 3단계 safetensors 임시 파일을 절반 쓴 순간   → 2단계 체크포인트가 온전해야 한다.
    B: 이어 학습해 4단계 safetensors 를 다 쓰고 바꿔치기하기 직전 → 3단계가 온전해야 한다.
    C: 이어 학습해 5단계 safetensors 는 바꿔치기했고 JSON 사본을 절반 쓴 순간 → 5단계 (사본은 4단계).
    그 뒤 이어 학습한 최종 결과가 한 번도 끊기지 않은 학습과 같아야 한다.
    """
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    out = tmp_path / "run"
    ckpt = out / "checkpoint.safetensors"
    resume = ["--resume", str(ckpt), "--threads", "1", "--device", "cpu", "--no-progress"]
    phases = [
        (
            "mid-write",
            5,
            [*cli_tiny_args(data_dir), "--max-steps", str(TARGET), "--checkpoint-every", "1", "--out-dir", str(out)],
            2,
            2,
        ),
        ("before-replace", 3, resume, 3, 3),
        ("mid-write", 4, resume, 5, 4),
    ]
    for mode, when, args, want_step, want_sidecar_step in phases:
        proc = subprocess.run(
            [sys.executable, str(script), mode, str(when), "train", *args],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
        assert "KILLED" in proc.stdout
        temps = list(out.glob(".*.tmp"))
        assert temps, "죽은 쓰기의 임시 파일이 있어야 한다 (진짜 경로에 쓰지 않았다는 증거)"
        if mode == "mid-write":
            assert all(0 < t.stat().st_size for t in temps)
        _tensors, meta = read_checkpoint(ckpt)
        assert meta["step"] == want_step
        assert json.loads(ckpt.with_suffix(".json").read_text())["step"] == want_sidecar_step
        load_model_from_checkpoint(ckpt)
    final = subprocess.run(_train_cmd(*resume), env=_env(), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "removed stale temp file" in final.stdout
    assert not list(out.glob(".*.tmp"))
    assert read_checkpoint(ckpt)[1]["step"] == TARGET
    assert json.loads(ckpt.with_suffix(".json").read_text())["step"] == TARGET
    assert_same_checkpoint(reference_run, ckpt)


# ---------------------------------------------------------------------------------------------- 메모리 부족
class FakeDiffusion:
    """배치가 ``limit`` 보다 크면 메모리 부족을 내는 가짜 확산 모델 (T = 1, 한 단계). 결과는 x_T 의 결정적 함수다."""

    num_timesteps = 1
    betas = torch.full((1,), 0.5)

    def __init__(
        self, limit: int, error: type[BaseException] | None = None, message: str = "CUDA out of memory"
    ) -> None:
        self.limit, self.error, self.message = limit, error or torch.cuda.OutOfMemoryError, message
        self.attempts: list[int] = []

    def p_sample(self, model, x, t, *args, **kwargs):
        self.attempts.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise self.error(f"{self.message}. Tried to allocate 2.00 GiB")
        return torch.tanh(2 * x + 0.5), x


@pytest.mark.parametrize(
    "error,message",
    [
        (torch.cuda.OutOfMemoryError, "CUDA out of memory"),
        (RuntimeError, "CUDA out of memory"),
        (RuntimeError, "MPS backend out of memory"),
    ],
)
def test_oom_retries_with_smaller_batches(error, message, capsys):
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    fake = FakeDiffusion(limit=3, error=error, message=message)
    images, traj = sample_with_oom_retry(fake, None, 10, (1, 4, 4), 8, g(), torch.device("cpu"), trajectory=True)
    assert images.shape == (10, 1, 4, 4)
    assert fake.attempts == [8, 4, 2, 2, 2, 2, 2], fake.attempts  # 8 → 4 → 2 로 줄인 뒤 그대로
    assert "retrying with batch 2" in capsys.readouterr().out
    expected = torch.tanh(2 * torch.randn((10, 1, 4, 4), generator=g()) + 0.5)
    assert torch.equal(images, expected)
    assert traj is not None and traj.shape[1] == 2


def test_oom_gives_up_at_min_batch_and_other_errors_pass_through():
    with pytest.raises(torch.cuda.OutOfMemoryError):
        sample_with_oom_retry(FakeDiffusion(limit=0), None, 4, (1, 2, 2), 4, torch.Generator(), torch.device("cpu"))
    fake = FakeDiffusion(limit=1, error=RuntimeError, message="shape mismatch")
    with pytest.raises(RuntimeError, match="shape mismatch"):
        sample_with_oom_retry(fake, None, 4, (1, 2, 2), 4, torch.Generator(), torch.device("cpu"))
    assert fake.attempts == [4], "메모리 부족이 아닌 오류는 재시도하지 않는다"
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x")) and not is_out_of_memory(ValueError("x"))


class OOMAfterSomeSteps(torch.nn.Module):
    """실제 U-Net 을 감싸, 배치가 ``limit`` 보다 크면 세 번째 호출에서 메모리 부족을 낸다.

    앞의 두 단계가 이미 난수를 썼으므로, 재시도 때 생성기 상태를 되돌리지 않으면 DDPM 결과가 달라진다.
    """

    def __init__(self, model: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.model, self.limit, self.calls = model, limit, 0

    def forward(self, x, t):
        if x.shape[0] > self.limit:
            self.calls += 1
            if self.calls == 3:
                self.calls = 0
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return self.model(x, t)


def test_oom_retry_with_real_sampler_gives_identical_images():
    torch.manual_seed(0)
    model = Unet(TINY_UNET).eval()
    diffusion = GaussianDiffusion.from_schedule("linear", 20)
    cpu = torch.device("cpu")

    def run(net, batch, sampler, **kw):
        g = torch.Generator().manual_seed(11)
        return sample_with_oom_retry(diffusion, net, 6, (1, 8, 8), batch, g, cpu, sampler=sampler, **kw)[0]

    # 재시도는 배치 6 에서 실패한 뒤 배치 3 으로 처음부터 다시 한다. 그러니 결과는 처음부터 배치 3 으로 한 것과
    # 비트까지 같아야 한다 (같은 입력, 같은 모양 → 같은 커널). 결정적 샘플러(DDIM, η = 0)와, 실패한 시도가 쓴
    # 난수를 되돌리는 확률적 샘플러(DDPM) 모두 그렇다.
    for sampler, kw in (("ddim", {"steps": 5}), ("ddpm", {})):
        retried = run(OOMAfterSomeSteps(model, limit=3), 6, sampler, **kw)
        assert retried.shape == (6, 1, 8, 8)
        torch.testing.assert_close(retried, run(model, 3, sampler, **kw), rtol=0, atol=0, msg=sampler)
    # 한 번에 배치 6 으로 만든 것과는 float32 반올림만큼만 다르다 (conftest.CROSS_BATCH_ATOL 의 이유)
    torch.testing.assert_close(
        run(OOMAfterSomeSteps(model, limit=3), 6, "ddim", steps=5),
        run(model, 6, "ddim", steps=5),
        rtol=0,
        atol=CROSS_BATCH_ATOL,
    )
