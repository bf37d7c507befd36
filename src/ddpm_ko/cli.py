"""명령줄 도구 ``ddpm-ko`` (``python -m ddpm_ko`` 와 같다).

    ddpm-ko train  [--data-dir D] [--epochs N | --max-steps N] [--out-dir D] [--checkpoint-every N]
                   [--resume PATH] [--seed K] ...
    ddpm-ko sample --checkpoint PATH --num N [--sampler ddpm|ddim] [--steps S] [--eta E]
                   [--seed K] [--out FILE.npy] [--gif FILE.gif]
    ddpm-ko export --checkpoint PATH --out FILE.safetensors

잘못된 인자나 파일은 한 줄 메시지와 0 이 아닌 종료 코드로 끝난다 (트레이스백 없음).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # 사용법 전체 대신 한 줄
        self.exit(2, f"ddpm-ko: error: {message} (see `ddpm-ko {self.prog.split()[-1]} --help`)\n"
                     if " " in self.prog else f"ddpm-ko: error: {message} (see `ddpm-ko --help`)\n")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"정수가 아니다 / not an integer: {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"1 이상이어야 한다 / must be >= 1, got {v}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"수가 아니다 / not a number: {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"양수여야 한다 / must be > 0, got {v}")
    return v


def _dim_mults(s: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(p) for p in s.replace(",", "-").split("-") if p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"예: 1-2-4 / expected e.g. 1-2-4, got {s!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"양의 정수들이어야 한다 / must be positive integers, got {s!r}")
    return vals


def build_parser() -> argparse.ArgumentParser:
    from .diffusion import LOSS_TYPES, PREDICTION_TYPES, SAMPLERS
    from .schedules import SCHEDULES
    from .unet import ATTENTION_TYPES, BLOCK_TYPES

    p = _Parser(prog="ddpm-ko", description="DDPM 한국어 해설서의 학습·샘플링 도구 / train and sample the ddpm_ko DDPM")
    from . import __version__

    p.add_argument("--version", action="version", version=f"ddpm_ko {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="Fashion-MNIST 로 학습 / train on Fashion-MNIST")
    t.add_argument("--data-dir", help="IDX 파일 디렉터리 (기본: $DDPM_KO_DATA_DIR, Debian 경로, Hub 순)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=_positive_float, help="학습 에폭 수 (소수 가능)")
    g.add_argument("--max-steps", type=_positive_int, help="학습 단계 수 (이어 학습이면 전체 단계 수)")
    t.add_argument("--out-dir", default="runs/default", help="체크포인트와 샘플을 쓸 디렉터리 (기본: runs/default)")
    t.add_argument("--checkpoint-every", type=_positive_int, default=500, help="몇 단계마다 체크포인트를 쓸지 (기본 500)")
    t.add_argument("--sample-every", type=int, default=0, help="몇 단계마다 샘플 격자를 그릴지 (0: 끔)")
    t.add_argument("--resume", help="이어 학습할 체크포인트 (.safetensors)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=_positive_int, default=64, help="전역 배치 크기 (기본 64)")
    t.add_argument("--lr", type=_positive_float, default=1e-3, help="학습률 (기본 1e-3)")
    t.add_argument("--warmup-steps", type=int, default=200)
    t.add_argument("--ema-decay", type=float, default=0.999)
    t.add_argument("--schedule", choices=sorted(SCHEDULES), default="linear")
    t.add_argument("--timesteps", type=_positive_int, default=1000, help="T (기본 1000)")
    t.add_argument("--prediction", choices=PREDICTION_TYPES, default="eps", help="예측 대상 (기본 eps)")
    t.add_argument("--loss", choices=LOSS_TYPES, default="l2", help="손실 (기본 l2 = L_simple)")
    t.add_argument("--preset", choices=["default", "annotated"], default="default",
                   help="신경망 설정: default (빠른 기본값) 또는 annotated (Annotated Diffusion 노트북과 같은 신경망)")
    t.add_argument("--dim", type=_positive_int, help="첫 단계 채널 수")
    t.add_argument("--dim-mults", type=_dim_mults, help="단계별 채널 배수, 예: 1-2-4")
    t.add_argument("--block", choices=BLOCK_TYPES, help="블록 종류")
    t.add_argument("--attention", choices=ATTENTION_TYPES, help="단계 어텐션 종류")
    t.add_argument("--subset", type=_positive_int, help="학습 이미지 앞 N 장만 쓴다 (시험용)")
    t.add_argument("--device", help="cuda, mps, cpu (기본: 자동)")
    t.add_argument("--threads", type=_positive_int, help="CPU 스레드 수")
    t.add_argument("--no-progress", action="store_true", help="진행 막대를 끈다")

    s = sub.add_parser("sample", help="체크포인트로 이미지 생성 / sample images from a checkpoint")
    s.add_argument("--checkpoint", required=True, help="체크포인트 (.safetensors), 'pretrained' 면 책의 사전 학습 모델")
    s.add_argument("--num", type=_positive_int, required=True, help="생성할 이미지 수")
    s.add_argument("--sampler", choices=SAMPLERS, default="ddpm")
    s.add_argument("--steps", type=_positive_int, help="DDIM 단계 수 (기본: T)")
    s.add_argument("--eta", type=float, default=0.0, help="DDIM 의 η (0..1)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=_positive_int, default=256, help="한 번에 생성할 이미지 수")
    s.add_argument("--no-clip", action="store_true", help="x̂_0 을 [−1, 1] 로 자르지 않는다")
    s.add_argument("--no-ema", action="store_true", help="EMA 대신 학습 가중치를 쓴다")
    s.add_argument("--out", help="uint8 배열 (N, H, W, C) 을 쓸 .npy 파일")
    s.add_argument("--grid", help="격자 PNG 파일")
    s.add_argument("--gif", help="샘플링 궤적 GIF 파일 (처음 최대 64장)")
    s.add_argument("--device", help="cuda, mps, cpu (기본: 자동)")
    s.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("export", help="학습 체크포인트에서 EMA 가중치만 뽑아 작은 파일로 / export EMA weights")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--out", required=True, help="출력 .safetensors")
    return p


def _cmd_train(a: argparse.Namespace) -> int:
    from .train import TrainConfig, train
    from .unet import UnetConfig

    unet_kwargs = {}
    if a.dim is not None:
        unet_kwargs["dim"] = a.dim
    if a.dim_mults is not None:
        unet_kwargs["dim_mults"] = a.dim_mults
    if a.block is not None:
        unet_kwargs["block_type"] = a.block
    if a.attention is not None:
        unet_kwargs["stage_attention"] = a.attention
    unet_cfg = UnetConfig.annotated(**unet_kwargs) if a.preset == "annotated" else UnetConfig(**unet_kwargs)
    cfg = TrainConfig(
        out_dir=a.out_dir, data_dir=a.data_dir, epochs=a.epochs, max_steps=a.max_steps, batch_size=a.batch_size,
        lr=a.lr, warmup_steps=a.warmup_steps, ema_decay=a.ema_decay, schedule=a.schedule, timesteps=a.timesteps,
        prediction_type=a.prediction, loss_type=a.loss, seed=a.seed, checkpoint_every=a.checkpoint_every,
        sample_every=a.sample_every, subset=a.subset, device=a.device, num_threads=a.threads,
        progress=not a.no_progress,
    )
    result = train(unet_cfg, cfg, resume=a.resume)
    print(f"[ddpm-ko] 학습 끝 / done: step {result['step']}, checkpoint {result['checkpoint']}")
    return 0


def _cmd_sample(a: argparse.Namespace) -> int:
    import numpy as np

    from .sampling import sample_images
    from .viz import save_gif, save_grid, to_uint8

    for opt in ("out", "gif", "grid"):
        path = getattr(a, opt)
        if path is not None:
            want = {"out": ".npy", "gif": ".gif", "grid": ".png"}[opt]
            if Path(path).suffix.lower() != want:
                raise ValueError(f"--{opt} 파일은 {want} 로 끝나야 한다 / --{opt} must end in {want}: {path}")
    if not (a.out or a.gif or a.grid):
        raise ValueError("--out, --grid, --gif 중 하나는 있어야 한다 / give at least one of --out, --grid, --gif")
    images, trajectory, meta = sample_images(
        a.checkpoint, a.num, sampler=a.sampler, steps=a.steps, eta=a.eta, seed=a.seed, clip_x0=not a.no_clip,
        use_ema=not a.no_ema, device=a.device, batch_size=a.batch_size, trajectory=bool(a.gif),
        progress=not a.no_progress,
    )
    if a.out:
        arr = to_uint8(images)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        np.save(a.out, arr)
        print(f"[ddpm-ko] {a.out}: uint8 {arr.shape}")
    if a.grid:
        save_grid(images[:256], a.grid, scale=2)
        print(f"[ddpm-ko] {a.grid}")
    if a.gif and trajectory is not None:
        save_gif(trajectory, a.gif)
        print(f"[ddpm-ko] {a.gif}: {trajectory.shape[0]} steps")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from .checkpoint import export_ema

    path = export_ema(a.checkpoint, a.out)
    print(f"[ddpm-ko] {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import DdpmKoError

    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"train": _cmd_train, "sample": _cmd_sample, "export": _cmd_export}
    try:
        return handlers[args.command](args)
    except (DdpmKoError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        msg = " ".join(str(e).split("\n")[0].split()) if not isinstance(e, FileNotFoundError) else " | ".join(
            line.strip() for line in str(e).splitlines() if line.strip())
        print(f"ddpm-ko: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ddpm-ko: 중단됨 / interrupted (마지막 체크포인트는 그대로다 / the last checkpoint is intact)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
