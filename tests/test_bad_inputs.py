"""잘못된 입력 검사: 시도한 나쁜 입력을 모두 표(table)로 적고, 하나하나가 한 줄짜리 분명한 메시지로 끝나는지 본다.

- 명령줄(CLI): 0 이 아닌 종료 코드, 표준 오류에 ``ddpm-ko: error: ...`` 한 줄, 트레이스백 없음.
- API: 정해진 예외 종류와 메시지 조각.
- 체크포인트: 어떤 파일을 주어도 피클을 풀지 않고 ``CheckpointError`` 하나로 끝난다.

표의 CLI 사례는 속도를 위해 ``main(argv)`` 를 이 프로세스에서 부른다 (잡히지 않은 예외는 곧 트레이스백이므로
검사가 실패한다). 진짜 ``python -m ddpm_ko`` 진입점은 대표 사례 몇 개로 따로 확인한다.
"""

from __future__ import annotations

import ast
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import TINY_TRAIN_FLAGS, write_idx
from ddpm_ko.checkpoint import export_ema, load_model_from_checkpoint, read_checkpoint, save_checkpoint
from ddpm_ko.data import DataNotFoundError, ImageBatches, fashion_mnist_arrays, read_idx
from ddpm_ko.diffusion import GaussianDiffusion
from ddpm_ko.errors import CheckpointError
from ddpm_ko.generate import sample_images
from ddpm_ko.sampling import sample_with_oom_retry
from ddpm_ko.schedules import beta_schedule
from ddpm_ko.train import TrainConfig, Trainer
from ddpm_ko.unet import Unet, UnetConfig

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


# ---------------------------------------------------------------------------------------------- 준비물
IMG, LBL = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def _data_dir(
    root: Path, name: str, images: bytes | np.ndarray | None, labels: np.ndarray | None, image_name: str = IMG
) -> Path:
    d = root / name
    d.mkdir()
    if isinstance(images, np.ndarray):
        write_idx(d / image_name, images)
    elif images is not None:
        (d / image_name).write_bytes(images)
    if labels is not None:
        write_idx(d / LBL, labels)
    return d


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (2, 2)).save(buf, format="PNG")
    return buf.getvalue()


class _Exploit:
    """풀면(unpickle) 표시 디렉터리를 만드는 피클. 불러오기가 피클을 풀지 않는다는 증거로 쓴다."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.fixture(scope="module")
def paths(tmp_path_factory, fake_train_dir) -> SimpleNamespace:
    """표의 자리표시자({ckpt}, {bad_magic} …)에 들어갈 파일과 디렉터리."""
    from ddpm_ko.cli import main

    root = tmp_path_factory.mktemp("bad_inputs")
    rng = np.random.default_rng(0)
    ten = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    ten_labels = rng.integers(0, 10, 10, dtype=np.uint8)
    p = SimpleNamespace(root=root)
    # --- Fashion-MNIST 디렉터리들
    p.good_data = fake_train_dir
    p.empty_dir = _data_dir(root, "empty", None, None)
    p.no_labels = _data_dir(root, "no_labels", ten, None)
    header = struct.pack(">III", 60000, 28, 28)
    p.bad_magic = _data_dir(root, "bad_magic", b"\x08\x03\x00\x00" + header + bytes(100), ten_labels)
    p.png_as_idx = _data_dir(root, "png_as_idx", _tiny_png(), ten_labels)
    p.wrong_length = _data_dir(root, "wrong_length", b"\x00\x00\x08\x03" + header + bytes(1000), ten_labels)
    p.truncated_header = _data_dir(root, "truncated_header", b"\x00\x00\x08\x03\x00\x00\xea", ten_labels)
    p.bad_gzip = _data_dir(root, "bad_gzip", b"this is not gzip data", ten_labels, image_name=IMG + ".gz")
    p.wrong_count = _data_dir(root, "wrong_count", ten, ten_labels)
    p.wrong_shape = _data_dir(root, "wrong_shape", rng.integers(0, 256, (10, 32, 32), dtype=np.uint8), ten_labels)
    p.label_mismatch = _data_dir(root, "label_mismatch", ten, ten_labels[:5])
    # --- 체크포인트들: 작은 학습 체크포인트 (T = 50) 하나와 그것을 망가뜨린 것들
    n = torch.get_num_threads()
    try:
        args = ["train", "--data-dir", str(p.good_data), "--subset", "16", *TINY_TRAIN_FLAGS, "--max-steps", "1"]
        assert main([*args, "--no-progress", "--out-dir", str(root / "run")]) == 0
    finally:
        torch.set_num_threads(n)
    p.ckpt = root / "run" / "checkpoint.safetensors"
    p.export = export_ema(p.ckpt, root / "exported.safetensors")
    p.out = root / "samples.npy"
    return p


def make_bad_checkpoint(kind: str, p: SimpleNamespace, where: Path) -> Path:
    """``kind`` 이름의 잘못된 체크포인트 파일을 ``where`` 에 만든다."""
    good = p.ckpt.read_bytes()
    target = where / "bad.safetensors"
    if kind == "missing":
        return where / "does_not_exist.safetensors"
    if kind == "directory-without-checkpoint":
        (where / "empty_run").mkdir()
        return where / "empty_run"
    if kind == "empty-file":
        target.write_bytes(b"")
    elif kind == "truncated-half":
        target.write_bytes(good[: len(good) // 2])
    elif kind == "truncated-last-bytes":
        target.write_bytes(good[:-7])
    elif kind == "png-renamed":
        target.write_bytes(_tiny_png())
    elif kind == "pickle-renamed":
        target.write_bytes(pickle.dumps({"model": _Exploit(where / "PWNED")}))
    elif kind == "torch-save-renamed":
        torch.save({"model.w": torch.ones(2), "evil": _Exploit(where / "PWNED")}, target)
    elif kind == "garbage-header":
        target.write_bytes(struct.pack("<Q", 40) + b"{not json at all, just bytes.........}" + bytes(64))
    elif kind in ("plain-safetensors", "metadata-not-json", "config-mismatch", "invalid-config"):
        from safetensors.torch import save_file

        tensors, meta = read_checkpoint(p.ckpt)
        if kind == "plain-safetensors":  # 다른 도구가 만든 safetensors: ddpm_ko 메타데이터 없음
            save_file({"weight": torch.ones(3)}, str(target))
        elif kind == "metadata-not-json":
            save_file({"weight": torch.ones(3)}, str(target), metadata={"ddpm_ko": "{'format': broken"})
        elif kind == "config-mismatch":  # 설정은 dim 16 이라고 하는데 가중치는 dim 8
            meta["unet"]["dim"] = 16
            save_checkpoint(target, tensors, meta)
        else:
            meta["unet"]["dim_mults"] = "wide"
            save_checkpoint(target, tensors, meta)
    else:  # pragma: no cover
        raise AssertionError(kind)
    return target


CORRUPT = "corrupt or not a safetensors file"
#: (종류, 기대하는 메시지 조각). 같은 파일을 API 와 ``sample``, ``export``, ``train --resume`` 에 모두 넣어 본다.
BAD_CHECKPOINTS = [
    ("missing", "checkpoint not found"),
    ("directory-without-checkpoint", "checkpoint not found"),
    ("empty-file", CORRUPT),
    ("truncated-half", CORRUPT),
    ("truncated-last-bytes", CORRUPT),
    ("png-renamed", CORRUPT),
    ("pickle-renamed", CORRUPT),
    ("torch-save-renamed", CORRUPT),
    ("garbage-header", CORRUPT),
    ("plain-safetensors", "not a ddpm_ko checkpoint"),
    ("metadata-not-json", "corrupt checkpoint metadata"),
    ("config-mismatch", "do not match the model config"),
    ("invalid-config", "invalid config in checkpoint"),
]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``ddpm-ko`` 을 이 프로세스에서 실행한다. 잡히지 않은 예외는 그대로 올라가 검사를 실패시킨다."""
    from ddpm_ko.cli import main

    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse 의 사용법 오류
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out: str, err: str, fragment: str) -> None:
    assert code not in (0, None), f"성공으로 끝났다: {out}{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"오류가 한 줄이 아니다:\n{err}"
    assert lines[0].startswith("ddpm-ko: error: "), lines[0]
    assert fragment in lines[0], f"{fragment!r} 가 메시지에 없다: {lines[0]}"
    assert "Traceback" not in out + err


# ---------------------------------------------------------------------------------------------- CLI 표
TINY = ["--subset", "16", *TINY_TRAIN_FLAGS, "--max-steps", "1", "--no-progress", "--out-dir", "{root}/never"]
GOOD = ["--data-dir", "{good_data}"]
SAMPLE = ["sample", "--checkpoint", "{ckpt}", "--num", "2", "--out", "{out}", "--device", "cpu", "--no-progress"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA 가 없는 기계에서만 의미가 있다")

#: (이름, 인자, 기대하는 메시지 조각). 시도한 나쁜 입력 전부.
CLI_CASES = [
    # 명령 자체
    ("no-command", [], "the following arguments are required: command"),
    ("unknown-command", ["fly"], "invalid choice: 'fly'"),
    ("unknown-option", ["train", "--learning-rate", "1"], "unrecognized arguments: --learning-rate"),
    # 양수가 아닌 단계·개수
    ("train-max-steps-0", ["train", "--max-steps", "0"], "must be >= 1, got 0"),
    ("train-max-steps-negative", ["train", "--max-steps", "-3"], "must be >= 1, got -3"),
    ("train-max-steps-text", ["train", "--max-steps", "ten"], "not an integer: 'ten'"),
    ("train-epochs-0", ["train", "--epochs", "0"], "must be a finite number > 0"),
    ("train-time-budget-0", ["train", "--time-budget", "0"], "must be a finite number > 0, got 0.0"),
    ("train-time-budget-negative", ["train", "--time-budget=-5"], "must be a finite number > 0, got -5.0"),
    ("train-time-budget-nan", ["train", "--time-budget", "nan"], "must be a finite number > 0, got nan"),
    ("train-time-budget-text", ["train", "--time-budget", "20m"], "not a number: '20m'"),
    ("train-epochs-and-max-steps", ["train", "--epochs", "1", "--max-steps", "5"], "not allowed with argument"),
    ("train-batch-size-0", ["train", "--batch-size", "0"], "must be >= 1, got 0"),
    ("train-micro-batch-0", ["train", "--micro-batch", "0"], "must be >= 1, got 0"),
    ("train-timesteps-0", ["train", "--timesteps", "0"], "must be >= 1, got 0"),
    ("train-timesteps-1", ["train", *GOOD, *TINY, "--timesteps", "1"], "timesteps must be >= 2"),
    ("train-checkpoint-every-0", ["train", "--checkpoint-every", "0"], "must be >= 1, got 0"),
    ("train-log-every-0", ["train", "--log-every", "0"], "must be >= 1, got 0"),
    ("train-sample-every-negative", ["train", "--sample-every", "-5"], "must be >= 0, got -5"),
    ("train-warmup-negative", ["train", "--warmup-steps", "-1"], "must be >= 0, got -1"),
    ("train-subset-0", ["train", "--subset", "0"], "must be >= 1, got 0"),
    ("train-threads-0", ["train", "--threads", "0"], "must be >= 1, got 0"),
    ("train-dim-0", ["train", "--dim", "0"], "must be >= 1, got 0"),
    ("train-dim-too-small", ["train", *GOOD, *TINY, "--dim", "2"], "dim must be >= 4"),
    # 학습률과 EMA
    ("train-lr-0", ["train", "--lr", "0"], "must be a finite number > 0"),
    ("train-lr-negative", ["train", "--lr=-1e-3"], "must be a finite number > 0"),
    ("train-lr-inf", ["train", "--lr", "inf"], "must be a finite number > 0"),
    ("train-lr-nan", ["train", "--lr", "nan"], "must be a finite number > 0"),
    ("train-lr-text", ["train", "--lr", "fast"], "not a number: 'fast'"),
    ("train-ema-decay-1", ["train", *GOOD, *TINY, "--ema-decay", "1"], "ema_decay must be in [0, 1)"),
    ("train-ema-decay-negative", ["train", *GOOD, *TINY, "--ema-decay", "-0.5"], "ema_decay must be in [0, 1)"),
    # 알 수 없는 이름
    ("train-unknown-schedule", ["train", "--schedule", "cosin"], "invalid choice: 'cosin'"),
    ("train-unknown-loss", ["train", "--loss", "l3"], "invalid choice: 'l3'"),
    ("train-unknown-prediction", ["train", "--prediction", "noise"], "invalid choice: 'noise'"),
    ("train-unknown-block", ["train", "--block", "vit"], "invalid choice: 'vit'"),
    ("train-unknown-attention", ["train", "--attention", "flash"], "invalid choice: 'flash'"),
    ("train-unknown-preset", ["train", "--preset", "huge"], "invalid choice: 'huge'"),
    ("train-unknown-device", ["train", "--device", "tpu"], "unknown device 'tpu'"),
    pytest.param(
        "train-cuda-missing",
        ["train", *GOOD, *TINY, "--device", "cuda"],
        "CUDA is not available",
        marks=NO_CUDA,
        id="train-cuda-missing",
    ),
    # U-Net 이 받을 수 없는 이미지 크기 (28 은 2^(단계 수 − 1) 로 나누어져야 한다)
    (
        "train-image-size-vs-dim-mults",
        ["train", *GOOD, *TINY, "--dim-mults", "1-2-2-2"],
        "image_size 28 must be divisible by 8",
    ),
    (
        "train-image-size-vs-5-stages",
        ["train", *GOOD, *TINY, "--dim-mults", "1-1-1-1-1"],
        "image_size 28 must be divisible by 16",
    ),
    ("train-dim-mults-zero", ["train", "--dim-mults", "1-0-2"], "must be positive integers"),
    ("train-dim-mults-text", ["train", "--dim-mults", "one-two"], "expected e.g. 1-2-4"),
    # 데이터
    (
        "train-subset-smaller-than-batch",
        ["train", *GOOD, *TINY, "--subset", "4"],
        "not enough images (4) for one batch of 8",
    ),
    ("data-dir-does-not-exist", ["train", "--data-dir", "{root}/nowhere", *TINY], "no such directory"),
    ("data-dir-empty", ["train", "--data-dir", "{empty_dir}", *TINY], "missing files"),
    ("data-labels-missing", ["train", "--data-dir", "{no_labels}", *TINY], "train-labels-idx1-ubyte[.gz]"),
    ("data-bad-magic", ["train", "--data-dir", "{bad_magic}", *TINY], "bad IDX magic number"),
    ("data-png-instead-of-idx", ["train", "--data-dir", "{png_as_idx}", *TINY], "bad IDX magic number"),
    ("data-wrong-length", ["train", "--data-dir", "{wrong_length}", *TINY], "wrong IDX data length"),
    ("data-truncated-header", ["train", "--data-dir", "{truncated_header}", *TINY], "truncated IDX header"),
    ("data-bad-gzip", ["train", "--data-dir", "{bad_gzip}", *TINY], "cannot read IDX file"),
    ("data-wrong-image-count", ["train", "--data-dir", "{wrong_count}", *TINY], "expected 60000 images, got 10"),
    ("data-wrong-image-shape", ["train", "--data-dir", "{wrong_shape}", *TINY], "not 28x28 uint8 images"),
    ("data-label-count-mismatch", ["train", "--data-dir", "{label_mismatch}", *TINY], "image/label count mismatch"),
    # 이어 학습
    ("resume-missing", ["train", "--resume", "{root}/nope.safetensors"], "checkpoint not found"),
    ("resume-from-export", ["train", "--resume", "{export}"], "has no optimizer state"),
    (
        "resume-batch-not-divisible-by-epoch",
        ["train", "--resume", "{ckpt}", "--batch-size", "16", "--subset", "16", "--max-steps", "3", "--threads", "1"],
        "batch index out of range",
    ),
    # 샘플링
    # --checkpoint 를 빼면 책의 사전 학습 모델이다. 출력이 없으면 모델을 읽기 전에 알린다
    ("sample-no-output", ["sample", "--num", "2"], "give at least one of --out, --grid, --gif"),
    ("sample-missing-num", ["sample", "--checkpoint", "{ckpt}"], "the following arguments are required: --num"),
    ("sample-num-0", ["sample", "--checkpoint", "{ckpt}", "--num", "0", "--out", "{out}"], "must be >= 1, got 0"),
    (
        "sample-num-negative",
        ["sample", "--checkpoint", "{ckpt}", "--num", "-4", "--out", "{out}"],
        "must be >= 1, got -4",
    ),
    ("sample-steps-0", [*SAMPLE, "--sampler", "ddim", "--steps", "0"], "must be >= 1, got 0"),
    ("sample-batch-size-0", [*SAMPLE, "--batch-size", "0"], "must be >= 1, got 0"),
    ("sample-ddim-steps-greater-than-T", [*SAMPLE, "--sampler", "ddim", "--steps", "51"], "DDIM steps cannot exceed T"),
    ("sample-ddpm-with-steps", [*SAMPLE, "--sampler", "ddpm", "--steps", "10"], "the DDPM sampler always runs T steps"),
    ("sample-unknown-sampler", [*SAMPLE, "--sampler", "ddim2"], "invalid choice: 'ddim2'"),
    ("sample-eta-above-1", [*SAMPLE, "--sampler", "ddim", "--eta", "2"], "eta must be in [0, 1], got 2.0"),
    ("sample-eta-negative", [*SAMPLE, "--sampler", "ddim", "--eta", "-0.1"], "eta must be in [0, 1]"),
    ("sample-eta-nan", [*SAMPLE, "--sampler", "ddim", "--eta", "nan"], "eta must be in [0, 1], got nan"),
    ("sample-unknown-device", [*SAMPLE, "--device", "gpu0"], "unknown device 'gpu0'"),
    (
        "sample-out-not-npy",
        ["sample", "--checkpoint", "{ckpt}", "--num", "1", "--out", "{root}/x.png"],
        "--out must end in .npy",
    ),
    (
        "sample-grid-not-png",
        ["sample", "--checkpoint", "{ckpt}", "--num", "1", "--grid", "{root}/x.jpg"],
        "--grid must end in .png",
    ),
    (
        "sample-gif-not-gif",
        ["sample", "--checkpoint", "{ckpt}", "--num", "1", "--gif", "{root}/x.mp4"],
        "--gif must end in .gif",
    ),
    (
        "sample-no-output",
        ["sample", "--checkpoint", "{ckpt}", "--num", "1"],
        "give at least one of --out, --grid, --gif",
    ),
    (
        "sample-checkpoint-missing",
        ["sample", "--checkpoint", "{root}/nope.safetensors", "--num", "1", "--out", "{out}"],
        "checkpoint not found",
    ),
    # 내보내기
    (
        "export-missing-checkpoint",
        ["export", "--checkpoint", "{root}/nope.safetensors", "--out", "{root}/e.safetensors"],
        "checkpoint not found",
    ),
    (
        "export-out-not-safetensors",
        ["export", "--checkpoint", "{ckpt}", "--out", "{root}/e.pt"],
        "--out must end in .safetensors",
    ),
]


def _fill(args: list[str], p: SimpleNamespace) -> list[str]:
    return [a.format(**{k: str(v) for k, v in vars(p).items()}) for a in args]


@pytest.mark.parametrize(
    "name,args,fragment", [pytest.param(*c, id=c[0]) if type(c) is tuple else c for c in CLI_CASES]
)
def test_cli_rejects_bad_input_with_one_line(name, args, fragment, paths, capsys):
    code, out, err = run_cli(_fill(args, paths), capsys)
    assert_one_line_error(code, out, err, fragment)
    assert not (paths.root / "never").exists(), "잘못된 입력인데 학습 디렉터리를 만들었다"


# 진짜 진입점: 하위 프로세스로 대표 사례 몇 개
@pytest.mark.parametrize(
    "args,fragment",
    [
        pytest.param(["train", "--max-steps", "0"], "must be >= 1", id="argparse"),
        pytest.param(["train", "--data-dir", "{bad_magic}", *TINY], "bad IDX magic number", id="corrupt-data"),
        pytest.param(
            ["sample", "--checkpoint", "{ckpt}.png", "--num", "1", "--out", "{out}"],
            "checkpoint not found",
            id="missing-checkpoint",
        ),
    ],
)
def test_real_entry_point_prints_one_line_without_traceback(args, fragment, paths):
    env = dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ddpm_ko", *_fill(args, paths)], capture_output=True, text=True, env=env, timeout=120
    )
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, fragment)


# ---------------------------------------------------------------------------------------------- 체크포인트 표
@pytest.mark.parametrize("kind,fragment", [pytest.param(*c, id=c[0]) for c in BAD_CHECKPOINTS])
def test_bad_checkpoint_gives_one_clear_error(kind, fragment, paths, tmp_path, capsys):
    bad = make_bad_checkpoint(kind, paths, tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_model_from_checkpoint(bad)
    assert fragment in str(info.value)
    with pytest.raises(CheckpointError, match=fragment.replace(".", r"\.")):
        sample_images(bad, 1)
    for argv in (
        ["sample", "--checkpoint", str(bad), "--num", "1", "--out", str(tmp_path / "s.npy"), "--no-progress"],
        ["export", "--checkpoint", str(bad), "--out", str(tmp_path / "e.safetensors")],
    ):
        assert_one_line_error(*run_cli(argv, capsys), fragment)
    code, out, err = run_cli(["train", "--resume", str(bad), "--threads", "1", "--no-progress"], capsys)
    assert_one_line_error(code, out, err, fragment)
    assert not (tmp_path / "PWNED").exists(), "체크포인트를 불러오다 피클을 풀었다 (임의 코드 실행)"


def test_exploit_pickle_really_would_run(tmp_path):
    """위 검사의 대조군: 표시 파일을 만드는 피클은 풀면 정말 표시를 만든다."""
    pickle.loads(pickle.dumps(_Exploit(tmp_path / "PWNED")))
    assert (tmp_path / "PWNED").exists()


def test_source_never_unpickles():
    """src 어디에도 피클을 푸는 호출이 없다: ``torch.load`` 는 ``weights_only=True`` 와 함께만, pickle·
    ``allow_pickle=True``·``torch.jit.load`` 는 아예 없다."""
    problems: list[str] = []
    files = sorted((SRC / "ddpm_ko").rglob("*.py"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(
                    n and n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "marshal", "shelve") for n in names
                ):
                    problems.append(f"{where}: imports a pickle-like module")
            if not isinstance(node, ast.Call):
                continue
            func = ast.unparse(node.func)
            kwargs = {k.arg: k.value for k in node.keywords}
            if func.endswith("load") and func.split(".")[0] == "torch":
                wo = kwargs.get("weights_only")
                if func != "torch.load" or not (isinstance(wo, ast.Constant) and wo.value is True):
                    problems.append(f"{where}: {func}(...) without weights_only=True")
            ap = kwargs.get("allow_pickle")
            if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                problems.append(f"{where}: allow_pickle")
        # 글자 그대로의 검사도: 위 AST 검사가 놓칠 수 있는 모양 (예: 별칭)
        for lineno, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0]
            if "torch.load(" in code and "weights_only=True" not in code:
                problems.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------- API 표
def _tiny_model() -> Unet:
    return Unet(UnetConfig(image_size=8, dim=8, dim_mults=(1, 2), stage_attention="none", mid_attention="none"))


def _diffusion() -> GaussianDiffusion:
    return GaussianDiffusion.from_schedule("linear", 10)


def _trainer(images, **unet) -> Trainer:
    cfg = TrainConfig(
        out_dir="/nonexistent/never", batch_size=8, timesteps=10, sample_steps=10, progress=False, num_threads=1
    )
    return Trainer(UnetConfig(**{"image_size": 8, "dim": 8, "dim_mults": (1, 2), **unet}), cfg, images=images)


U8 = np.zeros((16, 28, 28), dtype=np.uint8)

#: (이름, 호출 (paths 를 받는다), 예외 종류, 메시지 조각)
API_CASES = [
    ("schedule-unknown", lambda p: beta_schedule("cosin", 10), ValueError, "unknown schedule 'cosin'"),
    ("schedule-T-1", lambda p: beta_schedule("linear", 1), ValueError, "timesteps must be an integer >= 2"),
    ("schedule-T-float", lambda p: beta_schedule("linear", 10.5), ValueError, "timesteps must be an integer >= 2"),
    (
        "diffusion-unknown-loss",
        lambda p: GaussianDiffusion.from_schedule("linear", 10, loss_type="l3"),
        ValueError,
        "unknown loss_type",
    ),
    (
        "diffusion-unknown-prediction",
        lambda p: GaussianDiffusion.from_schedule("linear", 10, prediction_type="noise"),
        ValueError,
        "unknown prediction_type",
    ),
    (
        "diffusion-beta-out-of-range",
        lambda p: GaussianDiffusion(torch.tensor([0.5, 1.5])),
        ValueError,
        "every beta must lie in (0, 1)",
    ),
    (
        "sample-unknown-sampler",
        lambda p: _diffusion().sample(_tiny_model(), (1, 1, 8, 8), sampler="euler"),
        ValueError,
        "unknown sampler",
    ),
    (
        "sample-ddim-steps-greater-than-T",
        lambda p: _diffusion().sample(_tiny_model(), (1, 1, 8, 8), sampler="ddim", steps=11),
        ValueError,
        "cannot exceed",
    ),
    (
        "sample-ddim-steps-0",
        lambda p: _diffusion().sample(_tiny_model(), (1, 1, 8, 8), sampler="ddim", steps=0),
        ValueError,
        "steps must be a positive integer",
    ),
    (
        "sample-ddpm-steps",
        lambda p: _diffusion().sample(_tiny_model(), (1, 1, 8, 8), sampler="ddpm", steps=5),
        ValueError,
        "always runs T steps",
    ),
    (
        "sample-eta",
        lambda p: _diffusion().sample(_tiny_model(), (1, 1, 8, 8), sampler="ddim", eta=1.5),
        ValueError,
        "eta must be in [0, 1]",
    ),
    ("unet-image-size-30", lambda p: UnetConfig(image_size=30), ValueError, "image_size 30 must be divisible by 4"),
    (
        "unet-image-size-smaller-than-factor",
        lambda p: UnetConfig(image_size=2, dim_mults=(1, 2, 2)),
        ValueError,
        "must be divisible by 4",
    ),
    ("unet-unknown-block", lambda p: UnetConfig(block_type="vit"), ValueError, "unknown block_type 'vit'"),
    ("unet-unknown-attention", lambda p: UnetConfig(stage_attention="flash"), ValueError, "unknown attention 'flash'"),
    (
        "unet-forward-odd-size",
        lambda p: _tiny_model()(torch.zeros(1, 1, 9, 9), torch.zeros(1, dtype=torch.long)),
        ValueError,
        "H and W must be divisible by 2",
    ),
    (
        "unet-forward-channels",
        lambda p: _tiny_model()(torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long)),
        ValueError,
        "expected input (B, 1, H, W)",
    ),
    ("trainconfig-max-steps-0", lambda p: TrainConfig(max_steps=0), ValueError, "max_steps must be >= 1"),
    ("trainconfig-time-budget-0", lambda p: TrainConfig(time_budget=0), ValueError, "time_budget must be a finite"),
    (
        "trainconfig-time-budget-nan",
        lambda p: TrainConfig(time_budget=float("nan")),
        ValueError,
        "minutes > 0, got nan",
    ),
    ("trainconfig-time-budget-negative", lambda p: TrainConfig(time_budget=-1), ValueError, "minutes > 0, got -1"),
    ("trainconfig-batch-0", lambda p: TrainConfig(batch_size=0), ValueError, "batch_size must be >= 1"),
    ("trainconfig-micro-batch-0", lambda p: TrainConfig(micro_batch=0), ValueError, "micro_batch must be >= 1"),
    ("trainconfig-lr-0", lambda p: TrainConfig(lr=0), ValueError, "lr must be > 0"),
    ("trainconfig-schedule", lambda p: TrainConfig(schedule="cosin"), ValueError, "unknown schedule"),
    ("trainconfig-loss", lambda p: TrainConfig(loss_type="l3"), ValueError, "unknown loss"),
    (
        "trainconfig-sample-steps-gt-T",
        lambda p: TrainConfig(timesteps=20, sample_steps=50),
        ValueError,
        "cannot exceed timesteps",
    ),
    (
        "trainconfig-checkpoint-every-0",
        lambda p: TrainConfig(checkpoint_every=0),
        ValueError,
        "checkpoint_every must be >= 1",
    ),
    (
        "train-images-wrong-size",
        lambda p: _trainer(U8),
        ValueError,
        "training images must be a uint8 array of shape (N, 8, 8)",
    ),
    (
        "train-images-float",
        lambda p: _trainer(np.zeros((16, 8, 8), dtype=np.float32)),
        ValueError,
        "got float32 (16, 8, 8)",
    ),
    (
        "train-images-rgb-for-gray-model",
        lambda p: _trainer(np.zeros((16, 3, 8, 8), dtype=np.uint8)),
        ValueError,
        "(N, 8, 8)",
    ),
    (
        "image-batches-too-few",
        lambda p: ImageBatches(U8[:4], 8),
        ValueError,
        "not enough images (4) for one batch of 8",
    ),
    ("sample-images-num-0", lambda p: sample_images(p.ckpt, 0), ValueError, "num must be >= 1"),
    (
        "sample-images-ddim-steps-gt-T",
        lambda p: sample_images(p.ckpt, 1, sampler="ddim", steps=51),
        ValueError,
        "DDIM steps cannot exceed T",
    ),
    (
        "sample-images-unknown-sampler",
        lambda p: sample_images(p.ckpt, 1, sampler="plms"),
        ValueError,
        "unknown sampler",
    ),
    (
        "sample-images-eta",
        lambda p: sample_images(p.ckpt, 1, sampler="ddim", eta=-1),
        ValueError,
        "eta must be in [0, 1]",
    ),
    (
        "sample-images-missing",
        lambda p: sample_images(p.root / "nope.safetensors", 1),
        CheckpointError,
        "checkpoint not found",
    ),
    (
        "oom-retry-batch-0",
        lambda p: sample_with_oom_retry(
            _diffusion(), _tiny_model(), 2, (1, 8, 8), 0, torch.Generator(), torch.device("cpu")
        ),
        ValueError,
        "must be >= 1",
    ),
    ("read-idx-bad-magic", lambda p: read_idx(p.bad_magic / IMG), ValueError, "bad IDX magic number"),
    ("read-idx-wrong-length", lambda p: read_idx(p.wrong_length / IMG), ValueError, "wrong IDX data length"),
    ("read-idx-missing-file", lambda p: read_idx(p.root / "nope-ubyte"), ValueError, "cannot read IDX file"),
    ("data-missing-files", lambda p: fashion_mnist_arrays("train", p.empty_dir), DataNotFoundError, "missing files"),
    (
        "data-bad-split",
        lambda p: fashion_mnist_arrays("validation", p.good_data),
        ValueError,
        "split must be 'train' or 'test'",
    ),
    (
        "data-wrong-count",
        lambda p: fashion_mnist_arrays("train", p.wrong_count),
        DataNotFoundError,
        "expected 60000 images",
    ),
]


@pytest.mark.parametrize("name,call,exc,fragment", [pytest.param(*c, id=c[0]) for c in API_CASES])
def test_api_rejects_bad_input(name, call, exc, fragment, paths):
    with pytest.raises(exc) as info:
        call(paths)
    assert fragment in str(info.value), str(info.value)
    assert " / " in str(info.value), "메시지는 한국어 / 영어 두 말로 쓴다"
