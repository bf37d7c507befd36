"""Fashion-MNIST 불러오기와 전처리 검사.

실제 파일(/usr/share/datasets/fashion-mnist)로 하는 검사는 파일이 없으면 이유를 밝히고 건너뛴다.
손상된 파일과 Hub 경로는 임시 디렉터리와 ``monkeypatch`` 로 흉내 낸다 (네트워크를 쓰지 않는다).
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

import ddpm_ko.data as data
from conftest import idx_bytes
from ddpm_ko.data import (
    CLASS_NAMES,
    CLASS_NAMES_KO,
    DataNotFoundError,
    ImageBatches,
    fashion_mnist_arrays,
    load_fashion_mnist,
    random_hflip,
    read_idx,
    to_model_range,
)


def assert_lists_three_ways(message: str) -> None:
    """데이터를 얻는 세 가지 방법이 모두 메시지에 있는지."""
    for needle in (
        "1)",
        "2)",
        "3)",
        "--data-dir",
        "DDPM_KO_DATA_DIR",
        "apt-get install dataset-fashion-mnist",
        "zalando-datasets/fashion_mnist",
    ):
        assert needle in message, f"{needle!r} 가 오류 메시지에 없다:\n{message}"


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    # 검사 결과가 사용자의 환경 변수에 따라 달라지지 않게 한다
    monkeypatch.delenv("DDPM_KO_DATA_DIR", raising=False)
    monkeypatch.delenv("DDPM_KO_DATA_SOURCE", raising=False)


# ---------------------------------------------------------------------------- 실제 데이터
@pytest.fixture(scope="module")
def test_dataset(real_data_dir):
    return load_fashion_mnist("test", data_dir=real_data_dir)


@pytest.fixture(scope="module")
def train_arrays(real_data_dir):
    return fashion_mnist_arrays("train", data_dir=real_data_dir)


def test_load_test_split_as_dataset(test_dataset):
    from datasets import ClassLabel
    from PIL import Image

    ds = test_dataset
    assert ds.num_rows == 10000
    assert set(ds.column_names) == {"image", "label"}
    label = ds.features["label"]
    assert isinstance(label, ClassLabel)
    assert label.num_classes == 10
    assert label.names == CLASS_NAMES
    assert label.names[0] == "T-shirt/top" and label.names[9] == "Ankle boot"
    first = ds[0]
    assert isinstance(first["image"], Image.Image)
    assert first["image"].mode == "L"
    assert first["image"].size == (28, 28)
    assert 0 <= first["label"] <= 9


def test_dataset_and_arrays_agree(test_dataset, real_data_dir):
    images, labels = fashion_mnist_arrays("test", data_dir=real_data_dir)
    for i in (0, 1234, 9999):
        row = test_dataset[i]
        assert np.array_equal(np.asarray(row["image"]), images[i])
        assert row["label"] == labels[i]


def test_train_arrays_shapes_dtypes_range(train_arrays):
    images, labels = train_arrays
    assert images.shape == (60000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.shape == (60000,)
    assert labels.dtype == np.int64
    assert images.min() == 0 and images.max() == 255
    assert 40 < images.mean() < 100  # 어두운 배경 위의 옷 (평균 약 73)
    assert labels.min() == 0 and labels.max() == 9


def test_labels_are_balanced(train_arrays, real_data_dir):
    assert np.bincount(train_arrays[1], minlength=10).tolist() == [6000] * 10
    _, test_labels = fashion_mnist_arrays("test", data_dir=real_data_dir)
    assert np.bincount(test_labels, minlength=10).tolist() == [1000] * 10


def test_default_discovery_uses_debian_dir(real_data_dir, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", real_data_dir)

    def no_hub(*args, **kwargs):
        raise AssertionError("로컬 데이터가 있는데 Hub 에 접속했다")

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    images, labels = fashion_mnist_arrays("test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)


def test_class_names():
    assert len(CLASS_NAMES) == len(set(CLASS_NAMES)) == 10
    assert len(CLASS_NAMES_KO) == len(set(CLASS_NAMES_KO)) == 10
    assert CLASS_NAMES_KO[0] == "티셔츠" and CLASS_NAMES_KO[9] == "앵클 부츠"


def test_bad_split_raises():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        fashion_mnist_arrays("valid")
    with pytest.raises(ValueError, match="split must be"):
        load_fashion_mnist("validation")


# ---------------------------------------------------------------------------- 가짜·손상 파일
@pytest.mark.parametrize("gz", [True, False])
def test_valid_fake_directory_is_read(fake_test_split, gz, monkeypatch):
    d = fake_test_split(gz=gz)
    images, labels = fashion_mnist_arrays("test", data_dir=d)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert images[257, 3, 4] == 1 and labels[257] == 7
    assert images.flags.writeable  # 읽기 전용 버퍼가 아니라 복사본
    # 환경 변수로 가리켜도 같다
    monkeypatch.setenv("DDPM_KO_DATA_DIR", str(d))
    again, _ = fashion_mnist_arrays("test")
    assert np.array_equal(again, images)
    ds = load_fashion_mnist("test")
    assert ds.num_rows == 10000 and ds[257]["label"] == 7


def _valid_images() -> np.ndarray:
    return np.zeros((10000, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize(
    "case, reason",
    [
        ("bad_magic", "bad IDX magic number"),
        ("swapped_magic", "bad IDX magic number"),
        ("wrong_length", "wrong IDX data length"),
        ("truncated_gzip", "cannot read IDX file"),
        ("not_gzip", "cannot read IDX file"),
        ("empty", "bad IDX magic number"),
    ],
)
def test_corrupt_idx_raises_data_not_found(fake_test_split, case, reason):
    raw = idx_bytes(_valid_images())
    if case == "bad_magic":
        payload, gz = b"\x00\x00\x07\x03" + raw[4:], True
    elif case == "swapped_magic":
        payload, gz = b"\x03\x08\x00\x00" + raw[4:], False
    elif case == "wrong_length":
        payload, gz = raw[:-100], True
    elif case == "truncated_gzip":
        payload, gz = gzip.compress(raw)[:2000], None
    elif case == "not_gzip":
        payload, gz = raw, None  # .gz 라는 이름에 압축하지 않은 내용
    else:
        payload, gz = b"", False
    d = fake_test_split(gz=True, name="ok")
    if gz is False:  # 압축하지 않은 파일 (같은 이름의 .gz 보다 먼저 찾는다)
        (d / "t10k-images-idx3-ubyte").write_bytes(payload)
    else:
        (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(payload) if gz else payload)
    with pytest.raises(DataNotFoundError) as info:
        fashion_mnist_arrays("test", data_dir=d)
    message = str(info.value)
    assert reason in message
    assert "t10k-images-idx3-ubyte" in message
    assert_lists_three_ways(message)
    # Dataset 을 만드는 경로도 같은 오류를 내야 한다 (조용히 Hub 로 넘어가지 않는다)
    with pytest.raises(DataNotFoundError):
        load_fashion_mnist("test", data_dir=d)


def test_wrong_image_count_and_label_mismatch(fake_test_split):
    d = fake_test_split(images=np.zeros((9999, 28, 28), np.uint8), labels=np.zeros(9999, np.uint8), name="short")
    with pytest.raises(DataNotFoundError, match="expected 10000 images") as info:
        fashion_mnist_arrays("test", data_dir=d)
    assert_lists_three_ways(str(info.value))
    d = fake_test_split(labels=np.zeros(9000, np.uint8), name="mismatch")
    with pytest.raises(DataNotFoundError, match="image/label count mismatch"):
        fashion_mnist_arrays("test", data_dir=d)
    d = fake_test_split(labels=np.full(10000, 12, np.uint8), name="labels")
    with pytest.raises(DataNotFoundError, match="labels out of range"):
        fashion_mnist_arrays("test", data_dir=d)


def test_missing_files_and_directory(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError) as info:
        fashion_mnist_arrays("test", data_dir=tmp_path / "does-not-exist")
    assert "does-not-exist" in str(info.value)
    assert_lists_three_ways(str(info.value))
    # 디렉터리는 있지만 파일이 없다
    with pytest.raises(DataNotFoundError, match="missing files") as info:
        fashion_mnist_arrays("train", data_dir=tmp_path)
    assert_lists_three_ways(str(info.value))
    # 환경 변수가 없는 디렉터리를 가리키는 경우
    monkeypatch.setenv("DDPM_KO_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(DataNotFoundError, match="no such directory"):
        load_fashion_mnist("test")
    # DataNotFoundError 는 FileNotFoundError 이기도 하다 (명령줄이 한 줄 오류로 바꾼다)
    assert issubclass(DataNotFoundError, FileNotFoundError)


def test_read_idx_roundtrip_and_other_dtypes(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "a-ubyte"
    p.write_bytes(idx_bytes(arr))
    assert np.array_equal(read_idx(p), arr)
    # 0x0C: big-endian int32
    vals = np.array([1, -2, 70000], dtype=">i4")
    q = tmp_path / "b-ubyte.gz"
    q.write_bytes(gzip.compress(bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + vals.tobytes()))
    assert read_idx(q).tolist() == [1, -2, 70000]


# ---------------------------------------------------------------------------- Hub 경로
@pytest.fixture
def hub_reachable(monkeypatch):
    """Hub 경로는 가짜 load_dataset 으로 흉내 낸다: 오프라인 환경 변수와 실제 네트워크 확인은 끈다."""
    for name in data.HUB_OFFLINE_ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(data, "_hub_unreachable", lambda *a, **k: None)


@pytest.fixture
def no_local_data(tmp_path, monkeypatch, hub_reachable):
    empty = tmp_path / "empty-debian-dir"
    empty.mkdir()
    monkeypatch.setattr(data, "DEBIAN_DIR", empty)
    return empty


def test_hub_is_used_when_no_local_data(no_local_data, monkeypatch):
    import datasets
    from PIL import Image

    calls = []
    fake_images = [Image.fromarray(np.full((28, 28), i, np.uint8), mode="L") for i in range(5)]

    def fake_load_dataset(path, *args, **kwargs):
        calls.append((path, args, kwargs))
        return {"image": fake_images, "label": [0, 1, 2, 3, 4]}

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    result = load_fashion_mnist("test")
    assert calls == [("zalando-datasets/fashion_mnist", (), {"split": "test"})]
    assert result["label"] == [0, 1, 2, 3, 4]  # Hub 의 데이터셋을 그대로 돌려준다
    images, labels = fashion_mnist_arrays("train")
    assert calls[-1] == ("zalando-datasets/fashion_mnist", (), {"split": "train"})
    assert images.shape == (5, 28, 28) and images.dtype == np.uint8 and images[3, 0, 0] == 3
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 2, 3, 4]


def test_hub_failure_explains_how_to_get_data(no_local_data, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError(
            "Couldn't reach 'zalando-datasets/fashion_mnist' on the Hub (LocalEntryNotFoundError)\nmore"
        )

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist("train")
    assert "ConnectionError" in str(info.value)
    assert_lists_three_ways(str(info.value))
    # allow_hub=False 면 Hub 를 부르지 않는다
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("Hub 를 불렀다"))
    with pytest.raises(DataNotFoundError) as info:
        fashion_mnist_arrays("train", allow_hub=False)
    assert_lists_three_ways(str(info.value))


def test_data_source_choice(fake_test_split, monkeypatch, hub_reachable):
    """DDPM_KO_DATA_SOURCE: hub 는 로컬 파일이 있어도 Hub 경로만, local 은 Hub 로 넘어가지 않는다."""
    import datasets

    d = fake_test_split()
    monkeypatch.setattr(data, "DEBIAN_DIR", d)  # 로컬(데비안 경로)에 시험 분할이 있다
    calls = []
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda path, **kw: calls.append((path, kw)) or {"image": [np.zeros((28, 28), np.uint8)], "label": [7]},
    )
    monkeypatch.setenv("DDPM_KO_DATA_SOURCE", "hub")
    _images, labels = fashion_mnist_arrays("test")
    assert calls == [("zalando-datasets/fashion_mnist", {"split": "test"})] and labels.tolist() == [7]
    assert load_fashion_mnist("test")["label"] == [7]
    # 인자로 준 디렉터리는 언제나 그것을 쓴다
    assert len(fashion_mnist_arrays("test", data_dir=d)[0]) == 10000
    monkeypatch.setenv("DDPM_KO_DATA_SOURCE", "local")
    monkeypatch.setattr(data, "DEBIAN_DIR", d.parent / "nothing-here")
    calls.clear()
    for load in (fashion_mnist_arrays, load_fashion_mnist):
        with pytest.raises(DataNotFoundError) as info:
            load("test")
        assert_lists_three_ways(str(info.value))
    assert calls == []
    monkeypatch.setenv("DDPM_KO_DATA_SOURCE", "cloud")
    with pytest.raises(ValueError, match="auto, local, hub"):
        fashion_mnist_arrays("test")


# ---------------------------------------------------------------------------- 전처리
def test_to_model_range():
    u8 = np.array([[[0, 255], [128, 64]]], dtype=np.uint8)  # (1, 2, 2)
    x = to_model_range(u8)
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert torch.allclose(x.flatten(), torch.tensor([-1.0, 1.0, 128 / 127.5 - 1, 64 / 127.5 - 1]), atol=1e-6)
    full = to_model_range(np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16))
    assert full.shape == (1, 1, 16, 16)
    assert bool((full[:, :, :, 1:].flatten() > full[:, :, :, :-1].flatten()).all())
    assert torch.equal(to_model_range(torch.from_numpy(u8)), x)


def test_random_hflip_flips_exactly_the_selected_images():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 1, 4, 5, generator=g)
    before = x.clone()
    out = random_hflip(x, torch.Generator().manual_seed(1))
    assert torch.equal(x, before), "입력을 바꾸면 안 된다"
    flipped = [i for i in range(200) if torch.equal(out[i], x[i].flip(-1))]
    kept = [i for i in range(200) if torch.equal(out[i], x[i])]
    # 모든 이미지는 그대로이거나 좌우만 뒤집혔다 (상하 반전, 섞임 없음)
    assert sorted(flipped + kept) == list(range(200))
    assert 60 < len(flipped) < 140  # p = 0.5, 이항분포 표준편차 ≈ 7
    again = random_hflip(x, torch.Generator().manual_seed(1))
    assert torch.equal(again, out)
    assert torch.equal(random_hflip(x, p=0.0), x)
    assert torch.equal(random_hflip(x, p=1.0), x.flip(-1))


def _id_images(n: int) -> np.ndarray:
    """이미지 i 의 0 번 열을 i+1 로 채운다 (좌우 반전해도 최댓값으로 번호를 알 수 있다)."""
    imgs = np.zeros((n, 28, 28), dtype=np.uint8)
    imgs[:, :, 0] = np.arange(1, n + 1)[:, None]
    return imgs


def _ids(batch: torch.Tensor) -> list[int]:
    u8 = ((batch + 1) * 127.5).round().to(torch.int64)
    return [int(v) - 1 for v in u8.flatten(1).max(1).values]


def test_image_batches_deterministic_per_epoch_and_index():
    imgs = _id_images(50)
    a = ImageBatches(imgs, batch_size=8, seed=3)
    b = ImageBatches(imgs, batch_size=8, seed=3)
    assert a.batches_per_epoch == 6
    order = [(2, 5), (0, 1), (2, 0), (1, 3), (0, 1)]
    got_a = {k: a.batch(*k) for k in order}
    got_b = {k: b.batch(*k) for k in reversed(order)}  # 다른 순서로 불러도 같은 배치
    for k in order:
        assert torch.equal(got_a[k], got_b[k]), k
        assert got_a[k].shape == (8, 1, 28, 28)
        assert float(got_a[k].min()) >= -1 and float(got_a[k].max()) <= 1
    # 한 에폭의 배치들은 겹치지 않는다 (순열)
    for epoch in (0, 1):
        seen = [i for j in range(a.batches_per_epoch) for i in _ids(a.batch(epoch, j))]
        assert len(seen) == len(set(seen)) == 48
    # 에폭이나 시드가 다르면 순서가 다르다
    assert _ids(a.batch(0, 0)) != _ids(a.batch(1, 0))
    assert _ids(a.batch(0, 0)) != _ids(ImageBatches(imgs, batch_size=8, seed=4).batch(0, 0))
    # 반전도 (시드, 에폭, 번호) 로 정해진다: flip=True 인 배치에는 뒤집힌 이미지가 있다
    f = ImageBatches(imgs, batch_size=8, seed=3, flip=True)
    flips = [bool(f.batch(e, j)[k, 0, 0, -1] > -1) for e in range(3) for j in range(6) for k in range(8)]
    assert 0 < sum(flips) < len(flips)
    assert all(
        torch.equal(f.batch(e, 0), ImageBatches(imgs, batch_size=8, seed=3, flip=True).batch(e, 0)) for e in (0, 1)
    )
    c = ImageBatches(imgs, batch_size=8, seed=3)  # 기본값은 반전하지 않는다
    assert all(float(c.batch(e, j)[:, 0, :, -1].max()) == -1 for e in range(2) for j in range(6))


def test_image_batches_errors():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ImageBatches(_id_images(4), batch_size=0)
    with pytest.raises(ValueError, match="not enough images"):
        ImageBatches(_id_images(4), batch_size=8)
    with pytest.raises(IndexError, match="out of range"):
        ImageBatches(_id_images(16), batch_size=8).batch(0, 2)


def test_hub_arrays_are_decoded_once_per_dataset(no_local_data, monkeypatch):
    """같은 Hub 데이터셋(지문이 같다)을 다시 부르면 PNG 를 다시 풀지 않고, 사본을 준다."""
    import datasets

    decoded = []

    class FakeHubDataset:
        _fingerprint = "abc123"

        def __getitem__(self, key):
            if key == "image":
                decoded.append(1)
                return [np.full((28, 28), 5, np.uint8)] * 3
            return [1, 2, 3]

    monkeypatch.setattr(datasets, "load_dataset", lambda path, **kw: FakeHubDataset())
    monkeypatch.setattr(data, "_HUB_ARRAYS", {})
    a, _la = fashion_mnist_arrays("train")
    a[0, 0, 0] = 99  # 돌려받은 배열을 고쳐도
    b, lb = fashion_mnist_arrays("train")
    assert decoded == [1] and b[0, 0, 0] == 5 and lb.tolist() == [1, 2, 3]
