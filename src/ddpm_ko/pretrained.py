"""책이 싣는 가중치: 사전 학습 확산 모델(Fashion-MNIST, EMA 가중치), 그 클래스 조건부 모델(11장), 평가용 분류기.

두 파일(과 JSON 사본)은 패키지 데이터로 ``ddpm_ko/weights/`` 에 들어 있다. 저장소를 클론했든
``pip install`` 했든(Colab, Kaggle) 같은 파일을 ``importlib.resources`` 로 찾으므로 네트워크가 필요 없다.
불러오기 전에 파일의 SHA-256 을 아래 ``SHIPPED_SHA256`` 과 맞춰 보아, 손상되거나 바뀐 파일을 조용히
쓰지 않는다. 환경 변수(``DDPM_KO_PRETRAINED``, ``DDPM_KO_CLASSIFIER``)나 인자로 준 경로는 사용자의
파일이므로 그대로 쓴다 (해시를 기록해 둔 파일이 아니다). ``load_pretrained`` 가 확산 모델을, ``load_classifier`` 가
평가용 분류기를 불러온다.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from importlib import resources
from pathlib import Path

import torch

from .checkpoint import file_sha256, load_model_from_checkpoint, read_checkpoint, training_stages
from .classifier import FashionClassifier, read_classifier
from .errors import CheckpointError

__all__ = [
    "PRETRAINED_NAME",
    "PRETRAINED_CONDITIONAL_NAME",
    "resolve_checkpoint_name",
    "CLASSIFIER_NAME",
    "SHIPPED_SHA256",
    "WEIGHTS_DIR",
    "shipped_file",
    "file_sha256",
    "verify_shipped_file",
    "locate_shipped_file",
    "pretrained_path",
    "load_pretrained",
    "pretrained_stages",
    "which_model",
    "CLASSIFIER_ENV",
    "classifier_path",
    "load_classifier",
]

#: 패키지 안에서 가중치를 두는 디렉터리 (``ddpm_ko/weights``)
WEIGHTS_DIR = "weights"
PRETRAINED_NAME = "fashion_mnist_ema.safetensors"
PRETRAINED_CONDITIONAL_NAME = "fashion_mnist_cond_ema.safetensors"
CLASSIFIER_NAME = "fashion_mnist_classifier.safetensors"
PRETRAINED_ENV = "DDPM_KO_PRETRAINED"
PRETRAINED_CONDITIONAL_ENV = "DDPM_KO_PRETRAINED_CONDITIONAL"
CLASSIFIER_ENV = "DDPM_KO_CLASSIFIER"

#: 패키지가 싣는 가중치 파일의 SHA-256 (이 값을 기록하는 유일한 곳).
#: 가중치를 일부러 바꾸었다면(다시 학습해 내보냈다면) 오류 메시지에 나온 새 값으로 이곳을 고친다.
SHIPPED_SHA256: dict[str, str] = {
    PRETRAINED_NAME: "54c0aff97b42495275af366d6d2c6cca82ccf1df73e8a2679bfafb82f315aa02",
    PRETRAINED_CONDITIONAL_NAME: "c636d81135a3c505c5176cdb47798576d49ce4e03733fbca07afecc6c8ef3cc8",
    CLASSIFIER_NAME: "529fe47a7ca30963fc41de80253d287e1182cb78c89d08078130c11c5653d734",
}

_RESOURCE_FILES = contextlib.ExitStack()
atexit.register(_RESOURCE_FILES.close)
# 한 번 검사한 파일: (경로, 크기, 수정 시간) → 해시. 같은 파일을 여러 번 불러도 한 번만 읽는다.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def shipped_file(name: str) -> Path:
    """패키지에 든 가중치 파일 ``name`` 의 경로 (``importlib.resources`` 로 찾는다).

    보통의 설치와 저장소(``src/ddpm_ko/weights``)에서는 파일 그 자체의 경로다. 압축된 배포처럼 파일 시스템에
    없는 경우에만 임시 파일로 풀어 그 경로를 준다 (프로세스가 끝날 때 지운다).
    """
    res = resources.files("ddpm_ko").joinpath(WEIGHTS_DIR, name)
    if isinstance(res, Path):
        return res
    return _RESOURCE_FILES.enter_context(resources.as_file(res))


def verify_shipped_file(path: str | os.PathLike, name: str, env_var: str) -> None:
    """``path`` 의 SHA-256 이 ``SHIPPED_SHA256[name]`` 과 같은지 본다. 다르면 ``CheckpointError``."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    expected = SHIPPED_SHA256[name]
    got = _VERIFIED.get(key) or file_sha256(p)
    if got != expected:
        raise CheckpointError(
            f"{p} 의 SHA-256 이 패키지에 기록된 값과 다르다: 파일이 손상되었거나 바뀌었다. "
            f"패키지를 다시 설치하거나(pip install --force-reinstall ddpm_ko) 클론이라면 git checkout 으로 되돌려라. "
            f"일부러 바꾼 파일이면 ${env_var} 로 그 파일을 가리키거나 ddpm_ko/pretrained.py 의 SHIPPED_SHA256 을 고쳐라 / "
            f"SHA-256 mismatch for {p}: expected {expected}, got {got} — the file is corrupt or was replaced. "
            f"Reinstall the package (pip install --force-reinstall ddpm_ko) or restore it with git checkout; "
            f"to use your own file on purpose, point ${env_var} at it or update SHIPPED_SHA256 in ddpm_ko/pretrained.py"
        )
    _VERIFIED[key] = got


def locate_shipped_file(name: str, env_var: str, how_to_make: str = "") -> Path:
    """책이 싣는 파일의 경로: ``$env_var`` (사용자의 파일) → 패키지의 ``weights/`` (SHA-256 검사).

    사전 학습 모델과 평가용 분류기가 함께 쓴다. JSON 사본은 같은 디렉터리에 같은 이름으로 있다.
    """
    env = os.environ.get(env_var)
    if env:
        return Path(env)
    path = shipped_file(name)
    if not path.is_file():
        hint = f" ({how_to_make})" if how_to_make else ""
        raise CheckpointError(
            f"패키지에 {name} 이 없다: ddpm_ko 를 다시 설치하거나 ${env_var} 로 파일을 가리켜라{hint} / "
            f"{name} is missing from the package ({path}): reinstall ddpm_ko or point ${env_var} at a file"
        )
    verify_shipped_file(path, name, env_var)
    return path


def pretrained_path(kind: str = "unconditional") -> Path:
    """사전 학습 체크포인트 경로: ``$DDPM_KO_PRETRAINED`` → 패키지에 든 파일 (SHA-256 검사).

    ``kind="conditional"`` 이면 클래스 조건부 모델 (``$DDPM_KO_PRETRAINED_CONDITIONAL`` → 패키지, 11장).
    """
    kinds = {
        "unconditional": (PRETRAINED_NAME, PRETRAINED_ENV, ""),
        "conditional": (PRETRAINED_CONDITIONAL_NAME, PRETRAINED_CONDITIONAL_ENV, " --conditional"),
    }
    if kind not in kinds:
        raise ValueError(f"kind 는 {list(kinds)} 중 하나 / kind must be one of {list(kinds)}, got {kind!r}")
    name, env, flag = kinds[kind]
    return locate_shipped_file(
        name, env, f"`ddpm-ko train{flag}` 후 `ddpm-ko export` 로 만들 수 있다 / make one with train{flag} + export"
    )


#: ``--checkpoint`` 등에 경로 대신 쓸 수 있는 이름 → ``pretrained_path`` 의 kind
CHECKPOINT_NAMES = {"pretrained": "unconditional", "pretrained-conditional": "conditional"}


def resolve_checkpoint_name(checkpoint: str | os.PathLike) -> Path:
    """``"pretrained"``, ``"pretrained-conditional"`` 이면 책이 싣는 파일의 경로, 아니면 주어진 경로 그대로."""
    kind = CHECKPOINT_NAMES.get(str(checkpoint))
    return pretrained_path(kind) if kind else Path(checkpoint)


def load_pretrained(device: torch.device | str = "cpu", kind: str = "unconditional"):
    """사전 학습 모델을 불러 ``(model, diffusion, meta)`` 를 돌려준다 (model 은 EMA 가중치, eval 모드).

    ``kind="conditional"`` 이면 클래스 조건부 모델이다: ``model(x, t, labels)`` (11장).
    """
    return load_model_from_checkpoint(pretrained_path(kind), use_ema=True, device=device)


def pretrained_stages(kind: str = "unconditional") -> list[dict]:
    """책이 싣는 모델의 학습 이력: 그 모델에 이르기까지의 학습 한 번씩 (``checkpoint.training_stages``, 오래된 것부터).

    마지막 단계가 지금 불러오는 파일이고, 그 ``sha256`` 은 그 파일의 것이다. 앞 단계들의 ``sha256`` 은 그때 배포했던
    (또는 미세 조정의 출발점이 된) 파일의 것이다.
    """
    path = pretrained_path(kind)
    return training_stages(read_checkpoint(path, prefixes=())[1], file_sha256(path))


def which_model(sha256: str | None, kind: str = "unconditional") -> str:
    """벤치마크 결과의 ``checkpoint_sha256`` 이 어느 모델의 것인지 한국어로 말한다.

    지금 책이 싣는 파일이면 ``"지금 책이 싣는 모델"``, 그 모델에 이르는 앞선 학습이 만든 파일 가운데 하나면
    ``"이전 배포 모델, 4,750 스텝"`` 처럼 그 단계까지의 전체 학습 스텝을, 어느 것도 아니면 ``"알 수 없는 모델"`` 을
    돌려준다. 결과 파일에 적힌 ``checkpoint_step`` 은 미세 조정한 모델이면 0 부터 다시 센 수라 쓰지 않는다.
    """
    stages = pretrained_stages(kind)
    if sha256 and sha256 == stages[-1]["sha256"]:
        return "지금 책이 싣는 모델"
    for stage in stages[:-1]:
        if sha256 and sha256 == stage.get("sha256"):
            return f"이전 배포 모델, {stage['total_steps']:,} 스텝"
    return "알 수 없는 모델"


def classifier_path() -> Path:
    """분류기 파일 경로: ``$DDPM_KO_CLASSIFIER`` → 패키지에 든 파일 (SHA-256 검사)."""
    return locate_shipped_file(
        CLASSIFIER_NAME, CLASSIFIER_ENV, "`ddpm-ko train-classifier` 로 만들 수 있다 / make one with train-classifier"
    )


_LOADED: dict[tuple[str, float, str], FashionClassifier] = {}


def load_classifier(path: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> FashionClassifier:
    """평가용 분류기를 safetensors 에서 불러온다 (eval 모드). ``path`` 가 없으면 책이 싣는 파일.

    같은 파일을 여러 번 부르면 한 번 만든 모델을 다시 쓴다. 파일의 메타데이터는 ``model.meta`` 에 있다.
    """
    p = Path(path) if path is not None else classifier_path()
    if not p.is_file():
        raise CheckpointError(f"분류기 파일이 없다 / classifier file not found: {p}")
    key = (str(p.resolve()), p.stat().st_mtime, str(torch.device(device)))
    if key not in _LOADED:
        model, meta = read_classifier(p, device=device)
        model.meta = meta  # type: ignore[attr-defined]
        model.source = str(p)  # type: ignore[attr-defined]
        _LOADED[key] = model
    return _LOADED[key]
