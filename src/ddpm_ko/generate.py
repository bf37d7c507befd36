"""체크포인트에서 이미지까지: 모델을 불러 ``sampling`` 의 반복을 배치로 돌린다 (명령줄 ``ddpm-ko sample`` 의 본체)."""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from . import solvers
from .checkpoint import load_model_from_checkpoint
from .conditioning import model_num_classes
from .configs import require
from .guidance import DEFAULT_GUIDANCE
from .pretrained import resolve_checkpoint_name
from .sampling import DEFAULT_SAMPLER, SOLVER_SAMPLERS, SamplerOptions, sample_with_oom_retry
from .utils import pick_device

__all__ = ["sample_images"]


def sample_images(
    checkpoint: str | os.PathLike,
    num: int,
    sampler: str = DEFAULT_SAMPLER,
    steps: int | None = None,
    eta: float = 0.0,
    spacing: str | None = None,
    seed: int = 0,
    clip_x0: bool = True,
    use_ema: bool = True,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    trajectory: bool = False,
    progress: bool = False,
    labels: torch.Tensor | None = None,
    guidance: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """체크포인트(``"pretrained"`` 이면 책의 사전 학습 모델)로 ``num`` 장을 만든다.

    조건부 모델(``"pretrained-conditional"`` 등)이면 ``labels`` (num,) 로 클래스를 고른다. 가이던스 w 는
    ``guidance`` (레이블을 주고 비워 두면 ``guidance.DEFAULT_GUIDANCE``). ``spacing`` 은 두 DPM-Solver++ 의 타임스텝
    간격(``"time"``, ``"logsnr"``, ``"karras"``; 기본 ``solvers.DEFAULT_SPACING``)이다. 그 간격이 이 체크포인트의
    스케줄에서 정수 타임스텝으로 겹쳐 ``steps`` 보다 적은 호출만 남으면 경고한다 (코사인 스케줄의 Karras 간격이 그렇다).

    ``(images [−1, 1] (N, C, H, W), 궤적 또는 None, 메타데이터)`` 를 돌려준다.
    """
    require(num >= 1, f"num 은 1 이상 / num must be >= 1, got {num}")
    require(batch_size >= 1, f"batch_size 는 1 이상 / batch_size must be >= 1, got {batch_size}")
    if sampler in SOLVER_SAMPLERS and steps is None:
        steps = solvers.DEFAULT_STEPS  # 궤적 간격(stride)을 실제 샘플링 스텝 수로 잡도록 미리 정한다
    # 모델을 불러오기 전에 값싼 검사부터 (잘못된 인자로 큰 체크포인트를 읽지 않게)
    if guidance is None:
        guidance = DEFAULT_GUIDANCE if labels is not None else 0.0
    options = SamplerOptions(sampler, steps, eta, spacing=spacing, clip_x0=clip_x0, guidance=guidance)
    require(
        labels is None or tuple(torch.as_tensor(labels).shape) == (num,),
        f"레이블은 이미지마다 하나, ({num},) / need one label per image, shape ({num},)",
    )
    dev = pick_device(str(device) if device is not None else None)
    checkpoint = resolve_checkpoint_name(checkpoint)
    model, diffusion, meta = load_model_from_checkpoint(checkpoint, use_ema=use_ema, device=dev)
    require(
        labels is None or model_num_classes(model) is not None,
        f"{checkpoint} 는 조건 없는 모델이라 --label 을 쓸 수 없다: --checkpoint pretrained-conditional 처럼 조건부 "
        f"모델을 주어라 / {checkpoint} is an unconditional model: --label needs a conditional one "
        "(e.g. --checkpoint pretrained-conditional)",
    )
    ts = options.timesteps(diffusion)  # 샘플링 스텝 수가 이 체크포인트의 T 를 넘지 않는지
    if sampler in SOLVER_SAMPLERS and len(ts) < steps:
        used = spacing or solvers.DEFAULT_SPACING
        schedule = (meta.get("diffusion") or {}).get("schedule", "?")
        warnings.warn(
            f"{used} 간격은 이 체크포인트의 스케줄({schedule})에서 타임스텝이 겹쳐, 요청한 {steps} 스텝 가운데 "
            f"{len(ts)} 스텝만 남는다: 겹치지 않는 t 간격(--spacing time, spacing='time')을 써 보라 / the {used} "
            f"spacing collapses to {len(ts)} of the {steps} requested timesteps on this checkpoint's schedule; "
            "the t spacing never does (--spacing time, spacing='time')",
            stacklevel=2,
        )
    c = model.config
    g = torch.Generator().manual_seed(seed)
    images, traj = sample_with_oom_retry(
        diffusion,
        model,
        num,
        (c.channels, c.image_size, c.image_size),
        batch_size,
        g,
        dev,
        trajectory=trajectory,
        progress=progress,
        sampler=sampler,
        steps=steps,
        eta=eta,
        spacing=spacing,
        clip_x0=clip_x0,
        guidance=guidance,
        labels=labels,
    )
    return images, traj, meta
