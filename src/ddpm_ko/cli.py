"""명령줄 도구 ``ddpm-ko`` (``python -m ddpm_ko`` 와 같다).

    ddpm-ko train  [--data-dir D] [--epochs N | --max-steps N] [--time-budget MINUTES] [--out-dir D]
                   [--checkpoint-every N] [--resume PATH] [--seed K] ...
    ddpm-ko train  --conditional [--init-from PATH|pretrained] [--p-uncond P] ...   (클래스 조건부, 11장)
    ddpm-ko sample [--checkpoint PATH|pretrained|pretrained-conditional] --num N
                   [--sampler ddpm|ddim|dpm-solver++|sde-dpm-solver++] [--steps S] [--eta E]
                   [--spacing karras|logsnr|time] [--label K|NAME|all] [--guidance W] [--seed K]
                   [--out FILE.npy] [--gif FILE.gif]
    ddpm-ko export --checkpoint PATH --out FILE.safetensors
    ddpm-ko export --checkpoint PATH|pretrained|pretrained-conditional --format onnx --out FILE.onnx
    ddpm-ko train-classifier [--out FILE.safetensors]      (평가용 특징 신경망, ddpm_ko.classifier)
    ddpm-ko evaluate --samples FILE.npy [--num N]          (특징 FID·KID·클래스 분포와 실제-실제 하한, ddpm_ko.evaluation)

책이 싣는 가중치 파일(사전 학습 모델, 평가용 분류기)은 ``--overwrite-shipped`` 를 주지 않으면 덮어쓰지 않는다.

``train --resume PATH`` 은 체크포인트에 저장된 학습 설정(배치 크기, 시드, 학습률, 데이터 …)을 그대로
이어 쓰고, 명령줄에 준 값만 바꾼다. 출력 디렉터리는 따로 주지 않으면 체크포인트가 있는 곳이다.
``torchrun --nproc_per_node N -m ddpm_ko train ...`` 으로 여러 프로세스 학습을 한다 (``--device cpu`` 면 gloo).

잘못된 인자나 파일은 한 줄 메시지와 0 이 아닌 종료 코드로 끝난다 (트레이스백 없음).

명령줄의 모든 argparse 는 이 모듈에 있다. 이 모듈을 들여오는 것은 ``python -m ddpm_ko`` (``__main__``) 와
콘솔 명령 ``ddpm-ko`` 뿐이고, 패키지의 다른 모듈은 이 모듈을 들여오지 않는다.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main", "build_parser", "shipped_files", "refuse_shipped_overwrite", "positive_int"]

DATA_DIR_HELP = "IDX 파일 디렉터리 (data folder; 기본: $DDPM_KO_DATA_DIR, Debian 경로, Hub 순)"
THREADS_HELP = "CPU 스레드 수 (CPU threads)"
NO_PROGRESS_HELP = "진행 막대를 끈다 (no progress bar)"
OVERWRITE_SHIPPED_HELP = "책이 싣는 가중치 파일을 덮어써도 된다 (allow replacing a shipped weight file)"


def shipped_files() -> list[Path]:
    """책이 싣는 가중치 파일과 그 JSON 사본의 경로 (사전 학습 모델, 평가용 분류기).

    위치는 패키지의 찾기 함수(``pretrained_path``, ``classifier_path``)가 정한다. 그래서 파일이
    저장소의 어디에 있든, 환경 변수로 다른 곳을 가리키든 같은 파일을 가리킨다. 찾지 못한 파일은 빠진다.
    """
    from .errors import DdpmKoError
    from .pretrained import classifier_path, pretrained_path

    found: list[Path] = []
    for locate in (pretrained_path, lambda: pretrained_path("conditional"), classifier_path):
        try:
            weights = locate()
        except DdpmKoError:
            continue
        found += [weights, weights.with_suffix(".json")]
    return found


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # 둘 중 하나가 없으면 경로로 비교한다
        return a.resolve() == b.resolve()


def refuse_shipped_overwrite(out: str | os.PathLike, allowed: bool = False) -> None:
    """``out`` (과 그 JSON 사본) 이 책이 싣는 파일이면 ``ValueError`` 를 낸다. ``allowed`` 면 그대로 둔다."""
    if allowed:
        return
    out = Path(out)
    targets = [out, out.with_suffix(".json")]
    for shipped in shipped_files():
        if any(_same_file(t, shipped) for t in targets):
            raise ValueError(
                f"책이 싣는 파일 {shipped} 을 덮어쓰지 않는다: 다른 --out 을 주거나, 정말 바꾸려면 "
                f"--overwrite-shipped 를 더하라 / refusing to overwrite the shipped file {shipped}: choose another "
                "--out, or add --overwrite-shipped to replace it"
            )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # 사용법 전체 대신 한 줄
        self.exit(
            2,
            f"ddpm-ko: error: {message} (see `ddpm-ko {self.prog.split()[-1]} --help`)\n"
            if " " in self.prog
            else f"ddpm-ko: error: {message} (see `ddpm-ko --help`)\n",
        )


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse 형을 만든다: ``minimum`` 이상의 정수."""

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"정수가 아니다 / not an integer: {s!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{minimum} 이상이어야 한다 / must be >= {minimum}, got {v}")
        return v

    return parse


#: argparse 형: 1 이상의 정수 (하위 명령들이 함께 쓴다)
positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _finite_float(allow_zero: bool):
    """argparse 형을 만든다: 유한한 양수 (``allow_zero`` 면 0 도)."""

    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"수가 아니다 / not a number: {s!r}") from None
        if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            message = (
                f"0 이상의 유한한 수여야 한다 / must be a finite number >= 0, got {v}"
                if allow_zero
                else f"유한한 양수여야 한다 / must be a finite number > 0, got {v}"
            )
            raise argparse.ArgumentTypeError(message)
        return v

    return parse


_positive_float = _finite_float(allow_zero=False)
_non_negative_float = _finite_float(allow_zero=True)


def _device(s: str) -> str:
    import torch

    try:
        torch.device(s)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"알 수 없는 장치 / unknown device {s!r}: use cpu, cuda, cuda:N or mps"
        ) from None
    return s


def _dim_mults(s: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(p) for p in s.replace(",", "-").split("-") if p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"예: 1-2-4 / expected e.g. 1-2-4, got {s!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"양의 정수들이어야 한다 / must be positive integers, got {s!r}")
    return vals


def build_parser() -> argparse.ArgumentParser:
    from .diffusion import LOSS_TYPES, PREDICTION_TYPES
    from .precision import PRECISIONS
    from .sampling import DEFAULT_SAMPLER, SAMPLERS
    from .schedules import SCHEDULES
    from .solvers import DEFAULT_SPACING, SPACINGS
    from .timestep_sampling import TIMESTEP_SAMPLINGS
    from .unet import ATTENTION_TYPES, BLOCK_TYPES

    p = _Parser(prog="ddpm-ko", description="DDPM 한국어 해설서의 학습·샘플링 도구 / train and sample the ddpm_ko DDPM")
    from . import __version__

    p.add_argument(
        "--version",
        action="version",
        version=f"ddpm_ko {__version__}",
        help="버전을 보이고 끝낸다 (show the version and exit)",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, help="하위 명령 (subcommand)")

    # 옵션 설명은 한국어 먼저, 괄호 안에 짧은 영어 풀이 (tests/test_cli_usability.py 가 모든 옵션을 검사한다)
    t = sub.add_parser("train", help="Fashion-MNIST 로 학습 / train on Fashion-MNIST")
    t.add_argument("--data-dir", help=DATA_DIR_HELP)
    g = t.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=_positive_float, help="학습 에폭 수, 소수 가능 (number of epochs)")
    g.add_argument(
        "--max-steps", type=positive_int, help="학습 스텝 수, 이어 학습이면 전체 스텝 수 (total training steps)"
    )
    t.add_argument(
        "--time-budget",
        type=_positive_float,
        metavar="MINUTES",
        help="시간 예산(분): 이 벽시계 시간 동안 학습하고, 학습률(코사인 감쇠)과 EMA 를 그 시간에 맞춘다. "
        "--epochs·--max-steps 를 함께 주면 그것이 상한이다 (학습률·EMA 도 둘 가운데 작은 쪽에 맞춘다). 이어 학습은 남은 시간만 학습한다 "
        "(training time budget in minutes)",
    )
    # 학습 설정의 기본값은 TrainConfig 가 정한다. 여기서 default 를 두지 않는 까닭은 --resume 때
    # 사용자가 실제로 준 값만 체크포인트에 저장된 설정을 덮어쓰게 하기 위해서다.
    t.add_argument(
        "--out-dir",
        help="체크포인트와 샘플을 쓸 디렉터리 (output folder; 기본 runs/default, 이어 학습이면 체크포인트의 디렉터리)",
    )
    t.add_argument(
        "--checkpoint-every", type=positive_int, help="몇 스텝마다 체크포인트를 쓸지 (checkpoint interval; 기본 500)"
    )
    t.add_argument(
        "--sample-every",
        type=_non_negative_int,
        help="몇 스텝마다 샘플 격자를 그릴지 (sample-grid interval; 기본 0: 끔)",
    )
    t.add_argument("--log-every", type=positive_int, help="몇 스텝마다 손실을 기록할지 (loss-log interval; 기본 50)")
    t.add_argument(
        "--resume",
        help="이어 학습할 체크포인트, .safetensors 또는 그 디렉터리 (checkpoint to resume). "
        "주지 않은 설정은 체크포인트 것을 쓴다",
    )
    t.add_argument("--seed", type=int, help="난수 시드 (random seed; 기본 0)")
    t.add_argument("--batch-size", type=positive_int, help="전역 배치 크기 (global batch size; 기본 64)")
    t.add_argument(
        "--micro-batch",
        type=positive_int,
        help="배치를 이 크기 이하의 조각으로 나눠 그래디언트를 모은다: 같은 학습, 더 적은 메모리 "
        "(gradient accumulation; 기본: 나누지 않음)",
    )
    t.add_argument("--lr", type=_positive_float, help="학습률 (learning rate; 기본 1e-3)")
    t.add_argument("--warmup-steps", type=_non_negative_int, help="학습률 워밍업 스텝 수 (LR warmup steps; 기본 200)")
    t.add_argument("--ema-decay", type=float, help="EMA 감쇠율 d, 0 <= d < 1 (EMA decay; 기본 0.999)")
    t.add_argument(
        "--ema-window",
        type=_positive_float,
        metavar="FRACTION",
        help="--time-budget 에서 EMA 평균 창 1/(1-d) 를 추정 전체 스텝 수의 이 몫으로 (EMA window as a fraction of "
        "the run, 0 < f <= 1; 기본 0.1; --ema-decay 대신)",
    )
    t.add_argument(
        "--lr-floor",
        type=_non_negative_float,
        metavar="FRACTION",
        help="--time-budget 에서 예산 끝의 학습률을 lr 의 이 몫으로 (LR at the end of the budget as a fraction of "
        "--lr, 0 <= f <= 1; 기본 0.1)",
    )
    t.add_argument("--schedule", choices=sorted(SCHEDULES), help="β 스케줄 (noise schedule; 기본 linear)")
    t.add_argument("--timesteps", type=positive_int, help="타임스텝 수 T (diffusion timesteps; 기본 1000)")
    t.add_argument("--prediction", choices=PREDICTION_TYPES, help="예측 대상 (prediction target; 기본 eps)")
    t.add_argument("--loss", choices=LOSS_TYPES, help="손실 (loss; 기본 l2 = L_simple)")
    t.add_argument(
        "--min-snr-gamma",
        type=_non_negative_float,
        metavar="GAMMA",
        help="Min-SNR-γ 손실 가중치의 γ, 0 이면 끈다 (loss weighting min(SNR, γ); 0 = plain L_simple)",
    )
    t.add_argument(
        "--timestep-sampling",
        choices=TIMESTEP_SAMPLINGS,
        help="학습 타임스텝 t 의 분포: uniform (DDPM) 또는 lognormal (절반을 EDM 의 로그 정규 분포에서 뽑아 노이즈가 "
        "작은 t 를 더 자주 본다), 10장 (training timestep distribution; 기본 uniform)",
    )
    t.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        help="학습 이미지를 무작위로 좌우 반전한다. 기본은 끔: Fashion-MNIST 의 신발은 한쪽만 보므로 반전한 "
        "이미지는 데이터에 없다, 10장 (random horizontal flip; default off)",
    )
    t.add_argument(
        "--preset",
        choices=["default", "annotated"],
        default="default",
        help="신경망 설정 (network preset): default (빠른 기본값) 또는 annotated "
        "(Annotated Diffusion 노트북과 같은 신경망)",
    )
    t.add_argument("--dim", type=positive_int, help="U-Net 단계 0 의 채널 수 (base channels)")
    t.add_argument("--dim-mults", type=_dim_mults, help="U-Net 단계별 채널 배수, 예: 1-2-4 (channel multipliers)")
    t.add_argument("--block", choices=BLOCK_TYPES, help="블록 종류 (block type)")
    t.add_argument("--attention", choices=ATTENTION_TYPES, help="U-Net 단계의 어텐션 종류 (stage attention)")
    t.add_argument("--subset", type=positive_int, help="학습 이미지 앞 N 장만 쓴다, 시험용 (use the first N images)")
    t.add_argument(
        "--device",
        type=_device,
        help="장치 (device): cuda, mps, cpu (기본: 자동). torchrun 아래에서 cpu 면 gloo 로 통신한다",
    )
    t.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    t.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="학습 정밀도 (training precision; 기본 auto: CUDA 면 bf16, bf16 이 없는 GPU 는 fp16 + 스케일러, "
        "CPU 는 fp32. CPU 에서 bf16 은 AVX512·AMX 가 있을 때만 고를 수 있다)",
    )
    t.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    t.add_argument(
        "--conditional",
        action="store_true",
        help="클래스 조건부 모델을 학습한다, 11장 (train a class-conditional model with label dropout)",
    )
    t.add_argument(
        "--p-uncond",
        type=float,
        help="조건부 학습에서 레이블을 ∅ 으로 바꿀 확률 (label-dropout probability; 기본 0.1)",
    )
    t.add_argument(
        "--label-lr-mult",
        type=_positive_float,
        help="레이블 임베딩 표의 학습률 배수 (learning-rate multiplier for the label embedding; 기본 20)",
    )
    t.add_argument(
        "--init-from",
        help="이 체크포인트(또는 'pretrained')의 가중치에서 새 옵티마이저로 시작한다: 미세 조정. 출발점은 체크포인트의 "
        "init_from_model 에 남는다 (fine-tune from a checkpoint's weights)",
    )

    s = sub.add_parser("sample", help="체크포인트로 이미지 생성 / sample images from a checkpoint")
    s.add_argument(
        "--checkpoint",
        default="pretrained",
        help="체크포인트 .safetensors (checkpoint); 기본 'pretrained' 는 책의 사전 학습 모델, "
        "'pretrained-conditional' 은 그 클래스 조건부 모델",
    )
    s.add_argument("--num", type=positive_int, required=True, help="생성할 이미지 수 (number of images)")
    s.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=DEFAULT_SAMPLER,
        help=f"샘플러 (sampler): {', '.join(SAMPLERS)} (기본 {DEFAULT_SAMPLER}, ddpm_ko.sampling.DEFAULT_SAMPLER)",
    )
    s.add_argument(
        "--steps",
        type=positive_int,
        help="신경망 호출 수 = 샘플링 스텝 수 (sampling steps): DDIM 기본 T, (SDE-)DPM-Solver++ 기본 "
        "ddpm_ko.solvers.DEFAULT_STEPS; DDPM 은 언제나 T",
    )
    s.add_argument("--eta", type=float, default=0.0, help="DDIM 의 η, 0..1 (DDIM eta; 기본 0)")
    s.add_argument(
        "--spacing",
        choices=SPACINGS,
        help=f"(SDE-)DPM-Solver++ 의 타임스텝 간격 (timestep spacing): {', '.join(SPACINGS)} "
        f"(기본 {DEFAULT_SPACING}, ddpm_ko.solvers.DEFAULT_SPACING)",
    )
    s.add_argument(
        "--label",
        help="조건부 모델로 그릴 클래스: 번호 0-9, 이름(dress, 드레스 …), 또는 all (클래스를 돌아가며) "
        "(class to draw: number, English/Korean name, or all)",
    )
    s.add_argument(
        "--guidance",
        type=float,
        help="분류기 없는 가이던스 w >= 0 (classifier-free guidance w; diffusers guidance_scale = 1 + w; "
        "기본 ddpm_ko.guidance.DEFAULT_GUIDANCE)",
    )
    s.add_argument("--seed", type=int, default=0, help="난수 시드 (random seed; 기본 0)")
    s.add_argument(
        "--batch-size", type=positive_int, default=256, help="한 번에 생성할 이미지 수 (batch size; 기본 256)"
    )
    s.add_argument("--no-clip", action="store_true", help="x̂_0 을 [−1, 1] 로 자르지 않는다 (no x0 clipping)")
    s.add_argument("--no-ema", action="store_true", help="EMA 대신 학습 가중치를 쓴다 (use raw weights)")
    s.add_argument("--out", help="uint8 배열 (N, H, W, C) 을 쓸 .npy 파일 (output array)")
    s.add_argument("--grid", help="격자 PNG 파일 (grid image)")
    s.add_argument("--gif", help="샘플링 궤적 GIF 파일, 처음 최대 16장 (trajectory GIF)")
    s.add_argument("--device", type=_device, help="장치 (device): cuda, mps, cpu (기본: 자동)")
    s.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)

    e = sub.add_parser("export", help="학습 체크포인트에서 EMA 가중치만 뽑아 작은 파일로 / export EMA weights")
    e.add_argument(
        "--checkpoint",
        required=True,
        help="학습 체크포인트 .safetensors; --format onnx 면 'pretrained' (책의 사전 학습 모델)나 "
        "'pretrained-conditional' (클래스 조건부 모델, ONNX 입력 labels 가 더해진다)도 된다 (checkpoint to export)",
    )
    e.add_argument("--out", required=True, help="출력 파일: .safetensors, --format onnx 면 .onnx (output file)")
    e.add_argument(
        "--format",
        choices=["safetensors", "onnx"],
        default="safetensors",
        help="파일 형식 (file format): safetensors, 또는 브라우저·onnxruntime 용 U-Net 인 onnx "
        '(ddpm_ko.onnx_export, pip install "ddpm_ko[onnx]")',
    )
    e.add_argument("--overwrite-shipped", action="store_true", help=OVERWRITE_SHIPPED_HELP)
    _add_evaluation_commands(sub)
    return p


def _add_evaluation_commands(sub: argparse._SubParsersAction) -> None:
    """``train-classifier`` 와 ``evaluate`` 하위 명령 (평가용 분류기와 FID·KID)."""
    from .pretrained import CLASSIFIER_NAME

    # 기본 출력은 책이 싣는 파일이 아니라 실행 디렉터리다 (``train`` 의 runs/… 처럼)
    default_out = f"runs/classifier/{CLASSIFIER_NAME}"
    c = sub.add_parser("train-classifier", help="평가용 Fashion-MNIST 분류기 학습 / train the evaluation classifier")
    c.add_argument("--data-dir", help=DATA_DIR_HELP)
    c.add_argument(
        "--out",
        default=default_out,
        help=f"출력 .safetensors (output file; 기본 {default_out}). 책이 싣는 분류기는 "
        "--overwrite-shipped 없이는 덮어쓰지 않는다",
    )
    c.add_argument("--overwrite-shipped", action="store_true", help=OVERWRITE_SHIPPED_HELP)
    c.add_argument("--epochs", type=positive_int, default=3, help="에폭 수 (epochs; 기본 3)")
    c.add_argument("--seed", type=int, default=0, help="난수 시드 (random seed; 기본 0)")
    c.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    c.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)

    e = sub.add_parser("evaluate", help="생성한 이미지의 FID·KID·클래스 분포 / evaluate samples (FID, KID, classes)")
    e.add_argument("--samples", required=True, help="`ddpm-ko sample --out` 이 쓴 uint8 .npy 파일 (samples file)")
    e.add_argument("--num", type=positive_int, help="앞에서부터 이만큼만 평가 (evaluate the first N; 기본: 전부)")
    e.add_argument("--classifier", help=f"분류기 .safetensors (classifier; 기본: 책이 싣는 {CLASSIFIER_NAME})")
    e.add_argument(
        "--seed",
        type=int,
        default=0,
        help="바닥값의 진짜 이미지와 KID 부분집합을 뽑는 시드 (seed for the floor and KID subsets)",
    )
    e.add_argument("--json", help="결과를 쓸 .json 파일 (write the report as JSON)")
    e.add_argument("--data-dir", help=DATA_DIR_HELP)
    e.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)


def _cmd_train(a: argparse.Namespace) -> int:
    from .train import TrainConfig, resume_config, train
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
    given = {
        "out_dir": a.out_dir,
        "data_dir": a.data_dir,
        "epochs": a.epochs,
        "max_steps": a.max_steps,
        "time_budget": a.time_budget,
        "batch_size": a.batch_size,
        "micro_batch": a.micro_batch,
        "lr": a.lr,
        "warmup_steps": a.warmup_steps,
        "ema_decay": a.ema_decay,
        "ema_window": a.ema_window,
        "lr_floor": a.lr_floor,
        "schedule": a.schedule,
        "timesteps": a.timesteps,
        "prediction_type": a.prediction,
        "loss_type": a.loss,
        "timestep_sampling": a.timestep_sampling,
        "seed": a.seed,
        "checkpoint_every": a.checkpoint_every,
        "sample_every": a.sample_every,
        "log_every": a.log_every,
        "subset": a.subset,
        "device": a.device,
        "num_threads": a.threads,
        "precision": a.precision,
        "p_uncond": a.p_uncond,
        "label_lr_mult": a.label_lr_mult,
        "init_from": a.init_from,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if a.min_snr_gamma is not None:
        given["min_snr_gamma"] = a.min_snr_gamma or None  # 0 은 가중치를 끈다
    if a.flip is not None:
        given["flip"] = a.flip
    given["progress"] = not a.no_progress
    if a.conditional:
        given["conditional"] = True
    if a.resume is not None:
        # 주지 않은 설정은 체크포인트에 저장된 값 그대로: 같은 배치·시드·학습률로 원래 곡선을 잇는다
        cfg = resume_config(a.resume, given)
        if not unet_kwargs and a.preset == "default":
            unet_cfg = None  # 신경망 설정도 체크포인트 것 (주었으면 Trainer 가 무시한다고 알린다)
    else:
        cfg = TrainConfig(**given)
    # 시간 예산에 맞춰 EMA 와 학습률을 정하는 옵션: 예산 없이 주면 아무 일도 하지 않으므로 학습 전에 거부한다
    budget_only = [
        flag for flag, value in (("--ema-window", a.ema_window), ("--lr-floor", a.lr_floor)) if value is not None
    ]
    if budget_only and cfg.time_budget is None:
        flags = ", ".join(budget_only)
        raise ValueError(
            f"{flags}: --time-budget 과 함께 쓰는 옵션이다. 예산이 없으면 EMA 는 --ema-decay 로 정하고, 학습률은 워밍업 뒤 "
            f"일정하다 / {flags} only apply with --time-budget; without a budget set --ema-decay, and the LR is "
            "constant after warm-up"
        )
    result = train(unet_cfg, cfg, resume=a.resume)
    end = result.get("end") or {}
    if end.get("reason") == "signal":  # 신호를 받아 그 학습 스텝을 마치고 저장한 뒤 멈췄다
        print(
            f"ddpm-ko: 중단됨 / interrupted by {end['signal']} at step {end['step']} of {end['target_steps']}; "
            f"이어 하려면 / resume with: ddpm-ko train --resume {result['checkpoint']}",
            file=sys.stderr,
        )
        return 128 + int(getattr(signal, end["signal"]))
    if int(os.environ.get("RANK", "0")) == 0:  # 분산 학습이면 rank 0 만 말한다
        why = f" (time budget, {result['wall_time_s']:.0f}s)" if end.get("reason") == "time_budget" else ""
        print(f"[ddpm-ko] 학습 끝 / done: step {result['step']}{why}, checkpoint {result['checkpoint']}")
    return 0


def _cmd_sample(a: argparse.Namespace) -> int:
    import numpy as np

    from .generate import sample_images
    from .viz import save_gif, save_grid, to_uint8

    for opt in ("out", "gif", "grid"):
        path = getattr(a, opt)
        if path is not None:
            want = {"out": ".npy", "gif": ".gif", "grid": ".png"}[opt]
            if Path(path).suffix.lower() != want:
                raise ValueError(f"--{opt} 파일은 {want} 로 끝나야 한다 / --{opt} must end in {want}: {path}")
    if not (a.out or a.gif or a.grid):
        raise ValueError("--out, --grid, --gif 중 하나는 있어야 한다 / give at least one of --out, --grid, --gif")
    labels = _labels_from_arg(a.label, a.num)
    if a.guidance is not None and labels is None:
        raise ValueError("--guidance 에는 --label 이 필요하다 / --guidance needs --label (a conditional model)")
    with warnings.catch_warnings():
        # 경고(예: 간격이 겹쳐 스텝이 준다)는 파일 위치와 소스 줄 없이 한 줄로
        warnings.showwarning = lambda message, *_args, **_kw: print(f"ddpm-ko: warning: {message}", file=sys.stderr)
        images, trajectory, _meta = sample_images(
            a.checkpoint,
            a.num,
            sampler=a.sampler,
            steps=a.steps,
            eta=a.eta,
            spacing=a.spacing,
            seed=a.seed,
            clip_x0=not a.no_clip,
            use_ema=not a.no_ema,
            device=a.device,
            batch_size=a.batch_size,
            trajectory=bool(a.gif),
            progress=not a.no_progress,
            labels=labels,
            guidance=a.guidance,
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
        # 노이즈 프레임은 거의 압축되지 않으므로 처음 16장(4×4)만 GIF 로 만든다 (수 MB 이내)
        save_gif(trajectory[:, :16], a.gif, nrow=4)
        print(f"[ddpm-ko] {a.gif}: {trajectory.shape[0]} frames of {min(16, trajectory.shape[1])} images")
    return 0


def _labels_from_arg(spec: str | None, num: int):
    """``--label`` 값 → 이미지마다의 레이블 (num,) 또는 ``None``. ``all`` 이면 0, 1, …, 9, 0, 1, … 로 돌아간다."""
    if spec is None:
        return None
    import torch

    from .conditioning import NUM_CLASSES, parse_label

    if spec.strip().lower() in ("all", "전부", "모두"):
        return torch.arange(num) % NUM_CLASSES
    return torch.full((num,), parse_label(spec), dtype=torch.long)


def _cmd_export(a: argparse.Namespace) -> int:
    from .checkpoint import export_ema

    if a.format == "onnx":
        from .onnx_export import export_onnx

        print(f"[ddpm-ko] {export_onnx(a.checkpoint, a.out)}")
        return 0
    if Path(a.out).suffix != ".safetensors":
        raise ValueError(f"--out 파일은 .safetensors 로 끝나야 한다 / --out must end in .safetensors: {a.out}")
    refuse_shipped_overwrite(a.out, a.overwrite_shipped)
    path = export_ema(a.checkpoint, a.out)
    print(f"[ddpm-ko] {path}")
    return 0


def _cmd_train_classifier(a: argparse.Namespace) -> int:
    from . import classifier

    if Path(a.out).suffix != ".safetensors":
        raise ValueError(f"--out 은 .safetensors 로 끝나야 한다 / --out must end in .safetensors: {a.out}")
    refuse_shipped_overwrite(a.out, a.overwrite_shipped)  # 몇 분 학습하기 전에 알린다
    _, info = classifier.train_classifier(
        a.out, data_dir=a.data_dir, epochs=a.epochs, seed=a.seed, threads=a.threads, progress=not a.no_progress
    )
    print(f"[ddpm-ko] 분류기 / classifier: {a.out} (test accuracy {info['test_accuracy']:.4f})")
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    import json

    from . import evaluation

    if a.json is not None and Path(a.json).suffix.lower() != ".json":
        raise ValueError(f"--json 파일은 .json 으로 끝나야 한다 / --json must end in .json: {a.json}")
    result = evaluation.evaluate(
        a.samples, num=a.num, seed=a.seed, classifier=a.classifier, data_dir=a.data_dir, progress=not a.no_progress
    )
    print(evaluation.format_report(result))
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"[ddpm-ko] {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import DdpmKoError
    from .sampling import is_out_of_memory

    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "train": _cmd_train,
        "sample": _cmd_sample,
        "export": _cmd_export,
        "train-classifier": _cmd_train_classifier,
        "evaluate": _cmd_evaluate,
    }
    rank = f"[rank {os.environ.get('RANK')}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    try:
        return handlers[args.command](args)
    except (DdpmKoError, ValueError, OSError) as e:
        # OSError: 없는 파일·디렉터리, 권한, 디스크 가득 참 등 사용자가 고칠 수 있는 문제
        msg = (
            " ".join(str(e).split("\n")[0].split())
            if not isinstance(e, FileNotFoundError)
            else " | ".join(line.strip() for line in str(e).splitlines() if line.strip())
        )
        print(f"ddpm-ko: error: {rank}{msg}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if not is_out_of_memory(e):
            raise  # 그 밖의 RuntimeError 는 버그이므로 트레이스백을 그대로 보인다
        print(
            f"ddpm-ko: error: {rank}장치 메모리가 모자라다; --batch-size 를 줄여라 / out of memory: "
            "use a smaller --batch-size",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(
            "ddpm-ko: 중단됨 / interrupted (마지막 체크포인트는 그대로다 / the last checkpoint is intact)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
