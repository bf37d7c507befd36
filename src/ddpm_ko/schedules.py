"""노이즈 스케줄(noise schedule): 타임스텝 t = 1..T 마다 더할 노이즈의 분산 β_t.

모든 함수는 길이 ``timesteps`` 인 ``float64`` 텐서 ``betas`` 를 돌려준다. 인덱스 0 이
논문의 t = 1 에 해당한다.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "SCHEDULES",
    "beta_schedule",
    "linear_beta_schedule",
    "cosine_beta_schedule",
    "quadratic_beta_schedule",
    "sigmoid_beta_schedule",
]

#: DDPM 논문의 선형 스케줄 끝값 (T = 1000 기준)
DDPM_BETA_START = 1e-4
DDPM_BETA_END = 0.02
#: 코사인 스케줄의 β 상한 (t = T 근처에서 β 가 1 로 발산하는 것을 막는다)
MAX_BETA = 0.999


def _scaled_range(timesteps: int) -> tuple[float, float]:
    """T 가 1000 이 아니면 β 범위를 1000/T 배 한다 (Improved DDPM 의 방식).

    이렇게 해야 T 를 줄여도 ᾱ_T 가 0 에 가깝게, 즉 x_T 가 거의 순수한 노이즈로 남는다.
    """
    scale = 1000.0 / timesteps
    return scale * DDPM_BETA_START, min(scale * DDPM_BETA_END, MAX_BETA)


def linear_beta_schedule(timesteps: int) -> torch.Tensor:
    """DDPM 의 선형 스케줄: β_1 = 1e-4 에서 β_T = 0.02 까지 (T ≠ 1000 이면 1000/T 배). q(x_t|x_{t−1}) 의 분산 (식 ch2-eq-step)."""
    start, end = _scaled_range(timesteps)
    return torch.linspace(start, end, timesteps, dtype=torch.float64)


def quadratic_beta_schedule(timesteps: int) -> torch.Tensor:
    """√β 를 선형으로 늘리는 2차 스케줄. 초반 노이즈가 선형보다 더 천천히 는다."""
    start, end = _scaled_range(timesteps)
    return torch.linspace(start**0.5, end**0.5, timesteps, dtype=torch.float64) ** 2


def sigmoid_beta_schedule(timesteps: int) -> torch.Tensor:
    """β 를 시그모이드 모양으로 늘리는 스케줄 (양 끝은 완만하고 가운데서 빠르게 는다)."""
    start, end = _scaled_range(timesteps)
    s = torch.sigmoid(torch.linspace(-6, 6, timesteps, dtype=torch.float64))
    return start + (end - start) * (s - s[0]) / (s[-1] - s[0])


def cosine_beta_schedule(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal (2021) 의 코사인 스케줄 (식 ch2-eq-cosine, ch9-eq-cosine).

    ᾱ(t) = f(t)/f(0),  f(t) = cos²(((t/T + s)/(1 + s)) · π/2)  로 정하고
    β_t = 1 − ᾱ_t / ᾱ_{t−1} 를 ``MAX_BETA`` 로 자른다.
    """
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(0, MAX_BETA)


SCHEDULES = {
    "linear": linear_beta_schedule,
    "cosine": cosine_beta_schedule,
    "quadratic": quadratic_beta_schedule,
    "sigmoid": sigmoid_beta_schedule,
}


def beta_schedule(name: str, timesteps: int) -> torch.Tensor:
    """이름으로 스케줄을 골라 ``betas`` (길이 ``timesteps``, float64) 를 만든다.

    >>> betas = beta_schedule("linear", 1000)
    >>> float(betas[0]), float(betas[-1])
    (0.0001, 0.02)
    """
    if name not in SCHEDULES:
        raise ValueError(
            f"알 수 없는 스케줄 '{name}' / unknown schedule '{name}': choose one of {', '.join(SCHEDULES)}"
        )
    if not isinstance(timesteps, int) or isinstance(timesteps, bool) or timesteps < 2:
        raise ValueError(f"timesteps 는 2 이상의 정수여야 한다 / timesteps must be an integer >= 2, got {timesteps!r}")
    return SCHEDULES[name](timesteps)
