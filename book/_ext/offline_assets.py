"""빌드된 사이트가 네트워크 없이 읽히는지 검사하는 작은 Sphinx 확장.

HTML 빌드가 끝나면 출력 폴더의 모든 ``*.html`` 과 ``_static`` 아래 ``*.css`` 를 훑어,
브라우저가 페이지를 열 때 스스로 내려받는 자원(스크립트, 스타일시트, 글꼴, 이미지, iframe …)
가운데 외부 주소(``http://``, ``https://``, ``//``)를 가리키는 것을 찾아 경고한다.
``-W`` 로 빌드하면 경고가 곧 오류이므로, CDN 에 기대는 자원이 하나라도 생기면 빌드가 실패한다.

독자가 누르는 링크(``<a href>``, 예: Colab 실행 단추·저장소 단추)는 요청이 아니므로 검사하지 않는다.
꼭 필요한 외부 자원이 생기면 ``_config.yml`` 의 ``sphinx.config.offline_assets_allow`` 에
URL 접두사를 적어 허용한다(기본값은 빈 목록).

A tiny Sphinx extension: after an HTML build, warn about any asset the browser would fetch
from outside the site (scripts, stylesheets, fonts, images, iframes, CSS ``url()``/``@import``).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

_EXTERNAL = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
# 브라우저가 페이지를 열 때 곧바로 요청하는 <link rel=...> 값들
_FETCHING_RELS = {
    "stylesheet",
    "preload",
    "modulepreload",
    "prefetch",
    "preconnect",
    "dns-prefetch",
    "icon",
    "shortcut",
    "apple-touch-icon",
    "manifest",
}
# 태그별로 요청을 일으키는 속성
_FETCHING_ATTRS = {
    "script": ("src",),
    "img": ("src", "srcset"),
    "source": ("src", "srcset"),
    "iframe": ("src",),
    "video": ("src", "poster"),
    "audio": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "track": ("src",),
}
_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])([^'")\s]+)""", re.IGNORECASE)


class _AssetFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str, str]] = []  # (줄 번호, 태그, URL)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        amap = {k.lower(): (v or "") for k, v in attrs}
        urls: list[str] = []
        if tag == "link":
            rels = set(amap.get("rel", "").lower().split())
            if rels & _FETCHING_RELS:
                urls.append(amap.get("href", ""))
        elif tag in _FETCHING_ATTRS:
            for attr in _FETCHING_ATTRS[tag]:
                value = amap.get(attr, "")
                if attr == "srcset":
                    urls.extend(part.strip().split(" ")[0] for part in value.split(",") if part.strip())
                else:
                    urls.append(value)
        for url in urls:
            if url and _EXTERNAL.match(url):
                self.found.append((self.getpos()[0], tag, url.strip()))


def _allowed(url: str, allow: list[str]) -> bool:
    return any(url.startswith(prefix) for prefix in allow)


def find_external_assets(outdir: Path, allow: list[str] | None = None) -> list[tuple[Path, int, str]]:
    """``outdir`` 아래에서 외부 자원 요청을 찾아 (파일, 줄, 설명) 목록으로 돌려준다."""
    allow = list(allow or [])
    problems: list[tuple[Path, int, str]] = []
    for page in sorted(outdir.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        finder = _AssetFinder()
        finder.feed(text)
        for line, tag, url in finder.found:
            if not _allowed(url, allow):
                problems.append((page, line, f"<{tag}> 가 외부 자원을 불러온다: {url}"))
        # 인라인 <style> 과 style="" 안의 url()/@import 도 본다.
        for match in _CSS_URL.finditer(text):
            url = match.group(1)
            if _EXTERNAL.match(url) and not _allowed(url, allow):
                line = text.count("\n", 0, match.start()) + 1
                problems.append((page, line, f"CSS 가 외부 자원을 불러온다: {url}"))
    static = outdir / "_static"
    if static.is_dir():
        for css in sorted(static.rglob("*.css")):
            text = css.read_text(encoding="utf-8", errors="replace")
            for match in _CSS_URL.finditer(text):
                url = match.group(1)
                if _EXTERNAL.match(url) and not _allowed(url, allow):
                    line = text.count("\n", 0, match.start()) + 1
                    problems.append((css, line, f"CSS 가 외부 자원을 불러온다: {url}"))
    return problems


def _check(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    problems = find_external_assets(outdir, app.config.offline_assets_allow)
    for path, line, message in problems:
        logger.warning(
            "오프라인 읽기 위반(offline asset check): %s",
            message,
            location=f"{path}:{line}",
            type="offline_assets",
            subtype="external",
        )
    if not problems:
        logger.info("[offline_assets] 외부 자원 요청 없음 (no external asset requests)")


def _thebe_enabled(app: Sphinx) -> bool:
    launch = (app.config.html_theme_options or {}).get("launch_buttons") or {}
    return bool(launch.get("thebe"))


def _drop_unused_thebe(app: Sphinx, pagename: str, templatename: str, ctx: dict, doctree: Any) -> None:
    """thebe 단추를 쓰지 않으면 sphinx-thebe 가 모든 페이지에 넣는 스크립트를 뺀다.

    Jupyter Book 은 sphinx_thebe 를 늘 켜 두는데, 이 확장은 unpkg.com 의 thebe 주소를 담은
    인라인 스크립트와 그것을 불러오는 ``sphinx-thebe.js`` 를 모든 페이지에 넣는다. 단추가 없으면
    쓰이지 않으므로 외부 주소가 페이지에 남지 않게 지운다.
    """
    if _thebe_enabled(app):
        return

    def keep_js(js: Any) -> bool:
        name = str(getattr(js, "filename", "") or "")
        body = str(getattr(js, "attributes", {}).get("body", ""))
        return not (name.endswith("sphinx-thebe.js") or "THEBE_JS_URL" in body)

    def keep_css(css: Any) -> bool:
        return not str(getattr(css, "filename", "") or "").endswith("sphinx-thebe.css")

    if "script_files" in ctx:
        ctx["script_files"] = [js for js in ctx["script_files"] if keep_js(js)]
    if "css_files" in ctx:
        ctx["css_files"] = [css for css in ctx["css_files"] if keep_css(css)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("offline_assets_allow", [], "html", [list])
    app.connect("html-page-context", _drop_unused_thebe)
    app.connect("build-finished", _check)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
