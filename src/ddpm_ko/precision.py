"""학습 정밀도: 장치에 맞는 정밀도(fp32·bf16·fp16)를 고르고, 그에 맞는 자동 혼합 정밀도(autocast) 문맥을 만든다."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

__all__ = ["PRECISIONS", "resolve_precision", "autocast_for", "cpu_bf16_supported", "cpu_bf16_native"]

#: 학습 정밀도. auto 는 장치를 보고 고른다 (``resolve_precision``).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_bf16_supported() -> bool:
    """이 CPU 에서 oneDNN 이 bf16 커널을 쓸 수 있는가 (AVX512 이상, 또는 bf16 을 지원하는 Arm).

    AVX2 까지만 있는 CPU 에서는 bf16 을 fp32 로 바꿔 가며 계산해서, bf16 autocast 학습이 fp32 보다 열 배 느렸다
    (``benchmarks/results/recipe_study.json`` 의 ``cpu_bf16``). 그런 CPU 에서는 bf16 을 고르지 못하게 한다.
    """
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:  # oneDNN 없이 빌드한 torch
        return False


def cpu_bf16_native(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """CPU 에 bf16 행렬 곱 명령(AVX512-BF16 또는 AMX-BF16)이 있는가. 기록용 (Linux 의 /proc/cpuinfo 를 읽는다)."""
    try:
        flags = Path(cpuinfo).read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(
    requested: str,
    device_type: str,
    bf16_supported: Callable[[], bool] | None = None,
) -> str:
    """요청한 정밀도(auto|fp32|bf16|fp16)와 장치로 실제로 쓸 정밀도를 정한다.

    - CPU, auto: fp32. bf16 은 ``--precision bf16`` 으로 골라야 쓴다 (10장: 빨라지는 CPU 에서도 같은 시간의 품질을
      재어 보고 고르게 한다). bf16 을 요청했는데 CPU 가 bf16 커널을 쓰지 못하면(``cpu_bf16_supported``) ``ValueError``.
      fp16 은 CUDA 에서만 쓴다.
    - MPS: 언제나 fp32. bf16·fp16 을 요청하면 ``ValueError``.
    - CUDA, auto: GPU 가 bf16 을 지원하면(Ampere 이상) bf16, 아니면(예: Colab 의 T4) fp16 + 그래디언트 스케일러.
    - CUDA, bf16 을 요청했는데 GPU 가 지원하지 않으면 ``ValueError`` (fp16 을 쓰라고 알린다).

    ``bf16_supported`` 는 장치의 bf16 능력을 묻는 함수다 (기본: CUDA 는 ``torch.cuda.is_bf16_supported``, CPU 는
    ``cpu_bf16_supported``; 검사에서 바꿔 넣는다).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"알 수 없는 정밀도 '{requested}' / unknown precision: choose one of {list(PRECISIONS)}")
    if device_type == "cpu":
        if requested == "fp16":
            raise ValueError(
                "--precision fp16 은 CUDA 에서만 쓴다 / fp16 autocast is only used on CUDA (device: cpu); "
                "use --precision auto, fp32 or bf16"
            )
        if requested == "bf16" and not (bf16_supported or cpu_bf16_supported)():
            raise ValueError(
                "이 CPU 에는 bf16 커널이 없어(AVX512 나 AMX 가 없다) bf16 학습이 fp32 보다 훨씬 느리다: "
                "--precision fp32 (또는 auto) 를 써라 / this CPU has no bf16 kernels (no AVX512/AMX), so bf16 "
                "autocast would be much slower than fp32: use --precision fp32 (or auto)"
            )
        return "fp32" if requested == "auto" else requested
    if device_type != "cuda":
        if requested in ("bf16", "fp16"):
            raise ValueError(
                f"{device_type} 에서는 --precision {requested} 를 쓰지 않는다 (bf16 은 CUDA 와 CPU, fp16 은 CUDA 에서만) / "
                f"{requested} autocast is not used on {device_type}; use --precision auto or fp32"
            )
        return "fp32"
    if requested in ("auto", "bf16"):
        supported = (bf16_supported or torch.cuda.is_bf16_supported)()
        if requested == "auto":
            return "bf16" if supported else "fp16"
        if not supported:
            raise ValueError(
                "이 GPU 는 bf16 을 지원하지 않는다: --precision fp16 (또는 auto) 을 써라 / "
                "this GPU has no bf16 support: use --precision fp16 (or auto)"
            )
    return requested


def autocast_for(precision: str, device_type: str) -> AbstractContextManager:
    """정밀도에 맞는 자동 혼합 정밀도(autocast) 문맥. fp32 면 아무것도 하지 않는다."""
    if precision == "fp32":
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type, dtype=dtype)
