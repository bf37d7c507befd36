"""벤치마크가 견주는 다른 구현을 고정한 판으로 ``benchmarks/.peers`` 에 설치한다 (``make bench-peers``).

venv 는 건드리지 않는다. 모두 ``pip install --no-deps --target`` 으로 받으므로 torch 도 그대로다 (CUDA 판 torch 를
끌어오지 않는다). 만들어지는 배치 (``--external`` 의 기본 디렉터리):

    benchmarks/.peers/denoising_diffusion_pytorch/   2.1.1 (lucidrains)      train_throughput, time_to_quality
    benchmarks/.peers/ema_pytorch/                   0.8.3                   time_to_quality --impl lucidrains
    benchmarks/.peers/diffusers/, regex/             0.35.2                  train_throughput (diffusers-UNet2DModel)
    benchmarks/.peers/ddp-0.11.2/denoising_diffusion_pytorch/   0.11.2 (Annotated Diffusion 의 원래 코드)
                                                                             train_throughput, check_annotated_equivalence

    .venv/bin/python benchmarks/install_peers.py            # 또는 make bench-peers
    .venv/bin/python benchmarks/install_peers.py --dir DIR  # 다른 곳에 (그때는 스크립트에 --external DIR)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from _common import PEERS

#: 맨 위 디렉터리에 설치할 패키지 (판을 고정한다: benchmarks/results 의 숫자가 이 판들로 잰 것이다)
TOP = ["denoising-diffusion-pytorch==2.1.1", "ema-pytorch==0.8.3", "diffusers==0.35.2", "regex==2026.12.2"]
#: ddp-0.11.2/ 아래에 따로 설치할 옛 판 (같은 이름의 패키지이므로 디렉터리를 나눈다)
OLD = {"ddp-0.11.2": ["denoising-diffusion-pytorch==0.11.2"]}


def pip_install(target: Path, specs: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--upgrade", "--target", str(target), *specs]
    print("[bench-peers] " + " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=PEERS, help="설치할 디렉터리 (기본 benchmarks/.peers)")
    p.add_argument("--clean", action="store_true", help="설치하기 전에 디렉터리를 지운다")
    a = p.parse_args()
    if a.clean and a.dir.exists():
        shutil.rmtree(a.dir)
    a.dir.mkdir(parents=True, exist_ok=True)
    pip_install(a.dir, TOP)
    for sub, specs in OLD.items():
        pip_install(a.dir / sub, specs)
    print(f"[bench-peers] {a.dir}: " + ", ".join(TOP + [s for specs in OLD.values() for s in specs]))


if __name__ == "__main__":
    main()
