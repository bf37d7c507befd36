"""``ddpm_ko.evaluation`` 검사: 표본 파일·배열의 입력 검사, 분류기 특징, 책의 분류기로 한 평가와 바닥값.

분류기 가중치(src/ddpm_ko/weights/fashion_mnist_classifier.safetensors) 나 실제 Fashion-MNIST 가 없으면 그 검사만 건너뛴다.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ddpm_ko import evaluation
from ddpm_ko.classifier import ClassifierConfig, FashionClassifier
from ddpm_ko.errors import CheckpointError, DdpmKoError
from ddpm_ko.evaluation import SampleInputError, extract_features, to_classifier_input
from ddpm_ko.pretrained import classifier_path, load_classifier


# ---------------------------------------------------------------------------------------- 입력 검사
def test_input_formats_agree():
    rng = np.random.default_rng(7)
    u8 = rng.integers(0, 256, size=(6, 28, 28, 1), dtype=np.uint8)  # `ddpm-ko sample --out` 의 형식
    a = to_classifier_input(u8)
    b = to_classifier_input(u8[..., 0])
    c = to_classifier_input(torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, b) and torch.allclose(a, c)
    assert a.min() >= -1 and a.max() <= 1


def _single_line_bilingual(err: BaseException) -> None:
    msg = str(err)
    assert "\n" not in msg and "/" in msg
    assert any("\uac00" <= ch <= "\ud7a3" for ch in msg)  # 한글이 들어 있다


@pytest.mark.parametrize(
    "bad, needle",
    [
        (np.zeros((4, 32, 32, 1), np.uint8), "wrong image shape"),
        (np.zeros((4, 28, 28, 3), np.uint8), "RGB"),
        (np.full((4, 1, 28, 28), 200.0), "looks like 0..255"),
        (np.full((4, 28, 28, 1), 200.0), "looks like 0..255"),
        (np.zeros((4, 28, 28), np.int64), "unsupported image dtype"),
        (np.zeros((0, 28, 28, 1), np.uint8), "no images"),
        (np.full((2, 1, 28, 28), np.nan, np.float32), "NaN"),
        (np.random.default_rng(0).random((4, 1, 28, 28)), r"\[0, 1\]"),
        (np.array(["a", "b"]), "unsupported image dtype"),
    ],
)
def test_bad_inputs_raise_clear_errors(bad, needle):
    with pytest.raises(SampleInputError, match=needle) as info:
        to_classifier_input(bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DdpmKoError)
    _single_line_bilingual(info.value)


def test_bad_npy_files(tmp_path):
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SampleInputError, match="cannot read") as info:
        evaluation.load_samples(obj)
    _single_line_bilingual(info.value)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not a numpy file")
    with pytest.raises(SampleInputError, match="cannot read"):
        evaluation.load_samples(junk)
    with pytest.raises(SampleInputError, match="not found"):
        evaluation.load_samples(tmp_path / "missing.npy")
    with pytest.raises(SampleInputError, match=r"\.npy"):
        evaluation.load_samples(tmp_path / "samples.png")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 28, 28, 3), np.uint8))
    with pytest.raises(SampleInputError, match="RGB"):
        to_classifier_input(str(wrong))


def test_features_and_logits_agree_with_the_classifier():
    torch.manual_seed(0)
    model = FashionClassifier(ClassifierConfig(width=4, feature_dim=8)).eval()
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    feat, logits = evaluation.features_and_logits(x, model, batch_size=2)  # 조각 경계를 지나도 같다
    with torch.no_grad():
        # float32 신경망을 배치 2 와 5 로 돌린 값: 커널 선택에 따라 마지막 자리가 다를 수 있어 1e-5 상대 오차로 본다
        assert np.allclose(feat, model.features(x).double().numpy(), rtol=1e-5, atol=1e-5)
        assert np.allclose(logits, model(x).double().numpy(), rtol=1e-5, atol=1e-5)
    h = evaluation.image_class_histogram(x, model)
    assert sum(h["counts"]) == 5 and h["counts"] == np.bincount(logits.argmax(1), minlength=10).tolist()


# ---------------------------------------------------------------------------------------- 실제 분류기 (있을 때만)
@pytest.fixture(scope="module")
def shipped_classifier():
    try:
        return load_classifier(classifier_path())
    except CheckpointError as e:
        pytest.skip(f"책의 분류기 가중치가 없다: {e}")


@pytest.fixture(scope="module")
def test_split(real_data_dir):
    from ddpm_ko.data import fashion_mnist_arrays

    return fashion_mnist_arrays("test", real_data_dir)


def test_shipped_classifier_accuracy(shipped_classifier, test_split):
    from ddpm_ko.classifier import accuracy

    images, labels = test_split
    acc = accuracy(shipped_classifier, images[:1000], labels[:1000])
    assert acc >= 0.85, acc
    assert shipped_classifier.meta["test_accuracy"] >= 0.90
    # 특징은 학습 이미지로 표준화되어 있다: 시험 이미지에서도 차원별 평균 ≈ 0, 표준편차 ≈ 1
    f = extract_features(images[:1000][..., None], shipped_classifier)
    assert np.abs(f.mean(0)).mean() < 0.2 and 0.8 < f.std(0).mean() < 1.2
    size = classifier_path().stat().st_size
    assert size < 2_000_000, size


def test_evaluate_real_images_near_floor(shipped_classifier, test_split):
    images, _ = test_split
    # 기준(시험 분할의 앞 2000 장)과 겹치지 않는 진짜 이미지 300 장 (시험 분할의 끝) 을 `sample --out` 형식으로
    real = images[-300:][..., None]
    result = evaluation.evaluate(real, seed=0, classifier=shipped_classifier, kid_subsets=20, reference_num=2000)
    assert result["num"] == 300 and result["reference"]["num"] == 2000
    assert 0.5 < result["fid"] / result["floor"]["fid"] < 2.0, (result["fid"], result["floor"]["fid"])
    assert abs(result["kid"]["mean"] - result["floor"]["kid"]["mean"]) < 0.5 * result["floor"]["fid"]
    assert result["histogram"]["coverage"] == 1.0 and result["histogram"]["normalized_entropy"] > 0.95
    # 잡음 이미지는 바닥값보다 훨씬 나쁘다
    noise = np.random.default_rng(0).integers(0, 256, size=(300, 28, 28, 1), dtype=np.uint8)
    bad = evaluation.evaluate(noise, seed=0, classifier=shipped_classifier, kid_subsets=5, reference_num=2000)
    assert bad["fid"] > 20 * result["floor"]["fid"]
    fid_row = next(line for line in evaluation.format_report(result).splitlines() if line.startswith("FID"))
    assert fid_row.split()[1:3] == [f"{result['fid']:.3f}", f"{result['floor']['fid']:.3f}"], fid_row
