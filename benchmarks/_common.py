"""벤치마크 스크립트가 함께 쓰는 도우미: 기계 정보, 결과 JSON 저장, 최대 메모리(RSS).

벤치마크는 검사(test)가 아니다. 숫자를 재서 출력하고 ``benchmarks/results/NAME.json`` 에 남긴다.
모든 JSON 에는 잰 기계(CPU 모델, 코어 수, torch 버전, 스레드 수)와 잴 때의 부하(load average)가 들어간다.
JSON 의 경로는 저장소 루트에 상대적으로 적는다 (책의 사전 학습 모델은 ``pretrained``): 다른 기계에서도 같은
결과 파일이 되고, 잰 기계의 디렉터리 구조가 남지 않는다.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: 다른 구현(denoising-diffusion-pytorch 등)을 설치하는 곳: ``make bench-peers`` (git 이 무시한다). ``--external`` 의 기본값
PEERS = ROOT / "benchmarks" / ".peers"
_ABSOLUTE = re.compile(r"^(/|~/|[A-Za-z]:[\\/])")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """잰 기계와 그 순간의 부하. 코어 수보다 load average 가 크면 다른 작업과 CPU 를 나눠 쓴 것이다."""
    import torch

    import ddpm_ko

    cores = os.cpu_count() or 1
    load = load_average()
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": cores,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "ddpm_ko": ddpm_ko.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1_5_15min": load,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    if load is not None and load[0] > 0.75 * cores:
        info["note"] = (
            f"shared machine: 1-min load average {load[0]} on {cores} cores when this run started (other jobs, "
            "or this benchmark's own previous runs); absolute numbers may be pessimistic and noisy, "
            "compare variants measured side by side"
        )
    return info


def peak_rss_mb() -> float:
    """이 프로세스의 최대 상주 메모리(RSS, MB). Linux 의 ru_maxrss 는 KB 단위다."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(r / 1024 if sys.platform.startswith("linux") else r / 2**20, 1)


def current_rss_mb() -> float | None:
    """지금 이 프로세스의 상주 메모리(RSS, MB). Linux 의 /proc 에서 읽고, 없으면 None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def merge_with_previous(
    name: str, rows: list[dict[str, Any]], key: str, machine: dict[str, Any], check: Any = None
) -> list[dict[str, Any]]:
    """``--append``: ``benchmarks/results/NAME.json`` 의 기존 줄에 새 줄을 덧붙인다 (``key`` 가 같은 줄은 새 값으로).

    기존 결과의 기계 정보는 ``machine["earlier_runs"]`` 에 남긴다. ``check(old)`` 가 주어지면 덧붙이기 전에 부르고,
    기존 결과와 섞을 수 없으면 그 함수가 ``SystemExit`` 를 낸다. 기존 파일이 없으면 ``rows`` 를 그대로 돌려준다.
    """
    prev = RESULTS / f"{name}.json"
    if not prev.is_file():
        return rows
    old = json.loads(prev.read_text(encoding="utf-8"))
    if check is not None:
        check(old)
    new_keys = {r[key] for r in rows}
    machine["earlier_runs"] = [*old.get("machine", {}).pop("earlier_runs", []), old.get("machine", {})]
    return [r for r in old.get("results", []) if r[key] not in new_keys] + rows


def portable_path(path: str | os.PathLike) -> str:
    """결과에 적을 경로: 책의 사전 학습 모델이면 ``pretrained``, 저장소 안이면 루트에 상대적인 경로,
    저장소 밖의 절대 경로면 ``<outside-repo>/파일이름`` (잰 기계의 디렉터리 구조를 남기지 않는다)."""
    text = os.fspath(path)
    if text == "pretrained" or not _ABSOLUTE.match(text):
        return Path(text).as_posix() if text != "pretrained" else text
    p = Path(text).expanduser()
    if not p.is_absolute():  # 다른 운영 체제의 절대 경로 (예: 리눅스에서 본 C:\…)
        return "<outside-repo>/" + re.split(r"[\\/]", text)[-1]
    try:
        from ddpm_ko.pretrained import pretrained_path

        if p.exists() and os.path.samefile(p, pretrained_path()):
            return "pretrained"
    except Exception:  # 사전 학습 모델이 없는 checkout
        pass
    try:
        return p.resolve().relative_to(ROOT.resolve()).as_posix()
    except ValueError:
        return f"<outside-repo>/{p.name}"


def portable_command(argv: list[str]) -> str:
    """명령줄을 한 줄로: 절대 경로 인자(``--opt=/경로`` 꼴 포함)는 ``portable_path`` 로 바꾼다."""
    out = []
    for arg in argv:
        opt, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if _ABSOLUTE.match(value):
            value = portable_path(value)
        out.append(f"{opt}{eq}{value}")
    return " ".join(out)


def save_result(name: str, data: dict[str, Any], machine: dict[str, Any] | None = None) -> Path:
    """``benchmarks/results/NAME.json`` 에 결과를 쓴다 (기계 정보와 명령줄을 함께, 경로는 ``portable_path``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": portable_command([Path(sys.executable).name, *sys.argv]),
        "machine": machine or machine_info(),
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"[bench] wrote {path.relative_to(ROOT)}")
    return path


def save_atomic(name: str, data: dict[str, Any]) -> Path:
    """``benchmarks/results/NAME.json`` 을 임시 파일에 쓴 뒤 이름을 바꿔, 어느 순간에 죽어도 이전 파일이 온전하게 한다."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def shipped_or_provisional_checkpoint(explicit: str | None) -> tuple[Path, bool]:
    """평가할 확산 모델 체크포인트: 주어진 경로 → 책의 사전 학습 모델 → 학습 중인 runs/pretrained (잠정).

    ``(경로, 잠정 여부)`` 를 돌려준다. 잠정(provisional) 체크포인트의 숫자는 책에 싣는 모델의 숫자가 아니다.
    ``explicit`` 이 ``pretrained`` 면 책의 사전 학습 모델 (``ddpm_ko.pretrained.pretrained_path`` 가 찾는 곳).
    """
    from ddpm_ko.errors import CheckpointError
    from ddpm_ko.pretrained import pretrained_path

    if explicit and explicit != "pretrained":
        return Path(explicit), "runs/" in str(explicit)
    try:
        return pretrained_path(), False
    except CheckpointError:
        if explicit:
            raise
    running = ROOT / "runs" / "pretrained" / "checkpoint.safetensors"
    if running.is_file():
        return running, True
    raise SystemExit(
        "확산 모델 체크포인트가 없다 / no diffusion checkpoint: pass --checkpoint PATH "
        "(the pretrained model is not there yet)"
    )


def fmt_table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    body = ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths)) for r in rows]
    return "\n".join([line, "-" * len(line), *body])


def load_benchmark_model(explicit: str | None, device: Any) -> tuple[Path, Any, Any, dict[str, Any], bool]:
    """평가할 확산 모델을 불러온다: ``(경로, EMA 신경망, 확산 과정, 메타데이터, 잠정 여부)``.

    잠정(provisional)이면 학습 중인 ``runs/`` 의 체크포인트를 읽은 것이고, 그 숫자는 책이 싣는 모델의 숫자가 아니다.
    책이 싣는 파일이면 그 학습 단계(메타데이터의 ``step``)를 결과에 함께 적는다.
    """
    from ddpm_ko.checkpoint import load_model_from_checkpoint, total_training_steps

    ckpt, provisional = shipped_or_provisional_checkpoint(explicit)
    model, diffusion, meta = load_model_from_checkpoint(ckpt, use_ema=True, device=device)
    # 미세 조정한 모델의 step 은 0 부터 다시 센 수라, 앞선 학습까지 더한 전체 스텝을 함께 적는다
    print(
        f"[bench] {portable_path(ckpt)} (step {meta.get('step')}, {total_training_steps(meta):,} steps in all"
        f"{', provisional' if provisional else ''})",
        flush=True,
    )
    return ckpt, model, diffusion, meta, provisional


def checkpoint_fields(ckpt: str | os.PathLike, meta: dict[str, Any], provisional: bool = False) -> dict[str, Any]:
    """결과 JSON 에 적는 '어느 모델을 쟀는가': 경로, 잠정 여부, 파일의 SHA-256, 학습 스텝.

    학습 스텝만으로는 모델을 가리지 못한다 (미세 조정한 모델은 스텝을 0 부터 다시 세고, 책이 싣는 파일은 새 판으로 바뀔
    수 있다). 9–11장은 결과의 SHA-256 을 지금 불러온 모델의 것과 견주어, 어느 모델로 잰 값인지 밝힌다.
    """
    from ddpm_ko.pretrained import file_sha256

    return {
        "checkpoint": portable_path(ckpt),
        "provisional": provisional,
        "checkpoint_sha256": file_sha256(ckpt),
        "checkpoint_step": meta.get("step"),
        "checkpoint_train_max_steps": (meta.get("train") or {}).get("max_steps"),
    }


def same_checkpoint(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """이어 잴 수 있는가: 경로가 같고, SHA-256 이 (둘 다 있으면) 같고, 없으면 학습 스텝이 같다."""
    if old.get("checkpoint") != new.get("checkpoint"):
        return False
    if old.get("checkpoint_sha256") and new.get("checkpoint_sha256"):
        return old["checkpoint_sha256"] == new["checkpoint_sha256"]
    return old.get("checkpoint_step") == new.get("checkpoint_step")


def import_lucidrains(ext_dir: str | os.PathLike = PEERS) -> Any:
    """``ext_dir`` (기본 ``benchmarks/.peers``, ``make bench-peers`` 가 만든다) 에 설치한 denoising-diffusion-pytorch 의
    본 모듈(Unet, GaussianDiffusion)을 불러온다.

    venv 를 건드리지 않으려고 설치하지 않고 파일에서 직접 불러온다. 그 패키지의 ``Trainer`` 만 쓰는 의존성
    (torchvision, accelerate, scipy, pytorch_fid)은 빈 모듈로 채운다. ``ema_pytorch`` 는 ``ext_dir`` 에 있으면
    진짜를 쓰고 (time_to_quality 가 그 EMA 를 쓴다), 없으면 빈 모듈이다. 신경망과 확산 코드는 손대지 않는다.
    """
    import importlib.util
    import types

    ext = Path(ext_dir)
    src = ext / "denoising_diffusion_pytorch"
    if not src.is_dir():
        raise SystemExit(
            f"{portable_path(src)} 가 없다 / not found: `make bench-peers` 로 먼저 설치하라 "
            "(install the peer implementations first, see benchmarks/README.md)"
        )
    if str(ext) not in sys.path:
        sys.path.append(str(ext))  # ema_pytorch 용. 뒤에 붙여 venv 의 패키지가 먼저 잡히게 한다
    try:
        import ema_pytorch  # noqa: F401
    except ImportError:
        pass
    for name in (
        "torchvision",
        "torchvision.transforms",
        "torchvision.utils",
        "scipy",
        "scipy.optimize",
        "ema_pytorch",
        "accelerate",
        "pytorch_fid",
        "pytorch_fid.inception",
    ):
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.__path__ = []  # type: ignore[attr-defined]
            sys.modules[name] = stub
    tv = sys.modules["torchvision"]
    for attr in ("transforms", "utils"):
        if not hasattr(tv, attr):
            setattr(tv, attr, sys.modules[f"torchvision.{attr}"])
    for mod_name, attr in (
        ("scipy.optimize", "linear_sum_assignment"),
        ("ema_pytorch", "EMA"),
        ("accelerate", "Accelerator"),
    ):
        if not hasattr(sys.modules[mod_name], attr):
            setattr(sys.modules[mod_name], attr, None)
    pkg = types.ModuleType("denoising_diffusion_pytorch")
    pkg.__path__ = [str(src)]  # type: ignore[attr-defined]
    sys.modules["denoising_diffusion_pytorch"] = pkg
    spec = importlib.util.spec_from_file_location(
        "denoising_diffusion_pytorch.denoising_diffusion_pytorch", src / "denoising_diffusion_pytorch.py"
    )
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = mod  # type: ignore[union-attr]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def parse_point(item: str) -> dict[str, Any]:
    """샘플러 설정 ``"ddim:50"`` / ``"dpm-solver++:10:logsnr"`` → ``{"sampler", "steps", "spacing"}``.

    간격을 생략한 DPM-Solver++ 는 ``solvers.DEFAULT_SPACING``, DDIM·DDPM 의 간격은 ``None`` 이다. 형식이 틀리면 고칠 방법을
    말하는 ``SystemExit`` (quality_vs_nfe 의 ``--points``, recipe_study 의 ``--eval-sampler``).
    """
    from ddpm_ko.sampling import SAMPLERS, SOLVER_SAMPLERS
    from ddpm_ko.solvers import DEFAULT_SPACING, SPACINGS

    parts = item.strip().split(":")
    if len(parts) not in (2, 3) or parts[0] not in SAMPLERS or not parts[1].isdigit() or int(parts[1]) < 1:
        raise SystemExit(f"점의 형식이 틀렸다 / bad point {item!r}: use sampler:steps[:spacing], sampler in {SAMPLERS}")
    sampler, steps = parts[0], int(parts[1])
    spacing = None
    if sampler in SOLVER_SAMPLERS:
        spacing = parts[2] if len(parts) == 3 else DEFAULT_SPACING
        if spacing not in SPACINGS:
            raise SystemExit(f"알 수 없는 간격 / unknown spacing {spacing!r}: choose one of {SPACINGS}")
    elif len(parts) == 3:
        raise SystemExit(f"간격은 DPM-Solver++ 에만 / a spacing only applies to {SOLVER_SAMPLERS}: {item!r}")
    return {"sampler": sampler, "steps": steps, "spacing": spacing}
