"""책이 싣는 두 모델의 출력이 패키지 구조를 고쳐도 그대로인지 본다 (이슈 12: 리팩터링 전에 기록한 값).

분류기의 값은 리팩터링 전(커밋 18ea20d)의 패키지로 잰 것이다. 조건 없는 모델의 값도 처음에는 그렇게 쟀고, 그 모델을 미세
조정한 새 판(SHA-256 54c0aff9…)으로 바꿀 때 다시 기록했다: 옛 판에서 리팩터링 전 값과 비트까지 같던 그 패키지로, 기록하기 직전에
옛 판의 값이 그대로인 것을 확인한 뒤 새 판으로 잰 값이다. 모델을 float64 로 바꿔 계산하므로 CPU 종류(oneDNN 이 고르는
커널)와 스레드 수에 따른 차이가 1e-12 상대 오차 아래다. 허용 오차 1e-9 는 그보다 천 배 넉넉하고, 연산 하나가
바뀌었을 때 생기는 float32 크기(1e-7 이상)의 차이는 잡는다.
"""

from __future__ import annotations

import pytest
import torch

from ddpm_ko.pretrained import load_pretrained

RTOL = 1e-9  # 위 모듈 설명: float64 계산, 기계마다 다른 커널의 차이(≲1e-12)보다 넉넉하고 float32 반올림(≈1e-7)보다 엄격


def _summary(a: torch.Tensor) -> list[float]:
    # 합, 절댓값의 합, 97개마다 하나씩 뽑은 값의 제곱합: 어느 원소가 바뀌어도 셋 중 하나는 바뀐다
    return [float(a.sum()), float(a.abs().sum()), float(a.flatten()[::97].pow(2).sum())]


def _check(got: torch.Tensor, want: list[float]) -> None:
    assert _summary(got) == pytest.approx(want, rel=RTOL)


@pytest.fixture(scope="module")
def shipped():
    model, diffusion, _ = load_pretrained("cpu")
    model, diffusion = model.double().eval(), diffusion.double()
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1234), dtype=torch.float64)
    return model, diffusion, x


@torch.no_grad()
def test_shipped_unet_output_is_unchanged(shipped) -> None:
    model, _, x = shipped
    _check(model(x, torch.tensor([0, 499, 999])), [47.275725908545496, 2006.7764148549782, 96.50337362327376])


@torch.no_grad()
def test_one_ddpm_step_is_unchanged(shipped) -> None:
    model, diffusion, x = shipped
    x_prev, x0 = diffusion.p_sample(model, x, 500, generator=torch.Generator().manual_seed(0))
    _check(x_prev, [-23.52581789071905, 1903.2967022879109, 22.575636531520168])
    _check(x0, [-485.1856756671609, 1003.0518163823831, 6.366084537751796])


@torch.no_grad()
@pytest.mark.parametrize(
    "sampler, want",
    [
        ("ddim", [-847.615473018763, 1446.53542512978, 11.751698362268579]),
        ("dpm-solver++", [-925.5005125447846, 1367.5512453452916, 11.778128553129754]),
    ],
)
def test_five_step_samplers_are_unchanged(shipped, sampler: str, want: list[float]) -> None:
    model, diffusion, x = shipped
    # 값은 λ 간격으로 기록했다 (그때의 기본 간격). 기본 간격이 바뀌어도 같은 계산을 견주도록 이름으로 고른다
    spacing = {"spacing": "logsnr"} if sampler == "dpm-solver++" else {}
    out = diffusion.sample(
        model, (3, 1, 28, 28), sampler=sampler, steps=5, x_T=x, generator=torch.Generator().manual_seed(0), **spacing
    )
    _check(out, want)


@torch.no_grad()
def test_shipped_classifier_output_is_unchanged() -> None:
    from ddpm_ko.pretrained import load_classifier

    clf = load_classifier(device="cpu").double().eval()
    img = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    _check(clf.features(img), [166.57067694647458, 334.98843580196933, 1.2509827075338043])
    _check(clf(img), [-47.64464666774134, 75.98612529696868, 3.4341827646347944])
