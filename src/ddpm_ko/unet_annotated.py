"""Annotated Diffusion 노트북의 U-Net 배치 (``UnetConfig.annotated()``, ``layout="annotated"``). 비교 실험용이다.

Annotated Diffusion 글의 이전 판(2022년 6월, ConvNeXt 블록이 기본값이던 판; 2022년 12월에 ResNet 블록만 쓰는 판으로
바뀌었다)과 그 Colab 노트북의 신경망을 그대로 옮긴 배치다. 책의 배치(``unet.py`` 의 ``Unet``)와 다른 점:

    init_conv 7×7 (dim·2/3 채널) ─► [down 1: 블록, 블록, 어텐션, 4×4 stride 2 합성곱] 28→14   (출력을 h 에 쌓는다)
                                   [down 2: 블록, 블록, 어텐션, 4×4 stride 2 합성곱] 14→7
                                   [down 3: 블록, 블록, 어텐션]                       7
                                   [mid:    블록, 전체 어텐션, 블록]                  7
                                   [up 3:   (h 와 이어 붙임) 블록, 블록, 어텐션, 4×4 전치 합성곱]  7→14
                                   [up 2:   (h 와 이어 붙임) 블록, 블록, 어텐션, 4×4 전치 합성곱] 14→28
    final 블록 (시간 임베딩 없음) ─► 1×1 합성곱 ─► 출력

- 내려가기 단계의 첫 블록이 채널을 바꾸고, 4×4 stride 2 합성곱이 해상도를 줄인다 (책: 픽셀 언셔플).
- 단계마다 어텐션 출력 하나만 쌓아 올라가기 단계 입구에서 이어 붙인다 (책: 블록마다 하나씩).
- 올라가기 단계가 하나 적어 28×28 단계의 스킵 연결(h 의 첫 텐서)은 쓰이지 않는다. 원래 코드가 그렇다.
- 마지막 블록은 시간 임베딩을 받지 않는다.

블록·어텐션 고르기와 입력 검사는 설정(``UnetConfig``)의 메서드를 함께 쓴다. 매개변수 이름과 수(2,996,315)는
원래 코드와 모듈마다 같다 (``benchmarks/check_annotated_equivalence.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from .embeddings import TimeMLP
from .unet_config import UnetConfig

__all__ = ["AnnotatedUnet"]


class AnnotatedUnet(nn.Module):
    """Annotated Diffusion 노트북의 U-Net. 보통은 ``Unet(UnetConfig.annotated())`` 로 만든다."""

    def __init__(self, config: UnetConfig) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        in_out = c.stage_channels()
        n = len(in_out)

        self.init_conv = nn.Conv2d(c.channels, c.init_dim, 7, padding=3)
        self.time_mlp = TimeMLP(c.dim, c.time_dim)

        self.downs = nn.ModuleList()  # 블록이 채널을 바꾸고, 4×4 stride 2 합성곱으로 줄인다
        for i, (d_in, d_out) in enumerate(in_out):
            self.downs.append(
                nn.ModuleList(
                    [
                        c.block(d_in, d_out),
                        c.block(d_out, d_out),
                        c.stage_attention_layer(i, d_out),
                        nn.Conv2d(d_out, d_out, 4, 2, 1) if i < n - 1 else nn.Identity(),
                    ]
                )
            )

        mid = in_out[-1][1]
        self.mid_block1 = c.block(mid, mid)
        self.mid_attn = c.attention(c.mid_attention, mid)
        self.mid_block2 = c.block(mid, mid)

        self.ups = (
            nn.ModuleList()
        )  # 가장 높은 해상도의 단계에는 올라가기 단계가 없다 (원래 코드의 reversed(in_out[1:]))
        for i, (d_in, d_out) in enumerate(reversed(in_out[1:])):
            self.ups.append(
                nn.ModuleList(
                    [
                        c.block(d_out * 2, d_in),
                        c.block(d_in, d_in),
                        c.stage_attention_layer(n - 1 - i, d_in),
                        nn.ConvTranspose2d(d_in, d_in, 4, 2, 1),
                    ]
                )
            )
        first = in_out[0][1]  # 가장 높은 해상도 단계의 채널
        self.final_block = c.block(first, first, timed=False)
        self.final_conv = nn.Conv2d(first, c.channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """단계마다 어텐션 출력 하나만 쌓고, 올라가기 단계 입구에서 이어 붙인다."""
        t = self.config.check_input(x, t)
        x = self.init_conv(x)
        emb = self.time_mlp(t).to(x.dtype)
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
