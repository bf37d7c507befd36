"""변분 경계(variational bound)로 잰 음의 로그 우도, bits/dim 단위.

DDPM 의 음의 로그 우도 상계 (Ho et al., 2020, 식 5):

    L = L_T + Σ_{t=2}^{T} L_{t−1} + L_0                      (식 ch7-eq-vb-final)
    L_T     = KL( q(x_T | x_0) ‖ p(x_T) ),                  p(x_T) = N(0, I)   (식 ch2-eq-lt)
    L_{t−1} = E_q[ KL( q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t) ) ]
    L_0     = E_q[ −log p_θ(x_0 | x_1) ]                     (이산화한 가우스 디코더, 같은 논문 3.3 절)

세 항은 모두 nats 로 계산하고, 이미지 한 장의 차원 수 D 와 ln 2 로 나눠 bits/dim 로 바꾼다.
코드의 타임스텝 인덱스는 0 부터 센다(코드 t 가 논문의 t + 1). 그래서 코드 t ≥ 1 의 항은 논문의 L_t, 곧
KL(q(x_t | x_{t+1}, x_0) ‖ p_θ(x_t | x_{t+1})) 이고, 코드 t = 0 의 항이 L_0 다. 아래 함수는 코드 인덱스만 받는다.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .diffusion import GaussianDiffusion, Model

__all__ = [
    "normal_kl",
    "discretized_gaussian_log_likelihood",
    "prior_kl",
    "vb_terms",
    "BoundEstimate",
    "stratum_edges",
    "variational_bound",
]

BIN_HALF_WIDTH = 1.0 / 255.0  # [−1, 1] 에 놓인 256 가지 값의 이웃 간격은 2/255, 그 절반


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """원소마다 KL( N(mean1, e^logvar1) ‖ N(mean2, e^logvar2) ) (nats). 인자는 서로 브로드캐스트된다."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """이산화한 가우스 디코더의 원소별 로그 확률 log P(x) (nats).

    ``x`` 는 {0, …, 255} 를 [−1, 1] 로 옮긴 값이어야 한다. 값 x 의 칸은 [x − 1/255, x + 1/255] 이고, 양 끝 칸(−1, 1)은
    각각 −∞, +∞ 까지 늘려 256 칸의 확률 합이 정확히 1 이 되게 한다 (Ho et al., 2020, 식 13).
    """
    if not torch.is_floating_point(x):
        raise TypeError("x 는 [−1, 1] 의 실수 텐서여야 한다 / x must be a float tensor in [-1, 1]")
    inv_std = torch.exp(-log_scale)
    upper = (x - mean + BIN_HALF_WIDTH) * inv_std
    lower = (x - mean - BIN_HALF_WIDTH) * inv_std
    log_cdf_upper = torch.special.log_ndtr(upper)  # log Φ(위 경계)
    log_sf_lower = torch.special.log_ndtr(-lower)  # log (1 − Φ(아래 경계))
    mass = (torch.special.ndtr(upper) - torch.special.ndtr(lower)).clamp_min(1e-12)
    edge = 1.0 - 1e-3  # 끝 칸 판정: 격자 값 ±1 (반 칸보다 훨씬 작은 여유)
    return torch.where(x < -edge, log_cdf_upper, torch.where(x > edge, log_sf_lower, mass.log()))


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).sum(dim=1)


def prior_kl(diffusion: GaussianDiffusion, x0: torch.Tensor) -> torch.Tensor:
    """이미지마다 L_T = KL(q(x_T | x_0) ‖ N(0, I)) (nats). 신경망이 필요 없다."""
    x0 = x0.double()
    t_last = diffusion.num_timesteps - 1
    abar = diffusion.alphas_cumprod.double()[t_last]
    mean = abar.sqrt() * x0
    logvar = torch.log1p(-abar).expand_as(x0)
    return _per_image(normal_kl(mean, logvar, torch.zeros_like(x0), torch.zeros_like(x0)))


@torch.no_grad()
def vb_terms(
    diffusion: GaussianDiffusion,
    model: Model,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_x0: bool = True,
) -> torch.Tensor:
    """이미지마다 코드 타임스텝 ``t`` 의 항 (nats): t = 0 이면 L_0 = −log p_θ(x_0 | x_1), t ≥ 1 이면
    KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)). x_t 는 q(x_t | x_0) 에서 한 번 뽑는다.

    p_θ 의 분산은 ``GaussianDiffusion.p_mean_variance`` 의 기본값(β̃_t, t = 0 에서는 β̃_1 대신 β̃_2)이다.
    """
    t = diffusion.check_t(t, x0.shape[0], x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=torch.float32)
    xt = diffusion.q_sample(x0.float(), t, noise=noise)
    out = diffusion.p_mean_variance(model, xt, t, clip_x0=clip_x0)
    p_mean, p_logvar = out["mean"].double(), out["log_variance"].double()
    q_mean, _, q_logvar = diffusion.q_posterior(x0.float(), xt, t)
    kl = _per_image(normal_kl(q_mean.double(), q_logvar.double(), p_mean, p_logvar.expand_as(p_mean)))
    nll = -_per_image(discretized_gaussian_log_likelihood(x0.double(), p_mean, 0.5 * p_logvar.expand_as(p_mean)))
    return torch.where(t == 0, nll, kl)


def stratum_edges(num_timesteps: int, strata: int) -> torch.Tensor:
    """코드 타임스텝 1 … T−1 (``middle`` 의 인덱스 0 … T−2) 을 ``strata`` 개의 층으로 나누는 경계 (길이 strata + 1).

    경계는 등비수열을 따르되 층마다 적어도 한 칸을 갖게 한다. 그래서 앞쪽(작은 t, 항이 큰 곳)은 한 칸짜리 층이라 정확히
    계산되고, 뒤쪽의 넓은 층에서만 t 를 뽑는다.
    """
    n = num_timesteps - 1
    if not 1 <= strata <= n:
        raise ValueError(f"층 수는 1 이상 {n} 이하 / strata must be in [1, {n}], got {strata}")
    geo = torch.logspace(0, math.log10(n + 1), strata + 1, dtype=torch.float64) - 1  # 0 … n
    edges = [0]
    for k in range(1, strata):
        edges.append(int(min(max(edges[-1] + 1, round(float(geo[k]))), n - (strata - k))))
    edges.append(n)
    return torch.tensor(edges, dtype=torch.long)


@dataclass
class BoundEstimate:
    """``variational_bound`` 의 결과. 텐서는 모두 이미지마다의 bits/dim (float64) 이다."""

    total: torch.Tensor  # L_T + Σ L_{t−1} + L_0
    prior: torch.Tensor  # L_T
    diffusion: torch.Tensor  # Σ_{t=2}^{T} L_{t−1} (모든 t 또는 층화 추정)
    decoder: torch.Tensor  # L_0
    timesteps_used: int  # 이미지마다 계산한 중간 항의 수

    @property
    def mean(self) -> float:
        return float(self.total.mean())

    @property
    def stderr(self) -> float:
        """이미지 사이의 표준오차 (층화 추정이면 t 를 뽑는 잡음도 들어 있다)."""
        n = self.total.numel()
        return float(self.total.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")


@torch.no_grad()
def variational_bound(
    diffusion: GaussianDiffusion,
    model: Model,
    x0: torch.Tensor,
    num_timesteps: int | None = None,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    clip_x0: bool = True,
) -> BoundEstimate:
    """이미지마다 변분 경계를 bits/dim 로 계산한다.

    Args:
        x0: (B, C, H, W), {0, …, 255} 를 [−1, 1] 로 옮긴 이미지.
        num_timesteps: ``None`` 이면 중간 항 T − 1 개를 모두 계산한다(이미지당 신경망 T 번). 정수 K 면 코드 타임스텝
            1 … T−1 을 K 개의 층(``stratum_edges``: 작은 t 는 한 칸짜리, 큰 t 로 갈수록 넓어지는 등비 간격)으로 나눠
            층마다 t 하나를 고르게 뽑고, 층 크기를 곱해 합을 추정한다(불편 추정). 항이 작은 t 에 몰려 있어서, 같은 K 라도
            등간격 층보다 분산이 훨씬 작다.
        batch_size: 신경망에 한 번에 넣는 (이미지, t) 쌍의 수.
    """
    if x0.ndim != 4:
        raise ValueError(f"x0 는 (B, C, H, W) 여야 한다 / x0 must be (B, C, H, W), got shape {tuple(x0.shape)}")
    if float(x0.min()) < -1.0 - 1e-6 or float(x0.max()) > 1.0 + 1e-6:
        raise ValueError("x0 는 [−1, 1] 범위여야 한다 (to_model_range 로 옮긴다) / x0 must lie in [-1, 1]")
    T = diffusion.num_timesteps
    B = x0.shape[0]
    middle = torch.arange(1, T)
    if num_timesteps is None or num_timesteps >= T - 1:
        steps = middle.repeat(B, 1)  # (B, T−1)
        weights = torch.ones(T - 1, dtype=torch.float64)
    else:
        if num_timesteps < 1:
            raise ValueError(f"num_timesteps 는 1 이상 / num_timesteps must be >= 1, got {num_timesteps}")
        edges = stratum_edges(T, num_timesteps)  # 층 경계 (middle 의 인덱스)
        sizes = edges[1:] - edges[:-1]
        u = torch.rand(B, num_timesteps, generator=generator)
        idx = edges[:-1] + (u * sizes).long().clamp_max(sizes - 1)
        steps = middle[idx]
        weights = sizes.double()
    pairs_img = torch.arange(B).repeat_interleave(steps.shape[1])
    pairs_t = steps.flatten()
    terms = torch.empty(len(pairs_t), dtype=torch.float64)
    device = x0.device
    for start in range(0, len(pairs_t), batch_size):
        sl = slice(start, start + batch_size)
        xb = x0[pairs_img[sl]]
        noise = torch.randn(xb.shape, generator=generator, dtype=torch.float32).to(device)
        terms[sl] = vb_terms(diffusion, model, xb, pairs_t[sl].to(device), noise=noise, clip_x0=clip_x0).cpu()
    diffusion_nats = (terms.reshape(B, -1) * weights).sum(dim=1)
    noise0 = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(device)
    decoder_nats = vb_terms(
        diffusion, model, x0, torch.zeros(B, dtype=torch.long, device=device), noise=noise0, clip_x0=clip_x0
    ).cpu()
    prior_nats = prior_kl(diffusion, x0).cpu()
    to_bpd = 1.0 / (x0[0].numel() * math.log(2.0))
    return BoundEstimate(
        total=(prior_nats + diffusion_nats + decoder_nats) * to_bpd,
        prior=prior_nats * to_bpd,
        diffusion=diffusion_nats * to_bpd,
        decoder=decoder_nats * to_bpd,
        timesteps_used=steps.shape[1],
    )
