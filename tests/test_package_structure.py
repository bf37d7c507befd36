"""패키지의 모양 검사: 모듈 사이에 순환 import 가 없고, 계산 모듈은 명령줄 모듈을 들여오지 않는다.

import 그래프는 소스를 ``ast`` 로 읽어 만든다. 함수 안의 import 도 센다: 늦게 들여오는 import 는 순환을
실행 순서 뒤로 숨길 뿐 없애지 못하기 때문이다.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "ddpm_ko"


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """``from .x import y`` 의 상대 경로를 절대 모듈 이름으로."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path = PKG) -> dict[str, set[str]]:
    """{모듈: 그 모듈이 들여오는 ddpm_ko 모듈들} (함수 안의 import 포함)."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        typing_only = {
            id(sub)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
            for stmt in node.body
            for sub in ast.walk(stmt)
        }  # if TYPE_CHECKING: 안의 import 는 실행되지 않으므로 순환이 아니다 (타입 힌트만 읽는다)
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, node, path.name == "__init__.py")
                # from . import x 나 from .pkg import sub 는 하위 모듈일 수도 있다
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # ddpm_ko.x.y 가 없으면 ddpm_ko.x
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """순환 하나를 [a, b, …, a] 로 돌려준다. 없으면 None."""
    state: dict[str, int] = {}  # 1: 방문 중, 2: 끝
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_package_import_graph_has_no_cycle():
    graph = import_graph()
    assert {"ddpm_ko", "ddpm_ko.cli", "ddpm_ko.metrics", "ddpm_ko.evaluation", "ddpm_ko.train"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "순환 import / import cycle: " + " -> ".join(cycle)


def test_only_the_entry_points_import_the_cli():
    graph = import_graph()
    importers = sorted(m for m, deps in graph.items() if "ddpm_ko.cli" in deps)
    assert importers == ["ddpm_ko.__main__"], importers


def test_cycle_finder_sees_cycles_hidden_inside_functions(tmp_path):
    """검사 도구 자체의 검사: 함수 안의 늦은 import 로 만든 순환도 잡는다."""
    pkg = tmp_path / "ddpm_ko"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import g\n\ndef f():\n    return g()\n")
    (pkg / "b.py").write_text("def g():\n    from . import a\n    return a\n")
    (pkg / "c.py").write_text("from ddpm_ko import a\n")
    graph = import_graph(pkg)
    assert graph["ddpm_ko.a"] == {"ddpm_ko.b"} and graph["ddpm_ko.b"] == {"ddpm_ko.a"}
    assert graph["ddpm_ko.c"] == {"ddpm_ko.a"}
    assert find_cycle(graph) in (["ddpm_ko.a", "ddpm_ko.b", "ddpm_ko.a"], ["ddpm_ko.b", "ddpm_ko.a", "ddpm_ko.b"])
    (pkg / "b.py").write_text("def g():\n    return 1\n")
    assert find_cycle(import_graph(pkg)) is None


@pytest.mark.parametrize("module", ["ddpm_ko.metrics", "ddpm_ko.evaluation", "ddpm_ko.train"])
def test_computing_modules_import_no_cli(module):
    """``python -c "import ddpm_ko.metrics"`` 은 명령줄 모듈을 하나도 들여오지 않는다 (새 프로세스에서 확인)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG.parent) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    code = (
        f"import sys, {module}; print(sorted(m for m in sys.modules "
        "if m.startswith('ddpm_ko.cli') or m == 'ddpm_ko.__main__'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, check=True
    )  # 새 프로세스가 torch 를 import 한다: 부하가 걸린 2코어에서는 몇십 초
    assert [line for line in out.stdout.splitlines() if line.startswith("[")] == ["[]"], out.stdout
