"""책의 "브라우저에서 샘플링" 쪽(book/live_sampling.md)을 헤드리스 Chromium 으로 열어 실제로 샘플링해 본다.

* 자바스크립트 샘플러(``_static/live/ddim.js``)의 스케줄·시각·한 단계가 패키지(``ddpm_ko``)와 같은 값을 낸다.
* 자바스크립트 난수(``prng.js``)가 파이썬 짝(``live_reference.NormalStream``)과 같은 수열을 낸다.
* 단추를 눌러 돌린 샘플링의 최종 이미지가, 같은 x_T 와 같은 ONNX 파일로 패키지의 DDIM 샘플러를 돌린 이미지와
  거의 같다 (η = 0 과 η > 0). 캔버스에 그려진 것은 노이즈가 아니라 옷이다.
* 클래스를 고르면 조건부 모델(``unet_cond.onnx``)을 그때 불러와, 패키지와 같은 분류기 없는 가이던스(한 번의 2B 호출)로
  샘플링한다: 최종 이미지가 같은 x_T·같은 클래스·같은 w 로 패키지 샘플러를 돌린 이미지와 거의 같다. w 의 기본값은
  패키지의 ``DEFAULT_GUIDANCE``, 클래스 이름은 ``CLASS_NAMES_KO`` 다.
* 전화기 크기 화면(390×844)에서 두 그림이 나란히 보이고 가로로 넘치지 않는다.
* 콘솔 오류도, localhost 밖으로 나가는 요청도 없다. 교차 출처 격리(COOP/COEP) 서버에서는 여러 스레드로 돈다.
* 파일(file://)로 열면 데모 자리에 한국어 안내가 나온다.

U-Net 평가 시간은 재기만 하고 검사하지 않는다: ``<사이트>/../live_sampling_timings.json`` 에 남긴다.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time

import numpy as np
import pytest
import torch

import sitecheck
from sitecheck import SITE_DIR, Site, open_page

pytestmark = pytest.mark.browser

PAGE = "book/live_sampling.html"
PHONE = {"width": 390, "height": 844}
# 한 번의 샘플링에 허용하는 시간. 2 코어를 다른 작업과 나눠 쓰는 기계에서 U-Net 한 번이 수 초까지 걸린다.
RUN_TIMEOUT_MS = 600_000
TIMINGS = SITE_DIR.parent / "live_sampling_timings.json"

live_reference = pytest.importorskip("live_reference")
pytest.importorskip("onnxruntime", reason="onnxruntime 이 없다 (requirements.txt, make setup)")


def _record_timing(name: str, result: dict) -> None:
    """U-Net 평가 시간을 파일에 더해 둔다 (검사하지 않는다: 기계의 부하에 따라 몇 배씩 달라진다)."""
    data = json.loads(TIMINGS.read_text(encoding="utf-8")) if TIMINGS.is_file() else {}
    ms = result["msPerEval"]
    data[name] = {
        "num": result["num"],
        "steps": result["steps"],
        "threads": result["threads"],
        "ms_per_eval": [round(v, 1) for v in ms],
        "median_ms_per_eval": round(float(np.median(ms)), 1) if ms else None,
        "wall_s": round(result["wallMs"] / 1000, 2),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    TIMINGS.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def _open_live(browser, site: Site, viewport=None):
    if not (SITE_DIR / PAGE).is_file():
        pytest.fail(f"{PAGE} 이 사이트에 없다: `make book` 으로 빌드할 것 (_toc.yml 의 book/live_sampling)")
    context, page, log = open_page(browser, site, viewport)
    page.goto(site.url(PAGE), wait_until="load")
    try:
        page.evaluate("() => window.ddpmLive.ready")
    except Exception as exc:
        status = page.inner_text("#live-status")
        context.close()
        pytest.fail(f"모델을 불러오지 못했다: {status} ({exc})")
    return context, page, log


@pytest.fixture(scope="module")
def live(browser, site):
    """전화기 크기 화면으로 연 그 쪽 (모듈의 검사들이 나눠 쓴다)."""
    context, page, log = _open_live(browser, site, PHONE)
    yield page, log
    context.close()


def _run(
    page,
    *,
    steps: int,
    eta: float,
    seed: int,
    num: int,
    sampler: str = "ddim",
    label: int | None = None,
    guidance: float | None = None,
) -> dict:
    """화면의 입력을 채우고 단추를 눌러 샘플링한 뒤 결과(window.ddpmLive.lastResult)를 돌려준다.

    ``label`` 이 None 이면 '조건 없음'(조건 없는 모델)을 고른다. ``guidance`` 는 슬라이더의 w 다.
    """
    page.select_option("#live-class", "" if label is None else str(label))
    if guidance is not None:  # 슬라이더(type=range)는 fill 로 채울 수 없다: 값을 넣고 input 사건을 낸다
        page.eval_on_selector(
            "#live-guidance", "(el, w) => { el.value = String(w); el.dispatchEvent(new Event('input')); }", guidance
        )
        assert float(page.input_value("#live-guidance")) == guidance
    page.select_option("#live-sampler", sampler)
    page.fill("#live-steps", str(steps))
    if page.is_enabled("#live-eta"):
        page.fill("#live-eta", str(eta))
    else:  # η 는 DDIM 에만: DPM-Solver++ 두 판에서는 η 칸이 0 으로 잠긴다
        assert eta == 0 and page.input_value("#live-eta") == "0"
    page.fill("#live-seed", str(seed))
    page.select_option("#live-num", str(num))
    page.click("#live-run")
    page.wait_for_function(
        "() => ['done', 'error'].includes(document.getElementById('live-status').dataset.kind)",
        timeout=RUN_TIMEOUT_MS,
    )
    kind = page.evaluate("() => document.getElementById('live-status').dataset.kind")
    assert kind == "done", page.inner_text("#live-status")
    return page.evaluate("() => window.ddpmLive.lastResult")


def _canvas_tiles(page, canvas_id: str, num: int, size: int = 28, gap: int = 2) -> np.ndarray:
    """캔버스의 격자를 (num, size, size) uint8 로 잘라 읽는다 (app.js 의 drawGrid 와 같은 배치)."""
    data = page.evaluate(
        """(id) => { const c = document.getElementById(id);
                     const d = c.getContext('2d').getImageData(0, 0, c.width, c.height);
                     return {w: c.width, h: c.height, px: Array.from(d.data)}; }""",
        canvas_id,
    )
    rgba = np.array(data["px"], dtype=np.uint8).reshape(data["h"], data["w"], 4)
    cols = int(np.ceil(np.sqrt(num)))
    tiles = []
    for k in range(num):
        oy, ox = (k // cols) * (size + gap), (k % cols) * (size + gap)
        tiles.append(rgba[oy : oy + size, ox : ox + size, 0])
    return np.stack(tiles)


def _assert_clean(log) -> None:
    problems = [f"외부 요청(막음): {u}" for u in log["external"]] + log["console"] + log["failed"]
    assert not problems, "\n  ".join(problems)


# ----------------------------------------------------------------------------------------
# 자바스크립트 함수 대 패키지


def _js(page, body: str, arg=None):
    """ES 모듈 ddim.js·dpm_solver.js·guidance.js·prng.js 를 불러와 ``body`` (async 함수의 몸통, 인자 arg)를 돌린다."""
    return page.evaluate(
        "async (arg) => { const ddim = await import('../_static/live/ddim.js');"
        " const dpm = await import('../_static/live/dpm_solver.js');"
        " const guide = await import('../_static/live/guidance.js');"
        " const prng = await import('../_static/live/prng.js');" + body + "}",
        arg,
    )


def test_page_defaults_follow_the_package(live) -> None:
    """쪽을 처음 열었을 때의 샘플러와 스텝 수는 패키지의 기본값(측정으로 정한 가장 싼 설정)과 같다 (이슈 14)."""
    from ddpm_ko import sampling, solvers

    page, _ = live
    option = {
        "ddim": "ddim",
        "dpm-solver++": f"dpm-{solvers.DEFAULT_SPACING}",
        "sde-dpm-solver++": f"sde-dpm-{solvers.DEFAULT_SPACING}",
    }.get(sampling.DEFAULT_SAMPLER)
    assert option is not None, f"쪽에 패키지의 기본 샘플러 {sampling.DEFAULT_SAMPLER!r} 가 없다"
    assert page.input_value("#live-sampler") == option
    if sampling.DEFAULT_SAMPLER in sampling.SOLVER_SAMPLERS:
        assert page.input_value("#live-steps") == str(solvers.DEFAULT_STEPS)
        assert not page.is_enabled("#live-eta") and page.input_value("#live-eta") == "0"  # η 는 DDIM 에만: 칸이 잠긴다


def test_class_picker_and_guidance_follow_the_package(live) -> None:
    """클래스 목록은 패키지의 한국어 클래스 이름이고, 처음에는 '조건 없음'(예전과 같은 조건 없는 모델)이 골라져 있다.
    가이던스 w 의 기본값은 패키지의 DEFAULT_GUIDANCE 이고, 클래스를 고르기 전에는 잠겨 있으며 조건부 모델도 받지 않는다."""
    from ddpm_ko.data import CLASS_NAMES_KO
    from ddpm_ko.guidance import DEFAULT_GUIDANCE

    page, _ = live
    options = page.eval_on_selector_all("#live-class option", "os => os.map(o => [o.value, o.textContent.trim()])")
    assert options[0][0] == "" and "조건 없음" in options[0][1]
    assert options[1:] == [[str(k), name] for k, name in enumerate(CLASS_NAMES_KO)]
    assert page.input_value("#live-class") == ""
    slider = page.eval_on_selector("#live-guidance", "el => ({min: +el.min, max: +el.max, step: +el.step})")
    assert float(page.input_value("#live-guidance")) == DEFAULT_GUIDANCE
    assert slider["min"] == 0 and slider["max"] >= DEFAULT_GUIDANCE and slider["step"] == 0.5
    assert page.inner_text("#live-guidance-value") == f"{DEFAULT_GUIDANCE:.1f}"
    assert not page.is_enabled("#live-guidance")  # w 는 클래스를 골랐을 때만 뜻이 있다
    assert page.evaluate("() => window.ddpmLive.state.condLoading === null")  # 조건부 모델은 아직 받지 않았다


@pytest.mark.parametrize("T", [1000, 500, 100, 10])
def test_schedule_matches_package(live, T) -> None:
    """β_t 와 샘플러가 쓰는 버퍼가 GaussianDiffusion 과 같다 (T ≠ 1000 의 1000/T 배까지)."""
    from ddpm_ko.diffusion import GaussianDiffusion
    from ddpm_ko.schedules import linear_beta_schedule

    page, _ = live
    js = _js(
        page,
        """const s = ddim.makeSchedule(arg);
        return {betas: Array.from(ddim.linearBetas(arg)), ac: Array.from(s.alphasCumprod),
                a: Array.from(s.sqrtRecipAlphasCumprod), b: Array.from(s.sqrtRecipm1AlphasCumprod)};""",
        T,
    )
    # β 는 float64 로 비교한다. torch.linspace 의 벡터 커널은 i·step 을 더하는 순서가 달라 마지막 몇 비트가
    # 어긋날 수 있으므로 상대 1e-14 (float64 ulp 의 수십 배)까지 허용한다.
    np.testing.assert_allclose(js["betas"], linear_beta_schedule(T).numpy(), rtol=1e-14, atol=0)
    d = GaussianDiffusion.from_schedule("linear", T)
    # 버퍼는 float64 값을 float32 로 반올림한 것이다. float64 값이 마지막 비트에서 다르면 반올림이 한 칸
    # 갈릴 수 있으므로 float32 한 ulp (2⁻²³ ≈ 1.2e-7 상대)까지 허용한다.
    ulp = 2.0**-23
    np.testing.assert_allclose(js["ac"], d.alphas_cumprod.numpy(), rtol=ulp, atol=0)
    np.testing.assert_allclose(js["a"], d.sqrt_recip_alphas_cumprod.numpy(), rtol=ulp, atol=0)
    np.testing.assert_allclose(js["b"], d.sqrt_recipm1_alphas_cumprod.numpy(), rtol=ulp, atol=0)


@pytest.mark.parametrize("T", [1000, 250])
def test_ddim_timesteps_match_package(live, T) -> None:
    """단계 수 1..T 모두에서 고른 시각이 ddim_timesteps 와 똑같다 (.5 를 짝수로 반올림하는 것까지)."""
    from ddpm_ko.sampling import ddim_timesteps

    page, _ = live
    js = _js(
        page, "const out = []; for (let s = 1; s <= arg; s++) out.push(ddim.ddimTimesteps(arg, s)); return out;", T
    )
    for steps, got in enumerate(js, start=1):
        assert got == ddim_timesteps(T, steps), f"T={T}, steps={steps}"


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 - 1])
def test_prng_matches_python(live, seed) -> None:
    page, _ = live
    js = _js(
        page,
        """const next = prng.mulberry32(arg); const ints = [];
        for (let i = 0; i < 1000; i++) ints.push(next());
        return {ints, normals: Array.from(new prng.NormalStream(arg).take(1001))};""",
        seed,
    )
    ref = live_reference.NormalStream(seed)
    assert js["ints"] == [ref.next_uint32() for _ in range(1000)]
    normals = live_reference.NormalStream(seed).take(1001)
    # 같은 정수에서 같은 float64 식으로 계산한다. 다만 log·cos·sin 은 V8 과 C 라이브러리의 구현이 달라 마지막
    # 비트가 다를 수 있고, 그 차이가 float32 반올림 경계에 걸리면 한 ulp (|z| < 6 이면 5e-7 미만) 달라진다.
    np.testing.assert_allclose(js["normals"], normals, rtol=0, atol=1e-6)
    assert abs(float(np.mean(normals))) < 0.15 and abs(float(np.std(normals)) - 1) < 0.1  # 정말 표준 정규 분포


@pytest.mark.parametrize(
    ("t", "t_prev", "eta"), [(999, 957, 0.0), (500, 458, 1.0), (40, 0, 0.5), (0, -1, 0.7), (3, -1, 0.0)]
)
def test_ddim_step_matches_package(live, t, t_prev, eta) -> None:
    """같은 x_t 와 신경망 출력 ε̂ (와 노이즈 z)에서 한 단계가 GaussianDiffusion.ddim_step 과 같다 (클리핑 포함)."""
    from unittest import mock

    import ddpm_ko.diffusion as diffusion_module

    page, _ = live
    g = torch.Generator().manual_seed(t)
    xt = torch.randn(2, 1, 28, 28, generator=g) * 1.5
    eps = torch.randn(2, 1, 28, 28, generator=g)
    z = torch.randn(2, 1, 28, 28, generator=g)
    d = diffusion_module.GaussianDiffusion.from_schedule("linear", 1000)
    with mock.patch.object(diffusion_module, "_randn", lambda *a, **k: z.clone()):
        x_prev, x0 = d.ddim_step(lambda x, tt: eps, xt, t, t_prev, eta=eta)
    js = _js(
        page,
        """const s = ddim.makeSchedule(1000);
        const r = ddim.ddimStep(s, Float32Array.from(arg.xt), Float32Array.from(arg.eps), arg.t, arg.tPrev, arg.eta,
                                Float32Array.from(arg.z));
        return {xPrev: Array.from(r.xPrev), x0: Array.from(r.x0)};""",
        {
            "xt": xt.flatten().tolist(),
            "eps": eps.flatten().tolist(),
            "z": z.flatten().tolist(),
            "t": t,
            "tPrev": t_prev,
            "eta": eta,
        },
    )
    clipped = float((x0.abs() >= 1).float().mean())
    # 자바스크립트는 float64 로, PyTorch 는 float32 로 계산한다. 연산마다 float32 반올림(상대 6e-8)이 생기고,
    # 잘린 x̂₀ 에서 ε̂ 을 다시 구할 때 √(1/ᾱ_t − 1) 로 나누므로 작은 t 에서 그 오차가 최대 수십 배 커진다 (t=0 에서 1/0.01).
    tol = 1e-4 if t < 50 else 1e-5
    np.testing.assert_allclose(js["x0"], x0.flatten().numpy(), rtol=0, atol=tol)
    np.testing.assert_allclose(js["xPrev"], x_prev.flatten().numpy(), rtol=0, atol=tol)
    if t >= 500:
        assert clipped > 0.1  # 큰 t 에서는 클리핑이 실제로 일어나는 경우를 시험한다


needs_dpm = pytest.mark.skipif(
    not live_reference.package_has_dpm_solver(),
    reason="이 패키지에는 아직 DPM-Solver++ 샘플러가 없다 (ddpm_ko.sampling.SAMPLERS)",
)


@needs_dpm
@pytest.mark.parametrize("spacing", ["logsnr", "karras", "time"])
def test_dpm_solver_timesteps_match_package(live, spacing) -> None:
    """DPM-Solver++ 의 시각(λ 보간과 반올림, 겹친 시각 빼기까지)이 패키지의 solver_timesteps 와 똑같다."""
    from ddpm_ko.diffusion import GaussianDiffusion

    page, _ = live
    d = GaussianDiffusion.from_schedule("linear", 1000)
    js = _js(
        page,
        """const s = ddim.makeSchedule(1000); const out = [];
        for (let n = 1; n <= 200; n++) out.push(dpm.dpmSolverTimesteps(s, n, arg));
        return {ts: out, lam: Array.from({length: 1000}, (_, t) => dpm.alphaSigmaLambda(s, t).lambda)};""",
        spacing,
    )
    # λ = log α − log σ 를 같은 float32 버퍼에서 float64 로 계산한다. log 구현의 마지막 비트 차이만 남는다
    np.testing.assert_allclose(js["lam"], d.lambdas().numpy(), rtol=1e-14, atol=1e-14)
    for steps, got in enumerate(js["ts"], start=1):
        assert got == d.solver_timesteps(steps, spacing), f"steps={steps}"


@needs_dpm
@pytest.mark.parametrize(("steps", "spacing"), [(8, "logsnr"), (5, "time")])
def test_dpm_solver_sampling_matches_python(live, steps, spacing) -> None:
    """브라우저의 DPM-Solver++(2M) = 같은 x_T·같은 ONNX 파일로 패키지의 DPM-Solver++ 를 돌린 이미지."""
    page, log = live
    seed, num = 21, 4
    result = _run(page, steps=steps, eta=0.0, seed=seed, num=num, sampler=f"dpm-{spacing}")
    _record_timing(f"phone_{num}img_dpm{steps}_{spacing}", result)
    ref = live_reference.reference_dpm_solver(SITE_DIR, seed, num, steps, spacing)
    final = np.array(result["final"], dtype=np.float32).reshape(ref["final"].shape)
    diff = float(np.abs(final - ref["final"]).max())
    # DDIM 과 같은 까닭(WASM 과 파이썬 onnxruntime 의 float32 합 순서)으로 2e-3. 2차 보정이 앞 단계의 x̂₀ 을
    # 한 번 더 쓰지만 그 계수(1/(2r))는 1 안팎이라 오차를 키우지 않는다.
    assert diff < 2e-3, f"브라우저와 파이썬의 최대 차이 {diff:.2e}"
    assert _pixel_smoothness(_canvas_tiles(page, "live-xt", num)) > 0.5
    _assert_clean(log)
    page.select_option("#live-sampler", "ddim")


@needs_dpm
def test_sde_dpm_solver_sampling_matches_python(live) -> None:
    """브라우저의 SDE-DPM-Solver++(2M) = 같은 x_T, 단계마다 같은 난수열의 z 로 패키지의 SDE 판을 돌린 이미지.

    시드를 바꾸면 ODE 판과 달리 다른 이미지가 나온다 (x_T 도 바뀌므로 여기서는 같은 시드의 ODE 판과 다름을 본다).
    """
    page, log = live
    seed, num, steps = 33, 4, 6
    result = _run(page, steps=steps, eta=0.0, seed=seed, num=num, sampler="sde-dpm-karras")
    _record_timing(f"phone_{num}img_sde_dpm{steps}_karras", result)
    ref = live_reference.reference_dpm_solver(SITE_DIR, seed, num, steps, "karras", stochastic=True)
    ode = live_reference.reference_dpm_solver(SITE_DIR, seed, num, steps, "karras")
    final = np.array(result["final"], dtype=np.float32).reshape(ref["final"].shape)
    np.testing.assert_array_equal(np.array(result["xT"], dtype=np.float32).reshape(ref["xT"].shape), ref["xT"])
    diff = float(np.abs(final - ref["final"]).max())
    # ODE 판과 같은 까닭으로 2e-3. 새 노이즈의 몫 σ√(1 − e^{−2h}) 은 난수 그 자체라 float32 의 반올림만 더한다
    assert diff < 2e-3, f"브라우저와 파이썬의 최대 차이 {diff:.2e}"
    assert float(np.abs(final - ode["final"]).max()) > 0.1  # 노이즈가 실제로 더해졌다
    assert not page.is_enabled("#live-eta")
    _assert_clean(log)
    page.select_option("#live-sampler", "ddim")


# ----------------------------------------------------------------------------------------
# 클래스를 고르고 가이던스 w 로 샘플링 (조건부 모델 unet_cond.onnx)


@pytest.mark.parametrize("w", [0.0, 0.5, 2.5, 8.0])
def test_guidance_matches_package(live, w) -> None:
    """guidance.js 가 패키지의 guided_model 과 같은 배치(x = [x, x], t = [t, t], labels = [y…, ∅…], w = 0 이면 B 장)로
    신경망을 한 번 부르고, 그 출력을 cfg_combine 과 비트까지 같게 섞는다 (신경망 없이, 가짜 출력으로)."""
    from ddpm_ko.conditioning import NUM_CLASSES
    from ddpm_ko.guidance import guided_model

    page, _ = live
    num, label = 3, 7
    g = torch.Generator().manual_seed(int(2 * w))
    x = torch.randn(num, 1, 28, 28, generator=g)
    out = torch.randn((2 if w > 0 else 1) * num, 1, 28, 28, generator=g)
    calls = []

    def fake_unet(xb, tb, yb):  # 패키지가 신경망에 넣는 것을 적어 두고 정해 둔 출력을 낸다
        calls.append((xb.clone(), tb.clone(), yb.clone()))
        return out

    eps = guided_model(fake_unet, torch.full((num,), label), w, NUM_CLASSES)(x, torch.tensor(500))
    assert len(calls) == 1
    js = _js(
        page,
        """const b = guide.guidedBatch(Float32Array.from(arg.x), arg.num, arg.label, arg.nullLabel, arg.w);
        const eps = guide.cfgCombine(Float32Array.from(arg.out), arg.x.length, arg.w);
        return {x: Array.from(b.x), labels: Array.from(b.labels, Number), batch: b.batch, eps: Array.from(eps)};""",
        {
            "x": x.flatten().tolist(),
            "out": out.flatten().tolist(),
            "num": num,
            "label": label,
            "nullLabel": NUM_CLASSES,
            "w": w,
        },
    )
    xb, tb, yb = calls[0]
    assert js["batch"] == xb.shape[0] == tb.shape[0] and js["labels"] == yb.tolist()
    np.testing.assert_array_equal(np.array(js["x"], dtype=np.float32), xb.flatten().numpy())
    # 같은 float32 값에 같은 순서의 float32 연산(뺄셈, w 곱, 덧셈, 연산마다 반올림)이므로 비트까지 같다
    np.testing.assert_array_equal(np.array(js["eps"], dtype=np.float32), eps.flatten().numpy())


@pytest.fixture(scope="module")
def conditional_model() -> None:
    """사이트에 조건부 모델이 있어야 한다. 빌드가 그것을 건너뛰는 유일한 경우(패키지에 조건부 모델이 아직 없다)만 건너뛴다."""
    import os

    from ddpm_ko.pretrained import PRETRAINED_CONDITIONAL_ENV, PRETRAINED_CONDITIONAL_NAME, shipped_file

    if (SITE_DIR / "_static" / "live" / "unet_cond.onnx").is_file():
        return
    if not os.environ.get(PRETRAINED_CONDITIONAL_ENV) and not shipped_file(PRETRAINED_CONDITIONAL_NAME).is_file():
        pytest.skip("패키지에 조건부 모델이 아직 없어 사이트에 unet_cond.onnx 가 없다 (book/_ext/live_sampling.py)")
    pytest.fail("사이트에 _static/live/unet_cond.onnx 가 없다: `make book` 으로 다시 빌드할 것")


@pytest.mark.parametrize(
    ("sampler", "steps", "eta", "label", "w"),
    [("dpm-logsnr", 4, 0.0, 9, 2.5), ("sde-dpm-karras", 4, 0.0, 2, 2.5), ("ddim", 3, 0.7, 3, 0.0)],
)
def test_guided_sampling_matches_python(live, conditional_model, sampler, steps, eta, label, w) -> None:
    """클래스를 고른 브라우저의 최종 이미지 = 같은 x_T·클래스·w 로 조건부 ONNX 파일에 패키지의 가이던스 샘플러를
    돌린 이미지. w > 0 이면 스텝마다 신경망을 한 번, 이미지 2B 장으로 부른다 (w = 0 이면 B 장)."""
    page, log = live
    seed, num = 4, 4
    result = _run(page, steps=steps, eta=eta, seed=seed, num=num, sampler=sampler, label=label, guidance=w)
    _record_timing(f"phone_{num}img_{sampler}{steps}_label{label}_w{w}", result)
    assert result["label"] == label and result["guidance"] == w
    assert len(result["msPerEval"]) == steps and result["batchPerEval"] == (2 * num if w > 0 else num)
    assert page.is_enabled("#live-guidance")
    ref = live_reference.reference_guided(SITE_DIR, seed, num, sampler, steps, label, w, eta)
    final = np.array(result["final"], dtype=np.float32).reshape(ref["final"].shape)
    diff = float(np.abs(final - ref["final"]).max())
    # 남는 차이는 test_sampling_matches_python 과 같은 float32 합 순서의 차이(그 검사의 한도 2e-3)다. 가이던스는 두
    # 출력을 (1 + w)·ε_y − w·ε_∅ 로 섞으므로 두 출력의 서로 다른 오차가 최대 (1 + w) + w = 1 + 2w 배로 커진다: 한도도
    # 그만큼 키운다. 이 기계에서 잰 차이(4 스텝)는 w = 0 에서 2.2e-4, 2.5 에서 1.4e-3, 8 에서 3.1e-3 로 1 + 2w 를
    # 따랐다. 섞는 식을 diffusers 의 s = w 로 잘못 읽거나, 가이던스를 빼거나, 다른 클래스를 쓰면 0.2 넘게 벌어진다.
    assert diff < 2e-3 * (1 + 2 * w), f"브라우저와 파이썬의 최대 차이 {diff:.2e}"
    shown = _canvas_tiles(page, "live-xt", num)
    assert shown.std() > 20 and all(tile.std() > 10 for tile in shown), "캔버스가 비었거나 한 가지 색이다"
    _assert_clean(log)
    page.select_option("#live-class", "")


# ----------------------------------------------------------------------------------------
# 단추를 눌러 샘플링


def _pixel_smoothness(images: np.ndarray) -> float:
    """가로로 이웃한 픽셀 값의 상관계수 평균. 옷 사진은 0.8 안팎, 독립 노이즈는 0 근처다."""
    x = images.astype(np.float64)
    return float(np.mean([np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1] for a in x]))


@pytest.mark.parametrize(("steps", "eta", "seed", "num"), [(6, 0.0, 7, 4), (4, 0.7, 3, 4)])
def test_sampling_matches_python(live, steps, eta, seed, num) -> None:
    """브라우저의 최종 이미지 = 같은 x_T·같은 ONNX 파일로 패키지의 DDIM 샘플러를 돌린 이미지 (float32 오차 안에서)."""
    page, log = live
    result = _run(page, steps=steps, eta=eta, seed=seed, num=num)
    _record_timing(f"phone_{num}img_ddim{steps}_eta{eta}", result)
    assert result["threads"] == 1 and not result["crossOriginIsolated"]
    assert len(result["msPerEval"]) == steps and not result["stopped"]
    ref = live_reference.reference_ddim(SITE_DIR, seed, num, steps, eta)
    xT = np.array(result["xT"], dtype=np.float32).reshape(ref["xT"].shape)
    # 같은 생성기이므로 x_T 는 (float32 한 ulp 안에서) 같다 (test_prng_matches_python 의 까닭)
    np.testing.assert_allclose(xT, ref["xT"], rtol=0, atol=1e-6)
    final = np.array(result["final"], dtype=np.float32).reshape(ref["final"].shape)
    diff = float(np.abs(final - ref["final"]).max())
    # 남는 차이의 근원은 WASM 과 파이썬의 onnxruntime 이 합성곱의 합을 다른 순서로 더해 생기는 float32 오차
    # (U-Net 한 번에 1e-6 안팎)다. 그것이 몇 단계 동안 x̂₀ 과 ε̂ 을 거치며 커진다. 화면의 한 단계(2/255 ≈ 8e-3)보다
    # 훨씬 작은 2e-3 이면 두 샘플러가 같은 식을 같은 순서로 푼 것이다. 이 기계에서 잰 최대 차이는 2.3e-4 (6 단계),
    # 1.3e-4 (η = 0.7), 5e-5 (25 단계)였고, ε̂ 을 다시 계산하지 않는 식 하나의 차이만으로도 2e-2 로 벌어졌다.
    assert diff < 2e-3, f"브라우저와 파이썬의 최대 차이 {diff:.2e}"

    # 캔버스: 왼쪽에 최종 이미지가 그려졌고, 비어 있지 않으며, 노이즈가 아니라 옷이다
    shown = _canvas_tiles(page, "live-xt", num)
    expected = np.round((np.clip(final.astype(np.float64), -1, 1) + 1) * 127.5).reshape(num, 28, 28)
    # 화면은 viz.to_uint8 처럼 (x + 1)·127.5 를 반올림한다. float32·float64 계산 차이로 .5 경계에서만 한 칸 갈린다
    assert float(np.abs(shown.astype(np.float64) - expected).max()) <= 1
    assert shown.std() > 20 and all(tile.std() > 10 for tile in shown), "캔버스가 비었거나 한 가지 색이다"
    noise = np.round((np.clip(xT, -1, 1) + 1) * 127.5).astype(np.uint8).reshape(num, 28, 28)
    # 이웃 픽셀의 상관: 진짜 옷 사진은 0.8 안팎, 독립 노이즈는 0 근처다 (가운데 0.5 와 0.1 로 가른다)
    assert _pixel_smoothness(shown) > 0.5
    assert _pixel_smoothness(noise) < 0.1
    x0_view = _canvas_tiles(page, "live-x0", num)
    assert x0_view.std() > 20
    _assert_clean(log)


def test_rendered_images_look_like_fashion_mnist(live) -> None:
    """책의 분류기 특징으로 보면, 그려진 이미지는 노이즈보다 진짜 Fashion-MNIST 에 훨씬 가깝다."""
    from ddpm_ko.data import fashion_mnist_arrays
    from ddpm_ko.evaluation import extract_features, reference_features

    page, log = live
    num = 9
    result = _run(page, steps=8, eta=0.0, seed=11, num=num)
    _record_timing(f"phone_{num}img_ddim8_eta0.0", result)
    shown = _canvas_tiles(page, "live-xt", num)
    xT = np.array(result["xT"], dtype=np.float32).reshape(num, 28, 28)
    noise = np.round((np.clip(xT, -1, 1) + 1) * 127.5).astype(np.uint8)
    ref = reference_features("test", num=2000)
    real, _ = fashion_mnist_arrays("test")

    def nearest(images: np.ndarray) -> float:
        f = extract_features(images)
        return float(np.sqrt(((f[:, None, :] - ref[None]) ** 2).sum(-1)).min(1).mean())

    d_real, d_shown, d_noise = nearest(real[5000 : 5000 + num]), nearest(shown), nearest(noise)
    # 특징 공간에서 가장 가까운 진짜 이미지까지의 평균 거리. 진짜 대 진짜(다른 장들)가 바닥값, 노이즈가 천장이다.
    # 그려진 이미지가 두 값의 가운데보다 진짜 쪽에 있으면 "노이즈가 아니라 옷" 으로 본다.
    assert d_shown < (d_real + d_noise) / 2, f"진짜 {d_real:.2f}, 그림 {d_shown:.2f}, 노이즈 {d_noise:.2f}"
    _assert_clean(log)


def test_phone_layout(live) -> None:
    """390×844 화면에서 두 그림이 나란히 있고, 쪽이 가로로 넘치지 않으며, 단추를 누를 수 있다."""
    page, _ = live
    box = page.evaluate("""() => {
        const r = (id) => document.getElementById(id).getBoundingClientRect();
        return {xt: r('live-xt'), x0: r('live-x0'), run: r('live-run'),
                scroll: document.documentElement.scrollWidth, inner: window.innerWidth}; }""")
    assert box["scroll"] <= box["inner"], f"가로로 넘친다: {box['scroll']} > {box['inner']}"
    xt, x0 = box["xt"], box["x0"]
    assert abs(xt["top"] - x0["top"]) < 2 and xt["right"] <= x0["left"], "두 그림이 나란히 있지 않다"
    assert xt["width"] >= 120 and x0["width"] >= 120, "그림이 너무 작다"
    assert x0["right"] <= box["inner"] and box["run"]["width"] > 0
    if sitecheck.SCREENSHOTS_ENABLED:
        shot = sitecheck.SCREENSHOT_DIR / "book" / "live_sampling.phone.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.locator("#ddpm-live").screenshot(path=str(shot))


def test_stop_button(live) -> None:
    """멈춤을 누르면 그 자리에서 멈추고, 다시 시작할 수 있다."""
    page, _ = live
    page.select_option("#live-sampler", "ddim")
    page.fill("#live-steps", "1000")
    page.select_option("#live-num", "1")
    page.click("#live-run")
    page.wait_for_function(
        "() => /^[1-9]/.test(document.getElementById('live-status').textContent)", timeout=RUN_TIMEOUT_MS
    )
    page.click("#live-stop")
    page.wait_for_function(
        "() => document.getElementById('live-status').dataset.kind === 'done'", timeout=RUN_TIMEOUT_MS
    )
    result = page.evaluate("() => window.ddpmLive.lastResult")
    assert result["stopped"] and 0 < len(result["msPerEval"]) < 1000
    assert page.is_enabled("#live-run") and not page.is_enabled("#live-stop")


def test_bad_input_is_reported(live) -> None:
    page, _ = live
    page.fill("#live-steps", "0")
    page.click("#live-run")
    page.wait_for_function("() => document.getElementById('live-status').dataset.kind === 'error'")
    assert "샘플링 스텝 수" in page.inner_text("#live-status")
    page.fill("#live-steps", "25")


# ----------------------------------------------------------------------------------------
# 교차 출처 격리(여러 스레드)와 file://


class _IsolatedHandler(sitecheck.QuietHandler):
    """GitHub Pages 는 못 보내는 COOP/COEP 헤더를 보내는 서버: 쪽이 교차 출처 격리되어 WASM 스레드를 쓴다."""

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


@pytest.fixture(scope="module")
def isolated_site():
    handler = functools.partial(_IsolatedHandler, directory=str(SITE_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Site(base_url=f"http://127.0.0.1:{server.server_address[1]}/", root=SITE_DIR)
    finally:
        server.shutdown()
        server.server_close()


def test_threads_with_cross_origin_isolation(browser, isolated_site) -> None:
    context, page, log = _open_live(browser, isolated_site)
    try:
        cores = page.evaluate("() => navigator.hardwareConcurrency")
        result = _run(page, steps=3, eta=0.0, seed=5, num=1)
        _record_timing("isolated_1img_ddim3", result)
        assert result["crossOriginIsolated"]
        assert result["threads"] == max(1, min(4, cores))
        assert "교차 출처 격리 켜짐" in page.inner_text("#live-runtime")
        ref = live_reference.reference_ddim(SITE_DIR, 5, 1, 3, 0.0)
        final = np.array(result["final"], dtype=np.float32).reshape(ref["final"].shape)
        # 스레드가 합성곱을 나눠 더해도 같은 float32 오차 범위다 (test_sampling_matches_python 의 까닭)
        assert float(np.abs(final - ref["final"]).max()) < 2e-3
        _assert_clean(log)
    finally:
        context.close()


def test_file_url_explains_in_korean(browser) -> None:
    """file:// 로 열면 데모가 돌지 않는 까닭과 여는 방법을 한국어로 말한다 (조용히 망가지지 않는다)."""
    context = browser.new_context(viewport=PHONE, locale="ko-KR")
    try:
        page = context.new_page()
        page.goto((SITE_DIR / PAGE).resolve().as_uri(), wait_until="load")
        page.wait_for_timeout(500)
        status = page.inner_text("#live-status")
        assert "file://" in status and "http.server" in status, status
        assert page.evaluate("() => document.getElementById('live-status').dataset.kind") == "error"
        assert not page.is_enabled("#live-run")
    finally:
        context.close()
