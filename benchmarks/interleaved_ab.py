"""한 프로세스 안에서 두 설정의 학습 단계를 번갈아 재는 A/B 비교 (부하가 출렁이는 기계용).

``train_throughput.py`` 는 변형마다 새 프로세스를 띄워 차례로 재므로, 다른 작업 때문에 부하가 바뀌면 변형 사이의
차이보다 잴 때의 부하 차이가 더 커질 수 있다. 여기서는 A, B, A, B … 순서로 한 단계씩 번갈아 재서 두 변형이 같은
부하를 겪게 한다. 프로세스 단위 설정(malloc 문턱값, OMP_WAIT_POLICY)은 이 방법으로 비교할 수 없다.

    .venv/bin/python benchmarks/interleaved_ab.py                  # 채널 마지막 배치 켬/끔, 기본 대 Annotated
    .venv/bin/python benchmarks/interleaved_ab.py --rounds 10 --batch 64

결과: ``benchmarks/results/interleaved_ab.json``.
"""

from __future__ import annotations

import argparse
import time

from _common import machine_info, merge_with_previous, save_result

# 쌍마다 (모델, channels_last, 배치 배수) 두 개. 배치 배수는 --batch 에 곱한다 (0.5 면 절반 배치).
PAIRS = {
    "channels-last": (("ours-default", True, 1.0), ("ours-default", False, 1.0)),
    "annotated": (("ours-default", True, 1.0), ("ours-annotated", True, 1.0)),
    "stage-0-attention": (("ours-default", True, 1.0), ("ours-default+attn28", True, 1.0)),
    "batch-half": (("ours-default", True, 0.5), ("ours-default", True, 1.0)),
}


def main() -> None:
    import torch

    from ddpm_ko.data import ImageBatches, fashion_mnist_arrays
    from ddpm_ko.diffusion import GaussianDiffusion
    from ddpm_ko.unet import Unet, UnetConfig
    from ddpm_ko.utils import pick_device

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=6, help="변형마다 잴 단계 수 (번갈아)")
    p.add_argument("--pairs", default=",".join(PAIRS))
    p.add_argument("--out", default="interleaved_ab")
    p.add_argument("--append", action="store_true", help="기존 결과에 덧붙인다 (같은 쌍은 새 값으로)")
    a = p.parse_args()

    pick_device()
    torch.set_num_threads(a.threads)
    configs = {
        "ours-default": UnetConfig(),
        "ours-annotated": UnetConfig.annotated(),
        "ours-default+attn28": UnetConfig(attention_from_stage=0),
    }
    diffusion = GaussianDiffusion.from_schedule("linear", 1000)
    images, _ = fashion_mnist_arrays("train")
    batches = ImageBatches(images[:10_000], a.batch, seed=0)
    machine = machine_info()
    results = []
    for pair in a.pairs.split(","):
        arms = []
        for model_name, cl, mult in PAIRS[pair]:
            torch.manual_seed(0)
            mf = torch.channels_last if cl else torch.contiguous_format
            net = Unet(configs[model_name]).to(memory_format=mf).train()
            bs = max(1, int(a.batch * mult))
            name = f"{model_name}{'' if cl else '/no-channels-last'}{'' if mult == 1.0 else f'/batch-{bs}'}"
            arms.append(
                {
                    "name": name,
                    "net": net,
                    "mf": mf,
                    "batch": bs,
                    "opt": torch.optim.AdamW(net.parameters(), lr=1e-3),
                    "times": [],
                }
            )
        gen = torch.Generator().manual_seed(1)
        for r in range(a.rounds + 1):  # 첫 바퀴는 예열
            for arm in arms if r % 2 == 0 else arms[::-1]:
                x0 = batches.batch(0, r % batches.batches_per_epoch)[: arm["batch"]].contiguous(memory_format=arm["mf"])
                t = torch.randint(0, 1000, (arm["batch"],), generator=gen)
                noise = torch.randn(x0.shape, generator=gen).contiguous(memory_format=arm["mf"])
                t0 = time.perf_counter()
                loss = diffusion.training_loss(arm["net"], x0, t, noise)
                arm["opt"].zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(arm["net"].parameters(), 1.0)
                arm["opt"].step()
                if r:
                    arm["times"].append(time.perf_counter() - t0)
        row = {"pair": pair, "batch": a.batch, "threads": a.threads, "rounds": a.rounds}
        for key, arm in zip("ab", arms):
            ts = sorted(arm["times"])
            row[key] = {
                "name": arm["name"],
                "parameters": arm["net"].num_parameters(),
                "batch": arm["batch"],
                "step_s_median": round(ts[len(ts) // 2], 3),
                "images_per_s": round(arm["batch"] / ts[len(ts) // 2], 1),
            }
        row["a_over_b_speed"] = round(row["a"]["images_per_s"] / row["b"]["images_per_s"], 3)
        print(
            f"[bench] {pair}: {row['a']['name']} {row['a']['images_per_s']} img/s vs "
            f"{row['b']['name']} {row['b']['images_per_s']} img/s  → ×{row['a_over_b_speed']}",
            flush=True,
        )
        results.append(row)
        del arms
    machine["load_average_after"] = machine_info()["load_average_1_5_15min"]
    if a.append:
        results = merge_with_previous(a.out, results, "pair", machine)
    save_result(
        a.out,
        {
            "what": "A/B training-step time, the two arms alternate step by step in one process "
            "(same load for both); median over rounds",
            "results": results,
        },
        machine,
    )


if __name__ == "__main__":
    main()
