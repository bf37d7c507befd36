"""한 개념에 한 낱말: book/terms.yml 의 거절 목록과 조사 붙여 쓰기(scripts/fix_particles.py)를 검사한다."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TERMS = yaml.safe_load((ROOT / "book" / "terms.yml").read_text(encoding="utf-8"))


def _load_fix_particles():
    spec = importlib.util.spec_from_file_location("fix_particles", ROOT / "scripts" / "fix_particles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fix_particles = _load_fix_particles()


def rules(terms: dict) -> list[tuple[re.Pattern, str]]:
    """(거절할 정규식, 대신 쓸 말) 목록."""
    out = [(re.compile(r), t["use"]) for t in terms["terms"] for r in t["reject"]]
    out += [(re.compile(s["reject"]), s["instead"]) for s in terms.get("slips", [])]
    return out


def _exempt(terms: dict, rel: str, source: str) -> bool:
    return any(fnmatch.fnmatch(rel, e["file"]) and e["cell_contains"] in source for e in terms.get("exempt", []))


def find_violations(paths: list[Path], terms: dict, root: Path = ROOT) -> list[str]:
    """거절한 표기가 나오는 곳을 "파일, 셀 N: '찾은 것' → '대신 쓸 말'" 로 모은다."""
    found = []
    checks = rules(terms)

    def scan(where: str, text: str) -> None:
        for pattern, use in checks:
            for m in pattern.finditer(text):
                found.append(f"{where}: '{m.group(0)}' → '{use}'")

    for path in paths:
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".ipynb":
            for idx, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
                source = "".join(cell["source"])
                if not _exempt(terms, rel, source):
                    scan(f"{rel}, 셀 {idx}", source)
        else:
            scan(rel, path.read_text(encoding="utf-8"))
    return found


def book_sources() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.md"))


def test_chosen_terms_are_glossary_entries():
    glossary = (ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
    heads = set(re.findall(r"^(\S[^\n]*)$", glossary, flags=re.M))
    missing = [t["use"] for t in TERMS["terms"] if t["use"] not in heads]
    assert not missing, f"terms.yml 의 use 가 glossary.md 의 항목이 아니다 / not a glossary entry: {missing}"


def test_no_rejected_variant_in_notebooks_or_pages():
    found = find_violations(book_sources(), TERMS)
    assert not found, "쓰지 않기로 한 표기 / rejected variants:\n" + "\n".join(found)


def test_checker_names_file_and_cell_of_a_planted_variant(tmp_path):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["깨끗한 셀\n"]},
        {"cell_type": "markdown", "metadata": {}, "source": ["밝은 화소 하나를 본다.\n"]},
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": ["# 표본 수\n", "n = 3\n"],
        },
    ]
    (nb_dir / "99_planted.ipynb").write_text(
        json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8"
    )
    page = tmp_path / "page.md"
    page.write_text("# 쪽\n\n마르코프 연쇄를 따른다. 연쇄 법칙은 괜찮다.\n", encoding="utf-8")
    found = find_violations([nb_dir / "99_planted.ipynb", page], TERMS, root=tmp_path)
    assert found == [
        "notebooks/99_planted.ipynb, 셀 1: '화소' → '픽셀'",
        "notebooks/99_planted.ipynb, 셀 2: '표본' → '샘플'",
        "page.md: '연쇄' → '마르코프 사슬'",
    ], found


def test_step_rules_catch_counts_of_단계_but_not_u_net_stages_or_ordinary_korean(tmp_path):
    """ "단계"는 U-Net 단계와 보통의 뜻으로만: 횟수(학습·샘플링·타임스텝)로 쓴 것은 모두 잡고, 나머지는 건드리지 않는다."""
    bad = [
        "DDIM 50단계로 만든다.",
        'print(f"{steps} 단계")',
        "4,750 단계 학습",
        "3만 단계 학습",
        "$T$ 단계를 밟는다.",
        "학습 단계를 늘린다.",
        "(단계당 312 ms)",
        "단계 수를 줄인다.",
        "DDIM 한 단계",
        "수백 단계 뒤",
        "매 단계 기록한다.",
        "$t$번째 단계",
        "확산 단계 수",
        "샘플링 단계",
    ]
    good = [
        "U-Net 단계 0은 28×28이다.",
        "28×28 단계에는 어텐션이 없다.",
        "세 단계를 다시 짚는다.",
        "2. 단계를 나눠 본다.",
        "단계 $k$의 해상도",
        "U-Net 단계 수",
        "2차 다단계 풀이법",
        "올라가기 단계가 $n - 1$ 개",
        "DDIM 50 스텝",
    ]
    cells = [{"cell_type": "markdown", "metadata": {}, "source": [line]} for line in bad + good]
    nb = tmp_path / "notebooks" / "98_steps.ipynb"
    nb.parent.mkdir()
    nb.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8")
    found = find_violations([nb], TERMS, root=tmp_path)
    flagged = {int(f.split("셀 ")[1].split(":")[0]) for f in found}
    assert flagged == set(range(len(bad))), [
        bad[i] if i < len(bad) else good[i - len(bad)] for i in flagged.symmetric_difference(range(len(bad)))
    ]


@pytest.mark.parametrize(
    "before, after",
    [
        ("DDPM 의 손실", "DDPM의 손실"),
        ("$x_t$ 를 만든다", "$x_t$를 만든다"),
        ("`Unet` 은 크다", "`Unet`은 크다"),
        ("T = 1000 에서", "T = 1000에서"),
        ("{doc}`06_unet` 에서 본다", "{doc}`06_unet`에서 본다"),
        ("DDPM 이라는 이름", "DDPM이라는 이름"),
        ("한국어 의 뜻", "한국어 의 뜻"),  # 한글 뒤는 건드리지 않는다
        ("DDPM 이상의 것", "DDPM 이상의 것"),  # '이상'은 조사가 아니다
        ("U-Net 과 DDPM 은", "U-Net과 DDPM은"),
        ("(MSE) 를", "(MSE)를"),  # 닫는 괄호 뒤에도 붙인다
        ("DPM-Solver++ 는", "DPM-Solver++는"),
        ("( 를 )", "( 를 )"),  # 여는 괄호 뒤는 그대로
    ],
)
def test_fix_line(before, after):
    assert fix_particles.fix_line(before) == after


def test_fix_markdown_leaves_code_and_display_math_alone_and_is_idempotent():
    text = "\n".join(
        [
            "DDPM 의 식 `x 를 보라` 와 $y$ 를 쓴다.",
            "```python",
            "print('DDPM 의')  # x 를",
            "```",
            "$$",
            "x 를 y",
            "$$ (eq-label)",
            "```{glue:figure} fig",
            "그림의 $x_t$ 는 캡션이다.",
            "```",
            "````{admonition} 정답",
            "```python",
            "a = 1  # N 개",
            "```",
            "DDPM 의 답",
            "````",
        ]
    )
    fixed = fix_particles.fix_markdown(text)
    assert fixed.split("\n") == [
        "DDPM의 식 `x 를 보라`와 $y$를 쓴다.",
        "```python",
        "print('DDPM 의')  # x 를",
        "```",
        "$$",
        "x 를 y",
        "$$ (eq-label)",
        "```{glue:figure} fig",
        "그림의 $x_t$는 캡션이다.",
        "```",
        "````{admonition} 정답",
        "```python",
        "a = 1  # N 개",
        "```",
        "DDPM의 답",
        "````",
    ]
    assert fix_particles.fix_markdown(fixed) == fixed


def test_particle_script_has_nothing_left_to_change():
    changed = [c for p in book_sources() for c in fix_particles.process(p, write=False)]
    assert not changed, "scripts/fix_particles.py 를 돌려야 한다 / run scripts/fix_particles.py:\n" + "\n".join(changed)
