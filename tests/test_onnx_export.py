"""ONNX 내보내기(ddpm_ko.onnx_export, ``ddpm-ko export --format onnx``): onnxruntime 이 PyTorch 와 같은 값을 내는가."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from ddpm_ko import cli, onnx_export
from ddpm_ko.diffusion import GaussianDiffusion
from ddpm_ko.pretrained import load_pretrained

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
