"""신경망 호출 수(NFE)에 따른 품질: DDPM 1000, DDIM 10/25/50/100, DPM-Solver++ 5/8/10/15/20/25 의 특징 FID·KID.

모든 설정이 같은 초기 잡음 x_T (같은 시드)에서 N 장을 만든다. 각 점에 같은 N 의 진짜 대 진짜 바닥값과
샘플링 벽시계 시간을 함께 적는다 (``ddpm_ko.evaluation.evaluate``).

점 하나가 끝날 때마다 ``benchmarks/results/quality_vs_nfe.json`` 에 덧붙여 저장한다 (임시 파일 → 이름 바꾸기).
중간에 멈춰도 다시 실행하면 이미 잰 점은 건너뛰고 이어 간다 (체크포인트·N·시드가 같을 때만; ``--fresh`` 면 새로).
오래 걸리는 DDPM 1000 단계는 기본 순서의 맨 끝에 둔다.

    .venv/bin/python benchmarks/quality_vs_nfe.py --num 1000 --threads 2      # 이슈의 설정 (2코어 CPU 에서 두 시간 가까이)
    .venv/bin/python benchmarks/quality_vs_nfe.py --num 16 --points ddim:10,dpm-solver++:10 --out quality_vs_nfe_try

점의 형식은 ``샘플러:단계`` 이고, DPM-Solver++ 와 그 SDE 판은 ``dpm-solver++:단계:간격``,
``sde-dpm-solver++:단계:간격`` 으로 시각 간격(time, logsnr, karras)을 고를 수 있다 (없으면
``ddpm_ko.solvers.DEFAULT_SPACING``). 확률적 샘플러(DDPM, SDE-DPM-Solver++)도 x_T 는 다른 점과 같고, 스텝마다의 노이즈는
같은 시드의 생성기에서 이어 뽑는다.

    .venv/bin/python benchmarks/quality_vs_nfe.py --num 1000 --threads 2 \
        --points sde-dpm-solver++:10,sde-dpm-solver++:20,sde-dpm-solver++:25,sde-dpm-solver++:50

결과의 ``recommended`` 는 기본값을 정하는 규칙(``summarize``)의 답이다: 신경망 호출 25 번 이하의 설정 가운데 DDPM 1000
단계의 특징 FID 의 1.1배 안에 드는 가장 싼 것 (그런 설정이 없으면 25 번 이하에서 가장 낮은 FID 의 1.1배 안).
같은 점을 다른 시드로 잰 파일 ``{out}_seed*.json`` 이 있으면 그 점은 시드들의 평균 FID 로 견준다. 파일을 더한 뒤에는
``--summarize`` 로 답만 다시 계산한다.
그 값으로 ``ddpm_ko.sampling.DEFAULT_SAMPLER``, ``ddpm_ko.solvers.DEFAULT_STEPS``, ``ddpm_ko.solvers.DEFAULT_SPACING`` 을
고친다.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    RESULTS,
    checkpoint_fields,
    fmt_table,
    load_benchmark_model,
    machine_info,
    parse_point,
    portable_command,
    same_checkpoint,
    save_atomic,
)

DEFAULT_POINTS = (
    "ddim:10,ddim:25,ddim:50,ddim:100,"
    "dpm-solver++:5,dpm-solver++:8,dpm-solver++:10,dpm-solver++:15,dpm-solver++:20,dpm-solver++:25,"
    "ddpm:1000"
)
RULE_FACTOR = 1.1  # 기본값 규칙: 기준 FID 의 이 배수 안
# 기본 샘플러가 쓸 수 있는 신경망 호출 수의 상한. 기본값은 명령줄, 장들, 브라우저 쪽이 함께 쓰므로 기다릴 만해야 한다:
# 25 번이면 브라우저 한 스레드에서 16장에 12초 남짓이다 (book/live_sampling.md 의 표). 이보다 비싼 설정(DDPM 1000 등)은
# 이름으로 골라 쓴다.
INTERACTIVE_NFE = 25


def point_label(p: dict[str, Any]) -> str:
    name = {"ddpm": "DDPM", "ddim": "DDIM", "dpm-solver++": "DPM-Solver++", "sde-dpm-solver++": "SDE-DPM-Solver++"}[
        p["sampler"]
    ]
    return f"{name}-{p['steps']}" + (f"-{p['spacing']}" if p["spacing"] else "")


def network_evaluations(diffusion: Any, p: dict[str, Any]) -> int:
    """이 설정이 이미지 한 장에 신경망을 부르는 횟수 (두 DPM-Solver++ 는 반올림으로 겹친 시각을 뺀 수)."""
    if p["sampler"] == "ddpm":
        return diffusion.num_timesteps
    if p["sampler"] == "ddim":
        return p["steps"]
    return len(diffusion.solver_timesteps(p["steps"], p["spacing"]))


def load_reruns(out: str, header: dict[str, Any]) -> list[dict[str, Any]]:
    """``{out}_seed*.json``: 같은 모델(SHA-256)·같은 N 의 점들을 다른 시드로 다시 잰 결과 파일들 (시드 순).

    N = 1000 의 특징 FID 는 시드(x_T, 걸음마다의 노이즈, 바닥값을 재는 진짜 이미지)에 따라 바닥값 표준편차(≈ 0.3)만큼
    흔들린다. 규칙의 답이 그 흔들림에 달리지 않도록, 답을 가를 점들은 시드를 바꿔 다시 재어 여기에 둔다.
    """
    found = []
    for path in sorted(RESULTS.glob(f"{out}_seed*.json")):
        b = json.loads(path.read_text(encoding="utf-8"))
        if same_checkpoint(b, header) and b.get("num") == header.get("num") and b.get("seed") != header.get("seed"):
            found.append(b)
    return sorted(found, key=lambda b: b["seed"])


def summarize(rows: list[dict[str, Any]], reruns: list[dict[str, Any]] = ()) -> dict[str, Any] | None:
    """DDPM 1000 단계 대비 FID·속도를 채우고, 기본값 규칙에 맞는 설정을 고른다.

    규칙: 신경망 호출이 ``INTERACTIVE_NFE`` 번 이하인 설정 가운데 기준 FID 의 ``RULE_FACTOR`` 배 안에 드는 가장 싼 것.
    기준은 DDPM 1000 단계의 FID 다. 다만 상한 안의 어느 설정도 그 배수 안에 들지 못하면 (모델이 좋아져 결정적 풀이법이
    확률적인 DDPM 사슬을 따라가지 못하면) 상한 안에서 가장 낮은 FID 를 기준으로 삼는다.

    ``reruns`` (``load_reruns``) 에서 같은 점을 다른 시드로도 쟀으면, 규칙은 그 점의 FID 를 모든 시드의 평균으로 본다. 행마다
    ``fid_seed_mean`` (규칙이 쓴 값)과 ``fid_seeds`` (평균한 시드들)를 채운다.
    """
    ref = next((r for r in rows if r["sampler"] == "ddpm"), None)
    if ref is None:
        return None
    for r in rows:
        seeds, fids = [None], [r["fid"]]
        for b in reruns:
            again = next((x for x in b["results"] if x["label"] == r["label"]), None)
            if again is not None:
                seeds.append(b["seed"])
                fids.append(again["fid"])
        r["fid_seeds"] = seeds
        r["fid_seed_mean"] = round(sum(fids) / len(fids), 4)
    for r in rows:
        r["fid_vs_ddpm"] = round(r["fid_seed_mean"] / ref["fid_seed_mean"], 3) if ref["fid_seed_mean"] > 0 else None
        # 시간이 없는 점(예: 여러 번 이어 재어 벽시계 시간을 믿을 수 없는 점)은 속도 비교에서 뺀다
        times = (ref.get("sample_seconds"), r.get("sample_seconds"))
        r["speedup_vs_ddpm"] = round(times[0] / times[1], 1) if None not in times and times[1] > 0 else None
    cheap = [r for r in rows if r["nfe"] <= INTERACTIVE_NFE]
    if not cheap:
        return None
    fid = {r["label"]: r["fid_seed_mean"] for r in rows}
    matches_ddpm = any(fid[r["label"]] <= RULE_FACTOR * fid[ref["label"]] for r in cheap)
    reference = fid[ref["label"]] if matches_ddpm else min(fid[r["label"]] for r in cheap)
    ok = [r for r in cheap if fid[r["label"]] <= RULE_FACTOR * reference]
    best = min(ok, key=lambda r: (r["nfe"], fid[r["label"]]))
    return {
        "rule": f"fewest network evaluations (at most {INTERACTIVE_NFE}) with feature-FID <= {RULE_FACTOR} x the "
        f"reference: DDPM-{ref['steps']}, or the best setting within {INTERACTIVE_NFE} evaluations if none comes "
        f"within {RULE_FACTOR} x DDPM-{ref['steps']}; a point measured with several seeds counts with its mean FID",
        "label": best["label"],
        "sampler": best["sampler"],
        "steps": best["steps"],
        "spacing": best["spacing"],
        "nfe": best["nfe"],
        "fid": fid[best["label"]],
        "fid_seeds": len(best["fid_seeds"]),
        "ddpm_fid": fid[ref["label"]],
        "reference": "ddpm" if matches_ddpm else "best_interactive",
        "reference_fid": reference,
        "interactive_nfe": INTERACTIVE_NFE,
        "rerun_seeds": [b["seed"] for b in reruns],
    }


def sample_in_saved_batches(
    diffusion: Any,
    model: Any,
    num: int,
    shape: tuple[int, int, int],
    batch: int,
    g: Any,
    device: Any,
    part: Path | None,
    model_sha256: str | None = None,
    **kw: Any,
) -> tuple[Any, float]:
    """``sample_with_oom_retry`` 와 같은 난수 순서로 N 장을 만든다: x_T 를 한꺼번에 뽑고, 배치마다 생성기를 이어 쓴다.

    ``part`` 가 있으면 배치가 끝날 때마다 지금까지의 결과, 생성기 상태, 걸린 시간을 그 파일에 (임시 파일 → 이름 바꾸기로)
    남기고, 다시 실행하면 끝난 배치를 건너뛰고 이어 간다. CPU 에서 한 시간이 넘는 DDPM 1000 단계를 세션을 넘겨 재려는 것이다.
    같은 배치 크기로 이어 가면 결과는 한 번에 만든 것과 비트까지 같다. ``model_sha256`` (모델 파일의 SHA-256)을 주면
    그 값도 남기고, 다른 모델이 남긴 배치에서는 이어 가지 않는다 (배치마다 다른 모델이 섞이지 않게). ``(이미지, 샘플링 초)``
    를 돌려준다.
    """
    import numpy as np
    import torch

    x_T = torch.randn((num, *shape), generator=g)
    outputs: list[Any] = []
    seconds = 0.0
    if part is not None and part.is_file():
        z = np.load(part)
        if int(z["num"]) != num or int(z["batch"]) != batch:
            raise SystemExit(f"{part}: N·배치가 다르다 / saved batches use another N or batch size")
        saved_sha = str(z["model_sha256"]) if "model_sha256" in z.files else ""
        if model_sha256 and saved_sha and saved_sha != model_sha256:
            raise SystemExit(
                f"{part}: 다른 모델(SHA-256 {saved_sha[:12]}…)이 남긴 배치다. 그 파일을 지우거나 다른 --samples-dir 를 쓰라 / "
                f"saved batches come from another model ({saved_sha[:12]}…, now {model_sha256[:12]}…): delete the file "
                "or use another --samples-dir"
            )
        outputs = [torch.from_numpy(z["images"])]
        g.set_state(torch.from_numpy(z["generator_state"]))
        seconds = float(z["seconds"])
        print(f"[bench] {part.name}: {len(z['images'])}/{num} 장을 이어 간다 / resuming", flush=True)
    start = sum(len(o) for o in outputs)
    while start < num:
        end = min(num, start + batch)
        t0 = time.perf_counter()
        with torch.inference_mode():
            x = diffusion.sample(model, (end - start, *shape), generator=g, device=device, x_T=x_T[start:end], **kw)
        seconds += time.perf_counter() - t0
        outputs.append(x.cpu())
        start = end
        if part is not None:
            part.parent.mkdir(parents=True, exist_ok=True)
            tmp = part.with_name(part.stem + ".tmp.npz")
            np.savez(
                tmp,
                images=torch.cat(outputs).numpy(),
                generator_state=g.get_state().numpy(),
                seconds=seconds,
                num=num,
                batch=batch,
                model_sha256=model_sha256 or "",
            )
            os.replace(tmp, part)
            print(f"[bench] {start}/{num} 장 / images ({seconds:.0f}s)", flush=True)
    return torch.cat(outputs), seconds


def main() -> None:
    import numpy as np
    import torch

    from ddpm_ko.evaluation import evaluate
    from ddpm_ko.pretrained import load_classifier
    from ddpm_ko.sampling import sample_with_oom_retry
    from ddpm_ko.utils import pick_device
    from ddpm_ko.viz import to_uint8

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="확산 모델 체크포인트 (기본: 책의 사전 학습 모델, 없으면 runs/pretrained)")
    p.add_argument("--num", type=int, default=1000, help="점마다 만들 이미지 수 N (이슈: 1000 이상)")
    p.add_argument("--points", default=DEFAULT_POINTS, help="쉼표로 나눈 sampler:steps[:spacing] (기본: 이슈의 11 점)")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--out", default="quality_vs_nfe")
    p.add_argument("--fresh", action="store_true", help="기존 결과를 무시하고 처음부터 (기본은 이어 하기)")
    p.add_argument(
        "--summarize",
        action="store_true",
        help="샘플링 없이 규칙의 답(recommended)만 다시 계산해 저장한다 (다른 시드의 파일 {out}_seed*.json 을 더했을 때)",
    )
    p.add_argument(
        "--samples-dir",
        help="점마다 만든 이미지를 uint8 .npy 로 남길 디렉터리 (지표를 다시 잴 때). "
        "DDPM 점은 배치마다 여기에 남겨, 멈춘 뒤 다시 실행하면 이어 간다",
    )
    a = p.parse_args()
    if a.num < 2:
        raise SystemExit("--num 은 2 이상 / --num must be >= 2")
    points = [parse_point(s) for s in a.points.split(",") if s.strip()]

    device = pick_device()
    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt, model, diffusion, meta, provisional = load_benchmark_model(a.checkpoint, device)
    clf = load_classifier()
    c = model.config
    machine = machine_info()

    header = {
        "benchmark": a.out,
        "what": "feature-FID/KID vs number of network evaluations (NFE) per image, N samples per point from the same "
        "x_T, vs the Fashion-MNIST test split, with the real-vs-real floor at the same N and sampling wall time",
        **checkpoint_fields(ckpt, meta, provisional),
        "classifier_test_accuracy": clf.meta.get("test_accuracy"),
        "num": a.num,
        "seed": a.seed,
    }
    rows: list[dict[str, Any]] = []
    earlier: list[dict[str, Any]] = []
    kept: dict[str, Any] = {}  # 이어 잴 때 앞 파일에서 그대로 옮기는 설명 (손으로 적은 note)
    prev_path = RESULTS / f"{a.out}.json"
    if prev_path.is_file() and not a.fresh:
        old = json.loads(prev_path.read_text(encoding="utf-8"))
        same = same_checkpoint(old, header) and all(old.get(k) == header[k] for k in ("num", "seed"))
        if not same:
            raise SystemExit(
                f"{prev_path} 는 다른 체크포인트·N·시드의 결과다. 이어 할 수 없다 (--fresh 로 새로, 또는 --out) / "
                "existing results use a different checkpoint, N or seed: pass --fresh or another --out"
            )
        rows = old.get("results", [])
        earlier = old.get("runs", [])
        kept = {k: old[k] for k in ("note",) if k in old}
        print(f"[bench] {prev_path.name}: {len(rows)} 점을 이어 간다 / resuming with {len(rows)} points", flush=True)
    run = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": portable_command([Path(sys.executable).name, *sys.argv]),
        "machine": machine,
    }

    def save() -> None:
        summary = summarize(rows, load_reruns(a.out, header))
        machine["load_average_now"] = machine_info()["load_average_1_5_15min"]
        floor = rows[0]["fid_floor"] if rows else None
        save_atomic(
            a.out,
            {
                **header,
                **kept,
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "fid_floor": floor,
                "recommended": summary,
                "runs": [*earlier, run],
                "results": rows,
            },
        )

    done = {r["label"] for r in rows}
    if a.summarize:
        if not rows:
            raise SystemExit(f"{prev_path} 에 잰 점이 없다 / nothing measured yet")
        points = []
        run["command"] += " (규칙만 다시 계산 / summary only)"
    for pt in points:
        label = point_label(pt)
        if label in done:
            print(f"[bench] {label}: 이미 있다, 건너뛴다 / already measured, skipping", flush=True)
            continue
        g = torch.Generator().manual_seed(a.seed)  # 모든 점이 같은 x_T 에서 시작한다
        kw: dict[str, Any] = {"sampler": pt["sampler"], "steps": None if pt["sampler"] == "ddpm" else pt["steps"]}
        if pt["spacing"]:
            kw["spacing"] = pt["spacing"]
        load_before = machine_info()["load_average_1_5_15min"]
        if a.samples_dir and pt["sampler"] == "ddpm":  # 오래 걸리는 점은 배치마다 남겨 이어 할 수 있게
            images, dt = sample_in_saved_batches(
                diffusion,
                model,
                a.num,
                (c.channels, c.image_size, c.image_size),
                a.batch,
                g,
                device,
                Path(a.samples_dir) / f"{label}.part.npz",
                model_sha256=header["checkpoint_sha256"],
                **kw,
            )
        else:
            t0 = time.perf_counter()
            with torch.inference_mode():
                images, _ = sample_with_oom_retry(
                    diffusion, model, a.num, (c.channels, c.image_size, c.image_size), a.batch, g, device, **kw
                )
            dt = time.perf_counter() - t0
        if a.samples_dir:
            Path(a.samples_dir).mkdir(parents=True, exist_ok=True)
            np.save(Path(a.samples_dir) / f"{label}.npy", to_uint8(images))
        r = evaluate(images.cpu(), seed=a.seed, classifier=clf, kid_subsets=50)
        nfe = network_evaluations(diffusion, pt)
        row = {
            "label": label,
            **pt,
            "nfe": nfe,
            "num": a.num,
            "fid": r["fid"],
            "fid_floor": r["floor"]["fid"],
            "fid_floor_std": r["floor"].get("fid_std"),
            "fid_over_floor": r["fid_over_floor"],
            "kid_mean": r["kid"]["mean"],
            "kid_std": r["kid"]["std"],
            "kid_floor_mean": r["floor"]["kid"]["mean"],
            "coverage": r["histogram"]["coverage"],
            "normalized_entropy": r["histogram"]["normalized_entropy"],
            "sample_seconds": round(dt, 2),
            "s_per_image": round(dt / a.num, 5),
            "ms_per_image_per_nfe": round(1000 * dt / a.num / nfe, 4),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "load_average_before": load_before,
        }
        rows.append(row)
        done.add(label)
        save()
        print(
            f"[bench] {label} (NFE {nfe}): FID {row['fid']:.3f} (floor {row['fid_floor']:.3f}), "
            f"KID {1e3 * row['kid_mean']:.3f}e-3, {dt:.0f}s",
            flush=True,
        )
    save()
    rows.sort(key=lambda r: (r["sampler"] != "ddpm", r["sampler"], r["nfe"]))
    print(
        fmt_table(
            rows, ["label", "nfe", "fid", "fid_seed_mean", "fid_floor", "fid_vs_ddpm", "speedup_vs_ddpm", "s_per_image"]
        )
    )
    summary = summarize(rows, load_reruns(a.out, header))
    if summary:
        print(
            f"[bench] 규칙 / rule ({summary['rule']}): {summary['label']} (NFE {summary['nfe']}, "
            f"FID {summary['fid']:.3f} over {summary['fid_seeds']} seed(s))"
        )
    print(f"[bench] wrote {prev_path.relative_to(RESULTS.parents[1])}")


if __name__ == "__main__":
    main()
