"""잡음 예측 U-Net: ε_θ(x_t, t).

구조 (dim_mults = (1, 2, 4), 28×28 입력의 예):

    init_conv 7×7 ─► [down 1: 블록, 블록, 어텐션, ↓] 28→14
                     [down 2: 블록, 블록, 어텐션, ↓] 14→7
                     [down 3: 블록, 블록, 어텐션, 3×3 합성곱]  7
                     [mid:    블록, 전체 어텐션, 블록]          7
                     [up 3:   블록, 블록, 어텐션, ↑]  7→14     (각 블록 입력에 스킵 연결을 이어 붙인다)
                     [up 2:   블록, 블록, 어텐션, ↑] 14→28
                     [up 1:   블록, 블록, 어텐션, 3×3 합성곱] 28
    final 블록 (init_conv 출력과 이어 붙임) ─► 1×1 합성곱 ─► 출력

모든 블록은 시간 임베딩(``TimeMLP`` 의 출력)을 받는다.

``layout="annotated"`` (``UnetConfig.annotated()``) 는 Annotated Diffusion 글의 이전 판(2022년 6월, ConvNeXt 블록이
기본값이던 판; 2022년 12월에 ResNet 블록만 쓰는 판으로 바뀌었다)과 그 Colab 노트북의 신경망을 그대로 옮긴 배치다.

    init_conv 7×7 (dim·2/3 채널) ─► [down 1: 블록, 블록, 어텐션, 4×4 stride 2 합성곱] 28→14   (출력을 h 에 쌓는다)
                                   [down 2: 블록, 블록, 어텐션, 4×4 stride 2 합성곱] 14→7
                                   [down 3: 블록, 블록, 어텐션]                       7
                                   [mid:    블록, 전체 어텐션, 블록]                  7
                                   [up 3:   (h 와 이어 붙임) 블록, 블록, 어텐션, 4×4 전치 합성곱]  7→14
                                   [up 2:   (h 와 이어 붙임) 블록, 블록, 어텐션, 4×4 전치 합성곱] 14→28
    final 블록 (시간 임베딩 없음) ─► 1×1 합성곱 ─► 출력

올라가기 단계가 하나 적어 28×28 단계의 스킵 연결(h 의 첫 텐서)은 쓰이지 않는다. 원래 코드가 그렇다.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import torch
from torch import nn

from .attention import Attention, LinearAttention
from .blocks import ConvNextBlock, ResnetBlock
from .embeddings import TimeMLP
from .layers import Downsample, PreNorm, Residual, Upsample

__all__ = ["UnetConfig", "Unet", "BLOCK_TYPES", "ATTENTION_TYPES", "LAYOUTS"]

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
        init_dim: 처음 7×7 합성곱의 출력 채널 (기본: ``dim``, annotated 배치는 ``dim // 3 * 2``).
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
        time_dim: 시간 임베딩 차원 (기본: ``4 * dim``).
        layout: 단계를 잇는 방식. ``"ddpm_ko"`` (이 책: 블록마다 스킵 연결, 픽셀 언셔플 다운샘플, 최근접 보간
            업샘플) 또는 ``"annotated"`` (Annotated Diffusion 노트북의 원래 배치, 모듈 설명의 그림).
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

    def __post_init__(self) -> None:
        self.dim_mults = tuple(int(m) for m in self.dim_mults)
        self.validate()

    def validate(self) -> None:
        """불가능한 설정이면 무엇을 고쳐야 하는지 말하는 ``ValueError`` 를 낸다."""
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        need(self.layout in LAYOUTS, f"layout 은 {LAYOUTS} 중 하나 / unknown layout '{self.layout}'")
        need(self.block_type in BLOCK_TYPES, f"block_type 은 {BLOCK_TYPES} 중 하나 / unknown block_type '{self.block_type}'")
        need(self.stage_attention in ATTENTION_TYPES, f"stage_attention 은 {ATTENTION_TYPES} 중 하나 / unknown attention '{self.stage_attention}'")
        need(self.mid_attention in ATTENTION_TYPES, f"mid_attention 은 {ATTENTION_TYPES} 중 하나 / unknown attention '{self.mid_attention}'")
        need(self.channels >= 1, f"channels 는 1 이상 / channels must be >= 1, got {self.channels}")
        need(self.dim >= 4, f"dim 은 4 이상 / dim must be >= 4, got {self.dim}")
        # 사인파 시간 임베딩은 dim 개 성분을 sin 과 cos 로 반씩 나눈다
        need(self.dim % 2 == 0, f"dim 은 짝수 (시간 임베딩을 sin·cos 로 반씩 나눈다) / dim must be even, got {self.dim}")
        need(len(self.dim_mults) >= 1 and all(m >= 1 for m in self.dim_mults),
             f"dim_mults 는 1 이상의 정수들 / dim_mults must be positive integers, got {self.dim_mults}")
        need(self.heads >= 1 and self.dim_head >= 1, "heads 와 dim_head 는 1 이상 / heads and dim_head must be >= 1")
        factor = 2 ** (len(self.dim_mults) - 1)
        need(self.image_size >= factor and self.image_size % factor == 0,
             f"image_size {self.image_size} 는 {factor} (= 2^(단계 수 − 1)) 로 나누어져야 한다 / "
             f"image_size {self.image_size} must be divisible by {factor} for dim_mults={self.dim_mults}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dim_mults"] = list(self.dim_mults)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UnetConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"UnetConfig 에 없는 항목 / unknown UnetConfig fields: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def annotated(cls, **overrides: Any) -> "UnetConfig":
        """Annotated Diffusion 글의 이전 판(2022년 6월) 노트북의 신경망: dim 28, ConvNeXt 블록, dim_mults (1, 2, 4),
        모든 단계에 선형 어텐션, 가운데에 전체 어텐션, 그리고 그 노트북의 단계 배치(``layout="annotated"``).
        매개변수 2,996,315 개로 원래 코드(denoising-diffusion-pytorch 0.11.2 의 ``use_convnext=True``)와
        모듈마다 같다. 정규화만 그 노트북처럼 ``GroupNorm(1, C)`` 다. 비교 실험용이다."""
        base = dict(dim=28, dim_mults=(1, 2, 4), block_type="convnext", stage_attention="linear",
                    attention_from_stage=0, mid_attention="full", heads=4, dim_head=32, layout="annotated")
        base.update(overrides)
        return cls(**base)


def _attention(kind: str, dim: int, heads: int, dim_head: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    inner = LinearAttention(dim, heads, dim_head) if kind == "linear" else Attention(dim, heads, dim_head)
    return Residual(PreNorm(dim, inner))


class Unet(nn.Module):
    """잡음(또는 x_0, v)을 예측하는 U-Net.  ``forward(x, t)``: x (B, C, H, W), t (B,) 정수."""

    def __init__(self, config: UnetConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = UnetConfig(**kwargs)
        elif kwargs:
            raise TypeError("config 와 키워드 인자를 함께 줄 수 없다 / pass either a config or keyword arguments")
        config.validate()
        self.config = c = config
        annotated = c.layout == "annotated"
        init_dim = c.init_dim or (c.dim // 3 * 2 if annotated else c.dim)
        time_dim = c.time_dim or c.dim * 4
        dims = [init_dim, *(c.dim * m for m in c.dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:]))

        def block(d_in: int, d_out: int, timed: bool = True) -> nn.Module:
            td = time_dim if timed else None
            if c.block_type == "resnet":
                return ResnetBlock(d_in, d_out, td, c.resnet_groups, c.weight_standardization)
            return ConvNextBlock(d_in, d_out, td, c.convnext_mult)

        def stage_attn(index: int, d: int) -> nn.Module:
            kind = c.stage_attention if index >= c.attention_from_stage else "none"
            return _attention(kind, d, c.heads, c.dim_head)

        self.init_conv = nn.Conv2d(c.channels, init_dim, 7, padding=3)
        self.time_mlp = TimeMLP(c.dim, time_dim)

        n = len(in_out)
        self.downs = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(in_out):
            last = i == n - 1
            if annotated:   # 블록이 채널을 바꾸고, 4×4 stride 2 합성곱으로 줄인다
                stage = [block(d_in, d_out), block(d_out, d_out), stage_attn(i, d_out),
                         nn.Conv2d(d_out, d_out, 4, 2, 1) if not last else nn.Identity()]
            else:
                stage = [block(d_in, d_in), block(d_in, d_in), stage_attn(i, d_in),
                         Downsample(d_in, d_out) if not last else nn.Conv2d(d_in, d_out, 3, padding=1)]
            self.downs.append(nn.ModuleList(stage))

        mid = dims[-1]
        self.mid_block1 = block(mid, mid)
        self.mid_attn = _attention(c.mid_attention, mid, c.heads, c.dim_head)
        self.mid_block2 = block(mid, mid)

        self.ups = nn.ModuleList()
        if annotated:       # 가장 높은 해상도의 단계에는 올라가기 단계가 없다 (원래 코드의 reversed(in_out[1:]))
            for i, (d_in, d_out) in enumerate(reversed(in_out[1:])):
                self.ups.append(nn.ModuleList([block(d_out * 2, d_in), block(d_in, d_in), stage_attn(n - 1 - i, d_in),
                                               nn.ConvTranspose2d(d_in, d_in, 4, 2, 1)]))
            self.final_block = block(dims[1], dims[1], timed=False)
            self.final_conv = nn.Conv2d(dims[1], c.channels, 1)
        else:
            for i, (d_in, d_out) in enumerate(reversed(in_out)):
                last = i == n - 1
                self.ups.append(nn.ModuleList([
                    block(d_out + d_in, d_out),
                    block(d_out + d_in, d_out),
                    stage_attn(n - 1 - i, d_out),
                    Upsample(d_out, d_in) if not last else nn.Conv2d(d_out, d_in, 3, padding=1),
                ]))
            self.final_block = block(init_dim * 2, c.dim)
            self.final_conv = nn.Conv2d(c.dim, c.channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.channels:
            raise ValueError(
                f"입력은 (B, {c.channels}, H, W) 모양이어야 한다 / expected input (B, {c.channels}, H, W), got {tuple(x.shape)}"
            )
        factor = 2 ** (len(c.dim_mults) - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(
                f"H, W 는 {factor} 로 나누어져야 한다 / H and W must be divisible by {factor}, got {tuple(x.shape[-2:])}"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 2 and t.shape[1] == 1:   # (B, 1) 도 받아 준다
            t = t[:, 0]
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t 는 (B,) 모양이어야 한다 / t must have shape (B,), got {tuple(t.shape)}")

        x = self.init_conv(x)
        emb = self.time_mlp(t).to(x.dtype)
        if c.layout == "annotated":
            return self._forward_annotated(x, emb)
        r = x
        skips: list[torch.Tensor] = []
        for block1, block2, attn, down in self.downs:
            x = block1(x, emb)
            skips.append(x)
            x = attn(block2(x, emb))
            skips.append(x)
            x = down(x)

        x = self.mid_block1(x, emb)
        x = self.mid_attn(x)
        x = self.mid_block2(x, emb)

        for block1, block2, attn, up in self.ups:
            x = block1(torch.cat([x, skips.pop()], dim=1), emb)
            x = block2(torch.cat([x, skips.pop()], dim=1), emb)
            x = up(attn(x))

        x = self.final_block(torch.cat([x, r], dim=1), emb)
        return self.final_conv(x)

    def _forward_annotated(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Annotated Diffusion 노트북의 순전파: 단계마다 어텐션 출력 하나만 쌓고, 올라가기 단계 입구에서 이어 붙인다."""
        h: list[torch.Tensor] = []
        for block1, block2, attn, down in self.downs:
            x = attn(block2(block1(x, emb), emb))
            h.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, emb)), emb)
        for block1, block2, attn, up in self.ups:
            x = torch.cat([x, h.pop()], dim=1)
            x = up(attn(block2(block1(x, emb), emb)))
        return self.final_conv(self.final_block(x))

    def num_parameters(self) -> int:
        """학습하는 매개변수의 수."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
