"""학습 상태의 저장과 복원: 이어 학습이 원래 학습과 같은 손실 곡선을 그리게 하는 모든 것.

한 학습 체크포인트에는 모델·EMA·옵티마이저 텐서, 노이즈 생성기와 torch 난수 상태, 데이터 순서(에폭, 에폭 안의
배치 번호), 아직 기록하지 않은 손실 창, 학습에 쓴 시간(``wall_time_s``), 시간 예산 학습이면 그 기록(``time_budget``)까지
든다. ``checkpoint_contents`` 가 그것을 ``(텐서, 메타데이터)`` 로 한 번에 만들고, ``restore_training_state`` 가 거꾸로
되돌린다. 두 함수는 ``ddpm_ko.train.Trainer`` 의 속성을 읽고 쓴다.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .checkpoint import (
    init_provenance,
    load_state_checked,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    read_checkpoint,
    resolve_checkpoint_path,
    sub_state,
)
from .errors import CheckpointError
from .unet import UnetConfig

__all__ = [
    "DATA_ORDER_KEYS",
    "MACHINE_KEYS",
    "open_resume_checkpoint",
    "adopt_checkpoint_config",
    "checkpoint_contents",
    "restore_training_state",
    "load_initial_weights",
]

#: 데이터 순서(에폭마다의 섞기, 좌우 반전, 배치 경계)를 정하는 설정. 이어 학습에서 바꾸면 원래 곡선을 잇지 못한다.
DATA_ORDER_KEYS = ("seed", "batch_size", "subset", "flip", "data_dir")
#: 이어 학습에서 체크포인트 값을 물려받지 않는 설정: 실행하는 기계와 출력 위치에 딸린 것이다.
MACHINE_KEYS = ("out_dir", "device", "num_threads", "progress", "precision")
#: 이어 학습에서 언제나 체크포인트 값을 쓰는 설정: 바꾸면 다른 모델을 학습하게 된다.
_DIFFUSION_KEYS = ("schedule", "timesteps", "prediction_type", "loss_type")


def open_resume_checkpoint(resume: str | os.PathLike) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]]:
    """이어 학습할 체크포인트를 읽어 ``(경로, 텐서, 메타데이터)`` 를 돌려준다.

    옵티마이저 상태가 없는 파일(EMA 만 든 배포용 파일)이면 어떤 파일로 이어 학습하는지 알려 주는 ``CheckpointError``.
    """
    path = resolve_checkpoint_path(resume)
    tensors, meta = read_checkpoint(path)
    if "train_state" not in meta or not any(k.startswith("optim.") for k in tensors):
        raise CheckpointError(
            f"이어 학습할 수 없는 체크포인트다 (EMA 만 든 배포용 파일) / {path} has no optimizer state: "
            "resume from a training checkpoint (runs/.../checkpoint.safetensors)"
        )
    return path, tensors, meta


def adopt_checkpoint_config(
    cfg: Any, given_unet: UnetConfig | None, meta: dict[str, Any], source: Path, info: Callable[[str], None]
) -> UnetConfig:
    """이어 학습의 설정을 체크포인트에 맞춘다: 신경망 설정과 확산 설정(``cfg`` 를 고친다)은 체크포인트 것을 쓴다.

    사용자가 준 값과 다르면 ``info`` 로 알린다. 데이터 순서를 정하는 설정(``DATA_ORDER_KEYS``)을 바꾸었으면
    원래 곡선과 달라진다고 경고한다. 체크포인트의 신경망 설정을 돌려준다.
    """
    try:
        unet_config = UnetConfig.from_dict(meta["unet"])
        saved = meta["train"]
        for key in _DIFFUSION_KEYS:
            if getattr(cfg, key) != saved[key]:
                info(f"이어 학습: {key} 는 체크포인트 값 {saved[key]!r} 을 쓴다 / using checkpoint's {key}")
                setattr(cfg, key, saved[key])
        changed = [k for k in DATA_ORDER_KEYS if k in saved and getattr(cfg, k) != saved[k]]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(
            f"체크포인트의 설정이 잘못되었다 / invalid config in checkpoint {source}: {type(e).__name__}: {e}"
        ) from e
    if given_unet is not None and given_unet != unet_config:
        info("이어 학습: 신경망 설정은 체크포인트 것을 쓴다 / using the checkpoint's network config")
    if changed:
        info(
            f"경고: 이어 학습에서 {changed} 를 바꾸어 데이터 순서가 원래 학습과 달라진다 / "
            f"warning: changing {changed} on resume changes the data order"
        )
    return unet_config


def checkpoint_contents(trainer: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``Trainer`` 의 지금 상태를 체크포인트에 쓸 ``(텐서, 메타데이터)`` 로 만든다 (부르는 순서에 매이지 않는다)."""
    t = trainer
    opt_tensors, opt_meta = optimizer_state_to_tensors(t.optimizer)
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"model.{k}": v for k, v in t.model.state_dict().items()})
    tensors.update({f"ema.{k}": v for k, v in t.ema.state_dict().items()})
    tensors.update(opt_tensors)
    tensors["rng.noise"] = t.noise_gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "unet": t.unet_config.to_dict(),
        "diffusion": t.cfg.diffusion_dict(),
        "train": t.cfg.to_dict(),
        "step": t.step,
        "epoch": t.epoch,
        "train_state": {
            "epoch": t.epoch,
            "batch_index": t.batch_index,
            "world_size": t.world,
            "loss_window": list(t.loss_window),
            "history_partial": t.history_partial,
        },
        "optimizer": opt_meta,
        "loss_history": t.history,
        "end": t.end or {"step": t.step, "reason": "in_progress", "target_steps": t.target_steps},
        "wall_time_s": round(t.wall_time, 2),
        "environment": t.env,
        "precision": t.precision,
        "grad_scaler": t.scaler.state_dict() if t.scaler is not None else None,
        "global_batch_size": t.cfg.batch_size,
        "seed": t.cfg.seed,
    }
    if getattr(t, "budget", None) is not None:  # 시간 예산 학습만: 예산, 다다른 스텝, 추정 전체 스텝, 쓴 시간
        meta["time_budget"] = t.budget.record(t.step, t.wall_time)
    if getattr(t, "init_from_model", None):  # --init-from 으로 시작했으면 그 출발점 (파일, SHA-256, 학습량)
        meta["init_from_model"] = t.init_from_model
    return tensors, meta


def restore_training_state(trainer: Any, tensors: dict[str, torch.Tensor], meta: dict[str, Any], source: str) -> None:
    """``checkpoint_contents`` 의 역: 체크포인트의 텐서와 메타데이터를 ``Trainer`` 에 되돌린다."""
    t = trainer
    load_state_checked(t.model, sub_state(tensors, "model"), source)
    load_state_checked(t.ema, sub_state(tensors, "ema"), source)
    if t.cfg.channels_last:
        t.model.to(memory_format=torch.channels_last)
    opt_state = optimizer_state_from_tensors(
        {
            k: v.to(t.device) if k.endswith(("exp_avg", "exp_avg_sq")) else v
            for k, v in tensors.items()
            if k.startswith("optim.")
        },
        meta["optimizer"],
    )
    try:
        t.optimizer.load_state_dict(opt_state)
    except (ValueError, KeyError) as e:
        raise CheckpointError(
            f"옵티마이저 상태가 모델과 맞지 않는다 / optimizer state does not match the model: {e}"
        ) from e
    t.noise_gen.set_state(tensors["rng.noise"])
    torch.set_rng_state(tensors["rng.torch"])
    if t.scaler is not None and meta.get("grad_scaler"):
        t.scaler.load_state_dict(meta["grad_scaler"])
    try:
        ts = meta["train_state"]
        t.step = int(meta["step"])
        t.epoch, t.batch_index = int(ts["epoch"]), int(ts["batch_index"])
        t.loss_window = [float(v) for v in ts.get("loss_window", [])]
        t.history_partial = bool(ts.get("history_partial", False))
        t.history = [list(h) for h in meta.get("loss_history", [])]
        t.wall_time = float(meta.get("wall_time_s", 0.0))
        t.init_from_model = meta.get("init_from_model")
        if getattr(t, "budget", None) is not None:  # 잰 스텝당 시간 (새 프로세스가 다시 잴 때까지 쓴다)
            t.budget.restore(meta.get("time_budget"))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"체크포인트의 학습 상태가 잘못되었다 / invalid training state in {source}: {e}") from e
    if t.batch_index >= t.batches.batches_per_epoch:
        raise CheckpointError(
            f"체크포인트의 배치 번호 {t.batch_index} 가 에폭당 배치 수 {t.batches.batches_per_epoch} 를 넘는다: "
            "batch_size 나 subset 을 원래 값으로 하라 / batch index out of range — resume with the original "
            "--batch-size and --subset"
        )
    t.last_good = (Path(source), t.step)


def load_initial_weights(model: torch.nn.Module, source: str, info: Callable[[str], None]) -> dict[str, Any]:
    """``source`` (체크포인트 경로나 ``"pretrained"``) 의 가중치(EMA 가 있으면 EMA)로 ``model`` 을 채운다 (``--init-from``).

    신경망 설정이 같아야 한다. 하나만 다를 수 있다: 조건 없는 모델의 가중치로 조건부 모델을 시작하면, 그 파일에 없는
    레이블 임베딩(``class_emb.``)은 0 으로 둔다. 그러면 시작점의 출력이 조건 없는 모델 그대로다 (11장).
    출발점의 요약(``checkpoint.init_provenance``: 파일, SHA-256, 학습량)을 돌려준다. 학습기는 그것을 체크포인트의
    ``init_from_model`` 에 남긴다.
    """
    from .checkpoint import load_model_from_checkpoint
    from .pretrained import resolve_checkpoint_name

    path = resolve_checkpoint_path(resolve_checkpoint_name(source))
    donor, _, donor_meta = load_model_from_checkpoint(path, use_ema=True)
    state = donor.state_dict()
    own = model.state_dict()
    new_only = sorted(k for k in own if k not in state)
    if any(not k.startswith("class_emb.") for k in new_only) or any(k not in own for k in state):
        raise CheckpointError(
            f"--init-from {source}: 신경망 설정이 다르다 (dim, dim_mults 등을 그 체크포인트와 같게 하라) / "
            f"the network config differs from {path} (use the same dim, dim_mults, …): "
            f"missing {new_only[:3]}, unexpected {[k for k in state if k not in own][:3]}"
        )
    state.update({k: own[k] for k in new_only})
    load_state_checked(model, state, str(path))
    extra = " (레이블 임베딩은 0 으로 새로 / new label embedding starts at 0)" if new_only else ""
    info(f"가중치를 {path} 에서 가져와 시작한다 / initialised from {path}{extra}")
    return init_provenance(path, donor_meta, source)
