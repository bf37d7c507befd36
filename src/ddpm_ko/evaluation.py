"""생성한 이미지 묶음을 평가한다: 표본 파일 읽기, 분류기 특징 뽑기, 진짜 데이터의 바닥값과 함께 보고하기.

특징은 ``ddpm_ko.classifier`` 의 작은 Fashion-MNIST 분류기가 만든 128차원 벡터다. 원래 FID 가 쓰는
Inception-v3 특징이 아니므로, 여기서 나온 값은 논문의 FID 와 **직접 비교할 수 없다**. 대신 모든 숫자 옆에
같은 표본 수의 "진짜 대 진짜" 바닥값(floor)을 함께 낸다: 학습 분할에서 무작위로 뽑은 진짜 이미지 N 장을
같은 방법으로 잰 값이다. 표본이 N 장뿐이면 진짜 이미지끼리도 FID 가 0 이 되지 않으므로, 생성 모델의 값은
이 바닥값과 견주어 읽는다. FID·KID 의 수식은 ``ddpm_ko.metrics``, 분류기 파일을 찾는 일은 ``ddpm_ko.pretrained`` 가 한다.

    >>> from ddpm_ko.evaluation import evaluate, format_report
    >>> report = evaluate("samples.npy")          # `ddpm-ko sample --out samples.npy` 가 쓴 파일
    >>> report["fid"], report["floor"]["fid"]
    >>> print(format_report(report))

명령줄: ``ddpm-ko evaluate`` (``ddpm_ko.cli``).
"""

from __future__ import annotations

import os
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .classifier import FashionClassifier
from .data import fashion_mnist_arrays
from .errors import DdpmKoError
from .metrics import class_histogram, fid, kid
from .pretrained import load_classifier

__all__ = [
    "SampleInputError",
    "load_samples",
    "to_classifier_input",
    "progress_bar",
    "features_and_logits",
    "extract_features",
    "image_class_histogram",
    "reference_features",
    "evaluate",
    "format_report",
    "load_classifier",  # 책이 싣는 분류기를 불러온다 (자리는 ddpm_ko.pretrained)
]


class SampleInputError(DdpmKoError, ValueError):
    """평가할 이미지의 모양·자료형·값 범위가 잘못되었을 때 (``ValueError`` 이기도 하다)."""


# ---------------------------------------------------------------------------------------- 입력 검사
def load_samples(path: str | os.PathLike) -> np.ndarray:
    """``ddpm-ko sample --out`` 이 쓴 ``.npy`` (uint8, (N, H, W, C)) 를 읽는다. 피클은 허용하지 않는다."""
    p = Path(path)
    if p.suffix.lower() != ".npy":
        raise SampleInputError(f"표본 파일은 .npy 여야 한다 / samples file must be a .npy file: {p}")
    if not p.is_file():
        raise SampleInputError(
            f"표본 파일이 없다 / samples file not found: {p} — `ddpm-ko sample --out {p.name}` 로 만든다"
        )
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as e:  # ValueError (피클·손상), OSError …
        raise SampleInputError(
            f"표본 파일을 읽을 수 없다 / cannot read samples file {p}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from e
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
            raise SampleInputError(
                f"이미지 배열의 자료형이 잘못되었다 / unsupported image dtype {images.dtype}: "
                "expected uint8 (0..255) or float in [-1, 1]"
            )
        x = torch.from_numpy(np.ascontiguousarray(images))
    elif isinstance(images, torch.Tensor):
        x = images.detach().cpu()
    else:
        raise SampleInputError(
            f"이미지는 NumPy 배열이나 텐서여야 한다 / images must be a NumPy array or a tensor, "
            f"got {type(images).__name__}"
        )
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
        raise SampleInputError(
            f"이미지 자료형 {x.dtype} 은 쓸 수 없다 / unsupported image dtype {x.dtype}: "
            "expected uint8 (0..255) or float in [-1, 1]"
        )
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
        raise SampleInputError(
            f"float 이미지는 [-1, 1] 범위여야 한다 / float images must be in [-1, 1], got [{lo:.3g}, {hi:.3g}]{hint}"
        )
    if lo >= -0.01 and x.numel() >= 2 * s * s:
        raise SampleInputError(
            f"음수 픽셀이 하나도 없다: [0, 1] 범위 이미지로 보인다 / no negative pixels, looks like "
            f"[0, 1] images (got [{lo:.3g}, {hi:.3g}]): convert with x * 2 - 1"
        )
    return x.clamp(-1, 1).contiguous()


def _shape_message(shape: tuple[int, ...], s: int) -> str:
    extra = ""
    if len(shape) == 4 and 3 in (shape[1], shape[-1]):
        extra = " (RGB 는 안 된다: Fashion-MNIST 는 흑백 / RGB is not supported: Fashion-MNIST is grayscale)"
    return (
        f"이미지 모양이 잘못되었다 / wrong image shape {shape}: expected uint8 (N, {s}, {s}, 1) as written by "
        f"`ddpm-ko sample --out`, or (N, 1, {s}, {s}){extra}"
    )


# ---------------------------------------------------------------------------------------- 특징
def progress_bar(enabled: bool, total: int, desc: str) -> Any:
    """``train``·``sample`` 과 같은 tqdm 진행 막대 (표준 오류에 쓴다). ``enabled`` 가 거짓이면 None."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, mininterval=1.0)


@torch.no_grad()
def features_and_logits(
    images: np.ndarray | torch.Tensor,
    classifier: FashionClassifier | None = None,
    batch_size: int = 500,
    bar: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """이미지 → (분류기 특징 (N, 128), 로짓 (N, 10)), 둘 다 float64. 분류기를 한 번만 돌려 둘을 함께 얻는다.

    ``classifier`` 가 없으면 책이 싣는 분류기 (``load_classifier``). ``bar`` 는 ``progress_bar`` 의 막대.
    """
    model = classifier if classifier is not None else load_classifier()
    x = to_classifier_input(images, model.config.image_size)
    device = next(model.parameters()).device
    model.eval()
    feats, logits = [], []
    for i in range(0, len(x), batch_size):
        h = model.features(x[i : i + batch_size].to(device))
        feats.append(h.double().cpu())
        logits.append(model.logits_from_features(h).double().cpu())
        if bar is not None:
            bar.update(len(h))
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


def extract_features(
    images: np.ndarray | torch.Tensor, classifier: FashionClassifier | None = None, batch_size: int = 500
) -> np.ndarray:
    """이미지 → 분류기 특징 (N, 128) float64. 입력 형식은 ``to_classifier_input`` 을 보라."""
    return features_and_logits(images, classifier, batch_size)[0]


def image_class_histogram(
    images: np.ndarray | torch.Tensor, classifier: FashionClassifier | None = None
) -> dict[str, Any]:
    """이미지를 분류기에 넣어 예측 클래스 히스토그램을 센다 (``ddpm_ko.metrics.class_histogram`` 을 보라)."""
    return class_histogram(features_and_logits(images, classifier)[1])


# ---------------------------------------------------------------------------------------- 평가
_REF_CACHE: weakref.WeakKeyDictionary[FashionClassifier, dict[str, Any]] = weakref.WeakKeyDictionary()


def reference_features(
    split: str = "test",
    classifier: FashionClassifier | None = None,
    data_dir: str | os.PathLike | None = None,
    num: int | None = None,
    *,
    bar: Any = None,
) -> np.ndarray:
    """진짜 Fashion-MNIST 분할의 (앞 ``num`` 장, 기본은 전체) 특징. 분류기마다 한 번만 계산해 둔다.

    ``bar`` 는 tqdm 진행 막대 (``progress_bar``): 특징을 새로 계산하면 그 이미지 수만큼 막대의 전체 양을 늘리고 채운다.
    """
    model = classifier if classifier is not None else load_classifier()
    cache = _REF_CACHE.setdefault(model, {})
    full = (split, str(data_dir), None)
    if full in cache:
        return cache[full][:num] if num else cache[full]
    key = (split, str(data_dir), num)
    if key not in cache:
        images, _ = fashion_mnist_arrays(split, data_dir)
        if num is not None and not 2 <= num <= len(images):
            raise ValueError(
                f"reference_num 은 2..{len(images)} / reference_num must be in 2..{len(images)}, got {num}"
            )
        chosen = images[:num] if num else images
        if bar is not None:
            bar.total += len(chosen)
            bar.refresh()
        cache[key] = features_and_logits(chosen, model, 500, bar)[0]
    return cache[key]


def evaluate(
    samples: str | os.PathLike | np.ndarray | torch.Tensor,
    num: int | None = None,
    seed: int = 0,
    classifier: FashionClassifier | str | os.PathLike | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    data_dir: str | os.PathLike | None = None,
    reference_num: int | None = None,
    floor_draws: int = 5,
    progress: bool = False,
) -> dict[str, Any]:
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
    start = time.perf_counter()
    source = str(samples) if isinstance(samples, (str, os.PathLike)) else f"in-memory {type(samples).__name__}"
    if isinstance(samples, (str, os.PathLike)):
        samples = load_samples(samples)  # 입력 오류는 분류기를 불러오기 전에 알린다
    model = load_classifier(classifier) if not isinstance(classifier, FashionClassifier) else classifier
    x = to_classifier_input(samples, model.config.image_size)
    if num is not None:
        if num < 2:
            raise ValueError(f"num 은 2 이상 / num must be >= 2, got {num}")
        if num > len(x):
            raise ValueError(
                f"표본이 {len(x)} 장뿐인데 num={num} 을 요청했다 / only {len(x)} samples, asked for num={num}"
            )
        x = x[:num]
    n = len(x)
    if n < 2:
        raise ValueError(f"평가에는 이미지가 2장 이상 필요하다 / need at least 2 images, got {n}")
    if floor_draws < 1:
        raise ValueError(f"floor_draws 는 1 이상 / floor_draws must be >= 1, got {floor_draws}")
    bar = progress_bar(progress, n * (1 + floor_draws), "evaluate features")
    try:
        ref = reference_features("test", model, data_dir, reference_num, bar=bar)
        feat, logits = features_and_logits(x, model, 500, bar)

        train_images, _ = fashion_mnist_arrays("train", data_dir)
        if n > len(train_images):
            raise ValueError(
                f"바닥값을 재려면 N ≤ {len(train_images)} / num must be <= {len(train_images)} for the floor"
            )
        rng = np.random.default_rng(seed)
        floor_fids: list[float] = []
        for k in range(floor_draws):
            idx = np.sort(rng.choice(len(train_images), n, replace=False))
            draw_feat, draw_logits = features_and_logits(train_images[idx], model, 500, bar)
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
        "reference": {"split": "test", "num": len(ref)},
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
