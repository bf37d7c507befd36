"""ONNX 내보내기(ddpm_ko.onnx_export, ``ddpm-ko export --format onnx``): onnxruntime 이 PyTorch 와 같은 값을 내는가."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from unittest import mock

import numpy as np
import pytest
import torch

from conftest import tiny_unet_config
from ddpm_ko import cli, onnx_export
from ddpm_ko.checkpoint import load_model_from_checkpoint, save_checkpoint
from ddpm_ko.conditioning import NUM_CLASSES
from ddpm_ko.diffusion import GaussianDiffusion
from ddpm_ko.pretrained import PRETRAINED_CONDITIONAL_ENV, load_pretrained
from ddpm_ko.unet import Unet

ort = pytest.importorskip("onnxruntime", reason="onnxruntime 이 없다 (requirements.txt, make setup)")
onnx = pytest.importorskip("onnx", reason='onnx 가 없다 (pip install "ddpm_ko[onnx]")')


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """명령줄 도구로 책의 사전 학습 모델을 한 번 내보낸다 (모듈의 모든 검사가 나눠 쓴다)."""
    out = tmp_path_factory.mktemp("onnx") / "unet.onnx"
    rc = cli.main(["export", "--checkpoint", "pretrained", "--format", "onnx", "--out", str(out)])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def pretrained():
    model, diffusion, meta = load_pretrained()
    return model, diffusion, meta


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_onnxruntime_matches_pytorch(exported, pretrained, batch) -> None:
    model, diffusion, _ = pretrained
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 1, 28, 28, generator=g)
    # 양 끝(0, T−1)과 가운데 몇 곳, 그리고 배치마다 다른 t
    fixed = torch.tensor([0, 1, 250, 500, diffusion.num_timesteps - 1])
    t = torch.cat([fixed, torch.randint(0, diffusion.num_timesteps, (batch,), generator=g)])[:batch]
    if batch == 1:
        t = torch.tensor([diffusion.num_timesteps - 1])
    with torch.no_grad():
        ref = model(x, t).numpy()
    sess = onnx_export.OnnxUnet(exported)
    got = sess(x, t).numpy()
    assert got.shape == ref.shape == (batch, 1, 28, 28)
    # float32 로 60개 남짓한 층을 지나는 같은 계산이다. onnxruntime 과 PyTorch(oneDNN)는 합성곱·정규화의
    # 합 순서가 달라 층마다 1e-7 상대 오차가 쌓이고, 출력 ε 의 크기는 1 안팎이다(이 기계에서 잰 값 ~2e-6).
    # 1e-4 는 CPU·배치 크기에 따른 커널 차이를 넉넉히 덮고, 잘못된 가중치나 시간 임베딩(차이 0.1 이상)은 잡는다.
    diff = float(np.abs(got - ref).max())
    assert diff < 1e-4, f"ONNX 와 PyTorch 의 최대 차이 {diff:.2e}"
    # 시각을 바꾸면 출력이 바뀐다: t 가 정말 입력으로 들어갔는지 확인한다
    other = sess(x, (t + 400) % diffusion.num_timesteps).numpy()
    assert float(np.abs(other - got).max()) > 1e-2


def test_same_file_for_every_t(exported, pretrained) -> None:
    """한 배치 안에서 이미지마다 다른 t 를 주면, 한 장씩 돌린 것과 같다 (t 가 배치 축을 따라 들어간다)."""
    _model, _diffusion, _ = pretrained
    sess = onnx_export.OnnxUnet(exported)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([999, 10, 500, 0])
    together = sess(x, t).numpy()
    alone = np.concatenate([sess(x[i : i + 1], t[i : i + 1]).numpy() for i in range(4)])
    # 배치 크기에 따라 onnxruntime 이 다른 커널을 고를 수 있어 마지막 자리가 다를 수 있다 (위와 같은 이유로 1e-4)
    assert float(np.abs(together - alone).max()) < 1e-4


def test_ddim_on_onnx_model_matches_pytorch(exported, pretrained) -> None:
    """패키지의 DDIM 샘플러에 ONNX 신경망을 넣으면 PyTorch 신경망과 같은 이미지가 나온다."""
    model, diffusion, _ = pretrained
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    kw = dict(sampler="ddim", steps=10, eta=0.0, x_T=x_T)
    a = diffusion.sample(model, (2, 1, 28, 28), **kw)
    b = diffusion.sample(onnx_export.OnnxUnet(exported), (2, 1, 28, 28), **kw)
    # 한 번의 평가 차이(~1e-6)가 10 단계를 지나며 쌓인다. x̂₀ 이 √(1/ᾱ_t) 배로 키우는 큰 t 에서는 클리핑이
    # 대부분을 잘라 내므로, 마지막 이미지의 차이는 uint8 한 단계(2/255 ≈ 8e-3)보다 훨씬 작아야 한다.
    diff = float((a - b).abs().max())
    assert diff < 1e-3, diff


def test_sidecar_and_metadata(exported, pretrained) -> None:
    _, diffusion, meta = pretrained
    info = json.loads(onnx_export.sidecar_path(exported).read_text(encoding="utf-8"))
    data = exported.read_bytes()
    assert info["format"] == onnx_export.ONNX_FORMAT
    assert info["bytes"] == len(data)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["diffusion"] == {
        "schedule": meta["diffusion"]["schedule"],
        "timesteps": diffusion.num_timesteps,
        "prediction_type": diffusion.prediction_type,
    }
    assert info["weights"] == "ema"
    proto = onnx.load(str(exported))
    embedded = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(embedded["ddpm_ko"])["source"] == info["source"]
    assert [i.name for i in proto.graph.input] == list(onnx_export.INPUT_NAMES)
    # 조건 없는 모델의 파일은 조건부 내보내기가 생긴 뒤에도 예전과 같다: 입력 둘, 레이블 항목 없음
    assert set(info["inputs"]) == {"x_t", "t"} and "num_classes" not in info
    assert onnx_export.OnnxUnet(exported).config.num_classes is None
    # 배치 축은 이름 붙은 동적 축이고, 가중치는 파일 안에 있다 (외부 데이터 파일 없음)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert not list(exported.parent.glob("*.data"))


def test_missing_onnx_is_a_clear_error(monkeypatch, tmp_path, capsys) -> None:
    """onnx/onnxscript 가 없으면 무엇을 설치할지 두 언어로 말하고, 이미 있는 파일은 건드리지 않는다."""
    real_find_spec = onnx_export.importlib.util.find_spec
    monkeypatch.setattr(
        onnx_export.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxscript" else real_find_spec(name, *a),
    )
    out = tmp_path / "unet.onnx"
    out.write_bytes(b"old")
    with pytest.raises(onnx_export.OnnxDependencyError, match="ddpm_ko\\[onnx\\]"):
        onnx_export.export_onnx("pretrained", out)
    rc = cli.main(["export", "--checkpoint", "pretrained", "--format", "onnx", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "onnxscript" in err and "필요하다" in err and "needs" in err
    assert out.read_bytes() == b"old"


def test_wrong_suffix_and_missing_checkpoint(tmp_path, capsys) -> None:
    rc = cli.main(["export", "--checkpoint", "pretrained", "--format", "onnx", "--out", str(tmp_path / "unet.bin")])
    assert rc == 2 and ".onnx" in capsys.readouterr().err
    rc = cli.main(
        [
            "export",
            "--checkpoint",
            str(tmp_path / "nope.safetensors"),
            "--format",
            "onnx",
            "--out",
            str(tmp_path / "unet.onnx"),
        ]
    )
    assert rc == 2 and "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "unet.onnx").exists()


def test_safetensors_export_unchanged(tmp_path) -> None:
    """--format 를 주지 않으면 예전처럼 safetensors 로 내보낸다."""
    parser = cli.build_parser()
    args = parser.parse_args(["export", "--checkpoint", "x", "--out", "y.safetensors"])
    assert args.format == "safetensors"


def test_onnx_unet_accepts_scalar_t(exported) -> None:
    sess = onnx_export.OnnxUnet(exported)
    x = torch.zeros(2, 1, 28, 28)
    a = sess(x, torch.tensor(5)).numpy()
    b = sess(x, torch.tensor([5, 5])).numpy()
    np.testing.assert_array_equal(a, b)
    assert isinstance(
        GaussianDiffusion.from_schedule("linear", 1000).model_predictions(sess, x, torch.tensor([5, 5]))[0],
        torch.Tensor,
    )


# ----------------------------------------------------------------------------------------
# 클래스 조건부 모델 (11장): 셋째 입력 labels


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    """작은 조건부 U-Net 의 체크포인트와, 그것을 ``--checkpoint pretrained-conditional`` 로 내보낸 ONNX 파일.

    책이 싣는 조건부 모델 대신 ``$DDPM_KO_PRETRAINED_CONDITIONAL`` 로 작은 모델을 가리킨다 (내보내기가 몇 초).
    레이블 임베딩은 0 으로 시작하므로(레이블을 무시하는 모델) 값을 넣어 레이블마다 출력이 크게 다르게 한다.
    """
    d = tmp_path_factory.mktemp("onnx_cond")
    torch.manual_seed(0)
    config = tiny_unet_config(num_classes=NUM_CLASSES)
    model = Unet(config).eval()
    with torch.no_grad():
        model.class_emb.table.weight.normal_(0, 1.0)
    meta = {
        "unet": dataclasses.asdict(config),
        "diffusion": {"schedule": "linear", "timesteps": 1000, "prediction_type": "eps"},
        "step": 0,
    }
    ckpt = save_checkpoint(d / "cond.safetensors", {f"ema.model.{k}": v for k, v in model.state_dict().items()}, meta)
    out = d / "cond.onnx"
    with mock.patch.dict(os.environ, {PRETRAINED_CONDITIONAL_ENV: str(ckpt)}):
        rc = cli.main(["export", "--checkpoint", "pretrained-conditional", "--format", "onnx", "--out", str(out)])
    assert rc == 0
    model, diffusion, _ = load_model_from_checkpoint(ckpt)
    return model, diffusion, out


def test_conditional_onnx_matches_pytorch(conditional) -> None:
    """입력 labels 가 더해진 파일이 레이블마다(∅ 포함) PyTorch 와 같은 값을 내고, 레이블이 정말 들어간다."""
    model, _, out = conditional
    sess = onnx_export.OnnxUnet(out)
    assert sess.config.num_classes == NUM_CLASSES
    proto = onnx.load(str(out))
    assert [i.name for i in proto.graph.input] == [*onnx_export.INPUT_NAMES, onnx_export.LABELS_NAME]
    info = json.loads(onnx_export.sidecar_path(out).read_text(encoding="utf-8"))
    assert info["num_classes"] == info["null_label"] == NUM_CLASSES and info["input_dtypes"]["labels"] == "int64"
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 1, 28, 28, generator=g)
    t = torch.tensor([999, 500, 250, 1, 0])
    outs = {}
    for labels in ([0, 3, 9, NUM_CLASSES, 5], [7, 7, 7, 7, 7], [NUM_CLASSES] * 5):
        y = torch.tensor(labels)
        with torch.no_grad():
            ref = model(x, t, y).numpy()
        got = sess(x, t, y).numpy()
        # test_onnxruntime_matches_pytorch 와 같은 까닭(합성곱·정규화의 float32 합 순서)으로 1e-4
        assert float(np.abs(got - ref).max()) < 1e-4, labels
        outs[tuple(labels)] = got
    # 레이블 임베딩은 N(0, 1) 이라 레이블이 바뀌면 출력이 1e-2 보다 크게 바뀐다 (1e-4 의 오차와 가른다)
    assert float(np.abs(outs[(7,) * 5] - outs[(NUM_CLASSES,) * 5]).max()) > 1e-2
    # 레이블을 주지 않으면 ∅ 이다 (Unet.forward 와 같다)
    np.testing.assert_array_equal(sess(x, t).numpy(), outs[(NUM_CLASSES,) * 5])


def test_guided_sampling_on_conditional_onnx_matches_pytorch(conditional) -> None:
    """패키지 샘플러의 가이던스(한 번의 2B 호출)가 ONNX 신경망에도 그대로 되고 PyTorch 와 같은 이미지를 낸다."""
    model, diffusion, out = conditional
    x_T = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    kw = dict(sampler="dpm-solver++", steps=6, x_T=x_T, labels=torch.tensor([0, 4, 9]), guidance=2.0)
    a = diffusion.sample(model, (3, 1, 28, 28), **kw)
    b = diffusion.sample(onnx_export.OnnxUnet(out), (3, 1, 28, 28), **kw)
    # test_ddim_on_onnx_model_matches_pytorch 와 같은 까닭으로 1e-3. (1 + w) 배가 호출마다의 차이를 세 배까지 키운다
    assert float((a - b).abs().max()) < 1e-3


def test_conditional_onnx_bad_labels_are_clear_errors(conditional, exported) -> None:
    """범위 밖·음수·실수·모양이 틀린 레이블, 그리고 조건 없는 파일에 준 레이블은 두 언어로 말하는 오류다."""
    _, _, out = conditional
    sess = onnx_export.OnnxUnet(out)
    x, t = torch.zeros(2, 1, 28, 28), torch.tensor([5, 5])
    # onnxruntime 은 음수 번호를 뒤에서 세므로(−1 → ∅) 검사가 없으면 조용히 다른 값을 낸다
    for bad in (torch.tensor([0, NUM_CLASSES + 1]), torch.tensor([-1, 0]), torch.tensor([0.0, 1.0]), torch.tensor([1])):
        with pytest.raises(ValueError, match=r"레이블은.*labels must be integers in 0\.\.9"):
            sess(x, t, bad)
    with pytest.raises(ValueError, match=r"takes no labels.*pretrained-conditional"):
        onnx_export.OnnxUnet(exported)(x, t, torch.tensor([0, 1]))
