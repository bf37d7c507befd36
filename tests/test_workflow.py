"""GitHub Actions 작업 흐름: README 의 명령(make test)을 돌리고 _build/html 을 Pages 에 올린다."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _load(path: Path) -> dict:
    wf = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in wf:  # YAML 1.1 은 키 `on` 을 True 로 읽는다
        wf["on"] = wf.pop(True)
    return wf


def _readme_make_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.split("#")[0].strip() for b in blocks for line in b.splitlines() if line.strip().startswith("make ")]


def _steps(wf: dict) -> list[tuple[str, dict]]:
    return [(name, step) for name, job in wf["jobs"].items() for step in job.get("steps", [])]


def test_there_is_one_workflow() -> None:
    assert len(WORKFLOWS) == 1, WORKFLOWS


def test_runs_the_readme_test_command_on_push() -> None:
    wf = _load(WORKFLOWS[0])
    assert "push" in wf["on"]
    readme = _readme_make_commands()
    assert "make test" in readme and "make book" in readme, readme
    runs = [step.get("run", "") for _, step in _steps(wf)]
    assert any(re.search(r"^\s*make test\s*$", r, re.M) for r in runs), runs
    # make test 가 책도 빌드한다 (사이트를 따로 빌드하는 명령을 두지 않는다)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")

    def recipe(target: str) -> str:
        return re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)

    test_recipe = recipe("test")
    # 책 빌드는 test 의 조리법이 직접, 또는 그것이 부르는 목표(예: unit-then-book)가 부른다
    called = re.findall(r"\$\(MAKE\)[^\n]*", test_recipe)
    targets = {w for line in called for w in line.split()[1:] if not w.startswith("-")}
    assert "book" in targets or any(
        "$(MAKE) book" in recipe(t) for t in targets if re.search(rf"^{re.escape(t)}:", makefile, re.M)
    ), test_recipe
    # 독자처럼 모든 장을 실행하는 단계 (단위 검사와 나란히 부를 수도 있다: $(MAKE) -j2 ... unit reader)
    assert re.search(r"^\t\$\(MAKE\)[^\n]*\breader\b", test_recipe, re.M), test_recipe


def test_publishes_the_built_site_to_pages() -> None:
    wf = _load(WORKFLOWS[0])
    uploads = [(job, s) for job, s in _steps(wf) if str(s.get("uses", "")).startswith("actions/upload-pages-artifact@")]
    assert len(uploads) == 1 and uploads[0][1]["with"]["path"] == "_build/html", uploads
    build_job = uploads[0][0]
    deploys = [(job, s) for job, s in _steps(wf) if str(s.get("uses", "")).startswith("actions/deploy-pages@")]
    assert len(deploys) == 1, deploys
    deploy_job = wf["jobs"][deploys[0][0]]
    assert build_job in ([deploy_job["needs"]] if isinstance(deploy_job["needs"], str) else deploy_job["needs"])
    assert deploy_job["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy_job["environment"]["name"] == "github-pages"
    assert "refs/heads/main" in deploy_job.get("if", "")
    # 책 빌드가 쓰는 곳과 같다
    assert "_build/html" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_tags_the_version_the_notebooks_install() -> None:
    wf = _load(WORKFLOWS[0])
    runs = "\n".join(s.get("run", "") for _, s in _steps(wf))
    assert "src/ddpm_ko/__init__.py" in runs and 'git tag "v$version"' in runs
