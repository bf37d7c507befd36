"""정해진 벽시계 시간만큼 학습한 뒤 품질(특징 FID)을 잰다: "노트북으로 20분, 60분 학습하면 어디까지 가나".

두 구현을 같은 방법으로 잰다.

- ``--impl ours``: ``ddpm_ko.train.Trainer`` 의 학습 단계 그대로 (기본 처방: 배치 64, lr 1e-3, 워밍업 200, EMA 0.999).
- ``--impl lucidrains``: denoising-diffusion-pytorch 2.1.1 의 ``Unet``·``GaussianDiffusion``·``ema_pytorch.EMA`` 를
  그 패키지 ``Trainer`` 의 기본값대로 돌린다 (배치 16, Adam lr 1e-4 betas (0.9, 0.99), 기울기 노름 1 로 자르기,
  EMA 0.995 를 10단계마다, 좌우 뒤집기, v 예측, 시그모이드 스케줄). 28×28 은 세 번 절반으로 줄일 수 없으므로
  신경망만 Annotated Diffusion 과 같은 ``Unet(dim=28, channels=1, dim_mults=(1, 2, 4))`` 로 정한다.
  ``Trainer`` 자체는 쓰지 않는다: 그 클래스는 이미지 폴더, accelerate, torchvision 을 요구하고 데이터 로더 작업
  프로세스가 2코어 중 CPU 를 나눠 가져가기 때문이다. 대신 같은 단계(순전파 → 역전파 → 자르기 → Adam → EMA)를 이 파일이 부른다.

``--eval-at`` 의 각 시각(분)에 시계를 멈추고 EMA 가중치로 DDIM(η=0) 표본 N 장을 만들어 ``ddpm_ko.evaluation.evaluate``
로 잰다 (같은 N 의 바닥값과 함께). 평가 시간은 학습 시간에 넣지 않는다. 두 구현 모두 같은 DDIM 단계 수로 뽑는다
(lucidrains 의 기본 샘플러는 1000단계라 CPU 에서 N=500 장에 한 시간이 넘게 걸린다).

    .venv/bin/python benchmarks/time_to_quality.py --minutes 20 --eval-at 5,10,20              # 우리 기본 처방
    .venv/bin/python benchmarks/time_to_quality.py --impl lucidrains \\
        --minutes 60 --eval-at 20,40,60         # 다른 구현과 견주기: make bench-peers 뒤 (오래 걸린다)
    .venv/bin/python benchmarks/time_to_quality.py --minutes 1 --num 64                        # 동작 확인용

결과: ``benchmarks/results/time_to_quality_<impl>_<minutes>min.json`` (``ours`` 의 Annotated 신경망은 ``--preset annotated``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

from _common import PEERS, import_lucidrains, machine_info, save_result


def parse_minutes(text: str) -> list[float]:
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"쉼표로 나눈 분 단위 숫자여야 한다 / comma-separated minutes, got {text!r}"
        ) from None
    if not values or values[0] <= 0:
        raise argparse.ArgumentTypeError(f"0 보다 큰 시각이 필요하다 / times must be > 0, got {text!r}")
    return values


class OursRun:
    """우리 Trainer 의 학습 단계. ``step()`` 한 번이 최적화 한 단계다."""

    def __init__(self, a: argparse.Namespace) -> None:
        import torch

        from ddpm_ko.train import TrainConfig, Trainer
        from ddpm_ko.unet import UnetConfig

        self.unet_cfg = UnetConfig.annotated() if a.preset == "annotated" else UnetConfig()
        cfg = TrainConfig(
            out_dir=tempfile.mkdtemp(prefix="ddpm_ko_ttq_"),
            max_steps=10**9,
            batch_size=a.batch or 64,
            lr=a.lr or 1e-3,
            warmup_steps=a.warmup,
            ema_decay=a.ema or 0.999,
            seed=a.seed,
            num_threads=a.threads,
            progress=False,
            device="cpu",
        )
        self.trainer = Trainer(self.unet_cfg, cfg, log=lambda m: None)
        self.batch = cfg.batch_size
        self.describe = {
            "impl": "ddpm_ko",
            "preset": a.preset,
            "unet": self.unet_cfg.to_dict(),
            "parameters": self.trainer.model.num_parameters(),
            "recipe": {
                "batch": cfg.batch_size,
                "optimizer": "AdamW",
                "lr": cfg.lr,
                "warmup": cfg.warmup_steps,
                "ema": cfg.ema_decay,
                "schedule": "linear T=1000",
                "target": "eps",
                "threads": torch.get_num_threads(),
            },
        }

    @property
    def steps(self) -> int:
        return self.trainer.step

    def step(self) -> float:
        t = self.trainer
        return t.train_step(t.batches.batch(t.epoch, t.batch_index))

    def sample(self, num: int, steps: int, seed: int) -> Any:
        import torch

        from ddpm_ko.sampling import sample_with_oom_retry

        c, t = self.unet_cfg, self.trainer
        g = torch.Generator().manual_seed(seed)
        with torch.inference_mode():
            images, _ = sample_with_oom_retry(
                t.diffusion,
                t.ema.model.eval(),
                num,
                (c.channels, c.image_size, c.image_size),
                250,
                g,
                t.device,
                sampler="ddim",
                steps=steps,
            )
        return images.cpu()  # [−1, 1]


class LucidrainsRun:
    """denoising-diffusion-pytorch 의 Trainer 가 한 단계에 하는 일을 그 기본값으로 (자세한 것은 모듈 설명)."""

    def __init__(self, a: argparse.Namespace, mod: Any) -> None:
        """``mod``: ``import_lucidrains`` 가 불러온 denoising_diffusion_pytorch 모듈."""
        import numpy as np
        import torch
        from ema_pytorch import EMA  # import_lucidrains 가 ext 디렉터리를 sys.path 에 넣었다

        from ddpm_ko.data import fashion_mnist_arrays

        torch.manual_seed(a.seed)
        net = mod.Unet(dim=28, channels=1, dim_mults=(1, 2, 4))
        self.diffusion = mod.GaussianDiffusion(net, image_size=28, sampling_timesteps=a.steps)
        self.batch = a.batch or 16
        lr = a.lr or 1e-4
        self.opt = torch.optim.Adam(self.diffusion.parameters(), lr=lr, betas=(0.9, 0.99))
        self.ema = EMA(self.diffusion, beta=a.ema or 0.995, update_every=10)
        images, _ = fashion_mnist_arrays("train")
        self.images = torch.from_numpy(np.ascontiguousarray(images)).reshape(len(images), 1, 28, 28)  # uint8
        self.rng = torch.Generator().manual_seed(a.seed)
        self.order = torch.randperm(len(self.images), generator=self.rng)
        self.cursor = 0
        self._steps = 0
        self.describe = {
            "impl": f"denoising-diffusion-pytorch {mod.__version__}",
            "unet": "Unet(dim=28, channels=1, dim_mults=(1, 2, 4)) (its other arguments default)",
            "parameters": sum(p.numel() for p in net.parameters()),
            "recipe": {
                "batch": self.batch,
                "optimizer": "Adam betas (0.9, 0.99)",
                "lr": lr,
                "grad_clip": 1.0,
                "ema": f"ema_pytorch.EMA(beta={a.ema or 0.995}, update_every=10)",
                "schedule": "sigmoid T=1000 (GaussianDiffusion default)",
                "target": self.diffusion.objective,
                "hflip": True,
                "threads": torch.get_num_threads(),
            },
        }

    @property
    def steps(self) -> int:
        return self._steps

    def _next_batch(self) -> Any:
        import torch

        if self.cursor + self.batch > len(self.order):  # DataLoader(shuffle=True) 처럼 에폭마다 다시 섞는다
            self.order = torch.randperm(len(self.images), generator=self.rng)
            self.cursor = 0
        idx = self.order[self.cursor : self.cursor + self.batch]
        self.cursor += self.batch
        x = self.images[idx].float() / 255.0  # ToTensor: [0, 1]
        flip = torch.rand(len(x), generator=self.rng) < 0.5  # RandomHorizontalFlip
        x[flip] = x[flip].flip(-1)
        return x

    def step(self) -> float:
        import torch

        self.diffusion.train()
        loss = self.diffusion(self._next_batch())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.diffusion.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad()
        self._steps += 1
        self.ema.update()
        return float(loss.item())

    def sample(self, num: int, steps: int, seed: int) -> Any:
        import torch

        torch.manual_seed(seed)  # 이 패키지의 sample() 은 전역 난수를 쓴다
        model = self.ema.ema_model.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, num, 250):
                out.append(model.sample(batch_size=min(250, num - start)))
        return torch.cat(out) * 2 - 1  # [0, 1] → [−1, 1]


def main() -> None:
    import torch

    from ddpm_ko.evaluation import evaluate
    from ddpm_ko.pretrained import load_classifier
    from ddpm_ko.utils import tune_cpu

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, required=True, help="학습에 쓸 벽시계 시간 (분)")
    p.add_argument("--eval-at", type=parse_minutes, help="평가할 시각들 (분, 쉼표로). 기본: --minutes 한 번")
    p.add_argument("--impl", choices=["ours", "lucidrains"], default="ours")
    p.add_argument(
        "--external",
        default=str(PEERS),
        help="lucidrains 를 설치한 디렉터리 (기본 benchmarks/.peers: make bench-peers)",
    )
    p.add_argument("--preset", choices=["default", "annotated"], default="default", help="ours 의 신경망")
    p.add_argument("--batch", type=int, help="배치 크기 (기본: 그 구현의 기본값, ours 64 / lucidrains 16)")
    p.add_argument("--lr", type=float, help="학습률 (기본: ours 1e-3 / lucidrains 1e-4)")
    p.add_argument("--warmup", type=int, default=200, help="ours 의 워밍업 단계 수")
    p.add_argument("--ema", type=float, help="EMA 감쇠 (기본: ours 0.999 / lucidrains 0.995)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=500, help="평가할 표본 수 N")
    p.add_argument("--steps", type=int, default=50, help="DDIM 단계 수")
    p.add_argument("--out", help="결과 이름 (기본: time_to_quality_<impl>_<minutes>min)")
    a = p.parse_args()
    eval_at = [m for m in (a.eval_at or []) if m < a.minutes] + [a.minutes]

    torch.set_num_threads(a.threads)
    tune_cpu()  # 두 구현 모두 같은 malloc 설정에서 잰다
    machine = machine_info()
    if a.impl == "lucidrains":
        run: OursRun | LucidrainsRun = LucidrainsRun(a, import_lucidrains(a.external))
    else:
        run = OursRun(a)
    classifier = load_classifier()
    print(
        f"[bench] {run.describe['impl']}: {run.describe['parameters']:,} parameters, recipe {run.describe['recipe']}",
        flush=True,
    )

    losses: list[tuple[int, float, float]] = []
    evals: list[dict[str, Any]] = []
    window: list[float] = []
    train_s = 0.0
    for target in eval_at:
        start = time.perf_counter() - train_s  # 평가하는 동안은 시계를 멈춘다
        while train_s < 60.0 * target:
            window.append(run.step())
            train_s = time.perf_counter() - start
            if run.steps % 100 == 0:
                losses.append((run.steps, round(train_s, 1), round(sum(window) / len(window), 5)))
                print(f"[bench] step {run.steps} loss {losses[-1][2]:.4f} ({train_s:.0f}s)", flush=True)
                window.clear()
        t0 = time.perf_counter()
        images = run.sample(a.num, a.steps, a.seed)
        sample_s = time.perf_counter() - t0
        r = evaluate(images, seed=a.seed, classifier=classifier, kid_subsets=50)
        evals.append(
            {
                "minutes": target,
                "train_seconds": round(train_s, 1),
                "steps": run.steps,
                "images_seen": run.steps * run.batch,
                "images_per_s": round(run.steps * run.batch / train_s, 1),
                "sample_seconds": round(sample_s, 1),
                "fid": r["fid"],
                "fid_floor": r["floor"]["fid"],
                "fid_floor_std": r["floor"]["fid_std"],
                "fid_over_floor": r["fid_over_floor"],
                "kid": r["kid"],
                "kid_floor": r["floor"]["kid"],
                "histogram": r["histogram"],
            }
        )
        print(
            f"[bench] {target:g} min, {run.steps} steps: FID {r['fid']:.3f} (floor {r['floor']['fid']:.3f} "
            f"± {r['floor']['fid_std']:.3f}), KID {1e3 * r['kid']['mean']:.3f}e-3, "
            f"coverage {r['histogram']['coverage']} (sampling {sample_s:.0f}s)",
            flush=True,
        )

    machine["load_average_after"] = machine_info()["load_average_1_5_15min"]
    name = a.impl if a.impl == "lucidrains" or a.preset == "default" else f"{a.impl}-{a.preset}"
    save_result(
        a.out or f"time_to_quality_{name}_{a.minutes:g}min",
        {
            "what": "train for a wall-clock budget, then feature-FID of EMA samples at each --eval-at time "
            "(the clock is paused while evaluating)",
            **run.describe,
            "eval_sampler": f"DDIM eta=0, {a.steps} steps, N={a.num}",
            "loss_curve": losses,
            "evals": evals,
        },
        machine,
    )


if __name__ == "__main__":
    main()
