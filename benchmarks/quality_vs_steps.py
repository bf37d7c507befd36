"""샘플러·단계 수에 따른 품질: DDIM 25/50/100 과 DDPM 1000 의 특징 FID·KID (바닥값과 함께).

모든 샘플러가 같은 초기 잡음 x_T (같은 시드)에서 시작한다. 각 줄 옆에 같은 표본 수 N 의 진짜 대 진짜
바닥값을 적는다 (``ddpm_ko.evaluation.evaluate``). N 이 작으면 FID 가 크게 나오므로 값은 바닥값과 견주어 읽는다.

    .venv/bin/python benchmarks/quality_vs_steps.py --num 500                 # 이슈의 설정 (CPU 에서 오래 걸린다)
    .venv/bin/python benchmarks/quality_vs_steps.py --num 64 --samplers ddim:25,ddim:50,ddim:100   # 짧게

결과: ``benchmarks/results/quality_vs_steps.json``.
"""

from __future__ import annotations

import argparse
import time

from _common import (
    checkpoint_fields,
    fmt_table,
    load_benchmark_model,
    machine_info,
    merge_with_previous,
    same_checkpoint,
    save_result,
)


def main() -> None:
    import torch

    from ddpm_ko.evaluation import evaluate
    from ddpm_ko.pretrained import load_classifier
    from ddpm_ko.sampling import sample_with_oom_retry
    from ddpm_ko.utils import pick_device

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint", help="확산 모델 체크포인트 (기본 'pretrained': 책의 사전 학습 모델, 없으면 runs/pretrained)"
    )
    p.add_argument("--num", type=int, default=500, help="샘플러마다 만들 이미지 수 N")
    p.add_argument("--samplers", default="ddim:25,ddim:50,ddim:100,ddpm:1000")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--out", default="quality_vs_steps")
    p.add_argument(
        "--append",
        action="store_true",
        help="같은 N·시드·체크포인트의 기존 결과에 덧붙인다 (긴 DDPM 1000단계를 따로 잴 때)",
    )
    a = p.parse_args()

    device = pick_device()
    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt, model, diffusion, meta, provisional = load_benchmark_model(a.checkpoint, device)
    measured = checkpoint_fields(ckpt, meta, provisional)  # 어느 모델인가 (SHA-256 은 한 번만 계산한다)
    clf = load_classifier()
    c = model.config
    machine = machine_info()
    rows = []
    for item in a.samplers.split(","):
        sampler, steps = item.split(":")
        steps_i = int(steps)
        g = torch.Generator().manual_seed(a.seed)
        t0 = time.perf_counter()
        with torch.inference_mode():
            images, _ = sample_with_oom_retry(
                diffusion,
                model,
                a.num,
                (c.channels, c.image_size, c.image_size),
                a.batch,
                g,
                device,
                sampler=sampler,
                steps=None if sampler == "ddpm" else steps_i,
            )
        dt = time.perf_counter() - t0
        r = evaluate(images.cpu(), seed=a.seed, classifier=clf, kid_subsets=50)
        row = {
            "sampler": f"{sampler.upper()}-{steps_i}",
            "num": a.num,
            "fid": r["fid"],
            "fid_floor": r["floor"]["fid"],
            "fid_over_floor": r["fid_over_floor"],
            "kid_mean": r["kid"]["mean"],
            "kid_std": r["kid"]["std"],
            "kid_floor_mean": r["floor"]["kid"]["mean"],
            "coverage": r["histogram"]["coverage"],
            "normalized_entropy": r["histogram"]["normalized_entropy"],
            "mean_confidence": r["histogram"]["mean_confidence"],
            "class_counts": r["histogram"]["counts"],
            "sample_seconds": round(dt, 1),
            "s_per_image": round(dt / a.num, 4),
        }
        rows.append(row)
        print(
            f"[bench] {row['sampler']}: FID {row['fid']:.3f} (floor {row['fid_floor']:.3f}), "
            f"KID {1e3 * row['kid_mean']:.3f}e-3, {dt:.0f}s",
            flush=True,
        )
    if a.append:

        def same_run(old: dict) -> None:
            same = (
                same_checkpoint(old, measured)
                and old.get("seed") == a.seed
                and old["results"]
                and old["results"][0]["num"] == a.num
            )
            if not same:
                raise SystemExit(
                    "기존 결과와 체크포인트·N·시드가 달라 덧붙일 수 없다 / "
                    "cannot append: different checkpoint, N or seed"
                )

        rows = merge_with_previous(a.out, rows, "sampler", machine, same_run)
    ref = next((r for r in rows if r["sampler"].startswith("DDPM")), None)
    if ref:
        for r in rows:
            r["fid_vs_ddpm"] = round(r["fid"] / ref["fid"], 3) if ref["fid"] > 0 else None
            r["speedup_vs_ddpm"] = round(ref["sample_seconds"] / r["sample_seconds"], 1)
    print(fmt_table(rows, ["sampler", "fid", "fid_floor", "fid_vs_ddpm", "speedup_vs_ddpm", "coverage", "s_per_image"]))
    machine["load_average_after"] = machine_info()["load_average_1_5_15min"]
    save_result(
        a.out,
        {
            "what": "feature-FID/KID of N samples per sampler vs the Fashion-MNIST test split, with the real-vs-real floor at the same N",
            **measured,
            "classifier_test_accuracy": clf.meta.get("test_accuracy"),
            "seed": a.seed,
            "results": rows,
        },
        machine,
    )


if __name__ == "__main__":
    main()
