"""브라우저 샘플러(book/_static/live/*.js)의 파이썬 짝: 같은 난수 생성기와, 패키지 샘플러로 만든 기준 이미지.

- ``NormalStream`` 은 ``prng.js`` 를 한 줄씩 옮긴 것이다 (mulberry32 + 박스-뮬러). 같은 시드면 같은 수열을 낸다.
- ``reference_ddim`` 은 그 수열의 x_T 로 패키지의 ``GaussianDiffusion.sample(sampler="ddim")`` 을 돌린다.
  신경망은 사이트에 실린 바로 그 ONNX 파일을 onnxruntime 으로 돌린다 (``ddpm_ko.onnx_export.OnnxUnet``).
  η > 0 이면 패키지가 단계마다 뽑는 노이즈(``ddpm_ko.diffusion._randn``) 자리에 같은 수열의 다음 값을 넣는다.
  브라우저도 x_T 를 먼저 뽑고 단계마다 z 를 같은 순서로 뽑으므로, 두 쪽이 같은 난수를 쓴다.
- ``reference_dpm_solver`` 는 DPM-Solver++(2M) 이고, ``stochastic=True`` 면 그 SDE 판이다. SDE 판도 DDIM 처럼
  패키지가 단계마다 뽑는 노이즈 자리에 같은 수열의 다음 값을 넣는다.
- ``reference_guided`` 는 클래스를 고른 경우다: 사이트의 조건부 모델(``unet_cond.onnx``)로 패키지 샘플러의
  분류기 없는 가이던스(``sample(labels=…, guidance=w)``, ``ddpm_ko.guidance.guided_model``)를 돌린다.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from unittest import mock

import numpy as np
import torch

_M32 = 0xFFFFFFFF


def _imul(a: int, b: int) -> int:
    """자바스크립트 Math.imul 처럼 32비트로 넘치는 곱 (부호 없는 값으로)."""
    return (a * b) & _M32


class NormalStream:
    """prng.js 의 NormalStream 과 같은 수열을 내는 생성기."""

    def __init__(self, seed: int) -> None:
        self.state = seed & _M32
        self.spare: float | None = None

    def next_uint32(self) -> int:
        self.state = (self.state + 0x6D2B79F5) & _M32
        t = self.state
        t = _imul(t ^ (t >> 15), t | 1)
        t ^= (t + _imul(t ^ (t >> 7), t | 61)) & _M32
        return (t ^ (t >> 14)) & _M32

    def uniform(self) -> float:
        return (self.next_uint32() + 0.5) / 4294967296

    def normal(self) -> float:
        if self.spare is not None:
            z, self.spare = self.spare, None
            return z
        r = math.sqrt(-2 * math.log(self.uniform()))
        angle = 2 * math.pi * self.uniform()
        self.spare = r * math.sin(angle)
        return r * math.cos(angle)

    def take(self, n: int) -> np.ndarray:
        return np.array([self.normal() for _ in range(n)], dtype=np.float64).astype(np.float32)


def model_info(site_dir: Path, stem: str = "unet") -> dict:
    return json.loads((site_dir / "_static" / "live" / f"{stem}.json").read_text(encoding="utf-8"))


def _reference(site_dir: Path, stem: str, seed: int, num: int, **sample_kw) -> dict[str, np.ndarray]:
    """사이트의 ``{stem}.onnx`` 를 신경망으로, 브라우저와 같은 난수열로 패키지의 ``GaussianDiffusion.sample`` 을 돌린다.

    x_T 를 먼저 수열에서 뽑고, 패키지가 스텝마다 뽑는 노이즈(``ddpm_ko.diffusion._randn``: DDIM η > 0, DDPM, SDE 판) 자리에
    같은 수열의 다음 값을 넣는다. 브라우저도 같은 순서로 뽑는다. 결과는 {"xT", "final"} (둘 다 (N, C, H, W)).
    """
    import ddpm_ko.diffusion as diffusion_module
    from ddpm_ko.diffusion import GaussianDiffusion
    from ddpm_ko.onnx_export import OnnxUnet

    info = model_info(site_dir, stem)
    shape = (num, info["channels"], info["image_size"], info["image_size"])
    diffusion = GaussianDiffusion.from_schedule(
        info["diffusion"]["schedule"],
        info["diffusion"]["timesteps"],
        prediction_type=info["diffusion"]["prediction_type"],
    )
    model = OnnxUnet(site_dir / "_static" / "live" / f"{stem}.onnx")
    stream = NormalStream(seed)
    x_T = stream.take(int(np.prod(shape))).reshape(shape)

    def same_noise(noise_shape, generator, device, dtype=torch.float32):
        return torch.from_numpy(stream.take(int(np.prod(noise_shape))).reshape(noise_shape)).to(device, dtype)

    with mock.patch.object(diffusion_module, "_randn", same_noise):
        final = diffusion.sample(model, shape, x_T=torch.from_numpy(x_T.copy()), **sample_kw)
    return {"xT": x_T, "final": final.numpy()}


def reference_ddim(site_dir: Path, seed: int, num: int, steps: int, eta: float) -> dict[str, np.ndarray]:
    """브라우저와 같은 시드·설정으로 패키지의 DDIM 샘플러를 돌린 결과 {"xT", "final"} (둘 다 (N, C, H, W))."""
    return _reference(site_dir, "unet", seed, num, sampler="ddim", steps=steps, eta=eta)


def package_has_dpm_solver() -> bool:
    """패키지에 DPM-Solver++(2M) 샘플러가 있는가 (``GaussianDiffusion.sample(sampler="dpm-solver++")``)."""
    from ddpm_ko.sampling import SAMPLERS

    return "dpm-solver++" in SAMPLERS


def reference_dpm_solver(
    site_dir: Path, seed: int, num: int, steps: int, spacing: str, stochastic: bool = False
) -> dict[str, np.ndarray]:
    """브라우저와 같은 x_T 로 패키지의 DPM-Solver++(2M) 를 돌린 결과 {"xT", "final"}.

    ODE 판은 난수를 x_T 에만 쓴다. ``stochastic`` 이면 SDE 판(``sampler="sde-dpm-solver++"``)이고, 단계마다의 노이즈도
    브라우저와 같은 수열에서 이어 뽑는다.
    """
    sampler = "sde-dpm-solver++" if stochastic else "dpm-solver++"
    return _reference(site_dir, "unet", seed, num, sampler=sampler, steps=steps, spacing=spacing)


def reference_guided(
    site_dir: Path, seed: int, num: int, sampler: str, steps: int, label: int, w: float, eta: float = 0.0
) -> dict[str, np.ndarray]:
    """브라우저와 같은 시드로 조건부 ONNX 파일에 패키지의 가이던스 샘플러를 돌린 결과 {"xT", "final"}.

    ``sampler`` 는 쪽의 선택지 값(``ddim``, ``sde-dpm-karras``, ``dpm-logsnr``, ``dpm-time`` 등)이다. 모든 이미지가
    클래스 ``label`` 이다.
    """
    if sampler == "ddim":
        options = {"sampler": "ddim", "eta": eta}
    elif sampler.startswith("sde-dpm-"):
        options = {"sampler": "sde-dpm-solver++", "spacing": sampler.removeprefix("sde-dpm-")}
    else:
        options = {"sampler": "dpm-solver++", "spacing": sampler.removeprefix("dpm-")}
    return _reference(
        site_dir, "unet_cond", seed, num, steps=steps, labels=torch.full((num,), label), guidance=w, **options
    )
