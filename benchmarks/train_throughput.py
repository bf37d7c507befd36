"""학습 처리량(images/s)과 최대 메모리(RSS)를 잰다.

변형 하나하나를 **새 프로세스**에서 잰다. malloc 설정(``tune_cpu``)은 프로세스 전체에 한 번 걸리면 되돌릴 수
없고, 최대 RSS 도 프로세스 단위이기 때문이다. 한 학습 단계는 ``ddpm_ko.train.Trainer`` 와 같다:
실제 Fashion-MNIST 배치 → q_sample → ε 예측 MSE → 역전파 → 그래디언트 클리핑(1.0) → AdamW → EMA 갱신.

    .venv/bin/python benchmarks/train_throughput.py                       # 기본 변형들 (배치 128, 스레드 2)
    .venv/bin/python benchmarks/train_throughput.py --only ours-default,ours-annotated --steps 8
    .venv/bin/python benchmarks/train_throughput.py --external   # 다른 구현도 (make bench-peers 뒤, README 참고)
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/train_throughput.py --omp # 다른 작업과 CPU 를 나눠 쓸 때

결과: ``benchmarks/results/train_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    PEERS,
    ROOT,
    current_rss_mb,
    fmt_table,
    import_lucidrains,
    machine_info,
    merge_with_previous,
    peak_rss_mb,
    save_result,
)

# (이름, 모델, channels_last, tune_cpu, 추가 환경 변수). 추가 환경 변수가 없으면 지휘 프로세스의 환경을 물려받는다.
VARIANTS: list[dict] = [
    {"name": "ours-default", "model": "ours-default", "channels_last": True, "tune": True},
    {"name": "ours-default/no-channels-last", "model": "ours-default", "channels_last": False, "tune": True},
    {"name": "ours-default/no-malloc-tuning", "model": "ours-default", "channels_last": True, "tune": False},
    {"name": "ours-default/plain", "model": "ours-default", "channels_last": False, "tune": False},
    {"name": "ours-annotated", "model": "ours-annotated", "channels_last": True, "tune": True},
    {"name": "ours-annotated/plain", "model": "ours-annotated", "channels_last": False, "tune": False},
    # 그래디언트 누적 (TrainConfig.micro_batch): 배치 128 을 조각으로 나눠 순전파·역전파하고 한 번 갱신한다
    {"name": "ours-default/micro-64", "model": "ours-default", "channels_last": True, "tune": True, "micro": 64},
    {"name": "ours-default/micro-32", "model": "ours-default", "channels_last": True, "tune": True, "micro": 32},
    {"name": "ours-annotated/micro-32", "model": "ours-annotated", "channels_last": True, "tune": True, "micro": 32},
]
# OpenMP 스레드의 대기 방식: 다른 작업과 CPU 를 나눠 쓰면 ACTIVE(기다리며 돈다)가 크게 느려진다.
OMP_VARIANTS: list[dict] = [
    {
        "name": "ours-default/omp-active",
        "model": "ours-default",
        "channels_last": True,
        "tune": True,
        "env": {"OMP_WAIT_POLICY": "ACTIVE"},
    },
    {
        "name": "ours-default/omp-passive",
        "model": "ours-default",
        "channels_last": True,
        "tune": True,
        "env": {"OMP_WAIT_POLICY": "PASSIVE"},
    },
]
EXTERNAL_VARIANTS: list[dict] = [
    # Annotated Diffusion 노트북이 옮겨 온 원래 코드: denoising-diffusion-pytorch 0.11.2 의 ConvNeXt Unet
    {
        "name": "annotated-original-ddp-0.11.2/plain",
        "model": "annotated-original",
        "channels_last": False,
        "tune": False,
    },
    {"name": "annotated-original-ddp-0.11.2", "model": "annotated-original", "channels_last": True, "tune": True},
    {"name": "lucidrains-ddp-2.1.1", "model": "lucidrains", "channels_last": False, "tune": True},
    {"name": "diffusers-UNet2DModel", "model": "diffusers", "channels_last": False, "tune": True},
]


# ------------------------------------------------------------------------------------------ 작업 프로세스
def build_model(kind: str, ext_dir: str | None):
    """(모델, 설명) 을 만든다. 외부 구현은 forward(x, t) → ε 가 되도록 감싼다."""
    import torch
    from torch import nn

    from ddpm_ko.unet import Unet, UnetConfig

    if kind == "ours-default":
        return Unet(
            UnetConfig()
        ), "ddpm_ko UnetConfig() (dim 32, ResNet blocks, mults 1-2-2, linear attn from stage 1, full mid attn)"
    if kind == "ours-annotated":
        return Unet(
            UnetConfig.annotated()
        ), "ddpm_ko UnetConfig.annotated() (dim 28, ConvNeXt, mults 1-2-4, linear attn at every stage)"
    if kind == "lucidrains":
        if not ext_dir:
            raise SystemExit("--external DIR 가 필요하다 / lucidrains needs --external DIR")
        mod = import_lucidrains(ext_dir)
        net = mod.Unet(dim=28, channels=1, dim_mults=(1, 2, 4))
        return (
            net,
            "denoising-diffusion-pytorch 2.1.1 Unet(dim=28, channels=1, dim_mults=(1,2,4)) (Unet code unchanged; training-only imports stubbed)",
        )
    if kind == "annotated-original":
        if not ext_dir:
            raise SystemExit("--external DIR 가 필요하다 / annotated-original needs --external DIR")
        mod = import_lucidrains(Path(ext_dir) / "ddp-0.11.2")
        net = mod.Unet(dim=28, channels=1, dim_mults=(1, 2, 4), use_convnext=True, convnext_mult=2)
        return net, (
            "denoising-diffusion-pytorch 0.11.2 Unet(dim=28, channels=1, dim_mults=(1,2,4), use_convnext=True): "
            "the network The Annotated Diffusion Model copied (code unchanged)"
        )
    if kind == "diffusers":
        if ext_dir:
            sys.path.insert(0, ext_dir)
        import diffusers
        from diffusers import UNet2DModel

        class Wrapped(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = UNet2DModel(
                    sample_size=28,
                    in_channels=1,
                    out_channels=1,
                    layers_per_block=2,
                    block_out_channels=(32, 64, 64),
                    norm_num_groups=8,
                    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                )

            def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return self.net(x, t).sample

        return Wrapped(), (
            f"diffusers {diffusers.__version__} UNet2DModel(block_out_channels=(32,64,64), "
            "layers_per_block=2, attention at 14x14 and 7x7, GroupNorm 8)"
        )
    raise SystemExit(f"unknown model {kind}")


def worker(spec: dict) -> dict:
    import torch

    from ddpm_ko.data import ImageBatches, fashion_mnist_arrays
    from ddpm_ko.diffusion import GaussianDiffusion
    from ddpm_ko.ema import EMA
    from ddpm_ko.utils import tune_cpu

    torch.set_num_threads(spec["threads"])
    if spec["tune"]:
        tune_cpu()
    torch.manual_seed(0)
    model, desc = build_model(spec["model"], spec.get("ext_dir"))
    mf = torch.channels_last if spec["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=mf).train()
    diffusion = GaussianDiffusion.from_schedule("linear", 1000)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    ema = EMA(model, 0.999)
    images, _ = fashion_mnist_arrays("train")
    batches = ImageBatches(images[:20_000], spec["batch"], seed=0)
    gen = torch.Generator().manual_seed(1)
    rss_before = current_rss_mb()
    micro = spec.get("micro") or spec["batch"]
    times = []
    for step in range(spec["warmup"] + spec["steps"]):
        x0 = batches.batch(0, step % batches.batches_per_epoch).contiguous(memory_format=mf)
        t0 = time.perf_counter()
        t = torch.randint(0, 1000, (x0.shape[0],), generator=gen)
        noise = torch.randn(x0.shape, generator=gen).contiguous(memory_format=mf)
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for s0 in range(0, x0.shape[0], micro):  # Trainer.train_step 과 같은 그래디언트 누적
            sl = slice(s0, s0 + micro)
            loss = diffusion.training_loss(model, x0[sl], t[sl], noise[sl]) * (x0[sl].shape[0] / x0.shape[0])
            loss.backward()
            step_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model)
        if step >= spec["warmup"]:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    return {
        "name": spec["name"],
        "model": spec["model"],
        "description": desc,
        "parameters": sum(p.numel() for p in model.parameters()),
        "channels_last": spec["channels_last"],
        "malloc_tuning": spec["tune"],
        "env": spec.get("env", {}),
        "threads": torch.get_num_threads(),
        "batch": spec["batch"],
        "timed_steps": len(times),
        "step_s_median": round(median, 3),
        "step_s_min": round(times[0], 3),
        "images_per_s": round(spec["batch"] / median, 1),
        "images_per_s_best": round(spec["batch"] / times[0], 1),
        "micro_batch": spec.get("micro"),
        "rss_before_training_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "loss_last": round(step_loss, 4),
    }


# ------------------------------------------------------------------------------------------ 지휘 프로세스
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=4, help="잴 단계 수 (중앙값을 쓴다)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="변형 목록을 몇 번 되풀이할지 (순서를 번갈아 뒤집고, 실행별 중앙값의 중앙값을 쓴다)",
    )
    p.add_argument("--only", help="쉼표로 나눈 변형 이름들")
    p.add_argument(
        "--external",
        metavar="DIR",
        nargs="?",
        const=str(PEERS),
        help="외부 구현(lucidrains, diffusers)도 잰다. DIR 을 빼면 benchmarks/.peers (make bench-peers). "
        "주지 않으면 외부 구현은 --only 로 고른 것만 benchmarks/.peers 에서 불러 잰다",
    )
    p.add_argument("--omp", action="store_true", help="OMP_WAIT_POLICY=ACTIVE/PASSIVE 변형도 잰다")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", default="train_throughput", help="결과 이름 (benchmarks/results/NAME.json)")
    p.add_argument(
        "--append",
        action="store_true",
        help="같은 이름의 기존 결과에 덧붙인다 (같은 변형 이름은 새 값으로 바꾼다). 짧게 나눠 잴 때 쓴다",
    )
    a = p.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(worker(json.loads(a.worker))), flush=True)
        return

    variants = VARIANTS + (OMP_VARIANTS if a.omp else []) + (EXTERNAL_VARIANTS if a.external else [])
    if a.only:
        wanted = set(a.only.split(","))
        variants = [v for v in VARIANTS + OMP_VARIANTS + EXTERNAL_VARIANTS if v["name"] in wanted]
    machine = machine_info()
    rows = []
    runs: dict[str, list[dict]] = {v["name"]: [] for v in variants}
    errors: dict[str, str] = {}
    for rep in range(a.repeat):
        # 부하가 출렁여도 한쪽에만 몰리지 않도록 되풀이할 때마다 순서를 뒤집는다 (A B C, C B A, …)
        for v in variants if rep % 2 == 0 else variants[::-1]:
            spec = {
                **v,
                "batch": a.batch,
                "threads": a.threads,
                "steps": a.steps,
                "warmup": a.warmup,
                "ext_dir": a.external or str(PEERS),
            }
            env = {**os.environ, **v.get("env", {})}
            env.setdefault("OMP_NUM_THREADS", str(a.threads))
            print(f"[bench] {v['name']} (run {rep + 1}/{a.repeat}) …", flush=True)
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", json.dumps(spec)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            line = next((s for s in proc.stdout.splitlines() if s.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                errors[v["name"]] = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"[bench]   실패 / failed: {errors[v['name']]}")
                continue
            r = json.loads(line[len("RESULT ") :])
            r["wall_s"] = round(time.perf_counter() - start, 1)
            print(
                f"[bench]   {r['images_per_s']} img/s (best {r['images_per_s_best']}), "
                f"peak RSS {r['peak_rss_mb']} MB, {r['parameters']:,} params",
                flush=True,
            )
            runs[v["name"]].append(r)
    for v in variants:
        got = runs[v["name"]]
        if not got:
            rows.append({"name": v["name"], "error": errors.get(v["name"], "?")})
            continue
        ips = sorted(r["images_per_s"] for r in got)
        row = dict(got[0])
        row.update(
            {
                "runs": len(got),
                "images_per_s": round(statistics.median(ips), 1),
                "images_per_s_runs": ips,
                "images_per_s_best": max(r["images_per_s_best"] for r in got),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in got),
            }
        )
        rows.append(row)
    machine["load_average_after"] = machine_info()["load_average_1_5_15min"]
    for r in rows:
        r["load_average_at_end"] = machine["load_average_after"]
    if a.append:
        rows = merge_with_previous(a.out, rows, "name", machine)
    print(
        fmt_table(
            [r for r in rows if "error" not in r],
            ["name", "parameters", "images_per_s", "images_per_s_best", "peak_rss_mb"],
        )
    )
    save_result(
        a.out,
        {
            "what": (
                "training throughput at a fixed batch; one fresh process per variant and run; images_per_s is the "
                "median over runs of the median timed step"
            ),
            "settings": {
                "batch": a.batch,
                "threads": a.threads,
                "steps": a.steps,
                "warmup": a.warmup,
                "repeat": a.repeat,
            },
            "results": rows,
        },
        machine,
    )


if __name__ == "__main__":
    main()
