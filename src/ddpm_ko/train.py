"""학습 루프: AdamW, 학습률 워밍업, EMA, 그래디언트 클리핑, 체크포인트와 이어 학습, 분산 학습.

한 단계는 DDPM 알고리즘 1 그대로다: 데이터에서 x_0, 무작위 t, ε ~ N(0, I) 를 뽑아
x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε 을 **한 번에** 만들고, ‖ε − ε_θ(x_t, t)‖² 를 줄인다.
역방향 사슬(t = T → 0)은 학습 중에 한 번도 돌리지 않는다.

이어 학습이 원래 학습과 같은 손실 곡선을 그리도록, 체크포인트에 옵티마이저·EMA·난수
생성기 상태와 데이터 순서(에폭, 에폭 안의 배치 번호), 아직 기록하지 않은 손실까지 모두 저장한다.
손실이나 갱신한 가중치가 NaN/Inf 가 되면 몇 번째 단계인지 알리고 멈추며, 마지막 정상 체크포인트는
덮어쓰지 않는다. ``torchrun --nproc_per_node N`` 아래에서는 DistributedDataParallel 로 돌고,
기록과 파일 쓰기는 rank 0 만 한다.

체크포인트의 ``end`` 항목은 그 파일이 학습의 어느 시점인지 밝힌다: ``{"step": 학습한 단계, "reason": …,
"target_steps": 목표 단계}``. ``reason`` 은 ``max_steps``·``epochs`` (목표에 이르러 끝남), ``signal`` (SIGINT·SIGTERM 을
받아 그 단계를 마치고 멈춤, 한 프로세스 학습만), ``in_progress`` (학습 도중의 주기적 저장: 그 뒤 프로세스가
강제로 죽었다면 이 값이 남는다). ``train.max_steps`` 는 요청한 목표 그대로 두므로 ``--resume`` 은 그 목표까지 잇는다.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import (_sub_state, clean_stale_temp_files, load_state_checked, optimizer_state_from_tensors,
                         optimizer_state_to_tensors, read_checkpoint, resolve_checkpoint_path, save_checkpoint)
from .data import ImageBatches, fashion_mnist_arrays
from .diffusion import LOSS_TYPES, PREDICTION_TYPES, GaussianDiffusion
from .ema import EMA
from .errors import CheckpointError, TrainingDivergedError
from .schedules import SCHEDULES
from .unet import Unet, UnetConfig
from .utils import environment_info, pick_device, tune_cpu

__all__ = ["TrainConfig", "train", "Trainer", "resume_config", "DATA_ORDER_KEYS"]

#: 데이터 순서(에폭마다의 섞기, 좌우 반전, 배치 경계)를 정하는 설정. 이어 학습에서 바꾸면 원래 곡선을 잇지 못한다.
DATA_ORDER_KEYS = ("seed", "batch_size", "subset", "flip", "data_dir")
#: 이어 학습에서 체크포인트 값을 물려받지 않는 설정: 실행하는 기계와 출력 위치에 딸린 것이다.
_MACHINE_KEYS = ("out_dir", "device", "num_threads", "progress", "precision")
#: 학습 정밀도. auto 는 장치를 보고 고른다 (``resolve_precision``).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(requested: str, device_type: str, bf16_supported: Callable[[], bool] | None = None) -> str:
    """요청한 정밀도(auto|fp32|bf16|fp16)와 장치로 실제로 쓸 정밀도를 정한다.

    - CPU·MPS: 언제나 fp32 (자동 혼합 정밀도를 쓰지 않는다). bf16·fp16 을 요청하면 ``ValueError``.
    - CUDA, auto: GPU 가 bf16 을 지원하면(Ampere 이상) bf16, 아니면(예: Colab 의 T4) fp16 + 그래디언트 스케일러.
    - CUDA, bf16 을 요청했는데 GPU 가 지원하지 않으면 ``ValueError`` (fp16 을 쓰라고 알린다).

    ``bf16_supported`` 는 GPU 의 능력을 묻는 함수다 (기본 ``torch.cuda.is_bf16_supported``; 검사에서 바꿔 넣는다).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"알 수 없는 정밀도 '{requested}' / unknown precision: choose one of {list(PRECISIONS)}")
    if device_type != "cuda":
        if requested in ("bf16", "fp16"):
            raise ValueError(f"--precision {requested} 는 CUDA 에서만 쓴다 / {requested} autocast is only used on CUDA "
                             f"(device: {device_type}); use --precision auto or fp32")
        return "fp32"
    if requested in ("auto", "bf16"):
        supported = (bf16_supported or torch.cuda.is_bf16_supported)()
        if requested == "auto":
            return "bf16" if supported else "fp16"
        if not supported:
            raise ValueError("이 GPU 는 bf16 을 지원하지 않는다: --precision fp16 (또는 auto) 을 써라 / "
                             "this GPU has no bf16 support: use --precision fp16 (or auto)")
    return requested


def autocast_for(precision: str, device_type: str) -> ContextManager:
    """정밀도에 맞는 자동 혼합 정밀도(autocast) 문맥. fp32 면 아무것도 하지 않는다."""
    if precision == "fp32":
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type, dtype=dtype)


@dataclass
class TrainConfig:
    """학습 설정. 기본값은 2코어 CPU 에서 짧은 시간에 좋은 샘플에 이르도록 고른 값이다.

    ``batch_size`` 와 ``lr`` 은 **전역** 값이다: 분산 학습이면 프로세스마다 ``batch_size / N``
    장을 처리하고, 그래디언트를 평균해 한 프로세스에서 전역 배치로 학습한 것과 같게 한다.

    ``micro_batch`` 를 주면 (프로세스마다의) 배치를 그 크기 이하의 조각으로 나눠 순전파·역전파하고 그래디언트를
    모은 뒤 한 번만 갱신한다 (그래디언트 누적). 수학적으로 같은 단계이고 (GroupNorm 은 배치 통계를 쓰지 않는다)
    최대 메모리가 조각 크기에 비례해 준다. 그 대신 조각마다 드는 고정 비용만큼 조금 느려진다.
    """

    out_dir: str = "runs/default"
    data_dir: str | None = None
    epochs: float | None = None
    max_steps: int | None = None
    batch_size: int = 64
    micro_batch: int | None = None
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.99)
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    schedule: str = "linear"
    timesteps: int = 1000
    prediction_type: str = "eps"
    loss_type: str = "l2"
    seed: int = 0
    checkpoint_every: int = 500
    sample_every: int = 0
    sample_count: int = 64
    sample_steps: int = 50
    log_every: int = 50
    flip: bool = True
    subset: int | None = None
    device: str | None = None
    num_threads: int | None = None
    channels_last: bool = True
    progress: bool = True
    precision: str = "auto"

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        need(self.schedule in SCHEDULES, f"알 수 없는 스케줄 '{self.schedule}' / unknown schedule: choose one of {list(SCHEDULES)}")
        need(self.prediction_type in PREDICTION_TYPES, f"알 수 없는 예측 대상 '{self.prediction_type}' / unknown prediction type: {PREDICTION_TYPES}")
        need(self.loss_type in LOSS_TYPES, f"알 수 없는 손실 '{self.loss_type}' / unknown loss: choose one of {LOSS_TYPES}")
        need(self.timesteps >= 2, f"timesteps 는 2 이상 / timesteps must be >= 2, got {self.timesteps}")
        need(self.batch_size >= 1, f"batch_size 는 1 이상 / batch_size must be >= 1, got {self.batch_size}")
        need(self.micro_batch is None or self.micro_batch >= 1,
             f"micro_batch 는 1 이상 / micro_batch must be >= 1, got {self.micro_batch}")
        need(self.lr > 0, f"lr 은 양수 / lr must be > 0, got {self.lr}")
        need(self.max_steps is None or self.max_steps >= 1, f"max_steps 는 1 이상 / max_steps must be >= 1, got {self.max_steps}")
        need(self.epochs is None or self.epochs > 0, f"epochs 는 양수 / epochs must be > 0, got {self.epochs}")
        need(self.checkpoint_every >= 1, f"checkpoint_every 는 1 이상 / checkpoint_every must be >= 1, got {self.checkpoint_every}")
        need(self.sample_every >= 0, "sample_every 는 0 이상 / sample_every must be >= 0")
        need(self.sample_count >= 1 and self.sample_steps >= 1, "sample_count, sample_steps 는 1 이상 / must be >= 1")
        need(self.sample_steps <= self.timesteps, f"sample_steps({self.sample_steps}) 는 T({self.timesteps}) 이하 / cannot exceed timesteps")
        need(self.log_every >= 1, "log_every 는 1 이상 / log_every must be >= 1")
        need(self.subset is None or self.subset >= 1, "subset 은 1 이상 / subset must be >= 1")
        need(0.0 <= self.ema_decay < 1.0, f"ema_decay 는 [0, 1) / ema_decay must be in [0, 1), got {self.ema_decay}")
        need(self.warmup_steps >= 0, "warmup_steps 는 0 이상 / warmup_steps must be >= 0")
        need(self.grad_clip >= 0, "grad_clip 은 0 이상 / grad_clip must be >= 0")
        need(self.precision in PRECISIONS, f"알 수 없는 정밀도 '{self.precision}' / unknown precision: choose one of {list(PRECISIONS)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def diffusion_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "timesteps": self.timesteps,
                "prediction_type": self.prediction_type, "loss_type": self.loss_type}


def _dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank). torchrun 이 정한 환경 변수를 읽는다."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def resume_config(resume: str | os.PathLike, overrides: dict[str, Any] | None = None,
                  meta: dict[str, Any] | None = None) -> TrainConfig:
    """이어 학습에 쓸 설정: 체크포인트에 저장된 학습 설정에 ``overrides`` 를 덮어쓴다.

    그래서 ``ddpm-ko train --resume PATH`` 만 쳐도 원래와 같은 배치 크기·시드·학습률로 이어 간다.
    장치·스레드 수·진행 막대는 물려받지 않고, ``out_dir`` 은 따로 주지 않으면 체크포인트가 있는
    디렉터리다. ``max_steps`` 나 ``epochs`` 중 하나를 주면 다른 하나는 지운다.
    """
    path = resolve_checkpoint_path(resume)
    if meta is None:
        _, meta = read_checkpoint(path, prefixes=())
    saved = meta.get("train")
    if not isinstance(saved, dict):
        raise CheckpointError(f"체크포인트에 학습 설정이 없다 / no training config in checkpoint: {path}")
    base = {k: v for k, v in saved.items() if k not in _MACHINE_KEYS}
    base["out_dir"] = str(path.parent)
    overrides = dict(overrides or {})
    if overrides.get("max_steps") is not None:
        base["epochs"] = None
    if overrides.get("epochs") is not None:
        base["max_steps"] = None
    try:
        return TrainConfig.from_dict({**base, **overrides})
    except TypeError as e:
        raise CheckpointError(f"체크포인트의 학습 설정이 잘못되었다 / invalid training config in checkpoint {path}: {e}") from e


def _check_images(images: Any, config: UnetConfig) -> None:
    """학습 이미지가 U-Net 설정과 맞는 uint8 (N, H, W) 또는 (N, C, H, W) 배열인지 검사한다."""
    shape = tuple(getattr(images, "shape", ()))
    dtype = str(getattr(images, "dtype", type(images).__name__)).replace("torch.", "")
    want = f"(N, {config.image_size}, {config.image_size})" if config.channels == 1 else \
        f"(N, {config.channels}, {config.image_size}, {config.image_size})"
    ok_shape = (len(shape) == 3 and config.channels == 1 and shape[1:] == (config.image_size,) * 2) or \
        (len(shape) == 4 and shape[1:] == (config.channels, config.image_size, config.image_size))
    if dtype != "uint8" or not ok_shape:
        raise ValueError(
            f"학습 이미지는 {want} uint8 배열이어야 한다 (UnetConfig 의 image_size={config.image_size}, "
            f"channels={config.channels}) / training images must be a uint8 array of shape {want}, got {dtype} {shape}"
        )


class _StopOnSignal:
    """학습 고리 동안 SIGINT·SIGTERM 을 받으면 표시만 해 두어, 그 단계를 마치고 저장한 뒤 멈추게 한다.

    처리기는 표시만 하고 원래 처리기를 되돌려 놓으므로, 두 번째 신호는 예전처럼 곧바로 멈춘다 (Ctrl-C 면
    ``KeyboardInterrupt``). 분산 학습에서는 모든 프로세스가 같은 단계에서 멈춰야 하므로 쓰지 않는다.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        self.uninstall()

    def install(self) -> None:
        if self.enabled:
            for name in ("SIGINT", "SIGTERM"):
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """원래 처리기로 되돌린다."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}


class Trainer:
    """한 번의 학습 실행. ``Trainer(...).run()`` 또는 함수 ``train(...)`` 으로 쓴다."""

    def __init__(self, unet_config: UnetConfig | None = None, config: TrainConfig | None = None,
                 resume: str | os.PathLike | None = None, images=None, log: Callable[[str], None] | None = None) -> None:
        self.rank, self.world, local_rank = _dist_info()
        self.is_main = self.rank == 0
        self._log = log or (lambda msg: print(msg, flush=True))
        resume_tensors: dict[str, torch.Tensor] | None = None
        resume_meta: dict[str, Any] | None = None
        if resume is not None:
            resume = resolve_checkpoint_path(resume)
            resume_tensors, resume_meta = read_checkpoint(resume)
            if "train_state" not in resume_meta or not any(k.startswith("optim.") for k in resume_tensors):
                raise CheckpointError(
                    f"이어 학습할 수 없는 체크포인트다 (EMA 만 든 배포용 파일) / {resume} has no optimizer state: "
                    "resume from a training checkpoint (runs/.../checkpoint.safetensors)"
                )
            if config is None:
                config = resume_config(resume, meta=resume_meta)
        self.cfg = config or TrainConfig()
        if resume_meta is not None:
            try:
                given_unet = unet_config
                unet_config = UnetConfig.from_dict(resume_meta["unet"])
                saved = resume_meta["train"]
                for key in ("schedule", "timesteps", "prediction_type", "loss_type"):
                    if getattr(self.cfg, key) != saved[key]:
                        self._info(f"이어 학습: {key} 는 체크포인트 값 {saved[key]!r} 을 쓴다 / using checkpoint's {key}")
                        setattr(self.cfg, key, saved[key])
                changed = [k for k in DATA_ORDER_KEYS if k in saved and getattr(self.cfg, k) != saved[k]]
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise CheckpointError(f"체크포인트의 설정이 잘못되었다 / invalid config in checkpoint {resume}: "
                                      f"{type(e).__name__}: {e}") from e
            if given_unet is not None and given_unet != unet_config:
                self._info("이어 학습: 신경망 설정은 체크포인트 것을 쓴다 / using the checkpoint's network config")
            if changed:
                self._info(f"경고: 이어 학습에서 {changed} 를 바꾸어 데이터 순서가 원래 학습과 달라진다 / "
                           f"warning: changing {changed} on resume changes the data order")
        self.unet_config = unet_config or UnetConfig()
        cfg = self.cfg
        self._owns_process_group = False

        if self.world > 1:
            if cfg.batch_size % self.world:
                raise ValueError(f"전역 batch_size {cfg.batch_size} 가 프로세스 수 {self.world} 로 나누어지지 않는다 / "
                                 "global batch size must be divisible by the number of processes")
            if not dist.is_initialized():
                # --device cpu 면 GPU 가 있어도 gloo 로 CPU 프로세스끼리 그래디언트를 평균한다
                backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
                dist.init_process_group(backend)
                self._owns_process_group = True
            if torch.cuda.is_available() and cfg.device != "cpu":
                torch.cuda.set_device(local_rank)
                cfg.device = f"cuda:{local_rank}"
        self.device = pick_device(cfg.device)
        if self.device.type == "cpu":
            tune_cpu(cfg.num_threads)
        # CUDA 에서는 bf16 이 되면 bf16, 아니면 fp16 + 그래디언트 스케일러. CPU 는 fp32 그대로.
        self.precision = resolve_precision(cfg.precision, self.device.type)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

        torch.manual_seed(cfg.seed)
        self.model = Unet(self.unet_config).to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.diffusion = GaussianDiffusion.from_schedule(cfg.schedule, cfg.timesteps, prediction_type=cfg.prediction_type,
                                                         loss_type=cfg.loss_type).to(self.device)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.adam_betas,
                                           weight_decay=cfg.weight_decay)
        # 노이즈와 시각 t 를 뽑는 전용 생성기 (CPU). 모든 프로세스가 같은 전역 노이즈를 만든다.
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1)

        if images is None:
            images, _ = fashion_mnist_arrays("train", cfg.data_dir)
        _check_images(images, self.unet_config)
        if cfg.subset:
            images = images[: cfg.subset]
        self.batches = ImageBatches(images, cfg.batch_size, seed=cfg.seed, flip=cfg.flip)
        self.step = 0
        self.epoch = 0
        self.batch_index = 0
        self.history: list[list[float]] = []
        # 아직 기록(history)에 들어가지 않은 손실들. 체크포인트에 함께 저장해야 이어 학습한 기록이 같다.
        self.loss_window: list[float] = []
        self.history_partial = False  # history 의 마지막 항목이 창을 다 채우지 못한 중간 기록인가
        self.wall_time = 0.0
        # 학습이 끝난 까닭 (run 이 끝날 때 정한다; 그 전의 체크포인트는 "in_progress")
        self.end: dict[str, Any] | None = None
        self._target_steps: int | None = None
        # 마지막으로 저장한(또는 이어 받은) 정상 체크포인트와 그 단계
        self.last_good: tuple[Path, int] | None = None
        self._last_batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.env = environment_info(self.device)
        if resume_tensors is not None and resume_meta is not None:
            self._restore(resume_tensors, resume_meta, str(resume))

        self.ddp: nn.Module = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # ------------------------------------------------------------------ 기록
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
        cfg = self.cfg
        if cfg.max_steps is not None:
            return cfg.max_steps
        epochs = cfg.epochs if cfg.epochs is not None else 1
        return max(1, int(math.ceil(epochs * self.batches.batches_per_epoch)))

    def lr_at(self, step: int) -> float:
        """선형 워밍업 후 일정한 학습률."""
        if self.cfg.warmup_steps and step < self.cfg.warmup_steps:
            return self.cfg.lr * (step + 1) / self.cfg.warmup_steps
        return self.cfg.lr

    # ------------------------------------------------------------------ 체크포인트
    def state_meta(self) -> dict[str, Any]:
        opt_tensors, opt_meta = optimizer_state_to_tensors(self.optimizer)
        self._opt_tensors = opt_tensors
        return {
            "unet": self.unet_config.to_dict(),
            "diffusion": self.cfg.diffusion_dict(),
            "train": self.cfg.to_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "train_state": {"epoch": self.epoch, "batch_index": self.batch_index, "world_size": self.world,
                            "loss_window": list(self.loss_window), "history_partial": self.history_partial},
            "optimizer": opt_meta,
            "loss_history": self.history,
            "end": self.end or {"step": self.step, "reason": "in_progress", "target_steps": self._target_steps},
            "wall_time_s": round(self.wall_time, 2),
            "environment": self.env,
            "precision": self.precision,
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "global_batch_size": self.cfg.batch_size,
            "seed": self.cfg.seed,
        }

    def save(self, path: str | os.PathLike | None = None, extra_meta: dict[str, Any] | None = None) -> Path | None:
        """체크포인트를 원자적으로 저장한다 (분산 학습이면 rank 0 만)."""
        if not self.is_main:
            return None
        meta = self.state_meta()
        meta.update(extra_meta or {})
        tensors: dict[str, torch.Tensor] = {}
        tensors.update({f"model.{k}": v for k, v in self.model.state_dict().items()})
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        tensors.update(self._opt_tensors)
        tensors["rng.noise"] = self.noise_gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        saved = save_checkpoint(path or self.checkpoint_path, tensors, meta)
        self.last_good = (saved, self.step)
        return saved

    def weights_fingerprint(self) -> str:
        """모델 가중치와 버퍼 바이트의 SHA-256. 분산 학습에서 모든 프로세스의 값이 같아야 한다."""
        h = hashlib.sha256()
        for name, v in sorted(self.model.state_dict().items()):
            h.update(name.encode("utf-8"))
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def _kept_message(self) -> tuple[str, str]:
        """발산을 알릴 때 덧붙일 (한국어, 영어) 안내: 마지막 정상 체크포인트는 어디에 있는가."""
        if self.last_good is None:
            return "아직 저장한 체크포인트는 없다", "no checkpoint has been written yet"
        path, step = self.last_good
        return (f"마지막 정상 체크포인트 {path} (단계 {step}) 는 그대로 두었으니 학습률을 낮춰 이어 학습하라",
                f"the last good checkpoint {path} (step {step}) was kept: lower --lr and resume from it")

    @torch.no_grad()
    def _check_weights_before_save(self) -> None:
        """저장하기 전에 방금 갱신한 가중치가 멀쩡한지 본다 (모든 프로세스가 함께 부른다).

        손실은 갱신 **전** 가중치로 계산하므로, 마지막 갱신이 가중치를 망가뜨렸는지는 손실 검사로
        알 수 없다 (학습률이 너무 크면 손실은 유한한데 가중치가 1e30 이 된다). 그래서 가중치가
        유한한지, 그리고 이번 단계의 배치(같은 t, 같은 ε)로 다시 잰 손실이 유한한지를 확인하고,
        아니면 체크포인트를 쓰지 않고 ``TrainingDivergedError`` 를 낸다. 순전파 한 번이므로 싸다.
        """
        bad = torch.zeros((), dtype=torch.float64)
        for p in self.model.parameters():
            if not bool(torch.isfinite(p).all()):
                bad += 1
                break
        value = float("nan")
        if not bad and self._last_batch is not None:
            x0, t, noise = self._last_batch
            with autocast_for(self.precision, self.device.type):
                loss = self.diffusion.training_loss(self.model, x0, t, noise)
            value = float(loss)
            if not math.isfinite(value):
                bad += 1
        if self.world > 1:
            bad = bad.to(self.device)
            dist.all_reduce(bad)
        if float(bad) > 0:
            ko, en = self._kept_message()
            raise TrainingDivergedError(
                f"{self.step} 단계의 갱신 뒤 가중치가 발산해 (같은 배치의 손실 {value}) 체크포인트를 쓰지 않았다; {ko} / "
                f"weights diverged after the update at step {self.step} (loss on the same batch: {value}), "
                f"checkpoint not written; {en}"
            )

    def checkpoint(self) -> Path | None:
        """가중치를 검사하고 (분산 학습이면 프로세스끼리 가중치 지문을 맞춰 본 뒤) 저장한다.

        모든 프로세스가 함께 불러야 한다. 파일은 rank 0 만 쓴다.
        """
        self._check_weights_before_save()
        extra: dict[str, Any] = {"distributed": {"world_size": self.world}}
        if self.world > 1:
            prints: list[Any] = [None] * self.world
            dist.all_gather_object(prints, self.weights_fingerprint())
            in_sync = len(set(prints)) == 1
            extra["distributed"].update(backend=str(dist.get_backend()), rank_weight_sha256=prints, ranks_in_sync=in_sync)
            if not in_sync:
                self._info(f"경고: 프로세스마다 가중치가 다르다 / warning: weights differ between ranks at step {self.step}")
        saved = self.save(extra_meta=extra)
        self.last_good = (self.checkpoint_path, self.step)  # rank 0 이 아닌 프로세스의 오류 메시지도 맞게
        return saved

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], source: str) -> None:
        load_state_checked(self.model, _sub_state(tensors, "model"), source)
        load_state_checked(self.ema, _sub_state(tensors, "ema"), source)
        if self.cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        opt_state = optimizer_state_from_tensors({k: v.to(self.device) if k.endswith(("exp_avg", "exp_avg_sq")) else v
                                                  for k, v in tensors.items() if k.startswith("optim.")}, meta["optimizer"])
        try:
            self.optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"옵티마이저 상태가 모델과 맞지 않는다 / optimizer state does not match the model: {e}") from e
        self.noise_gen.set_state(tensors["rng.noise"])
        torch.set_rng_state(tensors["rng.torch"])
        if self.scaler is not None and meta.get("grad_scaler"):
            self.scaler.load_state_dict(meta["grad_scaler"])
        try:
            ts = meta["train_state"]
            self.step = int(meta["step"])
            self.epoch, self.batch_index = int(ts["epoch"]), int(ts["batch_index"])
            self.loss_window = [float(v) for v in ts.get("loss_window", [])]
            self.history_partial = bool(ts.get("history_partial", False))
            self.history = [list(h) for h in meta.get("loss_history", [])]
            self.wall_time = float(meta.get("wall_time_s", 0.0))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"체크포인트의 학습 상태가 잘못되었다 / invalid training state in {source}: {e}") from e
        if self.batch_index >= self.batches.batches_per_epoch:
            raise CheckpointError(
                f"체크포인트의 배치 번호 {self.batch_index} 가 에폭당 배치 수 {self.batches.batches_per_epoch} 를 넘는다: "
                "batch_size 나 subset 을 원래 값으로 하라 / batch index out of range — resume with the original "
                "--batch-size and --subset"
            )
        self.last_good = (Path(source), self.step)
        self._info(f"이어 학습 / resumed from {source} at step {self.step} (epoch {self.epoch}, batch {self.batch_index})")

    # ------------------------------------------------------------------ 샘플 격자
    def save_samples(self) -> Path | None:
        """EMA 모델로 DDIM 격자를 그려 ``out_dir/samples/step_XXXXXXX.png`` 에 저장한다."""
        if not self.is_main:
            return None
        from .viz import save_grid

        cfg, c = self.cfg, self.unet_config
        g = torch.Generator().manual_seed(cfg.seed + 12345)
        x = self.diffusion.sample(self.ema.model, (cfg.sample_count, c.channels, c.image_size, c.image_size),
                                  sampler="ddim", steps=cfg.sample_steps, generator=g, device=self.device)
        return save_grid(x, self.out_dir / "samples" / f"step_{self.step:07d}.png", scale=2)

    # ------------------------------------------------------------------ 학습
    def train_step(self, x0: torch.Tensor) -> float:
        """전역 배치 ``x0`` 한 개로 한 단계 학습하고 (전역) 손실을 돌려준다."""
        cfg = self.cfg
        b = x0.shape[0]
        t = self.diffusion.sample_timesteps(b, "cpu", self.noise_gen)
        noise = torch.randn(x0.shape, generator=self.noise_gen)
        self._last_batch = None
        if self.world > 1:  # 전역 배치에서 내 몫만
            per = b // self.world
            sl = slice(self.rank * per, (self.rank + 1) * per)
            x0, t, noise = x0[sl], t[sl], noise[sl]
        mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
        x0 = x0.to(self.device).contiguous(memory_format=mf)
        noise = noise.to(self.device).contiguous(memory_format=mf)
        t = t.to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.ddp.train()
        self.optimizer.zero_grad(set_to_none=True)
        n = x0.shape[0]
        size = min(cfg.micro_batch or n, n)
        starts = range(0, n, size)
        loss_sum = torch.zeros((), device=self.device)
        for i, s0 in enumerate(starts):
            sl = slice(s0, s0 + size)
            # 마지막 조각에서만 프로세스 사이 그래디언트 평균(all-reduce)을 한다
            sync = nullcontext() if i == len(starts) - 1 or self.world == 1 else self.ddp.no_sync()
            with sync:
                with autocast_for(self.precision, self.device.type):
                    loss = self.diffusion.training_loss(self.ddp, x0[sl], t[sl], noise[sl])
                # 조각의 평균 손실에 조각이 차지하는 몫을 곱해 더하면 배치 전체의 평균 손실과 그 그래디언트가 된다
                loss = loss * (x0[sl].shape[0] / n)
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_sum += loss.detach()
        loss_value = loss_sum
        if self.world > 1:
            loss_value = loss_value.clone()
            dist.all_reduce(loss_value)
            loss_value /= self.world
        value = float(loss_value)
        if not math.isfinite(value):   # 모든 프로세스가 같은 (평균) 값을 보므로 함께 멈춘다. 갱신 전이라 가중치는 그대로다
            ko, en = self._kept_message()
            raise TrainingDivergedError(f"{self.step + 1} 단계에서 손실이 {value} 가 되었다; {ko} / "
                                        f"loss became {value} at step {self.step + 1}; {en}")
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)   # 클리핑은 원래 크기의 그래디언트에
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            # fp16 스케일러는 Inf 그래디언트를 만나면 그 단계를 건너뛰고 배율을 줄인다 (발산이 아니다)
            if not torch.isfinite(norm) and self.scaler is None:
                ko, en = self._kept_message()
                raise TrainingDivergedError(f"{self.step + 1} 단계에서 그래디언트가 발산했다; {ko} / "
                                            f"non-finite gradient at step {self.step + 1}; {en}")
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self._last_batch = (x0, t, noise)
        self.ema.update(self.model)
        self.step += 1
        self.batch_index += 1
        if self.batch_index >= self.batches.batches_per_epoch:
            self.epoch, self.batch_index = self.epoch + 1, 0
        return value

    def _end_reason(self) -> str:
        return "max_steps" if self.cfg.max_steps is not None else "epochs"

    def run(self) -> dict[str, Any]:
        """``total_steps()`` 까지 학습한다. 결과 사전 (마지막 체크포인트 경로, 손실 기록, ``end`` …) 을 돌려준다.

        한 프로세스 학습에서 SIGINT·SIGTERM 을 받으면 그 단계를 마치고 체크포인트를 쓴 뒤 멈춘다.
        그때 ``end["reason"]`` 은 ``"signal"`` 이다 (모듈 설명을 보라).
        """
        cfg = self.cfg
        total = self.total_steps()
        self._target_steps, self.end = total, None
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for stale in clean_stale_temp_files(self.checkpoint_path):
                self._info(f"죽은 프로세스가 남긴 임시 파일을 지웠다 / removed stale temp file {stale}")
            n_params = self.model.num_parameters()
            self._info(
                f"[ddpm-ko] device={self.device} precision={self.precision} processes={self.world} params={n_params / 1e6:.2f}M "
                f"global_batch={cfg.batch_size} (per process {cfg.batch_size // self.world}) lr={cfg.lr} "
                f"steps {self.step}->{total} out={self.out_dir}"
            )
        pbar = None
        if cfg.progress and self.is_main:
            from tqdm import tqdm

            pbar = tqdm(total=total, initial=self.step, desc="train", dynamic_ncols=True, mininterval=2.0)
        window = self.loss_window
        last_saved = None
        t_start = time.perf_counter()
        stop = _StopOnSignal(enabled=self.world == 1)
        stop.install()
        try:
            while self.step < total:
                x0 = self.batches.batch(self.epoch, self.batch_index)
                value = self.train_step(x0)
                window.append(value)
                now = time.perf_counter()
                self.wall_time += now - t_start
                t_start = now
                if pbar is not None:
                    pbar.update(1)
                if self.step % cfg.log_every == 0 or self.step == total:
                    mean = sum(window) / len(window)
                    if self.history_partial:  # 이전 실행이 끝에 남긴 중간 기록은 이번 기록이 대신한다
                        self.history.pop()
                    self.history.append([self.step, round(mean, 6)])
                    # log_every 의 배수가 아닌 마지막 단계의 기록은 '중간 기록'이다. 창을 비우지 않으므로
                    # 이어 학습하면 그 기록을 지우고 같은 창으로 계속해, 한 번에 학습한 기록과 같아진다.
                    self.history_partial = self.step % cfg.log_every != 0
                    if not self.history_partial:
                        window.clear()
                    if pbar is not None:
                        pbar.set_postfix(loss=f"{mean:.4f}")
                    else:
                        self._info(f"step {self.step}/{total} loss {mean:.4f} ({self.wall_time:.0f}s)")
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self.save_samples()
                if self.step == total:
                    self.end = {"step": self.step, "reason": self._end_reason(), "target_steps": total}
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
            self.end = {"step": self.step, "reason": "signal", "signal": name, "target_steps": total}
            last_saved = self.checkpoint() or last_saved
            self._info(f"{name} 를 받아 {self.step} 단계에서 멈췄다 / stopped by {name} at step {self.step} of {total}; "
                       f"checkpoint {last_saved}")
        elif self.end is None:  # 이미 목표에 이른 체크포인트를 이어 받았다
            self.end = {"step": self.step, "reason": self._end_reason(), "target_steps": total}
        if self.world > 1:
            dist.barrier()
            if self._owns_process_group:
                dist.destroy_process_group()
        return {"checkpoint": str(last_saved or self.checkpoint_path), "step": self.step,
                "loss_history": self.history, "wall_time_s": self.wall_time, "end": self.end}


def train(unet_config: UnetConfig | None = None, config: TrainConfig | None = None,
          resume: str | os.PathLike | None = None, **kwargs: Any) -> dict[str, Any]:
    """학습을 한 번 실행한다. ``Trainer(unet_config, config, resume, **kwargs).run()`` 과 같다."""
    return Trainer(unet_config, config, resume, **kwargs).run()

