"""독자 검사용: Hugging Face Hub 의 ``zalando-datasets/fashion_mnist`` 와 같은 꼴의 작은 데이터를 로컬 캐시에 둔다.

Hub 에 닿을 수 없는 기계에서 Colab 과 같은 코드 경로(``datasets.load_dataset(HUB_ID, split=...)``)를 돌리려고
쓴다. 이 스크립트는 독자용 가상환경의 파이썬으로 실행한다 (캐시 형식이 그 환경의 ``datasets`` 판과 맞게).

1. Hub 에 올라 있는 것과 같은 꼴의 Parquet 파일을 만든다: ``fashion_mnist/{train,test}-00000-of-00001.parquet``,
   열 ``image`` = 구조체 {bytes: PNG 바이트, path: null}, ``label`` = 정수, 그리고 ``datasets`` 가 Parquet 에
   남기는 특징(features) 메타데이터 (Image, ClassLabel 이름은 Hub 의 데이터 카드와 같다).
2. 그 파일을 ``datasets`` 의 Parquet 빌더로 준비(download_and_prepare)해 ``$HF_HOME/datasets`` 아래에 Hub 에서
   받은 데이터셋과 같은 자리(``zalando-datasets___fashion_mnist/fashion_mnist/0.0.0/<커밋>``)에 둔다. Colab 에서
   한 번 받은 뒤의 캐시와 같은 모양이다. ``HF_HUB_OFFLINE=1``/``HF_DATASETS_OFFLINE=1`` 이면 ``load_dataset`` 이
   Hub 대신 이 캐시를 읽는다 (``datasets`` 의 오프라인 모드).

데이터는 Debian 패키지 ``dataset-fashion-mnist`` 의 IDX 파일에서 만든다 (앞에서부터 TRAIN_N, TEST_N 장).

    python make_hub_cache.py HF_HOME IDX_DIR TRAIN_N TEST_N
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np

HUB_ID = "zalando-datasets/fashion_mnist"
CONFIG = "fashion_mnist"
#: Hub 저장소에서 Parquet 으로 바꾼 커밋 ("Convert dataset to Parquet"). 캐시 디렉터리 이름에 쓰인다.
COMMIT = "531be5e2ccc9dba0c201ad3ae567a4f3d16ecdd2"
#: Hub 의 데이터 카드에 적힌 레이블 이름 (ClassLabel)
HUB_LABEL_NAMES = [
    "T - shirt / top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_IDX = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find(idx_dir: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (idx_dir / name).is_file():
            return idx_dir / name
    sys.exit(f"{idx_dir} 에 {stem}[.gz] 이 없다 / missing (sudo apt-get install dataset-fashion-mnist)")


def write_hub_parquet(snapshot: Path, idx_dir: Path, sizes: dict[str, int]) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    features = {"image": {"_type": "Image"}, "label": {"names": HUB_LABEL_NAMES, "_type": "ClassLabel"}}
    schema = pa.schema(
        [("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("label", pa.int64())],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )
    files = {}
    for split, n in sizes.items():
        images = read_idx(find(idx_dir, _IDX[split][0]))[:n]
        labels = read_idx(find(idx_dir, _IDX[split][1]))[:n]
        encoded = []
        for a in images:
            buf = io.BytesIO()
            Image.fromarray(a, mode="L").save(buf, format="PNG")
            encoded.append({"bytes": buf.getvalue(), "path": None})
        table = pa.table({"image": encoded, "label": labels.astype(np.int64)}, schema=schema)
        out = snapshot / CONFIG / f"{split}-00000-of-00001.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out)
        files[split] = str(out)
    (snapshot / "README.md").write_text(
        "---\ndataset_info:\n  config_name: fashion_mnist\n  features:\n  - name: image\n    dtype: image\n"
        "  - name: label\n    dtype:\n      class_label:\n        names:\n"
        + "".join(f"          '{i}': {name}\n" for i, name in enumerate(HUB_LABEL_NAMES))
        + "configs:\n- config_name: fashion_mnist\n  data_files:\n"
        "  - split: train\n    path: fashion_mnist/train-*\n  - split: test\n    path: fashion_mnist/test-*\n---\n",
        encoding="utf-8",
    )
    return files


def prepare_cache(hf_home: Path, files: dict[str, str]) -> Path:
    """Hub 에서 받은 것과 같은 자리(``주인___이름/설정/판/커밋``)에 datasets 캐시를 준비한다.

    ``datasets`` 는 저장소 이름(repo_id)을 준 빌더에는 hf:// 안의 파일만 받는다. 그래서 로컬 Parquet 으로
    이름(``fashion_mnist``)만 주어 준비하고, 캐시 안의 상대 경로 앞에 Hub 에서 받을 때처럼 ``주인___`` 을 붙인다.
    """
    import datasets
    from datasets.packaged_modules.parquet.parquet import Parquet, ParquetConfig

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=HUB_LABEL_NAMES)})
    data_files = datasets.data_files.DataFilesDict.from_local_or_remote(
        {split: [path] for split, path in files.items()}
    )
    namespace, name = HUB_ID.split("/")

    class HubFashionMnist(Parquet):
        # Hub 의 데이터 카드(configs)로 만든 빌더와 같이, 설정 이름이 곧 설정 id 가 되게 한다
        BUILDER_CONFIGS: ClassVar[list[ParquetConfig]] = [ParquetConfig(name=CONFIG, data_files=data_files)]

        def _relative_data_dir(self, with_version: bool = True, with_hash: bool = True) -> str:
            return f"{namespace}___" + super()._relative_data_dir(with_version, with_hash)

    builder = HubFashionMnist(
        cache_dir=str(hf_home / "datasets"),
        dataset_name=name,
        config_name=CONFIG,
        hash=COMMIT,
        info=datasets.DatasetInfo(features=features),
    )
    builder.download_and_prepare()
    return Path(builder.cache_dir)


def main() -> None:
    hf_home, idx_dir, train_n, test_n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    files = write_hub_parquet(hf_home / "hub_snapshot" / HUB_ID, idx_dir, {"train": train_n, "test": test_n})
    out = prepare_cache(hf_home, files)
    print(f"[reader] Hub 꼴 캐시 / Hub-schema cache: {out} (train {train_n}, test {test_n})")


if __name__ == "__main__":
    main()
