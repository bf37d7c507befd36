"""발산 검사: 손실·그래디언트·갱신한 가중치가 NaN/Inf 가 되면 몇 번째 학습 스텝인지 알리고 멈춘다.

멈출 때의 메시지는 마지막으로 저장한 정상 체크포인트가 어디에 있는지 말한다. 그 파일은 덮어쓰지 않았으므로
학습률을 낮춰 거기서 이어 학습하면 된다. 분산 학습에서는 모든 프로세스가 같은 스텝에서 함께 멈춘다.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .distributed import any_rank
from .errors import TrainingDivergedError

__all__ = ["kept_message", "check_loss", "check_grad_norm", "check_weights"]


def kept_message(last_good: tuple[Path, int] | None) -> tuple[str, str]:
    """발산을 알릴 때 덧붙일 (한국어, 영어) 안내: 마지막 정상 체크포인트 ``(경로, 학습 스텝)`` 은 어디에 있는가."""
    if last_good is None:
        return "아직 저장한 체크포인트는 없다", "no checkpoint has been written yet"
    path, step = last_good
    return (
        f"마지막 정상 체크포인트 {path} (스텝 {step}) 는 그대로 두었으니 학습률을 낮춰 이어 학습하라",
        f"the last good checkpoint {path} (step {step}) was kept: lower --lr and resume from it",
    )


def check_loss(value: float, step: int, last_good: tuple[Path, int] | None) -> None:
    """``step`` 스텝의 손실이 유한하지 않으면 ``TrainingDivergedError``. 갱신 전에 부르므로 가중치는 그대로다."""
    if not math.isfinite(value):
        ko, en = kept_message(last_good)
        raise TrainingDivergedError(
            f"{step} 스텝에서 손실이 {value} 가 되었다; {ko} / loss became {value} at step {step}; {en}"
        )


def check_grad_norm(norm: torch.Tensor, step: int, last_good: tuple[Path, int] | None) -> None:
    """클리핑 전 그래디언트 노름이 유한하지 않으면 ``TrainingDivergedError``."""
    if not torch.isfinite(norm):
        ko, en = kept_message(last_good)
        raise TrainingDivergedError(
            f"{step} 스텝에서 그래디언트가 발산했다; {ko} / non-finite gradient at step {step}; {en}"
        )


@torch.no_grad()
def check_weights(
    model: nn.Module,
    loss_on_last_batch: Callable[[], torch.Tensor] | None,
    step: int,
    last_good: tuple[Path, int] | None,
    world: int,
    device: torch.device,
) -> None:
    """저장하기 전에 방금 갱신한 가중치가 멀쩡한지 본다 (모든 프로세스가 함께 부른다).

    손실은 갱신 **전** 가중치로 계산하므로, 마지막 갱신이 가중치를 망가뜨렸는지는 손실 검사로
    알 수 없다 (학습률이 너무 크면 손실은 유한한데 가중치가 1e30 이 된다). 그래서 가중치가
    유한한지, 그리고 이번 스텝의 배치(같은 t, 같은 ε)로 다시 잰 손실(``loss_on_last_batch``)이 유한한지를
    확인하고, 아니면 체크포인트를 쓰지 않고 ``TrainingDivergedError`` 를 낸다. 순전파 한 번이므로 싸다.
    """
    bad = not all(bool(torch.isfinite(p).all()) for p in model.parameters())
    value = float("nan")
    if not bad and loss_on_last_batch is not None:
        value = float(loss_on_last_batch())
        bad = not math.isfinite(value)
    if any_rank(bad, world, device):
        ko, en = kept_message(last_good)
        raise TrainingDivergedError(
            f"{step} 스텝의 갱신 뒤 가중치가 발산해 (같은 배치의 손실 {value}) 체크포인트를 쓰지 않았다; {ko} / "
            f"weights diverged after the update at step {step} (loss on the same batch: {value}), "
            f"checkpoint not written; {en}"
        )
