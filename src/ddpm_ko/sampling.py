"""체크포인트에서 이미지를 생성하는 고수준 함수 (배치 나누기, GPU 메모리 부족 시 재시도)."""

from __future__ import annotations

import os
from typing import Any

import torch

from .checkpoint import load_model_from_checkpoint
from .diffusion import DEFAULT_SAMPLER, SAMPLERS, GaussianDiffusion
from .utils import pick_device

__all__ = ["sample_images", "sample_with_oom_retry", "is_out_of_memory"]


def is_out_of_memory(e: BaseException) -> bool:
    """장치 메모리 부족 오류인가 (``torch.cuda.OutOfMemoryError`` 나 "... out of memory" 메시지)."""
    oom_types = tuple(t for t in (getattr(torch.cuda, "OutOfMemoryError", None), getattr(torch, "OutOfMemoryError", None)) if t)
    return isinstance(e, oom_types) or "out of memory" in str(e).lower()


_is_oom = is_out_of_memory  # 예전 이름


def sample_with_oom_retry(diffusion: GaussianDiffusion, model: torch.nn.Module, num: int, shape: tuple[int, int, int],
                          batch_size: int, generator: torch.Generator, device: torch.device, trajectory: bool = False,
                          min_batch: int = 1, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``num`` 장을 ``batch_size`` 씩 나눠 생성한다. 메모리가 모자라면 배치를 절반으로 줄여 다시 한다.

    초기 노이즈는 배치 크기와 상관없이 한꺼번에 뽑으므로, 배치를 줄여 다시 해도 결정적 샘플러(DDIM η=0)의 결과는
    같다. 다만 CPU 커널(oneDNN)은 배치 크기에 따라 달라지므로 float32 의 마지막 비트까지 같지는 않다.
    실패한 시도가 쓴 난수는 되돌리므로, 확률적 샘플러도 마지막으로 성공한 배치 나눔이 같으면 결과가 같다.
    궤적은 첫 배치의 처음 64장까지만 모은다.
    """
    if num < 1 or batch_size < 1 or min_batch < 1:
        raise ValueError(f"num, batch_size, min_batch 는 1 이상 / must be >= 1, got {num}, {batch_size}, {min_batch}")
    x_T = torch.randn((num, *shape), generator=generator)
    n_steps = kwargs.get("steps") or diffusion.num_timesteps
    outputs: list[torch.Tensor] = []
    traj: torch.Tensor | None = None
    start = 0
    bs = max(1, batch_size)
    while start < num:
        end = min(num, start + bs)
        want_traj = trajectory and traj is None
        rng_state = generator.get_state()
        try:
            result = diffusion.sample(model, (end - start, *shape), generator=generator, device=device,
                                      x_T=x_T[start:end], return_trajectory=want_traj,
                                      trajectory_stride=max(1, n_steps // 100), **kwargs)
        except RuntimeError as e:
            if not is_out_of_memory(e) or bs <= min_batch:
                raise
            del e  # 실패한 시도의 텐서를 붙든 트레이스백을 놓아 준다
            if device.type == "cuda":
                torch.cuda.empty_cache()
            generator.set_state(rng_state)
            bs = max(min_batch, min(bs, end - start) // 2)
            print(f"[ddpm-ko] GPU 메모리 부족: 배치를 {bs} 로 줄여 다시 한다 / out of memory, retrying with batch {bs}")
            continue
        if want_traj:
            x, traj = result
            traj = traj[:, :64]
        else:
            x = result
        outputs.append(x.cpu())
        start = end
    return torch.cat(outputs), traj


def sample_images(checkpoint: str | os.PathLike, num: int, sampler: str = DEFAULT_SAMPLER, steps: int | None = None,
                  eta: float = 0.0, seed: int = 0, clip_x0: bool = True, use_ema: bool = True,
                  device: str | torch.device | None = None, batch_size: int = 256, trajectory: bool = False,
                  progress: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """체크포인트(``"pretrained"`` 이면 책의 사전 학습 모델)로 ``num`` 장을 만든다.

    ``(images [−1, 1] (N, C, H, W), 궤적 또는 None, 메타데이터)`` 를 돌려준다.
    """
    if num < 1:
        raise ValueError(f"num 은 1 이상 / num must be >= 1, got {num}")
    if batch_size < 1:
        raise ValueError(f"batch_size 는 1 이상 / batch_size must be >= 1, got {batch_size}")
    # 모델을 불러오기 전에 값싼 검사부터 (잘못된 인자로 큰 체크포인트를 읽지 않게)
    if sampler not in SAMPLERS:
        raise ValueError(f"알 수 없는 샘플러 '{sampler}' / unknown sampler: choose one of {SAMPLERS}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta 는 0 과 1 사이여야 한다 / eta must be in [0, 1], got {eta}")
    if steps is not None and steps < 1:
        raise ValueError(f"steps 는 1 이상 / steps must be >= 1, got {steps}")
    if sampler == "dpm-solver++" and eta != 0.0:
        raise ValueError(f"DPM-Solver++(2M) 은 결정적이라 η 를 받지 않는다 / DPM-Solver++(2M) is deterministic: "
                         f"eta must be 0, got {eta}")
    if sampler == "dpm-solver++" and steps is None:
        from .solvers import DEFAULT_STEPS

        steps = DEFAULT_STEPS  # 궤적 간격(trajectory_stride)을 실제 단계 수로 잡도록 미리 정한다
    dev = pick_device(str(device) if device is not None else None)
    if str(checkpoint) == "pretrained":
        from .pretrained import pretrained_path

        checkpoint = pretrained_path()
    model, diffusion, meta = load_model_from_checkpoint(checkpoint, use_ema=use_ema, device=dev)
    if sampler in ("ddim", "dpm-solver++") and steps is not None and steps > diffusion.num_timesteps:
        name = "DDIM" if sampler == "ddim" else "DPM-Solver++"
        raise ValueError(f"{name} steps({steps}) 가 T({diffusion.num_timesteps}) 보다 크다 / {name} steps cannot exceed T")
    if sampler == "ddpm" and steps not in (None, diffusion.num_timesteps):
        raise ValueError(f"DDPM 은 항상 T={diffusion.num_timesteps} 단계다; 단계를 바꾸려면 --sampler ddim / "
                         "the DDPM sampler always runs T steps: use --sampler ddim with --steps")
    c = model.config
    g = torch.Generator().manual_seed(seed)
    images, traj = sample_with_oom_retry(diffusion, model, num, (c.channels, c.image_size, c.image_size), batch_size, g,
                                         dev, trajectory=trajectory, sampler=sampler, steps=steps, eta=eta,
                                         clip_x0=clip_x0, progress=progress)
    return images, traj, meta
