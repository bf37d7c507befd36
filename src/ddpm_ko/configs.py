"""설정 데이터클래스(``UnetConfig``, ``TrainConfig``, ``ClassifierConfig``)가 함께 따르는 규칙 두 가지.

- 검사: ``require(조건, 메시지)`` 는 조건이 거짓이면 무엇을 고칠지 말하는 ``ValueError`` 를 낸다.
- 사전에서 만들기: ``dataclass_from_dict`` 는 모르는 항목을 조용히 버리지 않고 이름을 들어 거부한다.
  체크포인트의 JSON 사본을 잘못 고쳤거나 다른 판의 파일을 읽을 때 설정이 소리 없이 바뀌지 않게 하려는 것이다.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

__all__ = ["require", "dataclass_from_dict", "UnknownFieldsError"]

T = TypeVar("T")


class UnknownFieldsError(ValueError):
    """``dataclass_from_dict`` 가 모르는 항목을 만났을 때 (``ValueError`` 이기도 하다)."""


def require(cond: bool, msg: str) -> None:
    """``cond`` 가 거짓이면 ``ValueError(msg)`` 를 낸다. ``msg`` 는 "한국어 / English" 두 말로 쓴다."""
    if not cond:
        raise ValueError(msg)


def dataclass_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """사전 ``data`` 로 데이터클래스 ``cls`` 를 만든다. 모르는 항목이 있으면 그 이름을 모두 든 ``ValueError`` 를 낸다."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls!r} 는 데이터클래스가 아니다 / not a dataclass")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UnknownFieldsError(
            f"{cls.__name__} 에 없는 항목 / unknown {cls.__name__} fields: {unknown} "
            f"(쓸 수 있는 항목 / known: {sorted(known)})"
        )
    return cls(**data)
