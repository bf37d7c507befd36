"""``ddpm_ko.metrics`` 검사: 행렬 제곱근, FID (닫힌 꼴과 비교), KID (치우침 없음), 클래스 히스토그램.

FID·KID 의 기준값은 패키지 함수를 쓰지 않고 따로 계산한다. 표본 파일과 분류기를 거치는 평가는 tests/test_evaluation.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from ddpm_ko.metrics import class_histogram, fid, frechet_distance, kid, sqrtm_psd


def random_spd(d: int, rng: np.random.Generator, rank: int | None = None) -> np.ndarray:
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / (rank or d) + (0.0 if rank else 0.1 * np.eye(d))


# ---------------------------------------------------------------------------------------- 행렬 제곱근
@pytest.mark.parametrize("rank", [None, 5])
def test_sqrtm_psd_squares_back(rank):
    rng = np.random.default_rng(0)
    a = random_spd(40, rng, rank)
    s = sqrtm_psd(a)
    assert np.allclose(s, s.T)
    assert np.linalg.eigvalsh(s).min() > -1e-10  # 제곱근도 PSD
    rel = np.linalg.norm(s @ s - a) / np.linalg.norm(a)
    assert rel < 1e-10, rel


def test_sqrtm_psd_diagonal_and_scipy():
    d = np.diag([4.0, 9.0, 0.0, 1e-12])
    assert np.allclose(sqrtm_psd(d), np.diag([2.0, 3.0, 0.0, 1e-6]))
    scipy_linalg = pytest.importorskip("scipy.linalg")
    a = random_spd(20, np.random.default_rng(1))
    assert np.allclose(sqrtm_psd(a), np.real(scipy_linalg.sqrtm(a)), atol=1e-9)


def test_sqrtm_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        sqrtm_psd(np.ones((3, 4)))


# ---------------------------------------------------------------------------------------- FID
def test_fid_identical_sets_is_zero():
    f = np.random.default_rng(0).standard_normal((300, 16))
    assert fid(f, f) == pytest.approx(0.0, abs=1e-8)


def test_fid_mean_shift_closed_form_and_monotone():
    f = np.random.default_rng(0).standard_normal((400, 8))
    direction = np.ones(8) / np.sqrt(8)
    values = [fid(f, f + delta * direction) for delta in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(values, values[1:]))
    # 공분산이 같으면 FID 는 평균 차이의 제곱 노름과 정확히 같다
    for delta, v in zip((0.0, 0.25, 0.5, 1.0, 2.0), values):
        assert v == pytest.approx(delta**2, abs=1e-8)


def test_frechet_distance_closed_forms():
    # 1차원: (μ₁ − μ₂)² + (σ₁ − σ₂)²
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-1.0]), np.array([[1.0]])) == pytest.approx(
        4.0 + 1.0
    )
    # 대각 공분산: ‖Δμ‖² + Σ(√λ₁ − √λ₂)²
    l1, l2 = np.array([1.0, 4.0, 9.0, 0.5]), np.array([2.0, 1.0, 9.0, 0.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.5, 1.0, 0.0, 3.0])
    expect = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(l1) - np.sqrt(l2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(l1), mu2, np.diag(l2)) == pytest.approx(expect, rel=1e-12)
    # 서로 교환하지 않는 공분산: tr(Σ₁Σ₂)^{1/2} = Σ √eig(Σ₁Σ₂) (Σ₁Σ₂ 의 고윳값은 실수이고 0 이상)
    rng = np.random.default_rng(2)
    s1, s2 = random_spd(12, rng), random_spd(12, rng)
    m1, m2 = rng.standard_normal(12), rng.standard_normal(12)
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    expect = ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expect, rel=1e-9)
    # 같은 분포끼리는 0, 대칭
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(frechet_distance(m2, s2, m1, s1), rel=1e-9)


def test_fid_of_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(3)
    d, n = 4, 40_000
    s1, s2 = random_spd(d, rng), random_spd(d, rng)
    m1, m2 = np.zeros(d), np.full(d, 0.5)
    a = rng.multivariate_normal(m1, s1, size=n)
    b = rng.multivariate_normal(m2, s2, size=n)
    exact = frechet_distance(m1, s1, m2, s2)
    assert fid(a, b) == pytest.approx(exact, rel=0.05, abs=0.02)


def test_fid_rejects_bad_features():
    with pytest.raises(ValueError, match="feature dimensions differ"):
        fid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        fid(np.zeros(5), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="NaN"):
        fid(np.full((5, 2), np.nan), np.zeros((5, 2)))


# ---------------------------------------------------------------------------------------- KID
def test_kid_same_distribution_near_zero_and_shift_positive():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    same_mean, same_std = kid(a, b, subsets=40, subset_size=300, seed=0)
    shift_mean, shift_std = kid(a, b + 0.5, subsets=40, subset_size=300, seed=0)
    assert shift_mean > 10 * shift_std > 0
    assert abs(same_mean) < 0.05 * shift_mean
    assert abs(same_mean) < 3 * same_std


def test_kid_is_unbiased_for_equal_distributions():
    """치우침 없는 추정: 부분집합마다의 값이 음수도 나오며, 여러 번 뽑은 평균이 0 에 가깝다."""
    rng = np.random.default_rng(5)
    means = [
        kid(rng.standard_normal((50, 4)), rng.standard_normal((50, 4)), subsets=1, subset_size=50)[0]
        for _ in range(200)
    ]
    assert min(means) < 0 < max(means)  # 치우친 추정(V-통계량)이면 늘 양수다
    assert abs(np.mean(means)) < 4 * np.std(means) / np.sqrt(len(means))


def test_kid_matches_direct_formula():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((30, 5)), rng.standard_normal((30, 5)) + 0.3
    k = lambda u, v: (u @ v.T / 5 + 1) ** 3  # noqa: E731
    m = 30
    direct = (
        (k(x, x).sum() - np.trace(k(x, x))) / (m * (m - 1))
        + (k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )
    assert kid(x, y, subsets=1, subset_size=30)[0] == pytest.approx(direct, rel=1e-12)


# ---------------------------------------------------------------------------------------- 히스토그램
def test_class_histogram_uniform_and_collapsed():
    uniform = np.eye(10)[np.arange(1000) % 10] * 10
    h = class_histogram(logits=uniform)
    assert h["counts"] == [100] * 10
    assert h["normalized_entropy"] == pytest.approx(1.0) and h["coverage"] == 1.0
    collapsed = np.eye(10)[np.zeros(500, dtype=int)] * 10
    h = class_histogram(logits=collapsed)
    assert h["counts"][0] == 500 and h["entropy_bits"] == 0.0 and h["coverage"] == pytest.approx(0.1)
    assert 0.99 < h["mean_confidence"] <= 1.0
