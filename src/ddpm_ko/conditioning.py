"""클래스 조건(class conditioning): U-Net 이 "무엇을" 그릴지 클래스 레이블 y 로 듣는 부분 (11장).

- ``ClassEmbedding`` — 레이블 y 를 시간 임베딩과 같은 차원의 벡터 e(y) 로 바꾼다. U-Net 은 c(t) + e(y) 를 블록에 준다
  (식 ch11-eq-cond-emb). 레이블 ``num_classes`` 는 '레이블 없음'(∅, null) 이다.
- ``parse_label`` — 명령줄의 ``--label`` 값(번호, 영어 또는 한국어 클래스 이름)을 번호로.
- ``drop_labels`` — 학습에서 확률 p_uncond 로 레이블을 ∅ 으로 바꾼다. 그래서 한 신경망이 조건부 ε_θ(x_t, t, y) 와
  조건 없는 ε_θ(x_t, t, ∅) 를 함께 배운다 (Ho & Salimans 2022, 식 ch11-eq-drop).

두 예측을 섞는 분류기 없는 가이던스(classifier-free guidance)는 ``guidance.py`` 에 있다.
"""

from __future__ import annotations

import torch
from torch import nn

from .configs import require
from .data import CLASS_NAMES, CLASS_NAMES_KO

__all__ = [
    "NUM_CLASSES",
    "ClassEmbedding",
    "parse_label",
    "label_name",
    "drop_labels",
    "null_labels",
    "model_num_classes",
]

#: Fashion-MNIST 의 클래스 수
NUM_CLASSES = len(CLASS_NAMES)


def model_num_classes(model: object) -> int | None:
    """모델이 클래스 조건부면(``model.config.num_classes``) 그 클래스 수, 아니면 ``None``."""
    return getattr(getattr(model, "config", None), "num_classes", None)


def null_labels(batch: int, num_classes: int, device: torch.device | str | None = None) -> torch.Tensor:
    """'레이블 없음'(∅) 만으로 된 ``(batch,)`` 레이블. ∅ 의 번호는 ``num_classes`` 다."""
    return torch.full((batch,), num_classes, dtype=torch.long, device=device)


class ClassEmbedding(nn.Module):
    """레이블 y ∈ {0, …, K−1, ∅} 를 ``dim`` 차원 벡터 e(y) 로 (학습하는 표, ``nn.Embedding``).

    표를 0 으로 시작한다. 그러면 처음에는 e(y) = 0 이라 조건부 U-Net 이 조건 없는 U-Net 과 똑같이 계산한다:
    조건 없는 모델의 가중치에서 미세 조정(``--init-from``)해도 첫 스텝의 출력이 그 모델 그대로다.
    0 이어도 그래디언트는 흐른다 (e(y) 는 c(t) 에 더해질 뿐이라 ∂L/∂e(y) = ∂L/∂c).
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        require(num_classes >= 1, f"num_classes 는 1 이상 / num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)  # 마지막 행이 ∅
        nn.init.zeros_(self.table.weight)

    def forward(self, labels: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """``labels`` (B,) 정수 (``None`` 이면 모두 ∅) → e(y) (B, dim)."""
        if labels is None:
            labels = null_labels(batch, self.num_classes, device)
        labels = torch.as_tensor(labels, device=device)
        if labels.ndim == 0:
            labels = labels.expand(batch)
        require(
            labels.shape == (batch,) and not labels.is_floating_point(),
            f"레이블은 (B,) = ({batch},) 모양의 정수여야 한다 / labels must be integers of shape ({batch},), "
            f"got {labels.dtype} {tuple(labels.shape)}",
        )
        # 값 검사는 데이터에 따라 갈리는 분기라 torch.export(ONNX 내보내기)가 그래프로 옮기지 못한다. 내보낸 파일의
        # 레이블은 그것을 돌리는 쪽이 검사한다 (onnx_export.OnnxUnet, 브라우저 쪽은 고를 수 있는 값만 보낸다).
        if torch.compiler.is_exporting():
            return self.table(labels.long())
        bad = (labels < 0) | (labels > self.num_classes)
        require(
            not bool(bad.any()),
            f"레이블은 0..{self.num_classes - 1} (또는 레이블 없음 {self.num_classes}) 이어야 한다 / "
            f"labels must be in 0..{self.num_classes - 1} (or {self.num_classes} for 'no label'), "
            f"got {labels[bad][:5].tolist()}",
        )
        return self.table(labels.long())


def label_name(label: int, korean: bool = True) -> str:
    """클래스 번호의 이름 ("티셔츠", "T-shirt/top" …)."""
    return (CLASS_NAMES_KO if korean else CLASS_NAMES)[label]


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


# 번호 말고 이름으로도 부를 수 있게: 영어 이름, 한국어 이름, 그리고 '/' 로 나뉜 영어 이름의 각 부분 ("top")
_NAMES: dict[str, int] = {}
for _i, (_en, _ko) in enumerate(zip(CLASS_NAMES, CLASS_NAMES_KO)):
    for _n in (_en, _ko, *_en.split("/")):
        _NAMES.setdefault(_key(_n), _i)
_NAMES.update({_key("tshirt"): 0, _key("boot"): 9, _key("부츠"): 9})


def parse_label(spec: str | int, num_classes: int = NUM_CLASSES) -> int:
    """``--label`` 의 값을 클래스 번호로: ``3``, ``"dress"``, ``"드레스"``, ``"Ankle boot"`` 모두 3 이나 9 처럼.

    모르는 이름이나 범위 밖의 번호는 고를 수 있는 값을 모두 보여 주는 ``ValueError`` 를 낸다.
    """
    choices = ", ".join(f"{i}={en}({ko})" for i, (en, ko) in enumerate(zip(CLASS_NAMES, CLASS_NAMES_KO)))
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        k = int(text)
        require(
            0 <= k < num_classes,
            f"클래스 번호 {k} 는 0..{num_classes - 1} 밖이다 / class {k} is out of range 0..{num_classes - 1}: {choices}",
        )
        return k
    k = _NAMES.get(_key(text))
    require(
        k is not None and k < num_classes,
        f"모르는 클래스 이름 '{text}' / unknown class name '{text}'. 번호나 이름 중 하나 / use a number or a name: {choices}",
    )
    return int(k)  # type: ignore[arg-type]


def drop_labels(labels: torch.Tensor, p_uncond: float, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """확률 ``p_uncond`` 로 각 레이블을 ∅ 으로 바꾼다 (식 ch11-eq-drop). 난수는 ``generator`` (CPU) 에서 뽑는다."""
    drop = torch.rand(labels.shape, generator=generator) < p_uncond
    return torch.where(drop.to(labels.device), torch.full_like(labels, num_classes), labels)
