"""DPM-Solver++(2M): 확산 ODE 의 2차 다단계(multistep) 풀이법, 그 확률적(SDE) 판, 그리고 타임스텝 간격(spacing).

Lu 등(2022)의 DPM-Solver++ 는 DDIM(η = 0)이 따라가는 확률 흐름 ODE 를 신호 대 잡음비의 로그로 변수를 바꿔
푼다. 기호는 그 논문을 따르되 DDPM 의 ᾱ_t 로 쓴다.

- α_t = √ᾱ_t,  σ_t = √(1 − ᾱ_t)    (x_t = α_t x_0 + σ_t ε)
- λ_t = log(α_t / σ_t)             (로그 SNR 의 절반, t 가 커지면 줄어든다; 식 ch9-eq-lambda)
- 한 스텝 t_{i−1} → t_i 의 간격  h_i = λ_{t_i} − λ_{t_{i−1}} > 0
- 1차 갱신 (= DDIM, η = 0; 식 ch9-eq-dpm1):  x_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) x_{t_{i−1}} − α_{t_i} (e^{−h_i} − 1) x̂_0(t_{i−1})
- 2차 갱신 (식 ch9-eq-dpm2): x̂_0 자리에 D_i = (1 + 1/(2r_i)) x̂_0(t_{i−1}) − 1/(2r_i) x̂_0(t_{i−2}),  r_i = h_{i−1} / h_i
- SDE 판 (식 ch9-eq-sde-dpm; Lu 등 2022 의 SDE-DPM-Solver++(2M), diffusers 의 ``sde-dpmsolver++``):
  x_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) e^{−h_i} x_{t_{i−1}} + α_{t_i}(1 − e^{−2h_i}) D_i + σ_{t_i} √(1 − e^{−2h_i}) z,  z ~ N(0, I).
  1차(D_i = x̂_0)는 DDIM η = 1, 곧 DDPM 의 사후 분포 q(x_{t_i} | x_{t_{i−1}}, x̂_0) 에서 한 번 뽑는 것과 같다.

이 모듈은 위 식과 타임스텝 고르기만 담는다. 신경망을 부르고 x̂_0 을 만드는 일은
``GaussianDiffusion.dpm_solver_step`` 이, 스텝을 잇는 반복은 ``sampling.py`` 가 한다.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "SPACINGS",
    "DEFAULT_SPACING",
    "DEFAULT_STEPS",
    "KARRAS_RHO",
    "half_log_snr",
    "solver_timesteps",
    "dpm_solver_first_order",
    "second_order_data",
    "sde_dpm_solver_update",
]

SPACINGS = ("time", "logsnr", "karras")

# 기본 타임스텝 간격: 측정이 정한다 (benchmarks/quality_vs_nfe.py 의 규칙이 샘플러·스텝 수와 함께 고른다).
# - 처음의 기본값은 λ 에서 고르게("logsnr")였다. 지수 적분기의 한 스텝 오차는 h_i = λ_{t_i} − λ_{t_{i−1}} 로 정해지므로,
#   h 를 모두 같게 두면 스텝마다 오차가 고르다. Lu 등은 작은 해상도(CIFAR-10 32×32 등)에서 λ 균등 간격을 권했다.
# - 선형 β 스케줄(T = 1000)에서 λ 는 t = T−1 의 −5.1 에서 t = 0 의 4.6 까지 내려온다. t 에서 고르게 10 개를 고르면
#   마지막 한 스텝(t = 111 → 0)이 λ 1.1 → 4.6, 곧 전체 범위의 3분의 1 넘게를 한 번에 건너뛴다. 세부가 정해지는
#   노이즈가 작은 구간이다. "logsnr" 과 "karras" 는 이 구간을 잘게 나눈다.
# - 지금 싣는 모델로 재 보니(benchmarks/results/quality_vs_nfe.json) 간격이 결과를 크게 갈랐다. 같은 DPM-Solver++(2M) 10 스텝이
#   λ 간격 3.45, Karras 간격 1.94 이고, 규칙의 답도 Karras 간격 15 스텝이다 (시드 네 개 평균 1.68). Karras 간격은 노이즈가 작은
#   쪽에 스텝을 몰아, 옷의 무늬와 가장자리가 정해지는 마지막 구간을 더 잘게 밟는다.
# 측정이 다른 간격을 가리키면 이 상수 하나만 바꾼다.
DEFAULT_SPACING = "karras"

# 두 DPM-Solver++ (ODE 판과 SDE 판)의 기본 신경망 호출 수(= 샘플링 스텝 수). 규칙은 ``sampling.DEFAULT_SAMPLER`` 의
# 주석에 있다. 지금 싣는 모델로 잰 benchmarks/results/quality_vs_nfe.json (N = 1000, 답을 가른 점은 시드 네 개의 평균) 의
# 답이 ODE 판 15 스텝, Karras 간격이다 (λ 간격만 잰 때의 답은 20 스텝, 4750 스텝 모델로 잰 이전 측정의 답은 10 스텝이었다).
# 모델이나 측정이 바뀌면 그 규칙으로 이 값을 고친다.
DEFAULT_STEPS = 15

KARRAS_RHO = 7.0  # Karras 등(2022)의 σ 간격 지수 ρ. 클수록 작은 노이즈 쪽에 스텝이 몰린다


def half_log_snr(alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """λ_t = log α_t − log σ_t  (= ½ log SNR(t), 식 ch9-eq-lambda, ch2-eq-snr).  σ_t = 0 이면 +∞."""
    return torch.log(alpha) - torch.log(sigma)


def _interp_time(lam: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """λ 값들 ``targets`` 에 해당하는 타임스텝을 λ_t 표에서 선형 보간으로 찾아 가장 가까운 정수로 반올림한다.

    λ_t 는 t 에 대해 줄어들므로 뒤집어 ``np.interp`` 에 넘긴다 (diffusers 의 ``_sigma_to_t`` 와 같은 보간).
    """
    t = np.arange(len(lam), dtype=np.float64)
    return np.round(np.interp(targets, lam[::-1], t[::-1])).astype(int)


def solver_timesteps(lam: torch.Tensor, steps: int, spacing: str = DEFAULT_SPACING) -> list[int]:
    """신경망을 부를 타임스텝 ``steps`` 개를 큰 것부터 돌려준다 (코드의 타임스텝 0..T−1, 언제나 T−1 과 0 을 포함).

    풀이법은 마지막 타임스텝(0) 다음에 σ = 0 (ᾱ = 1, 깨끗한 이미지)으로 한 번 더 간다.

    Args:
        lam: 길이 T 의 λ_t 표 (``half_log_snr``).
        steps: 타임스텝의 수 = 신경망 호출 수.
        spacing: ``"time"`` — t 에서 고르게 (``ddim_timesteps`` 와 같다).
            ``"logsnr"`` — λ 에서 고르게 (Lu 등 2022, diffusers 의 ``use_lu_lambdas``).
            ``"karras"`` — σ_t/α_t 를 ρ = 7 거듭제곱 간격으로 (Karras 등 2022, diffusers 의 ``use_karras_sigmas``).

    ``"logsnr"`` 와 ``"karras"`` 는 정수 타임스텝으로 반올림하므로 t = 0 근처에서 두 타임스텝이 겹칠 수 있다.
    겹치면 하나만 남긴다 (그만큼 호출 수가 준다).
    """
    T = int(lam.shape[0])
    if spacing not in SPACINGS:
        raise ValueError(f"알 수 없는 타임스텝 간격 '{spacing}' / unknown spacing: choose one of {SPACINGS}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps 는 1 이상의 정수여야 한다 / steps must be a positive integer, got {steps!r}")
    if steps > T:
        raise ValueError(
            f"DPM-Solver++ steps({steps}) 가 T({T}) 보다 클 수 없다 / "
            f"DPM-Solver++ steps cannot exceed T: got steps={steps}, T={T}"
        )
    if steps == 1:
        return [T - 1]
    lam_np = lam.detach().double().cpu().numpy()
    if spacing == "time":
        ts = np.round(np.linspace(T - 1, 0, steps)).astype(int)
    elif spacing == "logsnr":
        ts = _interp_time(lam_np, np.linspace(lam_np[-1], lam_np[0], steps))
    else:
        # σ_t/α_t = e^{−λ_t} (분산 폭발형 표기의 σ). 그 1/ρ 제곱을 고르게 나눈다
        s_max, s_min = math.exp(-lam_np[-1]), math.exp(-lam_np[0])
        ramp = np.linspace(0.0, 1.0, steps)
        s = (s_max ** (1 / KARRAS_RHO) + ramp * (s_min ** (1 / KARRAS_RHO) - s_max ** (1 / KARRAS_RHO))) ** KARRAS_RHO
        ts = _interp_time(lam_np, -np.log(s))
    out: list[int] = []
    for t in ts.tolist():
        if not out or t < out[-1]:
            out.append(int(t))
    return out


def dpm_solver_first_order(
    x: torch.Tensor, x0: torch.Tensor, alpha_next: float, sigma_next: float, sigma_cur: float, h: float
) -> torch.Tensor:
    """1차 DPM-Solver++ (= DDIM, η = 0):  x_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) x_{t_{i−1}} − α_{t_i}(e^{−h_i} − 1) x̂_0.

    ``x0`` 자리에 ``second_order_data`` 의 D_i 를 주면 2차 다단계(2M) 갱신(식 ch9-eq-dpm2)이다.
    ``math.expm1(−h)`` 는 e^{−h} − 1 을 h 가 작아도 정확히 계산한다.
    """
    return (sigma_next / sigma_cur) * x - (alpha_next * math.expm1(-h)) * x0  # 식 ch9-eq-dpm1


def second_order_data(x0: torch.Tensor, x0_before: torch.Tensor, h: float, h_before: float) -> torch.Tensor:
    """D_i = (1 + 1/(2r_i)) x̂_0(t_{i−1}) − 1/(2r_i) x̂_0(t_{i−2}),  r_i = h_{i−1}/h_i (식 ch9-eq-dpm2-d).

    x̂_0 을 λ 에서 직선으로 늘여 한 스텝의 가운데 값을 어림한 것이다. ODE 판과 SDE 판이 같이 쓴다.
    """
    r = h_before / h
    return (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_before


def sde_dpm_solver_update(
    x: torch.Tensor,
    d: torch.Tensor,
    alpha_next: float,
    sigma_next: float,
    sigma_cur: float,
    h: float,
    noise: torch.Tensor,
) -> torch.Tensor:
    """SDE-DPM-Solver++ 한 스텝 (식 ch9-eq-sde-dpm). ``d`` 가 x̂_0 이면 1차, ``second_order_data`` 면 2차(2M)다.

    x_{t_i} = (σ_{t_i}/σ_{t_{i−1}}) e^{−h_i} x_{t_{i−1}} + α_{t_i}(1 − e^{−2h_i}) d + σ_{t_i} √(1 − e^{−2h_i}) z.

    ODE 판(``dpm_solver_first_order``)과 견주면, 앞 x 의 몫이 e^{−h} 만큼 더 줄고 그만큼을 새 노이즈 z 가 채운다.
    그래서 앞 스텝들의 오차가 x 에 덜 남는다. 1 − e^{−2h} 은 ``-math.expm1(-2h)`` 로 계산해 h 가 작아도 정확하다.
    """
    keep = -math.expm1(-2.0 * h)  # 1 − e^{−2h}
    decay = sigma_next / sigma_cur * math.exp(-h)  # 앞 x 의 몫: ODE 판의 σ_{t_i}/σ_{t_{i−1}} 에 e^{−h} 가 더 곱해진다
    return decay * x + (alpha_next * keep) * d + (sigma_next * math.sqrt(keep)) * noise
