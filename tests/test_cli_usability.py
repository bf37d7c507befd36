"""새 사용자가 명령줄을 처음 쓸 때 겪는 일들 (이슈 18).

1. 책이 싣는 가중치 파일은 ``--overwrite-shipped`` 없이 덮어쓰지 않는다 (train-classifier, export).
2. ``benchmarks/results/*.json`` 에 잰 기계의 절대 경로가 남지 않는다.
3. 데이터가 없고 오프라인이면 Hub 재시도(수십 초)를 기다리지 않고 곧바로 데이터를 얻는 방법을 알린다.
4. 분류기 학습과 ``evaluate`` 가 진행 막대를 표준 오류에 보인다 (``--no-progress`` 면 끈다).
5. 모든 옵션에 한국어 설명과 짧은 영어 풀이가 있고, ``sample`` 의 기본 체크포인트는 ``pretrained`` 다.
6. 일찍 멈춘 학습의 체크포인트는 실제로 학습한 단계와 멈춘 까닭을 적는다.

책이 싣는 파일을 다루는 검사는 찾기 함수가 따르는 환경 변수로 임시 사본을 가리키게 해서, 진짜 파일은 건드리지 않는다.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import ddpm_ko.classifier as classifier_mod
import ddpm_ko.data as data
import ddpm_ko.evaluation as evaluation
import ddpm_ko.pretrained as pretrained
from conftest import TINY_TRAIN_FLAGS, TINY_TRAIN_UNET, import_benchmark, tiny_train_config
from ddpm_ko.checkpoint import read_checkpoint
from ddpm_ko.classifier import ClassifierConfig, FashionClassifier
from ddpm_ko.cli import build_parser, main
from ddpm_ko.data import DataNotFoundError
from ddpm_ko.sampling import SAMPLERS
from ddpm_ko.train import TrainConfig, Trainer, resume_config

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")  # huggingface_hub·datasets 가 따르는 오프라인 스위치
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="SIGTERM 을 보내는 검사는 POSIX 에서만")


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ddpm-ko: error: "), err
    return lines[0]


# ---------------------------------------------------------------------------------------------- 1. 책이 싣는 파일
@pytest.fixture
def planted_shipped(tmp_path, monkeypatch):
    """찾기 함수가 책이 싣는 분류기·사전 학습 모델로 여기는 임시 파일들 (환경 변수로 가리킨다)."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    files = {}
    for env, name in (
        (pretrained.CLASSIFIER_ENV, pretrained.CLASSIFIER_NAME),
        ("DDPM_KO_PRETRAINED", "fashion_mnist_ema.safetensors"),
    ):
        path = shipped / name
        path.write_bytes(b"shipped weights: " + name.encode())
        path.with_suffix(".json").write_text('{"shipped": true}')
        monkeypatch.setenv(env, str(path))
        files[name] = path
    return files


def snapshot(paths) -> dict[Path, bytes]:
    return {p: p.read_bytes() for path in paths for p in (path, path.with_suffix(".json"))}


def test_train_classifier_refuses_to_overwrite_the_shipped_classifier(planted_shipped, monkeypatch, capsys):
    target = planted_shipped[pretrained.CLASSIFIER_NAME]
    before = snapshot(planted_shipped.values())
    calls = []
    monkeypatch.setattr(
        classifier_mod, "train_classifier", lambda *a, **k: calls.append((a, k)) or pytest.fail("학습을 시작했다")
    )
    # 절대 경로로, 그리고 같은 파일을 가리키는 다른 표기(상대 경로)로
    monkeypatch.chdir(target.parent.parent)
    for out in (str(target), f"{target.parent.name}/../{target.parent.name}/{target.name}"):
        assert main(["train-classifier", "--out", out]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "--overwrite-shipped" in line and str(target) in line
    assert not calls
    assert snapshot(planted_shipped.values()) == before


def test_overwrite_shipped_flag_lets_the_user_replace_it(planted_shipped, monkeypatch, capsys):
    target = planted_shipped[pretrained.CLASSIFIER_NAME]
    calls = []

    def fake_train(out, **kwargs):
        calls.append(out)
        return None, {"test_accuracy": 0.5}

    monkeypatch.setattr(classifier_mod, "train_classifier", fake_train)
    assert main(["train-classifier", "--out", str(target), "--overwrite-shipped", "--no-progress"]) == 0
    assert calls == [str(target)]


def test_train_classifier_default_out_is_a_run_directory(planted_shipped, tmp_path, monkeypatch):
    args = build_parser().parse_args(["train-classifier"])
    assert Path(args.out).parts[0] == "runs" and Path(args.out).name == pretrained.CLASSIFIER_NAME
    calls = []
    monkeypatch.setattr(
        classifier_mod, "train_classifier", lambda out, **k: calls.append((out, k)) or (None, {"test_accuracy": 0.5})
    )
    monkeypatch.chdir(tmp_path)
    assert main(["train-classifier"]) == 0
    assert calls[0][0] == args.out and calls[0][1]["progress"] is True


def test_export_refuses_to_overwrite_the_shipped_model(planted_shipped, capsys):
    """진짜 사전 학습 모델을 원본으로 내보내되, 출력이 (임시 사본인) '책이 싣는 파일'이면 거절한다."""
    from ddpm_ko.pretrained import PRETRAINED_ENV, pretrained_path

    target = planted_shipped["fashion_mnist_ema.safetensors"]
    saved = os.environ.pop(PRETRAINED_ENV)
    try:
        real = pretrained_path()
    except Exception as e:
        pytest.skip(f"사전 학습 모델이 없다: {e}")
    finally:
        os.environ[PRETRAINED_ENV] = saved
    before = snapshot(planted_shipped.values())
    assert main(["export", "--checkpoint", str(real), "--out", str(target)]) == 2
    assert "--overwrite-shipped" in one_error_line(capsys.readouterr().err)
    assert snapshot(planted_shipped.values()) == before


# ---------------------------------------------------------------------------------------------- 2. 벤치마크 결과
_ABSOLUTE = re.compile(r"^(/[\w.~-]|~/|[A-Za-z]:[\\/])")


def _absolute_paths(value, where: str = ""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _absolute_paths(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _absolute_paths(v, f"{where}[{i}]")
    elif isinstance(value, str):
        for token in re.split(r"[\s=,;()\[\]\"']+", value):
            if _ABSOLUTE.match(token):
                yield f"{where}: {token}"


def test_benchmark_results_hold_no_machine_paths():
    files = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    assert files, "benchmarks/results/*.json 이 없다"
    found = [f"{f.name}{hit}" for f in files for hit in _absolute_paths(json.loads(f.read_text(encoding="utf-8")))]
    assert not found, "절대 경로가 남아 있다:\n" + "\n".join(found)


def test_benchmark_writer_records_portable_paths():
    _common = import_benchmark("_common")
    cmd = _common.portable_command(
        [
            "python",
            "benchmarks/x.py",
            "--external",
            str(_common.PEERS),
            "--checkpoint=/tmp/run7/checkpoint.safetensors",
            "--data",
            "C:\\data\\fm",
        ]
    )
    assert cmd == (
        "python benchmarks/x.py --external benchmarks/.peers "
        "--checkpoint=<outside-repo>/checkpoint.safetensors --data <outside-repo>/fm"
    )
    assert not list(_absolute_paths(cmd))
    assert _common.portable_path(ROOT / "runs" / "a.safetensors") == "runs/a.safetensors"


def test_default_sampler_rule_caps_the_calls_falls_back_to_the_best_cheap_setting_and_averages_seeds():
    import copy

    # 기본값 규칙 (quality_vs_nfe.summarize): 호출 25 번 이하에서 기준 FID 의 1.1배 안에 드는 가장 싼 설정. 기준은 DDPM 1000
    # 이고, 25 번 이하의 어느 설정도 그 1.1배 안에 못 들면 25 번 이하에서 가장 낮은 FID 다. 상한 밖의 설정은 답이 되지 않는다
    quality_vs_nfe = import_benchmark("quality_vs_nfe")

    def row(sampler, steps, fid):
        spacing = "logsnr" if sampler == "dpm-solver++" else None
        nfe = 1000 if sampler == "ddpm" else steps
        return {
            "label": f"{sampler}-{steps}",
            "sampler": sampler,
            "steps": steps,
            "spacing": spacing,
            "nfe": nfe,
            "fid": fid,
        }

    # 결정적 풀이법이 DDPM 을 따라가는 모델 (4750 스텝 모델의 모양): 기준은 DDPM, 답은 그 1.1배 안의 가장 싼 것
    close = [
        row("ddpm", 1000, 7.3),
        row("dpm-solver++", 8, 8.3),
        row("dpm-solver++", 10, 7.7),
        row("dpm-solver++", 20, 7.6),
    ]
    rec = quality_vs_nfe.summarize(close)
    assert (rec["reference"], rec["label"]) == ("ddpm", "dpm-solver++-10")
    # DDPM 이 훨씬 좋은 모델 (지금 모델의 모양): DDPM 1000 이나 DDIM 100 이 답이 되지 않고, 25 번 이하의 가장 좋은 값이 기준
    far = [row("ddpm", 1000, 1.6), row("ddim", 100, 1.7), row("dpm-solver++", 15, 2.6), row("dpm-solver++", 20, 2.36),
           row("dpm-solver++", 25, 2.29)]  # fmt: skip
    rec = quality_vs_nfe.summarize(far)
    assert (rec["reference"], rec["reference_fid"], rec["label"]) == ("best_interactive", 2.29, "dpm-solver++-20")
    assert rec["interactive_nfe"] == 25 and rec["ddpm_fid"] == 1.6
    # 상한 안에 점이 없으면 답이 없다
    assert quality_vs_nfe.summarize([row("ddpm", 1000, 1.6), row("ddim", 100, 1.7)]) is None
    # 같은 점을 다른 시드로도 쟀으면 평균으로 견준다: 한 시드에서 운 좋게 낮았던 점(20 스텝)은 평균이 1.1배 밖이라 답이 아니고,
    # 시드마다 고르게 낮은 점(25 스텝)이 답이다. 다른 시드에 없는 점(DDPM)은 그 한 값 그대로다
    lucky = [row("ddpm", 1000, 1.6), row("sde-dpm-solver++", 20, 1.4), row("sde-dpm-solver++", 25, 1.69)]
    assert quality_vs_nfe.summarize(copy.deepcopy(lucky))["label"] == "sde-dpm-solver++-20"
    reruns = [
        {"seed": 1, "results": [row("sde-dpm-solver++", 20, 1.92), row("sde-dpm-solver++", 25, 1.71)]},
        {"seed": 2, "results": [row("sde-dpm-solver++", 20, 2.25), row("sde-dpm-solver++", 25, 1.69)]},
    ]
    rows = copy.deepcopy(lucky)
    rec = quality_vs_nfe.summarize(rows, reruns)
    assert (rec["label"], rec["fid"], rec["fid_seeds"], rec["ddpm_fid"]) == ("sde-dpm-solver++-25", 1.6967, 3, 1.6)
    assert rec["rerun_seeds"] == [1, 2] and rows[1]["fid_seeds"] == [None, 1, 2] and rows[0]["fid_seeds"] == [None]


def test_long_benchmark_points_resume_from_saved_batches_of_the_same_model_only(tmp_path, tiny_unet):
    # quality_vs_nfe 의 DDPM 1000 스텝은 CPU 에서 한 시간이 넘어 배치마다 남기고 세션을 넘겨 잇는다: 이은 결과는 한 번에
    # 만든 것과 비트까지 같아야 하고, 다른 모델이 남긴 배치에는 잇지 않아야 한다 (두 모델의 샘플이 섞인 FID 가 된다)
    from ddpm_ko.diffusion import GaussianDiffusion
    from ddpm_ko.schedules import beta_schedule

    quality_vs_nfe = import_benchmark("quality_vs_nfe")
    diffusion = GaussianDiffusion(beta_schedule("linear", 8))
    shape = (tiny_unet.config.channels, 8, 8)

    def run(part, sha, num=4):
        return quality_vs_nfe.sample_in_saved_batches(
            diffusion,
            tiny_unet,
            num,
            shape,
            2,
            torch.Generator().manual_seed(0),
            "cpu",
            part,
            model_sha256=sha,
            sampler="ddpm",
            steps=None,
        )[0]

    whole = run(None, None)
    part = tmp_path / "DDPM-8.part.npz"
    sample, calls = diffusion.sample, []

    def stop_at_second_batch(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # 둘째 배치를 만들다 끊긴 세션
        return sample(*args, **kw)

    diffusion.sample = stop_at_second_batch
    with pytest.raises(KeyboardInterrupt):
        run(part, "a" * 64)
    diffusion.sample = sample
    assert len(np.load(part)["images"]) == 2  # 첫 배치만 남았다
    with pytest.raises(SystemExit, match="another model"):
        run(part, "b" * 64)  # 다른 모델로는 잇지 않는다
    assert torch.equal(run(part, "a" * 64), whole)  # 같은 모델로 이으면 한 번에 만든 것과 같다


# ---------------------------------------------------------------------------------------------- 3. 오프라인 데이터
@pytest.fixture
def no_local_data(tmp_path, monkeypatch):
    """로컬 데이터(Debian 경로, $DDPM_KO_DATA_DIR)와 datasets 캐시를 빈 임시 디렉터리로 가린다."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(data, "DEBIAN_DIR", empty)
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(empty))
    for name in OFFLINE_ENVS:
        monkeypatch.delenv(name, raising=False)
    return empty


def assert_lists_three_ways(msg: str) -> None:
    assert "--data-dir" in msg and "dataset-fashion-mnist" in msg and data.HUB_ID in msg, msg


def forbid_hub(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("Hub 에 접속했다"))


@pytest.mark.parametrize("var", OFFLINE_ENVS)
def test_offline_env_skips_the_hub(no_local_data, monkeypatch, var):
    forbid_hub(monkeypatch)
    monkeypatch.setattr(
        data, "_hub_unreachable", lambda *a, **k: pytest.fail("오프라인인데 네트워크를 확인했다"), raising=False
    )
    monkeypatch.setenv(var, "1")
    with pytest.raises(DataNotFoundError) as info:
        data.fashion_mnist_arrays("test")
    assert var in str(info.value)
    assert_lists_three_ways(str(info.value))


def test_unreachable_hub_fails_at_once(no_local_data, monkeypatch, capsys):
    forbid_hub(monkeypatch)

    def no_network(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(data.socket, "create_connection", no_network)
    with pytest.raises(DataNotFoundError) as info:
        data.load_fashion_mnist("train")
    assert "unreachable" in str(info.value)
    assert_lists_three_ways(str(info.value))
    assert "trying the Hugging Face Hub" in capsys.readouterr().err


def test_hub_attempt_is_announced_before_downloading(no_local_data, monkeypatch, capsys):
    import datasets

    monkeypatch.setattr(data, "_hub_unreachable", lambda *a, **k: None, raising=False)
    seen = []

    def fake_load_dataset(*args, **kwargs):
        seen.append(capsys.readouterr().err)  # 내려받기를 시작한 순간까지 표준 오류에 쓴 것
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(DataNotFoundError):
        data.fashion_mnist_arrays("test")
    assert len(seen) == 1 and "trying the Hugging Face Hub" in seen[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_load_fails_fast_end_to_end(tmp_path):
    """실제 ``datasets`` 로: Hub 주소가 닫힌 포트면 예전에는 재시도로 수십 초를 기다렸다. 이제는 몇 초 안에 끝난다.

    10 초는 성능 목표가 아니라 '재시도를 기다리지 않는다'를 가르는 상한이다 (import 시간은 재지 않는다).
    """
    empty = tmp_path / "empty"
    empty.mkdir()
    code = (
        "import time, ddpm_ko.data as d\n"
        "from pathlib import Path\n"
        f"d.DEBIAN_DIR = Path({str(empty)!r})\n"
        "import datasets\n"
        "start = time.monotonic()\n"
        "try:\n"
        "    d.fashion_mnist_arrays('test')\n"
        "except d.DataNotFoundError as e:\n"
        "    print('ELAPSED', time.monotonic() - start)\n"
        "    print(e)\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", data.DATA_ENV, *OFFLINE_ENVS)
    }
    env.update(
        PYTHONPATH=str(SRC),
        HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
        HF_HOME=str(tmp_path / "hf"),
        HF_DATASETS_CACHE=str(empty),
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "ELAPSED" in proc.stdout, proc.stdout + proc.stderr
    elapsed = float(proc.stdout.split("ELAPSED")[1].split()[0])
    assert elapsed < 10, f"{elapsed:.1f}s 걸렸다 (Hub 재시도를 기다렸다)\n{proc.stderr[-2000:]}"
    assert_lists_three_ways(proc.stdout)


# ---------------------------------------------------------------------------------------------- 4. 진행 막대
def test_classifier_training_shows_progress_on_stderr(real_data_dir, capsys):
    kwargs = dict(
        data_dir=real_data_dir,
        epochs=1,
        batch_size=64,
        subset=256,
        test_limit=100,
        threads=1,
        config=ClassifierConfig(width=4),
        log=lambda msg: None,
    )
    classifier_mod.train_classifier(progress=True, **kwargs)
    err = capsys.readouterr().err
    assert "classifier" in err and "4/4" in err, err  # 256 장 / 배치 64 = 4 단계
    classifier_mod.train_classifier(progress=False, **kwargs)
    assert capsys.readouterr().err == ""


def test_evaluate_shows_progress_on_stderr(real_data_dir, capsys):
    rng = np.random.default_rng(0)
    samples = rng.integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    torch.manual_seed(0)
    kwargs = dict(data_dir=real_data_dir, reference_num=100, floor_draws=2, kid_subsets=2)
    evaluation.evaluate(
        samples, classifier=FashionClassifier(ClassifierConfig(width=4)).eval(), progress=True, **kwargs
    )
    err = capsys.readouterr().err
    assert "evaluate features" in err and "160/160" in err, err  # 기준 100 + 표본 20 + 바닥값 2 × 20
    evaluation.evaluate(
        samples, classifier=FashionClassifier(ClassifierConfig(width=4)).eval(), progress=False, **kwargs
    )
    assert capsys.readouterr().err == ""


def test_cli_progress_flags_reach_the_work(tmp_path, monkeypatch, capsys):
    got = {}

    def fake_evaluate(samples, **kwargs):
        got["evaluate"] = kwargs["progress"]
        return {}

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    monkeypatch.setattr(evaluation, "format_report", lambda result: "report")
    monkeypatch.setattr(
        classifier_mod,
        "train_classifier",
        lambda out, **k: got.__setitem__("classifier", k["progress"]) or (None, {"test_accuracy": 0.5}),
    )
    out = str(tmp_path / "c.safetensors")
    for flag, want in (([], True), (["--no-progress"], False)):
        assert main(["evaluate", "--samples", "x.npy", *flag]) == 0
        assert main(["train-classifier", "--out", out, *flag]) == 0
        assert got == {"evaluate": want, "classifier": want}


# ---------------------------------------------------------------------------------------------- 5. 도움말
HANGUL = re.compile("[\uac00-\ud7a3]")
LATIN = re.compile("[A-Za-z]")


def _all_actions(parser: argparse.ArgumentParser, path: str = "ddpm-ko"):
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        yield path, action
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_actions(sub, f"{path} {name}")


def test_every_option_has_korean_help_with_an_english_gloss():
    actions = list(_all_actions(build_parser()))
    assert len(actions) > 40  # 하위 명령 다섯 개의 옵션을 모두 걸었는지
    bad = [
        f"{path} {'/'.join(a.option_strings) or a.dest}: {a.help!r}"
        for path, a in actions
        if not (a.help and a.help != argparse.SUPPRESS and HANGUL.search(a.help) and LATIN.search(a.help))
    ]
    assert not bad, "설명이 없거나 한국어·영어 가운데 하나가 빠졌다:\n" + "\n".join(bad)


def test_sampler_choices_follow_the_package():
    sample = next(
        a for p, a in _all_actions(build_parser()) if p == "ddpm-ko sample" and "--sampler" in a.option_strings
    )
    assert tuple(sample.choices) == tuple(SAMPLERS)


def test_sample_defaults_to_the_pretrained_model(tmp_path, monkeypatch):
    import ddpm_ko.generate as generate

    assert build_parser().parse_args(["sample", "--num", "2", "--out", "x.npy"]).checkpoint == "pretrained"
    seen = []

    def fake_sample_images(checkpoint, num, **kwargs):
        seen.append(checkpoint)
        return torch.zeros(num, 1, 28, 28), None, {}

    monkeypatch.setattr(generate, "sample_images", fake_sample_images)
    out = tmp_path / "x.npy"
    assert main(["sample", "--num", "2", "--out", str(out), "--no-progress"]) == 0
    assert seen == ["pretrained"] and np.load(out).shape == (2, 28, 28, 1)


def test_sample_passes_the_spacing_through(tmp_path, monkeypatch):
    """``--spacing`` 은 ``sample_images`` 까지 가고, 주지 않으면 None (패키지 기본 간격)이다. 없는 간격은 argparse 가 막는다."""
    import ddpm_ko.generate as generate

    seen = []

    def fake_sample_images(checkpoint, num, **kwargs):
        seen.append(kwargs["spacing"])
        return torch.zeros(num, 1, 28, 28), None, {}

    monkeypatch.setattr(generate, "sample_images", fake_sample_images)
    out = str(tmp_path / "x.npy")
    assert main(["sample", "--num", "1", "--out", out, "--sampler", "sde-dpm-solver++", "--spacing", "time"]) == 0
    assert main(["sample", "--num", "1", "--out", out]) == 0
    assert seen == ["time", None]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sample", "--num", "1", "--out", out, "--spacing", "uniform"])


def test_spacing_only_for_the_solvers_and_a_collapsed_grid_warns(tmp_path, capsys):
    """간격은 DPM-Solver++ 에만 (모델을 읽기 전에 막는다). 코사인 스케줄에서 Karras 간격은 정수 타임스텝이 겹쳐
    요청보다 적은 스텝만 남으므로 경고하고, 그 경고가 권하는 t 간격은 겹치지 않는다."""
    from ddpm_ko.generate import sample_images

    with pytest.raises(ValueError, match="spacing"):
        sample_images(tmp_path / "missing.safetensors", 2, sampler="ddim", spacing="time")
    cfg = tiny_train_config(tmp_path / "cos", schedule="cosine", timesteps=1000, max_steps=1)
    Trainer(TINY_TRAIN_UNET, cfg, images=IMAGES, log=lambda m: None).run()
    ckpt = tmp_path / "cos" / "checkpoint.safetensors"
    with pytest.warns(UserWarning, match=r"karras.*cosine.*--spacing time"):
        images, _, _ = sample_images(ckpt, 2, sampler="dpm-solver++", steps=15, spacing="karras", device="cpu")
    assert images.shape == (2, 1, 8, 8) and torch.isfinite(images).all()
    from ddpm_ko.diffusion import GaussianDiffusion

    for name in ("linear", "cosine"):  # 경고가 권하는 t 간격은 어느 스케줄, 어느 스텝 수에서도 겹치지 않는다
        d = GaussianDiffusion.from_schedule(name, 1000)
        assert all(len(d.solver_timesteps(n, "time")) == n for n in (2, 15, 333, 999, 1000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # t 간격: 15 스텝이 그대로 15 번의 호출
        sample_images(ckpt, 2, sampler="sde-dpm-solver++", steps=15, spacing="time", device="cpu")
    # 명령줄은 같은 경고를 파일 위치 없이 한 줄로 보이고, 샘플은 그대로 저장한다
    out = tmp_path / "x.npy"
    assert (
        main(["sample", "--checkpoint", str(ckpt), "--num", "2", "--steps", "15", "--out", str(out), "--no-progress"])
        == 0
    )
    err = capsys.readouterr().err
    assert "ddpm-ko: warning: karras" in err and "cosine" in err and ".py:" not in err
    assert np.load(out).shape == (2, 8, 8, 1)


# ---------------------------------------------------------------------------------------------- 6. 멈춘 까닭
TINY_UNET = TINY_TRAIN_UNET
IMAGES = np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8)


def tiny_config(out_dir: Path, **overrides) -> TrainConfig:
    return tiny_train_config(out_dir, **{"checkpoint_every": 4, **overrides})


def saved_end(ckpt: Path) -> dict:
    header = read_checkpoint(ckpt, prefixes=())[1]
    sidecar = json.loads(ckpt.with_suffix(".json").read_text(encoding="utf-8"))
    assert header["end"] == sidecar["end"]
    assert header["end"]["step"] == header["step"]
    return header["end"]


@pytest.mark.parametrize("limit,reason,steps", [({"max_steps": 6}, "max_steps", 6), ({"epochs": 1}, "epochs", 8)])
def test_finished_run_records_why_it_ended(tmp_path, limit, reason, steps):
    result = Trainer(TINY_UNET, tiny_config(tmp_path, **limit), images=IMAGES, log=lambda m: None).run()
    want = {"step": steps, "reason": reason, "target_steps": steps}
    assert result["end"] == want and saved_end(tmp_path / "checkpoint.safetensors") == want


def test_periodic_checkpoint_says_in_progress(tmp_path):
    """도중의 체크포인트는 끝난 것처럼 보이지 않는다 (그 뒤 강제로 죽으면 이 값이 남는다)."""
    seen = []

    def log(msg):
        if msg.startswith("step 5/"):  # 4 단계의 주기적 저장 뒤
            seen.append(saved_end(tmp_path / "checkpoint.safetensors"))

    Trainer(TINY_UNET, tiny_config(tmp_path, max_steps=6), images=IMAGES, log=log).run()
    assert seen == [{"step": 4, "reason": "in_progress", "target_steps": 6}]


@POSIX_ONLY
def test_signal_stops_after_the_step_and_records_it(tmp_path):
    """SIGINT 를 받으면 그 단계를 마치고 저장한 뒤 멈춘다. 이어 학습한 결과는 한 번에 한 학습과 같다."""
    before = signal.getsignal(signal.SIGINT)

    def log(msg):
        if msg.startswith("step 5/"):
            os.kill(os.getpid(), signal.SIGINT)

    stopped = Trainer(TINY_UNET, tiny_config(tmp_path / "run", max_steps=12), images=IMAGES, log=log).run()
    ckpt = tmp_path / "run" / "checkpoint.safetensors"
    want = {"step": 5, "reason": "signal", "signal": "SIGINT", "target_steps": 12}
    assert stopped["end"] == want and saved_end(ckpt) == want
    assert signal.getsignal(signal.SIGINT) is before  # 처리기를 되돌려 놓았다

    resumed_cfg = resume_config(ckpt, {"progress": False, "num_threads": 1, "device": "cpu"})
    resumed = Trainer(None, resumed_cfg, resume=ckpt, images=IMAGES, log=lambda m: None).run()
    assert resumed["end"] == {"step": 12, "reason": "max_steps", "target_steps": 12}
    Trainer(TINY_UNET, tiny_config(tmp_path / "straight", max_steps=12), images=IMAGES, log=lambda m: None).run()
    a, ma = read_checkpoint(tmp_path / "straight" / "checkpoint.safetensors")
    b, mb = read_checkpoint(ckpt)
    assert ma["loss_history"] == mb["loss_history"] and ma["train_state"] == mb["train_state"]
    for k in a:
        # 같은 프로세스, 같은 스레드 수, 같은 연산 순서: 다른 것은 저장·복원한 상태뿐이라 비트 수준으로 같아야 하지만,
        # test_reliability 처럼 float32 반올림 몇 개까지는 허용한다
        torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7, msg=lambda m, k=k: f"{k}: {m}")


@POSIX_ONLY
def test_cli_sigterm_saves_and_exits_with_the_signal_code(tmp_path, real_data_dir):
    out = tmp_path / "run"
    ckpt = out / "checkpoint.safetensors"
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    )
    args = ["--data-dir", str(real_data_dir), "--subset", "64", *TINY_TRAIN_FLAGS, "--no-progress"]
    args += ["--max-steps", "100000", "--checkpoint-every", "1", "--out-dir", str(out)]
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ddpm_ko", "train", *args], env=env, stdout=fh, stderr=subprocess.PIPE, text=True
        )
    deadline = time.monotonic() + 120
    while proc.poll() is None and "checkpoint step" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # 학습 고리에 들어갈 때까지
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, log.read_text() + err
    assert "interrupted by SIGTERM" in err and "--resume" in err and "Traceback" not in err, err
    end = saved_end(ckpt)
    assert end["reason"] == "signal" and end["signal"] == "SIGTERM" and end["target_steps"] == 100000
    assert 1 <= end["step"] < 100000


def test_shipped_model_sidecar_tells_how_far_it_was_trained():
    from ddpm_ko.pretrained import pretrained_path

    try:
        weights = pretrained_path()
    except Exception as e:
        pytest.skip(f"사전 학습 모델이 없다: {e}")
    sidecar = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8"))
    header = read_checkpoint(weights, prefixes=())[1]
    end = sidecar["end"]
    assert end["step"] == sidecar["step"] == header["step"]
    assert end["reason"] in ("signal", "max_steps", "epochs", "time_budget")
    if end["reason"] == "time_budget":
        # 시간 예산 학습: 목표는 마지막 추정 전체 스텝이고, 예산을 다 쓴 스텝에서 끝났다
        budget = sidecar["time_budget"]
        assert budget["reached"] and budget["steps_reached"] == end["step"] == end["target_steps"]
        assert budget["estimated_total_steps"] == end["target_steps"]
        assert budget["wall_time_s"] >= 60 * budget["minutes"] and sidecar["wall_time_s"] == budget["wall_time_s"]
    else:
        assert end["target_steps"] == sidecar["train"]["max_steps"]
        # 목표에 이르지 못한 학습이면 그 까닭이 목표 도달일 수 없다
        assert (end["reason"] in ("max_steps", "epochs")) == (end["step"] == end["target_steps"])
    base = sidecar.get("init_from_model")
    if base:  # 미세 조정한 모델: 출발점과 전체 학습량이 남아 있다
        assert len(base["sha256"]) == 64 and base["total_steps"] >= base["step"] > 0
        assert sidecar["training_cost"]["total_steps"] == end["step"] + base["total_steps"]
    # 학습 이력의 항목마다 스텝이 있고, 앞선 학습들은 그때 만든 파일의 SHA-256 을 남겼다 (벤치마크 결과가 어느 학습 뒤의 모델을 쟀는지 가린다)
    from ddpm_ko.checkpoint import total_training_steps, training_stages

    stages = training_stages(sidecar)
    assert all(s["steps"] > 0 for s in stages) and stages[-1]["total_steps"] == total_training_steps(sidecar)
    assert all(len(s["sha256"] or "") == 64 for s in stages[:-1]) and stages[0]["kind"] == "scratch"
    assert training_stages(header) == stages  # 헤더와 JSON 사본이 같은 이야기를 한다
