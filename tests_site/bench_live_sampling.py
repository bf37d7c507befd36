"""브라우저 샘플링 쪽의 속도를 잰다 (검사가 아니라 측정: ``python tests_site/bench_live_sampling.py``).

빌드된 사이트(``DDPM_KO_SITE``, 기본 ``_build/html``)의 ``book/live_sampling.html`` 을 헤드리스 Chromium 으로 열고,
화면의 단추로 샘플링을 돌려 ``window.ddpmLive.lastResult`` 의 단계별 U-Net 시간을 모은다. 두 가지 서버로 잰다.

* ``single``: 보통의 정적 서버 (GitHub Pages 와 같다). 교차 출처 격리가 꺼져 WASM 이 한 스레드로 돈다.
* ``threads``: COOP/COEP 헤더를 보내는 서버. 격리가 켜져 WASM 이 ``min(4, 코어 수)`` 스레드로 돈다.

각각 이미지 1, 4, 16장으로 DDIM 을 ``--probe-steps`` 단계 돌려 U-Net 한 번의 시간(첫 평가는 준비 시간이 섞이므로
빼고 중앙값)을 재고, 16장 DDIM-25 의 전체 시간(x_T 를 뽑는 것부터 마지막 그림까지)을 잰다. 비교를 위해 같은
ONNX 파일을 파이썬 onnxruntime(한 스레드)으로 돌린 시간도 잰다: 기계가 바쁠 때 브라우저만 느린 것이 아님을 본다.

결과는 표로 찍고 ``--out`` (기본 ``<사이트>/../live_sampling_bench.json``)에 쓴다. 다른 작업이 CPU 를 쓰는
동안 잰 값은 몇 배까지 부풀 수 있으니 조용한 기계에서 다시 재어 읽는다.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sitecheck

PAGE = "book/live_sampling.html"


class _Isolated(sitecheck.QuietHandler):
    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


def _serve(handler_cls) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler_cls, directory=str(sitecheck.SITE_DIR))
    )
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _run(page, steps: int, num: int, seed: int = 0) -> dict:
    page.fill("#live-steps", str(steps))
    page.fill("#live-eta", "0")
    page.fill("#live-seed", str(seed))
    page.select_option("#live-num", str(num))
    page.click("#live-run")
    page.wait_for_function(
        "() => ['done', 'error'].includes(document.getElementById('live-status').dataset.kind)", timeout=900_000
    )
    result = page.evaluate(
        "() => { const r = window.ddpmLive.lastResult; return {ms: r.msPerEval, wall: r.wallMs, threads: r.threads}; }"
    )
    if page.evaluate("() => document.getElementById('live-status').dataset.kind") != "done":
        raise RuntimeError(page.inner_text("#live-status"))
    return result


def bench_browser(browser, handler_cls, sizes: list[int], probe_steps: int) -> dict:
    server, base = _serve(handler_cls)
    context = browser.new_context(viewport=sitecheck.VIEWPORT, locale="ko-KR")
    try:
        page = context.new_page()
        t0 = time.perf_counter()
        page.goto(base + PAGE, wait_until="load")
        page.evaluate("() => window.ddpmLive.ready")
        out: dict = {"load_s": round(time.perf_counter() - t0, 2)}
        for num in sizes:
            r = _run(page, probe_steps, num)
            out["threads"] = r["threads"]
            out[f"ms_per_eval_{num}"] = round(statistics.median(r["ms"][1:] or r["ms"]), 1)
        r = _run(page, 25, 16)
        out["ddim25_16img_wall_s"] = round(r["wall"] / 1000, 2)
        out["ddim25_16img_median_ms_per_eval"] = round(statistics.median(r["ms"]), 1)
        return out
    finally:
        context.close()
        server.shutdown()
        server.server_close()


def bench_native(sizes: list[int], repeats: int = 5) -> dict:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        str(sitecheck.SITE_DIR / "_static" / "live" / "unet.onnx"), options, providers=["CPUExecutionProvider"]
    )
    out = {}
    for num in sizes:
        feeds = {
            "x_t": np.random.default_rng(0).standard_normal((num, 1, 28, 28), dtype=np.float32),
            "t": np.full(num, 500, dtype=np.int64),
        }
        sess.run(None, feeds)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - t0) * 1000)
        out[f"ms_per_eval_{num}"] = round(statistics.median(times), 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,4,16", help="이미지 수들 (쪽의 선택지 1, 4, 9, 16 가운데)")
    ap.add_argument("--probe-steps", type=int, default=6, help="U-Net 시간을 잴 DDIM 단계 수")
    ap.add_argument("--modes", default="single,threads", help="single (격리 꺼짐), threads (COOP/COEP)")
    ap.add_argument("--out", default=str(sitecheck.SITE_DIR.parent / "live_sampling_bench.json"))
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    from playwright.sync_api import sync_playwright

    report: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_before": os.getloadavg()},
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    report["python_onnxruntime_1thread"] = bench_native(sizes)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=sitecheck.CHROMIUM, args=sitecheck.CHROMIUM_ARGS, headless=True)
        report["chromium"] = browser.version
        try:
            for mode in a.modes.split(","):
                handler = _Isolated if mode == "threads" else sitecheck.QuietHandler
                report[f"browser_{mode}"] = bench_browser(browser, handler, sizes, a.probe_steps)
        finally:
            browser.close()
    report["machine"]["loadavg_after"] = os.getloadavg()
    Path(a.out).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
