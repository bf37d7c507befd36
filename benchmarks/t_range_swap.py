"""진단: 짧게 학습한 모델의 샘플 품질을 어느 타임스텝 구간이 가로막는가 (10장, issue 15).

같은 x_T 와 같은 샘플링 잡음으로 샘플을 만들되, 샘플러가 부르는 타임스텝 가운데 한 구간에서만 짧게 학습한
모델(``--weak``, 예: 20분 시간 예산의 체크포인트) 대신 오래 학습한 모델(``--strong``, 기본은 책의 사전 학습 모델)의
ε̂ 를 쓴다. 그 구간의 ε̂ 만 좋아졌을 때 FID 가 얼마나 내려가는지가 그 구간이 차이에 보태는 몫이다.

    .venv/bin/python benchmarks/t_range_swap.py --weak /work/study_s13/attention-none-20min-s0/checkpoint.safetensors

두 모델은 같은 β 스케줄·T·예측 대상(ε)이어야 한다 (신경망 구조는 달라도 된다). 결과: ``benchmarks/results/<out>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from _common import machine_info, portable_command, portable_path, save_atomic, shipped_or_provisional_checkpoint

#: 이름 → (lo, hi): 샘플러의 타임스텝 t 가 t < lo 이거나 t ≥ hi 면 강한 모델의 ε̂ 를 쓴다
SWAPS: dict[str, tuple[int, int]] = {
    "none": (0, 10**9),  # 약한 모델만
    "below-100": (100, 10**9),
    "below-300": (300, 10**9),
    "from-300": (0, 300),
    "from-600": (0, 600),
    "all": (10**9, 10**9),  # 강한 모델만
}


class SwapModel(nn.Module):
    """타임스텝 구간에 따라 두 신경망 가운데 하나를 부른다 (한 번의 호출에서 배치의 t 는 모두 같다: 샘플러가 그렇게 부른다)."""

    def __init__(self, weak: nn.Module, strong: nn.Module, lo: int, hi: int) -> None:
        super().__init__()
        self.weak, self.strong, self.lo, self.hi = weak, strong, lo, hi
        self.config = weak.config

    def uses_strong(self, t: int) -> bool:
        return t < self.lo or t >= self.hi

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        first = int(t.reshape(-1)[0])
        if not bool((t == first).all()):
            raise ValueError("SwapModel 은 배치의 t 가 모두 같을 때만 쓴다 / SwapModel needs one timestep per call")
        return (self.strong if self.uses_strong(first) else self.weak)(x, t)


def main() -> None:
    from ddpm_ko.checkpoint import load_model_from_checkpoint
    from ddpm_ko.evaluation import evaluate
    from ddpm_ko.pretrained import load_classifier
    from ddpm_ko.sampling import sample_with_oom_retry

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weak", required=True, help="짧게 학습한 체크포인트")
    p.add_argument("--strong", default="pretrained", help="오래 학습한 체크포인트 (기본: 책의 사전 학습 모델)")
    p.add_argument("--swaps", default=",".join(SWAPS), help=f"쉼표로 나눈 구간 이름: {list(SWAPS)}")
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--eval-seed", type=int, default=0, help="x_T·샘플링 잡음·진짜 이미지 N 장의 시드")
    p.add_argument("--sampler", default="sde-dpm-solver++")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--spacing", default="karras")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="t_range_swap")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    names = [s for s in a.swaps.split(",") if s]
    unknown = [s for s in names if s not in SWAPS]
    if unknown:
        raise SystemExit(f"알 수 없는 구간 / unknown swaps {unknown}: choose from {list(SWAPS)}")

    strong_path, _ = shipped_or_provisional_checkpoint(a.strong)  # "pretrained" → 패키지에 든 책의 모델
    weak, diffusion, weak_meta = load_model_from_checkpoint(a.weak, use_ema=True)
    strong, _, strong_meta = load_model_from_checkpoint(strong_path, use_ema=True)
    for key in ("schedule", "timesteps", "prediction_type"):
        if weak_meta["diffusion"][key] != strong_meta["diffusion"][key]:
            raise SystemExit(f"두 모델의 {key} 가 다르다 / the models differ in {key}")
    sampler = {"sampler": a.sampler, "steps": a.steps, "spacing": a.spacing}
    timesteps = diffusion.solver_timesteps(a.steps, a.spacing) if "dpm" in a.sampler else None
    clf = load_classifier()
    machine = machine_info()
    rows: list[dict[str, Any]] = []
    for name in names:
        lo, hi = SWAPS[name]
        model = SwapModel(weak, strong, lo, hi)
        g = torch.Generator().manual_seed(a.eval_seed)
        t0 = time.perf_counter()
        x, _ = sample_with_oom_retry(diffusion, model, a.num, (1, 28, 28), 250, g, torch.device("cpu"), **sampler)
        r = evaluate(x, seed=a.eval_seed, classifier=clf, kid_subsets=50, kid_subset_size=min(1000, a.num))
        row = {
            "swap": name,
            "strong_below": lo,
            "strong_from": hi,
            "strong_calls": None if timesteps is None else sum(model.uses_strong(t) for t in timesteps),
            "fid": round(r["fid"], 4),
            "fid_floor": round(r["floor"]["fid"], 4),
            "fid_over_floor": round(r["fid_over_floor"], 3),
            "sample_seconds": round(time.perf_counter() - t0, 1),
        }
        rows.append(row)
        print(f"[swap] {name}: strong for t < {lo} or t >= {hi} -> FID {row['fid']:.2f} ({row['fid_over_floor']:.2f}x)")
    save_atomic(
        a.out,
        {
            "benchmark": a.out,
            "what": "samples from one x_T and noise stream where the long-trained model's eps replaces the "
            "short-trained model's only in one timestep range; feature-FID vs the test split at N",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": portable_command([Path(sys.executable).name, *sys.argv]),
            "weak": portable_path(a.weak),
            "weak_steps": weak_meta.get("step"),
            "strong": portable_path(strong_path),
            "sampler": sampler,
            "sampler_timesteps": timesteps,
            "num": a.num,
            "eval_seed": a.eval_seed,
            "machine": machine,
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
