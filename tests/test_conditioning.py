"""클래스 조건부 모델과 분류기 없는 가이던스 (11장): ``conditioning``, ``guidance``, 조건부 학습·샘플링·명령줄.

조건 없는 경로가 예전 그대로인지는 tests/test_shipped_outputs.py (책이 싣는 모델의 float64 출력) 가 본다.
여기서는 조건 없는 설정에 새 층이 생기지 않는다는 것과, 0 으로 시작한 레이블 임베딩이 조건 없는 모델의 출력을
그대로 둔다는 것을 본다.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_TRAIN_FLAGS, TINY_TRAIN_UNET, tiny_train_config
from ddpm_ko.conditioning import NUM_CLASSES, ClassEmbedding, drop_labels, null_labels, parse_label
from ddpm_ko.diffusion import GaussianDiffusion
from ddpm_ko.errors import CheckpointError
from ddpm_ko.guidance import cfg_combine, guided_model, to_diffusers_scale
from ddpm_ko.sampling import SamplerOptions, sample, sample_with_oom_retry
from ddpm_ko.train import Trainer, train
from ddpm_ko.unet import Unet, UnetConfig

COND_UNET = replace(TINY_TRAIN_UNET, num_classes=NUM_CLASSES)
IMAGES = np.random.default_rng(0).integers(0, 256, (32, 8, 8), dtype=np.uint8)
LABELS = np.arange(32) % NUM_CLASSES
quiet = lambda m: None  # noqa: E731


def _cond_model(seed: int = 0, dtype=torch.float64) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = Unet(COND_UNET).to(dtype).eval()
    with torch.no_grad():  # 0 으로 시작하는 표에 값을 넣어 레이블마다 출력이 다르게
        m.class_emb.table.weight.normal_(0, 1.0)
    return m


# ------------------------------------------------------------------------------------------ 신경망
def test_unconditional_config_has_no_new_layer():
    keys = Unet(TINY_TRAIN_UNET).state_dict().keys()
    assert not any(k.startswith("class_emb") for k in keys)
    assert set(Unet(COND_UNET).state_dict()) - set(keys) == {"class_emb.table.weight"}


def test_zero_label_embedding_starts_as_the_unconditional_model():
    torch.manual_seed(0)
    base = Unet(TINY_TRAIN_UNET).double().eval()
    cond = Unet(COND_UNET).double().eval()
    state = {**cond.state_dict(), **base.state_dict()}  # 조건 없는 가중치 + 0 인 레이블 표
    cond.load_state_dict(state)
    x, t = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 10, 30, 49])
    with torch.no_grad():
        # 같은 연산을 같은 순서로 하고 e(y) = 0 을 더할 뿐이므로 비트까지 같다
        assert torch.equal(base(x, t), cond(x, t, torch.tensor([0, 3, 9, NUM_CLASSES])))
        assert torch.equal(base(x, t), cond(x, t))  # 레이블을 주지 않으면 ∅


def test_labels_change_the_output_of_a_trained_embedding():
    m = _cond_model()
    x, t = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.tensor([5, 5])
    with torch.no_grad():
        a, b = m(x, t, torch.tensor([1, 1])), m(x, t, torch.tensor([2, 2]))
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize(
    "labels, needle",
    [
        (torch.tensor([0, 11]), "labels must be in 0..9"),
        (torch.tensor([-1, 0]), "labels must be in 0..9"),
        (torch.tensor([0.0, 1.0]), "labels must be integers"),
        (torch.tensor([0, 1, 2]), "labels must be integers of shape (2,)"),
    ],
)
def test_bad_labels_say_what_is_allowed(labels, needle):
    emb = ClassEmbedding(NUM_CLASSES, 4)
    with pytest.raises(ValueError) as info:
        emb(labels, 2, torch.device("cpu"))
    assert needle in str(info.value) and " / " in str(info.value)


def test_unconditional_model_refuses_labels():
    m = Unet(TINY_TRAIN_UNET).eval()
    with pytest.raises(ValueError, match="unconditional and takes no labels"):
        m(torch.zeros(1, 1, 8, 8), torch.tensor([1]), torch.tensor([0]))


def test_conditioning_needs_the_book_layout():
    with pytest.raises(ValueError, match="class conditioning needs layout='ddpm_ko'"):
        UnetConfig.annotated(num_classes=10)
    with pytest.raises(ValueError, match="num_classes must be None or >= 1"):
        UnetConfig(num_classes=0)


# ------------------------------------------------------------------------------------------ 레이블
@pytest.mark.parametrize(
    "spec, want",
    [
        *[("3", 3), (3, 3), ("Dress", 3), ("드레스", 3), ("ankle boot", 9), ("Ankle-Boot", 9), ("top", 0)],
        *[("t-shirt", 0), ("운동화", 7), ("sneaker", 7), ("앵클 부츠", 9), ("가방", 8), ("Shirt", 6), ("셔츠", 6)],
    ],
)
def test_parse_label_takes_numbers_and_both_languages(spec, want):
    assert parse_label(spec) == want


@pytest.mark.parametrize("spec", ["cat", "10", "-1", ""])
def test_parse_label_lists_the_choices(spec):
    with pytest.raises(ValueError) as info:
        parse_label(spec)
    msg = str(info.value)
    assert "0=T-shirt/top(티셔츠)" in msg and "9=Ankle boot(앵클 부츠)" in msg


def test_drop_labels_replaces_about_p_of_them_with_null():
    labels = torch.arange(20_000) % NUM_CLASSES
    g = torch.Generator().manual_seed(0)
    dropped = drop_labels(labels, 0.1, NUM_CLASSES, g)
    is_null = dropped == NUM_CLASSES
    # 이항분포: 평균 2000, 표준편차 √(20000·0.1·0.9) ≈ 42 → 5σ 안에
    assert abs(int(is_null.sum()) - 2000) < 5 * 42
    assert torch.equal(dropped[~is_null], labels[~is_null])  # 남긴 레이블은 그대로
    assert torch.equal(drop_labels(labels, 0.0, NUM_CLASSES, g), labels)


# ------------------------------------------------------------------------------------------ 가이던스
def test_cfg_formula_and_the_diffusers_scale():
    g = torch.Generator().manual_seed(1)
    cond, uncond = (
        torch.randn(3, 5, generator=g, dtype=torch.float64),
        torch.randn(3, 5, generator=g, dtype=torch.float64),
    )
    for w in (0.0, 0.5, 1.0, 3.0):
        ours = cfg_combine(cond, uncond, w)
        assert torch.allclose(ours, (1 + w) * cond - w * uncond, rtol=0, atol=1e-12)  # 식 ch11-eq-cfg
        s = to_diffusers_scale(w)  # diffusers: ε_∅ + s·(ε_y − ε_∅)
        assert s == 1 + w and torch.allclose(ours, uncond + s * (cond - uncond), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="guidance w must be a finite number >= 0"):
        to_diffusers_scale(-1.0)
    with pytest.raises(ValueError, match="guidance w must be a finite number >= 0"):
        SamplerOptions("ddim", guidance=float("nan"))


def test_guided_model_is_one_batched_call_equal_to_two_separate_calls():
    m = _cond_model()
    calls = []
    counted = lambda *a: calls.append(a[0].shape[0]) or m(*a)  # noqa: E731
    x, t, y = torch.randn(3, 1, 8, 8, dtype=torch.float64), torch.tensor([1, 20, 40]), torch.tensor([0, 5, 9])
    with torch.no_grad():
        got = guided_model(counted, y, 2.0, NUM_CLASSES)(x, t)
        want = 3.0 * m(x, t, y) - 2.0 * m(x, t, null_labels(3, NUM_CLASSES))
    assert calls == [6]  # 조건부 3장 + 조건 없는 3장을 한 번에
    assert torch.allclose(got, want, rtol=0, atol=1e-10)  # float64: 배치를 나눠도 남는 차이는 반올림뿐
    calls.clear()
    with torch.no_grad():
        assert torch.equal(guided_model(counted, y, 0.0, NUM_CLASSES)(x, t), m(x, t, y))
    assert calls == [3]  # w = 0 이면 조건 없는 쪽을 계산하지 않는다


@pytest.mark.parametrize("sampler, steps", [("ddpm", None), ("ddim", 5), ("dpm-solver++", 5)])
def test_every_sampler_takes_labels_and_guidance(sampler, steps):
    m = _cond_model()
    d = GaussianDiffusion.from_schedule("linear", 50).double()
    x_T = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    opts = dict(steps=steps) if steps else {}

    def run(w, labels):
        g = torch.Generator().manual_seed(0)
        return sample(d, m, x_T.shape, SamplerOptions(sampler, guidance=w, **opts), x_T=x_T, generator=g, labels=labels)

    by_hand = lambda w: (  # noqa: E731
        lambda x, t: (1 + w) * m(x, t, y) - w * m(x, t, null_labels(4, NUM_CLASSES))
    )
    g = torch.Generator().manual_seed(0)
    want = sample(d, by_hand(1.5), x_T.shape, SamplerOptions(sampler, **opts), x_T=x_T, generator=g)
    assert torch.allclose(run(1.5, y), want, rtol=0, atol=1e-9)  # float64, 같은 식을 배치만 달리 계산
    assert not torch.allclose(run(0.0, y), run(3.0, y), atol=1e-3)  # w 가 결과를 바꾼다


def test_sampling_refuses_impossible_label_requests():
    m, base = _cond_model(), Unet(TINY_TRAIN_UNET).double().eval()
    d = GaussianDiffusion.from_schedule("linear", 50).double()
    shape = (2, 1, 8, 8)
    with pytest.raises(ValueError, match="guidance \\(w > 0\\) needs labels"):
        sample(d, m, shape, SamplerOptions("ddim", steps=2, guidance=1.0))
    with pytest.raises(ValueError, match="labels need a conditional model"):
        sample(d, base, shape, SamplerOptions("ddim", steps=2), labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="need one label per image"):
        sample(d, m, shape, SamplerOptions("ddim", steps=2), labels=torch.tensor([0, 1, 2]))


def test_batched_sampling_splits_the_labels_with_the_images():
    m = _cond_model(dtype=torch.float32)
    d = GaussianDiffusion.from_schedule("linear", 50)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    kw = dict(labels=y, sampler="ddim", steps=3, guidance=1.0)
    cpu = torch.device("cpu")
    whole, _ = sample_with_oom_retry(d, m, 6, (1, 8, 8), 6, torch.Generator().manual_seed(0), cpu, **kw)
    parts, _ = sample_with_oom_retry(d, m, 6, (1, 8, 8), 4, torch.Generator().manual_seed(0), cpu, **kw)
    # 배치 크기가 다르면 oneDNN 커널이 달라 float32 마지막 비트가 다르다 (연산마다 ~1e-6, 3 스텝 × 얕은 신경망)
    assert torch.allclose(whole, parts, rtol=0, atol=1e-4)
    shuffled, _ = sample_with_oom_retry(
        d, m, 6, (1, 8, 8), 4, torch.Generator().manual_seed(0), cpu, **{**kw, "labels": y.flip(0)}
    )
    assert not torch.allclose(whole, shuffled, atol=1e-3)  # 레이블이 이미지를 따라간다


# ------------------------------------------------------------------------------------------ 학습
def _cond_cfg(out: Path, **kw):
    return tiny_train_config(out, conditional=True, **kw)


def test_conditional_training_resumes_on_the_same_curve(tmp_path):
    straight = train(TINY_TRAIN_UNET, _cond_cfg(tmp_path / "a", max_steps=8), images=IMAGES, labels=LABELS, log=quiet)
    half = train(TINY_TRAIN_UNET, _cond_cfg(tmp_path / "b", max_steps=4), images=IMAGES, labels=LABELS, log=quiet)
    resumed = train(
        TINY_TRAIN_UNET,
        _cond_cfg(tmp_path / "b", max_steps=8),
        resume=half["checkpoint"],
        images=IMAGES,
        labels=LABELS,
        log=quiet,
    )
    # 레이블을 ∅ 으로 바꾸는 난수도 체크포인트의 노이즈 생성기에서 뽑으므로 이어 학습한 곡선이 같다
    assert resumed["loss_history"] == straight["loss_history"]
    meta = json.loads(Path(straight["checkpoint"]).with_suffix(".json").read_text())
    assert meta["unet"]["num_classes"] == NUM_CLASSES and meta["train"]["conditional"] is True


def test_trainer_drops_labels_with_p_uncond(tmp_path, monkeypatch):
    seen = []
    trainer = Trainer(
        TINY_TRAIN_UNET, _cond_cfg(tmp_path, max_steps=3, p_uncond=0.5), images=IMAGES, labels=LABELS, log=quiet
    )
    real = trainer.diffusion.training_loss

    def spy(model, x0, t, noise, labels=None):
        seen.append(labels.clone())
        return real(model, x0, t, noise, labels=labels)

    monkeypatch.setattr(trainer.diffusion, "training_loss", spy)
    trainer.run()
    got = torch.cat(seen)
    assert (got == NUM_CLASSES).any() and (got < NUM_CLASSES).any()


def test_label_embedding_learns_at_label_lr_mult_times_the_rate(tmp_path):
    t = Trainer(
        TINY_TRAIN_UNET, _cond_cfg(tmp_path, lr=1e-3, label_lr_mult=20.0), images=IMAGES, labels=LABELS, log=quiet
    )
    rest, label = t.optimizer.param_groups
    assert [id(p) for p in label["params"]] == [id(t.model.class_emb.table.weight)]
    t.train_step(t.batches.batch(0, 0), t.batches.batch_labels(0, 0))
    assert label["lr"] == pytest.approx(20.0 * rest["lr"], rel=1e-12) and rest["lr"] == t.lr_at(0)
    plain = Trainer(TINY_TRAIN_UNET, tiny_train_config(tmp_path / "u"), images=IMAGES, log=quiet)
    assert len(plain.optimizer.param_groups) == 1  # 조건 없는 모델의 옵티마이저는 예전 그대로


def test_init_from_an_unconditional_checkpoint(tmp_path):
    donor = train(TINY_TRAIN_UNET, tiny_train_config(tmp_path / "u", max_steps=2), images=IMAGES, log=quiet)
    messages = []
    t = Trainer(
        TINY_TRAIN_UNET,
        _cond_cfg(tmp_path / "c", max_steps=1, init_from=donor["checkpoint"]),
        images=IMAGES,
        labels=LABELS,
        log=messages.append,
    )
    assert any("new label embedding starts at 0" in m for m in messages)
    from ddpm_ko.checkpoint import load_model_from_checkpoint

    ema, _, _ = load_model_from_checkpoint(donor["checkpoint"])
    x, tt = torch.randn(2, 1, 8, 8), torch.tensor([3, 30])
    with torch.no_grad():
        # 학습 모델은 channels_last 라 커널이 달라 float32 마지막 비트만 다를 수 있다 (깊이 ~20 연산 × 1e-6)
        assert torch.allclose(t.model.eval()(x, tt, torch.tensor([1, 2])), ema(x, tt), rtol=0, atol=1e-5)


def test_init_from_a_different_network_is_refused(tmp_path):
    donor = train(TINY_TRAIN_UNET, tiny_train_config(tmp_path / "u", max_steps=1), images=IMAGES, log=quiet)
    other = replace(COND_UNET, dim=16)
    with pytest.raises(CheckpointError, match="network config differs"):
        Trainer(
            other, _cond_cfg(tmp_path / "c", init_from=donor["checkpoint"]), images=IMAGES, labels=LABELS, log=quiet
        )


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(conditional=True), "conditional training needs labels"),
        (dict(p_uncond=1.0), "p_uncond must be in [0, 1)"),
    ],
)
def test_conditional_training_config_errors(tmp_path, kwargs, needle):
    with pytest.raises(ValueError) as info:
        Trainer(TINY_TRAIN_UNET, tiny_train_config(tmp_path, **kwargs), images=IMAGES, log=quiet)
    assert needle in str(info.value)


def test_a_labelled_network_needs_conditional_training(tmp_path):
    with pytest.raises(ValueError, match="needs conditional=True"):
        Trainer(COND_UNET, tiny_train_config(tmp_path), images=IMAGES, log=quiet)


# ------------------------------------------------------------------------------------------ 명령줄
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ddpm_ko", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_cli_trains_and_samples_a_conditional_model(tmp_path, fake_train_dir):
    r = _cli(
        "train", "--conditional", "--data-dir", str(fake_train_dir), "--out-dir", "run", "--max-steps", "2",
        "--subset", "64", "--no-progress", *TINY_TRAIN_FLAGS, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    ckpt = str(tmp_path / "run" / "checkpoint.safetensors")
    r = _cli("sample", "--checkpoint", ckpt, "--num", "10", "--label", "all", "--guidance", "2", "--steps", "3",
             "--sampler", "ddim", "--out", "s.npy", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "s.npy").shape == (10, 28, 28, 1)  # 가짜 데이터는 Fashion-MNIST 크기
    r = _cli("sample", "--checkpoint", ckpt, "--num", "2", "--label", "고양이", "--out", "s.npy", cwd=tmp_path)
    assert r.returncode != 0 and "unknown class name" in r.stderr and "Traceback" not in r.stderr


def test_cli_refuses_labels_for_an_unconditional_model(tmp_path):
    r = _cli("sample", "--num", "2", "--label", "dress", "--out", "s.npy", "--no-progress", cwd=tmp_path)
    assert r.returncode != 0 and "pretrained-conditional" in r.stderr and "Traceback" not in r.stderr
    r = _cli("sample", "--num", "2", "--guidance", "1", "--out", "s.npy", cwd=tmp_path)
    assert r.returncode != 0 and "--guidance needs --label" in r.stderr


# ------------------------------------------------------------------------------------------ 측정이 정한 기본값
def test_default_guidance_follows_the_measured_rule():
    """기본 가이던스 w 는 측정이 정한다 (이슈 17): ``benchmarks/results/guidance_tradeoff.json`` 에서 분류기가 본 클래스
    정확도가 90% 이상인 w 가운데 특징 FID 가 가장 낮은 것. 규칙을 여기서 다시 계산해 패키지의 상수와 맞춰 보고,
    이슈의 목표(그 w 에서 FID ≤ 1.5 × 조건 없는 모델, N ≥ 1000)도 본다."""
    from ddpm_ko.guidance import DEFAULT_GUIDANCE

    bench = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/guidance_tradeoff.json").read_text())
    assert bench["num"] >= 1000 and bench["steps"] is not None
    rows = bench["results"]
    ok = [r for r in rows if r["accuracy"] >= 0.9]
    assert ok, "정확도 90% 에 이른 w 가 없다"
    best = min(ok, key=lambda r: (r["fid"], r["w"]))
    assert bench["default_w"] == best["w"] == DEFAULT_GUIDANCE
    assert best["fid"] <= 1.5 * bench["unconditional_fid"]
