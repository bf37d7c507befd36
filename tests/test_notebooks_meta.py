"""노트북과 책 설정의 일관성 검사: 첫 두 셀, 판(version), 저장소 주소, 출력 없음, 목차."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tokenize
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: 저장소 주소가 나오는 곳. 포크하면 모두 _config.yml 의 repository.url 과 같아야 한다 (노트북은 첫 코드 셀만:
#: 본문은 다른 저장소를 인용할 수 있다). 이 파일들에는 이 저장소의 주소만 적는다 (남의 저장소 링크는 book/credits.md 에).
URL_PLACES = [
    "README.md",
    "CONTRIBUTING.md",
    "book/how_to_read.md",
    "pyproject.toml",
    "src/ddpm_ko/*.py",
    "notebooks/[0-9][0-9]_*.ipynb",
]
# 이 저장소를 가리키는 주소의 세 가지 꼴: github.com/주인/이름, 주인.github.io/이름 (사이트), Colab 의 github/주인/이름
_URL_PATTERNS = [
    re.compile(r"https?://github\.com/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)(?:\.git)?(?=\.?(?:[/\s\"'`)>@#,]|$))"),
    re.compile(r"https?://(?P<owner>[\w-]+)\.github\.io/(?P<repo>[\w.-]+)"),
    re.compile(r"colab\.research\.google\.com/github/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)"),
]


def _config_repo_url(root: Path = ROOT) -> str:
    text = (root / "_config.yml").read_text(encoding="utf-8")
    m = re.search(r"^repository:\s*\n(?:\s+.*\n)*?\s+url:\s*(\S+)", text, re.M)
    assert m, "_config.yml 에 repository.url 이 없다"
    return m.group(1).strip("'\"").rstrip("/")


def _package_version(root: Path = ROOT) -> str:
    m = re.search(r'^__version__\s*=\s*"([^"]+)"', (root / "src/ddpm_ko/__init__.py").read_text(encoding="utf-8"), re.M)
    assert m, "src/ddpm_ko/__init__.py 에 __version__ 이 없다"
    return m.group(1)


def _cells(nb_path: Path) -> list[dict]:
    return json.loads(nb_path.read_text(encoding="utf-8"))["cells"]


def _code(nb_path: Path) -> list[str]:
    return ["".join(c["source"]) for c in _cells(nb_path) if c["cell_type"] == "code"]


def _without_comments(source: str) -> str:
    """파이썬 코드에서 주석만 지운다 (줄은 그대로). 코드에 있어야 할 글자를 주석이 대신 채우지 못하게 한다."""
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col].rstrip()
    return "\n".join(lines)


def _with_sections(entries: list[dict]) -> list[str]:
    """목차 항목과 그 절(sections)의 파일을 읽는 차례대로 (장 다음에 그 장의 절)."""
    return [f for e in entries for f in [e["file"], *_with_sections(e.get("sections", []))]]


def _toc_chapters(root: Path = ROOT) -> list[str]:
    """_toc.yml 의 모든 부(part)에 적힌 장과 절 파일을 차례대로."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    return [f for part in toc["parts"] for f in _with_sections(part["chapters"])]


def _contributing_first_cell(root: Path = ROOT) -> str:
    """CONTRIBUTING.md 의 노트북 규칙 1 에 적힌 첫 셀 (모든 장의 첫 셀은 이것과 글자까지 같다)."""
    text = (root / "CONTRIBUTING.md").read_text(encoding="utf-8")
    m = re.search(r"1\. \*\*첫 코드 셀\*\*.*?```python\n(.*?)\n\s*```", text, re.S)
    assert m, "CONTRIBUTING.md 에 첫 코드 셀 예시가 없다"
    block = m.group(1)
    indent = min(len(line) - len(line.lstrip()) for line in block.splitlines() if line.strip())
    return "\n".join(line[indent:] for line in block.splitlines())


def test_there_are_chapters() -> None:
    """장은 01 부터 빈 번호 없이 이어지고, 목차의 번호 붙은 장이 바로 그 노트북들이다 (같은 차례).

    한 장이 여러 쪽이면 둘째 쪽부터는 같은 번호를 쓰고 목차에서 그 장의 절(sections)이다 (예: 01_background 와 01_elbo).
    """
    assert NOTEBOOKS, "notebooks/NN_*.ipynb 가 없다"
    numbers = sorted({int(p.name[:2]) for p in NOTEBOOKS})
    assert numbers == list(range(1, len(numbers) + 1)), [p.name for p in NOTEBOOKS]
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    numbered = [ch for part in toc["parts"] if part.get("numbered") for ch in part["chapters"]]
    assert [int(Path(ch["file"]).name[:2]) for ch in numbered] == numbers, "번호 붙은 장 하나에 노트북 번호 하나"
    assert _with_sections(numbered) == [f"notebooks/{p.stem}" for p in NOTEBOOKS]


def test_documented_first_cell_installs_when_not_importable() -> None:
    """첫 셀: import 할 수 없으면 설치한다 (Colab 인지 묻지 않는다). 클론이면 ../src, 판은 태그 v{VERSION}."""
    cell = _without_comments(_contributing_first_cell())
    assert 'find_spec("ddpm_ko") is None' in cell
    assert "google.colab" not in cell, "설치 여부를 Colab 인지로 정하면 Kaggle·Jupyter 에서 ImportError 가 난다"
    assert re.search(r'REPO_URL = "[^"]+"\nVERSION = "[^"]+"\n', cell)
    assert 'f"git+{REPO_URL}@v{VERSION}"' in cell, "움직이는 main 이 아니라 노트북과 같은 판을 설치해야 한다"
    assert '"..", "src"' in cell, "클론에서는 설치 없이 ../src 를 써야 한다"
    # 검사용 통로는 설치 원본을 바꾸는 환경 변수 하나뿐이다
    assert re.findall(r"os\.environ\.get\(\"(\w+)\"", cell) == ["DDPM_KO_INSTALL_SOURCE"]
    assert "environ[" not in cell and "getenv" not in cell
    assert len(cell.splitlines()) <= 14, "첫 셀은 짧게"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_is_the_documented_one_with_this_version_and_url(nb: Path) -> None:
    first = _code(nb)[0]
    assert first == _contributing_first_cell(), f"{nb.name}: 첫 셀이 CONTRIBUTING.md 의 것과 다르다"
    code = _without_comments(first)
    assert f'REPO_URL = "{_config_repo_url()}"' in code, f"{nb.name}: REPO_URL != _config.yml repository.url"
    assert f'VERSION = "{_package_version()}"' in code, f"{nb.name}: VERSION != ddpm_ko.__version__"


def test_version_is_recorded_once_for_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ddpm_ko.__version__"}
    assert "version" not in pyproject["project"], "pyproject 에 판을 따로 적지 않는다"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_second_cell_is_the_package_setup(nb: Path) -> None:
    second = _code(nb)[1]
    assert re.search(r"^from ddpm_ko\.book import .*\bsetup\b", second, re.M), (
        f"{nb.name}: ddpm_ko.book.setup 을 쓰지 않는다"
    )
    assert re.search(r"^FAST, device = setup\(seed=\d+\)", second, re.M), (
        f"{nb.name}: FAST, device = setup(seed=…) 가 없다"
    )


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_no_unguarded_book_only_imports(nb: Path) -> None:
    """myst-nb 는 책 빌드에만 있다: 장은 ddpm_ko.book.glue 를 쓰고 myst_nb 를 직접 import 하지 않는다."""
    for i, src in enumerate(_code(nb)):
        assert not re.search(r"^\s*(from|import)\s+myst_nb\b", src, re.M), (
            f"{nb.name} 코드 셀 {i}: myst_nb 를 직접 import 한다"
        )
        assert "def glue(" not in src, f"{nb.name} 코드 셀 {i}: glue 를 다시 정의한다 (ddpm_ko.book.glue 를 쓴다)"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(nb: Path) -> None:
    for c in _cells(nb):
        if c["cell_type"] == "code":
            assert not c.get("outputs") and c.get("execution_count") is None, f"{nb.name} 에 출력이 남아 있다"


def test_every_chapter_is_in_the_toc() -> None:
    chapters = _toc_chapters()
    for nb in NOTEBOOKS:
        assert chapters.count(f"notebooks/{nb.stem}") == 1, f"{nb.name} 이 _toc.yml 에 (한 번) 없다"


# ---------------------------------------------------------------------------------------- 저장소 주소
def repo_url_disagreements(root: Path = ROOT) -> list[str]:
    """URL_PLACES 에서 _config.yml 의 repository.url 과 다른 저장소 주소를 모두 찾아 "파일:줄: 찾은 것" 으로."""
    url = _config_repo_url(root)
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", url)
    assert m, f"repository.url 은 https://github.com/주인/이름 꼴이어야 한다: {url}"
    owner, repo = m.groups()
    version = _package_version(root)
    found = []
    for pattern in URL_PLACES:
        for path in sorted(root.glob(pattern)):
            text = _code(path)[0] if path.suffix == ".ipynb" else path.read_text(encoding="utf-8")
            where = " (첫 코드 셀)" if path.suffix == ".ipynb" else ""
            for lineno, line in enumerate(text.splitlines(), 1):
                for rx in _URL_PATTERNS:
                    for hit in rx.finditer(line):
                        if (hit["owner"].lower(), hit["repo"].lower()) != (owner.lower(), repo.lower()):
                            found.append(f"{path.relative_to(root)}:{lineno}{where}: {hit.group(0)}")
                # 설치 명령의 태그는 패키지의 판과 같아야 한다 (git+https://github.com/주인/이름@v판)
                for tag in re.finditer(r"github\.com/[\w.-]+/[\w.-]+?@v([0-9][\w.]*[0-9A-Za-z])", line):
                    if tag.group(1) != version:
                        found.append(
                            f"{path.relative_to(root)}:{lineno}{where}: {tag.group(0)} (판 / version {version})"
                        )
    return found


def test_one_place_for_the_repository_address() -> None:
    wrong = repo_url_disagreements()
    assert not wrong, (
        "_config.yml 의 repository.url 과 다른 주소 (python scripts/set_repo_url.py 로 맞춘다):\n  "
        + "\n  ".join(wrong)
    )


def test_the_address_appears_where_readers_need_it() -> None:
    url = _config_repo_url()
    for place in ("README.md", "book/how_to_read.md", "CONTRIBUTING.md"):
        assert url in (ROOT / place).read_text(encoding="utf-8"), f"{place} 에 저장소 주소가 없다"


def test_set_repo_url_script_fixes_every_place(tmp_path: Path) -> None:
    """포크 주소로 바꾸는 스크립트를 사본에서 돌리면 모든 곳이 새 주소를 가리키고, 검사가 그것을 본다."""
    copy = tmp_path / "repo"
    for rel in [
        "_config.yml",
        "README.md",
        "CONTRIBUTING.md",
        "book/how_to_read.md",
        "pyproject.toml",
        "src/ddpm_ko/__init__.py",
        "scripts/set_repo_url.py",
    ]:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, copy / rel)
    for nb in NOTEBOOKS:
        (copy / "notebooks").mkdir(exist_ok=True)
        shutil.copy2(nb, copy / "notebooks" / nb.name)
    assert not repo_url_disagreements(copy)
    # _config.yml 만 바꾸면 나머지 모든 곳이 어긋났다고 이름이 나온다
    cfg = copy / "_config.yml"
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace(_config_repo_url(), "https://github.com/someone/ddpm_ko_fork"),
        encoding="utf-8",
    )
    wrong = repo_url_disagreements(copy)
    for place in ["README.md", "CONTRIBUTING.md", "book/how_to_read.md"] + [f"notebooks/{nb.name}" for nb in NOTEBOOKS]:
        assert any(w.startswith(place + ":") for w in wrong), (place, wrong)
    # 스크립트 한 번이면 모두 맞는다 (주소를 인자로 주는 방법)
    subprocess.run(
        [sys.executable, str(copy / "scripts/set_repo_url.py"), "https://github.com/me/my-book"],
        check=True,
        capture_output=True,
    )
    assert _config_repo_url(copy) == "https://github.com/me/my-book"
    assert not repo_url_disagreements(copy)
    first = _code(copy / "notebooks" / NOTEBOOKS[0].name)[0]
    assert 'REPO_URL = "https://github.com/me/my-book"' in first
    json.loads((copy / "notebooks" / NOTEBOOKS[0].name).read_text(encoding="utf-8"))  # 노트북은 여전히 올바른 JSON
    # 판을 올린 뒤 인자 없이 실행하면 노트북과 CONTRIBUTING.md 의 VERSION 이 따라온다
    init = copy / "src/ddpm_ko/__init__.py"
    init.write_text(
        re.sub(r'__version__ = "[^"]+"', '__version__ = "9.8.7"', init.read_text(encoding="utf-8")), encoding="utf-8"
    )
    assert any("(판 / version 9.8.7)" in w for w in repo_url_disagreements(copy))  # 문서의 설치 명령 @v0.1.0
    subprocess.run([sys.executable, str(copy / "scripts/set_repo_url.py")], check=True, capture_output=True)
    assert not repo_url_disagreements(copy)
    assert "git+https://github.com/me/my-book@v9.8.7" in (copy / "README.md").read_text(encoding="utf-8")
    for nb in NOTEBOOKS:
        first = _code(copy / "notebooks" / nb.name)[0]
        assert 'VERSION = "9.8.7"' in first and first == _contributing_first_cell(copy), nb.name
    # 노트북에서 바뀐 것은 첫 셀뿐이다
    for nb in NOTEBOOKS:
        before, after = _cells(nb), _cells(copy / "notebooks" / nb.name)
        first = next(i for i, c in enumerate(before) if c["cell_type"] == "code")
        assert [c for i, c in enumerate(after) if i != first] == [c for i, c in enumerate(before) if i != first], (
            nb.name
        )
