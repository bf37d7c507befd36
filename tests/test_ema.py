"""``ddpm_ko.ema`` 검사: 감쇠율 워밍업 d_n = min(d, (1 + n)/(10 + n)) 와 갱신 θ_EMA ← d_n θ_EMA + (1 − d_n) θ (식 ch7-eq-ema)."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from torch import nn

from ddpm_ko.ema import EMA, ema_decay_at


def test_decay_warmup_starts_at_a_tenth_and_reaches_the_target():
    # 기대값은 책의 식을 유리수로 따로 계산한다: (1 + n)/(10 + n) 이 0.999 이상이 되는 첫 n 은 0.001 n >= 8.99 인 8990
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1, rel=1e-15)
    for n in (1, 7, 100, 8989):
        want = float(min(Fraction(999, 1000), Fraction(1 + n, 10 + n)))
        assert ema_decay_at(n, 0.999) == pytest.approx(want, rel=1e-15)
    assert ema_decay_at(8989, 0.999) < 0.999 <= ema_decay_at(8990, 0.999)
    assert ema_decay_at(10**6, 0.999) == 0.999
    # 목표가 작으면 워밍업이 곧 끝난다: (1 + n)/(10 + n) >= 0.5 ⇔ n >= 8
    assert ema_decay_at(7, 0.5) < 0.5 and ema_decay_at(8, 0.5) == 0.5
    assert [ema_decay_at(n, 0.99) for n in range(50)] == sorted(ema_decay_at(n, 0.99) for n in range(50))


def test_update_follows_the_recurrence_and_copies_buffers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(net, decay=0.9)
    expected = [p.detach().clone().double() for p in net.parameters()]
    for n in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net[1].running_mean.add_(1.0)
        d = min(0.9, (1 + n) / (10 + n))  # 식 (ch7-eq-ema) 를 따로 옮긴 것
        assert ema.current_decay() == pytest.approx(d, rel=1e-15)
        expected = [d * e + (1 - d) * p.detach().double() for e, p in zip(expected, net.parameters())]
        ema.update(net)
    assert int(ema.num_updates) == 4
    for e, p in zip(expected, ema.model.parameters()):
        # float32 로 네 번 lerp 한 값과 float64 재귀식의 차이: 한 번에 ~1e-7 상대 오차, 값이 O(1) 이라 1e-6 이면 넉넉하다
        assert torch.allclose(p.double(), e, atol=1e-6, rtol=0)
    assert torch.equal(ema.model[1].running_mean, net[1].running_mean)  # 버퍼는 평균하지 않고 그대로 옮긴다
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_update_count_is_saved_with_the_weights():
    net = nn.Linear(2, 2)
    ema = EMA(net, decay=0.999)
    for _ in range(3):
        ema.update(net)
    again = EMA(nn.Linear(2, 2), decay=0.999)
    again.load_state_dict(ema.state_dict())
    assert int(again.num_updates) == 3 and again.current_decay() == ema.current_decay()


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_decay_outside_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="EMA decay"):
        EMA(nn.Linear(2, 2), decay=decay)
