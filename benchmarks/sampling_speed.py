"""샘플링 속도: DDPM 1000 단계 대 DDIM 10/25/50/100 단계의 이미지 한 장당 시간.

책이 싣는 모델(src/ddpm_ko/weights/fashion_mnist_ema.safetensors)로 작은 배치를 만들며 잰다. 그 파일이 아직 없으면
학습 중인 runs/pretrained/checkpoint.safetensors 를 쓰고 결과에 "provisional": true 를 남긴다
(속도는 가중치 값과 상관없으므로 잠정 체크포인트로 잰 시간도 유효하다).

    .venv/bin/python benchmarks/sampling_speed.py                     # 배치 8, DDPM 1000 + DDIM 10/25/50/100
    .venv/bin/python benchmarks/sampling_speed.py --ddpm-steps 200    # DDPM 은 200 단계만 재고 1000 단계로 환산

결과: ``benchmarks/results/sampling_speed.json``.
"""

from __future__ import annotations

import argparse
import time

from _common import checkpoint_fields, fmt_table, load_benchmark_model, machine_info, save_result


def main() -> None:
    import torch

    from ddpm_ko.utils import pick_device

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint", help="확산 모델 체크포인트 (기본 'pretrained': 책의 사전 학습 모델, 없으면 runs/pretrained)"
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, help="torch 스레드 수 (기본: torch 기본값)")
    p.add_argument("--ddim", default="10,25,50,100", help="DDIM 단계 수들")
    p.add_argument(
        "--ddpm-steps",
        type=int,
        default=1000,
        help="DDPM 을 실제로 잴 단계 수. T 보다 작으면 단계당 시간으로 T 단계를 환산한다",
    )
    p.add_argument("--out", default="sampling_speed")
    a = p.parse_args()

    device = pick_device()  # CPU 면 malloc 설정도 적용된다
    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt, model, diffusion, meta, provisional = load_benchmark_model(a.checkpoint, device)
    c = model.config
    shape = (a.batch, c.channels, c.image_size, c.image_size)
    T = diffusion.num_timesteps
    machine = machine_info()

    def run(sampler: str, steps: int | None) -> float:
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        with torch.inference_mode():
            diffusion.sample(model, shape, sampler=sampler, steps=steps, generator=g, device=device)
        return time.perf_counter() - t0

    run("ddim", 2)  # 예열 (첫 호출의 초기화 비용을 빼려고)
    rows = []
    for s in [int(v) for v in a.ddim.split(",") if v]:
        dt = run("ddim", s)
        rows.append(
            {
                "sampler": f"DDIM-{s}",
                "steps": s,
                "measured_steps": s,
                "seconds": round(dt, 2),
                "s_per_image": round(dt / a.batch, 4),
                "ms_per_step": round(1e3 * dt / s, 1),
            }
        )
        print(f"[bench] DDIM-{s}: {dt:.2f}s for {a.batch} images", flush=True)
    if a.ddpm_steps >= T:
        dt = run("ddpm", None)
        measured = T
    else:  # DDPM 의 앞부분 a.ddpm_steps 단계만 재서 T 단계로 환산한다 (단계마다 비용이 같다)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=g)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for t in range(T - 1, T - 1 - a.ddpm_steps, -1):
                x, _ = diffusion.p_sample(model, x, t, clip_x0=True, generator=g)
        dt = (time.perf_counter() - t0) * T / a.ddpm_steps
        measured = a.ddpm_steps
    rows.append(
        {
            "sampler": f"DDPM-{T}",
            "steps": T,
            "measured_steps": measured,
            "seconds": round(dt, 2),
            "s_per_image": round(dt / a.batch, 4),
            "ms_per_step": round(1e3 * dt / T, 1),
            "extrapolated": measured < T,
        }
    )
    print(f"[bench] DDPM-{T}: {dt:.2f}s for {a.batch} images" + (" (extrapolated)" if measured < T else ""), flush=True)
    ddpm = rows[-1]["seconds"]
    for r in rows:
        r["speedup_vs_ddpm"] = round(ddpm / r["seconds"], 1)
    print(fmt_table(rows, ["sampler", "seconds", "s_per_image", "ms_per_step", "speedup_vs_ddpm"]))
    machine["load_average_after"] = machine_info()["load_average_1_5_15min"]
    save_result(
        a.out,
        {
            "what": "wall-clock time to sample one batch (EMA weights, clip x0, eta=0 for DDIM, posterior variance for DDPM)",
            **checkpoint_fields(ckpt, meta, provisional),
            "parameters": sum(p.numel() for p in model.parameters()),
            "batch": a.batch,
            "device": str(device),
            "results": rows,
        },
        machine,
    )


if __name__ == "__main__":
    main()
