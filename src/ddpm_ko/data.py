"""Fashion-MNIST 불러오기와 전처리.

데이터를 찾는 순서:
1. 인자 ``data_dir`` 또는 환경 변수 ``DDPM_KO_DATA_DIR`` 가 가리키는 디렉터리의 IDX 파일
2. Debian 패키지 ``dataset-fashion-mnist`` 의 경로 ``/usr/share/datasets/fashion-mnist``
3. Hugging Face Hub 의 ``zalando-datasets/fashion_mnist`` (Colab 에서 쓰는 경로)

환경 변수 ``DDPM_KO_DATA_SOURCE`` 로 어느 곳을 쓸지 정할 수 있다: ``auto`` (기본, 위 순서), ``local`` (1·2 만,
Hub 로 넘어가지 않는다), ``hub`` (로컬 파일이 있어도 Hub 의 ``datasets`` 경로만, Colab 과 같은 길).
인자 ``data_dir`` 로 직접 준 디렉터리는 언제나 그것을 쓴다.

Hub 로 넘어갈 때는 곧바로 표준 오류에 그렇다고 알린다. ``HF_HUB_OFFLINE`` 이나 ``HF_DATASETS_OFFLINE`` 이 켜져
있으면 Hub 에 접속하지 않는다 (받아 둔 캐시가 있을 때만 그것을 읽는다). 그렇지 않으면 먼저
Hub 주소(또는 프록시)에 몇 초 안에 TCP 로 닿는지만 확인하고, 닿지 않으면 ``datasets`` 의 재시도(수십 초)를 기다리지
않고 바로 데이터를 얻는 세 가지 방법을 알린다.

IDX 파일(``*-ubyte`` 또는 ``*-ubyte.gz``)은 매직 넘버와 크기를 검사한다.
"""

from __future__ import annotations

import gzip
import os
import socket
import struct
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch

__all__ = [
    "CLASS_NAMES",
    "CLASS_NAMES_KO",
    "DEBIAN_DIR",
    "HUB_ID",
    "DATA_SOURCES",
    "DataNotFoundError",
    "data_source",
    "read_idx",
    "load_fashion_mnist",
    "fashion_mnist_arrays",
    "to_model_range",
    "random_hflip",
    "ImageBatches",
]

DATA_ENV = "DDPM_KO_DATA_DIR"
SOURCE_ENV = "DDPM_KO_DATA_SOURCE"
DATA_SOURCES = ("auto", "local", "hub")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HUB_ID = "zalando-datasets/fashion_mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CLASS_NAMES_KO = ["티셔츠", "바지", "풀오버", "드레스", "코트", "샌들", "셔츠", "운동화", "가방", "앵클 부츠"]
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
#: 이 환경 변수 가운데 하나가 켜져 있으면 (1, true, yes, on) Hub 에 접속하지 않는다 (huggingface_hub·datasets 와 같은 뜻)
HUB_OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
#: Hub 에 닿는지 확인할 때 기다리는 최대 시간 (초)
HUB_PROBE_TIMEOUT_S = 3.0
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_HOW_TO_GET = (
    "Fashion-MNIST 를 찾지 못했다 / Fashion-MNIST not found. 다음 중 하나로 준비하라 / get it one of three ways:\n"
    f"  1) IDX 파일 4개가 있는 디렉터리를 --data-dir 또는 환경 변수 {DATA_ENV} 로 지정 "
    "(point --data-dir or $" + DATA_ENV + " at a folder with the four *-ubyte[.gz] files)\n"
    "  2) Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist  (→ /usr/share/datasets/fashion-mnist)\n"
    f"  3) 인터넷이 되면 Hugging Face Hub 의 '{HUB_ID}' 를 자동으로 받는다 (pip install datasets; needs network)\n"
    f"  (${SOURCE_ENV}=auto|local|hub 로 어느 곳을 쓸지 고를 수 있다 / choose the source with ${SOURCE_ENV})"
)


class DataNotFoundError(FileNotFoundError):
    """데이터가 없거나 손상되었을 때. 메시지에 데이터를 얻는 세 가지 방법이 들어 있다."""


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """IDX 파일 (LeCun 의 MNIST 형식, gzip 가능) 을 읽어 NumPy 배열로 돌려준다.

    형식: 0x00 0x00 [자료형] [차원 수] 다음에 차원마다 big-endian uint32 크기, 그리고 자료.
    매직 넘버, 자료형, 자료 길이가 맞지 않으면 ``ValueError`` 를 낸다.
    """
    path = Path(path)
    try:
        with _open(path) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"IDX 파일을 읽을 수 없다 / cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"IDX 매직 넘버가 잘못되었다 / bad IDX magic number in {path}: {raw[:4].hex() or 'empty file'}"
        )
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX 헤더가 잘렸다 / truncated IDX header in {path}")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"IDX 자료 길이가 맞지 않다 / wrong IDX data length in {path}: header says {shape} "
            f"({expected} bytes), file has {len(raw) - header} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        p = directory / name
        if p.is_file():
            return p
    return None


def _read_split_dir(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """디렉터리에서 한 분할(split)의 이미지 (N, 28, 28) uint8 과 레이블 (N,) 을 읽어 검사한다."""
    img_stem, lbl_stem, n = _FILES[split]
    img_path, lbl_path = _find_file(directory, img_stem), _find_file(directory, lbl_stem)
    missing = [s for s, p in ((img_stem, img_path), (lbl_stem, lbl_path)) if p is None]
    if missing:
        raise DataNotFoundError(f"{directory} 에 {', '.join(missing)}[.gz] 파일이 없다 / missing files.\n{_HOW_TO_GET}")
    try:
        images, labels = read_idx(img_path), read_idx(lbl_path)
    except ValueError as e:
        raise DataNotFoundError(
            f"{e}\n손상된 파일을 지우고 다시 받아라 / delete the corrupt file and fetch it again.\n{_HOW_TO_GET}"
        ) from e
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataNotFoundError(
            f"{img_path}: 28×28 uint8 이미지가 아니다 / not 28x28 uint8 images: {images.shape}\n{_HOW_TO_GET}"
        )
    if labels.shape != (images.shape[0],):
        raise DataNotFoundError(
            f"이미지 {images.shape[0]} 장과 레이블 {labels.shape} 의 수가 다르다 / image/label count mismatch\n{_HOW_TO_GET}"
        )
    if images.shape[0] != n:
        raise DataNotFoundError(
            f"{split} 분할은 {n} 장이어야 한다 / expected {n} images, got {images.shape[0]}\n{_HOW_TO_GET}"
        )
    if labels.max(initial=0) > 9:
        raise DataNotFoundError(f"{lbl_path}: 레이블이 0..9 범위를 벗어난다 / labels out of range\n{_HOW_TO_GET}")
    return images.copy(), labels.astype(np.int64)


def _check_split(split: str) -> None:
    if split not in _FILES:
        raise ValueError(f"split 은 'train' 또는 'test' / split must be 'train' or 'test', got '{split}'")


def data_source() -> str:
    """환경 변수 ``DDPM_KO_DATA_SOURCE`` 의 값: ``auto`` (기본), ``local``, ``hub``."""
    value = os.environ.get(SOURCE_ENV, "").strip().lower() or "auto"
    if value not in DATA_SOURCES:
        raise ValueError(
            f"${SOURCE_ENV} 는 auto, local, hub 중 하나 / ${SOURCE_ENV} must be one of "
            f"{', '.join(DATA_SOURCES)}, got '{value}'"
        )
    return value


def _local_dirs(data_dir: str | os.PathLike | None) -> tuple[list[Path], bool]:
    """찾아볼 로컬 디렉터리 목록과, 사용자가 명시했는지 여부."""
    if data_dir is not None:
        return [Path(data_dir)], True
    if data_source() == "hub":
        return [], False
    env = os.environ.get(DATA_ENV)
    if env:
        return [Path(env)], True
    return [DEBIAN_DIR], False


def fashion_mnist_arrays(
    split: str = "train", data_dir: str | os.PathLike | None = None, allow_hub: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST 를 NumPy 배열 ``(images (N, 28, 28) uint8, labels (N,) int64)`` 로 돌려준다.

    학습 루프는 PIL 이미지를 하나씩 바꾸는 대신 이 배열을 한 번에 텐서로 만들어 쓴다.
    """
    _check_split(split)
    dirs, explicit = _local_dirs(data_dir)
    for d in dirs:
        if d.is_dir() and (explicit or _find_file(d, _FILES[split][0]) is not None):
            # 명시한 디렉터리는 문제가 있으면 곧바로 알린다 (조용히 Hub 로 넘어가지 않는다)
            return _read_split_dir(d, split)
        if explicit:
            raise DataNotFoundError(f"디렉터리가 없다 / no such directory: {d}\n{_HOW_TO_GET}")
    if not allow_hub or data_source() == "local":
        raise DataNotFoundError(_HOW_TO_GET)
    ds = _load_from_hub(split)
    # Hub 의 이미지는 PNG 로 들어 있어 풀어 쓰는 데 학습 분할이면 10초쯤 걸린다. 같은 데이터셋(지문이 같은
    # datasets.Dataset)을 다시 부르면 한 번 푼 배열의 사본을 준다 (Colab 에서 한 장이 여러 번 부를 때).
    fingerprint = getattr(ds, "_fingerprint", None)
    if fingerprint is None or fingerprint not in _HUB_ARRAYS:
        images = np.stack([np.asarray(im, dtype=np.uint8) for im in ds["image"]])
        arrays = (images, np.asarray(ds["label"], dtype=np.int64))
        if fingerprint is None:
            return arrays
        _HUB_ARRAYS[fingerprint] = arrays
    images, labels = _HUB_ARRAYS[fingerprint]
    return images.copy(), labels.copy()


_HUB_ARRAYS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _import_datasets():
    """``datasets`` 를 import 한다. ipywidgets 가 없는 노트북에서 tqdm 이 내는 경고는 숨긴다."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*IProgress not found.*")
        import datasets
    return datasets


def _hub_offline_env() -> str | None:
    """켜져 있는 오프라인 환경 변수의 이름 (없으면 None)."""
    for name in HUB_OFFLINE_ENVS:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


def _hub_cached() -> bool:
    """``datasets`` 의 캐시에 Fashion-MNIST 사본이 있어 보이는가 (오프라인 모드에서도 읽을 수 있다)."""
    cache = os.environ.get("HF_DATASETS_CACHE")
    if not cache:
        home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
        cache = os.path.join(home, "datasets")
    return (Path(cache).expanduser() / HUB_ID.replace("/", "___")).is_dir()


def _hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Hub (또는 HTTPS 프록시) 에 ``timeout`` 초 안에 TCP 로 닿지 않으면 그 까닭, 닿으면 None.

    이름 풀이(DNS)는 시간 제한을 받지 않으므로 데몬 스레드에서 하고 ``timeout`` 만큼만 기다린다.
    """
    proxy = next(
        (os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if os.environ.get(k)), None
    )
    url = urlsplit(proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        return f"{host}:{port} 가 {timeout:g}초 안에 답하지 않았다 / no answer from {host}:{port} within {timeout:g} s"
    err = outcome[0]
    return (
        None
        if err is None
        else f"{host}:{port} 에 닿지 않는다 / cannot reach {host}:{port}: {type(err).__name__}: {err}"
    )


def _load_from_hub(split: str):
    offline = _hub_offline_env()
    if offline and not _hub_cached():
        raise DataNotFoundError(
            f"${offline} 가 켜져 있어 Hugging Face Hub 에 접속하지 않았다 / not contacting the "
            f"Hugging Face Hub because {offline} is set (unset it to download)\n{_HOW_TO_GET}"
        )
    print(
        f"[ddpm-ko] 로컬 Fashion-MNIST 가 없어 Hugging Face Hub 의 '{HUB_ID}' 를 받는다 / no local copy, "
        f"trying the Hugging Face Hub ('{HUB_ID}')",
        file=sys.stderr,
        flush=True,
    )
    unreachable = None if offline else _hub_unreachable()
    if unreachable:
        raise DataNotFoundError(
            f"Hugging Face Hub 에 닿지 않는다 (네트워크 없음?) / the Hugging Face Hub is unreachable "
            f"(no network?): {unreachable}\n{_HOW_TO_GET}"
        )
    try:
        load_dataset = _import_datasets().load_dataset

        return load_dataset(HUB_ID, split=split)
    except Exception as e:  # 네트워크 없음, 허브 오류 등
        raise DataNotFoundError(
            f"Hugging Face Hub 에서 받지 못했다 / could not load '{HUB_ID}' from the Hub: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n{_HOW_TO_GET}"
        ) from e


def load_fashion_mnist(split: str = "train", data_dir: str | os.PathLike | None = None, allow_hub: bool = True):
    """Fashion-MNIST 한 분할을 ``datasets.Dataset`` 으로 돌려준다.

    열(column)은 ``image`` (28×28 흑백 PIL 이미지) 와 ``label`` (10개 이름이 붙은 ``ClassLabel``).
    찾는 순서는 모듈 설명을 보라. Hub 에서 받은 경우 그 데이터셋을 그대로 돌려준다.
    """
    _check_split(split)
    dirs, explicit = _local_dirs(data_dir)
    local_ok = explicit or any(d.is_dir() and _find_file(d, _FILES[split][0]) for d in dirs)
    if not local_ok and allow_hub and data_source() != "local":
        return _load_from_hub(split)
    images, labels = fashion_mnist_arrays(split, data_dir, allow_hub=False)
    ds_mod = _import_datasets()
    ClassLabel, Dataset, Features, Image = ds_mod.ClassLabel, ds_mod.Dataset, ds_mod.Features, ds_mod.Image
    features = Features({"image": Image(), "label": ClassLabel(names=CLASS_NAMES)})
    from PIL import Image as PILImage

    return Dataset.from_dict(
        {"image": [PILImage.fromarray(a, mode="L") for a in images], "label": labels.tolist()}, features=features
    )


def to_model_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 이미지 (N, H, W) 또는 (N, C, H, W) 를 [−1, 1] 범위의 float (N, C, H, W) 텐서로 바꾼다."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images, dtype=np.uint8))
    if x.ndim == 3:
        x = x[:, None]
    return x.float() / 127.5 - 1.0


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """배치의 각 이미지를 확률 ``p`` 로 좌우 반전한다."""
    flip = torch.rand(x.shape[0], generator=generator) < p
    out = x.clone()
    out[flip] = out[flip].flip(-1)
    return out


class ImageBatches:
    """메모리에 올린 uint8 이미지에서 결정적인 순서로 미니배치를 꺼낸다.

    에폭 ``e`` 의 순서와 (``flip`` 을 켰다면) 좌우 반전은 ``seed`` 와 ``e`` 로만 정해진다. 그래서 (에폭, 에폭 안의
    배치 번호) 만 저장하면 학습을 이어서 할 때 같은 배치를 그대로 다시 만든다. 분산 학습에서는
    모든 프로세스가 같은 전역 배치를 만들고 자기 몫만 잘라 쓴다.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        batch_size: int,
        seed: int = 0,
        flip: bool = False,
        labels: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size 는 1 이상 / batch_size must be >= 1, got {batch_size}")
        self.images = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
        if self.images.ndim == 3:
            self.images = self.images[:, None]
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels)).long()
        if self.labels is not None and self.labels.shape != (len(self.images),):
            raise ValueError(
                f"레이블은 이미지마다 하나여야 한다 / need one label per image: {len(self.images)} images, "
                f"labels of shape {tuple(self.labels.shape)}"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.flip = flip
        self.batches_per_epoch = len(self.images) // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"이미지 {len(self.images)} 장으로는 배치 {batch_size} 를 채울 수 없다 / "
                f"not enough images ({len(self.images)}) for one batch of {batch_size}"
            )
        self._perm_epoch: int | None = None
        self._perm: torch.Tensor | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(len(self.images), generator=g), epoch
        return self._perm

    def batch(self, epoch: int, index: int) -> torch.Tensor:
        """에폭 ``epoch`` 의 ``index`` 번째 전역 배치를 [−1, 1] 텐서 (B, C, H, W) 로."""
        if not 0 <= index < self.batches_per_epoch:
            raise IndexError(f"배치 번호 {index} 가 범위 밖이다 / batch index out of range")
        idx = self._permutation(epoch)[index * self.batch_size : (index + 1) * self.batch_size]
        x = to_model_range(self.images[idx])
        if self.flip:
            x = random_hflip(x, torch.Generator().manual_seed(self.seed * 7919 + epoch * 100_003 + index))
        return x

    def batch_labels(self, epoch: int, index: int) -> torch.Tensor:
        """``batch(epoch, index)`` 와 같은 이미지들의 레이블 (B,) (조건부 학습, 11장). 좌우 반전은 클래스를 바꾸지 않는다."""
        if self.labels is None:
            raise ValueError("레이블 없이 만든 배치 공급기다 / these batches were built without labels")
        if not 0 <= index < self.batches_per_epoch:
            raise IndexError(f"배치 번호 {index} 가 범위 밖이다 / batch index out of range")
        return self.labels[self._permutation(epoch)[index * self.batch_size : (index + 1) * self.batch_size]]
