"""``ddpm_ko.classifier`` 검사: 분류기 파일 저장·읽기 (safetensors + JSON 사본), 파일 오류, 짧은 학습."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ddpm_ko.classifier import ClassifierConfig, FashionClassifier, read_classifier, save_classifier
from ddpm_ko.errors import CheckpointError
from ddpm_ko.evaluation import extract_features


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


def test_train_classifier_writes_safetensors_and_sidecar(tmp_path, real_data_dir):
    from ddpm_ko.classifier import train_classifier

    out = tmp_path / "clf.safetensors"
    model, info = train_classifier(
        out,
        data_dir=real_data_dir,
        epochs=1,
        batch_size=64,
        subset=256,
        test_limit=200,
        config=ClassifierConfig(width=4, feature_dim=8),
        log=lambda m: None,
    )
    side = json.loads(out.with_suffix(".json").read_text())
    for key in ("test_accuracy", "epochs", "seed", "train_time_s", "environment", "feature"):
        assert key in side and key in info
    assert side["epochs"] == 1 and side["test_images"] == 200 and side["train_images"] == 256
    loaded, _ = read_classifier(out)
    assert torch.allclose(loaded.feature_std, model.feature_std) and not torch.all(loaded.feature_std == 1)
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(None, epochs=0)


def test_saving_the_shipped_classifier_again_gives_the_same_bytes(tmp_path):
    """분류기 저장은 checkpoint.write_safetensors 를 쓴다: 책이 싣는 파일을 읽어 다시 쓰면 바이트까지 같다."""
    from ddpm_ko.pretrained import CLASSIFIER_NAME, SHIPPED_SHA256, classifier_path, file_sha256

    try:
        shipped = classifier_path()
    except CheckpointError as e:
        pytest.skip(f"책의 분류기 가중치가 없다: {e}")
    model, meta = read_classifier(shipped)
    again = save_classifier(model, tmp_path / "again.safetensors", meta)
    assert file_sha256(again) == SHIPPED_SHA256[CLASSIFIER_NAME]
    assert again.with_suffix(".json").read_bytes() == shipped.with_suffix(".json").read_bytes()


def test_classifier_config_refuses_unknown_keys(tmp_path):
    with pytest.raises(ValueError, match=r"unknown ClassifierConfig fields: \['depth'\]"):
        ClassifierConfig.from_dict({"width": 4, "depth": 3})
    assert ClassifierConfig.from_dict(ClassifierConfig(width=4).to_dict()) == ClassifierConfig(width=4)
    path = save_classifier(FashionClassifier(ClassifierConfig(width=4)), tmp_path / "c.safetensors")
    from ddpm_ko.checkpoint import read_safetensors, write_safetensors

    state, header = read_safetensors(path)
    meta = json.loads(header["ddpm_ko_classifier"])
    meta["config"]["depth"] = 3
    write_safetensors(path, state, meta, "ddpm_ko_classifier")
    with pytest.raises(CheckpointError, match=r"invalid classifier config.*depth"):
        read_classifier(path)
