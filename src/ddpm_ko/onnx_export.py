"""U-Net 을 ONNX 로 내보내기: 책의 웹 페이지(브라우저의 onnxruntime-web)에서 같은 신경망을 돌리려고.

``export_onnx(checkpoint, out)`` 은 체크포인트(기본 EMA 가중치)의 ε_θ(x_t, t) 를 ONNX 파일 하나로 쓴다.

- 입력 ``x_t``: float32 ``(B, C, H, W)``, 입력 ``t``: int64 ``(B,)`` (코드의 타임스텝 0..T−1, 패키지와 같다).
- 클래스 조건부 모델(``UnetConfig.num_classes``, ``pretrained-conditional``, 11장)이면 입력이 하나 더 있다:
  ``labels``: int64 ``(B,)``, 값은 0..K−1 또는 '레이블 없음'(∅) K. 조건 없는 모델의 파일은 예전과 똑같다 (입력 둘).
- 출력 ``prediction``: float32 ``(B, C, H, W)`` (예측 대상은 체크포인트 설정의 ``prediction_type``, 보통 ε).
- 배치 B 는 동적이다. 한 파일로 1장이든 16장이든 돌린다.
- 가중치는 파일 안에 담는다(외부 데이터 파일 없음). 웹 페이지가 파일 하나만 받으면 되게 하려는 것이다.

옆에는 같은 이름의 ``.json`` 사이드카를 쓴다. 확산 설정(스케줄, T, 예측 대상), 이미지 크기, 원본 체크포인트의
SHA-256, 내보낸 도구의 버전, 파일 크기가 들어 있다. 웹 페이지는 이 파일에서 스케줄 설정을 읽는다.

``onnx`` 와 ``onnxscript`` 는 이 경로에서만 쓰는 선택 의존성이다: ``pip install "ddpm_ko[onnx]"``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from .checkpoint import atomic_write_bytes, load_model_from_checkpoint, resolve_checkpoint_path
from .configs import require
from .errors import DdpmKoError

__all__ = [
    "ONNX_FORMAT",
    "ONNX_OPSET",
    "INPUT_NAMES",
    "LABELS_NAME",
    "OUTPUT_NAME",
    "OnnxDependencyError",
    "require_onnx",
    "export_onnx",
    "sidecar_path",
    "OnnxUnet",
]

#: 사이드카 JSON 의 형식 표시
ONNX_FORMAT = "ddpm_ko-onnx/1"
#: onnxruntime-web 1.31 과 onnxruntime 1.2x 가 모두 지원하는 연산자 집합 버전
ONNX_OPSET = 18
INPUT_NAMES = ("x_t", "t")
#: 조건부 모델에만 있는 셋째 입력 (클래스 레이블, ∅ = num_classes)
LABELS_NAME = "labels"
OUTPUT_NAME = "prediction"
_DEPENDENCIES = ("onnx", "onnxscript")


class OnnxDependencyError(DdpmKoError):
    """ONNX 내보내기에 필요한 선택 패키지(onnx, onnxscript)가 없을 때."""


def require_onnx() -> None:
    """``onnx`` 와 ``onnxscript`` 가 설치되어 있는지 확인하고, 없으면 무엇을 설치할지 말하는 오류를 낸다."""
    missing = [name for name in _DEPENDENCIES if importlib.util.find_spec(name) is None]
    if missing:
        names = " ".join(missing)
        raise OnnxDependencyError(
            f'ONNX 내보내기에는 {names} 패키지가 필요하다: pip install "ddpm_ko[onnx]" (또는 pip install {names}) / '
            f'exporting to ONNX needs {names}: run pip install "ddpm_ko[onnx]" (or pip install {names})'
        )


def sidecar_path(out: str | os.PathLike) -> Path:
    """ONNX 파일 옆 사이드카 JSON 의 경로 (``unet.onnx`` → ``unet.json``)."""
    return Path(out).with_suffix(".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "unknown"


def export_onnx(
    checkpoint: str | os.PathLike, out: str | os.PathLike, use_ema: bool = True, opset: int = ONNX_OPSET
) -> Path:
    """체크포인트의 U-Net 을 ONNX 파일 ``out`` 으로 내보내고 그 경로를 돌려준다.

    Args:
        checkpoint: ``.safetensors`` 체크포인트, 또는 ``"pretrained"`` (책의 사전 학습 모델), ``"pretrained-conditional"``
            (그 클래스 조건부 모델: 입력 ``labels`` 가 더해진다).
        out: 출력 ``.onnx`` 경로. 옆에 ``.json`` 사이드카를 함께 쓴다.
        use_ema: EMA 가중치를 쓸지 (없으면 학습 가중치).
        opset: ONNX 연산자 집합 버전.

    내보내기는 ``torch.onnx.export(..., dynamo=True)`` 로 한다. 파일은 임시 파일에 쓴 뒤 바꿔치기하므로
    도중에 실패해도 이미 있던 ``out`` 은 그대로 남는다.
    """
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"--out 파일은 .onnx 로 끝나야 한다 / --out must end in .onnx: {out}")
    require_onnx()
    import onnx

    from .pretrained import resolve_checkpoint_name

    source = resolve_checkpoint_path(resolve_checkpoint_name(checkpoint))
    model, diffusion, meta = load_model_from_checkpoint(source, use_ema=use_ema, device="cpu")
    model = model.float().eval()
    c = model.config
    num_classes = c.num_classes or None
    input_names = list(INPUT_NAMES) + ([LABELS_NAME] if num_classes else [])
    # 예시 입력은 배치 2: 배치 1 이면 내보내기가 그 크기를 상수로 굳힐 수 있다
    example: tuple[torch.Tensor, ...] = (
        torch.zeros(2, c.channels, c.image_size, c.image_size),
        torch.tensor([0, diffusion.num_timesteps - 1]),
    )
    if num_classes:
        example += (torch.tensor([0, num_classes]),)  # 한 클래스와 ∅
    batch = torch.export.Dim("batch", min=1, max=4096)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".onnx-export-", dir=out.parent) as tmp:
        raw = Path(tmp) / "model.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            # torch 내부의 폐기 예고와 동적 축 이름 안내는 사용자가 고칠 것이 아니므로 숨긴다
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message=".*axis name.*", category=UserWarning)
            torch.onnx.export(
                model,
                example,
                str(raw),
                input_names=input_names,
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
                dynamic_shapes=tuple({0: batch} for _ in input_names),
            )
        proto = onnx.load(str(raw))
    # 내보내기가 노드마다 붙이는 디버그 정보(파이썬 호출 위치 등)는 실행과 무관하고 파일을 1 MB 가까이 키운다
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    dcfg = meta.get("diffusion", {})
    info: dict[str, Any] = {
        "format": ONNX_FORMAT,
        "inputs": {"x_t": ["batch", c.channels, c.image_size, c.image_size], "t": ["batch"]},
        "input_dtypes": {"x_t": "float32", "t": "int64"},
        "output": OUTPUT_NAME,
    }
    if num_classes:
        info["inputs"][LABELS_NAME] = ["batch"]
        info["input_dtypes"][LABELS_NAME] = "int64"
        info["num_classes"] = num_classes
        info["null_label"] = num_classes
    info |= {
        "image_size": c.image_size,
        "channels": c.channels,
        "diffusion": {
            "schedule": dcfg.get("schedule", "linear"),
            "timesteps": diffusion.num_timesteps,
            "prediction_type": diffusion.prediction_type,
        },
        "weights": "ema" if use_ema else "model",
        "source": {"checkpoint": source.name, "sha256": _sha256(source), "step": meta.get("step")},
        "exporter": {
            "torch.onnx.export": "dynamo=True",
            "opset": opset,
            "torch": torch.__version__,
            "onnx": _version("onnx"),
            "onnxscript": _version("onnxscript"),
        },
        "how": "ddpm-ko export --checkpoint <checkpoint> --format onnx --out <file>.onnx",
    }
    # 같은 정보를 ONNX 파일 안의 메타데이터에도 넣는다 (파일 하나만 돌아다녀도 출처를 알 수 있게)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "ddpm_ko", json.dumps(info, ensure_ascii=False)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    atomic_write_bytes(out, data)
    info["bytes"] = len(data)
    info["sha256"] = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(sidecar_path(out), json.dumps(info, ensure_ascii=False, indent=1).encode("utf-8"))
    return out


class OnnxUnet:
    """내보낸 ONNX 파일을 onnxruntime 으로 돌리는, 패키지 샘플러에 그대로 넣을 수 있는 신경망.

    ``GaussianDiffusion.sample(OnnxUnet("unet.onnx"), ...)`` 처럼 쓴다. 브라우저(onnxruntime-web)와
    같은 파일을 파이썬에서 돌려 두 샘플러의 결과를 비교하려는 것이다. ``onnxruntime`` 이 필요하다.

    조건부 모델의 파일(입력 ``labels``)이면 ``Unet`` 처럼 ``model(x, t, labels)`` 로 부르고(``labels`` 가 없으면 ∅),
    ``config.num_classes`` 가 있으므로 ``sample(..., labels=…, guidance=w)`` 의 가이던스도 그대로 된다.

    Args:
        path: ``export_onnx`` 가 쓴 ``.onnx`` 파일.
        threads: onnxruntime 의 연산 스레드 수 (기본 1: 결과가 스레드 수에 따라 달라지지 않게).
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise OnnxDependencyError(
                "ONNX 모델을 돌리려면 onnxruntime 이 필요하다: pip install onnxruntime / "
                "running an ONNX model needs onnxruntime: pip install onnxruntime"
            ) from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        num_classes = None
        if LABELS_NAME in [i.name for i in self.session.get_inputs()]:
            embedded = self.session.get_modelmeta().custom_metadata_map.get("ddpm_ko", "{}")
            num_classes = json.loads(embedded).get("num_classes")
            if not isinstance(num_classes, int) or num_classes < 1:
                raise DdpmKoError(
                    f"{path} 에 입력 labels 가 있지만 클래스 수(메타데이터 num_classes)가 없다: export_onnx 로 다시 "
                    f"내보내라 / {path} takes labels but has no num_classes in its metadata: re-export it with export_onnx"
                )
        #: 패키지 샘플러가 조건부 모델을 알아보는 자리 (``model.config.num_classes``, 조건 없는 모델이면 None)
        self.config = SimpleNamespace(num_classes=num_classes)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        b = x.shape[0]
        t = torch.as_tensor(t)
        if t.ndim == 0:
            t = t.expand(b)
        feeds = {
            "x_t": x.detach().cpu().float().contiguous().numpy(),
            "t": t.detach().cpu().long().reshape(-1).contiguous().numpy(),
        }
        k = self.config.num_classes
        if k is None:
            require(
                labels is None,
                "이 ONNX 파일은 조건 없는 모델이라 레이블을 받지 않는다: 조건부 모델을 내보낸 파일"
                "(--checkpoint pretrained-conditional)을 쓰거나 레이블을 빼라 / this ONNX file is an unconditional model "
                "and takes no labels: export a conditional model (--checkpoint pretrained-conditional) or drop the labels",
            )
        else:
            y = torch.full((b,), k, dtype=torch.long) if labels is None else torch.as_tensor(labels).cpu()
            if y.ndim == 0:
                y = y.expand(b)
            # onnxruntime 의 Gather 는 음수 번호를 뒤에서 센다(−1 이 ∅ 이 된다): 범위를 여기서 막는다
            require(
                y.shape == (b,) and not y.is_floating_point() and bool(((y >= 0) & (y <= k)).all()),
                f"레이블은 ({b},) 모양의 정수 0..{k - 1} (또는 레이블 없음 {k}) 이어야 한다 / labels must be integers in "
                f"0..{k - 1} (or {k} for 'no label') of shape ({b},), got {y.dtype} {tuple(y.shape)} "
                f"{y.flatten()[:5].tolist()}",
            )
            feeds[LABELS_NAME] = y.long().contiguous().numpy()
        out = self.session.run([OUTPUT_NAME], feeds)[0]
        return torch.from_numpy(out).to(x.device)
