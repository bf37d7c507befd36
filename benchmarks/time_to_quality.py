"""정해진 벽시계 시간만큼 학습한 뒤 품질(특징 FID)을 잰다: "노트북으로 20분, 60분 학습하면 어디까지 가나".

학습 단계는 ``ddpm_ko.train.Trainer`` 그대로이고, 시간이 다 되면 EMA 가중치로 DDIM 표본을 만들어
``ddpm_ko.metrics.evaluate`` 로 잰다 (같은 N 의 바닥값과 함께). 평가 시간은 학습 시간에 넣지 않는다.

    .venv/bin/python benchmarks/time_to_quality.py --minutes 20 --preset default     # 이슈의 비교 (오래 걸린다)
    .venv/bin/python benchmarks/time_to_quality.py --minutes 60 --preset annotated
    .venv/bin/python benchmarks/time_to_quality.py --minutes 2 --num 64               # 동작 확인용

결과: ``benchmarks/results/time_to_quality_<preset>_<minutes>min.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, save_result  # noqa: E402


def main() -> None:
    import torch

    from ddpm_ko.metrics import evaluate, load_classifier
    from ddpm_ko.sampling import sample_with_oom_retry
    from ddpm_ko.train import TrainConfig, Trainer
    from ddpm_ko.unet import UnetConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, required=True, help="학습에 쓸 벽시계 시간 (분)")
    p.add_argument("--preset", choices=["default", "annotated"], default="default")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=500, help="평가할 표본 수 N")
    p.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm"])
    p.add_argument("--steps", type=int, default=50, help="DDIM 단계 수")
    p.add_argument("--out", help="결과 이름 (기본: time_to_quality_<preset>_<minutes>min)")
    a = p.parse_args()

    unet_cfg = UnetConfig.annotated() if a.preset == "annotated" else UnetConfig()
    tmp = tempfile.mkdtemp(prefix="ddpm_ko_ttq_")
    cfg = TrainConfig(out_dir=tmp, max_steps=10**9, batch_size=a.batch, lr=a.lr, warmup_steps=a.warmup,
                      ema_decay=a.ema, seed=a.seed, num_threads=a.threads, progress=False, device="cpu")
    machine = machine_info()
    trainer = Trainer(unet_cfg, cfg, log=lambda m: None)
    budget = 60.0 * a.minutes
    losses: list[tuple[int, float, float]] = []
    window: list[float] = []
    start = time.perf_counter()
    while True:
        x0 = trainer.batches.batch(trainer.epoch, trainer.batch_index)
        window.append(trainer.train_step(x0))
        elapsed = time.perf_counter() - start
        if trainer.step % 50 == 0:
            losses.append((trainer.step, round(elapsed, 1), round(sum(window) / len(window), 5)))
            print(f"[bench] step {trainer.step} loss {losses[-1][2]:.4f} ({elapsed:.0f}s)", flush=True)
            window.clear()
        if elapsed >= budget:
            break
    train_s = time.perf_counter() - start
    steps = trainer.step
    print(f"[bench] {steps} steps in {train_s:.0f}s ({steps * a.batch / train_s:.1f} img/s); sampling {a.num} …", flush=True)

    model = trainer.ema.model.eval()
    c = unet_cfg
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.perf_counter()
    with torch.inference_mode():
        images, _ = sample_with_oom_retry(trainer.diffusion, model, a.num, (c.channels, c.image_size, c.image_size), 250,
                                          g, trainer.device, sampler=a.sampler,
                                          steps=a.steps if a.sampler == "ddim" else None)
    sample_s = time.perf_counter() - t0
    r = evaluate(images.cpu(), seed=a.seed, classifier=load_classifier(), kid_subsets=50)
    print(f"[bench] FID {r['fid']:.3f} (floor {r['floor']['fid']:.3f}), KID {1e3 * r['kid']['mean']:.3f}e-3, "
          f"coverage {r['histogram']['coverage']}", flush=True)
    machine["load_average_after"] = machine_info()["load_average_1_5_15min"]
    save_result(a.out or f"time_to_quality_{a.preset}_{a.minutes:g}min", {
        "what": "train for a wall-clock budget, then feature-FID of EMA samples (evaluation time not counted)",
        "preset": a.preset, "unet": unet_cfg.to_dict(), "parameters": trainer.model.num_parameters(),
        "train": {"minutes": a.minutes, "batch": a.batch, "lr": a.lr, "warmup": a.warmup, "ema": a.ema,
                  "threads": torch.get_num_threads(), "steps": steps, "train_seconds": round(train_s, 1),
                  "images_per_s": round(steps * a.batch / train_s, 1), "loss_curve": losses},
        "eval": {"num": a.num, "sampler": a.sampler, "steps": a.steps if a.sampler == "ddim" else 1000,
                 "sample_seconds": round(sample_s, 1), "fid": r["fid"], "fid_floor": r["floor"]["fid"],
                 "fid_over_floor": r["fid_over_floor"], "kid": r["kid"], "kid_floor": r["floor"]["kid"],
                 "histogram": r["histogram"]},
    }, machine)


if __name__ == "__main__":
    main()
