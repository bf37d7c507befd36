"""가우시안 확산 과정: 순방향 q(x_t|x_0), 사후 분포 q(x_{t-1}|x_t, x_0), 학습 손실, 샘플링.

기호는 DDPM 논문(Ho et al., 2020)을 따른다. 코드의 시각 인덱스 ``t`` 는 0 부터 T−1 까지이고
논문의 t = 1..T 에 해당한다 (``t = 0`` 이 논문의 t = 1).

모든 스케줄 값은 float64 로 계산한 뒤 float32 버퍼로 저장하고, 시각 ``t`` 의 값은
``_extract`` 로 배치마다 꺼낸다. 난수를 쓰는 모든 메서드는 ``generator`` 를 받는다.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import solvers
from .schedules import beta_schedule

__all__ = ["GaussianDiffusion", "PREDICTION_TYPES", "LOSS_TYPES", "SAMPLERS", "DEFAULT_SAMPLER", "ddim_timesteps"]

PredictionType = Literal["eps", "x0", "v"]
LossType = Literal["l1", "l2", "huber"]
PREDICTION_TYPES = ("eps", "x0", "v")
LOSS_TYPES = ("l1", "l2", "huber")
SAMPLERS = ("ddpm", "ddim", "dpm-solver++")

# 책과 명령줄의 기본 샘플러. 규칙: DDPM 1000 단계의 특징 FID 의 1.1배 안에 드는 설정 가운데 신경망 호출이 가장 적은 것
# (benchmarks/quality_vs_nfe.py 가 잰다). 측정이 채워지기 전까지는 DDPM 그대로 둔다. DPM-Solver++ 의 단계 수와
# 시각 간격의 기본값은 ``solvers.DEFAULT_STEPS``, ``solvers.DEFAULT_SPACING`` 이다.
DEFAULT_SAMPLER = "ddpm"

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    """``generator`` 가 있는 장치에서 표준 정규 난수를 뽑아 ``device`` 로 옮긴다.

    CPU 생성기로 GPU 텐서를 만들 수 있게 하려는 것이다 (같은 시드면 장치와 무관하게 같은 노이즈).
    """
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def _extract(buffer: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``buffer[t]`` 를 꺼내 ``(B, 1, 1, 1)`` 처럼 이미지와 곱할 수 있는 모양으로 만든다."""
    out = buffer.gather(0, t)
    return out.reshape(t.shape[0], *([1] * (ndim - 1)))


def ddim_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """T 개 중 ``steps`` 개의 시각을 고르게 골라 큰 것부터 돌려준다 (항상 T−1 과 0 을 포함)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps 는 1 이상의 정수여야 한다 / steps must be a positive integer, got {steps!r}")
    if steps > num_timesteps:
        raise ValueError(
            f"DDIM steps({steps}) 가 T({num_timesteps}) 보다 클 수 없다 / "
            f"DDIM steps ({steps}) cannot exceed the number of timesteps T ({num_timesteps})"
        )
    if steps == 1:
        return [num_timesteps - 1]
    ts = np.round(np.linspace(num_timesteps - 1, 0, steps)).astype(int)
    return [int(t) for t in ts]


class GaussianDiffusion(nn.Module):
    """DDPM 의 확산 과정과 그 역과정.

    Args:
        betas: 길이 T 의 노이즈 분산 β_1..β_T (``beta_schedule`` 의 결과).
        prediction_type: 신경망이 예측하는 대상. ``"eps"`` (노이즈 ε, DDPM 기본),
            ``"x0"`` (원본 이미지), ``"v"`` (v = √ᾱ_t ε − √(1−ᾱ_t) x_0).
        loss_type: ``"l2"`` (MSE, 논문의 L_simple), ``"l1"``, ``"huber"`` (smooth L1).
        dtype: 버퍼를 저장할 자료형. 기본 float32. 다른 구현과 float64 로 견줄 때는 ``torch.float64``
            (float64 로 계산한 값을 float32 로 줄였다가 되돌리면 잃은 자릿수는 돌아오지 않는다).
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor
    sqrt_recipm1_alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor

    def __init__(self, betas: torch.Tensor, prediction_type: PredictionType = "eps", loss_type: LossType = "l2",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 2:
            raise ValueError("betas 는 길이 2 이상의 1차원 텐서여야 한다 / betas must be a 1-D tensor of length >= 2")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("모든 β_t 는 0 < β_t < 1 이어야 한다 / every beta must lie in (0, 1)")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"알 수 없는 예측 대상 '{prediction_type}' / unknown prediction_type: choose one of {PREDICTION_TYPES}"
            )
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"알 수 없는 손실 '{loss_type}' / unknown loss_type: choose one of {LOSS_TYPES}")
        self.prediction_type = prediction_type
        self.loss_type = loss_type

        alphas = 1.0 - betas                                   # α_t = 1 − β_t
        alphas_cumprod = torch.cumprod(alphas, 0)              # ᾱ_t = ∏_{s≤t} α_s
        alphas_cumprod_prev = F.pad(alphas_cumprod[:-1], (1, 0), value=1.0)  # ᾱ_{t−1}, ᾱ_0 = 1
        # 사후 분포 q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I)  (DDPM 식 6, 7)
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)  # β̃_t
        buffers = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1).sqrt(),
            "posterior_variance": posterior_variance,
            # t = 1 에서 β̃ = 0 이므로 로그를 취할 때는 β̃_2 로 바꿔 둔다
            "posterior_log_variance_clipped": torch.log(
                torch.cat([posterior_variance[1:2], posterior_variance[1:]])
            ),
            # μ̃_t = coef1 · x_0 + coef2 · x_t
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.to(dtype), persistent=False)

    # ------------------------------------------------------------------ 기본 정보
    @classmethod
    def from_schedule(cls, schedule: str = "linear", timesteps: int = 1000, **kwargs) -> "GaussianDiffusion":
        """스케줄 이름과 T 로 바로 만든다: ``GaussianDiffusion.from_schedule("cosine", 1000)``."""
        return cls(beta_schedule(schedule, timesteps), **kwargs)

    @property
    def num_timesteps(self) -> int:
        """T: 확산 단계의 수."""
        return int(self.betas.shape[0])

    def _check_t(self, t: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
        """시각 ``t`` 를 ``(B,)`` long 텐서로 맞추고 범위를 검사한다. ``(B, 1)`` 도 받아 준다."""
        if isinstance(t, int):
            t = torch.full((batch,), t, dtype=torch.long, device=device)
        t = torch.as_tensor(t, device=device)
        if t.ndim == 2 and t.shape[1] == 1:
            t = t[:, 0]
        if t.ndim == 0:
            t = t.expand(batch)
        if t.ndim != 1 or t.shape[0] != batch:
            raise ValueError(f"t 는 (B,) 모양이어야 한다 / t must have shape (B,)=({batch},), got {tuple(t.shape)}")
        if t.dtype.is_floating_point:
            raise ValueError("t 는 정수 텐서여야 한다 / t must be an integer tensor")
        t = t.long()
        if bool((t < 0).any()) or bool((t >= self.num_timesteps).any()):
            raise ValueError(f"t 는 0..{self.num_timesteps - 1} 범위여야 한다 / t out of range [0, T-1]")
        return t

    def sample_timesteps(self, batch: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> torch.Tensor:
        """학습용 시각 t ~ Uniform{0, …, T−1} 를 ``batch`` 개 뽑는다."""
        gen_device = generator.device if generator is not None else device
        return torch.randint(0, self.num_timesteps, (batch,), generator=generator, device=gen_device).to(device)

    # ------------------------------------------------------------------ 순방향 과정
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """닫힌 형태의 순방향 과정 (DDPM 식 4):  x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε,  ε ~ N(0, I)."""
        t = self._check_t(t, x0.shape[0], x0.device)
        if noise is None:
            noise = _randn(tuple(x0.shape), generator, x0.device, x0.dtype)
        return (_extract(self.sqrt_alphas_cumprod, t, x0.ndim) * x0
                + _extract(self.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise)

    def q_step(self, x_prev: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """한 단계 순방향 q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I) 에서 표본을 뽑는다."""
        t = self._check_t(t, x_prev.shape[0], x_prev.device)
        if noise is None:
            noise = _randn(tuple(x_prev.shape), generator, x_prev.device, x_prev.dtype)
        return (_extract(self.alphas, t, x_prev.ndim).sqrt() * x_prev
                + _extract(self.betas, t, x_prev.ndim).sqrt() * noise)

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """사후 분포 q(x_{t−1} | x_t, x_0) 의 평균 μ̃_t, 분산 β̃_t, 로그 분산 (DDPM 식 6, 7)."""
        t = self._check_t(t, xt.shape[0], xt.device)
        mean = _extract(self.posterior_mean_coef1, t, xt.ndim) * x0 + _extract(self.posterior_mean_coef2, t, xt.ndim) * xt
        var = _extract(self.posterior_variance, t, xt.ndim)
        log_var = _extract(self.posterior_log_variance_clipped, t, xt.ndim)
        return mean, var, log_var

    # ------------------------------------------------------------------ ε, x_0, v 변환
    def predict_x0_from_eps(self, xt: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t."""
        t = self._check_t(t, xt.shape[0], xt.device)
        return _extract(self.sqrt_recip_alphas_cumprod, t, xt.ndim) * xt - _extract(self.sqrt_recipm1_alphas_cumprod, t, xt.ndim) * eps

    def predict_eps_from_x0(self, xt: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor) -> torch.Tensor:
        """ε = (x_t − √ᾱ_t x_0) / √(1−ᾱ_t)."""
        t = self._check_t(t, xt.shape[0], xt.device)
        return (_extract(self.sqrt_recip_alphas_cumprod, t, xt.ndim) * xt - x0) / _extract(self.sqrt_recipm1_alphas_cumprod, t, xt.ndim)

    def get_v(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """v-예측의 목표  v = √ᾱ_t ε − √(1−ᾱ_t) x_0  (Salimans & Ho, 2022)."""
        t = self._check_t(t, x0.shape[0], x0.device)
        return _extract(self.sqrt_alphas_cumprod, t, x0.ndim) * eps - _extract(self.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * x0

    def predict_x0_from_v(self, xt: torch.Tensor, t: torch.Tensor | int, v: torch.Tensor) -> torch.Tensor:
        """x_0 = √ᾱ_t x_t − √(1−ᾱ_t) v."""
        t = self._check_t(t, xt.shape[0], xt.device)
        return _extract(self.sqrt_alphas_cumprod, t, xt.ndim) * xt - _extract(self.sqrt_one_minus_alphas_cumprod, t, xt.ndim) * v

    def predict_eps_from_v(self, xt: torch.Tensor, t: torch.Tensor | int, v: torch.Tensor) -> torch.Tensor:
        """ε = √(1−ᾱ_t) x_t + √ᾱ_t v."""
        t = self._check_t(t, xt.shape[0], xt.device)
        return _extract(self.sqrt_one_minus_alphas_cumprod, t, xt.ndim) * xt + _extract(self.sqrt_alphas_cumprod, t, xt.ndim) * v

    def model_predictions(self, model: Model, xt: torch.Tensor, t: torch.Tensor, clip_x0: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """신경망 출력을 (ε̂, x̂_0) 쌍으로 바꾼다. ``clip_x0`` 이면 x̂_0 을 [−1, 1] 로 자르고 ε̂ 을 다시 맞춘다.

        반정밀도(autocast) 출력은 float32 로 올리고, float64 출력은 그대로 둔다.
        """
        out = model(xt, t)
        out = out.to(torch.promote_types(out.dtype, torch.float32))
        if self.prediction_type == "eps":
            eps = out
            x0 = self.predict_x0_from_eps(xt, t, eps)
        elif self.prediction_type == "x0":
            x0 = out
            eps = self.predict_eps_from_x0(xt, t, x0)
        else:
            x0 = self.predict_x0_from_v(xt, t, out)
            eps = self.predict_eps_from_v(xt, t, out)
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
            eps = self.predict_eps_from_x0(xt, t, x0)
        return eps, x0

    # ------------------------------------------------------------------ 학습 손실
    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``prediction_type`` 에 맞는 회귀 목표 (ε, x_0 또는 v)."""
        if self.prediction_type == "eps":
            return noise
        if self.prediction_type == "x0":
            return x0
        return self.get_v(x0, noise, t)

    def training_loss(self, model: Model, x0: torch.Tensor, t: torch.Tensor | None = None,
                      noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """단순화된 목적 함수 L_simple (DDPM 식 14) 과 그 변형들의 배치 평균.

        무작위 시각 t 와 노이즈 ε 으로 x_t 를 **한 번에** 만들고(역방향 사슬을 돌리지 않는다),
        신경망 출력과 목표 사이의 l2 / l1 / huber 손실을 계산한다.
        """
        b = x0.shape[0]
        if t is None:
            t = self.sample_timesteps(b, x0.device, generator)
        t = self._check_t(t, b, x0.device)
        if noise is None:
            noise = _randn(tuple(x0.shape), generator, x0.device, x0.dtype)
        xt = self.q_sample(x0, t, noise)
        pred = model(xt, t).float()
        target = self.training_target(x0, noise, t)
        if pred.shape != target.shape:
            raise ValueError(
                f"모델 출력 모양 {tuple(pred.shape)} 이 목표 {tuple(target.shape)} 와 다르다 / model output shape mismatch"
            )
        if self.loss_type == "l2":
            return F.mse_loss(pred, target)
        if self.loss_type == "l1":
            return F.l1_loss(pred, target)
        return F.smooth_l1_loss(pred, target)

    # ------------------------------------------------------------------ 역방향 과정 (샘플링)
    def p_mean_variance(self, model: Model, xt: torch.Tensor, t: torch.Tensor, clip_x0: bool = True,
                        variance: Literal["posterior", "beta"] = "posterior") -> dict[str, torch.Tensor]:
        """p_θ(x_{t−1} | x_t) 의 평균과 분산.  평균은 x̂_0 을 넣은 사후 평균 μ̃_t(x_t, x̂_0),
        분산은 ``"posterior"`` 면 β̃_t, ``"beta"`` 면 β_t (DDPM 논문은 둘 다 비슷하다고 보고했다)."""
        eps, x0 = self.model_predictions(model, xt, t, clip_x0)
        mean, post_var, post_log_var = self.q_posterior(x0, xt, t)
        if variance == "beta":
            var = _extract(self.betas, t, xt.ndim)
            log_var = var.log()
        elif variance == "posterior":
            var, log_var = post_var, post_log_var
        else:
            raise ValueError("variance 는 'posterior' 또는 'beta' / variance must be 'posterior' or 'beta'")
        return {"mean": mean, "variance": var, "log_variance": log_var, "x0": x0, "eps": eps}

    @torch.no_grad()
    def p_sample(self, model: Model, xt: torch.Tensor, t: int, clip_x0: bool = True,
                 generator: torch.Generator | None = None, variance: Literal["posterior", "beta"] = "posterior") -> tuple[torch.Tensor, torch.Tensor]:
        """알고리즘 2 의 한 줄: x_{t−1} = μ_θ(x_t, t) + σ_t z  (t = 0 에서는 z = 0). (x_{t−1}, x̂_0) 를 돌려준다."""
        tt = self._check_t(t, xt.shape[0], xt.device)
        out = self.p_mean_variance(model, xt, tt, clip_x0, variance)
        if t == 0:
            return out["mean"], out["x0"]
        z = _randn(tuple(xt.shape), generator, xt.device, xt.dtype)
        return out["mean"] + (0.5 * out["log_variance"]).exp() * z, out["x0"]

    @torch.no_grad()
    def ddim_step(self, model: Model, xt: torch.Tensor, t: int, t_prev: int, eta: float = 0.0, clip_x0: bool = True,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """DDIM 의 한 단계 (Song et al., 2021 식 12): t 에서 t_prev (< t, −1 이면 끝) 로 건너뛴다."""
        tt = self._check_t(t, xt.shape[0], xt.device)
        eps, x0 = self.model_predictions(model, xt, tt, clip_x0)
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[t_prev] if t_prev >= 0 else torch.ones((), device=xt.device)
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
        direction = (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        x_prev = a_prev.sqrt() * x0 + direction
        if eta > 0 and t_prev >= 0:
            x_prev = x_prev + sigma * _randn(tuple(xt.shape), generator, xt.device, xt.dtype)
        return x_prev, x0

    # ------------------------------------------------------------------ DPM-Solver++ (Lu et al., 2022)
    def _alpha_sigma_lambda(self, t: int) -> tuple[float, float, float]:
        """시각 ``t`` 의 α_t = √ᾱ_t, σ_t = √(1−ᾱ_t), λ_t = log(α_t/σ_t) (파이썬 float64).

        ``t = −1`` 은 논문의 ᾱ_0 = 1, 곧 σ = 0, λ = +∞ 이다. 1 − ᾱ_t 를 버퍼 ᾱ_t 에서 빼면 작은 t 에서 자릿수를
        잃으므로, float64 로 미리 계산해 둔 √ᾱ_t, √(1−ᾱ_t) 버퍼를 쓴다.
        """
        if t < 0:
            return 1.0, 0.0, math.inf
        alpha = float(self.sqrt_alphas_cumprod[t])
        sigma = float(self.sqrt_one_minus_alphas_cumprod[t])
        return alpha, sigma, math.log(alpha) - math.log(sigma)

    def lambdas(self) -> torch.Tensor:
        """모든 시각의 λ_t = log(α_t/σ_t) (길이 T, float64). t 가 커질수록 줄어든다."""
        return solvers.half_log_snr(self.sqrt_alphas_cumprod.double(), self.sqrt_one_minus_alphas_cumprod.double()).cpu()

    def solver_timesteps(self, steps: int | None = None, spacing: str | None = None) -> list[int]:
        """DPM-Solver++ 가 신경망을 부를 시각들 (큰 것부터, T−1 과 0 포함). 기본값은 ``solvers`` 의 상수."""
        return solvers.solver_timesteps(self.lambdas(), solvers.DEFAULT_STEPS if steps is None else steps,
                                        solvers.DEFAULT_SPACING if spacing is None else spacing)

    @torch.no_grad()
    def dpm_solver_step(self, model: Model, xt: torch.Tensor, t: int, t_prev: int,
                        history: tuple[int, torch.Tensor] | None = None,
                        clip_x0: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """DPM-Solver++(2M) 의 한 단계: 시각 ``t`` 에서 ``t_prev`` (< t, −1 이면 σ = 0 인 끝) 로 간다.

        Args:
            history: 바로 앞 단계의 ``(시각, x̂_0)``. 없으면(첫 단계) 1차, 있으면 2차 갱신을 한다.
            clip_x0: x̂_0 을 [−1, 1] 로 자를지 (데이터 예측 형태라서 자른 x̂_0 이 곧 갱신에 들어간다).

        ``(x_{t_prev}, x̂_0)`` 를 돌려준다. 다음 단계에는 ``history=(t, x̂_0)`` 을 넘긴다.

        마지막 단계(``t_prev = −1``)는 언제나 1차다. σ = 0 이면 λ = +∞ 라서 e^{−h} = 0, σ_{t_prev}/σ_t = 0 이고
        1차 갱신이 x̂_0 자체가 된다 (2차 보정의 r = h_{i−1}/h_i 는 0 이 되어 쓸 수 없다).
        diffusers 의 ``DPMSolverMultistepScheduler(final_sigmas_type="zero")`` 와 같은 처리다.
        """
        tt = self._check_t(t, xt.shape[0], xt.device)
        _, x0 = self.model_predictions(model, xt, tt, clip_x0)
        if t_prev < 0:
            return x0, x0
        _, sigma_cur, lam_cur = self._alpha_sigma_lambda(t)
        alpha_next, sigma_next, lam_next = self._alpha_sigma_lambda(t_prev)
        h = lam_next - lam_cur
        if history is None:
            x_next = solvers.dpm_solver_first_order(xt, x0, alpha_next, sigma_next, sigma_cur, h)
        else:
            t_before, x0_before = history
            h_before = lam_cur - self._alpha_sigma_lambda(t_before)[2]
            x_next = solvers.dpm_solver_second_order(xt, x0, x0_before, alpha_next, sigma_next, sigma_cur, h, h_before)
        return x_next, x0

    @torch.no_grad()
    def sample(self, model: Model, shape: tuple[int, ...], sampler: str = "ddpm", steps: int | None = None,
               eta: float = 0.0, clip_x0: bool = True, generator: torch.Generator | None = None,
               device: torch.device | str | None = None, return_trajectory: bool = False,
               trajectory_stride: int = 1, variance: Literal["posterior", "beta"] = "posterior",
               progress: bool = False, x_T: torch.Tensor | None = None,
               spacing: str | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x_T ~ N(0, I) 에서 시작해 이미지를 생성한다.

        Args:
            sampler: ``"ddpm"`` (알고리즘 2, T 단계 조상 샘플링), ``"ddim"`` 또는 ``"dpm-solver++"``
                (DPM-Solver++(2M), ``dpm_solver_step``).
            steps: DDIM·DPM-Solver++ 의 단계 수 = 신경망 호출 수 (기본: DDIM 은 T,
                DPM-Solver++ 는 ``solvers.DEFAULT_STEPS``). DDPM 은 언제나 T 단계다.
            eta: DDIM 의 η. 0 이면 결정적, 1 이면 DDPM 과 같은 분산.
            spacing: DPM-Solver++ 의 시각 간격 ``"time"``, ``"logsnr"``, ``"karras"``
                (기본: ``solvers.DEFAULT_SPACING``). 다른 샘플러에는 줄 수 없다.
            clip_x0: 매 단계 예측한 x̂_0 을 [−1, 1] 로 자를지.
            return_trajectory: ``True`` 면 ``(최종 이미지, 궤적)`` 을 돌려준다. 궤적은
                ``(S+1, B, C, H, W)`` CPU 텐서로 x_T 부터 최종 이미지까지
                ``trajectory_stride`` 단계마다 담는다 (마지막 프레임은 항상 포함).
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"알 수 없는 샘플러 '{sampler}' / unknown sampler: choose one of {SAMPLERS}")
        if trajectory_stride < 1:
            raise ValueError("trajectory_stride 는 1 이상 / trajectory_stride must be >= 1")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta 는 0 과 1 사이여야 한다 / eta must be in [0, 1], got {eta}")
        if spacing is not None and sampler != "dpm-solver++":
            raise ValueError(f"spacing 은 DPM-Solver++ 에만 쓴다 / spacing only applies to sampler='dpm-solver++', "
                             f"got sampler={sampler!r}")
        if sampler == "dpm-solver++" and eta != 0.0:
            raise ValueError(f"DPM-Solver++(2M) 은 결정적이라 η 를 받지 않는다 / DPM-Solver++(2M) is deterministic: "
                             f"eta must be 0, got {eta}")
        device = torch.device(device) if device is not None else self.betas.device
        x = _randn(tuple(shape), generator, device, self.betas.dtype) if x_T is None else x_T.to(device)
        if sampler == "ddpm":
            if steps not in (None, self.num_timesteps):
                raise ValueError(
                    f"DDPM 샘플러는 언제나 T={self.num_timesteps} 단계다. 단계를 줄이려면 --sampler ddim 을 써라 / "
                    "the DDPM sampler always uses T steps; use the DDIM sampler for fewer steps"
                )
            ts = list(range(self.num_timesteps - 1, -1, -1))
        elif sampler == "ddim":
            ts = ddim_timesteps(self.num_timesteps, steps if steps is not None else self.num_timesteps)
        else:
            ts = self.solver_timesteps(steps, spacing)
        history: tuple[int, torch.Tensor] | None = None
        frames = [x.detach().cpu()] if return_trajectory else None
        iterator = ts
        if progress:
            from tqdm import tqdm

            iterator = tqdm(ts, desc=f"{sampler} sampling", leave=False)
        for i, t in enumerate(iterator):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            if sampler == "ddpm":
                x, _ = self.p_sample(model, x, t, clip_x0, generator, variance)
            elif sampler == "ddim":
                x, _ = self.ddim_step(model, x, t, t_prev, eta, clip_x0, generator)
            else:
                x, x0 = self.dpm_solver_step(model, x, t, t_prev, history, clip_x0)
                history = (t, x0)
            if frames is not None and ((i + 1) % trajectory_stride == 0 or i + 1 == len(ts)):
                frames.append(x.detach().cpu())
        x = x.clamp(-1.0, 1.0) if clip_x0 else x
        if frames is not None:
            frames[-1] = x.detach().cpu()
            return x, torch.stack(frames)
        return x
