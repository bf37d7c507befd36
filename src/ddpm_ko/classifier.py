"""생성한 이미지를 평가할 때 쓰는 작은 Fashion-MNIST 분류기 (특징 추출 신경망).

FID·KID 는 이미지를 그대로 비교하지 않고, 미리 학습한 신경망의 특징(feature) 공간에서 두 이미지 집합을
비교한다. 원래의 FID 는 ImageNet 으로 학습한 Inception-v3 를 쓰지만, 28×28 흑백 Fashion-MNIST 에는
맞지 않고 그 가중치를 오프라인으로 구할 수도 없다. 그래서 이 책은 Fashion-MNIST 로 직접 학습한 작은
합성곱 분류기의 끝에서 두 번째 층(128차원)을 특징으로 쓴다.

구조 (입력은 패키지 어디서나처럼 [−1, 1] 범위의 (N, 1, 28, 28)):

    [3×3 합성곱 → 배치 정규화 → ReLU → 2×2 최대 풀링] × 3   28 → 14 → 7 → 3
    펼치기 → Linear(4w·9 → 128)  ← 임베딩(embedding, ReLU 앞)
    ReLU → 드롭아웃 → Linear(128 → 10)  ← 로짓(logit)

``features(x)`` 는 임베딩을 학습 이미지에서 잰 차원별 평균·표준편차로 표준화한 값이다. 그래서 특징의
각 차원은 진짜 데이터에서 평균 0, 분산 1 쯤이고, KID 의 다항식 커널 (xᵀy/d + 1)³ 이 알맞은 크기에서 돈다.

가중치는 safetensors (+ JSON 사본) 로 저장하며, 불러올 때 피클을 쓰지 않는다.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import read_safetensors, write_safetensors
from .configs import dataclass_from_dict, require
from .errors import CheckpointError, TrainingDivergedError

__all__ = [
    "ClassifierConfig",
    "FashionClassifier",
    "save_classifier",
    "read_classifier",
    "train_classifier",
    "accuracy",
    "CLASSIFIER_FORMAT",
]

CLASSIFIER_FORMAT = "ddpm_ko-classifier/1"
STATS_IMAGES = 10_000  # 특징 표준화 상수를 잴 학습 이미지 수
_META_KEY = "ddpm_ko_classifier"


@dataclass
class ClassifierConfig:
    """분류기 설정.

    Attributes:
        width: 첫 합성곱의 채널 수 w. 세 단계의 채널은 w, 2w, 4w.
        feature_dim: 특징(끝에서 두 번째 층)의 차원.
        num_classes: 클래스 수 (Fashion-MNIST 는 10).
        dropout: 마지막 선형 층 앞의 드롭아웃 비율 (학습 때만 쓴다).
        image_size: 입력 한 변 (28).
    """

    width: int = 32
    feature_dim: int = 128
    num_classes: int = 10
    dropout: float = 0.3
    image_size: int = 28

    def __post_init__(self) -> None:
        require(
            self.width >= 1 and self.feature_dim >= 1 and self.num_classes >= 2,
            f"width, feature_dim 은 1 이상, num_classes 는 2 이상 / invalid classifier config: {asdict(self)}",
        )
        require(self.image_size >= 8, f"image_size 는 8 이상 / image_size must be >= 8, got {self.image_size}")
        require(0.0 <= self.dropout < 1.0, f"dropout 은 [0, 1) / dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        """사전에서 만든다. 모르는 항목은 이름을 들어 거부한다 (``ddpm_ko.configs.dataclass_from_dict``)."""
        return dataclass_from_dict(cls, d)


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2)
    )


class FashionClassifier(nn.Module):
    """28×28 흑백 이미지를 10개 클래스로 나누는 작은 CNN. ``features(x)`` 가 128차원 특징을 준다."""

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ClassifierConfig()
        w = c.width
        self.body = nn.Sequential(_stage(1, w), _stage(w, 2 * w), _stage(2 * w, 4 * w))
        side = c.image_size // 8
        self.embed = nn.Linear(4 * w * side * side, c.feature_dim)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.feature_dim, c.num_classes)
        # 특징 표준화 상수. 학습이 끝난 뒤 ``set_feature_stats`` 로 정한다 (그 전에는 항등 변환).
        self.register_buffer("feature_mean", torch.zeros(c.feature_dim))
        self.register_buffer("feature_std", torch.ones(c.feature_dim))

    def _check(self, x: torch.Tensor) -> None:
        s = self.config.image_size
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2:] != (s, s):
            raise ValueError(
                f"분류기 입력은 (N, 1, {s}, {s}) 이어야 한다 / classifier expects (N, 1, {s}, {s}), "
                f"got {tuple(x.shape)}"
            )

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """[−1, 1] 이미지 (N, 1, 28, 28) → 표준화하기 전의 임베딩 (N, feature_dim). 마지막 ReLU 앞의 값이다."""
        self._check(x)
        return self.embed(self.body(x).flatten(1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[−1, 1] 이미지 (N, 1, 28, 28) → 표준화한 특징 (N, feature_dim). FID·KID 는 이 값을 쓴다."""
        return (self.embedding(x) - self.feature_mean) / self.feature_std

    def logits_from_features(self, h: torch.Tensor) -> torch.Tensor:
        """``features`` 의 출력에서 로짓을 만든다 (특징과 예측을 한 번의 계산으로 함께 얻을 때 쓴다)."""
        return self.head(self.dropout(F.relu(h * self.feature_std + self.feature_mean)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """로짓 (N, num_classes)."""
        return self.head(self.dropout(F.relu(self.embedding(x))))

    @torch.no_grad()
    def set_feature_stats(self, images: np.ndarray, batch_size: int = 1000) -> None:
        """uint8 이미지 (N, 28, 28) 의 임베딩으로 차원별 평균·표준편차를 재서 표준화 상수로 둔다."""
        from .data import to_model_range

        was_training = self.training
        self.eval()
        device = self.feature_mean.device
        emb = torch.cat(
            [
                self.embedding(to_model_range(images[i : i + batch_size]).to(device)).double()
                for i in range(0, len(images), batch_size)
            ]
        )
        self.feature_mean.copy_(emb.mean(0).float())
        self.feature_std.copy_(emb.std(0).clamp(min=1e-6).float())
        self.train(was_training)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------------------- 저장·불러오기
def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix != ".safetensors":
        raise ValueError(f"분류기 파일은 .safetensors 로 끝나야 한다 / classifier file must end in .safetensors: {p}")
    return p, p.with_suffix(".json")


def save_classifier(model: FashionClassifier, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """가중치를 safetensors 로, 메타데이터를 그 헤더와 JSON 사본에 원자적으로 저장한다 (``checkpoint.write_safetensors``)."""
    st_path, _ = _paths(path)
    full = {"format": CLASSIFIER_FORMAT, "config": model.config.to_dict(), **(meta or {})}
    return write_safetensors(st_path, model.state_dict(), full, _META_KEY)


def read_classifier(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[FashionClassifier, dict[str, Any]]:
    """safetensors 파일에서 ``(분류기 (eval 모드), 메타데이터)`` 를 만든다. 피클을 쓰지 않는다."""
    st_path, _ = _paths(path)
    state, header = read_safetensors(
        st_path,
        what=("분류기", "classifier file"),
        how="`ddpm-ko train-classifier` 로 만들거나 경로를 확인하라 (train one or check the path)",
    )
    try:
        meta = json.loads(header[_META_KEY])
        if meta.get("format") != CLASSIFIER_FORMAT:
            raise KeyError("format")
        config_dict = meta["config"]
    except (KeyError, TypeError, ValueError) as e:  # json.JSONDecodeError 는 ValueError 다
        raise CheckpointError(f"ddpm_ko 분류기 파일이 아니다 / not a ddpm_ko classifier file: {st_path}") from e
    try:
        config = ClassifierConfig.from_dict(config_dict)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"분류기 설정이 잘못되었다 / invalid classifier config in {st_path}: {e}") from e
    model = FashionClassifier(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"분류기 가중치가 설정과 맞지 않는다 / classifier weights do not match its config: {st_path}"
        ) from e
    return model.to(device).eval(), meta


# ---------------------------------------------------------------------------------------- 학습
@torch.no_grad()
def accuracy(
    model: FashionClassifier,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int = 1000,
    device: torch.device | str = "cpu",
) -> float:
    """uint8 이미지 (N, 28, 28) 와 레이블 (N,) 에서 분류 정확도를 잰다."""
    from .data import to_model_range

    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        x = to_model_range(images[i : i + batch_size]).to(device)
        pred = model(x).argmax(1).cpu().numpy()
        correct += int((pred == labels[i : i + batch_size]).sum())
    return correct / max(1, len(images))


def train_classifier(
    out: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    epochs: int = 3,
    seed: int = 0,
    batch_size: int = 128,
    lr: float = 2e-3,
    config: ClassifierConfig | None = None,
    threads: int | None = None,
    subset: int | None = None,
    test_limit: int | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> tuple[FashionClassifier, dict[str, Any]]:
    """Fashion-MNIST 학습 분할로 분류기를 학습하고, 시험 분할 정확도를 재서 ``(모델, 정보)`` 를 돌려준다.

    AdamW + 1주기(one-cycle) 학습률, 무작위 좌우 반전. ``out`` 을 주면 safetensors + JSON 으로 저장한다.
    CPU 에서는 ``pick_device()`` 로 malloc 설정을 먼저 적용한다. ``subset``, ``test_limit`` 은 학습·시험 이미지를
    앞에서부터 그만큼만 쓴다 (검사용). ``progress`` 면 ``ddpm-ko train`` 처럼 tqdm 막대를 표준 오류에 보인다.
    """
    from .data import fashion_mnist_arrays, random_hflip, to_model_range
    from .utils import environment_info, pick_device, tune_cpu

    if epochs < 1:
        raise ValueError(f"epochs 는 1 이상 / epochs must be >= 1, got {epochs}")
    if batch_size < 2:
        raise ValueError(f"batch_size 는 2 이상 / batch_size must be >= 2, got {batch_size}")
    log = log or (lambda msg: print(msg, flush=True))
    device = pick_device()
    if device.type == "cpu":
        tune_cpu(threads)
    torch.manual_seed(seed)
    train_x, train_y = fashion_mnist_arrays("train", data_dir)
    test_x, test_y = fashion_mnist_arrays("test", data_dir)
    if subset:
        train_x, train_y = train_x[:subset], train_y[:subset]
    if test_limit:
        test_x, test_y = test_x[:test_limit], test_y[:test_limit]
    if len(train_x) < batch_size:
        raise ValueError(
            f"학습 이미지 {len(train_x)} 장이 배치 {batch_size} 보다 적다 / fewer training images than one batch"
        )
    model = FashionClassifier(config).to(device)
    steps_per_epoch = len(train_x) // batch_size
    total = steps_per_epoch * epochs
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.2)
    gen = torch.Generator().manual_seed(seed)
    images = torch.from_numpy(train_x)
    labels = torch.from_numpy(train_y)
    start = time.perf_counter()
    log(
        f"[classifier] device={device} params={model.num_parameters():,} epochs={epochs} batch={batch_size} "
        f"steps={total} threads={torch.get_num_threads()}"
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="classifier", dynamic_ncols=True, mininterval=2.0)
    try:
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(images), generator=gen)
            running = 0.0
            for i in range(steps_per_epoch):
                idx = perm[i * batch_size : (i + 1) * batch_size]
                x = random_hflip(to_model_range(images[idx]), gen).to(device)
                y = labels[idx].to(device)
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running += float(loss.detach())
                if not math.isfinite(running):
                    raise TrainingDivergedError(
                        "분류기 학습 손실이 NaN/Inf 가 되었다 / classifier training diverged: lower the lr"
                    )
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{running / (i + 1):.4f}", refresh=False)
            acc = accuracy(model, test_x, test_y, device=device)
            log(
                f"[classifier] epoch {epoch + 1}/{epochs} loss {running / steps_per_epoch:.4f} "
                f"test acc {acc:.4f} ({time.perf_counter() - start:.0f}s)"
            )
    finally:
        if bar is not None:
            bar.close()
    model.set_feature_stats(train_x[:STATS_IMAGES])
    wall = time.perf_counter() - start
    info = {
        "test_accuracy": round(acc, 4),
        "test_images": len(test_x),
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": "AdamW(weight_decay=1e-4) + OneCycleLR(pct_start=0.2), random horizontal flip",
        "train_images": len(train_x),
        "train_time_s": round(wall, 1),
        "parameters": model.num_parameters(),
        "feature": (
            f"{model.config.feature_dim}-d output of `embed` (before the last ReLU), standardized per "
            f"dimension with the mean/std of the first {min(STATS_IMAGES, len(train_x))} training images"
        ),
        "input_range": "[-1, 1], (N, 1, 28, 28)",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment_info(device),
    }
    model = model.cpu().eval()
    if out is not None:
        path = save_classifier(model, out, info)
        log(f"[classifier] saved {path} (test accuracy {acc:.4f})")
    return model, info
