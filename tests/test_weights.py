"""책이 싣는 가중치: 패키지 데이터로 들어 있고, SHA-256 을 검사하며, 휠에도 들어간다."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from ddpm_ko import pretrained
from ddpm_ko.errors import CheckpointError
from ddpm_ko.pretrained import (
    CLASSIFIER_NAME,
    PRETRAINED_CONDITIONAL_NAME,
    PRETRAINED_NAME,
    SHIPPED_SHA256,
    file_sha256,
)

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "ddpm_ko"
NAMES = [PRETRAINED_NAME, PRETRAINED_CONDITIONAL_NAME, CLASSIFIER_NAME]
LOADERS = {
    PRETRAINED_NAME: lambda: pretrained.load_pretrained(),
    PRETRAINED_CONDITIONAL_NAME: lambda: pretrained.load_pretrained(kind="conditional"),
    CLASSIFIER_NAME: lambda: pretrained.load_classifier(),
}


@pytest.fixture(autouse=True)
def _no_user_paths(monkeypatch):
    monkeypatch.delenv("DDPM_KO_PRETRAINED", raising=False)
    monkeypatch.delenv(pretrained.PRETRAINED_CONDITIONAL_ENV, raising=False)
    monkeypatch.delenv(pretrained.CLASSIFIER_ENV, raising=False)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_file_is_package_data_with_recorded_hash(name: str) -> None:
    path = pretrained.shipped_file(name)
    # 클론에서도 설치에서도 패키지 디렉터리 안의 같은 파일이다 (저장소 최상위의 checkpoints/ 가 아니다)
    assert path.resolve() == (Path(pretrained.__file__).resolve().parent / "weights" / name)
    assert file_sha256(path) == SHIPPED_SHA256[name]
    assert path.with_suffix(".json").is_file(), "JSON 사본이 가중치 옆에 없다"


def test_pretrained_and_classifier_load_from_the_package() -> None:
    assert pretrained.pretrained_path() == pretrained.shipped_file(PRETRAINED_NAME)
    assert pretrained.classifier_path() == pretrained.shipped_file(CLASSIFIER_NAME)
    _model, diffusion, meta = pretrained.load_pretrained()
    assert meta["format"] == "ddpm_ko/1" and diffusion.num_timesteps == meta["diffusion"]["timesteps"]
    assert pretrained.pretrained_path("conditional") == pretrained.shipped_file(PRETRAINED_CONDITIONAL_NAME)
    cond, _, cond_meta = pretrained.load_pretrained(kind="conditional")
    assert cond.config.num_classes == 10 and cond_meta["train"]["conditional"] is True
    assert pretrained.resolve_checkpoint_name("pretrained-conditional") == pretrained.pretrained_path("conditional")
    with pytest.raises(ValueError, match="kind must be one of"):
        pretrained.pretrained_path("sketchy")


@pytest.mark.parametrize("name", NAMES)
def test_corrupt_shipped_file_is_refused_with_a_bilingual_error(name: str, tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / name
    shutil.copyfile(pretrained.shipped_file(name), copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # 텐서 자료 한가운데의 한 바이트: safetensors 로는 여전히 읽힌다
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "shipped_file", lambda n: tmp_path / n)
    load = LOADERS[name]
    with pytest.raises(CheckpointError, match="SHA-256") as info:
        load()
    msg = str(info.value)
    assert "손상" in msg and "corrupt" in msg and str(copy) in msg and SHIPPED_SHA256[name] in msg


def test_intact_copy_passes_the_check(tmp_path: Path, monkeypatch) -> None:
    shutil.copyfile(pretrained.shipped_file(PRETRAINED_NAME), tmp_path / PRETRAINED_NAME)
    monkeypatch.setattr(pretrained, "shipped_file", lambda n: tmp_path / n)
    assert pretrained.pretrained_path() == tmp_path / PRETRAINED_NAME


def test_user_given_paths_still_win(tmp_path: Path, monkeypatch) -> None:
    # 사용자의 파일은 기록된 해시가 없으므로 검사하지 않고 그대로 쓴다
    mine = tmp_path / "mine.safetensors"
    shutil.copyfile(pretrained.shipped_file(PRETRAINED_NAME), mine)
    monkeypatch.setenv("DDPM_KO_PRETRAINED", str(mine))
    assert pretrained.pretrained_path() == mine
    mine_c = tmp_path / "clf.safetensors"
    shutil.copyfile(pretrained.shipped_file(CLASSIFIER_NAME), mine_c)
    monkeypatch.setenv(pretrained.CLASSIFIER_ENV, str(mine_c))
    assert pretrained.classifier_path() == mine_c
    assert pretrained.load_classifier().source == str(mine_c)


def test_missing_shipped_file_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pretrained, "shipped_file", lambda n: tmp_path / n)
    with pytest.raises(CheckpointError, match="DDPM_KO_PRETRAINED") as info:
        pretrained.pretrained_path()
    assert "다시 설치" in str(info.value) and "reinstall" in str(info.value)


def test_no_download_path_is_left() -> None:
    src = "\n".join(p.read_text(encoding="utf-8") for p in PKG.glob("*.py"))
    for gone in ("download_url_to_file", "PRETRAINED_URL", "CLASSIFIER_URL", "/raw/"):
        assert gone not in src, gone


def test_pyproject_declares_the_weights_as_package_data() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    data = cfg["tool"]["setuptools"]["package-data"]["ddpm_ko"]
    assert "weights/*.safetensors" in data and "weights/*.json" in data


def test_wheel_holds_the_weights_and_sidecars(tmp_path: Path) -> None:
    """``pip wheel`` 로 만든 휠에 가중치 두 개와 JSON 사본이 들어 있고 해시가 기록과 같다.

    작업 트리를 더럽히지 않도록 빌드에 필요한 파일만 임시 디렉터리에 복사해 빌드한다.
    """
    pytest.importorskip("setuptools")
    src = tmp_path / "src_copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(PKG, src / "src" / "ddpm_ko", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "wheel"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        check=True,
        env=env,
        capture_output=True,
    )
    (wheel,) = out.glob("ddpm_ko-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name in NAMES:
            member = f"ddpm_ko/weights/{name}"
            assert member in names, sorted(names)
            assert hashlib.sha256(z.read(member)).hexdigest() == SHIPPED_SHA256[name]
            sidecar = member.removesuffix(".safetensors") + ".json"
            assert sidecar in names
            assert json.loads(z.read(sidecar)) == json.loads((PKG / "weights" / Path(sidecar).name).read_bytes())
