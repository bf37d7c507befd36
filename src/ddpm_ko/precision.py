"""학습 정밀도: 장치에 맞는 정밀도(fp32·bf16·fp16)를 고르고, 그에 맞는 자동 혼합 정밀도(autocast) 문맥을 만든다."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

__all__ = ["PRECISIONS", "resolve_precision", "autocast_for"]

#: 학습 정밀도. auto 는 장치를 보고 고른다 (``resolve_precision``).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(requested: str, device_type: str, bf16_supported: Callable[[], bool] | None = None) -> str:
    """요청한 정밀도(auto|fp32|bf16|fp16)와 장치로 실제로 쓸 정밀도를 정한다.

    - CPU·MPS: 언제나 fp32 (자동 혼합 정밀도를 쓰지 않는다). bf16·fp16 을 요청하면 ``ValueError``.
    - CUDA, auto: GPU 가 bf16 을 지원하면(Ampere 이상) bf16, 아니면(예: Colab 의 T4) fp16 + 그래디언트 스케일러.
    - CUDA, bf16 을 요청했는데 GPU 가 지원하지 않으면 ``ValueError`` (fp16 을 쓰라고 알린다).

    ``bf16_supported`` 는 GPU 의 능력을 묻는 함수다 (기본 ``torch.cuda.is_bf16_supported``; 검사에서 바꿔 넣는다).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"알 수 없는 정밀도 '{requested}' / unknown precision: choose one of {list(PRECISIONS)}")
    if device_type != "cuda":
        if requested in ("bf16", "fp16"):
            raise ValueError(
                f"--precision {requested} 는 CUDA 에서만 쓴다 / {requested} autocast is only used on CUDA "
                f"(device: {device_type}); use --precision auto or fp32"
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
