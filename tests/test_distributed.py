"""분산 학습 검사: ``ddpm-ko train`` 이 ``torchrun --nproc_per_node 2`` 아래에서 그대로 돈다.

CPU 프로세스 두 개를 gloo 로 묶어 (``--device cpu``) 다섯 단계 학습하고 다음을 본다.
- 두 프로세스의 가중치가 바이트까지 같다 (체크포인트에 rank 마다의 가중치 SHA-256 이 남는다).
- 결과가 같은 전역 배치로 한 프로세스에서 학습한 것과 (부동소수 오차 안에서) 같다.
- 기록(로그)과 파일 쓰기는 rank 0 만 한다. 파일 쓰기는 파이썬 감사 훅(audit hook)으로 프로세스마다 센다.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from conftest import LOSS_HISTORY_ATOL
from ddpm_ko.checkpoint import read_checkpoint
from ddpm_ko.train import TrainConfig, Trainer, train
from ddpm_ko.unet import Unet, UnetConfig

SRC = Path(__file__).resolve().parents[1] / "src"
pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed 의 gloo 백엔드가 필요하다"
)


@pytest.fixture(scope="module")
def data_dir(fake_train_dir) -> Path:
    return fake_train_dir


# 작업자 프로세스(RANK 가 있는 프로세스)마다 watch 디렉터리 아래에 쓰는 모든 것을 기록한다.
# 검사 전용 sitecustomize 로 넣으므로 패키지 코드에는 검사용 갈고리가 없다.
AUDIT_SITECUSTOMIZE = textwrap.dedent("""
    import atexit, json, os, sys

    _rank, _watch, _report = os.environ.get("RANK"), os.environ.get("DDPM_KO_TEST_WATCH"), os.environ.get("DDPM_KO_TEST_AUDIT")
    if _rank is not None and _watch and _report:
        _writes, _done = [], False
        _flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

        def _under(p):
            try:
                return os.path.abspath(os.fsdecode(p)).startswith(_watch)
            except TypeError:
                return False

        def _hook(event, args):
            if _done:
                return
            if event == "open":
                path, mode, flags = args
                if _under(path) and ((mode and any(c in mode for c in "wax+")) or (mode is None and flags & _flags)):
                    _writes.append(["open", os.fsdecode(path)])
            elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.chmod", "os.truncate"):
                if any(_under(a) for a in args if isinstance(a, (str, bytes, os.PathLike))):
                    _writes.append([event, os.fsdecode(args[0])])

        sys.addaudithook(_hook)

        @atexit.register
        def _dump():
            global _done
            _done = True  # 보고서 파일 자체는 세지 않는다
            with open(os.path.join(_report, "rank%s.json" % _rank), "w") as f:
                json.dump(_writes, f)
""")

STEPS, GLOBAL_BATCH = 5, 8
TINY = f"--subset 64 --batch-size {GLOBAL_BATCH} --dim 8 --dim-mults 1-2 --attention none --timesteps 50".split()
TINY += "--warmup-steps 0 --log-every 1 --no-progress".split()


def _fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """``Trainer.weights_fingerprint`` 와 같은 방식으로 체크포인트의 model.* 텐서를 해시한다."""
    h = hashlib.sha256()
    for name, v in sorted((k[len("model.") :], v) for k, v in tensors.items() if k.startswith("model.")):
        h.update(name.encode("utf-8"))
        h.update(v.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("micro_batch", [None, 3], ids=["whole", "micro3"])
def test_torchrun_two_cpu_processes_match_single_process(tmp_path, data_dir, micro_batch):
    """micro3: 프로세스마다 배치를 3+1 장으로 나눠 그래디언트를 모은다 (마지막 조각에서만 all-reduce)."""
    out, logs, audit, site = (tmp_path / n for n in ("ddp", "logs", "audit", "site"))
    for d in (audit, site):
        d.mkdir()
    (site / "sitecustomize.py").write_text(AUDIT_SITECUSTOMIZE)
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([str(site), str(SRC), os.environ.get("PYTHONPATH", "")]),
        DDPM_KO_TEST_WATCH=str(tmp_path),
        DDPM_KO_TEST_AUDIT=str(audit),
    )
    # --standalone: 빈 포트를 스스로 고른다 (--master_port 를 정해 충돌할 일이 없다)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "--log-dir",
        str(logs),
        "--redirects",
        "3",
        "-m",
        "ddpm_ko",
        "train",
        "--data-dir",
        str(data_dir),
        *TINY,
        "--max-steps",
        str(STEPS),
        "--checkpoint-every",
        "2",
        "--device",
        "cpu",
        "--out-dir",
        str(out),
        *(["--micro-batch", str(micro_batch)] if micro_batch else []),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    rank_logs = {int(p.parent.name): p.parent for p in logs.rglob("stdout.log")}
    dump = "\n".join(
        f"--- rank {r} {n}\n{(d / n).read_text()}"
        for r, d in sorted(rank_logs.items())
        for n in ("stdout.log", "stderr.log")
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + dump
    assert sorted(rank_logs) == [0, 1], dump

    # 기록은 rank 0 만: 전역 배치와 학습률을 밝힌다
    log0 = (rank_logs[0] / "stdout.log").read_text()
    assert "processes=2" in log0 and f"global_batch={GLOBAL_BATCH} (per process {GLOBAL_BATCH // 2})" in log0, log0
    assert "lr=0.001" in log0 and f"done: step {STEPS}" in log0, log0
    assert (rank_logs[1] / "stdout.log").read_text() == "", "rank 1 이 기록을 남겼다"
    err1 = (rank_logs[1] / "stderr.log").read_text()
    assert not any(w in err1 for w in ("ddpm-ko", "step ", "checkpoint")), err1

    # 파일은 rank 0 만 쓴다
    writes = {r: json.loads((audit / f"rank{r}.json").read_text()) for r in (0, 1)}
    assert writes[1] == [], f"rank 1 이 파일을 썼다: {writes[1]}"
    assert any(p.endswith(".tmp") for _, p in writes[0]), "감사 훅이 rank 0 의 체크포인트 쓰기를 보지 못했다"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.json", "checkpoint.safetensors"]

    # 두 프로세스의 가중치는 바이트까지 같고, 그것이 저장된 가중치다
    tensors, meta = read_checkpoint(out / "checkpoint.safetensors")
    assert meta["train"]["micro_batch"] == micro_batch
    d = meta["distributed"]
    assert d["world_size"] == 2 and d["backend"] == "gloo" and d["ranks_in_sync"] is True
    assert len(d["rank_weight_sha256"]) == 2 and len(set(d["rank_weight_sha256"])) == 1
    assert d["rank_weight_sha256"][0] == _fingerprint(tensors)
    assert (
        meta["step"] == STEPS and meta["train_state"]["world_size"] == 2 and meta["global_batch_size"] == GLOBAL_BATCH
    )
    assert json.loads((out / "checkpoint.json").read_text())["distributed"] == d

    # 같은 전역 배치로 한 프로세스에서 학습한 결과와 비교
    single = train(
        UnetConfig(dim=8, dim_mults=(1, 2), stage_attention="none"),
        TrainConfig(
            out_dir=str(tmp_path / "single"),
            data_dir=str(data_dir),
            subset=64,
            batch_size=GLOBAL_BATCH,
            timesteps=50,
            warmup_steps=0,
            log_every=1,
            max_steps=STEPS,
            checkpoint_every=STEPS,
            device="cpu",
            num_threads=1,
            progress=False,
        ),
        log=lambda m: None,
    )
    ref, ref_meta = read_checkpoint(single["checkpoint"])
    assert [s for s, _ in meta["loss_history"]] == [s for s, _ in ref_meta["loss_history"]] == list(range(1, STEPS + 1))
    np.testing.assert_allclose(
        [v for _, v in meta["loss_history"]], [v for _, v in ref_meta["loss_history"]], rtol=0, atol=LOSS_HISTORY_ATOL
    )  # 이유는 conftest
    # 가중치: AdamW 는 그래디언트를 √v 로 나누므로, 참 그래디언트가 거의 0 인 몇몇 매개변수(GroupNorm 바로 앞의
    # 편향)에서는 그래디언트를 더하는 순서의 차이(~1e-7)가 학습률 크기의 걸음으로 커진다. 그래서 원소별로는
    # 5e-4 까지 허용하되, 전체 변화량 대비 차이는 1% 미만이어야 한다. (전역 배치를 잘못 나누면, 예컨대
    # 프로세스마다 배치 4 로 따로 학습하면, 상대 차이가 ~100% 가 되어 둘 다 크게 어긋난다.)
    torch.manual_seed(0)  # Trainer 와 같은 시드로 만든 초기 가중치
    init = Unet(UnetConfig(dim=8, dim_mults=(1, 2), stage_attention="none")).state_dict()
    diff2 = change2 = 0.0
    for k in sorted(k for k in ref if k.startswith(("model.", "ema."))):
        torch.testing.assert_close(tensors[k], ref[k], rtol=0, atol=5e-4, msg=lambda m, k=k: f"{k}: {m}")
        if k.startswith("model.") and ref[k].is_floating_point():
            diff2 += float((tensors[k] - ref[k]).double().pow(2).sum())
            change2 += float((ref[k] - init[k[len("model.") :]]).double().pow(2).sum())
    assert change2 > 0 and (diff2 / change2) ** 0.5 < 1e-2


def test_global_batch_must_split_evenly(monkeypatch, tmp_path):
    """전역 배치가 프로세스 수로 나누어지지 않으면 프로세스 그룹을 만들기 전에 분명한 오류를 낸다."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    cfg = TrainConfig(out_dir=str(tmp_path), batch_size=7, timesteps=10, sample_steps=10, progress=False, device="cpu")
    with pytest.raises(ValueError, match="global batch size must be divisible by the number of processes"):
        Trainer(UnetConfig(image_size=8, dim=8, dim_mults=(1, 2)), cfg, images=np.zeros((16, 8, 8), np.uint8))
    assert not dist.is_initialized()


def test_audit_hook_really_sees_worker_writes(tmp_path):
    """대조군: 위 검사의 감사 훅은 작업자(RANK 가 있는 프로세스)의 파일 쓰기를 정말로 잡는다."""
    audit, site, watch = tmp_path / "audit", tmp_path / "site", tmp_path / "watch"
    for d in (audit, site, watch):
        d.mkdir()
    (site / "sitecustomize.py").write_text(AUDIT_SITECUSTOMIZE)
    env = dict(os.environ, RANK="1", PYTHONPATH=str(site), DDPM_KO_TEST_WATCH=str(watch), DDPM_KO_TEST_AUDIT=str(audit))
    code = (
        f"import os, tempfile; open({str(watch / 'a.txt')!r}, 'w').close(); "
        f"fd, p = tempfile.mkstemp(dir={str(watch)!r}); os.close(fd); os.replace(p, {str(watch / 'b')!r}); "
        f"open({str(watch / 'a.txt')!r}).read()"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    events = json.loads((audit / "rank1.json").read_text())
    assert [e for e, _ in events] == ["open", "open", "os.rename"], events  # 읽기 전용 open 은 세지 않는다
