"""평가 지표 검사: 행렬 제곱근, FID (닫힌 꼴과 비교), KID (치우침 없음), 히스토그램, 입력 검사, 분류기.

FID·KID 의 기준값은 패키지 함수를 쓰지 않고 따로 계산한다. 분류기 가중치
(src/ddpm_ko/weights/fashion_mnist_classifier.safetensors) 나 실제 Fashion-MNIST 가 없으면 그 검사만 건너뛴다.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from ddpm_ko import metrics
from ddpm_ko.classifier import ClassifierConfig, FashionClassifier, read_classifier, save_classifier
from ddpm_ko.errors import CheckpointError, DdpmKoError
from ddpm_ko.metrics import (SampleInputError, class_histogram, extract_features, fid, frechet_distance, kid,
                             sqrtm_psd, to_classifier_input)


def random_spd(d: int, rng: np.random.Generator, rank: int | None = None) -> np.ndarray:
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / (rank or d) + (0.0 if rank else 0.1 * np.eye(d))


# ---------------------------------------------------------------------------------------- 행렬 제곱근
@pytest.mark.parametrize("rank", [None, 5])
def test_sqrtm_psd_squares_back(rank):
    rng = np.random.default_rng(0)
    a = random_spd(40, rng, rank)
    s = sqrtm_psd(a)
    assert np.allclose(s, s.T)
    assert np.linalg.eigvalsh(s).min() > -1e-10          # 제곱근도 PSD
    rel = np.linalg.norm(s @ s - a) / np.linalg.norm(a)
    assert rel < 1e-10, rel


def test_sqrtm_psd_diagonal_and_scipy():
    d = np.diag([4.0, 9.0, 0.0, 1e-12])
    assert np.allclose(sqrtm_psd(d), np.diag([2.0, 3.0, 0.0, 1e-6]))
    scipy_linalg = pytest.importorskip("scipy.linalg")
    a = random_spd(20, np.random.default_rng(1))
    assert np.allclose(sqrtm_psd(a), np.real(scipy_linalg.sqrtm(a)), atol=1e-9)


def test_sqrtm_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        sqrtm_psd(np.ones((3, 4)))


# ---------------------------------------------------------------------------------------- FID
def test_fid_identical_sets_is_zero():
    f = np.random.default_rng(0).standard_normal((300, 16))
    assert fid(f, f) == pytest.approx(0.0, abs=1e-8)


def test_fid_mean_shift_closed_form_and_monotone():
    f = np.random.default_rng(0).standard_normal((400, 8))
    direction = np.ones(8) / np.sqrt(8)
    values = [fid(f, f + delta * direction) for delta in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(values, values[1:]))
    # 공분산이 같으면 FID 는 평균 차이의 제곱 노름과 정확히 같다
    for delta, v in zip((0.0, 0.25, 0.5, 1.0, 2.0), values):
        assert v == pytest.approx(delta**2, abs=1e-8)


def test_frechet_distance_closed_forms():
    # 1차원: (μ₁ − μ₂)² + (σ₁ − σ₂)²
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-1.0]), np.array([[1.0]])) == pytest.approx(4.0 + 1.0)
    # 대각 공분산: ‖Δμ‖² + Σ(√λ₁ − √λ₂)²
    l1, l2 = np.array([1.0, 4.0, 9.0, 0.5]), np.array([2.0, 1.0, 9.0, 0.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.5, 1.0, 0.0, 3.0])
    expect = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(l1) - np.sqrt(l2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(l1), mu2, np.diag(l2)) == pytest.approx(expect, rel=1e-12)
    # 서로 교환하지 않는 공분산: tr(Σ₁Σ₂)^{1/2} = Σ √eig(Σ₁Σ₂) (Σ₁Σ₂ 의 고윳값은 실수이고 0 이상)
    rng = np.random.default_rng(2)
    s1, s2 = random_spd(12, rng), random_spd(12, rng)
    m1, m2 = rng.standard_normal(12), rng.standard_normal(12)
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    expect = ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expect, rel=1e-9)
    # 같은 분포끼리는 0, 대칭
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(frechet_distance(m2, s2, m1, s1), rel=1e-9)


def test_fid_of_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(3)
    d, n = 4, 40_000
    s1, s2 = random_spd(d, rng), random_spd(d, rng)
    m1, m2 = np.zeros(d), np.full(d, 0.5)
    a = rng.multivariate_normal(m1, s1, size=n)
    b = rng.multivariate_normal(m2, s2, size=n)
    exact = frechet_distance(m1, s1, m2, s2)
    assert fid(a, b) == pytest.approx(exact, rel=0.05, abs=0.02)


def test_fid_rejects_bad_features():
    with pytest.raises(ValueError, match="feature dimensions differ"):
        fid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        fid(np.zeros(5), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="NaN"):
        fid(np.full((5, 2), np.nan), np.zeros((5, 2)))


# ---------------------------------------------------------------------------------------- KID
def test_kid_same_distribution_near_zero_and_shift_positive():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    same_mean, same_std = kid(a, b, subsets=40, subset_size=300, seed=0)
    shift_mean, shift_std = kid(a, b + 0.5, subsets=40, subset_size=300, seed=0)
    assert shift_mean > 10 * shift_std > 0
    assert abs(same_mean) < 0.05 * shift_mean
    assert abs(same_mean) < 3 * same_std


def test_kid_is_unbiased_for_equal_distributions():
    """치우침 없는 추정: 부분집합마다의 값이 음수도 나오며, 여러 번 뽑은 평균이 0 에 가깝다."""
    rng = np.random.default_rng(5)
    means = [kid(rng.standard_normal((50, 4)), rng.standard_normal((50, 4)), subsets=1, subset_size=50)[0]
             for _ in range(200)]
    assert min(means) < 0 < max(means)              # 치우친 추정(V-통계량)이면 늘 양수다
    assert abs(np.mean(means)) < 4 * np.std(means) / np.sqrt(len(means))


def test_kid_matches_direct_formula():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((30, 5)), rng.standard_normal((30, 5)) + 0.3
    k = lambda u, v: (u @ v.T / 5 + 1) ** 3  # noqa: E731
    m = 30
    direct = ((k(x, x).sum() - np.trace(k(x, x))) / (m * (m - 1)) + (k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1))
              - 2 * k(x, y).mean())
    assert kid(x, y, subsets=1, subset_size=30)[0] == pytest.approx(direct, rel=1e-12)


# ---------------------------------------------------------------------------------------- 히스토그램
def test_class_histogram_uniform_and_collapsed():
    uniform = np.eye(10)[np.arange(1000) % 10] * 10
    h = class_histogram(logits=uniform)
    assert h["counts"] == [100] * 10
    assert h["normalized_entropy"] == pytest.approx(1.0) and h["coverage"] == 1.0
    collapsed = np.eye(10)[np.zeros(500, dtype=int)] * 10
    h = class_histogram(logits=collapsed)
    assert h["counts"][0] == 500 and h["entropy_bits"] == 0.0 and h["coverage"] == pytest.approx(0.1)
    assert 0.99 < h["mean_confidence"] <= 1.0


# ---------------------------------------------------------------------------------------- 입력 검사
def test_input_formats_agree():
    rng = np.random.default_rng(7)
    u8 = rng.integers(0, 256, size=(6, 28, 28, 1), dtype=np.uint8)      # `ddpm-ko sample --out` 의 형식
    a = to_classifier_input(u8)
    b = to_classifier_input(u8[..., 0])
    c = to_classifier_input(torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, b) and torch.allclose(a, c)
    assert a.min() >= -1 and a.max() <= 1


def _single_line_bilingual(err: BaseException) -> None:
    msg = str(err)
    assert "\n" not in msg and "/" in msg
    assert any("\uac00" <= ch <= "\ud7a3" for ch in msg)   # 한글이 들어 있다


@pytest.mark.parametrize("bad, needle", [
    (np.zeros((4, 32, 32, 1), np.uint8), "wrong image shape"),
    (np.zeros((4, 28, 28, 3), np.uint8), "RGB"),
    (np.full((4, 1, 28, 28), 200.0), "looks like 0..255"),
    (np.full((4, 28, 28, 1), 200.0), "looks like 0..255"),
    (np.zeros((4, 28, 28), np.int64), "unsupported image dtype"),
    (np.zeros((0, 28, 28, 1), np.uint8), "no images"),
    (np.full((2, 1, 28, 28), np.nan, np.float32), "NaN"),
    (np.random.default_rng(0).random((4, 1, 28, 28)), r"\[0, 1\]"),
    (np.array(["a", "b"]), "unsupported image dtype"),
])
def test_bad_inputs_raise_clear_errors(bad, needle):
    with pytest.raises(SampleInputError, match=needle) as info:
        to_classifier_input(bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DdpmKoError)
    _single_line_bilingual(info.value)


def test_bad_npy_files(tmp_path):
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SampleInputError, match="cannot read") as info:
        metrics.load_samples(obj)
    _single_line_bilingual(info.value)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not a numpy file")
    with pytest.raises(SampleInputError, match="cannot read"):
        metrics.load_samples(junk)
    with pytest.raises(SampleInputError, match="not found"):
        metrics.load_samples(tmp_path / "missing.npy")
    with pytest.raises(SampleInputError, match=r"\.npy"):
        metrics.load_samples(tmp_path / "samples.png")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 28, 28, 3), np.uint8))
    with pytest.raises(SampleInputError, match="RGB"):
        to_classifier_input(str(wrong))


# ---------------------------------------------------------------------------------------- 분류기 파일
def test_classifier_roundtrip_and_features(tmp_path):
    torch.manual_seed(0)
    model = FashionClassifier(ClassifierConfig(width=4, feature_dim=8)).eval()
    path = save_classifier(model, tmp_path / "clf.safetensors", {"test_accuracy": 0.5})
    loaded, meta = read_classifier(path)
    assert meta["test_accuracy"] == 0.5 and json.loads((tmp_path / "clf.json").read_text())["config"]["width"] == 4
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model.features(x), loaded.features(x)) and loaded(x).shape == (5, 10)
    f = extract_features(x, loaded)
    assert f.shape == (5, 8) and f.dtype == np.float64
    with pytest.raises(ValueError, match="expects"):
        loaded.features(torch.zeros(2, 3, 28, 28))


def test_classifier_file_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_classifier(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="corrupt"):
        read_classifier(bad)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="not a ddpm_ko classifier"):
        read_classifier(other)


def test_train_classifier_writes_safetensors_and_sidecar(tmp_path, test_split):
    from ddpm_ko.classifier import train_classifier

    out = tmp_path / "clf.safetensors"
    model, info = train_classifier(out, epochs=1, batch_size=64, subset=256, test_limit=200,
                                   config=ClassifierConfig(width=4, feature_dim=8), log=lambda m: None)
    side = json.loads(out.with_suffix(".json").read_text())
    for key in ("test_accuracy", "epochs", "seed", "train_time_s", "environment", "feature"):
        assert key in side and key in info
    assert side["epochs"] == 1 and side["test_images"] == 200 and side["train_images"] == 256
    loaded, _ = read_classifier(out)
    assert torch.allclose(loaded.feature_std, model.feature_std) and not torch.all(loaded.feature_std == 1)
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(None, epochs=0)


def test_cli_parser_and_errors(tmp_path):
    parser = argparse.ArgumentParser(prog="ddpm-ko")
    metrics.add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", "--samples", str(tmp_path / "missing.npy"), "--num", "10"])
    assert args.num == 10 and args.seed == 0 and args.json is None
    with pytest.raises(SampleInputError, match="not found"):
        metrics.run_cli(args)
    args = parser.parse_args(["evaluate", "--samples", "x.npy", "--json", "out.txt"])
    with pytest.raises(ValueError, match=r"\.json"):
        metrics.run_cli(args)
    args = parser.parse_args(["train-classifier", "--out", "clf.pt"])
    with pytest.raises(ValueError, match=r"\.safetensors"):
        metrics.run_cli(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--samples", "x.npy", "--num", "0"])


# ---------------------------------------------------------------------------------------- 실제 분류기 (있을 때만)
@pytest.fixture(scope="module")
def shipped_classifier():
    try:
        return metrics.load_classifier(metrics.classifier_path())
    except CheckpointError as e:
        pytest.skip(f"책의 분류기 가중치가 없다: {e}")


@pytest.fixture(scope="module")
def test_split():
    from ddpm_ko.data import fashion_mnist_arrays
    from ddpm_ko.data import DataNotFoundError

    try:
        return fashion_mnist_arrays("test", allow_hub=False)
    except DataNotFoundError as e:
        pytest.skip(f"Fashion-MNIST 가 없다: {str(e).splitlines()[0]}")


def test_shipped_classifier_accuracy(shipped_classifier, test_split):
    from ddpm_ko.classifier import accuracy

    images, labels = test_split
    acc = accuracy(shipped_classifier, images[:1000], labels[:1000])
    assert acc >= 0.85, acc
    assert shipped_classifier.meta["test_accuracy"] >= 0.90
    # 특징은 학습 이미지로 표준화되어 있다: 시험 이미지에서도 차원별 평균 ≈ 0, 표준편차 ≈ 1
    f = extract_features(images[:1000][..., None], shipped_classifier)
    assert np.abs(f.mean(0)).mean() < 0.2 and 0.8 < f.std(0).mean() < 1.2
    size = metrics.classifier_path().stat().st_size
    assert size < 2_000_000, size


def test_evaluate_real_images_near_floor(shipped_classifier, test_split):
    images, _ = test_split
    # 기준(시험 분할의 앞 2000 장)과 겹치지 않는 진짜 이미지 300 장 (시험 분할의 끝) 을 `sample --out` 형식으로
    real = images[-300:][..., None]
    result = metrics.evaluate(real, seed=0, classifier=shipped_classifier, kid_subsets=20, reference_num=2000)
    assert result["num"] == 300 and result["reference"]["num"] == 2000
    assert 0.5 < result["fid"] / result["floor"]["fid"] < 2.0, (result["fid"], result["floor"]["fid"])
    assert abs(result["kid"]["mean"] - result["floor"]["kid"]["mean"]) < 0.5 * result["floor"]["fid"]
    assert result["histogram"]["coverage"] == 1.0 and result["histogram"]["normalized_entropy"] > 0.95
    # 잡음 이미지는 바닥값보다 훨씬 나쁘다
    noise = np.random.default_rng(0).integers(0, 256, size=(300, 28, 28, 1), dtype=np.uint8)
    bad = metrics.evaluate(noise, seed=0, classifier=shipped_classifier, kid_subsets=5, reference_num=2000)
    assert bad["fid"] > 20 * result["floor"]["fid"]
    fid_row = next(line for line in metrics.format_report(result).splitlines() if line.startswith("FID"))
    assert fid_row.split()[1:3] == [f"{result['fid']:.3f}", f"{result['floor']['fid']:.3f}"], fid_row
