"""tests_site 의 픽스처: localhost 정적 서버, 헤드리스 Chromium, 쪽마다 한 번만 여는 캐시.

설정(환경 변수)과 도우미는 sitecheck.py 에 있다. 사이트 폴더는 ``DDPM_KO_SITE``
(기본 ``<저장소>/_build/html``) 로 바꿀 수 있다.
"""

from __future__ import annotations

import functools
import http.server
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sitecheck
from sitecheck import CHROMIUM, CHROMIUM_ARGS, SITE_DIR, Rendered, Site


@pytest.fixture(scope="session")
def site() -> Site:
    """사이트 폴더를 127.0.0.1 의 빈 포트로 내보내는 http.server (세션 동안 한 스레드)."""
    if not (SITE_DIR / "search.html").is_file():
        pytest.fail(
            f"빌드된 사이트가 없다: {SITE_DIR}. 먼저 `make book` 으로 빌드하거나 "
            "DDPM_KO_SITE 로 사이트 폴더를 알려 줄 것."
        )
    handler = functools.partial(sitecheck.QuietHandler, directory=str(SITE_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield Site(base_url=f"http://127.0.0.1:{server.server_address[1]}/", root=SITE_DIR)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def browser():
    """데비안 Chromium 을 Playwright 로 띄운다(Playwright 자체 브라우저는 내려받지 않는다)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="playwright 가 설치되지 않았다 (requirements.txt 의 playwright, `make setup`)",
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium 이 없다: {CHROMIUM} (sudo apt-get install chromium)")
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    except Exception:
        pw.stop()
        raise
    try:
        yield b
    finally:
        b.close()
        pw.stop()


@pytest.fixture(scope="session")
def colab_prefix() -> str:
    return sitecheck.colab_prefix()


@pytest.fixture(scope="session")
def rendered(browser, site: Site, colab_prefix: str):
    """``rendered(page)`` → 그 쪽을 한 번만 열어 모은 ``Rendered`` (세션 동안 캐시)."""
    cache: dict[str, Rendered] = {}

    def get(page_rel: str) -> Rendered:
        if page_rel not in cache:
            cache[page_rel] = sitecheck.render_page(browser, site, page_rel, colab_prefix)
        return cache[page_rel]

    return get
