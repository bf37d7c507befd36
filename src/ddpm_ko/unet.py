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

모든 블록은 시간 임베딩(``TimeMLP`` 의 출력)을 받는다. ``num_classes`` 를 준 조건부 모델은 거기에 레이블
임베딩 e(y) 를 더한 c(t) + e(y) 를 받는다 (11장, 식 ch11-eq-cond-emb).

``layout="annotated"`` (``UnetConfig.annotated()``) 의 신경망은 ``unet_annotated.py`` 의 ``AnnotatedUnet`` 이다.
``Unet(config)`` 는 설정의 ``layout`` 을 보고 그 클래스를 만들어 돌려주므로, 체크포인트를 읽는 코드는 배치를 몰라도 된다.
설정 ``UnetConfig`` 는 ``unet_config.py`` 에 있다 (여기서도 import 할 수 있다).
주석의 ``식 chN-eq-…`` 는 책 N장의 식 번호다.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .conditioning import ClassEmbedding
from .embeddings import TimeMLP
from .layers import Downsample, Upsample
from .unet_annotated import AnnotatedUnet
from .unet_config import ATTENTION_TYPES, BLOCK_TYPES, LAYOUTS, UnetConfig

__all__ = ["UnetConfig", "Unet", "BLOCK_TYPES", "ATTENTION_TYPES", "LAYOUTS"]


class Unet(nn.Module):
    """잡음(또는 x_0, v)을 예측하는 U-Net ε_θ(x_t, t) (식 ch6-eq-shape).  ``forward(x, t)``: x (B, C, H, W), t (B,) 정수.

    조건부 모델(``num_classes`` 를 준 설정)은 ``forward(x, t, labels)`` 로 ε_θ(x_t, t, y) 를 계산한다. ``labels`` 를
    주지 않으면 '레이블 없음'(∅) 이다.

    ``Unet(UnetConfig.annotated())`` 처럼 ``layout="annotated"`` 인 설정을 주면 ``AnnotatedUnet`` 을 돌려준다.
    """

    def __new__(cls, config: UnetConfig | None = None, **kwargs: Any) -> nn.Module:
        if config is not None and kwargs:
            raise TypeError("config 와 키워드 인자를 함께 줄 수 없다 / pass either a config or keyword arguments")
        if cls is Unet and (config if config is not None else UnetConfig(**kwargs)).layout == "annotated":
            # Unet 이 아닌 객체를 돌려주므로 파이썬은 Unet.__init__ 을 부르지 않는다
            return AnnotatedUnet(config if config is not None else UnetConfig(**kwargs))
        return super().__new__(cls)

    def __init__(self, config: UnetConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        config = config if config is not None else UnetConfig(**kwargs)
        config.validate()
        self.config = c = config
        in_out = c.stage_channels()
        n = len(in_out)

        self.init_conv = nn.Conv2d(c.channels, c.init_dim, 7, padding=3)
        self.time_mlp = TimeMLP(c.dim, c.time_dim)  # c(t) = W₂ GELU(W₁ e(t) + b₁) + b₂ (식 ch4-eq-timemlp)
        # 조건부 모델만: e(y), 0 으로 시작 (조건 없는 모델에는 이 층이 없어 가중치가 예전 그대로다)
        self.class_emb = ClassEmbedding(c.num_classes, c.time_dim) if c.num_classes else None

        self.downs = nn.ModuleList()  # 블록 두 개는 채널을 두고, 마지막 층이 해상도를 줄이며 채널을 바꾼다
        for i, (d_in, d_out) in enumerate(in_out):
            last = i == n - 1
            self.downs.append(
                nn.ModuleList(
                    [
                        c.block(d_in, d_in),
                        c.block(d_in, d_in),
                        c.stage_attention_layer(i, d_in),
                        Downsample(d_in, d_out) if not last else nn.Conv2d(d_in, d_out, 3, padding=1),
                    ]
                )
            )

        mid = in_out[-1][1]
        self.mid_block1 = c.block(mid, mid)
        self.mid_attn = c.attention(c.mid_attention, mid)
        self.mid_block2 = c.block(mid, mid)

        self.ups = nn.ModuleList()  # 블록마다 내려가기에서 쌓은 스킵 연결 하나를 이어 붙인다
        for i, (d_in, d_out) in enumerate(reversed(in_out)):
            last = i == n - 1
            self.ups.append(
                nn.ModuleList(
                    [
                        c.block(d_out + d_in, d_out),
                        c.block(d_out + d_in, d_out),
                        c.stage_attention_layer(n - 1 - i, d_out),
                        Upsample(d_out, d_in) if not last else nn.Conv2d(d_out, d_in, 3, padding=1),
                    ]
                )
            )
        self.final_block = c.block(c.init_dim * 2, c.dim)
        self.final_conv = nn.Conv2d(c.dim, c.channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        t = self.config.check_input(x, t)
        if self.class_emb is None and labels is not None:
            raise ValueError(
                "이 모델은 조건 없는 모델이라 레이블을 받지 않는다: 조건부 모델(UnetConfig(num_classes=10), "
                "pretrained-conditional)을 쓰거나 레이블을 빼라 / this model is unconditional and takes no labels: "
                "use a conditional model (num_classes=10, pretrained-conditional) or drop the labels"
            )
        x = self.init_conv(x)  # 모듈을 부르는 차례는 조건 없는 모델과 같다 (6장이 훅으로 그 차례를 읽는다)
        emb = self.time_mlp(t)
        if self.class_emb is not None:
            emb = emb + self.class_emb(labels, x.shape[0], x.device)  # c(t) + e(y) (식 ch11-eq-cond-emb)
        emb = emb.to(x.dtype)
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

    def num_parameters(self) -> int:
        """학습하는 매개변수의 수."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
