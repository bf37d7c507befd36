"""장(chapter) 노트북마다 실행 시간을 잰다 (기본: 빠른 모드 DDPM_KO_FAST=1, CI 의 nbval 과 같은 설정).

    .venv/bin/python benchmarks/notebook_suite_time.py                 # notebooks/*.ipynb, 빠른 모드
    .venv/bin/python benchmarks/notebook_suite_time.py --reader        # 독자 설정 (책 빌드와 같다; 오래 걸린다)
    .venv/bin/python benchmarks/notebook_suite_time.py --only 03_silu,10_performance

노트북은 임시 디렉터리에 실행 결과를 쓰고, 저장소의 노트북은 건드리지 않는다.
결과: ``benchmarks/results/notebook_suite_time[_reader].json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, fmt_table, machine_info, save_result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reader", action="store_true", help="빠른 모드가 아닌 독자 설정으로 실행")
    p.add_argument("--only", help="쉼표로 나눈 노트북 이름 (확장자 없이)")
    p.add_argument("--timeout", type=int, default=900, help="셀 하나의 제한 시간 (초)")
    p.add_argument("--out")
    a = p.parse_args()

    books = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if a.only:
        wanted = set(a.only.split(","))
        books = [b for b in books if b.stem in wanted]
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    if a.reader:
        env.pop("DDPM_KO_FAST", None)
    else:
        env["DDPM_KO_FAST"] = "1"
    jupyter = Path(sys.executable).with_name("jupyter")
    machine = machine_info()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for nb in books:
            t0 = time.perf_counter()
            proc = subprocess.run(
                [
                    str(jupyter),
                    "nbconvert",
                    "--to",
                    "notebook",
                    "--execute",
                    f"--ExecutePreprocessor.timeout={a.timeout}",
                    "--output-dir",
                    tmp,
                    str(nb),
                ],
                cwd=nb.parent,
                env=env,
                capture_output=True,
                text=True,
            )
            dt = time.perf_counter() - t0
            ok = proc.returncode == 0
            err = "" if ok else (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
            rows.append({"notebook": nb.name, "seconds": round(dt, 1), "ok": ok, **({"error": err} if err else {})})
            print(f"[bench] {nb.name}: {dt:.1f}s {'ok' if ok else 'FAILED: ' + err}", flush=True)
    total = round(sum(r["seconds"] for r in rows), 1)
    print(fmt_table(rows, ["notebook", "seconds", "ok"]))
    print(f"[bench] total {total}s")
    machine["load_average_after"] = machine_info()["load_average_1_5_15min"]
    save_result(
        a.out or ("notebook_suite_time_reader" if a.reader else "notebook_suite_time"),
        {
            "what": "wall-clock time to execute each chapter notebook with jupyter nbconvert (includes kernel start-up)",
            "mode": "reader" if a.reader else "fast (DDPM_KO_FAST=1)",
            "total_seconds": total,
            "results": rows,
        },
        machine,
    )


if __name__ == "__main__":
    main()
