"""단위 검사 공용 설정과 픽스처.

- matplotlib 은 화면 없이(Agg) 그린다.
- PyTorch 스레드 수를 묶는다 (기본 1: 검사 기계는 2코어이고 다른 작업과 CPU 를 나눠 쓴다).
- 작은 U-Net 설정, 실제 Fashion-MNIST 위치, IDX 파일을 만드는 도우미를 제공한다.
"""

from __future__ import annotations

import gzip
import importlib
import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")

import numpy as np
import pytest
import torch

import ddpm_ko
from ddpm_ko.train import TrainConfig
from ddpm_ko.unet import UnetConfig

# 검사는 이 checkout 의 src/ddpm_ko 를 검사해야 한다. `make setup` 의 `pip install -e .` 가 그렇게 해 두므로 sys.path 는
# 고치지 않는다. 다른 checkout 을 가리키는 설치(예: 공유 venv)라면 조용히 엉뚱한 코드를 검사하지 않고 멈춘다.
_SRC = Path(__file__).resolve().parents[1] / "src"


def pytest_configure(config):
    found = Path(ddpm_ko.__file__).resolve().parent
    if not found.is_relative_to(_SRC):
        raise pytest.UsageError(
            f"검사가 이 checkout 이 아닌 {found} 의 ddpm_ko 를 import 했다: `pip install -e .` 로 설치하거나 "
            f"PYTHONPATH={_SRC} 로 실행하라 / tests imported ddpm_ko from {found}, not from this checkout: "
            f"run `pip install -e .` or set PYTHONPATH={_SRC}"
        )


# 작은 모델에서는 스레드 1 개가 거의 가장 빠르고, CPU 를 다른 작업과 나눠 쓸 때는 2 개보다 훨씬 빠르다
# (OpenMP 스레드가 서로를 기다리며 돈다). 바꾸려면 DDPM_KO_TEST_THREADS 를 정한다.
TORCH_THREADS = max(1, int(os.environ.get("DDPM_KO_TEST_THREADS", "1")))
torch.set_num_threads(TORCH_THREADS)
# 검사가 띄우는 하위 프로세스(명령줄 검사)도 같은 수의 스레드를 쓴다
os.environ.setdefault("OMP_NUM_THREADS", str(TORCH_THREADS))
# 책과 같은 CPU 설정 (glibc malloc 문턱값; pick_device() 가 하는 일과 같다)
from ddpm_ko.utils import tune_cpu  # noqa: E402

tune_cpu()


@pytest.fixture(autouse=True)
def _torch_threads():
    """검사마다 TORCH_THREADS 개의 스레드로 시작하고 끝난다.

    Trainer·분류기 학습·``--threads`` 는 torch.set_num_threads 를 부른다. 검사가 끝난 뒤에 되돌리고, 검사 앞에서도
    맞춘다: 모듈 범위 픽스처(학습한 체크포인트 등)는 이 픽스처보다 먼저 돌아 스레드 수를 바꿔 둘 수 있다.
    """
    torch.set_num_threads(TORCH_THREADS)
    yield
    torch.set_num_threads(TORCH_THREADS)


# ---------------------------------------------------------------------------------- 부동소수점 허용 오차
# 같은 계산을 **배치 크기만 바꿔** 두 번 하면 float32 결과가 마지막 비트에서 달라질 수 있다. oneDNN 은 CPU 종류
# (Intel Xeon, AMD EPYC …)와 배치 크기에 따라 다른 합성곱 커널을 고르고, 커널마다 더하는 순서가 다르기 때문이다.
# 연산 하나의 상대 오차는 ~1e-7 이고, 작은 U-Net 의 수십 개 연산을 지나면 ε̂ 에서 ~1e-6 이 된다.
# 샘플러는 이를 x̂_0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t 에서 √(1/ᾱ_t − 1) 배로 키운다 (T = 20~30 인 검사용 스케줄의
# 중간 단계에서 수십 배). 이렇게 잰 차이가 배치 3 대 6 에서 AMD EPYC 로 9e-6, 다른 기계에서 3e-6 였다.
# 5e-4 는 그 위로 한 자릿수 넘는 여유를 두면서도, 잘못 자른 x_T 나 어긋난 난수가 만드는 O(0.1) 차이보다
# 두 자릿수 이상 작다. 배치 크기가 같은 두 계산은 같은 커널을 쓰므로 이 허용 오차 없이 비트까지 비교한다.
CROSS_BATCH_ATOL = 5e-4
# 학습 기록의 손실은 소수 여섯째 자리로 반올림해 저장한다 (train.py). 배치를 나누는 방식이 다르면 손실이
# 상대 ~1e-6 (이 기계에서 잰 값 1.3e-6) 다르고, 손실이 1 안팎이라 반올림한 값은 1~3 단위(1e-6) 어긋날 수 있다.
# 1e-5 (10 단위) 는 그 여유이고, 다른 이미지나 다른 t 로 학습했다면 손실이 1e-2 이상 달라진다.
LOSS_HISTORY_ATOL = 1e-5

REAL_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
_REAL_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def tiny_unet_config(**overrides):
    """검사용 아주 작은 U-Net 설정 (매개변수 수만 개, CPU 에서 한 번 통과에 수 ms)."""
    from ddpm_ko.unet import UnetConfig

    base = dict(dim=8, dim_mults=(1, 2), heads=1, dim_head=8)
    base.update(overrides)
    return UnetConfig(**base)


@pytest.fixture
def tiny_config():
    return tiny_unet_config()


@pytest.fixture
def tiny_unet():
    from ddpm_ko.unet import Unet

    torch.manual_seed(0)
    return Unet(tiny_unet_config()).eval()


def _real_data_missing() -> str | None:
    if not REAL_DATA_DIR.is_dir():
        return f"Fashion-MNIST 가 {REAL_DATA_DIR} 에 없다 (apt-get install dataset-fashion-mnist)"
    for stem in _REAL_FILES:
        if not ((REAL_DATA_DIR / stem).is_file() or (REAL_DATA_DIR / (stem + ".gz")).is_file()):
            return f"{REAL_DATA_DIR} 에 {stem}[.gz] 가 없다"
    return None


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """실제 Fashion-MNIST IDX 파일 디렉터리. 없으면 이유를 밝히고 건너뛴다."""
    reason = _real_data_missing()
    if reason:
        pytest.skip(reason)
    return REAL_DATA_DIR


def idx_bytes(array: np.ndarray) -> bytes:
    """uint8 배열을 IDX 형식 바이트로 (매직 0x00 0x00 0x08 ndim, big-endian 크기들, 자료)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, data: bytes | np.ndarray, compress: bool | None = None) -> Path:
    """``path`` 에 IDX 파일을 쓴다. 이름이 ``.gz`` 로 끝나면 gzip 으로 압축한다."""
    raw = data if isinstance(data, bytes) else idx_bytes(data)
    if compress is None:
        compress = path.suffix == ".gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, compresslevel=1) if compress else raw)
    return path


@pytest.fixture
def idx_writer():
    """``idx_writer(path, array_or_bytes)`` 로 IDX 파일을 만드는 도우미."""
    return write_idx


@pytest.fixture
def fake_test_split(tmp_path):
    """형식은 올바른 가짜 test 분할 (10000 장, 이미지마다 값이 다르다) 을 만드는 팩토리.

    ``fake_test_split(images=..., labels=..., gz=True)`` 로 일부를 바꿔 손상된 파일을 만든다.
    돌려주는 값은 디렉터리 경로.
    """

    def make(
        images: bytes | np.ndarray | None = None,
        labels: bytes | np.ndarray | None = None,
        gz: bool = True,
        name: str = "data",
    ) -> Path:
        d = tmp_path / name
        ext = ".gz" if gz else ""
        if images is None:
            images = (np.arange(10000, dtype=np.int64)[:, None, None] % 256 * np.ones((1, 28, 28))).astype(np.uint8)
        if labels is None:
            labels = (np.arange(10000) % 10).astype(np.uint8)
        write_idx(d / f"t10k-images-idx3-ubyte{ext}", images, compress=gz)
        write_idx(d / f"t10k-labels-idx1-ubyte{ext}", labels, compress=gz)
        return d

    return make


def write_fake_train_split(directory: Path, seed: int = 0) -> Path:
    """형식은 올바른 가짜 Fashion-MNIST train 분할 (60000×28×28 무작위 이미지, 레이블 0~9 차례로) 을 쓴다.

    실제 데이터 없이 학습 명령줄을 돌리는 검사가 쓴다. 데이터 모듈은 train 분할이 60000 장인지 확인하므로 장 수는
    줄일 수 없다. 압축하지 않는다 (gzip 경로는 test_data.py 가 따로 검사한다).
    """
    rng = np.random.default_rng(seed)
    write_idx(directory / "train-images-idx3-ubyte", rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8))
    write_idx(directory / "train-labels-idx1-ubyte", (np.arange(60000) % 10).astype(np.uint8))
    return directory


@pytest.fixture(scope="session")
def fake_train_dir(tmp_path_factory) -> Path:
    """가짜 train 분할 디렉터리 하나를 검사 세션 전체가 함께 쓴다 (읽기만 한다: 이미지 47 MB 를 한 번만 쓴다)."""
    return write_fake_train_split(tmp_path_factory.mktemp("fake-fmnist-train"))


# ---------------------------------------------------------------------------------------- 아주 작은 학습
#: 8×8 이미지의 아주 작은 U-Net: 한 학습 스텝이 수 ms 라 Trainer 를 몇 스텝 돌려도 싸다
TINY_TRAIN_UNET = UnetConfig(
    image_size=8, channels=1, dim=8, dim_mults=(1, 2), stage_attention="none", mid_attention="none"
)


def tiny_train_config(out_dir: str | os.PathLike, **overrides: Any) -> TrainConfig:
    """아주 작은 학습 설정 (배치 8, T = 50, CPU 한 스레드, 진행 막대 없음). 검사마다 다른 값은 ``overrides`` 로 준다."""
    base: dict[str, Any] = dict(
        out_dir=str(out_dir),
        batch_size=8,
        timesteps=50,
        warmup_steps=3,
        ema_decay=0.9,
        log_every=1,
        checkpoint_every=100,
        progress=False,
        num_threads=1,
        device="cpu",
    )
    return TrainConfig(**{**base, **overrides})


#: 명령줄로 아주 작은 학습을 돌리는 옵션 (데이터·출력 경로와 스텝 수는 검사가 더한다)
TINY_TRAIN_FLAGS = (
    "--batch-size 8 --dim 8 --dim-mults 1-2 --attention none --timesteps 50 --threads 1 --device cpu".split()
)


BENCHMARK_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def benchmark_result(name: str) -> dict:
    """커밋된 벤치마크 결과 ``benchmarks/results/<name>.json`` 을 읽는다."""
    return json.loads((BENCHMARK_RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def import_benchmark(name: str) -> Any:
    """``benchmarks/NAME.py`` 를 모듈로 불러온다. ``benchmarks/`` 는 패키지가 아니므로 불러오는 동안만 ``sys.path`` 에 둔다
    (그 안의 ``from _common import ...`` 도 함께 풀린다)."""
    path = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, path)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(path)
