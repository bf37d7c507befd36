"""노트북과 책 설정의 일관성 검사: 저장소 URL, 출력 없음, 첫 셀, 목차."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _config_repo_url() -> str:
    text = (ROOT / "_config.yml").read_text(encoding="utf-8")
    m = re.search(r"^repository:\s*\n(?:\s+.*\n)*?\s+url:\s*(\S+)", text, re.M)
    assert m, "_config.yml 에 repository.url 이 없다"
    return m.group(1).strip("'\"").rstrip("/")


def _cells(nb_path: Path) -> list[dict]:
    return json.loads(nb_path.read_text(encoding="utf-8"))["cells"]


def test_there_are_chapters() -> None:
    assert len(NOTEBOOKS) >= 5, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_uses_the_configured_repository(nb: Path) -> None:
    url = _config_repo_url()
    code = [c for c in _cells(nb) if c["cell_type"] == "code"]
    first = "".join(code[0]["source"])
    m = re.search(r'REPO_URL\s*=\s*"([^"]+)"', first)
    assert m, f"{nb.name}: 첫 코드 셀에 REPO_URL 이 없다"
    assert m.group(1).rstrip("/") == url, f"{nb.name}: {m.group(1)} != _config.yml {url}"
    assert "google.colab" in first and "pip" in first and "find_spec(\"ddpm_ko\")" in first


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(nb: Path) -> None:
    for c in _cells(nb):
        if c["cell_type"] == "code":
            assert not c.get("outputs") and c.get("execution_count") is None, f"{nb.name} 에 출력이 남아 있다"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_seeded_and_has_fast_mode(nb: Path) -> None:
    src = "\n".join("".join(c["source"]) for c in _cells(nb) if c["cell_type"] == "code")
    assert "seed_everything(" in src and "fast_mode()" in src


def test_every_chapter_is_in_the_toc() -> None:
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}" in toc, f"{nb.name} 이 _toc.yml 에 없다"
