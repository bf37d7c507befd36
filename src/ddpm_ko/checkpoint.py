"""체크포인트: safetensors 가중치 + JSON 사이드카, 원자적 저장, 안전한 불러오기.

한 체크포인트는 두 파일이다.
- ``NAME.safetensors``: 텐서 (``model.*``, ``ema.*``, ``optim.*``, ``rng.*``) 와, 헤더 메타데이터의
  ``ddpm_ko`` 항목에 든 JSON (설정, 학습 스텝, 손실 기록 …). 이 파일 하나로 완결된다.
- ``NAME.json``: 같은 메타데이터를 사람이 읽기 좋게 쓴 사본.

safetensors 는 피클(pickle)을 쓰지 않으므로 남이 준 파일을 열어도 코드가 실행되지 않는다.
저장은 임시 파일 → fsync → ``os.replace`` 순서라서 어느 순간에 프로세스가 죽어도 이전
체크포인트는 온전히 남는다.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError

__all__ = [
    "FORMAT",
    "atomic_write_bytes",
    "clean_stale_temp_files",
    "resolve_checkpoint_path",
    "save_checkpoint",
    "read_checkpoint",
    "load_model_from_checkpoint",
    "build_from_meta",
    "optimizer_state_to_tensors",
    "optimizer_state_from_tensors",
    "export_ema",
    "file_sha256",
    "init_provenance",
    "training_stages",
    "whole_loss_history",
    "total_training_steps",
    "total_wall_time_s",
    "sub_state",
    "load_state_checked",
    "write_safetensors",
    "read_safetensors",
]

FORMAT = "ddpm_ko/1"
META_KEY = "ddpm_ko"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode(path: Path) -> int:
    """새 파일에 줄 권한: 이미 있는 파일이면 그 권한, 없으면 umask 를 따른 보통 파일 권한 (예: 0644).

    ``tempfile.mkstemp`` 는 언제나 0600 으로 만들기 때문에, 그대로 바꿔치기하면 체크포인트를
    다른 사용자(예: 같은 서버를 쓰는 스터디원)가 읽지 못한다.
    """
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` 를 같은 디렉터리의 임시 파일에 쓰고 fsync 한 뒤 ``path`` 로 바꿔치기한다.

    ``os.replace`` 는 같은 파일 시스템 안에서 원자적이므로 ``path`` 에는 언제나 이전 내용 전체나
    새 내용 전체가 있다. 쓰는 도중에 프로세스가 죽으면 ``.NAME.XXXX.tmp`` 임시 파일만 남고,
    ``clean_stale_temp_files`` 가 그것을 치운다.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def clean_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """``path`` 와 그 JSON 사본의 임시 파일 가운데 죽은 프로세스가 남긴 것을 지우고 목록을 돌려준다.

    같은 경로에 동시에 쓰는 프로세스가 없을 때(학습을 시작할 때 rank 0 에서) 부른다.
    """
    removed: list[Path] = []
    for target in _paths(path):
        for stale in target.parent.glob(_temp_prefix(target) + "*.tmp"):
            try:
                stale.unlink()
                removed.append(stale)
            except OSError:
                pass
    return removed


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """사용자가 준 경로를 ``.safetensors`` 파일 경로로 바꾼다.

    디렉터리면 그 안의 ``checkpoint.safetensors``, ``.json`` 사본이면 짝인 ``.safetensors``,
    확장자가 없으면 ``.safetensors`` 를 붙인다.
    """
    return _paths(path)[0]


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.safetensors"
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    elif p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors") if p.suffix == "" else p
    return p, p.with_suffix(".json")


def optimizer_state_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """옵티마이저 상태를 (텐서 사전, JSON 으로 쓸 수 있는 나머지) 로 나눈다 (피클 없이 저장하려고)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_state_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """``optimizer_state_to_tensors`` 의 역: ``optimizer.load_state_dict`` 에 넣을 사전."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if not key.startswith("optim."):
            continue
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    for pid, st in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """텐서와 메타데이터를 원자적으로 저장하고 ``.safetensors`` 경로를 돌려준다.

    safetensors 를 먼저 바꿔치기하고 JSON 사본을 그다음에 쓴다. 그 사이에 죽더라도
    불러오기는 safetensors 안의 메타데이터만 믿으므로 문제가 없다.
    """
    st_path, _ = _paths(path)
    return write_safetensors(st_path, tensors, {"format": FORMAT, **meta}, META_KEY)


def write_safetensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any], meta_key: str = META_KEY
) -> Path:
    """텐서를 ``path`` (.safetensors) 에, 메타데이터를 그 헤더의 ``meta_key`` 항목과 JSON 사본에 원자적으로 쓴다.

    학습 체크포인트(``save_checkpoint``)와 평가용 분류기(``ddpm_ko.classifier``)가 함께 쓰는 저장 방식이다.
    safetensors 를 먼저 바꿔치기하고 JSON 사본을 그다음에 쓴다.
    """
    from safetensors.torch import save

    st_path = Path(path)
    clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(st_path, save(clean, metadata={meta_key: json.dumps(meta, ensure_ascii=False)}))
    atomic_write_bytes(st_path.with_suffix(".json"), json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8"))
    return st_path


def read_safetensors(
    path: str | os.PathLike,
    prefixes: tuple[str, ...] | None = None,
    *,
    what: tuple[str, str] = ("체크포인트", "checkpoint"),
    how: str = "`ddpm-ko train` 으로 만들거나 경로를 확인하라 (train one with `ddpm-ko train` or check the path)",
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors 파일에서 ``(텐서, 헤더 메타데이터)`` 를 읽는다. 피클을 쓰지 않는다.

    ``prefixes`` 를 주면 그 접두사로 시작하는 텐서만 읽는다. 파일이 없거나 손상되었으면 무엇(``what``: 한국어, 영어)을
    읽다가 실패했는지와 할 일(``how``)을 말하는 ``CheckpointError`` 를 낸다.
    """
    from safetensors import safe_open

    ko, en = what
    if not Path(path).is_file():
        raise CheckpointError(f"{ko} 파일이 없다 / {en} not found: {path} — {how}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            keys = [k for k in f.keys() if prefixes is None or k.startswith(prefixes)]
            return {k: f.get_tensor(k) for k in keys}, header
    except Exception as e:  # SafetensorError, OSError, UnicodeError …
        detail = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise CheckpointError(
            f"{ko} 파일이 손상되었거나 safetensors 파일이 아니다 / corrupt or not a safetensors file: {path} "
            f"({detail}) — 다시 받거나 이전 파일을 써라 (re-download it or use an earlier one)"
        ) from e


def read_checkpoint(
    path: str | os.PathLike, prefixes: tuple[str, ...] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """체크포인트를 읽어 ``(텐서 사전, 메타데이터)`` 를 돌려준다.

    파일이 없거나, safetensors 가 아니거나, 잘렸거나, ddpm_ko 가 쓴 것이 아니면
    무엇을 해야 하는지 말하는 ``CheckpointError`` 를 낸다. ``prefixes`` 를 주면 그 접두사로
    시작하는 텐서만 읽는다.
    """
    st_path, _ = _paths(path)
    tensors, header = read_safetensors(st_path, prefixes)
    if META_KEY not in header:
        raise CheckpointError(
            f"ddpm_ko 체크포인트가 아니다 (메타데이터 없음) / not a ddpm_ko checkpoint (no metadata): {st_path}"
        )
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"체크포인트 메타데이터가 손상되었다 / corrupt checkpoint metadata: {st_path}") from e
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"체크포인트 메타데이터가 손상되었다 / corrupt checkpoint metadata (not an object): {st_path}"
        )
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"지원하지 않는 체크포인트 형식 / unsupported checkpoint format {meta.get('format')!r} in {st_path}"
        )
    return tensors, meta


def sub_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``prefix.`` 로 시작하는 텐서만 골라 접두사를 뗀다 (``model.w`` → ``w``): ``load_state_dict`` 에 넣을 사전."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_state_checked(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` 의 긴 오류를 한 줄짜리 ``CheckpointError`` 로 바꾼다."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:300]
        raise CheckpointError(
            f"체크포인트 가중치가 모델 설정과 맞지 않는다 / checkpoint weights do not match the model config ({source}): {detail}"
        ) from e


def build_from_meta(meta: dict[str, Any]):
    """메타데이터의 설정으로 ``(Unet, GaussianDiffusion)`` 을 만든다 (가중치는 아직 없다)."""
    from .diffusion import GaussianDiffusion
    from .unet import Unet, UnetConfig

    try:
        unet_cfg = UnetConfig.from_dict(meta["unet"])
        dcfg = meta["diffusion"]
        diffusion = GaussianDiffusion.from_schedule(
            dcfg["schedule"],
            int(dcfg["timesteps"]),
            prediction_type=dcfg.get("prediction_type", "eps"),
            loss_type=dcfg.get("loss_type", "l2"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(
            f"체크포인트의 설정이 잘못되었다 / invalid config in checkpoint: {type(e).__name__}: {e}"
        ) from e
    return Unet(unet_cfg), diffusion


def load_model_from_checkpoint(path: str | os.PathLike, use_ema: bool = True, device: torch.device | str = "cpu"):
    """체크포인트에서 ``(model, diffusion, meta)`` 를 만든다. 기본은 EMA 가중치 (없으면 학습 가중치)."""
    tensors, meta = read_checkpoint(path, prefixes=("model.", "ema."))
    model, diffusion = build_from_meta(meta)
    ema_state = sub_state(tensors, "ema.model")
    state = ema_state if (use_ema and ema_state) else sub_state(tensors, "model")
    if not state:
        raise CheckpointError(f"체크포인트에 모델 가중치가 없다 / no model weights in checkpoint: {path}")
    load_state_checked(model, state, str(path))
    return model.to(device).eval(), diffusion.to(device), meta


def file_sha256(path: str | os.PathLike) -> str:
    """파일 내용의 SHA-256 (16진수)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def total_training_steps(meta: dict[str, Any]) -> int:
    """이 가중치에 이르기까지 학습한 스텝 수: 이 체크포인트의 ``step`` 에 출발점(``init_from_model``)의 것을 더한다.

    ``--init-from`` 으로 미세 조정한 모델의 ``step`` 은 0 부터 다시 센 수라서, 그것만으로는 전체 학습량이 아니다.
    """
    base = meta.get("init_from_model") or {}
    return int(meta.get("step", 0)) + int(base.get("total_steps", base.get("step", 0)) or 0)


def total_wall_time_s(meta: dict[str, Any]) -> float:
    """이 가중치에 이르기까지 학습에 쓴 벽시계 시간(초): ``total_training_steps`` 처럼 출발점의 것을 더한다."""
    base = meta.get("init_from_model") or {}
    base_time = base.get("total_wall_time_s", base.get("wall_time_s", 0.0)) or 0.0
    return float(meta.get("wall_time_s", 0.0)) + float(base_time)


def whole_loss_history(meta: dict[str, Any]) -> list[list[float]]:
    """이 가중치에 이르기까지의 손실 기록 전체: ``[[전체 학습 스텝, 그 구간의 평균 손실], ...]``.

    미세 조정한 모델이면 출발점의 기록(``init_from_model.loss_history``, 이미 전체 스텝으로 센 것)에 이 체크포인트의
    기록을 전체 스텝으로 옮겨 잇는다 (7장의 손실 그림).
    """
    earlier = meta.get("init_from_model") or {}
    offset = total_training_steps(meta) - int(meta.get("step", 0))
    return [list(h) for h in earlier.get("loss_history", [])] + [
        [int(s) + offset, float(v)] for s, v in meta.get("loss_history", [])
    ]


def _stage_of(meta: dict[str, Any], kind: str, sha256: str | None) -> dict[str, Any]:
    """메타데이터 한 벌이 기록한 학습 한 번 (스텝, 시간, 반전, 시간 예산, 명령, 하드웨어, 끝난 이유)."""
    train = meta.get("train") or {}
    env = meta.get("environment") or {}
    budget = meta.get("time_budget") or {}
    hardware = meta.get("hardware") or (
        {k: env.get(k) for k in ("cpu_model", "cpu_count", "torch_threads", "gpu")} if env else None
    )
    return {
        "kind": kind,
        "steps": int(meta.get("step", 0)),
        "wall_time_s": round(float(meta.get("wall_time_s", 0.0)), 2),
        "flip": meta.get("flip", train.get("flip")),
        "time_budget_minutes": budget.get("minutes", train.get("time_budget")),
        "end": meta.get("end"),
        "command": meta.get("command"),
        "hardware": hardware,
        "sha256": sha256,
    }


def training_stages(meta: dict[str, Any], sha256: str | None = None) -> list[dict[str, Any]]:
    """이 가중치에 이르기까지의 학습을 한 번씩, 오래된 것부터 늘어놓는다.

    처음부터 학습한 첫 학습(``kind="scratch"``) 뒤에 ``--init-from`` 의 미세 조정(``"fine-tune"``)이 이어진다.
    각 항목은 그 학습의 스텝, 벽시계 시간, 좌우 반전, 시간 예산(분), 끝난 이유, 명령, 하드웨어와 그때까지의 누적
    (``total_steps``, ``total_wall_time_s``), 그리고 알면 그 학습이 만든 파일의 SHA-256 이다 (마지막 항목은 ``sha256``
    인자). 벤치마크 결과의 ``checkpoint_sha256`` 을 이 SHA-256 들과 견주면 결과가 어느 단계의 모델을 쟀는지 안다.
    출발점의 기록에 단계 목록이 없는 옛 사이드카는 그 출발점을 한 단계로 본다.
    """
    base = meta.get("init_from_model") or {}
    if base.get("stages"):
        stages = [dict(s) for s in base["stages"]]
    elif base:  # 단계 목록이 없던 때의 기록: 출발점 하나 (그 앞에 또 학습이 있었다면 내용을 모르는 한 단계)
        earlier = int(base.get("total_steps", base.get("step", 0))) - int(base.get("step", 0))
        stages = []
        if earlier > 0:
            unknown_s = float(base.get("total_wall_time_s", 0.0)) - float(base.get("wall_time_s", 0.0))
            stages.append({**_stage_of({}, "unknown", None), "steps": earlier, "wall_time_s": round(unknown_s, 2)})
        stages.append(_stage_of(base, "fine-tune" if earlier > 0 else "scratch", base.get("sha256")))
    else:
        stages = []
    stages.append(_stage_of(meta, "fine-tune" if base else "scratch", sha256))
    steps, wall = 0, 0.0
    for stage in stages:
        steps += stage["steps"]
        wall += stage["wall_time_s"]
        stage["total_steps"], stage["total_wall_time_s"] = steps, round(wall, 2)
    return stages


def init_provenance(path: str | os.PathLike, meta: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """``--init-from`` 의 출발점을 체크포인트 메타데이터(``init_from_model``)에 남길 꼴로 요약한다.

    파일 이름과 SHA-256 으로 어느 가중치인지 가리고, 그 가중치의 학습량(스텝, 시간, 그리고 출발점이 또 있으면 그것까지
    더한 전체)을 적는다. 그래서 미세 조정한 모델의 ``total_training_steps`` 가 학습 전체를 센다. ``loss_history`` 는
    출발점까지의 손실 기록 전체로, 스텝을 전체 학습의 스텝으로 센다 (7장이 미세 조정한 모델의 손실 기록을 잇는다).
    ``stages`` 는 출발점까지의 학습 이력, 곧 학습 한 번씩의 목록이다 (``training_stages``).
    """
    path = Path(path)
    sha = file_sha256(path)
    return {
        "source": str(source if source is not None else path),
        "file": path.name,
        "sha256": sha,
        "step": int(meta.get("step", 0)),
        "wall_time_s": float(meta.get("wall_time_s", 0.0)),
        "total_steps": total_training_steps(meta),
        "total_wall_time_s": round(total_wall_time_s(meta), 2),
        "loss_history": whole_loss_history(meta),
        "stages": training_stages(meta, sha),
    }


def export_ema(src: str | os.PathLike, dst: str | os.PathLike, extra_meta: dict[str, Any] | None = None) -> Path:
    """학습 체크포인트에서 EMA 가중치와 메타데이터만 남긴 작은 배포용 체크포인트를 만든다."""
    tensors, meta = read_checkpoint(src, prefixes=("ema.",))
    if not tensors:
        raise CheckpointError(f"EMA 가중치가 없다 / no EMA weights in {src}")
    model, _ = build_from_meta(meta)  # 망가진 체크포인트를 그럴듯한 배포 파일로 옮기지 않도록 먼저 맞춰 본다
    load_state_checked(model, sub_state(tensors, "ema.model"), str(src))
    meta = {k: v for k, v in meta.items() if k not in ("optimizer", "format")}
    meta.update(extra_meta or {})
    return save_checkpoint(dst, tensors, meta)
