"""책이 싣는 사전 학습 모델 (Fashion-MNIST, EMA 가중치)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import load_model_from_checkpoint
from .errors import CheckpointError

__all__ = ["PRETRAINED_NAME", "PRETRAINED_URL", "locate_shipped_file", "pretrained_path", "load_pretrained"]

PRETRAINED_NAME = "fashion_mnist_ema.safetensors"
#: 저장소를 클론하지 않은 환경(Colab 의 pip 설치)에서 받는 주소. 포크라면 바꾼다.
PRETRAINED_URL = "https://github.com/ddpm-ko/ddpm_ko/raw/main/checkpoints/" + PRETRAINED_NAME
PRETRAINED_ENV = "DDPM_KO_PRETRAINED"


def locate_shipped_file(name: str, env_var: str, url: str, download: bool = True, how_to_make: str = "") -> Path:
    """저장소가 싣는 파일의 경로: $env_var → 저장소의 checkpoints/ → 캐시 (없으면 ``url`` 에서 내려받기).

    사전 학습 모델과 평가용 분류기가 함께 쓴다. JSON 사이드카도 같은 이름으로 함께 받는다.
    """
    env = os.environ.get(env_var)
    if env:
        return Path(env)
    repo_file = Path(__file__).resolve().parents[2] / "checkpoints" / name
    if repo_file.is_file():
        return repo_file
    cache = Path(torch.hub.get_dir()) / "ddpm_ko" / name
    if cache.is_file():
        return cache
    hint = f" — {how_to_make}" if how_to_make else ""
    if not download:
        raise CheckpointError(f"{name} 이 없다 / {name} not found (looked at {repo_file}, {cache}){hint}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        for suffix in (".json", ".safetensors"):
            torch.hub.download_url_to_file(url[: -len(".safetensors")] + suffix, str(cache.with_suffix(suffix)),
                                           progress=False)
    except Exception as e:  # 네트워크 없음 등
        raise CheckpointError(
            f"{name} 을 받지 못했다 / could not download {url}: {type(e).__name__}{hint}; "
            f"또는 파일을 받아 ${env_var} 로 가리켜라 (or point ${env_var} at a local copy)"
        ) from e
    return cache


def pretrained_path(download: bool = True) -> Path:
    """사전 학습 체크포인트 경로: $DDPM_KO_PRETRAINED → 저장소의 checkpoints/ → 캐시(내려받기)."""
    return locate_shipped_file(PRETRAINED_NAME, PRETRAINED_ENV, PRETRAINED_URL, download,
                               "저장소를 클론하거나 `ddpm-ko train` 후 `ddpm-ko export` 로 만든다")


def load_pretrained(device: torch.device | str = "cpu"):
    """사전 학습 모델을 불러 ``(model, diffusion, meta)`` 를 돌려준다 (model 은 EMA 가중치, eval 모드)."""
    return load_model_from_checkpoint(pretrained_path(), use_ema=True, device=device)
