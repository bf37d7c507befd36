"""독자 검사(make reader)의 도구: Hub 데이터셋과 같은 꼴의 캐시를 datasets 의 오프라인 모드가 읽는다."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian 의 Fashion-MNIST (dataset-fashion-mnist) 가 없다")
def test_hub_schema_cache_is_read_through_the_hub_code_path(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    hf_home = tmp_path / "hf"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "DDPM_KO_"))}
    subprocess.run(
        [sys.executable, str(ROOT / "tests_reader/make_hub_cache.py"), str(hf_home), str(DEBIAN), "30", "20"],
        check=True,
        capture_output=True,
        env={**env, "HF_HOME": str(hf_home)},
    )
    # Hub 에 올라 있는 파일과 같은 꼴: image = {bytes, path} 구조체, label = 정수, datasets 특징 메타데이터
    table = pq.read_table(
        hf_home / "hub_snapshot/zalando-datasets/fashion_mnist/fashion_mnist/test-00000-of-00001.parquet"
    )
    assert (
        table.schema.field("image").type.names == ["bytes", "path"] and str(table.schema.field("label").type) == "int64"
    )
    assert json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]["image"] == {"_type": "Image"}
    # 패키지는 Colab 과 같은 호출(load_dataset("zalando-datasets/fashion_mnist", split=…))로 이 캐시를 읽는다
    probe = (
        "import numpy as np, sys; from ddpm_ko.data import fashion_mnist_arrays, read_idx; "
        "x, y = fashion_mnist_arrays('test'); ref = read_idx(sys.argv[1])[:20]; "
        "print(x.shape, bool(np.array_equal(x, ref)), y[:5].tolist())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(DEBIAN / "t10k-images-idx3-ubyte.gz")],
        check=True,
        capture_output=True,
        text=True,
        env={
            **env,
            "HF_HOME": str(hf_home),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "DDPM_KO_DATA_SOURCE": "hub",
            "PYTHONPATH": str(ROOT / "src"),
        },
    ).stdout
    from ddpm_ko.data import read_idx

    labels = read_idx(DEBIAN / "t10k-labels-idx1-ubyte.gz")[:5]
    assert out.strip() == f"(20, 28, 28) True {np.asarray(labels).tolist()}", out
