"""책이 싣는 사전 학습 모델 (Fashion-MNIST, EMA 가중치)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import load_model_from_checkpoint
from .errors import CheckpointError

__all__ = ["PRETRAINED_NAME", "PRETRAINED_URL", "pretrained_path", "load_pretrained"]

PRETRAINED_NAME = "fashion_mnist_ema.safetensors"
#: 저장소를 클론하지 않은 환경(Colab 의 pip 설치)에서 받는 주소. 포크라면 바꾼다.
PRETRAINED_URL = "https://github.com/ddpm-ko/ddpm_ko/raw/main/checkpoints/" + PRETRAINED_NAME
PRETRAINED_ENV = "DDPM_KO_PRETRAINED"


def pretrained_path(download: bool = True) -> Path:
    """사전 학습 체크포인트 경로: $DDPM_KO_PRETRAINED → 저장소의 checkpoints/ → 캐시(내려받기)."""
    env = os.environ.get(PRETRAINED_ENV)
    if env:
        return Path(env)
    repo_file = Path(__file__).resolve().parents[2] / "checkpoints" / PRETRAINED_NAME
    if repo_file.is_file():
        return repo_file
    cache = Path(torch.hub.get_dir()) / "ddpm_ko" / PRETRAINED_NAME
    if cache.is_file():
        return cache
    if not download:
        raise CheckpointError(f"사전 학습 모델이 없다 / pretrained checkpoint not found (looked at {repo_file}, {cache})")
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        for suffix in (".json", ".safetensors"):
            torch.hub.download_url_to_file(PRETRAINED_URL[: -len(".safetensors")] + suffix,
                                           str(cache.with_suffix(suffix)), progress=False)
    except Exception as e:  # 네트워크 없음 등
        raise CheckpointError(
            f"사전 학습 모델을 받지 못했다 / could not download {PRETRAINED_URL}: {e}. "
            f"저장소를 클론하거나 파일을 받아 ${PRETRAINED_ENV} 로 가리켜라"
        ) from e
    return cache


def load_pretrained(device: torch.device | str = "cpu"):
    """사전 학습 모델을 불러 ``(model, diffusion, meta)`` 를 돌려준다 (model 은 EMA 가중치, eval 모드)."""
    return load_model_from_checkpoint(pretrained_path(), use_ema=True, device=device)
