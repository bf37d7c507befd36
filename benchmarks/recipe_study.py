"""학습 처방 연구: 같은 시간 예산(기본 20분)에서 어느 처방이 더 좋은 샘플을 만드는가 (10장, issue 15).

변형마다 ``ddpm-ko train --time-budget MINUTES`` 를 **새 프로세스**로 하나씩 차례로 돌리고(다른 무거운 작업 없이),
끝난 EMA 가중치로 N 장(기본 1000)을 ``--eval-sampler`` 로 같은 시드에서 뽑아 (기본 ``pinned``: 첫 연구의
DPM-Solver++(2M) 10 스텝, λ 간격; ``default`` 면 책의 지금 기본 샘플러)
``ddpm_ko.evaluation.evaluate`` 로 특징 FID 와 같은 N 의 진짜 대 진짜 바닥값을 잰다. 시간 예산이 학습률 스케줄과
EMA 를 정하므로(``ddpm_ko.time_budget``) 변형마다 학습 길이를 따로 맞출 필요가 없다: 처리량을 바꾸는 변형
(배치, 너비, 어텐션)도 같은 벽시계 시간으로 공정하게 견준다.

    .venv/bin/python benchmarks/recipe_study.py --variants flip,no-flip,flip-min-snr-5,no-flip-min-snr-5   # 변형마다 ~22분
    .venv/bin/python benchmarks/recipe_study.py --variants default --minutes 1 --num 64 --out recipe_try  # 동작 확인
    .venv/bin/python benchmarks/recipe_study.py --variants default,bf16 --eval-sampler default --bf16-check --out recipe_study_round3

변형 하나가 끝날 때마다 ``benchmarks/results/<out>.json`` 을 저장하고, 다시 실행하면 이미 잰 변형은 건너뛴다
(시간 예산·N·시드·평가 시드가 같을 때). 학습 디렉터리(``--runs``)에 끝난 학습이 있으면 평가만 한다.

평가 시드(``--eval-seeds``, 기본은 학습 시드 하나)는 x_T 와 샘플링 잡음, 바닥값과 견줄 진짜 이미지 N 장을 정한다.
N = 1000 의 특징 FID 는 평가 시드만 바꿔도 0.3 안팎 흔들리므로, 학습 시드마다 같은 평가 시드 몇 개로 재어 평균하면
학습의 차이와 평가의 흔들림을 나눠 볼 수 있다 (10장):

    .venv/bin/python benchmarks/recipe_study.py --variants attention-none --seed 1 --eval-seeds 0,1,2,3 \
        --eval-sampler sde-dpm-solver++:20:karras --out recipe_study_seed_grid
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, fmt_table, machine_info, parse_point, portable_command, save_atomic

#: 변형 이름 → ``ddpm-ko train`` 에 더하는 인자. 연구한 손잡이(좌우 반전, Min-SNR-γ)는 기본값이 바뀌어도 뜻이 같도록
#: 값을 늘 적는다. 나머지는 지금의 기본 처방에서 하나씩만 바꾼다. 결과의 각 행에는 실제로 학습한 설정(``recipe``)이 함께 남는다.
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "flip": ["--flip", "--min-snr-gamma", "0"],
    "no-flip": ["--no-flip", "--min-snr-gamma", "0"],
    "flip-min-snr-5": ["--flip", "--min-snr-gamma", "5"],
    "no-flip-min-snr-5": ["--no-flip", "--min-snr-gamma", "5"],
    "v-pred": ["--prediction", "v"],
    # 노이즈 스케줄: 코사인은 거의 순수한 잡음인 타임스텝을 줄이고 그만큼을 가운데·낮은 잡음에 준다 (2장, 9장)
    "cosine": ["--schedule", "cosine"],
    "cosine-v": ["--schedule", "cosine", "--prediction", "v"],
    "lr-2e-3": ["--lr", "2e-3"],
    "batch-32": ["--batch-size", "32", "--lr", "7e-4"],
    "batch-128": ["--batch-size", "128", "--lr", "1.4e-3"],
    "warmup-50": ["--warmup-steps", "50"],
    "ema-window-0.2": ["--ema-window", "0.2"],
    "ema-window-0.05": ["--ema-window", "0.05"],
    "attention-none": ["--attention", "none"],
    "dim-24": ["--dim", "24"],
    "dim-40": ["--dim", "40"],
    # 네 번째 연구: 스테이지 어텐션을 뺀 망(세 번째 연구에서 이김)에 손잡이를 하나 더 얹는다
    "attention-none-ema-window-0.05": ["--attention", "none", "--ema-window", "0.05"],
    "attention-none-dim-24": ["--attention", "none", "--dim", "24"],
    "attention-none-batch-32": ["--attention", "none", "--batch-size", "32", "--lr", "7e-4"],
    # 학습 타임스텝의 분포: 절반을 EDM 의 로그 정규 분포에서 (노이즈가 작은 t 를 더 자주; ddpm_ko.timestep_sampling)
    "attention-none-t-lognormal": ["--attention", "none", "--timestep-sampling", "lognormal"],
    # 예산 끝의 학습률: 기본은 lr 의 10 % (time_budget.LR_FLOOR), 0 까지 내리면?
    "attention-none-lr-floor-0": ["--attention", "none", "--lr-floor", "0"],
    # CPU 의 bf16 자동 혼합 정밀도 (bf16 커널이 있는 CPU 에서만: ddpm_ko.precision.cpu_bf16_supported)
    "bf16": ["--precision", "bf16"],
    "bf16-lr-2e-3": ["--precision", "bf16", "--lr", "2e-3"],
    "bf16-batch-32": ["--precision", "bf16", "--batch-size", "32", "--lr", "7e-4"],
}


#: 결과에 적는 학습 설정: 기본값이 바뀌어도 각 행이 무엇을 학습했는지 스스로 말하게 한다
RECIPE_KEYS = (
    "batch_size", "lr", "warmup_steps", "prediction_type", "loss_type", "min_snr_gamma", "flip", "schedule", "precision",
    "timestep_sampling",
)  # fmt: skip

# 연구의 평가 샘플러. 책의 기본 샘플러(ddpm_ko.sampling / solvers 의 상수)는 측정에 따라 바뀔 수 있지만, 한 결과 파일의 행들은
# 모두 같은 샘플러로 재야 견줄 수 있다. 그래서 파일마다 샘플러를 적어 두고(``eval_sampler``), 다른 샘플러로 이어 재기를 거절한다.
# 첫 두 차례(recipe_study.json, _round2)는 그때의 기본값(DPM-Solver++(2M) 10 스텝, λ 간격)으로 쟀다.
EVAL_SAMPLER = {"sampler": "dpm-solver++", "steps": 10, "spacing": "logsnr"}


def parse_eval_sampler(text: str) -> dict[str, Any]:
    """``pinned`` (첫 연구의 샘플러), ``default`` (책의 지금 기본 샘플러) 또는 ``SAMPLER:STEPS[:SPACING]`` (``parse_point``)."""
    from ddpm_ko.sampling import DEFAULT_SAMPLER
    from ddpm_ko.solvers import DEFAULT_SPACING, DEFAULT_STEPS

    if text == "pinned":
        return dict(EVAL_SAMPLER)
    if text == "default":
        return {"sampler": DEFAULT_SAMPLER, "steps": DEFAULT_STEPS, "spacing": DEFAULT_SPACING}
    try:
        return parse_point(text)
    except SystemExit as err:  # argparse 가 사용법과 함께 알리도록
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(
            f"평가 시드는 서로 다른 0 이상의 정수들 / eval seeds: distinct integers >= 0, got {text!r}"
        )
    return seeds


def parse_variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"알 수 없는 변형 / unknown variants {unknown}: choose from {list(VARIANTS)}")
    return names


def train_variant(name: str, run_dir: Path, a: argparse.Namespace) -> dict[str, Any]:
    """변형 하나를 시간 예산만큼 학습한다 (이미 끝난 학습이 있으면 그대로 쓴다). 체크포인트 메타데이터를 돌려준다."""
    from ddpm_ko.checkpoint import read_checkpoint

    ckpt = run_dir / "checkpoint.safetensors"
    if ckpt.is_file():
        _, meta = read_checkpoint(ckpt, prefixes=())
        if (meta.get("end") or {}).get("reason") == "time_budget":
            print(f"[study] {name}: 끝난 학습을 평가만 한다 / evaluating the finished run in {run_dir}", flush=True)
            return meta
    cmd = [
        sys.executable, "-m", "ddpm_ko", "train",
        "--time-budget", str(a.minutes),
        "--threads", str(a.threads),
        "--seed", str(a.seed),
        "--out-dir", str(run_dir),
        "--checkpoint-every", "100000",
        "--no-progress",
        *VARIANTS[name],
    ]  # fmt: skip
    if ckpt.is_file():  # 중간에 멈춘 학습: 남은 시간만 잇는다
        cmd += ["--resume", str(ckpt)]
    print(f"[study] {name}: {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    _, meta = read_checkpoint(ckpt, prefixes=())
    return meta


def cpu_bf16_check(threads: int, batch: int = 64, steps: int = 6) -> dict[str, Any]:
    """CPU 에서 bf16 자동 혼합 정밀도가 학습을 빠르게 하는가: fp32 와 번갈아 학습 스텝을 잰다 (한 프로세스, 같은 부하).

    bf16 행렬 곱 명령(AVX512-BF16, AMX)이 없는 CPU 에서 oneDNN 은 bf16 을 fp32 로 바꿔 가며 계산하므로 느려진다.
    """
    import torch

    from ddpm_ko.diffusion import GaussianDiffusion
    from ddpm_ko.unet import Unet, UnetConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = Unet(UnetConfig()).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    diff = GaussianDiffusion.from_schedule("linear", 1000)
    x0 = (torch.rand(batch, 1, 28, 28) * 2 - 1).contiguous(memory_format=torch.channels_last)

    def step(bf16: bool) -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = diff.training_loss(net, x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    step(False), step(True)  # 데우기
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(steps):
        for bf16 in (False, True):
            times[bf16].append(step(bf16))
    ips = {k: batch * len(v) / sum(v) for k, v in times.items()}
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": threads,
        "batch": batch,
        "fp32_images_per_s": round(ips[False], 1),
        "bf16_autocast_images_per_s": round(ips[True], 1),
        "bf16_over_fp32": round(ips[True] / ips[False], 3),
    }


def main() -> None:
    import torch

    from ddpm_ko.checkpoint import load_model_from_checkpoint
    from ddpm_ko.pretrained import load_classifier

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", type=parse_variants, default=["default"], help=f"쉼표로 나눈 변형: {list(VARIANTS)}")
    p.add_argument("--minutes", type=float, default=20.0, help="변형마다의 학습 시간 예산 (분)")
    p.add_argument("--num", type=int, default=1000, help="평가할 샘플 수 N (기본 1000)")
    p.add_argument("--seed", type=int, default=0, help="학습의 시드 (--eval-seeds 가 없으면 평가의 시드도)")
    p.add_argument(
        "--eval-seeds",
        type=parse_seeds,
        help="쉼표로 나눈 평가 시드 (x_T·샘플링 잡음·진짜 이미지 N 장). 기본은 --seed 하나 (evaluation seeds)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", default=str(ROOT / "runs" / "recipe_study"), help="학습 디렉터리를 둘 곳")
    p.add_argument("--out", default="recipe_study")
    p.add_argument(
        "--eval-sampler",
        type=parse_eval_sampler,
        default=dict(EVAL_SAMPLER),
        help="평가 샘플러: pinned (기본, DPM-Solver++(2M) 10 스텝 λ 간격), default (책의 지금 기본 샘플러) 또는 "
        "SAMPLER:STEPS[:SPACING]",
    )
    p.add_argument(
        "--bf16-check", action="store_true", help="CPU 의 bf16 autocast 학습 속도를 fp32 와 번갈아 잰다 (~1분)"
    )
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    path = RESULTS / f"{a.out}.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    rows: list[dict[str, Any]] = old.get("results", [])
    bf16 = old.get("cpu_bf16")
    eval_sampler = old.get("eval_sampler", dict(EVAL_SAMPLER) if rows else a.eval_sampler)
    if eval_sampler != a.eval_sampler:
        sys.exit(
            f"{path.name} 의 행들은 {eval_sampler} 로 쟀다: 같은 샘플러를 주거나 --out 으로 새 파일을 써라 / "
            f"rows in {path.name} were scored with {eval_sampler}; pass the same --eval-sampler or a new --out"
        )
    if a.bf16_check:
        bf16 = cpu_bf16_check(a.threads)
        print(f"[study] bf16 autocast on CPU: {bf16}", flush=True)
    clf = load_classifier()
    machine = machine_info()  # 학습을 시작하기 전에: 부하 평균이 이 연구 자신의 학습을 세지 않게
    machine["context"] = "variants trained and evaluated one at a time on an otherwise idle machine"

    def key(r: dict[str, Any]) -> tuple:  # 평가 시드가 없는 (예전) 행은 학습 시드로 평가했다
        return (r["variant"], r["minutes"], r["num"], r["seed"], r.get("eval_seed", r["seed"]))

    eval_seeds = a.eval_seeds or [a.seed]
    for name in a.variants:
        todo = [e for e in eval_seeds if not any(key(r) == (name, a.minutes, a.num, a.seed, e) for r in rows)]
        if not todo:
            print(f"[study] {name}: 이미 잼 / already measured, skipping", flush=True)
            continue
        run_dir = Path(a.runs) / f"{name}-{a.minutes:g}min-s{a.seed}"
        meta = train_variant(name, run_dir, a)
        model, diffusion, _ = load_model_from_checkpoint(run_dir / "checkpoint.safetensors", use_ema=True)
        for eval_seed in todo:
            rows.append(score_variant(name, meta, model, diffusion, eval_sampler, eval_seed, clf, a))
            save_results(a, old, eval_sampler, machine, bf16, rows)
    cols = ["variant", "seed", "eval_seed", "steps", "images_per_s", "fid", "fid_floor", "fid_over_floor"]
    print(fmt_table([{c: r.get(c, r["seed"] if c == "eval_seed" else None) for c in cols} for r in rows], cols))


def score_variant(
    name: str, meta: dict[str, Any], model: Any, diffusion: Any, eval_sampler: dict[str, Any], eval_seed: int,
    clf: Any, a: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    """학습을 마친 변형 하나를 평가 시드 ``eval_seed`` 로 잰 결과 행 (x_T·샘플링 잡음·진짜 이미지 N 장이 그 시드)."""
    import torch

    from ddpm_ko.evaluation import evaluate
    from ddpm_ko.sampling import sample_with_oom_retry

    shape = (model.config.channels, model.config.image_size, model.config.image_size)
    g = torch.Generator().manual_seed(eval_seed)
    t0 = time.perf_counter()
    x, _ = sample_with_oom_retry(
        diffusion, model, a.num, shape, 250, g, torch.device("cpu"),
        **eval_sampler,
    )  # fmt: skip
    sample_seconds = time.perf_counter() - t0
    r = evaluate(x, seed=eval_seed, classifier=clf, kid_subsets=50, kid_subset_size=min(1000, a.num))
    budget = meta.get("time_budget") or {}
    train_cfg = meta.get("train") or {}
    history = meta.get("loss_history") or []
    row = {
        "variant": name,
        "flags": VARIANTS[name],
        "minutes": a.minutes,
        "num": a.num,
        "seed": a.seed,
        "eval_seed": eval_seed,
        "steps": meta.get("step"),
        "train_seconds": budget.get("wall_time_s"),
        "batch_size": train_cfg.get("batch_size"),
        "images_per_s": None,
        "final_loss": history[-1][-1] if history else None,
        "fid": r["fid"],
        "fid_floor": r["floor"]["fid"],
        "fid_floor_std": r["floor"]["fid_std"],
        "fid_over_floor": r["fid_over_floor"],
        "kid": r["kid"]["mean"],
        "histogram": r["histogram"]["fractions"],
        "sample_seconds": round(sample_seconds, 1),
        "parameters": model.num_parameters(),
        "recipe": {k: train_cfg.get(k) for k in RECIPE_KEYS},
        "precision": meta.get("precision"),  # 실제로 쓴 정밀도 (recipe 의 precision 은 요청한 값)
        "unet": {k: (meta.get("unet") or {}).get(k) for k in ("dim", "dim_mults", "stage_attention")},
        "time_budget": budget,
    }
    if row["steps"] and row["train_seconds"] and row["batch_size"]:
        row["images_per_s"] = round(row["steps"] * row["batch_size"] / row["train_seconds"], 1)
    print(
        f"[study] {name} (seed {a.seed}, eval seed {eval_seed}): steps {row['steps']} ({row['images_per_s']} img/s) "
        f"FID {row['fid']:.2f} floor {row['fid_floor']:.2f} -> {row['fid_over_floor']:.2f}x",
        flush=True,
    )
    return row


def save_results(
    a: argparse.Namespace, old: dict[str, Any], eval_sampler: dict[str, Any], machine: dict[str, Any], bf16: Any,
    rows: list[dict[str, Any]],
) -> None:  # fmt: skip
    save_atomic(
        a.out,
        {
            **old,  # 손으로 더한 항목(버린 실행과 그 까닭, 채택한 기본값)은 그대로 둔다
            "benchmark": a.out,
            "what": "train each recipe variant for the same wall-clock budget with ddpm-ko train --time-budget, "
            "one at a time on an otherwise idle machine, then feature-FID of N EMA samples (sampler in "
            "eval_sampler; x_T, sampling noise and the N real images from eval_seed, which is the training "
            "seed where a row has none) vs the test split, with the real-vs-real floor at the same N",
            "eval_sampler": eval_sampler,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": portable_command([Path(sys.executable).name, *sys.argv]),
            "machine": machine,
            "cpu_bf16": bf16,
            "results": rows,
        },
    )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
