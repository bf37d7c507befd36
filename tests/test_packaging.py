"""의존성 선언 검사: src/ddpm_ko 가 import 하는 것과 pyproject.toml 이 설치하는 것이 맞는다.

- 지키지 않은 제3자 import 는 ``dependencies`` 에 직접 적혀 있다 (독자의 첫 셀 설치가 얻는 것).
- 지킨 import (ImportError 를 잡거나 find_spec 으로 미리 확인한다) 는 ``dependencies`` 나 선택 묶음(onnx, book …)이
  설치한다.
- 선택 묶음에만 있는 패키지가 없어도 ``ddpm_ko`` 의 모든 모듈이 import 된다.
- ``dependencies`` 의 패키지는 모두 쓰인다 (이유를 적은 예외만 빼고).
- requirements.txt 는 ``-e .[dev]`` 하나이고, ``dev`` 는 다른 모든 묶음을 합친 것이다.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "ddpm_ko"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DEPENDENCIES = PYPROJECT["project"]["dependencies"]
GROUPS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
#: 노트북 커널(ipykernel)이 늘 함께 설치하므로 지킨 import 로 치는 모듈과 그 이유
PROVIDED_BY_THE_NOTEBOOK_KERNEL = {
    "IPython": "ddpm_ko.book 의 glue 는 노트북 안에서 부른다: myst-nb 가 없으면 IPython 의 display 로 그림을 보인다",
}
#: dependencies 에 있지만 import 하지 않는 것과 그 이유
DECLARED_FOR_ANOTHER_PACKAGE = {
    "setuptools": "koreanize-matplotlib 이 distutils 를 import 하는데, Python 3.12 부터 표준 라이브러리에 없다",
}


def _names(requirements: list[str]) -> set[str]:
    """요구사항 문자열들의 (정규화한) 배포판 이름. ``ddpm_ko[onnx]`` 같은 자기 참조는 그 묶음들로 풀어 쓴다."""
    out: set[str] = set()
    for text in requirements:
        req = Requirement(text)
        if canonicalize_name(req.name) == canonicalize_name(PYPROJECT["project"]["name"]):
            for extra in req.extras:
                out |= _names(GROUPS[extra])
        else:
            out.add(canonicalize_name(req.name))
    return out


def _closure(names: set[str]) -> set[str]:
    """설치된 메타데이터로 따라간, ``names`` 와 그 의존성 전체 (설치되지 않은 것은 따라가지 않는다)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


_CATCHES_IMPORT_ERROR = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _imports() -> list[tuple[str, str, bool]]:
    """src/ddpm_ko 의 제3자 import: (파일:줄, 최상위 모듈 이름, 지켜졌는지).

    지켜진(guarded) import: ImportError 를 잡는 try 안에 있거나, 그 모듈이 importlib.util.find_spec 으로 그 이름을
    미리 확인한다 (onnx_export.require_onnx 처럼, 없으면 무엇을 설치할지 말하는 오류를 낸다).
    """
    found = []
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_try = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                h.type is None
                or any(isinstance(n, ast.Name) and n.id in _CATCHES_IMPORT_ERROR for n in ast.walk(h.type))
                for h in node.handlers
            ):
                in_try |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
        # find_spec 으로 확인하는 이름: find_spec("이름") 이나, 문자열만 든 튜플·리스트 (onnx_export._DEPENDENCIES)
        probed: set[str] = set()
        if any(isinstance(n, ast.Call) and ast.unparse(n.func).endswith("find_spec") for n in ast.walk(tree)):
            for n in ast.walk(tree):
                if (
                    isinstance(n, (ast.Tuple, ast.List, ast.Set))
                    and n.elts
                    and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in n.elts)
                ):
                    probed |= {e.value for e in n.elts}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            elif (
                isinstance(node, ast.Call)
                and ast.unparse(node.func).endswith("find_spec")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                mods = [node.args[0].value]  # find_spec("koreanize_matplotlib") 도 그 패키지를 쓰는 것이다
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if top == "ddpm_ko" or top == "__future__" or top in sys.stdlib_module_names:
                    continue
                guarded = id(node) in in_try or top in probed or top in PROVIDED_BY_THE_NOTEBOOK_KERNEL
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", top, guarded))
    return found


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    return md.packages_distributions()  # 설치된 배포판을 모두 읽는다 (한 번만)


def _distribution(module: str) -> str:
    """import 이름 → 배포판 이름 (PIL → pillow, fontTools → fonttools). 설치되지 않았으면 import 이름 그대로."""
    dists = _module_distributions().get(module)
    return canonicalize_name(dists[0] if dists else module)


def test_the_scan_finds_the_imports_it_must_check():
    """검사가 제대로 읽는지: 이미 아는 import 몇 개를 맞는 꼴(지켜짐/안 지켜짐)로 찾는다."""
    found = {(mod, guarded) for _, mod, guarded in _imports()}
    assert {("torch", False), ("tqdm", False), ("PIL", False), ("datasets", False)} <= found
    assert {("onnx", True), ("onnxruntime", True), ("myst_nb", True), ("fontTools", True)} <= found
    assert ("onnx", False) not in found and ("torch", True) not in found


def test_unguarded_imports_are_direct_runtime_dependencies():
    """지키지 않은 import (모듈 맨 위든 함수 안이든) 는 dependencies 에 직접 적는다: 독자의 설치가 그것을 얻는다."""
    runtime = _names(DEPENDENCIES)
    missing = [
        f"{where}: {mod} ({_distribution(mod)})"
        for where, mod, guarded in _imports()
        if not guarded and _distribution(mod) not in runtime
    ]
    assert not missing, "pyproject.toml 의 dependencies 에 없다 / not in dependencies:\n" + "\n".join(missing)


def test_guarded_imports_are_installed_by_dependencies_or_a_group():
    """지킨 import 는 dependencies 나 선택 묶음이 (직접, 또는 그 의존성으로) 설치한다."""
    declared = _closure(_names(DEPENDENCIES) | {n for group in GROUPS.values() for n in _names(group)})
    missing = [
        f"{where}: {mod} ({_distribution(mod)})"
        for where, mod, guarded in _imports()
        if guarded and _distribution(mod) not in declared
    ]
    assert not missing, "어느 의존성 묶음도 설치하지 않는다 / no dependency group installs:\n" + "\n".join(missing)


def test_every_runtime_dependency_is_used():
    used = {_distribution(mod) for _, mod, _ in _imports()}
    unused = _names(DEPENDENCIES) - used - {canonicalize_name(n) for n in DECLARED_FOR_ANOTHER_PACKAGE}
    assert not unused, f"src/ddpm_ko 가 쓰지 않는 dependencies / unused dependencies: {sorted(unused)}"


def test_package_imports_without_the_optional_groups():
    """선택 묶음에만 있는 모듈(onnx, myst_nb, IPython …)을 막아도 ddpm_ko 의 모든 모듈이 import 된다."""
    runtime = _closure(_names(DEPENDENCIES))
    optional_only = {n for group in GROUPS.values() for n in _closure(_names(group))} - runtime
    blocked = sorted(
        {
            mod
            for mod, dists in _module_distributions().items()
            if {canonicalize_name(d) for d in dists} <= optional_only and mod.isidentifier()
        }
    )
    assert "onnx" in blocked and "myst_nb" in blocked, blocked
    probe = (
        "import importlib, pkgutil, sys\n"
        "for name in sys.argv[1:]:\n"
        "    sys.modules[name] = None  # import 하면 ImportError\n"
        "import ddpm_ko\n"
        "for info in pkgutil.walk_packages(ddpm_ko.__path__, 'ddpm_ko.'):\n"
        "    if info.name != 'ddpm_ko.__main__':\n"
        "        importlib.import_module(info.name)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, *blocked], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_requirements_txt_is_the_dev_group():
    lines = [
        line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    ]
    assert [line for line in lines if line] == ["-e .[dev]"]
    dev = [Requirement(text) for text in GROUPS["dev"]]
    assert len(dev) == 1 and canonicalize_name(dev[0].name) == canonicalize_name(PYPROJECT["project"]["name"])
    assert dev[0].extras == set(GROUPS) - {"dev"}, "dev 는 다른 모든 묶음을 합친 것이다 / dev must include every group"
