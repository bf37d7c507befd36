"""지수 이동 평균(exponential moving average, EMA) 가중치.

θ_EMA ← d·θ_EMA + (1 − d)·θ.  학습 초반에는 d = min(decay, (1 + n)/(10 + n)) 로 낮춰
무작위 초기값이 오래 남지 않게 한다 (식 ch7-eq-ema, ch9-eq-ema). 샘플링에는 보통 EMA 가중치를 쓴다.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA", "ema_decay_at"]


def ema_decay_at(num_updates: int, decay: float) -> float:
    """``num_updates`` 번 갱신한 뒤의 감쇠율 d_n = min(d, (1 + n)/(10 + n)): 0.1 에서 시작해 ``decay`` 에 이른다."""
    return min(decay, (1 + num_updates) / (10 + num_updates))  # 식 (ch7-eq-ema) 의 d_n


class EMA(nn.Module):
    """모델의 EMA 사본을 들고 ``update`` 때마다 갱신한다."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay 는 [0, 1) 범위 / EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        """다음 ``update`` 가 쓸 감쇠율 (``ema_decay_at``)."""
        return ema_decay_at(int(self.num_updates), self.decay)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - d)  # 식 (ch7-eq-ema): d·θ_EMA + (1 − d)·θ
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)
        self.num_updates += 1

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)
