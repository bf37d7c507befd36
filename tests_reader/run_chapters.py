"""모든 장을 저장소 밖의 독자처럼 실행한다 (``make reader``, ``make test`` 의 한 단계).

독자는 장을 Colab, Kaggle, 내려받은 노트북으로 연다. 그 자리에는 이 저장소도, 책 빌드 도구도 없다.
이 검사는 그 상황을 그대로 만든다.

- **독자용 가상환경** ``.reader/venv``: Colab 사용자가 가진 실행 의존성만 든다 (torch — CPU 휠,
  ``constraints-cpu.txt`` —, numpy, matplotlib, datasets, pillow, safetensors, tqdm, ipykernel). jupyter-book,
  myst-nb, pytest 는 없다 (없음을 확인한다). 요구 목록이 같으면 다시 만들지 않는다.
- **노트북 하나씩, 빈 임시 디렉터리에서, nbval 로**: ``../src`` 도 ``../checkpoints`` 도 없다. 바깥 환경(이 파일을
  돌리는 .venv)의 ``pytest --nbval-lax`` 가 독자용 파이썬을 가리키는 커널 명세(``--nbval-kernel-name``)로 커널을
  띄운다. 이 실행이 곧 저장소의 nbval 검사다: 저장소 안에서 노트북을 한 번 더 돌리지 않는다 (저장소 안의 경로,
  곧 ``../src`` 를 쓰는 첫 셀은 책 빌드가 모든 장을 독자 설정으로 실행하며 검사한다).
- **첫 셀의 설치를 그대로**: 실행 전에 독자 환경에서 ddpm_ko 를 지운다. 그러면 첫 장의 첫 셀이
  ``pip install`` 을 한다. 바꾸는 것은 설치 원본뿐이다: ``DDPM_KO_INSTALL_SOURCE`` 가 이 작업 트리의 사본
  (git 이 아는 파일, 곧 이 커밋과 아직 커밋하지 않은 변경)을 가리킨다. 나머지 장은 설치된 패키지를 쓴다
  (모든 장의 첫 셀이 글자까지 같음은 tests/test_notebooks_meta.py 가 검사한다). ``--install-each`` 를 주면
  장마다 지우고 다시 설치한다.
- **빠른 모드** (``DDPM_KO_FAST=1``).
- **Fashion-MNIST 는 Colab 과 같은 Hugging Face ``datasets`` 경로로**: 이 기계는 Hub 에 닿지 않으므로
  ``make_hub_cache.py`` 가 Hub 데이터셋과 같은 꼴(PNG 바이트 + 레이블, Parquet)의 데이터를 Debian 의 IDX 파일로
  만들어 ``datasets`` 캐시(``HF_HOME``)에 한 번 준비하고, 커널은 ``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1`` (datasets 의 오프라인 모드)과
  ``DDPM_KO_DATA_SOURCE=hub`` (독자도 쓸 수 있는 설정: 로컬 파일이 있어도 Hub 경로만 쓴다)로 돈다.

장마다 걸린 시간(첫 셀, 곧 설치에 걸린 시간도)을 출력하고 ``.reader/last_run.json`` 에 남긴다.

    .venv/bin/python tests_reader/run_chapters.py [--only 03_silu] [--install-each]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".reader"
VENV = WORK / "venv"
PY = VENV / "bin" / "python"
HF_HOME = WORK / "hf_home"
KERNEL_NAME = "ddpm_ko_reader"
#: Colab 사용자가 이미 가진 실행 의존성 (ddpm_ko 자신과 그 밖의 의존성은 첫 셀의 pip install 이 설치한다)
READER_REQUIREMENTS = ["torch", "numpy", "matplotlib", "datasets", "pillow", "safetensors", "tqdm", "ipykernel"]
#: 독자의 커널에서 import 할 수 없어야 하는 것 (책 빌드와 검사 도구)
MUST_BE_ABSENT = ["myst_nb", "jupyter_book", "pytest", "nbval", "ddpm_ko"]
#: Hub 꼴 데이터의 크기: Hub 와 같은 전체 분할. 부분집합이면 장들이 뽑는 이미지(예: 10장의 바닥값 풀)가 달라져
#: nbval 과 다른 숫자가 나온다. 캐시는 한 번 만들어 다시 쓰고(약 36 MB), 한 장 안에서는 푼 배열을 다시 쓴다.
TRAIN_N, TEST_N = 60000, 10000
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: 독자의 커널에 넘기지 않는 변수: 저장소나 이 기계의 설정이 새어 들어가지 않게 한다
_DROP_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "MPLBACKEND",
    "DDPM_KO_DATA_DIR",
    "DDPM_KO_PRETRAINED",
    "DDPM_KO_CLASSIFIER",
    "DDPM_KO_DATA_SOURCE",
    "JUPYTER_PATH",
    "HF_DATASETS_CACHE",
    "HF_HUB_CACHE",
)


def log(msg: str) -> None:
    print(f"[reader] {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def ensure_venv() -> None:
    """독자용 가상환경을 만든다. 요구 목록·제약·파이썬이 같으면 있는 것을 쓴다."""
    constraints = ROOT / "constraints-cpu.txt"
    want = _digest(" ".join(READER_REQUIREMENTS), constraints.read_bytes(), sys.version)
    stamp = VENV / ".reader-stamp"
    if PY.is_file() and stamp.is_file() and stamp.read_text().strip() == want:
        log(f"독자용 가상환경을 다시 쓴다 / reusing {VENV.relative_to(ROOT)}")
    else:
        shutil.rmtree(VENV, ignore_errors=True)
        log(f"독자용 가상환경을 만든다 / creating {VENV.relative_to(ROOT)}: {' '.join(READER_REQUIREMENTS)}")
        run([sys.executable, "-m", "venv", VENV])
        r = subprocess.run(
            [
                str(PY),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-c",
                str(constraints),
                *READER_REQUIREMENTS,
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            sys.exit(f"[reader] pip install 실패 / failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        stamp.write_text(want + "\n")
    # 이전 실행이 설치한 ddpm_ko 를 지운다: 첫 장의 첫 셀이 설치해야 한다
    run([PY, "-m", "pip", "uninstall", "-q", "-y", "ddpm_ko"], capture_output=True)
    check = (
        "import importlib.util, sys; bad = [m for m in sys.argv[1:] if importlib.util.find_spec(m)]; "
        "print(' '.join(bad)); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([str(PY), "-c", check, *MUST_BE_ABSENT], capture_output=True, text=True, env=_clean_env({}))
    if r.returncode:
        sys.exit(f"[reader] 독자 환경에서 import 되면 안 되는 모듈 / importable but must not be: {r.stdout.strip()}")


def ensure_hub_cache() -> None:
    """Hub 꼴의 작은 Fashion-MNIST 를 datasets 캐시에 둔다 (만드는 스크립트·크기·datasets 판이 같으면 다시 쓴다)."""
    script = Path(__file__).with_name("make_hub_cache.py")
    ver = subprocess.run(
        [str(PY), "-c", "import datasets; print(datasets.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    want = _digest(script.read_bytes(), ver, str(TRAIN_N), str(TEST_N))
    stamp = HF_HOME / ".reader-stamp"
    if stamp.is_file() and stamp.read_text().strip() == want:
        return
    if not DEBIAN_DIR.is_dir():
        sys.exit(f"[reader] {DEBIAN_DIR} 가 없다 / missing: sudo apt-get install dataset-fashion-mnist")
    shutil.rmtree(HF_HOME, ignore_errors=True)
    HF_HOME.mkdir(parents=True)
    run([PY, script, HF_HOME, DEBIAN_DIR, TRAIN_N, TEST_N], env=_clean_env({"HF_HOME": str(HF_HOME)}))
    stamp.write_text(want + "\n")


def snapshot_source(dest: Path) -> Path:
    """설치 원본: git 이 아는 파일(추적 + 무시하지 않은 새 파일)의 사본. 빌드 산출물이 작업 트리에 남지 않는다."""
    try:
        listed = (
            subprocess.run(
                ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                cwd=ROOT,
                capture_output=True,
                check=True,
            )
            .stdout.decode()
            .split("\0")
        )
    except (OSError, subprocess.CalledProcessError):
        return ROOT
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def write_kernelspec(root: Path) -> None:
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(PY), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "ddpm_ko reader (Colab-like)",
                "language": "python",
            }
        )
    )


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


_DURATION = re.compile(r"^\s*([0-9.]+)s call\s+\S+::Cell (\d+)\s*$", re.M)


def run_chapter(nb_path: Path, env: dict[str, str], timeout: int) -> tuple[float, float | None, str | None]:
    """장 하나를 nbval 로 실행한다 (``pytest --nbval-lax``, 커널은 독자용 파이썬). 이것이 이 저장소의 nbval 검사다.

    pytest 와 nbval 은 바깥 환경(.venv)에 있고, 셀을 실행하는 커널만 독자 환경이다: 커널 안에서는 pytest 도
    nbval 도 import 할 수 없다. 노트북은 빈 임시 디렉터리에 혼자 있고, nbval 은 커널을 그 디렉터리에서 띄운다.
    돌려주는 값: (걸린 시간, 첫 셀의 시간, 실패했으면 pytest 출력의 끝).
    """
    with tempfile.TemporaryDirectory(prefix="ddpm_ko_reader_") as tmp:
        workdir = Path(tmp) / "chapter"  # 부모 디렉터리에도 src/ 가 없다
        workdir.mkdir()
        shutil.copy2(nb_path, workdir / nb_path.name)
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "--nbval-lax",
            "--nbval-kernel-name",
            KERNEL_NAME,
            "--nbval-cell-timeout",
            str(timeout),
            "--durations=0",
            "--durations-min=0",
            nb_path.name,
        ]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        out = r.stdout + r.stderr
        cells = {int(i): float(s) for s, i in _DURATION.findall(out)}
        leftovers = sorted(p.name for p in workdir.iterdir() if p.name != nb_path.name)
        if leftovers:
            log(f"  {nb_path.stem}: 임시 디렉터리에 남긴 것 / wrote {leftovers}")
    error = None if r.returncode == 0 else out[-6000:]
    return wall, cells.get(0), error


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="이 이름으로 시작하는 장만 (예: 03_silu)")
    ap.add_argument("--install-each", action="store_true", help="장마다 ddpm_ko 를 지우고 첫 셀이 다시 설치하게 한다")
    ap.add_argument("--timeout", type=int, default=600, help="셀 하나의 제한 시간(초)")
    args = ap.parse_args()
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if any(p.stem.startswith(o) for o in args.only)]
    if not notebooks:
        sys.exit("[reader] 실행할 장이 없다 / no chapters selected")
    WORK.mkdir(exist_ok=True)
    t_setup = time.perf_counter()
    ensure_venv()
    ensure_hub_cache()
    results: list[dict] = []
    with (
        tempfile.TemporaryDirectory(prefix="ddpm_ko_src_") as src_tmp,
        tempfile.TemporaryDirectory(prefix="ddpm_ko_jupyter_") as jupyter_tmp,
    ):
        source = snapshot_source(Path(src_tmp) / "ddpm_ko")
        write_kernelspec(Path(jupyter_tmp))
        env = _clean_env(
            {
                "JUPYTER_PATH": jupyter_tmp,  # nbval(jupyter_client)이 독자용 커널 명세를 찾는 곳
                "DDPM_KO_FAST": "1",
                "DDPM_KO_INSTALL_SOURCE": str(source),
                "DDPM_KO_DATA_SOURCE": "hub",
                "HF_HOME": str(HF_HOME),
                "HF_HUB_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                # 코어보다 스레드가 많을 때 OpenMP 가 바쁘게 기다리지 않게 한다 (Makefile 과 같은 기본값)
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
            }
        )
        setup_s = time.perf_counter() - t_setup
        log(f"준비 {setup_s:.0f}s; 설치 원본 / install source: {source}")
        for i, nb in enumerate(notebooks):
            if args.install_each and i:
                run([PY, "-m", "pip", "uninstall", "-q", "-y", "ddpm_ko"], capture_output=True)
            wall, first, error = run_chapter(nb, env, args.timeout)
            results.append(
                {
                    "chapter": nb.stem,
                    "seconds": round(wall, 1),
                    "first_cell_s": first and round(first, 1),
                    "ok": error is None,
                }
            )
            first_txt = f"(첫 셀 / first cell {first:.1f}s)" if first is not None else ""
            log(f"{nb.stem:24s} {wall:6.1f}s {first_txt:28s} {'ok' if error is None else 'FAILED'}")
            if error:
                print(error[-4000:], file=sys.stderr, flush=True)
    # 커널이 쓴 ddpm_ko 는 독자 환경에 설치된 것이고, 가중치도 그 설치에 들어 있다
    probe = (
        "import ddpm_ko, importlib.metadata as m; from ddpm_ko.pretrained import pretrained_path; "
        "print(ddpm_ko.__file__); print(m.version('ddpm_ko')); print(pretrained_path())"
    )
    r = subprocess.run(
        [str(PY), "-c", probe], capture_output=True, text=True, cwd=tempfile.gettempdir(), env=_clean_env({})
    )
    installed_ok = r.returncode == 0 and all(line.startswith(str(VENV)) for line in r.stdout.splitlines()[::2])
    log("설치된 패키지 / installed: " + " | ".join(r.stdout.split()) if r.returncode == 0 else r.stderr[-500:])
    total = sum(x["seconds"] for x in results)
    (WORK / "last_run.json").write_text(
        json.dumps(
            {
                "setup_s": round(setup_s, 1),
                "chapters": results,
                "chapters_total_s": round(total, 1),
                "installed_ok": installed_ok,
            },
            ensure_ascii=False,
            indent=1,
        )
        + "\n"
    )
    failed = [x["chapter"] for x in results if not x["ok"]]
    log(f"장 {len(results)}개, 합계 {total:.0f}s (+ 준비 {setup_s:.0f}s); 실패 / failed: {failed or '없음'}")
    if not installed_ok:
        log("독자 환경에 설치된 ddpm_ko 를 확인하지 못했다 / the reader venv does not hold an installed ddpm_ko")
    return 1 if failed or not installed_ok else 0


if __name__ == "__main__":
    sys.exit(main())
