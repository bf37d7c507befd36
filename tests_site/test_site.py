"""빌드된 사이트를 헤드리스 Chromium 으로 열어 독자가 보는 그대로 검사한다.

페이지마다(검사 이름의 [ ] 안이 페이지) 다음을 본다.

* 콘솔 오류·페이지 오류가 없고, 실패한 요청(4xx/5xx)이 없고, localhost 밖으로 나가는 요청이 없다.
* 한글이 네모(두부)가 아니라 한글 글꼴(나눔·Noto CJK 계열)로 그려진다 — CDP 로 실제 쓰인 글꼴을 잰다.
* 모든 수식이 MathJax 로 조판되었고 오류가 없으며, 본문에 날 TeX(``$$``, ``\\frac``…)가 남지 않았다.
* 모든 그림(<img>)이 실제로 읽혔다(naturalWidth > 0).
* 사이트 안 링크가 모두 200 이고, ``#조각`` 링크는 대상 쪽에 그 id 가 있다. 본문의 교차 참조
  ({eq}, {numref}, {ref} …)는 빈 글자나 "??" 가 아니다.
* 장(노트북) 쪽의 Colab 단추가 바로 그 노트북을 가리킨다(_config.yml 의 저장소 주소·브랜치 기준).
* 화면 전체를 ``_build/screenshots/<쪽>.png`` 로 갈무리한다.

끝으로 검색 쪽에서 한국어 검색(``korean_search`` 확장)이 기대한 장을 찾는지 본다.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
import urllib.parse

import pytest

from sitecheck import (
    BOOK_ROOT,
    KOREAN_FONT_RE,
    REPO,
    SCREENSHOTS_ENABLED,
    SITE_DIR,
    book_config,
    discover_pages,
    open_page,
    redirect_stubs,
)

pytestmark = pytest.mark.browser

PAGES = discover_pages()
CONTENT_PAGES = [p for p in PAGES if p not in ("search.html", "genindex.html")]


def _docname(page: str) -> str:
    return page[: -len(".html")]


def _is_notebook_page(page: str) -> bool:
    return (SITE_DIR / "_sources" / (_docname(page) + ".ipynb")).is_file()


# ----------------------------------------------------------------------------------------
# 사이트가 빌드되었는가


def test_site_is_built() -> None:
    assert (SITE_DIR / "search.html").is_file(), f"빌드된 사이트가 없다: {SITE_DIR} (`make book`)"
    assert PAGES, f"{SITE_DIR} 에 HTML 쪽이 없다"


@pytest.mark.parametrize("stub", redirect_stubs() or [pytest.param(None, marks=pytest.mark.skip("리디렉트 쪽 없음"))])
def test_root_redirect(stub, browser, site) -> None:
    """루트 index.html 은 첫 쪽으로 넘겨 준다."""
    context, page, log = open_page(browser, site)
    try:
        page.goto(site.url(stub), wait_until="load")
        page.wait_for_url(re.compile(r".*/(?!index\.html)[^/]+\.html.*"), timeout=60_000)
        target = page.url[len(site.base_url) :]
    finally:
        context.close()
    assert (SITE_DIR / urllib.parse.unquote(target.split("#")[0])).is_file(), f"{stub} → {target} 이 없다"
    assert not log["external"], log["external"]


# ----------------------------------------------------------------------------------------
# 쪽마다


@pytest.mark.parametrize("page", PAGES)
def test_loads_without_errors(page, rendered) -> None:
    r = rendered(page)
    problems = []
    problems += [f"외부 요청(막음): {u}" for u in r.log["external"]]
    problems += r.log["console"]
    problems += r.log["failed"]
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("page", PAGES)
def test_korean_font(page, rendered) -> None:
    """한글이 든 요소(제목·문단·목차)의 한글 글자가 모두 한국어 글꼴로 그려진다."""
    r = rendered(page)
    probes = r.data["probes"]
    assert r.data["hangulInBody"] > 0, f"{page}: 한글이 한 글자도 보이지 않는다"
    assert probes, f"{page}: 한글이 든 요소를 찾지 못했다"
    assert len(r.fonts) == len(probes)
    problems = []
    for probe, measured in zip(probes, r.fonts):
        fonts = measured["fonts"]
        korean = sum(f["glyphCount"] for f in fonts if KOREAN_FONT_RE.search(f["familyName"]))
        if korean < probe["hangul"]:
            used = ", ".join(f"{f['familyName']}×{f['glyphCount']}" for f in fonts)
            problems.append(
                f"{probe['kind']} '{probe['text']}': 한글 {probe['hangul']}자 중 {korean}자만 한국어 글꼴 (쓰인 글꼴: {used})"
            )
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("page", PAGES)
def test_math_typeset(page, rendered) -> None:
    r = rendered(page)
    d = r.data
    problems = []
    if r.mathjax_problem:
        problems.append(r.mathjax_problem)
    if d["mathCount"] and not d["hasMathJaxScript"]:
        problems.append(f"수식 {d['mathCount']}개가 있는데 MathJax 스크립트가 없다")
    if d["mathCount"] and d["mjxCount"] == 0:
        problems.append(f"수식 {d['mathCount']}개가 있는데 mjx-container 가 하나도 없다")
    problems += [f"조판되지 않은 수식: {t!r}" for t in d["untypeset"]]
    problems += [f"MathJax 오류: {t!r}" for t in d["merrors"]]
    problems += [f"본문에 날 TeX 가 남았다: {t!r}" for t in d["rawTex"]]
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize(
    "page", [p for p in PAGES if p.startswith("notebooks/")] or [pytest.param(None, marks=pytest.mark.skip("장 없음"))]
)
def test_chapter_has_math(page, rendered) -> None:
    """장(노트북) 쪽에는 조판된 수식이 있다."""
    r = rendered(page)
    assert r.data["mjxCount"] > 0, f"{page}: 조판된 수식(mjx-container)이 하나도 없다"


@pytest.mark.parametrize("page", PAGES)
def test_images_load(page, rendered) -> None:
    r = rendered(page)
    bad = [
        f"{img['src']} (alt={img['alt']!r}, complete={img['complete']}, naturalWidth={img['naturalWidth']})"
        for img in r.data["images"]
        if not (img["complete"] and img["naturalWidth"] > 0)
    ]
    assert not bad, f"{page}: 읽히지 않은 그림:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("page", PAGES)
def test_internal_links(page, rendered, site) -> None:
    """같은 출처 링크는 모두 200 이고, #조각 은 대상 쪽에 있는 id 를 가리킨다."""
    r = rendered(page)
    problems = []
    seen = set()
    for link in r.data["links"]:
        href = link["href"]
        if not site.is_local(href) or href in seen:
            continue
        seen.add(href)
        target, fragment = urllib.parse.urldefrag(href)
        result = site.fetch(target)
        if result.status != 200:
            problems.append(f"HTTP {result.status}: {link['raw']} ('{link['text']}')")
            continue
        fragment = urllib.parse.unquote(fragment)
        if fragment and "html" in result.content_type and fragment not in result.ids:
            problems.append(f"없는 앵커 #{fragment}: {link['raw']} ('{link['text']}')")
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("page", CONTENT_PAGES)
def test_cross_references(page, rendered, site) -> None:
    """본문의 교차 참조({eq}, {numref}, {ref}, {doc}, {term} …)가 실제 앵커로 풀렸다."""
    r = rendered(page)
    problems = []
    for link in r.data["links"]:
        if not link["xref"]:
            continue
        text = link["text"]
        if not text or "??" in text:
            problems.append(f"풀리지 않은 참조 글자 {text!r}: {link['raw']}")
        if not site.is_local(link["href"]):
            continue
        target, fragment = urllib.parse.urldefrag(link["href"])
        result = site.fetch(target)
        fragment = urllib.parse.unquote(fragment)
        if result.status != 200 or (fragment and fragment not in result.ids):
            problems.append(f"참조 {text!r} → {link['raw']} 대상이 없다 (HTTP {result.status})")
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("page", PAGES)
def test_colab_button(page, rendered, colab_prefix) -> None:
    r = rendered(page)
    colab = sorted(set(r.data["colab"]))
    if not _is_notebook_page(page):
        assert not colab, f"{page}: 노트북이 아닌 쪽에 Colab 단추가 있다: {colab}"
        return
    cfg = book_config()
    repo = cfg.get("repository") or {}
    repo_url = str(repo.get("url", "")).rstrip("/")
    assert repo_url.startswith("https://github.com/"), f"_config.yml repository.url 이 GitHub 주소가 아니다: {repo_url}"
    owner_repo = repo_url[len("https://github.com/") :]
    branch = repo.get("branch") or "main"
    path_to_book = str(repo.get("path_to_book") or "").strip("/")
    notebook = "/".join(x for x in (path_to_book, _docname(page) + ".ipynb") if x)
    expected = f"{colab_prefix.rstrip('/')}/github/{owner_repo}/blob/{branch}/{notebook}"
    assert colab == [expected], f"{page}: Colab 단추 {colab} != 기대값 {expected}"
    assert (BOOK_ROOT / _docname(page)).with_suffix(".ipynb").is_file(), f"{notebook} 이 저장소에 없다"


@pytest.mark.parametrize("page", PAGES)
def test_screenshot_saved(page, rendered) -> None:
    if not SCREENSHOTS_ENABLED:
        pytest.skip("DDPM_KO_SCREENSHOTS=off")
    r = rendered(page)
    assert r.screenshot is not None and r.screenshot.is_file() and r.screenshot.stat().st_size > 5_000, r.screenshot


# ----------------------------------------------------------------------------------------
# 한국어 검색

# 검색어 → 결과에 반드시 있어야 할 쪽(docname). 사이트에 없는 쪽은 빼고 본다(부분 빌드용).
# 검사 이름이 읽히도록(pytest 는 [ ] 안의 한글을 \uXXXX 로 바꾼다) 로마자 이름을 함께 둔다.
SEARCH_EXPECTATIONS = {
    "확산": ("hwaksan", ["book/intro", "notebooks/02_forward_process"]),
    "확산을": ("hwaksan-eul", ["book/intro", "notebooks/02_forward_process"]),  # 조사가 붙은 검색어
    "노이즈": ("noijeu", ["book/glossary", "notebooks/02_forward_process"]),
    "스케줄": ("seukejul", ["notebooks/02_forward_process"]),
    "어텐션": ("eotensyeon", ["notebooks/05_attention"]),
    "어텐션의": ("eotensyeon-ui", ["notebooks/05_attention"]),
    "SiLU": ("SiLU", ["notebooks/03_silu"]),
    "시간 임베딩": ("sigan-imbeding", ["notebooks/04_time_embedding"]),
}


def _search(browser, site, query: str):
    context, page, log = open_page(browser, site)
    try:
        page.goto(site.url("search.html?q=" + urllib.parse.quote(query)), wait_until="load")
        page.wait_for_function(
            "() => typeof Search !== 'undefined' && Search.status && Search.status.innerText.length > 0",
            timeout=60_000,
        )
        hrefs = page.eval_on_selector_all(
            "#search-results ul.search li > a", "els => els.map(a => a.getAttribute('href'))"
        )
        status = page.evaluate("() => Search.status.innerText")
    finally:
        context.close()
    docs = [urllib.parse.unquote(h).split("#")[0].removesuffix(".html") for h in hrefs]
    return docs, status, log


@pytest.mark.parametrize("query", list(SEARCH_EXPECTATIONS), ids=[v[0] for v in SEARCH_EXPECTATIONS.values()])
def test_korean_search(query, browser, site) -> None:
    expected = [d for d in SEARCH_EXPECTATIONS[query][1] if (SITE_DIR / (d + ".html")).is_file()]
    if not expected:
        pytest.skip(f"{query!r} 에 기대한 쪽이 이 빌드에 없다")
    docs, status, log = _search(browser, site, query)
    missing = [d for d in expected if d not in docs]
    assert not missing, f"검색 {query!r}: {missing} 이 결과에 없다. 결과={docs} 상태={status!r}"
    # 콘솔 오류는 test_loads_without_errors[search.html] 이 본다. 여기서는 검색이 밖으로 나가지 않는지만 본다.
    assert not log["external"], log["external"]


def test_search_index_language() -> None:
    """검색 색인이 korean_search 로 만들어졌다: 조사를 뗀 한글 어간이 색인에 있다."""
    lang_js = (SITE_DIR / "_static" / "language_data.js").read_text(encoding="utf-8")
    assert "korean_search" in lang_js, "language_data.js 에 한국어 분리기가 없다 (korean_search 확장이 꺼졌나?)"
    raw = (SITE_DIR / "searchindex.js").read_text(encoding="utf-8")
    index = json.loads(raw[len("Search.setIndex(") : -1])
    terms = set(index["terms"]) | set(index["titleterms"])
    assert "확산" in terms, "색인에 '확산' 이 없다"
    hangul_terms = [t for t in terms if re.match(r"[\uac00-\ud7a3]", t)]
    assert len(hangul_terms) > 100, f"한글 색인어가 너무 적다: {len(hangul_terms)}"


def test_js_splitter_matches_python(browser, site) -> None:
    """검색창의 분리기(JS)와 색인의 분리기(파이썬)가 같은 규칙으로 자른다."""
    sys.path.insert(0, str(REPO / "book" / "_ext"))
    try:
        import korean_search
    finally:
        sys.path.pop(0)
    samples = [
        "확산 모델은 노이즈를 더한다",
        "U-Net은 어텐션(attention)과 SiLU를 쓴다",
        "ε_θ(x_t, t)의 스케줄링 2020년",
        unicodedata.normalize("NFD", "확산을"),  # 맥에서 붙여 넣은 분해형 한글
    ]
    context, page, _ = open_page(browser, site)
    try:
        page.goto(site.url("search.html"), wait_until="load")
        got = page.evaluate("(xs) => xs.map((x) => splitQuery(x))", samples)
    finally:
        context.close()
    for sample, js_tokens in zip(samples, got):
        py_tokens = korean_search._TOKEN.findall(unicodedata.normalize("NFC", sample))
        assert js_tokens == py_tokens, f"{sample!r}: JS {js_tokens} != 파이썬 {py_tokens}"
