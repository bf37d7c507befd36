#!/usr/bin/env python3
"""조사 붙여 쓰기: 라틴 문자·숫자·코드·수식 뒤에 띄어 쓴 조사를 붙인다 ("DDPM 의" → "DDPM의", "$x_t$ 를" → "$x_t$를").

- 노트북의 마크다운 셀과 ``book/*.md`` 만 고친다. 코드 셀, 코드 블록(```` ``` ````, ``~~~``), 인라인 코드(`` `...` ``)의 안쪽,
  여러 줄 수식($$ … $$)은 건드리지 않는다. MyST 지시문(```` ```{glue:figure} ```` 등)의 본문은 글이므로 고친다.
- 조사 앞의 글자가 라틴 문자·그리스 문자·숫자(ASCII 가 아닌 아래 첨자 ₀ 등 포함)·``+``·닫는 괄호이거나, 인라인 코드·인라인 수식의
  끝일 때만 붙인다.
- 띄어 쓴 다음 낱말이 통째로 조사(와 그 뒤의 보조사·어미)일 때만 붙인다. 여러 번 돌려도 결과가 같다(멱등).

    python scripts/fix_particles.py            # 고친다
    python scripts/fix_particles.py --check    # 고칠 곳이 있으면 파일·셀을 적고 1 로 끝난다 (고치지 않는다)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# 띄어 쓴 낱말이 통째로 이 가운데 하나일 때만 조사로 본다 (뒤에 한글이 더 이어지면 다른 낱말이다).
_BASE = [
    "은",
    "는",
    "이",
    "가",
    "을",
    "를",
    "의",
    "에",
    "에서",
    "에게",
    "와",
    "과",
    "로",
    "으로",
    "로서",
    "으로서",
    "로써",
    "으로써",
    "도",
    "만",
    "까지",
    "부터",
    "보다",
    "처럼",
    "마다",
    "만큼",
    "이나",
    "나",
    "이든",
    "든",
    "이랑",
    "랑",
    "께서",
    "한테",
    "이다",
    "다",
    "이고",
    "고",
    "이며",
    "며",
    "이면",
    "면",
    "이므로",
    "므로",
    "이지만",
    "지만",
    "이라",
    "라",
    "이라는",
    "라는",
    "이라고",
    "라고",
    "이란",
    "란",
    "인",
    "일",
    "이었다",
    "였다",
    "이어서",
    "여서",
    "이어야",
    "여야",
    "인데",
    "인지",
    "일까",
    "이니",
    "니",
    "이자",
    "이어",
    "이었고",
    "였고",
    "이었으며",
    "였으며",
    "이었지만",
    "였지만",
    "입니다",
    "이에요",
    "예요",
]
_TAIL = ["", "는", "도", "의", "만", "를", "은", "가", "이", "에", "서", "로", "만큼", "부터", "까지", "다", "고", "며"]
PARTICLES = frozenset(b + t for b in _BASE for t in _TAIL)

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
# 인라인 코드(같은 개수의 백틱으로 닫힘)와 인라인 수식($…$, $$…$$ 한 줄 안)
_SPANS = re.compile(r"(`+)(?:(?!\1).)+?\1|\$\$.+?\$\$|(?<![\\$])\$(?!\s)[^$\n]+?(?<![\s\\])\$")
_HANGUL_RUN = re.compile(r"[가-힣]+")


def _before_ok(ch: str) -> bool:
    """조사를 붙일 앞 글자: 한글이 아닌 글자(라틴·그리스)나 숫자, 이름의 끝인 ``+`` ("DPM-Solver++는"), 닫는 괄호."""
    return (ch.isalnum() and not ("가" <= ch <= "힣") and not ("ㄱ" <= ch <= "ㆎ")) or ch in "+)"


def _fix_prose(seg: str, prev_end: str) -> str:
    """코드·수식이 아닌 조각 하나. ``prev_end`` 는 바로 앞 조각의 종류 ('span' 이면 코드·수식의 끝)."""
    out, i = [], 0
    for m in re.finditer(r" (?=[가-힣])", seg):
        j = m.start()
        before_is_span = j == 0 and prev_end == "span"
        before_char = seg[j - 1] if j > 0 else ""
        if not (before_is_span or (before_char and _before_ok(before_char))):
            continue
        run = _HANGUL_RUN.match(seg, j + 1).group(0)
        if run not in PARTICLES:
            continue
        out.append(seg[i:j])
        i = j + 1  # 공백 하나를 뺀다
    out.append(seg[i:])
    return "".join(out)


def fix_line(line: str) -> str:
    """한 줄의 글을 고친다 (코드·수식 조각은 그대로)."""
    pieces, pos, prev = [], 0, "text"
    for m in _SPANS.finditer(line):
        if m.start() > pos:
            pieces.append(_fix_prose(line[pos : m.start()], prev))
        pieces.append(m.group(0))
        pos, prev = m.end(), "span"
    if pos == 0:
        return _fix_prose(line, "text")
    pieces.append(_fix_prose(line[pos:], prev) if pos < len(line) else "")
    return "".join(pieces)


def fix_markdown(text: str) -> str:
    """마크다운 글 전체. 코드 블록과 여러 줄 수식 블록은 건너뛴다."""
    lines = text.split("\n")
    fences: list[tuple[str, bool]] = []  # (닫는 울타리, 코드인가)
    in_math = False
    for k, line in enumerate(lines):
        m = _FENCE.match(line)
        if m:
            mark, info = m.group(2), m.group(3).strip()
            if fences and mark[0] == fences[-1][0][0] and len(mark) >= len(fences[-1][0]) and not info:
                fences.pop()
                continue
            is_code = not info.startswith("{") or info.split("}")[0] in ("{code-cell", "{code-block", "{code", "{math")
            if fences and fences[-1][1]:
                continue  # 코드 블록 안의 울타리 모양 줄
            fences.append((mark, is_code))
            continue
        if fences and fences[-1][1]:
            continue
        stripped = line.strip()
        if in_math:
            if stripped.startswith("$$"):
                in_math = False
            continue
        if stripped.startswith("$$") and stripped.count("$$") == 1:
            in_math = True
            continue
        if stripped.startswith("$$"):
            continue
        lines[k] = fix_line(line)
    return "\n".join(lines)


def _markdown_sources() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.md"))


def process(path: Path, write: bool) -> list[str]:
    """파일 하나를 고치고(``write``) 바뀐 곳을 "파일, 셀 N" 으로 돌려준다."""
    rel = path.relative_to(ROOT)
    changed: list[str] = []
    if path.suffix == ".ipynb":
        raw = path.read_text(encoding="utf-8")
        nb = json.loads(raw)
        for idx, cell in enumerate(nb["cells"]):
            if cell["cell_type"] != "markdown":
                continue
            src = "".join(cell["source"])
            new = fix_markdown(src)
            if new != src:
                changed.append(f"{rel}, 셀 {idx}")
                parts = new.split("\n")
                cell["source"] = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        if changed and write:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        src = path.read_text(encoding="utf-8")
        new = fix_markdown(src)
        if new != src:
            changed.append(str(rel))
            if write:
                path.write_text(new, encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="고치지 않고, 고칠 곳이 있으면 1 로 끝난다")
    p.add_argument("paths", nargs="*", type=Path, help="파일 (기본: notebooks/*.ipynb, book/*.md)")
    a = p.parse_args(argv)
    paths = [x.resolve() for x in a.paths] or _markdown_sources()
    changed = [c for path in paths for c in process(path, write=not a.check)]
    for c in changed:
        print(("고칠 곳 / needs fixing: " if a.check else "고침 / fixed: ") + c)
    return 1 if (a.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
