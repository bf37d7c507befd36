"""확산 모델: 순방향 q(x_t|x_0), 사후 분포 q(x_{t-1}|x_t, x_0), ε/x_0/v 변환, 학습 손실, 역과정의 한 스텝.

기호는 DDPM 논문(Ho et al., 2020)을 따른다. 코드의 타임스텝 인덱스 ``t`` 는 0 부터 T−1 까지이고
논문의 t = 1..T 에 해당한다 (``t = 0`` 이 논문의 t = 1). 주석의 ``식 chN-eq-…`` 는 책 N장의 식 번호다.

모든 스케줄 값은 float64 로 계산한 뒤 float32 버퍼로 저장하고, 타임스텝 ``t`` 의 값은
``_extract`` 로 배치마다 꺼낸다. 난수를 쓰는 모든 메서드는 ``generator`` 를 받는다.

타임스텝 ``t`` 는 사용자가 부르는 공개 메서드에서 한 번만 검사한다(``check_t``). 밑줄로 시작하는 내부 메서드는
검사한 ``t`` 를 받는다고 보고 다시 검사하지 않는다 (검사마다 장치와 한 번 주고받으므로).

스텝을 이어 x_T 에서 이미지까지 내려가는 반복(알고리즘 2, DDIM, DPM-Solver++)은 ``sampling.py`` 에 있다.
``sample``, ``sample_trajectory`` 는 그리로 넘기는 얇은 메서드다.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from . import sampling, solvers
from .configs import require
from .sampling import SamplerOptions, Trajectory
from .schedules import beta_schedule
from .timestep_sampling import TIMESTEP_SAMPLINGS, timestep_probabilities

__all__ = ["GaussianDiffusion", "PREDICTION_TYPES", "LOSS_TYPES"]

PredictionType = Literal["eps", "x0", "v"]
LossType = Literal["l1", "l2", "huber"]
PREDICTION_TYPES = ("eps", "x0", "v")
LOSS_TYPES = ("l1", "l2", "huber")

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Timesteps = torch.Tensor | int


def _randn(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device, dtype=torch.float32
) -> torch.Tensor:
    """``generator`` 가 있는 장치에서 표준 정규 난수를 뽑아 ``device`` 로 옮긴다.

    CPU 생성기로 GPU 텐서를 만들 수 있게 하려는 것이다 (같은 시드면 장치와 무관하게 같은 노이즈).
    """
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def _extract(buffer: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``buffer[t]`` 를 꺼내 ``(B, 1, 1, 1)`` 처럼 이미지와 곱할 수 있는 모양으로 만든다."""
    out = buffer.gather(0, t)
    return out.reshape(t.shape[0], *([1] * (ndim - 1)))


class GaussianDiffusion(nn.Module):
    """DDPM 의 확산 과정과 그 역과정.

    Args:
        betas: 길이 T 의 노이즈 분산 β_1..β_T (``beta_schedule`` 의 결과).
        prediction_type: 신경망이 예측하는 대상. ``"eps"`` (노이즈 ε, DDPM 기본),
            ``"x0"`` (원본 이미지), ``"v"`` (v = √ᾱ_t ε − √(1−ᾱ_t) x_0).
        loss_type: ``"l2"`` (MSE, 논문의 L_simple), ``"l1"``, ``"huber"`` (smooth L1).
        min_snr_gamma: 주면 Min-SNR-γ 가중치 (Hang et al., 2023) 로 타임스텝마다 손실에 무게를 준다
            (``loss_weight``; l2 손실에만). ``None`` 이면 논문의 L_simple 그대로 모든 t 에 같은 무게.
        timestep_sampling: 학습 타임스텝의 분포 (``timestep_sampling`` 모듈, 10장). ``"uniform"`` 은 논문대로
            고르게, ``"lognormal"`` 은 절반을 EDM 의 로그 정규 분포에서 뽑아 노이즈가 작은 t 를 더 자주 본다.
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

    def __init__(
        self,
        betas: torch.Tensor,
        prediction_type: PredictionType = "eps",
        loss_type: LossType = "l2",
        dtype: torch.dtype = torch.float32,
        min_snr_gamma: float | None = None,
        timestep_sampling: str = "uniform",
    ) -> None:
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64)
        require(
            betas.ndim == 1 and len(betas) >= 2,
            "betas 는 길이 2 이상의 1차원 텐서여야 한다 / betas must be a 1-D tensor of length >= 2",
        )
        require(
            bool(((betas > 0) & (betas < 1)).all()),
            "모든 β_t 는 0 < β_t < 1 이어야 한다 / every beta must lie in (0, 1)",
        )
        require(
            prediction_type in PREDICTION_TYPES,
            f"알 수 없는 예측 대상 '{prediction_type}' / unknown prediction_type: choose one of {PREDICTION_TYPES}",
        )
        require(
            loss_type in LOSS_TYPES, f"알 수 없는 손실 '{loss_type}' / unknown loss_type: choose one of {LOSS_TYPES}"
        )
        require(
            min_snr_gamma is None or min_snr_gamma > 0,
            f"min_snr_gamma 는 양수 / min_snr_gamma must be > 0 (or None), got {min_snr_gamma}",
        )
        require(
            min_snr_gamma is None or loss_type == "l2",
            f"Min-SNR 가중치는 l2 손실에만 쓴다 / min_snr_gamma needs loss_type 'l2', got '{loss_type}'",
        )
        require(
            timestep_sampling in TIMESTEP_SAMPLINGS,
            f"알 수 없는 타임스텝 분포 '{timestep_sampling}' / unknown timestep_sampling: choose one of "
            f"{TIMESTEP_SAMPLINGS}",
        )
        self.prediction_type = prediction_type
        self.loss_type = loss_type
        self.min_snr_gamma = min_snr_gamma
        self.timestep_sampling = timestep_sampling

        alphas = 1.0 - betas  # α_t = 1 − β_t  (식 ch2-eq-alphas)
        alphas_cumprod = torch.cumprod(alphas, 0)  # ᾱ_t = ∏_{s≤t} α_s
        alphas_cumprod_prev = F.pad(alphas_cumprod[:-1], (1, 0), value=1.0)  # ᾱ_{t−1}, ᾱ_0 = 1
        # 사후 분포 q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I)  (DDPM 식 6, 7; 식 ch8-eq-post-mean, ch8-eq-beta-tilde)
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
            "posterior_log_variance_clipped": torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]])),
            # μ̃_t = coef1 · x_0 + coef2 · x_t
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.to(dtype), persistent=False)
        #: 학습 타임스텝의 분포 p(t) (float64, CPU; 뽑는 난수 생성기의 장치로 옮겨 쓴다)
        self.timestep_probs = timestep_probabilities(alphas_cumprod, timestep_sampling)

    # ------------------------------------------------------------------ 기본 정보
    @classmethod
    def from_schedule(cls, schedule: str = "linear", timesteps: int = 1000, **kwargs) -> GaussianDiffusion:
        """스케줄 이름과 T 로 바로 만든다: ``GaussianDiffusion.from_schedule("cosine", 1000)``."""
        return cls(beta_schedule(schedule, timesteps), **kwargs)

    @property
    def num_timesteps(self) -> int:
        """T: 타임스텝의 수."""
        return int(self.betas.shape[0])

    def check_t(self, t: Timesteps, batch: int, device: torch.device | str) -> torch.Tensor:
        """타임스텝 ``t`` 를 ``(B,)`` long 텐서로 맞추고 0..T−1 범위인지 검사한다. ``(B, 1)`` 과 스칼라도 받아 준다.

        파이썬 정수는 장치와 주고받지 않고 검사하고, 텐서는 ``.any()`` 한 번(장치와 한 번 동기화)으로 검사한다.
        """
        out_of_range = f"t 는 0..{self.num_timesteps - 1} 범위여야 한다 / t out of range [0, T-1]"
        if isinstance(t, int) and not isinstance(t, bool):
            require(0 <= t < self.num_timesteps, out_of_range)
            return torch.full((batch,), t, dtype=torch.long, device=device)
        t = torch.as_tensor(t, device=device)
        if t.ndim == 2 and t.shape[1] == 1:
            t = t[:, 0]
        if t.ndim == 0:
            t = t.expand(batch)
        require(
            t.ndim == 1 and t.shape[0] == batch,
            f"t 는 (B,) 모양이어야 한다 / t must have shape (B,)=({batch},), got {tuple(t.shape)}",
        )
        require(not t.dtype.is_floating_point, "t 는 정수 텐서여야 한다 / t must be an integer tensor")
        t = t.long()
        require(not bool(((t < 0) | (t >= self.num_timesteps)).any()), out_of_range)
        return t

    def sample_timesteps(
        self, batch: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """학습용 타임스텝 t ~ p(t) 를 ``batch`` 개 뽑는다 (``timestep_probs``; 기본은 Uniform{0, …, T−1}).

        고른 분포는 예전과 같은 ``randint`` 로 뽑으므로 같은 시드의 학습이 예전과 비트 단위로 같다.
        """
        gen_device = generator.device if generator is not None else device
        if self.timestep_sampling == "uniform":
            return torch.randint(0, self.num_timesteps, (batch,), generator=generator, device=gen_device).to(device)
        probs = self.timestep_probs.to(gen_device)
        return torch.multinomial(probs, batch, replacement=True, generator=generator).to(device)

    def sample_prior(
        self, shape: tuple[int, ...], generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """역과정의 출발점 x_T ~ N(0, I) (식 ch8-eq-xT). 버퍼와 같은 자료형으로 뽑는다."""
        device = torch.device(device) if device is not None else self.betas.device
        return _randn(tuple(shape), generator, device, self.betas.dtype)

    # ------------------------------------------------------------------ 순방향 과정
    def q_sample(
        self,
        x0: torch.Tensor,
        t: Timesteps,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """닫힌 형태의 순방향 과정 (DDPM 식 4, 식 ch2-eq-closed-reparam):  x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε,  ε ~ N(0, I)."""
        t = self.check_t(t, x0.shape[0], x0.device)
        if noise is None:
            noise = _randn(tuple(x0.shape), generator, x0.device, x0.dtype)
        return self._q_sample(x0, t, noise)

    def _q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return (
            _extract(self.sqrt_alphas_cumprod, t, x0.ndim) * x0  # 식 ch2-eq-closed-reparam
            + _extract(self.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise
        )

    def q_step(
        self,
        x_prev: torch.Tensor,
        t: Timesteps,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """한 걸음 순방향 q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I) 에서 표본을 뽑는다 (식 ch2-eq-step)."""
        t = self.check_t(t, x_prev.shape[0], x_prev.device)
        if noise is None:
            noise = _randn(tuple(x_prev.shape), generator, x_prev.device, x_prev.dtype)
        return (
            _extract(self.alphas, t, x_prev.ndim).sqrt() * x_prev  # 식 ch2-eq-step-reparam
            + _extract(self.betas, t, x_prev.ndim).sqrt() * noise
        )

    def q_posterior(
        self, x0: torch.Tensor, xt: torch.Tensor, t: Timesteps
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """사후 분포 q(x_{t−1} | x_t, x_0) 의 평균 μ̃_t, 분산 β̃_t, 로그 분산 (DDPM 식 6, 7)."""
        return self._q_posterior(x0, xt, self.check_t(t, xt.shape[0], xt.device))

    def _q_posterior(
        self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # μ̃_t = coef1 · x_0 + coef2 · x_t  (식 ch8-eq-post-mean)
        mean = (
            _extract(self.posterior_mean_coef1, t, xt.ndim) * x0 + _extract(self.posterior_mean_coef2, t, xt.ndim) * xt
        )
        var = _extract(self.posterior_variance, t, xt.ndim)  # β̃_t (식 ch8-eq-beta-tilde)
        log_var = _extract(self.posterior_log_variance_clipped, t, xt.ndim)
        return mean, var, log_var

    # ------------------------------------------------------------------ ε, x_0, v 변환
    # x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε 이므로 셋 중 둘(x_t 와 하나)을 알면 나머지를 안다. 공개 메서드는 t 를 검사하고
    # 밑줄 메서드가 식을 계산한다. ``eps_x0_from_output`` 은 신경망 출력을 prediction_type 에 맞게 (ε̂, x̂_0) 로 바꾼다.
    def predict_x0_from_eps(self, xt: torch.Tensor, t: Timesteps, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t  (식 ch7-eq-x0-eps, ch8-eq-x0hat)."""
        return self._x0_from_eps(xt, self.check_t(t, xt.shape[0], xt.device), eps)

    def predict_eps_from_x0(self, xt: torch.Tensor, t: Timesteps, x0: torch.Tensor) -> torch.Tensor:
        """ε = (x_t − √ᾱ_t x_0) / √(1−ᾱ_t)  (식 ch7-eq-x0-eps)."""
        return self._eps_from_x0(xt, self.check_t(t, xt.shape[0], xt.device), x0)

    def get_v(self, x0: torch.Tensor, eps: torch.Tensor, t: Timesteps) -> torch.Tensor:
        """v-예측의 목표  v = √ᾱ_t ε − √(1−ᾱ_t) x_0  (Salimans & Ho, 2022; 식 ch7-eq-v)."""
        return self._v(x0, eps, self.check_t(t, x0.shape[0], x0.device))

    def predict_x0_from_v(self, xt: torch.Tensor, t: Timesteps, v: torch.Tensor) -> torch.Tensor:
        """x_0 = √ᾱ_t x_t − √(1−ᾱ_t) v  (식 ch7-eq-v)."""
        return self._x0_from_v(xt, self.check_t(t, xt.shape[0], xt.device), v)

    def predict_eps_from_v(self, xt: torch.Tensor, t: Timesteps, v: torch.Tensor) -> torch.Tensor:
        """ε = √(1−ᾱ_t) x_t + √ᾱ_t v  (식 ch7-eq-v)."""
        return self._eps_from_v(xt, self.check_t(t, xt.shape[0], xt.device), v)

    def eps_x0_from_output(
        self, xt: torch.Tensor, t: Timesteps, out: torch.Tensor, clip_x0: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """신경망 출력 ``out`` (``prediction_type`` 에 따라 ε, x_0 또는 v)을 (ε̂, x̂_0) 쌍으로 바꾼다.

        ``clip_x0`` 이면 x̂_0 을 [−1, 1] 로 자르고 ε̂ 을 다시 맞춘다. 신경망을 부르지 않는다 (부르는 것은
        ``model_predictions``). 반정밀도(autocast) 출력은 float32 로 올리고, float64 출력은 그대로 둔다.
        """
        return self._eps_x0_from_output(xt, self.check_t(t, xt.shape[0], xt.device), out, clip_x0)

    def _x0_from_eps(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return (
            _extract(self.sqrt_recip_alphas_cumprod, t, xt.ndim) * xt
            - _extract(self.sqrt_recipm1_alphas_cumprod, t, xt.ndim) * eps
        )

    def _eps_from_x0(self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return (_extract(self.sqrt_recip_alphas_cumprod, t, xt.ndim) * xt - x0) / _extract(
            self.sqrt_recipm1_alphas_cumprod, t, xt.ndim
        )

    def _v(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (
            _extract(self.sqrt_alphas_cumprod, t, x0.ndim) * eps
            - _extract(self.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * x0
        )

    def _x0_from_v(self, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (
            _extract(self.sqrt_alphas_cumprod, t, xt.ndim) * xt
            - _extract(self.sqrt_one_minus_alphas_cumprod, t, xt.ndim) * v
        )

    def _eps_from_v(self, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (
            _extract(self.sqrt_one_minus_alphas_cumprod, t, xt.ndim) * xt
            + _extract(self.sqrt_alphas_cumprod, t, xt.ndim) * v
        )

    def _eps_x0_from_output(
        self, xt: torch.Tensor, t: torch.Tensor, out: torch.Tensor, clip_x0: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = out.to(torch.promote_types(out.dtype, torch.float32))
        if self.prediction_type == "eps":
            eps, x0 = out, self._x0_from_eps(xt, t, out)
        elif self.prediction_type == "x0":
            eps, x0 = self._eps_from_x0(xt, t, out), out
        else:
            eps, x0 = self._eps_from_v(xt, t, out), self._x0_from_v(xt, t, out)
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
            eps = self._eps_from_x0(xt, t, x0)
        return eps, x0

    def model_predictions(
        self, model: Model, xt: torch.Tensor, t: Timesteps, clip_x0: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """신경망을 불러 그 출력을 (ε̂, x̂_0) 쌍으로 바꾼다 (``eps_x0_from_output``)."""
        return self._model_predictions(model, xt, self.check_t(t, xt.shape[0], xt.device), clip_x0)

    def _model_predictions(
        self, model: Model, xt: torch.Tensor, t: torch.Tensor, clip_x0: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._eps_x0_from_output(xt, t, model(xt, t), clip_x0)

    # ------------------------------------------------------------------ 학습 손실
    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: Timesteps) -> torch.Tensor:
        """``prediction_type`` 에 맞는 회귀 목표 (ε, x_0 또는 v)."""
        return self._training_target(x0, noise, self.check_t(t, x0.shape[0], x0.device))

    def _training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "eps":
            return noise
        if self.prediction_type == "x0":
            return x0
        return self._v(x0, noise, t)

    def training_loss(
        self,
        model: Model,
        x0: torch.Tensor,
        t: Timesteps | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """단순화된 목적 함수 L_simple (DDPM 식 14, 식 ch7-eq-lsimple) 과 그 변형들의 배치 평균.

        무작위 타임스텝 t 와 노이즈 ε 으로 x_t 를 **한 번에** 만들고(역방향 사슬을 돌리지 않는다),
        신경망 출력과 목표 사이의 l2 / l1 / huber (식 ch7-eq-huber) 손실을 계산한다.
        조건부 모델이면 ``labels`` (B,) 를 신경망에 함께 준다 (11장; ∅ 으로 바꾸는 일은 학습 루프가 한다).
        ``min_snr_gamma`` 가 있으면 이미지마다의 l2 오차에 ``loss_weight(t)`` 를 곱해 평균한다 (Min-SNR-γ, 10장).
        """
        b = x0.shape[0]
        if t is None:
            t = self.sample_timesteps(b, x0.device, generator)
        t = self.check_t(t, b, x0.device)
        if noise is None:
            noise = _randn(tuple(x0.shape), generator, x0.device, x0.dtype)
        xt = self._q_sample(x0, t, noise)
        pred = (model(xt, t) if labels is None else model(xt, t, labels)).float()
        target = self._training_target(x0, noise, t)
        require(
            pred.shape == target.shape,
            f"모델 출력 모양 {tuple(pred.shape)} 이 목표 {tuple(target.shape)} 와 다르다 / model output shape mismatch",
        )
        if self.min_snr_gamma is not None:  # 식 (ch10-eq-min-snr): 이미지마다 평균 낸 오차에 w(t) 를 곱한다
            per_sample = (pred - target).square().flatten(1).mean(1)
            return (self._loss_weight(t) * per_sample).mean()
        if self.loss_type == "l2":
            return F.mse_loss(pred, target)
        if self.loss_type == "l1":
            return F.l1_loss(pred, target)
        return F.smooth_l1_loss(pred, target)

    def loss_weight(self, t: Timesteps) -> torch.Tensor:
        """타임스텝마다의 손실 무게 w(t) (모양 (B,)). ``min_snr_gamma`` 가 없으면 1.

        Min-SNR-γ (Hang et al., 2023): x_0 공간의 오차 ‖x_0 − x̂_0‖² 에 min(SNR(t), γ) 의 무게를 준다
        (SNR(t) = ᾱ_t / (1 − ᾱ_t)). 예측 대상마다 그 오차와의 비례 관계가 다르므로 무게도 다르다:
        ‖ε − ε̂‖² = SNR·‖x_0 − x̂_0‖², ‖v − v̂‖² = (SNR + 1)·‖x_0 − x̂_0‖² 이어서

        - ε 예측: w = min(SNR, γ) / SNR   (노이즈가 적은 t 의 무게를 줄인다; SNR < γ 면 1)
        - x_0 예측: w = min(SNR, γ)
        - v 예측: w = min(SNR, γ) / (SNR + 1)
        """
        tt = torch.as_tensor(t).reshape(-1)
        return self._loss_weight(self.check_t(tt, tt.numel(), self.betas.device))

    def _loss_weight(self, tt: torch.Tensor) -> torch.Tensor:
        """``loss_weight`` 의 계산. ``tt`` 는 ``check_t`` 를 거친 (B,) 타임스텝이다 (학습 스텝마다 다시 검사하지 않는다)."""
        if self.min_snr_gamma is None:
            return torch.ones(tt.shape, device=tt.device)
        abar = self.alphas_cumprod.double()[tt]
        snr = abar / (1 - abar)
        clipped = snr.clamp(max=self.min_snr_gamma)
        if self.prediction_type == "eps":
            w = clipped / snr
        elif self.prediction_type == "x0":
            w = clipped
        else:
            w = clipped / (snr + 1)
        return w.float()

    # ------------------------------------------------------------------ 역과정의 한 스텝
    def p_mean_variance(
        self,
        model: Model,
        xt: torch.Tensor,
        t: Timesteps,
        clip_x0: bool = True,
        variance: Literal["posterior", "beta"] = "posterior",
    ) -> dict[str, torch.Tensor]:
        """p_θ(x_{t−1} | x_t) 의 평균과 분산.  평균은 x̂_0 을 넣은 사후 평균 μ̃_t(x_t, x̂_0),
        분산은 ``"posterior"`` 면 β̃_t, ``"beta"`` 면 β_t (DDPM 논문은 둘 다 비슷하다고 보고했다)."""
        return self._p_mean_variance(model, xt, self.check_t(t, xt.shape[0], xt.device), clip_x0, variance)

    def _p_mean_variance(
        self, model: Model, xt: torch.Tensor, t: torch.Tensor, clip_x0: bool, variance: str
    ) -> dict[str, torch.Tensor]:
        require(
            variance in ("posterior", "beta"),
            "variance 는 'posterior' 또는 'beta' / variance must be 'posterior' or 'beta'",
        )
        eps, x0 = self._model_predictions(model, xt, t, clip_x0)  # x̂_0 (식 ch8-eq-x0hat)
        mean, var, log_var = self._q_posterior(x0, xt, t)  # μ̃_t(x_t, x̂_0) (식 ch8-eq-post-mean)
        if variance == "beta":  # σ_t² = β_t 를 고른 경우
            var = _extract(self.betas, t, xt.ndim)
            log_var = var.log()
        return {"mean": mean, "variance": var, "log_variance": log_var, "x0": x0, "eps": eps}

    @torch.no_grad()
    def p_sample(
        self,
        model: Model,
        xt: torch.Tensor,
        t: int,
        clip_x0: bool = True,
        generator: torch.Generator | None = None,
        variance: Literal["posterior", "beta"] = "posterior",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """알고리즘 2 의 한 줄: x_{t−1} = μ_θ(x_t, t) + σ_t z  (식 ch8-eq-step; t = 0 에서는 z = 0). (x_{t−1}, x̂_0) 를 돌려준다."""
        tt = self.check_t(t, xt.shape[0], xt.device)
        out = self._p_mean_variance(model, xt, tt, clip_x0, variance)
        if t == 0:
            return out["mean"], out["x0"]
        z = _randn(tuple(xt.shape), generator, xt.device, xt.dtype)  # z ~ N(0, I) (식 ch8-eq-z)
        return out["mean"] + (0.5 * out["log_variance"]).exp() * z, out["x0"]

    @torch.no_grad()
    def ddim_step(
        self,
        model: Model,
        xt: torch.Tensor,
        t: int,
        t_prev: int,
        eta: float = 0.0,
        clip_x0: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DDIM 의 한 스텝 (Song et al., 2021 식 12; 식 ch9-eq-ddim-step): t 에서 t_prev (< t, −1 이면 끝) 로 건너뛴다."""
        tt = self.check_t(t, xt.shape[0], xt.device)
        eps, x0 = self._model_predictions(model, xt, tt, clip_x0)  # x̂_0 (식 ch9-eq-x0hat)
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[t_prev] if t_prev >= 0 else torch.ones((), device=xt.device)
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()  # σ_t(η) (식 ch9-eq-sigma)
        direction = (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        x_prev = a_prev.sqrt() * x0 + direction  # 식 ch9-eq-ddim-step
        if eta > 0 and t_prev >= 0:
            x_prev = x_prev + sigma * _randn(tuple(xt.shape), generator, xt.device, xt.dtype)
        return x_prev, x0

    # ------------------------------------------------------------------ DPM-Solver++ (Lu et al., 2022)
    def _alpha_sigma_lambda(self, t: int) -> tuple[float, float, float]:
        """타임스텝 ``t`` 의 α_t = √ᾱ_t, σ_t = √(1−ᾱ_t), λ_t = log(α_t/σ_t) (파이썬 float64, 식 ch9-eq-lambda).

        ``t = −1`` 은 논문의 ᾱ_0 = 1, 곧 σ = 0, λ = +∞ 이다. 1 − ᾱ_t 를 버퍼 ᾱ_t 에서 빼면 작은 t 에서 자릿수를
        잃으므로, float64 로 미리 계산해 둔 √ᾱ_t, √(1−ᾱ_t) 버퍼를 쓴다.
        """
        if t < 0:
            return 1.0, 0.0, math.inf
        alpha = float(self.sqrt_alphas_cumprod[t])
        sigma = float(self.sqrt_one_minus_alphas_cumprod[t])
        return alpha, sigma, math.log(alpha) - math.log(sigma)

    def lambdas(self) -> torch.Tensor:
        """모든 타임스텝의 λ_t = log(α_t/σ_t) (길이 T, float64, 식 ch9-eq-lambda). t 가 커질수록 줄어든다."""
        return solvers.half_log_snr(
            self.sqrt_alphas_cumprod.double(), self.sqrt_one_minus_alphas_cumprod.double()
        ).cpu()

    def solver_timesteps(self, steps: int | None = None, spacing: str | None = None) -> list[int]:
        """DPM-Solver++ 가 신경망을 부를 타임스텝들 (큰 것부터, T−1 과 0 포함). 기본값은 ``solvers`` 의 상수."""
        return solvers.solver_timesteps(
            self.lambdas(),
            solvers.DEFAULT_STEPS if steps is None else steps,
            solvers.DEFAULT_SPACING if spacing is None else spacing,
        )

    @torch.no_grad()
    def dpm_solver_step(
        self,
        model: Model,
        xt: torch.Tensor,
        t: int,
        t_prev: int,
        history: tuple[int, torch.Tensor] | None = None,
        clip_x0: bool = True,
        stochastic: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DPM-Solver++(2M) 의 한 스텝: 타임스텝 ``t`` 에서 ``t_prev`` (< t, −1 이면 σ = 0 인 끝) 로 간다.

        Args:
            history: 바로 앞 스텝의 ``(타임스텝, x̂_0)``. 없으면(첫 스텝) 1차, 있으면 2차 갱신을 한다.
            clip_x0: x̂_0 을 [−1, 1] 로 자를지 (데이터 예측 형태라서 자른 x̂_0 이 곧 갱신에 들어간다).
            stochastic: 참이면 SDE 판(SDE-DPM-Solver++(2M), 식 ch9-eq-sde-dpm)으로, 스텝마다 ``generator`` 로
                새 노이즈 z 를 뽑아 더한다.

        ``(x_{t_prev}, x̂_0)`` 를 돌려준다. 다음 스텝에는 ``history=(t, x̂_0)`` 을 넘긴다.

        마지막 스텝(``t_prev = −1``)은 언제나 1차다. σ = 0 이면 λ = +∞ 라서 e^{−h} = 0, σ_{t_prev}/σ_t = 0 이고
        1차 갱신이 x̂_0 자체가 된다 (2차 보정의 r = h_{i−1}/h_i 는 0 이 되어 쓸 수 없다).
        diffusers 의 ``DPMSolverMultistepScheduler(final_sigmas_type="zero")`` 와 같은 처리다. SDE 판도 같다
        (σ = 0 이면 새 노이즈의 몫 σ √(1 − e^{−2h}) 도 0 이다).
        """
        tt = self.check_t(t, xt.shape[0], xt.device)
        _, x0 = self._model_predictions(model, xt, tt, clip_x0)
        if t_prev < 0:
            return x0, x0
        _, sigma_cur, lam_cur = self._alpha_sigma_lambda(t)
        alpha_next, sigma_next, lam_next = self._alpha_sigma_lambda(t_prev)
        h = lam_next - lam_cur
        if history is None:  # 1차: x̂_0 그대로 (식 ch9-eq-dpm1)
            d = x0
        else:  # 2차: x̂_0 을 λ 에서 직선으로 늘인 D_i (식 ch9-eq-dpm2-d)
            t_before, x0_before = history
            d = solvers.second_order_data(x0, x0_before, h, lam_cur - self._alpha_sigma_lambda(t_before)[2])
        if stochastic:  # SDE 판 (식 ch9-eq-sde-dpm)
            z = _randn(tuple(xt.shape), generator, xt.device, xt.dtype)
            return solvers.sde_dpm_solver_update(xt, d, alpha_next, sigma_next, sigma_cur, h, z), x0
        return solvers.dpm_solver_first_order(
            xt, d, alpha_next, sigma_next, sigma_cur, h
        ), x0  # 식 ch9-eq-dpm1, ch9-eq-dpm2

    # ------------------------------------------------------------------ 샘플링 (반복은 sampling.py)
    def sample(
        self,
        model: Model,
        shape: tuple[int, ...],
        sampler: str = "ddpm",
        *,
        x_T: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
        labels: torch.Tensor | None = None,
        **options,
    ) -> torch.Tensor:
        """x_T ~ N(0, I) 에서 시작해 이미지를 생성한다: ``sampling.sample`` 로 넘긴다.

        ``sampler`` 와 ``options`` (steps, eta, spacing, clip_x0, variance, guidance) 는 ``sampling.SamplerOptions`` 의
        항목이다. 조건부 모델이면 ``labels`` 로 클래스를 고른다 (11장).
        """
        return sampling.sample(
            self,
            model,
            shape,
            SamplerOptions(sampler, **options),
            x_T=x_T,
            generator=generator,
            device=device,
            progress=progress,
            labels=labels,
        )

    def sample_trajectory(
        self,
        model: Model,
        shape: tuple[int, ...],
        sampler: str = "ddpm",
        *,
        stride: int = 1,
        x_T: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
        labels: torch.Tensor | None = None,
        **options,
    ) -> Trajectory:
        """``sample`` 과 같은 이미지와, x_T 부터 ``stride`` 스텝마다 모은 궤적 ``(images, frames)``:
        ``sampling.sample_trajectory`` 로 넘긴다."""
        return sampling.sample_trajectory(
            self,
            model,
            shape,
            SamplerOptions(sampler, **options),
            stride=stride,
            x_T=x_T,
            generator=generator,
            device=device,
            progress=progress,
            labels=labels,
        )
