#!/usr/bin/env python3
"""저장소 주소와 판(version)을 한 곳에서 모든 곳으로 옮긴다 (포크할 때 한 번 실행한다).

    python scripts/set_repo_url.py https://github.com/나/ddpm_ko   # 주소를 바꾸고 모든 곳에 반영
    python scripts/set_repo_url.py                                  # _config.yml 의 주소와 패키지 판을 다시 반영

주소의 원본은 ``_config.yml`` 의 ``repository.url``, 판의 원본은 ``src/ddpm_ko/__init__.py`` 의 ``__version__`` 이다.
README.md, CONTRIBUTING.md, book/how_to_read.md, pyproject.toml, 패키지 모듈, 각 장 노트북에 나오는
이 저장소의 주소(github.com/주인/이름, 주인.github.io/이름, Colab 의 github/주인/이름)와 노트북 첫 셀의
``VERSION``, 설치 명령의 태그(``…/이름@v판``)를 그 값으로 바꾼다. ``tests/test_notebooks_meta.py`` 가 어긋난 곳을 모두 이름으로 알려 준다.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLACES = [
    "README.md",
    "CONTRIBUTING.md",
    "book/how_to_read.md",
    "pyproject.toml",
    "src/ddpm_ko/*.py",
    "notebooks/[0-9][0-9]_*.ipynb",
]
_CONFIG_URL = re.compile(r"^(repository:\s*\n(?:\s+.*\n)*?\s+url:\s*)(\S+)", re.M)


def config_url(root: Path) -> str:
    m = _CONFIG_URL.search((root / "_config.yml").read_text(encoding="utf-8"))
    if not m:
        sys.exit("_config.yml 에 repository.url 이 없다 / no repository.url in _config.yml")
    return m.group(2).strip("'\"").rstrip("/")


def package_version(root: Path) -> str:
    m = re.search(r'^__version__\s*=\s*"([^"]+)"', (root / "src/ddpm_ko/__init__.py").read_text(encoding="utf-8"), re.M)
    if not m:
        sys.exit("src/ddpm_ko/__init__.py 에 __version__ 이 없다 / no __version__")
    return m.group(1)


def rewrite(text: str, owner: str, repo: str, version: str) -> str:
    text = re.sub(
        r"(https?://github\.com/)[\w.-]+/[\w.-]+?(\.git)?(?=\.?(?:[/\s\"'`)>@#,]|$))",
        lambda m: f"{m.group(1)}{owner}/{repo}{m.group(2) or ''}",
        text,
        flags=re.M,
    )
    text = re.sub(r"https?://[\w-]+\.github\.io/[\w.-]+", f"https://{owner.lower()}.github.io/{repo}", text)
    text = re.sub(r"(colab\.research\.google\.com/github/)[\w.-]+/[\w.-]+", rf"\g<1>{owner}/{repo}", text)
    # 설치 명령의 태그: git+https://github.com/주인/이름@v판
    text = re.sub(r"(github\.com/[\w.-]+/[\w.-]+?)@v[0-9][\w.]*[0-9A-Za-z]", rf"\g<1>@v{version}", text)
    # 첫 셀의 VERSION = "…" (노트북과 CONTRIBUTING.md 의 예시)
    return re.sub(r'^(\s*)VERSION = "[^"]*"', rf'\g<1>VERSION = "{version}"', text, flags=re.M)


def rewrite_notebook(text: str, owner: str, repo: str, version: str) -> str:
    """노트북은 첫 코드 셀만 고친다 (본문은 다른 저장소를 인용할 수 있다). 첫 셀의 VERSION 도 맞춘다."""
    nb = json.loads(text)
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    src = rewrite("".join(cell["source"]), owner, repo, version)
    lines = src.split("\n")
    cell["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]]
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    root = ROOT
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print(__doc__)
        return 2
    if argv:
        new = argv[0].rstrip("/")
        if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", new):
            sys.exit(f"https://github.com/주인/이름 꼴이어야 한다 / expected https://github.com/OWNER/NAME, got {new}")
        cfg = root / "_config.yml"
        cfg.write_text(
            _CONFIG_URL.sub(lambda m: m.group(1) + new, cfg.read_text(encoding="utf-8"), count=1), encoding="utf-8"
        )
    url = config_url(root)
    owner, repo = url.removeprefix("https://github.com/").split("/")
    version = package_version(root)
    changed = []
    for pattern in PLACES:
        for path in sorted(root.glob(pattern)):
            old = path.read_text(encoding="utf-8")
            fix = rewrite_notebook if path.suffix == ".ipynb" else rewrite
            new_text = fix(old, owner, repo, version)
            if new_text != old:
                path.write_text(new_text, encoding="utf-8")
                changed.append(str(path.relative_to(root)))
    print(f"repository.url = {url}, version = {version}")
    print("바꾼 파일 / changed: " + (", ".join(changed) if changed else "없음 (none)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
