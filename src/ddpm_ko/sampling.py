"""샘플링: 노이즈 x_T 에서 이미지까지 내려가는 반복 (8장의 알고리즘 2, 9장의 DDIM 과 DPM-Solver++, 그 SDE 판).

한 스텝의 식(``p_sample``, ``ddim_step``, ``dpm_solver_step``)은 확산 모델 ``GaussianDiffusion`` 에 있고,
이 모듈은 그 스텝을 어느 타임스텝에서 어느 타임스텝으로 몇 번 부를지를 정한다.

- ``SamplerOptions`` — 샘플러 이름, 샘플링 스텝 수, η, 타임스텝 간격, 분산, x̂_0 자르기, 가이던스 세기 w.
  검사는 여기 한 곳에서 한다.
- ``sample`` / ``sample_trajectory`` — 반복 자체. 최종 이미지만, 또는 (최종 이미지, 궤적) 을 돌려준다.
- ``sample_with_oom_retry`` — 많은 장을 배치로 나눠 만들고, 장치 메모리가 모자라면 배치를 줄인다.

조건부 모델(11장)이면 ``labels`` 를 주고, 반복은 신경망 대신 가이던스로 섞은 ε̃ (``guidance.guided_model``) 을
부른다. 모든 샘플러가 그대로 쓴다.

반복이 확산 모델에서 쓰는 것은 출발점(``sample_prior``), 타임스텝, 그리고 한 스텝의 식 세 가지뿐이다. 이 모듈은
실행할 때 ``diffusion.py`` 를 import 하지 않는다: ``GaussianDiffusion.sample`` 이 이 모듈의 ``sample`` 로 넘기기
때문이다 (타입 힌트의 ``GaussianDiffusion`` 은 타입 검사에서만 읽는다).
체크포인트에서 이미지를 만드는 ``sample_images`` 는 ``generate.py`` 에 있다.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch

from .conditioning import model_num_classes
from .configs import require
from .guidance import check_guidance, guided_model

if TYPE_CHECKING:  # 타입 검사에서만 읽는다. 실행할 때는 diffusion.py 가 이 모듈을 import 한다
    from .diffusion import GaussianDiffusion

__all__ = [
    "SAMPLERS",
    "SOLVER_SAMPLERS",
    "DEFAULT_SAMPLER",
    "SamplerOptions",
    "Trajectory",
    "ddim_timesteps",
    "sample",
    "sample_trajectory",
    "sample_with_oom_retry",
    "is_out_of_memory",
]

SAMPLERS = ("ddpm", "ddim", "dpm-solver++", "sde-dpm-solver++")
# DPM-Solver++ 의 타임스텝(``solvers.solver_timesteps``)과 간격(spacing)을 쓰는 샘플러: ODE 판과 SDE 판
SOLVER_SAMPLERS = ("dpm-solver++", "sde-dpm-solver++")

# 책과 명령줄의 기본 샘플러. 규칙: 신경망 호출 25 번 이하의 설정 가운데 기준 특징 FID 의 1.1배 안에 드는 가장 싼 것.
# 기준은 DDPM 1000 스텝의 FID 이고, 25 번 이하의 어느 설정도 그 1.1배 안에 들지 못하면 25 번 이하에서 가장 낮은 FID 다
# (benchmarks/quality_vs_nfe.py 가 N = 1000 장으로 잰다; tests/test_sampling.py 가 결과 파일과 맞춰 본다).
# 같은 점을 다른 시드로도 잰 파일(quality_vs_nfe_seed*.json)이 있으면 그 점은 시드들의 평균 FID 로 견준다. N = 1000 의
# FID 는 시드에 따라 바닥값 표준편차(≈ 0.3)만큼 흔들리기 때문이다.
# 지금 싣는 모델로 잰 답: DPM-Solver++(2M) 15 스텝, Karras 간격 (시드 0–3 평균 FID 1.68; DDPM 1000 스텝은 시드 0 에서 1.60).
# 큰 차이를 낸 것은 타임스텝 간격이다: 같은 ODE 판 10 스텝이 λ 간격 3.45, Karras 간격 1.94 다 (시드 0). 스텝마다 새 노이즈를
# 더하는 SDE 판(sampler="sde-dpm-solver++")은 20 스텝, Karras 간격에서 평균 1.51 로 호출 25 번 이하에서 가장 낮지만 더 비싸다.
# 한 번 잰 FID 는 흔들린다: SDE 판 20 스텝, λ 간격은 시드 0 에서 1.40 이었지만 시드마다 1.40–2.25 (평균 1.81) 였다.
# 이전 측정의 답: 4750 스텝 모델은 DPM-Solver++(2M) 10 스텝 λ 간격, 미세 조정한 지금 모델을 λ 간격만 잰 때는 20 스텝(2.36).
# 결과 파일의 checkpoint_sha256 이 어느 모델로 잰 것인지 밝힌다. 두 DPM-Solver++ 의 스텝 수와
# 타임스텝 간격의 기본값은 ``solvers.DEFAULT_STEPS``, ``solvers.DEFAULT_SPACING`` 이다.
# (``GaussianDiffusion.sample`` 의 기본은 이 값이 아니라 언제나 알고리즘 2 인 "ddpm" 이다.)
DEFAULT_SAMPLER = "dpm-solver++"

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Variance = Literal["posterior", "beta"]


def ddim_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """T 개 중 ``steps`` 개의 타임스텝 τ_i 를 고르게 골라 큰 것부터 돌려준다 (항상 T−1 과 0 을 포함, 식 ch8-eq-respace)."""
    require(
        isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1,
        f"steps 는 1 이상의 정수여야 한다 / steps must be a positive integer, got {steps!r}",
    )
    require(
        steps <= num_timesteps,
        f"DDIM steps({steps}) 가 T({num_timesteps}) 보다 클 수 없다 / "
        f"DDIM steps cannot exceed T: got steps={steps}, T={num_timesteps}",
    )
    if steps == 1:
        return [num_timesteps - 1]
    ts = np.round(np.linspace(num_timesteps - 1, 0, steps)).astype(int)
    return [int(t) for t in ts]


@dataclass(frozen=True)
class SamplerOptions:
    """어떤 샘플러를 어떻게 돌릴지. 만들 때 값을 검사하고, T 와 맞는지는 ``timesteps`` 가 검사한다.

    Attributes:
        sampler: ``"ddpm"`` (알고리즘 2, T 스텝 조상 샘플링), ``"ddim"``, ``"dpm-solver++"`` (DPM-Solver++(2M))
            또는 ``"sde-dpm-solver++"`` (SDE-DPM-Solver++(2M): 같은 2차 갱신에 스텝마다 새 노이즈를 더한다).
        steps: DDIM·DPM-Solver++ 의 샘플링 스텝 수 = 신경망 호출 수 (기본: DDIM 은 T, 두 DPM-Solver++ 는
            ``solvers.DEFAULT_STEPS``). DDPM 은 언제나 T 스텝이다.
        eta: DDIM 의 η (식 ch9-eq-sigma). 0 이면 결정적, 1 이면 DDPM 과 같은 분산.
        spacing: 두 DPM-Solver++ 의 타임스텝 간격 ``"time"``, ``"logsnr"``, ``"karras"`` (기본: ``solvers.DEFAULT_SPACING``).
        clip_x0: 스텝마다 예측한 x̂_0 을 [−1, 1] 로 자를지.
        variance: DDPM 한 스텝의 분산 σ_t² — ``"posterior"`` 는 β̃_t (식 ch8-eq-beta-tilde), ``"beta"`` 는 β_t
            (검사는 그 한 스텝 ``GaussianDiffusion.p_sample`` 이 한다).
        guidance: 분류기 없는 가이던스의 w (식 ch11-eq-cfg, 조건부 모델에 ``labels`` 를 줄 때만). 0 이면 섞지 않는다.
    """

    sampler: str = "ddpm"
    steps: int | None = None
    eta: float = 0.0
    spacing: str | None = None
    clip_x0: bool = True
    variance: Variance = "posterior"
    guidance: float = 0.0

    def __post_init__(self) -> None:
        check_guidance(self.guidance)
        s = self.sampler
        require(s in SAMPLERS, f"알 수 없는 샘플러 '{s}' / unknown sampler: choose one of {SAMPLERS}")
        require(0.0 <= self.eta <= 1.0, f"eta 는 0 과 1 사이여야 한다 / eta must be in [0, 1], got {self.eta}")
        require(
            self.steps is None
            or (isinstance(self.steps, int) and not isinstance(self.steps, bool) and self.steps >= 1),
            f"steps 는 1 이상의 정수여야 한다 / steps must be a positive integer, got {self.steps!r}",
        )
        require(
            self.spacing is None or s in SOLVER_SAMPLERS,
            f"spacing 은 DPM-Solver++ 에만 쓴다 / spacing only applies to {' and '.join(SOLVER_SAMPLERS)}, "
            f"got sampler={s!r}",
        )
        require(
            s not in SOLVER_SAMPLERS or self.eta == 0.0,
            f"η 는 DDIM 에만 쓴다: DPM-Solver++(2M) 은 결정적이고, 노이즈를 더하려면 sampler='sde-dpm-solver++' 를 "
            f"골라라 / eta only applies to DDIM: DPM-Solver++(2M) is deterministic, use sampler='sde-dpm-solver++' "
            f"for the stochastic version; got eta={self.eta}",
        )

    def timesteps(self, diffusion: GaussianDiffusion) -> list[int]:
        """신경망을 부를 타임스텝들 (큰 것부터). 스텝 수가 T 와 맞지 않으면 무엇을 고칠지 말하는 오류를 낸다."""
        T = diffusion.num_timesteps
        if self.sampler == "ddpm":
            require(
                self.steps in (None, T),
                f"DDPM 샘플러는 언제나 T={T} 스텝이다. 스텝을 줄이려면 DDIM(--sampler ddim)을 써라 / "
                f"the DDPM sampler always runs T steps (T={T}): use the DDIM sampler (--sampler ddim) for fewer steps",
            )
            return list(range(T - 1, -1, -1))
        if self.sampler == "ddim":
            return ddim_timesteps(T, self.steps if self.steps is not None else T)
        return diffusion.solver_timesteps(self.steps, self.spacing)


class Trajectory(NamedTuple):
    """``sample_trajectory`` 의 결과: 최종 이미지와, x_T 부터 최종 이미지까지 ``stride`` 스텝마다 모은 프레임."""

    images: torch.Tensor  # (B, C, H, W), 장치 위
    frames: torch.Tensor  # (S+1, B, C, H, W), CPU


def _run(
    diffusion: GaussianDiffusion,
    model: Model,
    shape: tuple[int, ...],
    options: SamplerOptions,
    x_T: torch.Tensor | None,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    progress: bool,
    on_step: Callable[[int, int, torch.Tensor], None] | None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """반복 본체. ``on_step(i, 스텝 수, x)`` 가 있으면 스텝마다 부른다 (궤적 모으기)."""
    o = options
    ts = o.timesteps(diffusion)  # 검사를 노이즈를 뽑기 전에 한다
    model = _with_labels(model, labels, o.guidance, shape[0])
    device = torch.device(device) if device is not None else diffusion.betas.device
    x = (
        diffusion.sample_prior(shape, generator, device) if x_T is None else x_T.to(device)
    )  # x_T ~ N(0, I)  (식 ch8-eq-xT)
    iterator = ts
    if progress:
        from tqdm import tqdm

        iterator = tqdm(ts, desc=f"{o.sampler} sampling", leave=False)
    history: tuple[int, torch.Tensor] | None = None  # DPM-Solver++(2M) 이 기억하는 앞 스텝의 (타임스텝, x̂_0)
    for i, t in enumerate(iterator):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1  # −1: ᾱ = 1 인 끝 (깨끗한 이미지)
        if o.sampler == "ddpm":  # 알고리즘 2 의 한 줄 (식 ch8-eq-step)
            x, _ = diffusion.p_sample(model, x, t, o.clip_x0, generator, o.variance)
        elif o.sampler == "ddim":  # 식 ch9-eq-ddim-step
            x, _ = diffusion.ddim_step(model, x, t, t_prev, o.eta, o.clip_x0, generator)
        else:  # 식 ch9-eq-dpm1 (첫 스텝), ch9-eq-dpm2; SDE 판은 식 ch9-eq-sde-dpm
            stochastic = o.sampler == "sde-dpm-solver++"
            x, x0 = diffusion.dpm_solver_step(model, x, t, t_prev, history, o.clip_x0, stochastic, generator)
            history = (t, x0)
        if on_step is not None:
            on_step(i, len(ts), x)
    return x.clamp(-1.0, 1.0) if o.clip_x0 else x


def _with_labels(model: Model, labels: torch.Tensor | None, guidance: float, batch: int) -> Model:
    """조건부 모델이면 레이블과 가이던스 w 를 묶은 ε̃(x, t) 를, 아니면 모델 그대로를 돌려준다."""
    num_classes = model_num_classes(model)
    if labels is None:
        require(
            guidance == 0,
            "가이던스(w > 0)에는 레이블이 필요하다 / guidance (w > 0) needs labels: pass labels=… (--label)",
        )
        return model
    require(
        num_classes is not None,
        "레이블은 조건부 모델(UnetConfig(num_classes=…), pretrained-conditional)에만 줄 수 있다 / "
        "labels need a conditional model (UnetConfig(num_classes=…), pretrained-conditional)",
    )
    labels = torch.as_tensor(labels)
    require(
        labels.shape == (batch,),
        f"레이블은 이미지마다 하나, ({batch},) 모양이어야 한다 / need one label per image, shape ({batch},), "
        f"got {tuple(labels.shape)}",
    )
    return guided_model(model, labels, guidance, num_classes)


@torch.no_grad()
def sample(
    diffusion: GaussianDiffusion,
    model: Model,
    shape: tuple[int, ...],
    options: SamplerOptions = SamplerOptions(),
    *,
    x_T: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """x_T ~ N(0, I) (``x_T`` 를 주면 그것) 에서 시작해 ``options`` 의 샘플러로 이미지 ``shape`` 를 만든다.

    ``options.clip_x0`` 이면 결과를 [−1, 1] 로 자른다. ``generator`` 는 x_T 와 스텝마다의 노이즈 z 를 뽑는다.
    조건부 모델이면 ``labels`` (B,) 로 클래스를 고르고 ``options.guidance`` 로 가이던스 세기를 정한다.
    """
    return _run(diffusion, model, shape, options, x_T, generator, device, progress, None, labels)


@torch.no_grad()
def sample_trajectory(
    diffusion: GaussianDiffusion,
    model: Model,
    shape: tuple[int, ...],
    options: SamplerOptions = SamplerOptions(),
    *,
    stride: int = 1,
    x_T: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    labels: torch.Tensor | None = None,
) -> Trajectory:
    """``sample`` 과 같은 이미지를 만들면서 x_T 부터 ``stride`` 스텝마다 x_t 를 CPU 에 모은다.

    프레임은 ``(S+1, B, C, H, W)`` 로 첫 프레임이 x_T, 마지막 프레임이 (잘린) 최종 이미지다.
    """
    require(
        isinstance(stride, int) and stride >= 1,
        f"궤적 간격 stride 는 1 이상의 정수 / stride must be an integer >= 1, got {stride!r}",
    )
    frames: list[torch.Tensor] = []

    def keep(i: int, n: int, x: torch.Tensor) -> None:
        if (i + 1) % stride == 0 or i + 1 == n:
            frames.append(x.detach().cpu())

    device = torch.device(device) if device is not None else diffusion.betas.device
    if x_T is None:  # 첫 프레임을 남기려고 여기서 뽑는다 (``_run`` 과 같은 생성기, 같은 순서)
        options.timesteps(diffusion)
        x_T = diffusion.sample_prior(shape, generator, device)
    first = x_T.to(device).detach().cpu()
    x = _run(diffusion, model, shape, options, x_T, generator, device, progress, keep, labels)
    frames[-1] = x.detach().cpu()
    return Trajectory(x, torch.stack([first, *frames]))


def is_out_of_memory(e: BaseException) -> bool:
    """장치 메모리 부족 오류인가 (``torch.cuda.OutOfMemoryError`` 나 "... out of memory" 메시지)."""
    oom_types = tuple(
        t for t in (getattr(torch.cuda, "OutOfMemoryError", None), getattr(torch, "OutOfMemoryError", None)) if t
    )
    return isinstance(e, oom_types) or "out of memory" in str(e).lower()


def sample_with_oom_retry(
    diffusion: GaussianDiffusion,
    model: torch.nn.Module,
    num: int,
    shape: tuple[int, int, int],
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    trajectory: bool = False,
    min_batch: int = 1,
    progress: bool = False,
    labels: torch.Tensor | None = None,
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``num`` 장을 ``batch_size`` 씩 나눠 생성한다. 메모리가 모자라면 배치를 절반으로 줄여 다시 한다.

    ``options`` 는 ``SamplerOptions`` 의 항목(sampler, steps, eta, spacing, clip_x0, variance, guidance)이다.
    조건부 모델이면 ``labels`` (num,) 를 배치와 같이 나눠 쓴다.
    초기 노이즈는 배치 크기와 상관없이 한꺼번에 뽑으므로, 배치를 줄여 다시 해도 결정적 샘플러(DDIM η=0)의 결과는
    같다. 다만 CPU 커널(oneDNN)은 배치 크기에 따라 달라지므로 float32 의 마지막 비트까지 같지는 않다.
    실패한 시도가 쓴 난수는 되돌리므로, 확률적 샘플러도 마지막으로 성공한 배치 나눔이 같으면 결과가 같다.
    궤적은 첫 배치의 처음 64장까지만 모으고, 샘플링 스텝 수의 1/100 마다 한 프레임을 남긴다.
    """
    require(
        num >= 1 and batch_size >= 1 and min_batch >= 1,
        f"num, batch_size, min_batch 는 1 이상 / must be >= 1, got {num}, {batch_size}, {min_batch}",
    )
    opts = SamplerOptions(**options)  # 검사는 노이즈를 뽑기 전에
    require(
        labels is None or tuple(torch.as_tensor(labels).shape) == (num,),
        f"레이블은 ({num},) 모양이어야 한다 / labels must have shape ({num},)",
    )
    x_T = torch.randn((num, *shape), generator=generator)
    n_steps = opts.steps or diffusion.num_timesteps
    outputs: list[torch.Tensor] = []
    traj: torch.Tensor | None = None
    start = 0
    bs = max(1, batch_size)
    while start < num:
        end = min(num, start + bs)
        want_traj = trajectory and traj is None
        rng_state = generator.get_state()
        where = dict(generator=generator, device=device, x_T=x_T[start:end], progress=progress)
        if labels is not None:
            where["labels"] = torch.as_tensor(labels)[start:end]
        try:
            if want_traj:
                x, traj = sample_trajectory(
                    diffusion, model, (end - start, *shape), opts, stride=max(1, n_steps // 100), **where
                )
                traj = traj[:, :64]
            else:
                x = sample(diffusion, model, (end - start, *shape), opts, **where)
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
        outputs.append(x.cpu())
        start = end
    return torch.cat(outputs), traj
