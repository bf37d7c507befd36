"""생성한 이미지의 품질을 재는 수식: 특징 공간의 FID, KID, 예측 클래스 히스토그램.

이 모듈은 이미 뽑은 특징 벡터 (N, D) 와 로짓 (N, K) 만 다룬다. 파일을 읽거나 분류기를 돌리지 않는다.
표본 파일을 읽고 분류기로 특징을 뽑아 바닥값과 함께 보고하는 일은 ``ddpm_ko.evaluation`` 이 한다.
식의 이름은 10장의 것이다: FID 는 식 (ch10-eq-fid), KID 는 식 (ch10-eq-kernel) 의 커널로 잰 식 (ch10-eq-kid).

    >>> from ddpm_ko.metrics import fid, kid
    >>> fid(feat_real, feat_fake), kid(feat_real, feat_fake)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .data import CLASS_NAMES, CLASS_NAMES_KO

__all__ = ["sqrtm_psd", "gaussian_stats", "frechet_distance", "fid", "kid", "class_histogram"]


# ---------------------------------------------------------------------------------------- FID
# 선형대수는 float64 torch 로 한다. NumPy 의 OpenBLAS 는 torch.set_num_threads 를 따르지 않아서, CPU 를 다른
# 작업과 나눠 쓰는 기계에서는 스레드들이 서로 기다리며 10배 넘게 느려질 수 있다.
def _t64(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a, dtype=torch.float64)


def _sqrtm_psd_t(a: torch.Tensor) -> torch.Tensor:
    w, q = torch.linalg.eigh(0.5 * (a + a.T))
    return (q * w.clamp(min=0.0).sqrt()) @ q.T


def sqrtm_psd(mat: np.ndarray) -> np.ndarray:
    """대칭 양의 준정부호(PSD) 행렬의 대칭 제곱근 A^{1/2} 를 고윳값 분해로 구한다.

    A = Q diag(λ) Qᵀ 이면 A^{1/2} = Q diag(√λ) Qᵀ. 반올림 때문에 생긴 작은 음의 고윳값은 0 으로 자른다.
    일반 행렬용 ``scipy.linalg.sqrtm`` 과 달리 복소수가 나오지 않고, 특이(singular) 행렬에서도 안정하다.
    """
    a = _t64(mat)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"정사각 행렬이어야 한다 / expected a square matrix, got shape {tuple(a.shape)}")
    return _sqrtm_psd_t(a).numpy()


def gaussian_stats(feat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """특징 (N, D) 의 평균 (D,) 과 표본 공분산 (D, D) (N − 1 로 나눈다)."""
    f = _as_features(feat, "feat")
    if len(f) < 2:
        raise ValueError(f"공분산에는 표본이 2개 이상 필요하다 / need at least 2 samples, got {len(f)}")
    t = torch.from_numpy(f)
    mu = t.mean(0)
    c = t - mu
    return mu.numpy(), (c.T @ c / (len(f) - 1)).numpy()


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """두 정규 분포 N(μ₁, Σ₁), N(μ₂, Σ₂) 사이의 프레셰 거리 (2-바서슈타인 거리의 제곱).

        d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}

    tr (Σ₁Σ₂)^{1/2} 은 닮은 대칭 행렬 Σ₁^{1/2} Σ₂ Σ₁^{1/2} 의 고윳값으로 계산한다 (float64).
    """
    mu1, mu2, s1, s2 = _t64(mu1), _t64(mu2), _t64(sigma1), _t64(sigma2)
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"평균·공분산의 차원이 맞지 않다 / mismatched shapes: {tuple(mu1.shape)}, {tuple(s1.shape)}, "
            f"{tuple(mu2.shape)}, {tuple(s2.shape)}"
        )
    r1 = _sqrtm_psd_t(s1)  # 식 (ch10-eq-fid) 의 Σ₁^{1/2}
    m = r1 @ (0.5 * (s2 + s2.T)) @ r1
    eig = torch.linalg.eigvalsh(0.5 * (m + m.T))
    tr_covmean = float(eig.clamp(min=0.0).sqrt().sum())
    diff = mu1 - mu2
    value = float(diff @ diff + torch.trace(s1) + torch.trace(s2)) - 2.0 * tr_covmean  # 식 (ch10-eq-fid)
    return max(value, 0.0)


def fid(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """특징 두 묶음 (N_a, D), (N_b, D) 의 FID: 각각을 정규 분포로 근사한 뒤의 프레셰 거리."""
    a, b = _as_features(feat_a, "feat_a"), _as_features(feat_b, "feat_b")
    _same_dim(a, b)
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


# ---------------------------------------------------------------------------------------- KID
def _poly_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1.0) ** 3  # 식 (ch10-eq-kernel)


def kid(
    feat_a: np.ndarray, feat_b: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID: 다항식 커널 k(x, y) = (xᵀy / D + 1)³ 로 잰 MMD² 의 치우침 없는(unbiased) 추정값.

    두 묶음에서 ``subset_size`` 개씩(많아야 묶음 크기까지) 비복원으로 뽑아 MMD² 를 재는 일을 ``subsets`` 번
    되풀이하고 ``(평균, 표준편차)`` 를 돌려준다. 같은 분포에서 온 두 묶음이면 평균이 0 근처(음수도 가능)다.
    """
    a, b = _as_features(feat_a, "feat_a"), _as_features(feat_b, "feat_b")
    _same_dim(a, b)
    if subsets < 1:
        raise ValueError(f"subsets 는 1 이상 / subsets must be >= 1, got {subsets}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID 에는 묶음마다 표본이 2개 이상 필요하다 / KID needs at least 2 samples per set, got {m}")
    rng = np.random.default_rng(seed)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    values = np.empty(subsets)
    for i in range(subsets):
        x = ta[torch.from_numpy(rng.choice(len(a), m, replace=False))]
        y = tb[torch.from_numpy(rng.choice(len(b), m, replace=False))]
        kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        # 식 (ch10-eq-kid): 같은 묶음 안의 쌍은 i ≠ j 만 (대각을 빼고) 평균해 치우침이 없다
        values[i] = float(
            (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
            + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            - 2.0 * kxy.mean()
        )
    return float(values.mean()), float(values.std(ddof=1) if subsets > 1 else 0.0)


def _as_features(feat: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    f = feat.detach().cpu().numpy() if isinstance(feat, torch.Tensor) else np.asarray(feat)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(
            f"{name} 는 (N, D) 특징 행렬이어야 한다 / {name} must be an (N, D) feature matrix, got {f.shape}"
        )
    f = f.astype(np.float64, copy=False)
    if not np.isfinite(f).all():
        raise ValueError(f"{name} 에 NaN/Inf 가 있다 / {name} contains NaN or Inf")
    return f


def _same_dim(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"특징 차원이 다르다 / feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")


# ---------------------------------------------------------------------------------------- 클래스 히스토그램
def class_histogram(logits: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """분류기의 로짓 (N, K) 으로 예측한 클래스의 개수와, 그 분포가 얼마나 고른지를 센다.

    이미지에서 바로 세려면 ``ddpm_ko.evaluation.image_class_histogram`` 을 쓴다 (분류기를 돌려 로짓을 얻는다).

    돌려주는 사전:
    - ``counts``: 클래스별 예측 개수 (10개), ``fractions``: 그 비율
    - ``entropy_bits``: 예측 클래스 분포의 엔트로피 (비트). 10개 클래스가 똑같으면 log₂10 ≈ 3.32
    - ``normalized_entropy``: 엔트로피 / log₂10 (1 이면 완전히 고르다)
    - ``coverage``: 고른 몫(1/10)의 절반 이상을 받은 클래스의 비율. 몇 클래스만 만드는 모드 붕괴를 잡는다
    - ``mean_confidence``: 가장 큰 softmax 확률의 평균 (흐릿한 이미지는 낮다)
    """
    lg = (logits.detach().cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)).astype(np.float64)
    if lg.ndim != 2 or lg.shape[0] == 0:
        raise ValueError(f"logits 는 (N, K) 여야 한다 / logits must be (N, K), got {lg.shape}")
    k = lg.shape[1]
    probs = np.exp(lg - lg.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    counts = np.bincount(probs.argmax(1), minlength=k)
    frac = counts / counts.sum()
    nz = frac[frac > 0]
    entropy = float(-(nz * np.log2(nz)).sum())
    names = CLASS_NAMES if k == len(CLASS_NAMES) else [str(i) for i in range(k)]
    names_ko = CLASS_NAMES_KO if k == len(CLASS_NAMES_KO) else names
    return {
        "counts": counts.tolist(),
        "fractions": [round(float(v), 4) for v in frac],
        "class_names": list(names),
        "class_names_ko": list(names_ko),
        "entropy_bits": round(entropy, 4),
        "normalized_entropy": round(entropy / math.log2(k), 4),
        "coverage": round(float((frac >= 0.5 / k).mean()), 4),
        "mean_confidence": round(float(probs.max(1).mean()), 4),
    }
