"""학습에서 타임스텝 t 를 뽑는 분포 p(t) (10장).

DDPM 의 L_simple 은 t 를 {0, …, T−1} 에서 고르게 뽑는다 (알고리즘 1). 어떤 t 를 얼마나 자주 보여 주느냐는 곧 학습
시간을 어디에 쓰느냐다. 10장의 진단(20분 학습한 모델의 ε̂ 를 t 구간마다 오래 학습한 모델의 것으로 바꿔 본 실험)에서는
노이즈가 작은 t(< 300) 의 ε̂ 가 FID 의 차이 대부분을 만들었고, 고른 분포는 학습의 70 % 를 t ≥ 300 에 쓴다.

- ``"uniform"``: t ~ Uniform{0, …, T−1} (DDPM, 기본값).
- ``"lognormal"``: 절반은 고르게, 절반은 EDM(Karras 등 2022)의 학습 분포 ln σ ~ N(P_mean, P_std²) 에서 뽑는다.
  σ 는 분산 폭발형 표기의 노이즈 크기 σ_t/α_t = √((1 − ᾱ_t)/ᾱ_t) = e^{−λ_t} 이므로 λ_t ~ N(−P_mean, P_std²) 이다
  (λ_t 는 ``solvers.half_log_snr``). 뽑은 λ 는 λ_t ≤ λ 인 가장 작은 t 로 옮긴다. 고른 몫을 남겨 두는 것은
  샘플러가 노이즈가 큰 t 에서도 신경망을 부르기 때문이다 (SDE-DPM-Solver++ 20 스텝, Karras 간격은 그 절반을 t ≥ 600 에서 부른다).

두 분포 모두 정확한 확률표 ``timestep_probabilities`` 로 정의하고, 뽑기는 그 표에서 한다 (검사가 표와 견준다).

10장의 연구(어텐션 없음, 20분, 학습 시드 셋 × 평가 시드 넷)에서 ``"lognormal"`` 은 고른 분포보다 낫지 않았다. 같은 진단으로 보면
노이즈가 작은 구간이 나아진 만큼 노이즈가 큰 구간이 나빠졌다. 그래서 기본값은 ``"uniform"`` 이다.
"""

from __future__ import annotations

import torch

__all__ = [
    "TIMESTEP_SAMPLINGS",
    "LOGNORMAL_P_MEAN",
    "LOGNORMAL_P_STD",
    "LOGNORMAL_SHARE",
    "timestep_probabilities",
]

TIMESTEP_SAMPLINGS = ("uniform", "lognormal")

#: EDM 의 학습 분포 ln σ ~ N(P_mean, P_std²) (Karras 등 2022, 표 1). 선형 β 스케줄(T = 1000)에서 가운데 σ = e^{−1.2}
#: 는 t ≈ 88 이고, ±1 표준편차는 t ≈ 40 … 200 이다
LOGNORMAL_P_MEAN = -1.2
LOGNORMAL_P_STD = 1.2
#: ``"lognormal"`` 에서 로그 정규 분포로 뽑는 몫 (나머지는 고르게)
LOGNORMAL_SHARE = 0.5


def timestep_probabilities(alphas_cumprod: torch.Tensor, kind: str = "uniform") -> torch.Tensor:
    """학습 타임스텝의 분포 p(t), t = 0..T−1 (float64, 합 1).

    ``"lognormal"`` 에서 t 는 λ_t ≤ λ 인 가장 작은 타임스텝이다 (λ_t 는 t 에 대해 줄어든다). 그래서
    p(0) = P(λ ≥ λ_0), p(t) = P(λ_t ≤ λ < λ_{t−1}), 그리고 마지막 칸 p(T−1) = P(λ < λ_{T−2}) 다.
    """
    if kind not in TIMESTEP_SAMPLINGS:
        raise ValueError(
            f"알 수 없는 타임스텝 분포 '{kind}' / unknown timestep sampling: choose one of {TIMESTEP_SAMPLINGS}"
        )
    abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    T = abar.shape[0]
    uniform = torch.full((T,), 1.0 / T, dtype=torch.float64)
    if kind == "uniform":
        return uniform
    lam = 0.5 * (torch.log(abar) - torch.log1p(-abar))  # λ_t = ½ log SNR(t)
    # λ ~ N(−P_mean, P_std²) 의 누적 분포를 λ_t 경계에서: cdf[t] = P(λ < λ_t)
    cdf = torch.special.ndtr((lam + LOGNORMAL_P_MEAN) / LOGNORMAL_P_STD)
    upper = torch.cat([torch.ones(1, dtype=torch.float64), cdf[:-1]])  # P(λ < λ_{t−1}), t = 0 이면 1
    lower = torch.cat([cdf[:-1], torch.zeros(1, dtype=torch.float64)])  # P(λ < λ_t), 마지막 칸은 0 까지
    lognormal = upper - lower
    return LOGNORMAL_SHARE * lognormal + (1.0 - LOGNORMAL_SHARE) * uniform
