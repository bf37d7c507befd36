"""학습 루프: AdamW, 학습률 워밍업, EMA, 그래디언트 클리핑, 체크포인트와 이어 학습, 분산 학습.

한 학습 스텝은 DDPM 알고리즘 1 그대로다: 데이터에서 x_0, 무작위 t, ε ~ N(0, I) 를 뽑아
x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε 을 **한 번에** 만들고 (식 ch2-eq-closed-reparam), ‖ε − ε_θ(x_t, t)‖² 를 줄인다 (식 ch7-eq-lsimple).
역방향 사슬(t = T → 0)은 학습 중에 한 번도 돌리지 않는다.

이어 학습이 원래 학습과 같은 손실 곡선을 그리도록, 체크포인트에 옵티마이저·EMA·난수
생성기 상태와 데이터 순서(에폭, 에폭 안의 배치 번호), 아직 기록하지 않은 손실까지 모두 저장한다.
손실이나 갱신한 가중치가 NaN/Inf 가 되면 몇 번째 스텝인지 알리고 멈추며, 마지막 정상 체크포인트는
덮어쓰지 않는다. ``torchrun --nproc_per_node N`` 아래에서는 DistributedDataParallel 로 돌고,
기록과 파일 쓰기는 rank 0 만 한다.

이 모듈은 설정(``TrainConfig``)과 학습 고리(``Trainer``)다. 곁의 일은 각자의 모듈에 있다: 체크포인트에 쓰고
되돌리는 학습 상태는 ``training_state``, 여러 프로세스 통신은 ``distributed``, NaN/Inf 검사는 ``divergence``,
정밀도는 ``precision``, 신호 처리는 ``stop_on_signal``, EMA 는 ``ema``, 시간 예산(``--time-budget``)은 ``time_budget``.

체크포인트의 ``end`` 항목은 그 파일이 학습의 어느 시점인지 밝힌다: ``{"step": 학습한 스텝, "reason": …,
"target_steps": 목표 스텝}``. ``reason`` 은 ``max_steps``·``epochs`` (목표에 이르러 끝남), ``time_budget`` (시간 예산을
다 씀, ``time_budget`` 모듈), ``signal`` (SIGINT·SIGTERM 을
받아 그 스텝을 마치고 멈춤, 한 프로세스 학습만), ``in_progress`` (학습 도중의 주기적 저장: 그 뒤 프로세스가
강제로 죽었다면 이 값이 남는다). ``train.max_steps`` 는 요청한 목표 그대로 두므로 ``--resume`` 은 그 목표까지 잇는다.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed
from .checkpoint import clean_stale_temp_files, read_checkpoint, resolve_checkpoint_path, save_checkpoint
from .conditioning import NUM_CLASSES, drop_labels
from .configs import UnknownFieldsError, dataclass_from_dict, require
from .data import ImageBatches, fashion_mnist_arrays
from .diffusion import LOSS_TYPES, PREDICTION_TYPES, GaussianDiffusion
from .divergence import check_grad_norm, check_loss, check_weights
from .ema import EMA
from .errors import CheckpointError
from .guidance import DEFAULT_GUIDANCE
from .precision import PRECISIONS, autocast_for, resolve_precision
from .schedules import SCHEDULES
from .stop_on_signal import StopOnSignal
from .time_budget import EMA_WINDOW_FRACTION, LR_FLOOR, TimeBudget
from .timestep_sampling import TIMESTEP_SAMPLINGS
from .training_state import (
    MACHINE_KEYS,
    adopt_checkpoint_config,
    checkpoint_contents,
    load_initial_weights,
    open_resume_checkpoint,
    restore_training_state,
)
from .unet import Unet, UnetConfig
from .utils import environment_info, pick_device, tune_cpu

__all__ = ["TrainConfig", "train", "Trainer", "resume_config", "lr_at", "record_loss", "training_batches"]


def lr_at(step: int, lr: float, warmup_steps: int) -> float:
    """``step`` 스텝(0 부터)의 학습률: ``warmup_steps`` 동안 선형으로 올린 뒤 일정하다."""
    if warmup_steps and step < warmup_steps:
        return lr * (step + 1) / warmup_steps  # 식 (ch7-eq-warmup): η·min(1, (n + 1)/n_warmup)
    return lr


@dataclass
class TrainConfig:
    """학습 설정. 기본값은 2코어 CPU 에서 짧은 시간에 좋은 샘플에 이르도록 고른 값이다.

    ``batch_size`` 와 ``lr`` 은 **전역** 값이다: 분산 학습이면 프로세스마다 ``batch_size / N``
    장을 처리하고, 그래디언트를 평균해 한 프로세스에서 전역 배치로 학습한 것과 같게 한다.

    ``micro_batch`` 를 주면 (프로세스마다의) 배치를 그 크기 이하의 조각으로 나눠 순전파·역전파하고 그래디언트를
    모은 뒤 한 번만 갱신한다 (그래디언트 누적). 수학적으로 같은 스텝이고 (GroupNorm 은 배치 통계를 쓰지 않는다)
    최대 메모리가 조각 크기에 비례해 준다. 그 대신 조각마다 드는 고정 비용만큼 조금 느려진다.

    ``conditional`` 이면 클래스 조건부 모델(11장)을 학습한다: U-Net 이 레이블을 받고(``UnetConfig.num_classes``),
    스텝마다 레이블을 확률 ``p_uncond`` 로 ∅ 으로 바꾼다. ``init_from`` (체크포인트 경로나 ``"pretrained"``) 을 주면
    그 가중치에서 시작한다 (조건 없는 모델의 가중치라면 레이블 임베딩만 0 으로 새로 둔다). 레이블 임베딩 표는 학습률의
    ``label_lr_mult`` 배로 배운다 (``parameter_groups`` 를 보라).
    """

    out_dir: str = "runs/default"
    data_dir: str | None = None
    epochs: float | None = None
    max_steps: int | None = None
    time_budget: float | None = None  # 분. 주면 그 시간 동안 학습한다 (time_budget 모듈); max_steps·epochs 는 상한
    batch_size: int = 64
    micro_batch: int | None = None
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.99)
    ema_decay: float = 0.999
    ema_window: float = EMA_WINDOW_FRACTION  # 시간 예산에서만: EMA 평균 창 = 추정 전체 스텝 × 이 몫 (ema_decay 대신)
    lr_floor: float = LR_FLOOR  # 시간 예산에서만: 예산 끝의 학습률 = lr × 이 몫 (코사인 감쇠의 바닥)
    grad_clip: float = 1.0
    schedule: str = "linear"
    timesteps: int = 1000
    prediction_type: str = "eps"
    loss_type: str = "l2"
    min_snr_gamma: float | None = None  # Min-SNR-γ 손실 가중치 (10장); None 이면 L_simple 그대로
    timestep_sampling: str = "uniform"  # 학습 타임스텝의 분포 (timestep_sampling 모듈, 10장)
    seed: int = 0
    checkpoint_every: int = 500
    sample_every: int = 0
    sample_count: int = 64
    sample_steps: int = 50
    log_every: int = 50
    flip: bool = False  # 좌우 반전: Fashion-MNIST 의 신발은 한쪽만 보므로 끈다 (10장 처방 연구)
    subset: int | None = None
    device: str | None = None
    num_threads: int | None = None
    channels_last: bool = True
    progress: bool = True
    precision: str = "auto"
    conditional: bool = False
    p_uncond: float = 0.1
    label_lr_mult: float = 20.0
    init_from: str | None = None

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        require(
            self.schedule in SCHEDULES,
            f"알 수 없는 스케줄 '{self.schedule}' / unknown schedule: choose one of {list(SCHEDULES)}",
        )
        require(
            self.prediction_type in PREDICTION_TYPES,
            f"알 수 없는 예측 대상 '{self.prediction_type}' / unknown prediction type: {PREDICTION_TYPES}",
        )
        require(
            self.loss_type in LOSS_TYPES,
            f"알 수 없는 손실 '{self.loss_type}' / unknown loss: choose one of {LOSS_TYPES}",
        )
        require(
            self.min_snr_gamma is None or (self.min_snr_gamma > 0 and self.loss_type == "l2"),
            f"min_snr_gamma 는 양수이고 l2 손실과 함께 쓴다 / min_snr_gamma must be > 0 with loss 'l2', "
            f"got {self.min_snr_gamma} with '{self.loss_type}'",
        )
        require(
            self.timestep_sampling in TIMESTEP_SAMPLINGS,
            f"알 수 없는 타임스텝 분포 '{self.timestep_sampling}' / unknown timestep sampling: choose one of "
            f"{list(TIMESTEP_SAMPLINGS)}",
        )
        require(self.timesteps >= 2, f"timesteps 는 2 이상 / timesteps must be >= 2, got {self.timesteps}")
        require(self.batch_size >= 1, f"batch_size 는 1 이상 / batch_size must be >= 1, got {self.batch_size}")
        require(
            self.micro_batch is None or self.micro_batch >= 1,
            f"micro_batch 는 1 이상 / micro_batch must be >= 1, got {self.micro_batch}",
        )
        require(self.lr > 0, f"lr 은 양수 / lr must be > 0, got {self.lr}")
        require(
            self.max_steps is None or self.max_steps >= 1,
            f"max_steps 는 1 이상 / max_steps must be >= 1, got {self.max_steps}",
        )
        require(self.epochs is None or self.epochs > 0, f"epochs 는 양수 / epochs must be > 0, got {self.epochs}")
        require(
            self.time_budget is None or (math.isfinite(self.time_budget) and self.time_budget > 0),
            f"time_budget 은 유한한 양수(분)여야 한다, 예: --time-budget 20 / time_budget must be a finite number of "
            f"minutes > 0, got {self.time_budget}",
        )
        require(
            self.checkpoint_every >= 1,
            f"checkpoint_every 는 1 이상 / checkpoint_every must be >= 1, got {self.checkpoint_every}",
        )
        require(self.sample_every >= 0, "sample_every 는 0 이상 / sample_every must be >= 0")
        require(
            self.sample_count >= 1 and self.sample_steps >= 1, "sample_count, sample_steps 는 1 이상 / must be >= 1"
        )
        require(
            self.sample_steps <= self.timesteps,
            f"sample_steps({self.sample_steps}) 는 T({self.timesteps}) 이하 / cannot exceed timesteps",
        )
        require(self.log_every >= 1, "log_every 는 1 이상 / log_every must be >= 1")
        require(self.subset is None or self.subset >= 1, "subset 은 1 이상 / subset must be >= 1")
        require(0.0 <= self.ema_decay < 1.0, f"ema_decay 는 [0, 1) / ema_decay must be in [0, 1), got {self.ema_decay}")
        require(self.warmup_steps >= 0, "warmup_steps 는 0 이상 / warmup_steps must be >= 0")
        require(
            0.0 < self.ema_window <= 1.0,
            f"ema_window 는 (0, 1] (전체 스텝의 몫) / ema_window is a fraction of the run in (0, 1], got {self.ema_window}",
        )
        require(
            0.0 <= self.lr_floor <= 1.0,
            f"lr_floor 는 [0, 1] (lr 의 몫) / lr_floor is a fraction of lr in [0, 1], got {self.lr_floor}",
        )
        require(self.grad_clip >= 0, "grad_clip 은 0 이상 / grad_clip must be >= 0")
        require(self.label_lr_mult > 0, f"label_lr_mult 는 양수 / label_lr_mult must be > 0, got {self.label_lr_mult}")
        require(0.0 <= self.p_uncond < 1.0, f"p_uncond 는 [0, 1) / p_uncond must be in [0, 1), got {self.p_uncond}")
        require(
            self.precision in PRECISIONS,
            f"알 수 없는 정밀도 '{self.precision}' / unknown precision: choose one of {list(PRECISIONS)}",
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """사전에서 만든다. 모르는 항목은 이름을 들어 거부한다 (``ddpm_ko.configs.dataclass_from_dict``)."""
        return dataclass_from_dict(cls, d)

    def diffusion_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "timesteps": self.timesteps,
            "prediction_type": self.prediction_type,
            "loss_type": self.loss_type,
        }


#: 학습의 길이를 정하는 설정 (이어 학습에서 하나라도 주면 함께 바뀐다)
_LENGTH_KEYS = ("max_steps", "epochs", "time_budget")


def step_target(cfg: TrainConfig, batches_per_epoch: int) -> int | None:
    """``max_steps``, 아니면 ``epochs`` (기본 1) 에 해당하는 스텝 수. 시간 예산만 주었으면 ``None`` (상한 없음)."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    if cfg.epochs is None and cfg.time_budget is not None:
        return None
    epochs = cfg.epochs if cfg.epochs is not None else 1
    return max(1, math.ceil(epochs * batches_per_epoch))


def resume_config(
    resume: str | os.PathLike, overrides: dict[str, Any] | None = None, meta: dict[str, Any] | None = None
) -> TrainConfig:
    """이어 학습에 쓸 설정: 체크포인트에 저장된 학습 설정에 ``overrides`` 를 덮어쓴다.

    그래서 ``ddpm-ko train --resume PATH`` 만 쳐도 원래와 같은 배치 크기·시드·학습률로 이어 간다.
    장치·스레드 수·진행 막대는 물려받지 않고, ``out_dir`` 은 따로 주지 않으면 체크포인트가 있는
    디렉터리다. 학습의 길이(``max_steps``, ``epochs``, ``time_budget``)를 하나라도 주면 주지 않은 나머지는
    지운다: 새로 준 길이가 저장된 길이를 통째로 바꾼다.
    """
    path = resolve_checkpoint_path(resume)
    if meta is None:
        _, meta = read_checkpoint(path, prefixes=())
    saved = meta.get("train")
    if not isinstance(saved, dict):
        raise CheckpointError(f"체크포인트에 학습 설정이 없다 / no training config in checkpoint: {path}")
    base = {k: v for k, v in saved.items() if k not in MACHINE_KEYS}
    # 기본값이 바뀌었거나 새로 생긴 설정: 그 항목이 없는 체크포인트는 그때의 기본값(가중치 없음, 좌우 반전 켬, 고른 타임스텝)으로
    # 학습했다
    base.setdefault("min_snr_gamma", None)
    base.setdefault("flip", True)
    base.setdefault("timestep_sampling", "uniform")
    base["out_dir"] = str(path.parent)
    overrides = dict(overrides or {})
    if any(overrides.get(k) is not None for k in _LENGTH_KEYS):
        base.update(dict.fromkeys(_LENGTH_KEYS))
    try:
        return TrainConfig.from_dict({**base, **overrides})
    except (TypeError, UnknownFieldsError) as e:  # 설정값의 검사 오류(ValueError)는 그대로 알린다
        raise CheckpointError(
            f"체크포인트의 학습 설정이 잘못되었다 / invalid training config in checkpoint {path}: {e}"
        ) from e


def _check_images(images: Any, config: UnetConfig) -> None:
    """학습 이미지가 U-Net 설정과 맞는 uint8 (N, H, W) 또는 (N, C, H, W) 배열인지 검사한다."""
    shape = tuple(getattr(images, "shape", ()))
    dtype = str(getattr(images, "dtype", type(images).__name__)).replace("torch.", "")
    want = (
        f"(N, {config.image_size}, {config.image_size})"
        if config.channels == 1
        else f"(N, {config.channels}, {config.image_size}, {config.image_size})"
    )
    ok_shape = (len(shape) == 3 and config.channels == 1 and shape[1:] == (config.image_size,) * 2) or (
        len(shape) == 4 and shape[1:] == (config.channels, config.image_size, config.image_size)
    )
    if dtype != "uint8" or not ok_shape:
        raise ValueError(
            f"학습 이미지는 {want} uint8 배열이어야 한다 (UnetConfig 의 image_size={config.image_size}, "
            f"channels={config.channels}) / training images must be a uint8 array of shape {want}, got {dtype} {shape}"
        )


def training_batches(images: Any, cfg: TrainConfig, unet_config: UnetConfig, labels: Any = None) -> ImageBatches:
    """학습 이미지 (``None`` 이면 Fashion-MNIST 학습 분할) 를 검사하고 ``cfg.subset`` 만큼 잘라 미니배치 공급기로.

    조건부 학습이면 레이블도 함께 넣는다 (이미지를 직접 주었다면 ``labels`` 도 주어야 한다).
    """
    if images is None:
        images, labels = fashion_mnist_arrays("train", cfg.data_dir)
    _check_images(images, unet_config)
    require(
        not cfg.conditional or labels is not None,
        "조건부 학습에는 이미지마다 레이블이 필요하다: Trainer(images=…, labels=…) / conditional training needs labels",
    )
    if cfg.subset:
        images = images[: cfg.subset]
        labels = None if labels is None else labels[: cfg.subset]
    return ImageBatches(
        images, cfg.batch_size, seed=cfg.seed, flip=cfg.flip, labels=labels if cfg.conditional else None
    )


def parameter_groups(model: nn.Module, label_lr_mult: float) -> list[dict[str, Any]]:
    """옵티마이저의 매개변수 묶음. 조건 없는 모델은 한 묶음(예전 그대로), 조건부 모델은 레이블 임베딩 표를 따로 둔다.

    레이블 임베딩 e(y) 는 0 에서 시작한다. Adam 은 그래디언트의 크기와 상관없이 한 스텝에 가중치를 대략 학습률만큼
    움직이므로, 잡음 섞인 그래디언트로 0 에서 c(t) 의 크기(책의 모델에서 ‖c(t)‖ ≈ 6)까지 자라는 데 오래 걸린다:
    학습률 5e-4 로 책의 모델에서 이어 학습했을 때 500 스텝 뒤 행의 노름이 0.15 였고 분류기가 본 클래스 정확도는
    우연 수준(14%)이었다. 그래서 이 표만 학습률에 ``label_lr_mult`` 를 곱해 배운다 (새로 붙인 층에 더 큰 학습률을 주는
    전이 학습의 흔한 방법). 묶음의 ``lr_mult`` 를 ``Trainer.train_step`` 이 학습률에 곱한다.
    """
    named = list(model.named_parameters())
    label = [p for n, p in named if n.startswith("class_emb.")]
    rest = [p for n, p in named if not n.startswith("class_emb.")]
    if not label:
        return [{"params": rest}]
    return [{"params": rest}, {"params": label, "lr_mult": label_lr_mult}]


def conditional_unet_config(cfg: TrainConfig, unet_config: UnetConfig) -> UnetConfig:
    """``cfg.conditional`` 이면 레이블을 받는 U-Net 설정 (``num_classes`` 를 채운다), 아니면 그대로."""
    if cfg.conditional and unet_config.num_classes is None:
        return replace(unet_config, num_classes=NUM_CLASSES)
    require(
        cfg.conditional or unet_config.num_classes is None,
        "레이블을 받는 U-Net 설정(num_classes)은 조건부 학습(--conditional)과 함께 쓴다 / "
        "a U-Net config with num_classes needs conditional=True (--conditional)",
    )
    return unet_config


def _progress_bar(total: int | None, initial: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", dynamic_ncols=True, mininterval=2.0)


def record_loss(history: list[list[float]], window: list[float], partial: bool, step: int) -> float:
    """손실 창 ``window`` 의 평균을 ``[step, 평균]`` 으로 ``history`` 에 더하고 그 평균을 돌려준다.

    ``partial`` 은 ``history`` 의 마지막 항목이 창을 다 채우지 못한 '중간 기록'인가이다 (``log_every`` 의 배수가
    아닌 마지막 스텝). 그 기록은 창을 비우지 않고 남기므로, 이어 학습하면 여기서 그 기록을 지우고 같은 창으로
    계속해 한 번에 학습한 기록과 같아진다.
    """
    mean = sum(window) / len(window)
    if partial:
        history.pop()
    history.append([step, round(mean, 6)])
    return mean


def _prepare_out_dir(trainer: Trainer, total: int) -> None:
    """출력 디렉터리를 만들고, 죽은 프로세스가 남긴 임시 파일을 치우고, 무엇을 학습하는지 한 줄로 알린다."""
    cfg = trainer.cfg
    target = total if trainer.budget is None else f"({cfg.time_budget:g} min)"  # 시간 예산이면 스텝 수는 재며 정한다
    trainer.out_dir.mkdir(parents=True, exist_ok=True)
    for stale in clean_stale_temp_files(trainer.checkpoint_path):
        trainer._info(f"죽은 프로세스가 남긴 임시 파일을 지웠다 / removed stale temp file {stale}")
    trainer._info(
        f"[ddpm-ko] device={trainer.device} precision={trainer.precision} processes={trainer.world} "
        f"params={trainer.model.num_parameters() / 1e6:.2f}M global_batch={cfg.batch_size} "
        f"(per process {cfg.batch_size // trainer.world}) lr={cfg.lr} steps {trainer.step}->{target} out={trainer.out_dir}"
    )


def _reached_target(trainer: Trainer) -> str:
    """목표에 이르러 끝난 까닭: 시간 예산을 다 썼으면 ``time_budget``, 아니면 ``max_steps`` 나 ``epochs``."""
    if trainer.budget is not None and trainer.budget.reached:
        return "time_budget"
    return "max_steps" if trainer.cfg.max_steps is not None else "epochs"


def save_sample_grid(trainer: Trainer) -> Path:
    """학습 중 살펴보기: EMA 모델로 DDIM 격자를 그려 ``out_dir/samples/step_XXXXXXX.png`` 에 저장한다."""
    from .viz import save_grid

    cfg, c = trainer.cfg, trainer.unet_config
    shape = (cfg.sample_count, c.channels, c.image_size, c.image_size)
    g = torch.Generator().manual_seed(cfg.seed + 12345)
    # 조건부 모델이면 행마다 클래스 0, 1, …, K−1 을 돌아가며 기본 가이던스로 그린다
    cond = (
        {"labels": torch.arange(cfg.sample_count) % c.num_classes, "guidance": DEFAULT_GUIDANCE}
        if c.num_classes
        else {}
    )
    x = trainer.diffusion.sample(
        trainer.ema.model, shape, "ddim", steps=cfg.sample_steps, generator=g, device=trainer.device, **cond
    )
    return save_grid(x, trainer.out_dir / "samples" / f"step_{trainer.step:07d}.png", scale=2)


class Trainer:
    """한 번의 학습 실행. ``Trainer(...).run()`` 또는 함수 ``train(...)`` 으로 쓴다."""

    def __init__(
        self,
        unet_config: UnetConfig | None = None,
        config: TrainConfig | None = None,
        resume: str | os.PathLike | None = None,
        images=None,
        log: Callable[[str], None] | None = None,
        labels=None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.rank, self.world, local_rank = distributed.dist_info()
        self.is_main = self.rank == 0
        self._log = log or (lambda msg: print(msg, flush=True))
        resume_tensors: dict[str, torch.Tensor] | None = None
        resume_meta: dict[str, Any] | None = None
        if resume is not None:
            resume, resume_tensors, resume_meta = open_resume_checkpoint(resume)
            if config is None:
                config = resume_config(resume, meta=resume_meta)
        self.cfg = cfg = config or TrainConfig()
        if resume_meta is not None:
            unet_config = adopt_checkpoint_config(cfg, unet_config, resume_meta, resume, self._info)
        self.unet_config = conditional_unet_config(cfg, unet_config or UnetConfig())

        self._owns_process_group, cfg.device = distributed.init_process_group(
            self.world, local_rank, cfg.batch_size, cfg.device
        )
        self.device = pick_device(cfg.device)
        if self.device.type == "cpu":
            tune_cpu(cfg.num_threads)
        # CUDA 에서는 bf16 이 되면 bf16, 아니면 fp16 + 그래디언트 스케일러. CPU 는 fp32 그대로.
        self.precision = resolve_precision(cfg.precision, self.device.type)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

        torch.manual_seed(cfg.seed)
        self.model = Unet(self.unet_config).to(self.device)
        #: --init-from 의 출발점 요약 (체크포인트의 init_from_model; 이어 학습이면 체크포인트에서 되살린다)
        self.init_from_model: dict[str, Any] | None = None
        if cfg.init_from and resume is None:
            self.init_from_model = load_initial_weights(self.model, cfg.init_from, self._info)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.diffusion = GaussianDiffusion.from_schedule(
            cfg.schedule,
            cfg.timesteps,
            prediction_type=cfg.prediction_type,
            loss_type=cfg.loss_type,
            min_snr_gamma=cfg.min_snr_gamma,
            timestep_sampling=cfg.timestep_sampling,
        ).to(self.device)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, cfg.label_lr_mult),
            lr=cfg.lr,
            betas=cfg.adam_betas,
            weight_decay=cfg.weight_decay,
        )
        # 노이즈와 타임스텝 t 를 뽑는 전용 생성기 (CPU). 모든 프로세스가 같은 전역 노이즈를 만든다.
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1)

        self.batches = training_batches(images, cfg, self.unet_config, labels)
        # 시간 예산: max_steps·epochs 가 있으면 그 스텝 수가 상한이고, 학습률·EMA 도 둘 가운데 작은 쪽에 맞춘다
        self.clock = clock
        self.budget = TimeBudget.from_config(cfg, cap=step_target(cfg, self.batches.batches_per_epoch))
        self.step = self.epoch = self.batch_index = 0
        self.history: list[list[float]] = []
        # 아직 기록(history)에 들어가지 않은 손실들. 체크포인트에 함께 저장해야 이어 학습한 기록이 같다.
        self.loss_window: list[float] = []
        self.history_partial = False  # history 의 마지막 항목이 창을 다 채우지 못한 중간 기록인가
        self.wall_time = 0.0  # 학습 고리에 쓴 시간(초), clock 으로 잰다. 이어 학습이면 체크포인트 값부터
        # 학습이 끝난 까닭과 목표 스텝 (run 이 정한다; 그 전의 체크포인트는 "in_progress")
        self.end: dict[str, Any] | None = None
        self.target_steps: int | None = None
        # 마지막으로 저장한(또는 이어 받은) 정상 체크포인트와 그 스텝
        self.last_good: tuple[Path, int] | None = None
        self._last_batch: tuple[torch.Tensor, ...] | None = None
        self.env = environment_info(self.device)
        if resume_tensors is not None and resume_meta is not None:
            restore_training_state(self, resume_tensors, resume_meta, str(resume))
            self._info(
                f"이어 학습 / resumed from {resume} at step {self.step} (epoch {self.epoch}, batch {self.batch_index})"
            )
        self.ddp: nn.Module = distributed.wrap_model(self.model, self.device, self.world)

    def _info(self, msg: str) -> None:
        if self.is_main:
            self._log(msg)

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.out_dir)

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.safetensors"

    def total_steps(self) -> int:
        """목표 스텝 (``step_target``). 시간 예산이 있으면 예산이 정하고 (추정) ``max_steps``·``epochs`` 는 상한이다."""
        if self.budget is None:
            return step_target(self.cfg, self.batches.batches_per_epoch)
        return self.budget.target(self.step)  # 상한(max_steps·epochs)은 예산이 만들 때 받아 두었다

    def lr_at(self, step: int) -> float:
        """선형 워밍업 후 일정한 학습률 (모듈의 ``lr_at``). 시간 예산이 있으면 예산 끝까지 코사인으로 줄인다."""
        warm = lr_at(step, self.cfg.lr, self.cfg.warmup_steps)
        return warm if self.budget is None else self.budget.lr_at(step, warm, self.cfg.lr)

    # ------------------------------------------------------------------ 체크포인트
    def save(self, path: str | os.PathLike | None = None, extra_meta: dict[str, Any] | None = None) -> Path | None:
        """체크포인트를 원자적으로 저장한다 (분산 학습이면 rank 0 만)."""
        if not self.is_main:
            return None
        tensors, meta = checkpoint_contents(self)
        saved = save_checkpoint(path or self.checkpoint_path, tensors, {**meta, **(extra_meta or {})})
        self.last_good = (saved, self.step)
        return saved

    def checkpoint(self) -> Path | None:
        """가중치를 검사하고 (분산 학습이면 프로세스끼리 가중치 지문을 맞춰 본 뒤) 저장한다.

        모든 프로세스가 함께 불러야 한다. 파일은 rank 0 만 쓴다.
        """
        last = self._last_batch
        loss_on_last_batch = (lambda: self._loss(self.model, *last)) if last is not None else None
        check_weights(self.model, loss_on_last_batch, self.step, self.last_good, self.world, self.device)
        ranks = distributed.rank_fingerprints(self.model, self.world)
        if not ranks.get("ranks_in_sync", True):
            self._info(
                f"경고: 프로세스마다 가중치가 다르다 / warning: weights differ between ranks at step {self.step}"
            )
        saved = self.save(extra_meta={"distributed": ranks})
        self.last_good = (self.checkpoint_path, self.step)  # rank 0 이 아닌 프로세스의 오류 메시지도 맞게
        return saved

    # ------------------------------------------------------------------ 학습
    def _loss(
        self, model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, labels=None
    ) -> torch.Tensor:
        """식 (ch7-eq-lsimple) 의 손실 (``cfg.loss_type``), 학습 정밀도의 autocast 안에서."""
        with autocast_for(self.precision, self.device.type):
            return self.diffusion.training_loss(model, x0, t, noise, labels=labels)

    def train_step(self, x0: torch.Tensor, labels: torch.Tensor | None = None) -> float:
        """전역 배치 ``x0`` (조건부 학습이면 그 레이블 ``labels``) 로 한 스텝 학습하고 (전역) 손실을 돌려준다."""
        cfg = self.cfg
        t = self.diffusion.sample_timesteps(x0.shape[0], "cpu", self.noise_gen)
        noise = torch.randn(x0.shape, generator=self.noise_gen)
        if labels is not None:  # 확률 p_uncond 로 ∅ (식 ch11-eq-drop)
            labels = drop_labels(labels, cfg.p_uncond, self.unet_config.num_classes, self.noise_gen)
        self._last_batch = None
        x0, t, noise, *y = distributed.shard(
            self.rank, self.world, x0, t, noise, *([labels] if labels is not None else [])
        )
        y = [v.to(self.device) for v in y]
        mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
        x0 = x0.to(self.device).contiguous(memory_format=mf)
        noise = noise.to(self.device).contiguous(memory_format=mf)
        t = t.to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step) * group.get("lr_mult", 1.0)
        self.ddp.train()
        self.optimizer.zero_grad(set_to_none=True)
        n = x0.shape[0]
        size = min(cfg.micro_batch or n, n)
        starts = range(0, n, size)
        loss_sum = torch.zeros((), device=self.device)
        for i, s0 in enumerate(starts):
            sl = slice(s0, s0 + size)
            # 마지막 조각에서만 프로세스 사이 그래디언트 평균(all-reduce)을 한다
            with nullcontext() if i == len(starts) - 1 or self.world == 1 else self.ddp.no_sync():
                # 조각의 평균 손실에 조각이 차지하는 몫을 곱해 더하면 배치 전체의 평균 손실과 그 그래디언트가 된다
                loss = self._loss(self.ddp, x0[sl], t[sl], noise[sl], *(v[sl] for v in y)) * (x0[sl].shape[0] / n)
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_sum += loss.detach()
        value = float(distributed.mean_over_ranks(loss_sum, self.world))
        # 모든 프로세스가 같은 (평균) 값을 보므로 함께 멈춘다. 갱신 전이라 가중치는 그대로다
        check_loss(value, self.step + 1, self.last_good)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # 클리핑은 원래 크기의 그래디언트에
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            # fp16 스케일러는 Inf 그래디언트를 만나면 그 스텝을 건너뛰고 배율을 줄인다 (발산이 아니다)
            if self.scaler is None:
                check_grad_norm(norm, self.step + 1, self.last_good)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self._last_batch = (x0, t, noise, *y)
        self.ema.update(self.model)
        self.step += 1
        self.batch_index += 1
        if self.batch_index >= self.batches.batches_per_epoch:
            self.epoch, self.batch_index = self.epoch + 1, 0
        return value

    def _end(self, reason: str | None = None, **extra: Any) -> dict[str, Any]:
        """``end`` 항목: 이 시점까지 학습한 스텝과 끝난 까닭 (기본은 목표에 이름: ``_reached_target``)."""
        reason = reason or _reached_target(self)
        return {"step": self.step, "reason": reason, **extra, "target_steps": self.target_steps}

    def run(self) -> dict[str, Any]:
        """``total_steps()`` 까지 학습한다. 결과 사전 (마지막 체크포인트 경로, 손실 기록, ``end`` …) 을 돌려준다.

        한 프로세스 학습에서 SIGINT·SIGTERM 을 받으면 그 스텝을 마치고 체크포인트를 쓴 뒤 멈춘다.
        그때 ``end["reason"]`` 은 ``"signal"`` 이다 (모듈 설명을 보라).
        """
        cfg = self.cfg
        total = self.total_steps() if self.budget is None else self.budget.start(self)  # 시간 예산: 남은 시간 알림
        self.target_steps, self.end = total, None
        if self.is_main:
            _prepare_out_dir(self, total)
        pbar = _progress_bar(None if self.budget else total, self.step) if cfg.progress and self.is_main else None
        window = self.loss_window
        last_saved = None
        t_start = self.clock()
        stop = StopOnSignal(enabled=self.world == 1)
        stop.install()
        try:
            while self.step < total:
                x0 = self.batches.batch(self.epoch, self.batch_index)
                y = self.batches.batch_labels(self.epoch, self.batch_index) if cfg.conditional else None
                value = self.train_step(x0, y)
                window.append(value)
                now = self.clock()
                self.wall_time += now - t_start
                t_start = now
                total = total if self.budget is None else self.budget.after_step(self)  # 예산에 이르면 목표 = 지금
                if pbar is not None:
                    pbar.update(1)
                if self.step % cfg.log_every == 0 or self.step == total:
                    mean = record_loss(self.history, window, self.history_partial, self.step)
                    self.history_partial = self.step % cfg.log_every != 0
                    if not self.history_partial:
                        window.clear()
                    if pbar is not None:
                        pbar.set_postfix(loss=f"{mean:.4f}")
                    else:
                        self._info(f"step {self.step}/{total} loss {mean:.4f} ({self.wall_time:.0f}s)")
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.is_main:
                    save_sample_grid(self)
                if self.step == total:
                    self.end = self._end()
                if self.step % cfg.checkpoint_every == 0 or self.step == total:
                    last_saved = self.checkpoint() or last_saved
                    if pbar is None:
                        self._info(f"checkpoint step {self.step} -> {last_saved}")
                if stop.signum is not None and self.step < total:
                    break
        finally:
            stop.uninstall()
            if pbar is not None:
                pbar.close()
        if stop.signum is not None and self.step < total:
            name = signal.Signals(stop.signum).name
            self.end = self._end("signal", signal=name)
            last_saved = self.checkpoint() or last_saved
            self._info(
                f"{name} 를 받아 {self.step} 스텝에서 멈췄다 / stopped by {name} at step {self.step} of {total}; "
                f"checkpoint {last_saved}"
            )
        elif self.end is None:  # 이미 목표에 이른 체크포인트를 이어 받았다
            self.end = self._end()
        distributed.finish(self.world, self._owns_process_group)
        return {
            "checkpoint": str(last_saved or self.checkpoint_path),
            "step": self.step,
            "loss_history": self.history,
            "wall_time_s": self.wall_time,
            "end": self.end,
        }


def train(
    unet_config: UnetConfig | None = None,
    config: TrainConfig | None = None,
    resume: str | os.PathLike | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """학습을 한 번 실행한다. ``Trainer(unet_config, config, resume, **kwargs).run()`` 과 같다."""
    return Trainer(unet_config, config, resume, **kwargs).run()
