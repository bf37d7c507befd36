"""생성한 이미지의 품질을 숫자로 잰다: 특징 FID, KID, 예측 클래스 히스토그램.

특징은 ``ddpm_ko.classifier`` 의 작은 Fashion-MNIST 분류기가 만든 128차원 벡터다. 원래 FID 가 쓰는
Inception-v3 특징이 아니므로, 여기서 나온 값은 논문의 FID 와 **직접 비교할 수 없다**. 대신 모든 숫자 옆에
같은 표본 수의 "진짜 대 진짜" 바닥값(floor)을 함께 낸다: 학습 분할에서 무작위로 뽑은 진짜 이미지 N 장을
같은 방법으로 잰 값이다. 표본이 N 장뿐이면 진짜 이미지끼리도 FID 가 0 이 되지 않으므로, 생성 모델의 값은
이 바닥값과 견주어 읽는다.

    >>> from ddpm_ko.metrics import evaluate
    >>> report = evaluate("samples.npy")          # `ddpm-ko sample --out samples.npy` 가 쓴 파일
    >>> report["fid"], report["floor"]["fid"]

명령줄: ``ddpm-ko train-classifier`` 와 ``ddpm-ko evaluate`` (``add_cli`` / ``run_cli``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .classifier import FashionClassifier, read_classifier
from .errors import CheckpointError, DdpmKoError
from .pretrained import CLASSIFIER_NAME, locate_shipped_file

__all__ = [
    "CLASSIFIER_NAME", "SampleInputError", "classifier_path", "load_classifier", "load_samples",
    "to_classifier_input", "extract_features", "progress_bar", "sqrtm_psd", "gaussian_stats", "frechet_distance", "fid", "kid",
    "class_histogram", "reference_features", "evaluate", "format_report", "add_cli", "run_cli",
]

CLASSIFIER_ENV = "DDPM_KO_CLASSIFIER"


class SampleInputError(DdpmKoError, ValueError):
    """평가할 이미지의 모양·자료형·값 범위가 잘못되었을 때 (``ValueError`` 이기도 하다)."""


# ---------------------------------------------------------------------------------------- 분류기
def classifier_path() -> Path:
    """분류기 파일 경로: ``$DDPM_KO_CLASSIFIER`` → 패키지에 든 파일 (SHA-256 검사)."""
    return locate_shipped_file(CLASSIFIER_NAME, CLASSIFIER_ENV,
                               "`ddpm-ko train-classifier` 로 만들 수 있다 / make one with train-classifier")


_LOADED: dict[tuple[str, float, str], FashionClassifier] = {}


def load_classifier(path: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> FashionClassifier:
    """평가용 분류기를 safetensors 에서 불러온다 (eval 모드). ``path`` 가 없으면 책이 싣는 파일.

    같은 파일을 여러 번 부르면 한 번 만든 모델을 다시 쓴다. 파일의 메타데이터는 ``model.meta`` 에 있다.
    """
    p = Path(path) if path is not None else classifier_path()
    if not p.is_file():
        raise CheckpointError(f"분류기 파일이 없다 / classifier file not found: {p}")
    key = (str(p.resolve()), p.stat().st_mtime, str(torch.device(device)))
    if key not in _LOADED:
        model, meta = read_classifier(p, device=device)
        model.meta = meta  # type: ignore[attr-defined]
        model.source = str(p)  # type: ignore[attr-defined]
        _LOADED[key] = model
    return _LOADED[key]


# ---------------------------------------------------------------------------------------- 입력 검사
def load_samples(path: str | os.PathLike) -> np.ndarray:
    """``ddpm-ko sample --out`` 이 쓴 ``.npy`` (uint8, (N, H, W, C)) 를 읽는다. 피클은 허용하지 않는다."""
    p = Path(path)
    if p.suffix.lower() != ".npy":
        raise SampleInputError(f"표본 파일은 .npy 여야 한다 / samples file must be a .npy file: {p}")
    if not p.is_file():
        raise SampleInputError(f"표본 파일이 없다 / samples file not found: {p} — `ddpm-ko sample --out {p.name}` 로 만든다")
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as e:  # ValueError (피클·손상), OSError …
        raise SampleInputError(f"표본 파일을 읽을 수 없다 / cannot read samples file {p}: {type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}") from e
    return arr


def to_classifier_input(images: np.ndarray | torch.Tensor, image_size: int = 28) -> torch.Tensor:
    """평가할 이미지를 분류기 입력 (N, 1, 28, 28), [−1, 1] float 텐서로 바꾼다.

    받는 것:
    - uint8 배열·텐서 (0..255): (N, H, W, 1) (``ddpm-ko sample --out`` 의 형식), (N, 1, H, W), (N, H, W)
    - float 배열·텐서 ([−1, 1], 패키지가 쓰는 범위): (N, 1, H, W), (N, H, W, 1), (N, H, W)

    모양·자료형·값 범위가 맞지 않으면 고칠 방법을 말하는 ``SampleInputError`` 를 낸다.
    """
    if isinstance(images, (str, os.PathLike)):
        images = load_samples(images)
    if isinstance(images, np.ndarray):
        if images.dtype == object or not (np.issubdtype(images.dtype, np.number) or images.dtype == np.bool_):
            raise SampleInputError(f"이미지 배열의 자료형이 잘못되었다 / unsupported image dtype {images.dtype}: "
                                   "expected uint8 (0..255) or float in [-1, 1]")
        x = torch.from_numpy(np.ascontiguousarray(images))
    elif isinstance(images, torch.Tensor):
        x = images.detach().cpu()
    else:
        raise SampleInputError(f"이미지는 NumPy 배열이나 텐서여야 한다 / images must be a NumPy array or a tensor, "
                               f"got {type(images).__name__}")
    s = image_size
    shape = tuple(x.shape)
    if x.ndim == 0 or shape[0] == 0:
        raise SampleInputError(f"이미지가 하나도 없다 / no images: shape {shape}")
    if x.dtype == torch.uint8:
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and shape[-1] == 1 and shape[1:3] == (s, s):
            x = x.permute(0, 3, 1, 2)
        elif not (x.ndim == 4 and shape[1] == 1):
            raise SampleInputError(_shape_message(shape, s))
        if tuple(x.shape[1:]) != (1, s, s):
            raise SampleInputError(_shape_message(shape, s))
        return x.float() / 127.5 - 1.0
    if not x.is_floating_point():
        raise SampleInputError(f"이미지 자료형 {x.dtype} 은 쓸 수 없다 / unsupported image dtype {x.dtype}: "
                               "expected uint8 (0..255) or float in [-1, 1]")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and shape[-1] == 1 and shape[1:3] == (s, s):
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, s, s):
        raise SampleInputError(_shape_message(shape, s))
    x = x.float()
    if not torch.isfinite(x).all():
        raise SampleInputError("이미지에 NaN/Inf 가 있다 / images contain NaN or Inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.5 or hi > 1.5:  # 자르지 않은 표본(--no-clip)은 조금 넘칠 수 있어 1.5 까지는 받아 자른다
        hint = " (0..255 값이면 uint8 로 바꿔라 / looks like 0..255: cast to uint8)" if hi > 2 else ""
        raise SampleInputError(f"float 이미지는 [-1, 1] 범위여야 한다 / float images must be in [-1, 1], "
                               f"got [{lo:.3g}, {hi:.3g}]{hint}")
    if lo >= -0.01 and x.numel() >= 2 * s * s:
        raise SampleInputError(f"음수 픽셀이 하나도 없다: [0, 1] 범위 이미지로 보인다 / no negative pixels, looks like "
                               f"[0, 1] images (got [{lo:.3g}, {hi:.3g}]): convert with x * 2 - 1")
    return x.clamp(-1, 1).contiguous()


def _shape_message(shape: tuple[int, ...], s: int) -> str:
    extra = ""
    if len(shape) == 4 and 3 in (shape[1], shape[-1]):
        extra = " (RGB 는 안 된다: Fashion-MNIST 는 흑백 / RGB is not supported: Fashion-MNIST is grayscale)"
    return (f"이미지 모양이 잘못되었다 / wrong image shape {shape}: expected uint8 (N, {s}, {s}, 1) as written by "
            f"`ddpm-ko sample --out`, or (N, 1, {s}, {s}){extra}")


# ---------------------------------------------------------------------------------------- 특징
def progress_bar(enabled: bool, total: int, desc: str) -> Any:
    """``train``·``sample`` 과 같은 tqdm 진행 막대 (표준 오류에 쓴다). ``enabled`` 가 거짓이면 None."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, mininterval=1.0)


@torch.no_grad()
def _features_and_logits(images: np.ndarray | torch.Tensor, classifier: FashionClassifier | None,
                         batch_size: int, bar: Any = None) -> tuple[np.ndarray, np.ndarray]:
    model = classifier if classifier is not None else load_classifier()
    x = to_classifier_input(images, model.config.image_size)
    device = next(model.parameters()).device
    model.eval()
    feats, logits = [], []
    for i in range(0, len(x), batch_size):
        h = model.features(x[i:i + batch_size].to(device))
        feats.append(h.double().cpu())
        logits.append(model.logits_from_features(h).double().cpu())
        if bar is not None:
            bar.update(len(h))
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


def extract_features(images: np.ndarray | torch.Tensor, classifier: FashionClassifier | None = None,
                     batch_size: int = 500) -> np.ndarray:
    """이미지 → 분류기 특징 (N, 128) float64. 입력 형식은 ``to_classifier_input`` 을 보라."""
    return _features_and_logits(images, classifier, batch_size)[0]


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
        raise ValueError(f"평균·공분산의 차원이 맞지 않다 / mismatched shapes: {tuple(mu1.shape)}, {tuple(s1.shape)}, "
                         f"{tuple(mu2.shape)}, {tuple(s2.shape)}")
    r1 = _sqrtm_psd_t(s1)
    m = r1 @ (0.5 * (s2 + s2.T)) @ r1
    eig = torch.linalg.eigvalsh(0.5 * (m + m.T))
    tr_covmean = float(eig.clamp(min=0.0).sqrt().sum())
    diff = mu1 - mu2
    value = float(diff @ diff + torch.trace(s1) + torch.trace(s2)) - 2.0 * tr_covmean
    return max(value, 0.0)


def fid(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """특징 두 묶음 (N_a, D), (N_b, D) 의 FID: 각각을 정규 분포로 근사한 뒤의 프레셰 거리."""
    a, b = _as_features(feat_a, "feat_a"), _as_features(feat_b, "feat_b")
    _same_dim(a, b)
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


# ---------------------------------------------------------------------------------------- KID
def _poly_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kid(feat_a: np.ndarray, feat_b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
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
        values[i] = float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
                          + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2.0 * kxy.mean())
    return float(values.mean()), float(values.std(ddof=1) if subsets > 1 else 0.0)


def _as_features(feat: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    f = feat.detach().cpu().numpy() if isinstance(feat, torch.Tensor) else np.asarray(feat)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(f"{name} 는 (N, D) 특징 행렬이어야 한다 / {name} must be an (N, D) feature matrix, got {f.shape}")
    f = f.astype(np.float64, copy=False)
    if not np.isfinite(f).all():
        raise ValueError(f"{name} 에 NaN/Inf 가 있다 / {name} contains NaN or Inf")
    return f


def _same_dim(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"특징 차원이 다르다 / feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")


# ---------------------------------------------------------------------------------------- 클래스 히스토그램
def class_histogram(images: np.ndarray | torch.Tensor | None = None, *, logits: np.ndarray | None = None,
                    classifier: FashionClassifier | None = None) -> dict[str, Any]:
    """분류기가 예측한 클래스의 개수와, 그 분포가 얼마나 고른지를 센다.

    돌려주는 사전:
    - ``counts``: 클래스별 예측 개수 (10개), ``fractions``: 그 비율
    - ``entropy_bits``: 예측 클래스 분포의 엔트로피 (비트). 10개 클래스가 똑같으면 log₂10 ≈ 3.32
    - ``normalized_entropy``: 엔트로피 / log₂10 (1 이면 완전히 고르다)
    - ``coverage``: 고른 몫(1/10)의 절반 이상을 받은 클래스의 비율. 몇 클래스만 만드는 모드 붕괴를 잡는다
    - ``mean_confidence``: 가장 큰 softmax 확률의 평균 (흐릿한 이미지는 낮다)
    """
    from .data import CLASS_NAMES, CLASS_NAMES_KO

    if logits is None:
        if images is None:
            raise ValueError("images 나 logits 중 하나가 필요하다 / pass images or logits")
        _, logits = _features_and_logits(images, classifier, 500)
    lg = np.asarray(logits, dtype=np.float64)
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


# ---------------------------------------------------------------------------------------- 평가
_REF_CACHE: "weakref.WeakKeyDictionary[FashionClassifier, dict[str, Any]]" = weakref.WeakKeyDictionary()


def reference_features(split: str = "test", classifier: FashionClassifier | None = None,
                       data_dir: str | os.PathLike | None = None, num: int | None = None, *,
                       bar: Any = None) -> np.ndarray:
    """진짜 Fashion-MNIST 분할의 (앞 ``num`` 장, 기본은 전체) 특징. 분류기마다 한 번만 계산해 둔다.

    ``bar`` 는 tqdm 진행 막대 (``progress_bar``): 특징을 새로 계산하면 그 이미지 수만큼 막대의 전체 양을 늘리고 채운다.
    """
    from .data import fashion_mnist_arrays

    model = classifier if classifier is not None else load_classifier()
    cache = _REF_CACHE.setdefault(model, {})
    full = (split, str(data_dir), None)
    if full in cache:
        return cache[full][:num] if num else cache[full]
    key = (split, str(data_dir), num)
    if key not in cache:
        images, _ = fashion_mnist_arrays(split, data_dir)
        if num is not None and not 2 <= num <= len(images):
            raise ValueError(f"reference_num 은 2..{len(images)} / reference_num must be in 2..{len(images)}, got {num}")
        chosen = images[:num] if num else images
        if bar is not None:
            bar.total += len(chosen)
            bar.refresh()
        cache[key] = _features_and_logits(chosen, model, 500, bar)[0]
    return cache[key]


def evaluate(samples: str | os.PathLike | np.ndarray | torch.Tensor, num: int | None = None, seed: int = 0,
             classifier: FashionClassifier | str | os.PathLike | None = None, kid_subsets: int = 100,
             kid_subset_size: int = 1000, data_dir: str | os.PathLike | None = None,
             reference_num: int | None = None, floor_draws: int = 5, progress: bool = False) -> dict[str, Any]:
    """생성한 이미지 묶음을 평가하고, 같은 표본 수의 진짜 대 진짜 바닥값을 함께 돌려준다.

    - 생성 이미지 N 장(``num`` 을 주면 앞의 ``num`` 장)과 시험 분할 10,000 장의 특징으로 FID, KID 를 잰다.
    - 바닥값(``floor``): 학습 분할에서 ``seed`` 로 무작위로 뽑은 진짜 이미지 N 장을 **같은 방법으로** 잰 값.
      이 모델이 진짜 데이터만큼 좋다면 얻을 값이다. FID 는 N 이 작을수록 커지므로 이 값과 견주어 읽는다.
      N 이 작으면 어느 N 장을 뽑았느냐에 따라 바닥값도 흔들리므로, FID 바닥값은 ``floor_draws`` 번 뽑은
      평균과 표준편차(``fid_std``)로 준다. KID 바닥값과 히스토그램은 첫 번째 묶음으로 잰다.
    - ``histogram``: 예측 클래스 분포 (``class_histogram``).

    ``samples`` 는 ``.npy`` 경로, uint8 (N, H, W, 1) 배열, 또는 [−1, 1] 텐서 (N, 1, H, W).
    ``reference_num`` 을 주면 시험 분할의 앞 그만큼만 기준으로 쓴다 (빠른 확인용; 기본은 10,000장 전부).
    ``progress`` 면 특징을 뽑는 이미지 수(기준 분할, 표본, 바닥값 묶음들)를 tqdm 막대로 표준 오류에 보인다.
    """
    from .data import fashion_mnist_arrays

    start = time.perf_counter()
    source = str(samples) if isinstance(samples, (str, os.PathLike)) else f"in-memory {type(samples).__name__}"
    if isinstance(samples, (str, os.PathLike)):
        samples = load_samples(samples)      # 입력 오류는 분류기를 불러오기 전에 알린다
    model = load_classifier(classifier) if not isinstance(classifier, FashionClassifier) else classifier
    x = to_classifier_input(samples, model.config.image_size)
    if num is not None:
        if num < 2:
            raise ValueError(f"num 은 2 이상 / num must be >= 2, got {num}")
        if num > len(x):
            raise ValueError(f"표본이 {len(x)} 장뿐인데 num={num} 을 요청했다 / only {len(x)} samples, asked for num={num}")
        x = x[:num]
    n = len(x)
    if n < 2:
        raise ValueError(f"평가에는 이미지가 2장 이상 필요하다 / need at least 2 images, got {n}")
    if floor_draws < 1:
        raise ValueError(f"floor_draws 는 1 이상 / floor_draws must be >= 1, got {floor_draws}")
    bar = progress_bar(progress, n * (1 + floor_draws), "evaluate features")
    try:
        ref = reference_features("test", model, data_dir, reference_num, bar=bar)
        feat, logits = _features_and_logits(x, model, 500, bar)

        train_images, _ = fashion_mnist_arrays("train", data_dir)
        if n > len(train_images):
            raise ValueError(f"바닥값을 재려면 N ≤ {len(train_images)} / num must be <= {len(train_images)} for the floor")
        rng = np.random.default_rng(seed)
        floor_fids: list[float] = []
        for k in range(floor_draws):
            idx = np.sort(rng.choice(len(train_images), n, replace=False))
            draw_feat, draw_logits = _features_and_logits(train_images[idx], model, 500, bar)
            if k == 0:
                real_feat, real_logits = draw_feat, draw_logits
            floor_fids.append(fid(draw_feat, ref))
    finally:
        if bar is not None:
            bar.close()

    kid_m, kid_s = kid(feat, ref, kid_subsets, kid_subset_size, seed)
    fkid_m, fkid_s = kid(real_feat, ref, kid_subsets, kid_subset_size, seed)
    fid_value, fid_floor = fid(feat, ref), float(np.mean(floor_fids))
    meta = getattr(model, "meta", {})
    return {
        "num": n,
        "fid": round(fid_value, 4),
        "kid": {"mean": kid_m, "std": kid_s, "subsets": kid_subsets, "subset_size": min(kid_subset_size, n)},
        "histogram": class_histogram(logits=logits),
        "floor": {
            "description": f"real vs real: {n} random train images vs the test split, same features "
                           f"(FID: mean and std over {floor_draws} draws)",
            "fid": round(fid_floor, 4),
            "fid_std": round(float(np.std(floor_fids, ddof=1)), 4) if floor_draws > 1 else 0.0,
            "fid_draws": [round(v, 4) for v in floor_fids],
            "kid": {"mean": fkid_m, "std": fkid_s, "subsets": kid_subsets, "subset_size": min(kid_subset_size, n)},
            "histogram": class_histogram(logits=real_logits),
        },
        "fid_over_floor": round(fid_value / fid_floor, 3) if fid_floor > 0 else None,
        "reference": {"split": "test", "num": int(len(ref))},
        "features": f"ddpm_ko FashionClassifier {ref.shape[1]}-d penultimate layer (not Inception: not comparable to paper FIDs)",
        "classifier": {"path": getattr(model, "source", None), "test_accuracy": meta.get("test_accuracy")},
        "samples": source,
        "seed": seed,
        "time_s": round(time.perf_counter() - start, 2),
    }


def format_report(result: dict[str, Any]) -> str:
    """``evaluate`` 의 결과를 사람이 읽는 몇 줄의 표로."""
    fl, h, fh = result["floor"], result["histogram"], result["floor"]["histogram"]
    lines = [
        f"표본 {result['num']}장 / {result['num']} samples vs test split ({result['reference']['num']}), "
        f"seed {result['seed']}",
        f"{'':18s}{'생성 / samples':>18s}{'바닥값 / floor':>18s}",
        f"{'FID':18s}{result['fid']:>18.3f}{_fid_floor(fl):>18s}",
        f"{'KID (×1e3)':18s}{_pm(result['kid']):>18s}{_pm(fl['kid']):>18s}",
        f"{'entropy (bits)':18s}{h['entropy_bits']:>18.3f}{fh['entropy_bits']:>18.3f}",
        f"{'coverage':18s}{h['coverage']:>18.2f}{fh['coverage']:>18.2f}",
        f"{'confidence':18s}{h['mean_confidence']:>18.3f}{fh['mean_confidence']:>18.3f}",
        "classes: " + ", ".join(f"{name}={c}" for name, c in zip(h["class_names"], h["counts"])),
    ]
    return "\n".join(lines)


def _fid_floor(fl: dict[str, Any]) -> str:
    return f"{fl['fid']:.3f} ± {fl.get('fid_std', 0.0):.3f}" if fl.get("fid_std") else f"{fl['fid']:.3f}"


def _pm(k: dict[str, float]) -> str:
    return f"{1e3 * k['mean']:.3f} ± {1e3 * k['std']:.3f}"


# ---------------------------------------------------------------------------------------- 명령줄
#: ``train-classifier`` 의 기본 출력. 책이 싣는 파일이 아니라 실행 디렉터리에 쓴다 (``train`` 의 runs/… 처럼).
DEFAULT_CLASSIFIER_OUT = f"runs/classifier/{CLASSIFIER_NAME}"


def add_cli(subparsers: Any) -> None:
    """``ddpm-ko`` 에 ``train-classifier`` 와 ``evaluate`` 하위 명령을 더한다 (처리는 ``run_cli``)."""
    from .cli import DATA_DIR_HELP, NO_PROGRESS_HELP, OVERWRITE_SHIPPED_HELP, THREADS_HELP
    from .cli import positive_int as _pos_int

    c = subparsers.add_parser("train-classifier", help="평가용 Fashion-MNIST 분류기 학습 / train the evaluation classifier")
    c.add_argument("--data-dir", help=DATA_DIR_HELP)
    c.add_argument("--out", default=DEFAULT_CLASSIFIER_OUT,
                   help=f"출력 .safetensors (output file; 기본 {DEFAULT_CLASSIFIER_OUT}). 책이 싣는 분류기는 "
                        "--overwrite-shipped 없이는 덮어쓰지 않는다")
    c.add_argument("--overwrite-shipped", action="store_true", help=OVERWRITE_SHIPPED_HELP)
    c.add_argument("--epochs", type=_pos_int, default=3, help="에폭 수 (epochs; 기본 3)")
    c.add_argument("--seed", type=int, default=0, help="난수 시드 (random seed; 기본 0)")
    c.add_argument("--threads", type=_pos_int, help=THREADS_HELP)
    c.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)

    e = subparsers.add_parser("evaluate", help="생성한 이미지의 FID·KID·클래스 분포 / evaluate samples (FID, KID, classes)")
    e.add_argument("--samples", required=True, help="`ddpm-ko sample --out` 이 쓴 uint8 .npy 파일 (samples file)")
    e.add_argument("--num", type=_pos_int, help="앞에서부터 이만큼만 평가 (evaluate the first N; 기본: 전부)")
    e.add_argument("--classifier", help=f"분류기 .safetensors (classifier; 기본: 책이 싣는 {CLASSIFIER_NAME})")
    e.add_argument("--seed", type=int, default=0,
                   help="바닥값의 진짜 이미지와 KID 부분집합을 뽑는 시드 (seed for the floor and KID subsets)")
    e.add_argument("--json", help="결과를 쓸 .json 파일 (write the report as JSON)")
    e.add_argument("--data-dir", help=DATA_DIR_HELP)
    e.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)


def run_cli(args: argparse.Namespace) -> int:
    """``add_cli`` 가 더한 하위 명령을 실행한다. 잘못된 입력은 ``ValueError``/``DdpmKoError`` 로 알린다."""
    if args.command == "train-classifier":
        from .classifier import train_classifier

        from .cli import refuse_shipped_overwrite

        if Path(args.out).suffix != ".safetensors":
            raise ValueError(f"--out 은 .safetensors 로 끝나야 한다 / --out must end in .safetensors: {args.out}")
        refuse_shipped_overwrite(args.out, args.overwrite_shipped)  # 몇 분 학습하기 전에 알린다
        _, info = train_classifier(args.out, data_dir=args.data_dir, epochs=args.epochs, seed=args.seed,
                                   threads=args.threads, progress=not args.no_progress)
        print(f"[ddpm-ko] 분류기 / classifier: {args.out} (test accuracy {info['test_accuracy']:.4f})")
        return 0
    if args.command == "evaluate":
        if args.json is not None and Path(args.json).suffix.lower() != ".json":
            raise ValueError(f"--json 파일은 .json 으로 끝나야 한다 / --json must end in .json: {args.json}")
        result = evaluate(args.samples, num=args.num, seed=args.seed, classifier=args.classifier, data_dir=args.data_dir,
                          progress=not args.no_progress)
        print(format_report(result))
        if args.json:
            out = Path(args.json)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
            print(f"[ddpm-ko] {out}")
        return 0
    raise ValueError(f"알 수 없는 명령 / unknown command: {args.command}")
