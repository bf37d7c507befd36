"""빌드된 사이트(_build/html)를 실제 브라우저(헤드리스 Chromium)로 여는 검사의 도우미(픽스처는 conftest.py).

- 사이트 폴더: 환경 변수 ``DDPM_KO_SITE`` (기본 ``<저장소>/_build/html``).
- 사이트를 빌드한 책의 뿌리(``_config.yml`` 이 있는 곳): ``DDPM_KO_BOOK_ROOT``
  (기본: 사이트 폴더의 두 단계 위, 즉 ``<뿌리>/_build/html`` 의 ``<뿌리>``).
- 화면 갈무리: ``DDPM_KO_SCREENSHOTS`` (기본 ``<사이트 폴더>/../screenshots`` = ``_build/screenshots``,
  ``off`` 면 갈무리하지 않는다).
- 브라우저: 데비안의 Chromium(``DDPM_KO_CHROMIUM``, 기본 ``/usr/bin/chromium``). Playwright 가
  내려받는 브라우저는 쓰지 않는다(``playwright install`` 을 부르지 말 것).

사이트는 이 프로세스 안의 ``http.server`` 스레드가 localhost 의 빈 포트로 내보낸다. 페이지마다
한 번만 열어 결과(콘솔 오류, 외부 요청, 글꼴, 수식, 그림, 링크, 화면 갈무리)를 모아 두고, 여러 검사가
그 결과를 나눠 쓴다.
"""

from __future__ import annotations

import http.server
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SITE_DIR = Path(os.environ.get("DDPM_KO_SITE", REPO / "_build" / "html")).resolve()
BOOK_ROOT = Path(os.environ.get("DDPM_KO_BOOK_ROOT", SITE_DIR.parent.parent)).resolve()
# DDPM_KO_SCREENSHOTS=off 이면 화면 갈무리를 건너뛴다(긴 쪽의 갈무리가 검사 시간의 큰 몫이다).
_SHOTS = os.environ.get("DDPM_KO_SCREENSHOTS", "")
SCREENSHOTS_ENABLED = _SHOTS.lower() not in ("0", "off", "no", "false")
SCREENSHOT_DIR = Path(_SHOTS if _SHOTS and SCREENSHOTS_ENABLED else SITE_DIR.parent / "screenshots").resolve()
CHROMIUM = os.environ.get("DDPM_KO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}
# 페이지 하나를 여는 데 허용하는 시간(ms). 2 코어를 다른 작업과 나눠 쓰므로 넉넉히 잡는다.
NAV_TIMEOUT_MS = 120_000
MATHJAX_TIMEOUT_MS = 120_000

# 한글을 그리는 데 쓰여야 하는 글꼴 가족(custom.css 의 목록과 같은 계열).
KOREAN_FONT_RE = re.compile(
    r"nanum|noto\s*(sans|serif)\s*(cjk|kr)|source\s*han|malgun|apple\s*sd\s*gothic|d2\s*coding",
    re.IGNORECASE,
)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


# ----------------------------------------------------------------------------------------
# 사이트의 페이지 목록


def _is_redirect_stub(path: Path) -> bool:
    head = path.read_text(encoding="utf-8", errors="replace")[:2000].lower()
    return 'http-equiv="refresh"' in head and "<body" not in head


def discover_pages(site: Path = SITE_DIR) -> list[str]:
    """사이트의 모든 HTML 페이지(상대 경로). ``_static``·``_sources`` 같은 ``_`` 폴더와
    리디렉트 쪽(루트 index.html)은 뺀다."""
    if not site.is_dir():
        return []
    pages = []
    for path in sorted(site.rglob("*.html")):
        rel = path.relative_to(site).as_posix()
        if any(part.startswith("_") for part in rel.split("/")[:-1]):
            continue
        if _is_redirect_stub(path):
            continue
        pages.append(rel)
    return pages


def redirect_stubs(site: Path = SITE_DIR) -> list[str]:
    if not site.is_dir():
        return []
    return [p.relative_to(site).as_posix() for p in sorted(site.glob("*.html")) if _is_redirect_stub(p)]


def book_config() -> dict[str, Any]:
    import yaml

    path = BOOK_ROOT / "_config.yml"
    if not path.is_file():
        raise FileNotFoundError(f"_config.yml 을 찾지 못했다: {path} (DDPM_KO_BOOK_ROOT 로 책의 뿌리를 알려 줄 것)")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def colab_prefix() -> str:
    cfg = book_config()
    return str((cfg.get("launch_buttons") or {}).get("colab_url") or "https://colab.research.google.com")


# ----------------------------------------------------------------------------------------
# localhost 정적 서버


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _IdCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key == "id" and value:
                self.ids.add(value)
            elif key == "name" and tag == "a" and value:
                self.ids.add(value)


@dataclass
class FetchResult:
    status: int
    content_type: str = ""
    ids: frozenset[str] = frozenset()


@dataclass
class Site:
    base_url: str
    root: Path
    _fetch_cache: dict[str, FetchResult] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, rel: str) -> str:
        return urllib.parse.urljoin(self.base_url, rel)

    def is_local(self, url: str) -> bool:
        return url.startswith(self.base_url)

    def fetch(self, url: str) -> FetchResult:
        """같은 출처 URL 을 한 번만 요청해 상태 코드와 (HTML 이면) 문서 안의 id 목록을 돌려준다."""
        url = urllib.parse.urldefrag(url)[0]
        with self._lock:
            if url in self._fetch_cache:
                return self._fetch_cache[url]
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                ctype = resp.headers.get("Content-Type", "")
                body = resp.read()
                ids: frozenset[str] = frozenset()
                if "html" in ctype:
                    parser = _IdCollector()
                    parser.feed(body.decode("utf-8", errors="replace"))
                    ids = frozenset(parser.ids)
                result = FetchResult(resp.status, ctype, ids)
        except urllib.error.HTTPError as err:
            result = FetchResult(err.code)
        with self._lock:
            self._fetch_cache[url] = result
        return result


# ----------------------------------------------------------------------------------------
# 브라우저


def open_page(browser, site: Site, viewport: dict[str, int] | None = None):
    """새 브라우저 문맥에서 탭 하나를 연다. localhost 밖으로 나가는 요청은 막고 기록한다."""
    context = browser.new_context(viewport=viewport or VIEWPORT, locale="ko-KR", device_scale_factor=1)
    context.set_default_timeout(NAV_TIMEOUT_MS)
    log: dict[str, list[str]] = {"external": [], "console": [], "failed": []}

    def route(r) -> None:
        url = r.request.url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or parts.hostname in LOCAL_HOSTS:
            r.continue_()
        else:
            log["external"].append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()

    def on_console(msg) -> None:
        # "Failed to load resource" 는 아래 response/requestfailed/route 기록과 겹치므로 뺀다.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            log["console"].append(f"console.{msg.type}: {msg.text} @ {msg.location.get('url', '')}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: log["console"].append(f"pageerror: {exc}"))
    page.on(
        "response",
        lambda resp: log["failed"].append(f"HTTP {resp.status}: {resp.url}") if resp.status >= 400 else None,
    )
    page.on(
        "requestfailed",
        lambda req: (
            log["failed"].append(f"요청 실패 {req.failure}: {req.url}")
            if urllib.parse.urlsplit(req.url).hostname in LOCAL_HOSTS
            else None
        ),
    )
    return context, page, log


# ----------------------------------------------------------------------------------------
# 페이지 하나를 열어 모든 관찰값을 모은다


_JS_WAIT_IMAGES = """
async () => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { if (img.loading === "lazy") img.loading = "eager"; }
  await Promise.all(imgs.map((img) => img.complete ? null :
    new Promise((res) => { img.addEventListener("load", res, {once: true});
                            img.addEventListener("error", res, {once: true});
                            setTimeout(res, 15000); })));
  await Promise.all(imgs.map((img) => img.decode ? img.decode().catch(() => null) : null));
  await document.fonts.ready;
  return imgs.length;
}
"""

_JS_COLLECT = r"""
(colabPrefix) => {
  const HANGUL = /[\uac00-\ud7a3]/;
  const HANGUL_G = /[\uac00-\ud7a3]/g;
  const article = document.querySelector(".bd-article") || document.querySelector('[role="main"]') || document.body;

  // --- 수식 ---------------------------------------------------------------------------
  const codeLike = "pre, code, script, style, textarea, noscript, mjx-container, .highlight, " +
                   "div[class*='highlight-'], .cell_input, .MathJax, svg";
  const mathEls = Array.from(document.querySelectorAll(".math")).filter((el) => !el.closest("pre, code, .highlight"));
  const untypeset = mathEls.filter((el) => !el.querySelector("mjx-container"))
                           .map((el) => el.textContent.trim().slice(0, 120));
  // MathJax 가 만든 내부 트리에서 오류(merror)와 정의되지 않은 명령(noundefined 확장이 빨간 글자로
  // 그리는 \\명령)을 찾는다. 원래 TeX 를 함께 알려 주어 저자가 어느 식인지 바로 찾게 한다.
  const merrors = [];
  const short = (tex) => String(tex).replace(/\s+/g, " ").trim().slice(0, 160);
  try {
    if (window.MathJax && MathJax.startup && MathJax.startup.document) {
      for (const item of MathJax.startup.document.math) {
        if (!item.root || !item.root.walkTree) continue;
        item.root.walkTree((node) => {
          if (node.isKind("merror")) {
            merrors.push(`${node.attributes.get("data-mjx-error") || "TeX 오류"} — 식: ${short(item.math)}`);
          } else if (node.isKind("mtext") && node.attributes.get("mathcolor") === "red") {
            const text = node.childNodes.map((c) => (c.getText ? c.getText() : "")).join("");
            if (text.startsWith("\\")) merrors.push(`정의되지 않은 명령 ${text} — 식: ${short(item.math)}`);
          }
        });
      }
    }
  } catch (e) {
    merrors.push(`MathJax 내부 트리를 읽지 못했다: ${e}`);
  }
  if (!merrors.length) {
    for (const el of document.querySelectorAll("mjx-merror, [data-mjx-error]")) {
      merrors.push((el.getAttribute("data-mjx-error") || el.textContent || "").slice(0, 160));
    }
  }
  const rawTex = [];
  const rawRe = /\$\$|\\frac|\\begin\{|\\end\{|\\\(|\\\)|\\\[|\\\]|\\(?:mathbf|mathcal|mathrm|alpha|beta|bar|epsilon|theta|sqrt|sum|prod|left|right|mid|tilde|hat|cdot|sim|mathbb|log)\b|\$[^$\n]{0,80}?[\\_^][^$\n]{0,80}?\$/;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(codeLike)) continue;
    const text = node.textContent;
    const m = text.match(rawRe);
    if (m) {
      const at = Math.max(0, m.index - 40);
      const where = parent.closest("section[id]");
      rawTex.push(`${where ? "#" + where.id + ": " : ""}…${text.slice(at, m.index + 60).replace(/\s+/g, " ")}…`);
    }
  }

  // --- 그림 ---------------------------------------------------------------------------
  const images = Array.from(document.images).map((img) => ({
    src: img.currentSrc || img.src, alt: img.alt || "", complete: img.complete,
    naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
  }));

  // --- 링크 ---------------------------------------------------------------------------
  const links = Array.from(document.querySelectorAll("a[href]")).map((a) => ({
    href: a.href,
    raw: a.getAttribute("href"),
    text: (a.textContent || "").trim().replace(/\s+/g, " ").slice(0, 80),
    xref: a.classList.contains("reference") && a.classList.contains("internal") &&
          !!a.closest(".bd-article p, .bd-article li, .bd-article dd, .bd-article td, .bd-article figcaption, .bd-article .admonition") &&
          !a.closest("nav, .toctree-wrapper, .bd-toc, .prev-next-area"),
  }));

  // --- Colab 단추 ---------------------------------------------------------------------
  const colab = Array.from(document.querySelectorAll("a[href]"))
    .map((a) => a.href).filter((h) => h.startsWith(colabPrefix));

  // --- 한글 글꼴 탐침: 본문의 제목 하나, 문단 하나, 그리고 왼쪽 목차 항목 하나 -------------------
  const directHangul = (el) => Array.from(el.childNodes)
    .filter((n) => n.nodeType === Node.TEXT_NODE)
    .map((n) => (n.textContent.match(HANGUL_G) || []).length)
    .reduce((a, b) => a + b, 0);
  const probes = [];
  const groups = [
    ["heading", article.querySelectorAll("h1, h2, h3")],
    ["paragraph", article.querySelectorAll("p, li, dd, dt, td, figcaption, span")],
    ["navigation", document.querySelectorAll(".bd-sidebar-primary a, .bd-header a, nav a")],
  ];
  for (const [kind, els] of groups) {
    for (const el of els) {
      if (el.closest(codeLike)) continue;
      const n = directHangul(el);
      const rect = el.getBoundingClientRect();
      if (n >= 2 && rect.width > 0 && rect.height > 0) {
        el.setAttribute("data-ko-probe", String(probes.length));
        probes.push({kind, hangul: n, text: el.textContent.trim().slice(0, 60)});
        break;
      }
    }
  }
  const hangulInBody = (document.body.innerText.match(HANGUL_G) || []).length;

  return {
    title: document.title, url: location.href,
    mathCount: mathEls.length, mjxCount: document.querySelectorAll("mjx-container").length,
    untypeset, merrors, rawTex, images, links, colab, probes, hangulInBody,
    hasMathJaxScript: !!document.querySelector("script[src*='mathjax']"),
  };
}
"""


@dataclass
class Rendered:
    page: str
    data: dict[str, Any]
    fonts: list[dict[str, Any]]
    log: dict[str, list[str]]
    screenshot: Path | None
    mathjax_problem: str | None
    seconds: float


def _probe_fonts(page) -> list[dict[str, Any]]:
    """CDP 의 CSS.getPlatformFontsForNode 로 탐침 요소의 글자를 실제로 그린 글꼴을 알아낸다."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node_ids = cdp.send("DOM.querySelectorAll", {"nodeId": root, "selector": "[data-ko-probe]"})["nodeIds"]
        out = []
        for node_id in node_ids:
            attrs = cdp.send("DOM.getAttributes", {"nodeId": node_id})["attributes"]
            index = int(dict(zip(attrs[::2], attrs[1::2]))["data-ko-probe"])
            fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node_id})["fonts"]
            out.append({"index": index, "fonts": fonts})
        return sorted(out, key=lambda item: item["index"])
    finally:
        cdp.detach()


def screenshot_path(page: str) -> Path:
    return SCREENSHOT_DIR / (page[: -len(".html")] + ".png")


def render_page(browser, site: Site, page_rel: str, colab_url: str) -> Rendered:
    """쪽 하나를 열어 MathJax·그림·글꼴을 기다린 뒤 관찰값을 모으고 화면을 갈무리한다."""
    start = time.perf_counter()
    context, page, log = open_page(browser, site)
    mathjax_problem = None
    shot: Path | None = None
    try:
        page.goto(site.url(page_rel), wait_until="load")
        if page.evaluate("() => !!document.querySelector(\"script[src*='mathjax']\")"):
            try:
                page.wait_for_function(
                    "() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                    timeout=MATHJAX_TIMEOUT_MS,
                )
                page.evaluate("() => MathJax.startup.promise.then(() => true)")
            except Exception as exc:
                mathjax_problem = f"MathJax 가 끝나지 않았다: {exc}"
        page.evaluate(_JS_WAIT_IMAGES)
        data = page.evaluate(_JS_COLLECT, colab_url)
        fonts = _probe_fonts(page)
        if SCREENSHOTS_ENABLED:
            shot = screenshot_path(page_rel)
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True, animations="disabled")
    finally:
        context.close()
    return Rendered(page_rel, data, fonts, log, shot, mathjax_problem, time.perf_counter() - start)
