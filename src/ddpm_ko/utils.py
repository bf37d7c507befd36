"""작은 공용 도구: 장치 선택, 시드, 빠른 모드, CPU 성능 설정, 실행 환경 기록."""

from __future__ import annotations

import ctypes
import os
import platform
import random
import sys
from importlib import metadata
from typing import Any

import numpy as np
import torch

__all__ = [
    "pick_device",
    "seed_everything",
    "fast_mode",
    "tune_cpu",
    "environment_info",
    "cpu_model_name",
    "package_version",
]

FAST_ENV = "DDPM_KO_FAST"


def pick_device(preferred: str | None = None) -> torch.device:
    """쓸 장치를 고른다: ``preferred`` 가 있으면 그것, 없으면 cuda → mps → cpu 순서.

    CPU 를 고르면 ``tune_cpu()`` 도 적용한다 (malloc 문턱값; 효과는 그 함수의 설명을 보라).
    """
    if preferred not in (None, "", "auto"):
        dev = torch.device(preferred)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("CUDA 를 쓸 수 없다 / CUDA is not available: use --device cpu")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError("MPS 를 쓸 수 없다 / MPS is not available: use --device cpu")
        if dev.type == "cpu":
            tune_cpu()
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    tune_cpu()
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Python, NumPy, PyTorch(CPU·CUDA)의 난수 시드를 모두 정하고 CPU 생성기를 돌려준다."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def fast_mode() -> bool:
    """환경 변수 ``DDPM_KO_FAST=1`` 이면 ``True``. CI 가 노트북을 짧게 돌릴 때 쓴다."""
    return os.environ.get(FAST_ENV, "0").strip().lower() in ("1", "true", "yes", "on")


_TUNED = False


def tune_cpu(num_threads: int | None = None) -> None:
    """CPU 학습 속도를 높이는 설정을 한 번 적용한다.

    - glibc ``malloc`` 이 큰 버퍼를 스텝마다 ``mmap``/``munmap`` 하지 않도록 문턱값을 올린다.
      효과는 모델과 배치에 따라 다르다. 이 책의 2코어 기계에서 기본 신경망을 배치 128 로 학습하면 약 1.04배
      빨라질 뿐이지만 (``benchmarks/results/train_throughput.json`` 의 ours-default 대 no-malloc-tuning),
      스텝마다 큰 버퍼를 새로 잡는 신경망일수록 효과가 커진다. 느려지는 경우는 보지 못해 CPU 에서는 늘 켠다.
      glibc 가 아니면 아무것도 하지 않는다.
    - ``num_threads`` 가 주어지면 PyTorch 연산 스레드 수를 정한다.
    """
    global _TUNED
    if num_threads:
        torch.set_num_threads(num_threads)
    if _TUNED or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # 64비트 glibc 가 허용하는 최댓값
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
        libc.mallopt(M_TOP_PAD, 256 << 20)
    except (OSError, AttributeError):
        pass
    _TUNED = True


def package_version() -> str:
    """설치된 ddpm_ko 의 판 (``importlib.metadata``; 설치하지 않고 ``src`` 에서 돌리면 ``"unknown"``).

    판의 원본은 ``ddpm_ko/__init__.py`` 의 ``__version__`` 이고 pyproject 가 설치할 때 그 값을 메타데이터에 적는다.
    하위 모듈이 패키지 전체(``import ddpm_ko``)를 들여오지 않으려고 메타데이터에서 읽는다.
    """
    try:
        return metadata.version("ddpm_ko")
    except metadata.PackageNotFoundError:
        return "unknown"


def environment_info(device: torch.device | str | None = None) -> dict[str, Any]:
    """체크포인트 옆 JSON 에 남길 실행 환경(버전, 장치, CPU)을 모은다."""
    dev = torch.device(device) if device is not None else pick_device()
    info: dict[str, Any] = {
        "ddpm_ko": package_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(dev),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    cpu_model = cpu_model_name()
    if cpu_model:
        info["cpu_model"] = cpu_model
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def cpu_model_name() -> str | None:
    """CPU 모델 이름 (Linux 의 /proc/cpuinfo, 그 밖에는 platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None
