"""Sphinx 검색 색인에 한국어(language: ko)를 더하는 작은 확장.

Sphinx 7 에는 한국어 검색 언어가 없다. 그래서 ``language: ko`` 로 빌드하면 영어 분리기가 쓰이고,
영어 분리기는 공백과 문장 부호로만 낱말을 자르므로 "확산은", "확산을", "확산의" 가 서로 다른 낱말로
색인된다. 독자가 검색창에 "확산" 을 치면 그 어느 것과도 같지 않아 본문에 수십 번 나오는 낱말을
찾지 못한다(Sphinx 의 부분 일치는 세 글자 이상 검색어에만 쓰인다).

이 확장의 규칙은 단순하다.

* **색인(파이썬)**: 글을 한글 덩어리(연속된 한글 음절)와 그 밖의 낱말(영문·숫자·기호 문자)로 나눈다.
  한글 덩어리는 덩어리 전체와 길이 2 이상인 모든 앞부분을 색인한다. "확산은" → "확산은", "확산".
  한국어의 조사·어미는 낱말 뒤에 붙으므로, 앞부분만 모으면 형태소 분석기 없이도 체언 어간이 색인에
  들어간다. 영문 낱말은 영어와 똑같이 포터 어간 추출(stemming)을 거친다.
* **검색(자바스크립트)**: 검색어도 같은 규칙으로 자른다. 한글 검색어가 흔한 조사(을·를·은·는·의·으로 …)로
  끝나고 그것을 뗀 앞부분(2자 이상)이 색인에 있으면 그 앞부분으로 찾는다: "확산을" 은 "확산" 으로. 본문
  어딘가에 "확산을" 이 그 꼴로 한 번 나온다고 그 쪽만 찾으면 안 되기 때문이다 (앞부분은 색인에 늘 같이 있으므로
  그대로 찾은 결과를 모두 포함한다). 그렇지 않으면 검색어가 색인에 그대로 있을 때 그대로, 없으면 색인에 있는
  가장 긴 앞부분(2자 이상)으로 찾는다. 그래서 "확산", "확산을", "노이즈", "어텐션", "스케줄" 이 모두 해당 쪽을 찾는다.

``_config.yml`` 의 ``sphinx.local_extensions`` 에 ``korean_search: book/_ext`` 를 더하면 켜진다.
빌드 기록에 ``dumping search index in Korean (code: ko)`` 가 찍히면 이 확장이 쓰인 것이다.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import snowballstemmer
from sphinx.application import Sphinx
from sphinx.search import SearchLanguage
from sphinx.search.en import english_stopwords, js_porter_stemmer

# 한글 음절, 옛한글·자모 영역(호환 자모 포함). 색인과 검색 양쪽에서 같은 범위를 쓴다.
_HANGUL_CLASS = "\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\ud7b0-\ud7ff"
_HANGUL_CHAR = re.compile(f"[{_HANGUL_CLASS}]")
_TOKEN = re.compile(f"[{_HANGUL_CLASS}]+|(?:(?![{_HANGUL_CLASS}])\\w)+")

# 앞부분을 색인할 최소 길이(음절). 한 글자 앞부분은 거의 모든 낱말의 첫 글자라 색인만 불린다.
MIN_PREFIX = 2
# 앞부분을 색인할 최대 길이. 아주 긴 한글 덩어리(띄어 쓰지 않은 구)에서 색인이 불어나지 않게 한다.
MAX_PREFIX = 12
# 검색어 끝에서 떼어 보는 조사 (긴 것부터). 뗀 앞부분이 MIN_PREFIX 이상이고 색인에 있을 때만 뗀다.
PARTICLES = ("으로", "에서", "에게", "까지", "부터", "처럼", "보다", "은", "는", "이", "가", "을", "를", "의", "에", "와", "과", "도", "로", "만")


def is_hangul(word: str) -> bool:
    return bool(word) and _HANGUL_CHAR.match(word[0]) is not None


def split_korean(text: str) -> list[str]:
    """글을 색인할 낱말 목록으로 나눈다(한글 덩어리는 앞부분까지 펼친다)."""
    text = unicodedata.normalize("NFC", text)
    words: list[str] = []
    for token in _TOKEN.findall(text):
        if is_hangul(token):
            words.append(token)
            for n in range(MIN_PREFIX, min(len(token), MAX_PREFIX + 1)):
                words.append(token[:n])
        else:
            words.append(token)
    return words


# 검색 쪽 자바스크립트. searchtools.js 의 _parseQuery 는 splitQuery(query) 로 나눈 낱말마다
# stopwords 검사 → new Stemmer().stemWord(소문자 낱말) 를 거쳐 색인(terms, titleterms)을 찾는다.
_JS_SPLITTER = (
    """
/**
 * 한국어 검색어 분리기 (korean_search 확장).
 * 글자·숫자가 아닌 문자에서 자르고, 한 낱말 안에서도 한글 덩어리와 그 밖의 문자를 떼어 낸다.
 * 예: "U-Net은 노이즈를" → ["U", "Net", "은", "노이즈를"]
 */
var splitQuery = (query) => {
  const token = /[%(cls)s]+|[^%(cls)s]+/gu;
  return query
    .normalize("NFC")
    .split(/[^\\p{Letter}\\p{Number}_\\p{Emoji_Presentation}]+/gu)
    .filter((w) => w)
    .flatMap((w) => w.match(token) || [])
    .filter((w) => w);
};
"""
    % {"cls": _HANGUL_CLASS.encode("unicode_escape").decode("ascii")}
)

_JS_STEMMER = (
    js_porter_stemmer.replace("var Stemmer = function", "var PorterStemmer = function", 1)
    + """
/**
 * 한국어 + 영어 어간 처리 (korean_search 확장).
 * 영문 낱말은 포터 어간 추출. 한글 낱말은 끝의 조사를 뗀 앞부분이 색인에 있으면 그것으로, 아니면 그대로 또는
 * 색인에 있는 가장 긴 앞부분(2자 이상)으로 바꾼다.
 * 색인에는 한글 덩어리의 모든 앞부분(2자 이상)이 들어 있으므로 "확산을" 이 본문에 없어도 "확산" 으로 찾는다.
 */
var Stemmer = function() {
  const porter = new PorterStemmer();
  const hangul = /^[%(cls)s]/u;
  // 색인어가 있고 가리키는 문서가 하나라도 있어야 한다. 증분 빌드는 지워진 낱말을 빈 목록([])으로
  // 남기므로 열쇠만 보고 판단하면 안 된다.
  const has = (map, w) => !!map && Object.prototype.hasOwnProperty.call(map, w) &&
    (typeof map[w] === "number" || (Array.isArray(map[w]) && map[w].length > 0));
  const indexed = (w) => {
    if (typeof Search === "undefined" || !Search._index) return false;
    return has(Search._index.terms, w) || has(Search._index.titleterms, w);
  };
  this.stemWord = function(w) {
    if (!hangul.test(w)) return porter.stemWord(w);
    w = w.normalize("NFC");
    for (const p of %(particles)s) {
      const stem = w.slice(0, w.length - p.length);
      if (w.endsWith(p) && stem.length >= %(minp)d && indexed(stem)) return stem;
    }
    if (indexed(w)) return w;
    for (let n = Math.min(w.length - 1, %(maxp)d); n >= %(minp)d; n--) {
      const prefix = w.slice(0, n);
      if (indexed(prefix)) return prefix;
    }
    return w;
  };
};
"""
    % {
        "cls": _HANGUL_CLASS.encode("unicode_escape").decode("ascii"),
        "maxp": MAX_PREFIX,
        "minp": MIN_PREFIX,
        "particles": "[" + ", ".join(f'"{p}"' for p in PARTICLES) + "]",
    }
)


class SearchKorean(SearchLanguage):
    """한국어 검색 언어: 한글 덩어리의 앞부분 색인 + 영문 포터 어간 추출."""

    lang = "ko"
    language_name = "Korean"
    js_stemmer_code = _JS_STEMMER
    js_splitter_code = _JS_SPLITTER
    stopwords = english_stopwords

    def init(self, options: dict[str, str]) -> None:
        self.stemmer = snowballstemmer.stemmer("porter")

    def split(self, input: str) -> list[str]:
        return split_korean(input)

    def stem(self, word: str) -> str:
        if is_hangul(word):
            return word
        return self.stemmer.stemWord(word.lower())


def setup(app: Sphinx) -> dict[str, Any]:
    # app.add_search_language 는 sphinx.search.languages[cls.lang] = cls 와 같다.
    app.add_search_language(SearchKorean)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
