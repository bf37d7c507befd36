"""패키지 주석이 인용하는 책의 식 번호(``식 chN-eq-…``)가 모두 책에 있는지 본다 (패키지와 책이 서로를 가리키게)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABEL = re.compile(r"ch\d+-eq-[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
DEFINED = re.compile(r"\$\$\s*\((ch\d+-eq-[A-Za-z0-9-]+)\)")


def _defined_labels() -> set[str]:
    """노트북 마크다운 셀의 ``$$ … $$ (label)`` 로 정의한 식 번호."""
    labels: set[str] = set()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "markdown":
                labels |= set(DEFINED.findall("".join(cell["source"])))
    return labels


def test_every_cited_label_is_defined_in_the_book():
    defined = _defined_labels()
    assert len(defined) > 50, "노트북에서 식 번호를 읽지 못했다"
    cited = {}
    for path in sorted((ROOT / "src" / "ddpm_ko").glob("*.py")):
        for label in LABEL.findall(path.read_text(encoding="utf-8")):
            cited.setdefault(label, path.name)
    assert len(cited) >= 30, sorted(cited)
    missing = {label: where for label, where in cited.items() if label not in defined}
    assert not missing, f"책에 없는 식 번호 / labels the book does not define: {missing}"
