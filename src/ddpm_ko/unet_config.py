"""U-Net 설정 ``UnetConfig``: 크기·블록·어텐션의 선택, 그로부터 정해지는 값(채널 계획, 시간 임베딩 차원), 입력 검사.

책의 배치(``unet.Unet``)와 Annotated 노트북의 배치(``unet_annotated.AnnotatedUnet``)가 함께 쓴다. 보통은
``from ddpm_ko.unet import Unet, UnetConfig`` 로 가져온다.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from .attention import Attention, LinearAttention
from .blocks import ConvNextBlock, ResnetBlock
from .configs import dataclass_from_dict, require
from .layers import PreNorm, Residual

__all__ = ["UnetConfig", "BLOCK_TYPES", "ATTENTION_TYPES", "LAYOUTS"]

BLOCK_TYPES = ("resnet", "convnext")
ATTENTION_TYPES = ("linear", "full", "none")
LAYOUTS = ("ddpm_ko", "annotated")


@dataclass
class UnetConfig:
    """U-Net 설정. 기본값은 2코어 CPU 에서 빨리 좋은 샘플에 이르도록 고른 값이다.

    Attributes:
        image_size: 입력 이미지의 한 변 (정사각형). ``2**(len(dim_mults)-1)`` 로 나누어져야 한다.
        channels: 입력·출력 채널 수 (Fashion-MNIST 는 1).
        dim: 첫 단계의 채널 수. 단계 k 의 채널은 ``dim * dim_mults[k]``.
        init_dim: 처음 7×7 합성곱의 출력 채널. 비워 두면 ``dim`` (annotated 배치는 ``dim // 3 * 2``) 으로 채운다.
        dim_mults: 단계별 채널 배수. 단계 수 = 길이.
        block_type: ``"resnet"`` (GroupNorm + SiLU, FiLM 식 시간 주입) 또는 ``"convnext"``.
        resnet_groups: ResNet 블록 GroupNorm 의 선호 그룹 수 (채널을 나누는 가장 큰 값으로 줄인다).
        convnext_mult: ConvNeXt 블록의 채널 확장 배수.
        weight_standardization: ResNet 블록의 합성곱에 가중치 표준화를 쓸지.
        stage_attention: 내려가기/올라가기 단계의 어텐션 (``"linear"``, ``"full"``, ``"none"``).
        attention_from_stage: 이 번호(0 부터) 이상인 단계에만 ``stage_attention`` 을 둔다.
            0 이면 모든 단계. 28×28 에서는 가장 높은 해상도의 어텐션이 비용에 비해 얻는 것이 적다.
        mid_attention: 가운데(가장 낮은 해상도)의 어텐션.
        heads, dim_head: 어텐션 헤드 수와 헤드당 차원.
        time_dim: 시간 임베딩 c(t) 의 차원. 비워 두면 ``4 * dim`` 으로 채운다.
        num_classes: 클래스 조건의 클래스 수 (11장). 비워 두면(기본) 조건 없는 모델이고 가중치·계산이 예전 그대로다.
            주면 레이블 임베딩 e(y) 를 시간 임베딩 c(t) 에 더한다 (``conditioning.ClassEmbedding``).
        layout: 단계를 잇는 방식. ``"ddpm_ko"`` (이 책: 블록마다 스킵 연결, 픽셀 언셔플 다운샘플, 최근접 보간
            업샘플) 또는 ``"annotated"`` (Annotated Diffusion 노트북의 원래 배치, ``unet_annotated.py``).

    ``init_dim`` 과 ``time_dim`` 은 만들 때 채우므로 읽는 쪽은 ``config.time_dim`` 을 그대로 쓰면 된다. 두 값을
    비워 둔 예전 설정 사본(JSON)도 그대로 읽힌다.
    """

    image_size: int = 28
    channels: int = 1
    dim: int = 32
    init_dim: int | None = None
    dim_mults: tuple[int, ...] = (1, 2, 2)
    block_type: Literal["resnet", "convnext"] = "resnet"
    resnet_groups: int = 8
    convnext_mult: int = 2
    weight_standardization: bool = True
    stage_attention: Literal["linear", "full", "none"] = "linear"
    attention_from_stage: int = 1
    mid_attention: Literal["linear", "full", "none"] = "full"
    heads: int = 4
    dim_head: int = 32
    time_dim: int | None = None
    layout: Literal["ddpm_ko", "annotated"] = "ddpm_ko"
    num_classes: int | None = None

    def __post_init__(self) -> None:
        self.dim_mults = tuple(int(m) for m in self.dim_mults)
        self.validate()
        if self.init_dim is None:  # Annotated 노트북은 처음 합성곱을 dim 의 2/3 채널로 둔다
            self.init_dim = self.dim // 3 * 2 if self.layout == "annotated" else self.dim
        if self.time_dim is None:
            self.time_dim = 4 * self.dim

    def validate(self) -> None:
        """불가능한 설정이면 무엇을 고쳐야 하는지 말하는 ``ValueError`` 를 낸다."""
        require(self.layout in LAYOUTS, f"layout 은 {LAYOUTS} 중 하나 / unknown layout '{self.layout}'")
        require(
            self.block_type in BLOCK_TYPES,
            f"block_type 은 {BLOCK_TYPES} 중 하나 / unknown block_type '{self.block_type}'",
        )
        require(
            self.stage_attention in ATTENTION_TYPES,
            f"stage_attention 은 {ATTENTION_TYPES} 중 하나 / unknown attention '{self.stage_attention}'",
        )
        require(
            self.mid_attention in ATTENTION_TYPES,
            f"mid_attention 은 {ATTENTION_TYPES} 중 하나 / unknown attention '{self.mid_attention}'",
        )
        require(self.channels >= 1, f"channels 는 1 이상 / channels must be >= 1, got {self.channels}")
        require(self.dim >= 4, f"dim 은 4 이상 / dim must be >= 4, got {self.dim}")
        # 사인파 시간 임베딩은 dim 개 성분을 sin 과 cos 로 반씩 나눈다 (식 ch4-eq-emb)
        require(
            self.dim % 2 == 0, f"dim 은 짝수 (시간 임베딩을 sin·cos 로 반씩 나눈다) / dim must be even, got {self.dim}"
        )
        require(
            len(self.dim_mults) >= 1 and all(m >= 1 for m in self.dim_mults),
            f"dim_mults 는 1 이상의 정수들 / dim_mults must be positive integers, got {self.dim_mults}",
        )
        require(self.heads >= 1 and self.dim_head >= 1, "heads 와 dim_head 는 1 이상 / heads and dim_head must be >= 1")
        for name in ("init_dim", "time_dim"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"{name} 은 1 이상 / {name} must be >= 1, got {value}")
        require(
            self.num_classes is None or (isinstance(self.num_classes, int) and self.num_classes >= 1),
            f"num_classes 는 비워 두거나 1 이상 / num_classes must be None or >= 1, got {self.num_classes!r}",
        )
        require(
            self.num_classes is None or self.layout == "ddpm_ko",
            "클래스 조건은 이 책의 배치(layout='ddpm_ko')에만 있다 / class conditioning needs layout='ddpm_ko'",
        )
        factor = self.downsample_factor
        require(
            self.image_size >= factor and self.image_size % factor == 0,
            f"image_size {self.image_size} 는 {factor} (= 2^(단계 수 − 1)) 로 나누어져야 한다 / "
            f"image_size {self.image_size} must be divisible by {factor} for dim_mults={self.dim_mults}",
        )

    @property
    def downsample_factor(self) -> int:
        """가장 낮은 해상도까지 줄이는 배수 2^(단계 수 − 1). H, W 는 이것으로 나누어져야 한다."""
        return 2 ** (len(self.dim_mults) - 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dim_mults"] = list(self.dim_mults)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UnetConfig:
        """``to_dict`` 의 사전(체크포인트의 JSON 사본)에서 만든다. 모르는 항목은 이름을 들어 거부한다."""
        return dataclass_from_dict(cls, d)

    @classmethod
    def annotated(cls, **overrides: Any) -> UnetConfig:
        """Annotated Diffusion 글의 이전 판(2022년 6월) 노트북의 신경망: dim 28, ConvNeXt 블록, dim_mults (1, 2, 4),
        모든 단계에 선형 어텐션, 가운데에 전체 어텐션, 그리고 그 노트북의 단계 배치(``layout="annotated"``).
        매개변수 2,996,315 개로 원래 코드(denoising-diffusion-pytorch 0.11.2 의 ``use_convnext=True``)와
        모듈마다 같다. 정규화만 그 노트북처럼 ``GroupNorm(1, C)`` 다. 비교 실험용이다."""
        base = dict(
            dim=28,
            dim_mults=(1, 2, 4),
            block_type="convnext",
            stage_attention="linear",
            attention_from_stage=0,
            mid_attention="full",
            heads=4,
            dim_head=32,
            layout="annotated",
        )
        base.update(overrides)
        return cls(**base)

    # ---------------------------------------------------------------- 두 배치가 함께 쓰는 것
    def stage_channels(self) -> list[tuple[int, int]]:
        """단계마다 (들어오는 채널, 나가는 채널): init_dim → dim·m_0 → dim·m_1 → …. 마지막 값이 가운데의 채널이다."""
        dims = [self.init_dim, *(self.dim * m for m in self.dim_mults)]
        return list(zip(dims[:-1], dims[1:]))

    def block(self, dim_in: int, dim_out: int, timed: bool = True) -> nn.Module:
        """설정의 블록 하나. ``timed`` 면 시간 임베딩 c(t) 를 받는다 (ResNet: 식 ch4-eq-film, ConvNeXt: 식 ch4-eq-convnext-add)."""
        time_dim = self.time_dim if timed else None
        if self.block_type == "resnet":
            return ResnetBlock(dim_in, dim_out, time_dim, self.resnet_groups, self.weight_standardization)
        return ConvNextBlock(dim_in, dim_out, time_dim, self.convnext_mult)

    def attention(self, kind: str, dim: int) -> nn.Module:
        """어텐션 층 ``x + Attn(GroupNorm(x))`` (식 ch6-eq-prenorm). ``kind="none"`` 이면 아무것도 하지 않는다."""
        if kind == "none":
            return nn.Identity()
        inner = (
            LinearAttention(dim, self.heads, self.dim_head)
            if kind == "linear"
            else Attention(dim, self.heads, self.dim_head)
        )
        return Residual(PreNorm(dim, inner))

    def stage_attention_layer(self, index: int, dim: int) -> nn.Module:
        """단계 ``index`` 의 어텐션: ``attention_from_stage`` 보다 앞 단계에는 두지 않는다."""
        return self.attention(self.stage_attention if index >= self.attention_from_stage else "none", dim)

    def check_input(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """신경망 입력 ``x`` (B, C, H, W) 와 타임스텝 ``t`` 를 검사하고 ``t`` 를 ``(B,)`` 로 맞춰 돌려준다 ((B, 1) 과 스칼라도 받는다)."""
        require(
            x.ndim == 4 and x.shape[1] == self.channels,
            f"입력은 (B, {self.channels}, H, W) 모양이어야 한다 / expected input (B, {self.channels}, H, W), got {tuple(x.shape)}",
        )
        factor = self.downsample_factor
        require(
            x.shape[-1] % factor == 0 and x.shape[-2] % factor == 0,
            f"H, W 는 {factor} 로 나누어져야 한다 / H and W must be divisible by {factor}, got {tuple(x.shape[-2:])}",
        )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 2 and t.shape[1] == 1:
            t = t[:, 0]
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        require(
            t.ndim == 1 and t.shape[0] == x.shape[0],
            f"t 는 (B,) 모양이어야 한다 / t must have shape (B,), got {tuple(t.shape)}",
        )
        return t
