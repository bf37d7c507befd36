"""분류기 없는 가이던스의 맞바꿈(trade-off): 가이던스 세기 w 에 따른 클래스 정확도, 특징 FID, 다양성 (11장).

조건부 모델(기본: 책이 싣는 ``pretrained-conditional``)로 w 마다 N 장(클래스마다 N/10 장, 레이블 0, 1, …, 9, 0, …)을
**같은 x_T** 에서 만든다. 샘플러는 DPM-Solver++(2M), λ 간격이고 스텝 수는 ``--steps`` (기본: 책의 기본값
``solvers.DEFAULT_STEPS``; 지금의 결과 파일은 그때의 기본값 10 스텝으로 쟀다). 그리고

- 정확도: 책이 싣는 분류기가 요청한 클래스라고 답한 비율 (전체와 클래스마다),
- 특징 FID: 시험 분할 10,000 장에 대해 (전체), 그리고 클래스마다 그 클래스의 시험 이미지 1,000 장에 대해,
- 다양성: 같은 클래스 안 특징 벡터 사이의 평균 거리 (클래스마다, 그 평균),

을 잰다. 같은 N 의 진짜 대 진짜 바닥값(학습 분할에서 뽑은 진짜 이미지로 같은 계산)과, 같은 샘플러·N·시드로
만든 조건 없는 모델(``pretrained``)의 FID 를 함께 적는다. w 하나가 끝날 때마다 JSON 을 저장하고, 다시 실행하면
이미 잰 w 는 건너뛴다 (체크포인트·N·시드가 같을 때).

    .venv/bin/python benchmarks/guidance_tradeoff.py                  # N = 1000, w = 0, 0.5, 1, 2, 3, 5 (CPU 에서 10분 남짓)
    .venv/bin/python benchmarks/guidance_tradeoff.py --num-per-class 10 --ws 0,2 --out guidance_try

결과의 ``default_w`` 는 기본값 규칙의 답이다: 정확도 90% 이상인 w 가운데 특징 FID 가 가장 낮은 것. 그 값으로
``ddpm_ko.guidance.DEFAULT_GUIDANCE`` 를 고친다 (tests/test_conditioning.py 가 맞춰 본다).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    RESULTS,
    checkpoint_fields,
    fmt_table,
    machine_info,
    portable_command,
    portable_path,
    same_checkpoint,
    save_atomic,
)

ACCURACY_RULE = 0.90  # 기본 w 규칙: 이 정확도 이상인 w 가운데 FID 가 가장 낮은 것
DEFAULT_WS = "0,0.5,1,2,3,5"


def pick_default(rows: list[dict[str, Any]]) -> float | None:
    """규칙의 답: 정확도 ≥ ``ACCURACY_RULE`` 인 w 가운데 FID 가 가장 낮은 것 (없으면 None)."""
    ok = [r for r in rows if r["accuracy"] >= ACCURACY_RULE]
    return min(ok, key=lambda r: (r["fid"], r["w"]))["w"] if ok else None


def mean_pairwise_distance(feat: Any) -> float:
    """특징 벡터들 사이의 평균 유클리드 거리 (자기 자신과의 0 은 뺀다): 다양성의 척도."""
    import torch

    f = torch.as_tensor(feat, dtype=torch.float64)
    n = len(f)
    d = torch.cdist(f, f)
    return float(d.sum() / (n * (n - 1)))


def class_stats(feat: Any, logits: Any, labels: Any, ref_feat: Any, ref_labels: Any) -> dict[str, Any]:
    """한 묶음의 정확도·FID·다양성 (전체와 클래스마다). ``ref_*`` 는 시험 분할의 특징과 레이블."""
    import numpy as np

    from ddpm_ko.metrics import fid

    labels = np.asarray(labels)
    pred = np.asarray(logits).argmax(1)
    classes = range(10)
    per_acc = [float((pred[labels == k] == k).mean()) for k in classes]
    per_fid = [fid(feat[labels == k], ref_feat[ref_labels == k]) for k in classes]
    per_div = [mean_pairwise_distance(feat[labels == k]) for k in classes]
    return {
        "accuracy": round(float((pred == labels).mean()), 4),
        "accuracy_per_class": [round(v, 4) for v in per_acc],
        "fid": round(fid(feat, ref_feat), 4),
        "fid_per_class": [round(v, 3) for v in per_fid],
        "diversity": round(float(np.mean(per_div)), 4),
        "diversity_per_class": [round(v, 4) for v in per_div],
    }


def main() -> None:
    import numpy as np
    import torch

    from ddpm_ko import solvers
    from ddpm_ko.checkpoint import load_model_from_checkpoint
    from ddpm_ko.data import fashion_mnist_arrays
    from ddpm_ko.evaluation import features_and_logits
    from ddpm_ko.metrics import fid
    from ddpm_ko.pretrained import file_sha256, load_classifier, resolve_checkpoint_name
    from ddpm_ko.sampling import sample_with_oom_retry

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="pretrained-conditional", help="조건부 모델 (기본: 책이 싣는 것)")
    p.add_argument("--unconditional", default="pretrained", help="견줄 조건 없는 모델 (기본: 책이 싣는 것)")
    p.add_argument("--num-per-class", type=int, default=100, help="w 마다 클래스당 이미지 수 (기본 100 → N = 1000)")
    p.add_argument("--ws", default=DEFAULT_WS, help=f"쉼표로 나눈 w 값 (기본 {DEFAULT_WS})")
    p.add_argument("--steps", type=int, default=solvers.DEFAULT_STEPS, help="DPM-Solver++ 스텝 수 (기본: 책의 기본값)")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--out", default="guidance_tradeoff")
    p.add_argument("--fresh", action="store_true", help="기존 결과를 무시하고 처음부터")
    a = p.parse_args()
    if a.num_per_class < 2:
        raise SystemExit("--num-per-class 는 2 이상 / must be >= 2")
    ws = [float(v) for v in a.ws.split(",") if v.strip()]
    if a.threads:
        torch.set_num_threads(a.threads)
    num = 10 * a.num_per_class
    labels = torch.arange(num) % 10
    ckpt = resolve_checkpoint_name(a.checkpoint)
    model, diffusion, meta = load_model_from_checkpoint(ckpt)
    if getattr(model.config, "num_classes", None) is None:
        raise SystemExit(f"{ckpt} 는 조건 없는 모델이다 / is not a conditional model")
    clf = load_classifier()
    shape = (model.config.channels, model.config.image_size, model.config.image_size)
    test_images, test_labels = fashion_mnist_arrays("test")
    ref_feat, _ = features_and_logits(test_images, clf)
    sampler = dict(sampler="dpm-solver++", steps=a.steps, spacing=solvers.DEFAULT_SPACING)

    header = {
        "benchmark": a.out,
        "what": "classifier-free guidance sweep: class accuracy by the shipped classifier, feature-FID vs the test "
        "split (overall and per class vs that class's test images), diversity = mean pairwise feature distance "
        "within a class; same x_T and labels for every w",
        **checkpoint_fields(ckpt, meta, provisional="runs/" in str(ckpt)),  # 잠정: 학습 중인 runs/ 의 체크포인트
        "num": num,
        "num_per_class": a.num_per_class,
        "seed": a.seed,
        "sampler": "dpm-solver++",
        "steps": a.steps,
        "spacing": solvers.DEFAULT_SPACING,
        "guidance_parameterisation": "eps = (1 + w) eps(x, y) - w eps(x, null); diffusers guidance_scale = 1 + w",
        "classifier_test_accuracy": clf.meta.get("test_accuracy"),
    }
    prev = RESULTS / f"{a.out}.json"
    old: dict[str, Any] = {}
    if prev.is_file() and not a.fresh:
        old = json.loads(prev.read_text(encoding="utf-8"))
        if not same_checkpoint(old, header) or any(
            old.get(k) != header[k] for k in ("num", "seed", "sampler", "steps", "spacing")
        ):
            raise SystemExit(
                f"{prev} 는 다른 설정의 결과다: --fresh 나 --out / different settings: use --fresh or --out"
            )
    rows: list[dict[str, Any]] = old.get("results", [])
    t_start = time.perf_counter()
    machine = machine_info()

    # 바닥값: 클래스마다 학습 분할의 진짜 이미지 num_per_class 장 (N 장 전체) 으로 같은 계산을 한다
    if "floor" not in old:
        train_images, train_labels = fashion_mnist_arrays("train")
        rng = np.random.default_rng(a.seed)
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(train_labels == k), a.num_per_class, replace=False) for k in range(10)]
        )
        order = np.argsort(np.tile(np.arange(a.num_per_class), 10) * 10 + np.repeat(np.arange(10), a.num_per_class))
        idx = idx[order]  # 레이블 0, 1, …, 9, 0, … 순서 (생성 이미지와 같게)
        real_feat, real_logits = features_and_logits(train_images[idx], clf)
        floor = class_stats(real_feat, real_logits, train_labels[idx], ref_feat, test_labels)
        old["floor"] = floor
    floor = old["floor"]

    def sample(m: Any, w: float | None) -> tuple[Any, float]:
        g = torch.Generator().manual_seed(a.seed)
        t0 = time.perf_counter()
        cond = {} if w is None else {"labels": labels, "guidance": w}
        x, _ = sample_with_oom_retry(diffusion, m, num, shape, a.batch, g, torch.device("cpu"), **cond, **sampler)
        return x, time.perf_counter() - t0

    if "unconditional_fid" not in old:
        base_path = resolve_checkpoint_name(a.unconditional)
        base, _, base_meta = load_model_from_checkpoint(base_path)
        x, secs = sample(base, None)
        feat, _ = features_and_logits(x, clf)
        old["unconditional_fid"] = round(fid(feat, ref_feat), 4)
        old["unconditional"] = {"checkpoint": portable_path(base_path), "checkpoint_sha256": file_sha256(base_path),
                                "step": base_meta.get("step"), "sample_seconds": round(secs, 1)}  # fmt: skip
        print(f"[bench] unconditional FID {old['unconditional_fid']} ({secs:.0f}s)", flush=True)

    def save() -> None:
        rows.sort(key=lambda r: r["w"])
        default_w = pick_default(rows)
        save_atomic(
            a.out,
            {
                **header,
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": portable_command([Path(sys.executable).name, *sys.argv]),
                "machine": machine,
                "floor": floor,
                "fid_floor": floor["fid"],
                "real_diversity": floor["diversity"],
                "unconditional_fid": old["unconditional_fid"],
                "unconditional": old["unconditional"],
                "rule": f"lowest feature-FID among w with class accuracy >= {ACCURACY_RULE}",
                "default_w": default_w,
                "results": rows,
            },
        )

    save()
    done = {r["w"] for r in rows}
    for w in ws:
        if w in done:
            continue
        x, secs = sample(model, w)
        feat, logits = features_and_logits(x, clf)
        row = {"w": w, "diffusers_guidance_scale": 1 + w, **class_stats(feat, logits, labels, ref_feat, test_labels)}
        row["real_diversity"] = floor["diversity"]
        row["sample_seconds"] = round(secs, 1)
        rows.append(row)
        save()
        print(f"[bench] w={w}: acc {row['accuracy']:.3f} FID {row['fid']:.2f} div {row['diversity']:.3f} ({secs:.0f}s)",
              flush=True)  # fmt: skip
    print(
        fmt_table(
            [{k: r[k] for k in ("w", "accuracy", "fid", "diversity", "sample_seconds")} for r in rows],
            ["w", "accuracy", "fid", "diversity", "sample_seconds"],
        )
    )
    print(f"floor: FID {floor['fid']}, diversity {floor['diversity']}; unconditional FID {old['unconditional_fid']}")
    print(f"default_w (rule) = {pick_default(rows)}; total {time.perf_counter() - t_start:.0f}s")


if __name__ == "__main__":
    main()
