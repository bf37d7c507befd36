"""시간 예산(time budget): 스텝 수 대신 벽시계 시간으로 학습의 길이를 정한다 (``ddpm-ko train --time-budget MINUTES``).

학습률 스케줄과 EMA 는 '전체 스텝 수'를 알아야 끝을 맞출 수 있는데, 시간 예산만 주면 그 수를 미리 모른다.
그래서 학습하면서 한 스텝에 드는 시간을 재고, 전체 스텝 수를 추정한다:

    N̂ = n + (예산 − 지금까지 쓴 시간) / (스텝당 시간)

- **재기**: 이 프로세스의 처음 ``SKIP_STEPS`` 스텝은 한 번만 드는 비용(메모리 할당, oneDNN·cuDNN 커널 고르기)이
  섞여 있어 건너뛴다. 그 뒤 ``MEASURE_STEPS`` 스텝을 잰 뒤에 처음 추정하고, 그다음부터는 스텝마다 (잰 구간 전체의
  평균 속도로) 다시 추정한다. 남은 시간이 줄수록 추정의 오차도 줄어, 속도가 도중에 바뀌어도 끝은 예산에 맞는다.
- **학습률**: 워밍업은 예산이 없을 때와 같다. 그 위에 N̂ 까지 코사인으로 ``lr_floor`` 배(학습 설정, 기본 ``LR_FLOOR``)까지
  줄이는 상한을 씌운다 (``budget_lr``). 추정이 나오기 전에는 예산이 없을 때와 같은 학습률이다.
- **EMA**: 평균하는 창 1/(1 − d) 가 N̂ 의 몫 ``ema_window`` (학습 설정, 기본 ``EMA_WINDOW_FRACTION``) 가 되게
  감쇠율 d 를 정한다 (``budget_ema_decay``). 학습 설정의 ``ema_decay`` 대신 이 값을 쓰고, ``ema_decay_at`` 의 워밍업은 그대로다.
- **끝**: 학습에 쓴 벽시계 시간(``wall_time``, 체크포인트의 ``wall_time_s``)이 예산에 이른 스텝에서 끝난다.
  넘는 것은 많아야 한 스텝과 마지막 저장이다. 프로세스 시작(데이터 읽기, 모델 만들기)은 세지 않는다.
- **이어 학습**: ``wall_time`` 은 체크포인트에 있으므로 이어 학습은 남은 예산(예산 − 이미 쓴 시간)만 학습한다.
  잰 스텝당 시간도 체크포인트에 두어, 새 프로세스가 다시 잴 때까지는 그것으로 추정한다. 그래서 이어 학습에서
  예산을 바꾸어도 (``--time-budget 30``) 곧바로 새 예산에 맞춘다.
- **여러 프로세스**: 프로세스마다 시계가 다르므로 스텝마다 모든 프로세스의 ``wall_time`` 을 그 평균으로 맞춘다.
  그래야 모두가 같은 학습률을 쓰고 같은 스텝에서 함께 멈추며, 체크포인트의 ``wall_time_s`` 도 그 값이다.

``max_steps``·``epochs`` 를 함께 주면 그것이 상한(``cap``)이다: 둘 중 먼저 이르는 쪽에서 끝나고, 체크포인트의
``end["reason"]`` 이 어느 쪽인지 밝힌다 (``time_budget``, ``max_steps``, ``epochs``). 학습률의 감쇠와 EMA 의 창도
그 끝에 맞춘다: 둘은 N̂ 대신 min(N̂, 상한) (``schedule_total``) 을 쓴다. 그래서 ``--time-budget 60 --max-steps 2000`` 은
예산 안에 2000 스텝을 다 못 하면 예산에서, 하면 2000 스텝에서 학습률이 바닥에 이르러 끝난다.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from . import distributed

__all__ = [
    "EMA_WINDOW_FRACTION",
    "LR_FLOOR",
    "MEASURE_STEPS",
    "SKIP_STEPS",
    "TimeBudget",
    "budget_ema_decay",
    "budget_lr",
]

#: 프로세스의 처음 몇 스텝은 재지 않는다: 한 번만 드는 비용(메모리 할당, 커널 고르기)이 섞여 있다
SKIP_STEPS = 5
#: 이만큼 잰 뒤에 처음으로 전체 스텝 수를 추정한다 (그 뒤로는 스텝마다 다시 추정한다)
MEASURE_STEPS = 20
#: 예산 끝의 학습률 = lr × LR_FLOOR (기본값; 학습 설정 ``lr_floor``, ``--lr-floor`` 로 바꾼다). 0 까지 내리면 마지막
#: 스텝들이 거의 배우지 못한다고 보고, 마지막 10 % 의 학습률로도 조금씩 배우며 그 구간을 EMA 가 평균하게 했다.
#: 20분 예산에서 0 으로 내려도 나아지지 않았다 (10장의 처방 연구, recipe_study_round5).
LR_FLOOR = 0.1
#: EMA 가 평균하는 창 1/(1 − d) 를 추정한 전체 스텝 수의 이 몫으로 둔다 (기본값; 학습 설정 ``ema_window``,
#: ``--ema-window`` 로 바꾼다). Karras 외(2024, EDM2)는 EMA 의 폭을 학습 길이에 대한 비율로 재어, 0.05~0.15 안팎이
#: 좋다고 보고했다. 그 가운데 값이다.
EMA_WINDOW_FRACTION = 0.1


def budget_lr(step: int, warmup_lr: float, lr: float, estimated_total: float | None, floor: float = LR_FLOOR) -> float:
    """시간 예산 아래 ``step`` 스텝(0 부터)의 학습률: min(워밍업 학습률, N̂ 까지의 코사인 감쇠).

    감쇠는 η·(f + (1 − f)·(1 + cos πp)/2), p = min(1, (n + 1)/N̂), f = ``floor`` (기본 ``LR_FLOOR``) 이다. 마지막 스텝(n = N̂ − 1)이
    정확히 f·η 를 쓴다. 코사인을 고른 까닭: 양 끝에서 기울기가 0 이라, 추정한 N̂ 가 학습 중에 조금 바뀌어도
    처음(아직 추정이 거친 때)과 끝(추정이 고쳐지는 때)의 학습률이 거의 흔들리지 않는다. 선형 감쇠는 끝에서 N̂ 가
    바뀐 만큼 그대로 흔들린다. 워밍업 학습률과의 최솟값으로 두어, 예산이 워밍업보다 짧아도 끝에서 f·η 에 이른다.
    ``estimated_total`` 이 ``None`` (아직 추정 전) 이면 ``warmup_lr`` 그대로다.
    """
    if estimated_total is None:
        return warmup_lr
    p = min(1.0, (step + 1) / max(estimated_total, 1.0))
    return min(warmup_lr, lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))))


def budget_ema_decay(estimated_total: float, window: float = EMA_WINDOW_FRACTION) -> float:
    """창 1/(1 − d) 가 ``window``·N̂ 인 감쇠율 d (창이 한 스텝 이하면 0: 평균하지 않는다)."""
    return max(0.0, 1.0 - 1.0 / (window * estimated_total))


@dataclass
class TimeBudget:
    """분 단위 시간 예산과 그 아래에서 잰 속도·추정한 전체 스텝 수.

    ``restart``·``observe`` 는 (스텝, 학습에 쓴 시간) 만 받는 순수한 계산이라 가짜 시간으로 검사한다.
    ``start``·``after_step`` 은 그것을 ``Trainer`` 에 잇는다 (EMA 감쇠율, 목표 스텝, 여러 프로세스의 시간 맞추기).
    """

    minutes: float
    #: 스텝 수의 상한 (학습 설정의 ``max_steps``·``epochs`` 로 정한 것; 없으면 None). ``Trainer`` 가 채운다
    cap: int | None = None
    #: EMA 의 평균 창을 추정 전체 스텝 수 N̂ 의 이 몫으로 둔다 (학습 설정의 ``ema_window``)
    ema_window: float = EMA_WINDOW_FRACTION
    #: 예산 끝의 학습률을 lr 의 이 몫으로 둔다 (학습 설정의 ``lr_floor``)
    lr_floor: float = LR_FLOOR
    #: 잰 (또는 체크포인트에서 물려받은) 스텝당 시간(초)
    seconds_per_step: float | None = None
    #: 추정한 전체 스텝 수 N̂ (아직 추정 전이면 None)
    estimated_total: float | None = None
    #: 학습에 쓴 시간이 예산에 이르렀는가
    reached: bool = False
    _start_step: int = field(default=0, repr=False)
    _mark: tuple[int, float] | None = field(default=None, repr=False)
    _warned: bool = field(default=False, repr=False)

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0

    @property
    def schedule_total(self) -> float | None:
        """학습률 감쇠와 EMA 창이 맞추는 전체 스텝 수: min(N̂, ``cap``). 아직 추정 전이면 None."""
        if self.estimated_total is None:
            return None
        return self.estimated_total if self.cap is None else min(self.estimated_total, float(self.cap))

    @classmethod
    def from_config(cls, cfg: Any, cap: int | None = None) -> TimeBudget | None:
        """학습 설정의 ``time_budget`` (분) 과 스텝 상한 ``cap`` 으로 만든다. 예산이 없으면 ``None``."""
        if cfg.time_budget is None:
            return None
        return cls(
            float(cfg.time_budget),
            cap=cap,
            ema_window=float(getattr(cfg, "ema_window", EMA_WINDOW_FRACTION)),
            lr_floor=float(getattr(cfg, "lr_floor", LR_FLOOR)),
        )

    # ------------------------------------------------------------------ 순수한 계산
    def restart(self, step: int, wall_time: float) -> None:
        """이 프로세스의 학습이 ``step`` 스텝, 이미 쓴 시간 ``wall_time`` 초에서 시작한다 (재기를 처음부터)."""
        self._start_step, self._mark = step, None
        self._update(step, wall_time)

    def observe(self, step: int, wall_time: float) -> None:
        """한 스텝을 마친 뒤: 지금 스텝 수와 학습에 쓴 시간으로 속도·추정·끝남을 고친다."""
        if step - self._start_step == SKIP_STEPS:
            self._mark = (step, wall_time)
        elif self._mark is not None and step - self._mark[0] >= MEASURE_STEPS:
            seconds = (wall_time - self._mark[1]) / (step - self._mark[0])
            if seconds > 0:  # 시계가 멈춰 있으면 (가짜 시계) 잰 값을 버린다
                self.seconds_per_step = seconds
        self._update(step, wall_time)

    def _update(self, step: int, wall_time: float) -> None:
        self.reached = wall_time >= self.seconds
        if self.seconds_per_step is not None:
            self.estimated_total = step + max(0.0, self.seconds - wall_time) / self.seconds_per_step

    def target(self, step: int) -> int:
        """지금의 목표 스텝: 예산에 이르렀으면 지금 스텝, 아니면 추정 N̂ (적어도 다음 스텝), ``cap`` 이 상한."""
        if self.reached:
            want = step
        elif self.estimated_total is not None:
            want = max(step + 1, math.ceil(self.estimated_total))
        else:
            want = self.cap if self.cap is not None else step + 1
        return want if self.cap is None else min(self.cap, want)

    def lr_at(self, step: int, warmup_lr: float, lr: float) -> float:
        """``budget_lr`` 를 지금의 추정(상한이 더 작으면 상한)으로."""
        return budget_lr(step, warmup_lr, lr, self.schedule_total, self.lr_floor)

    def record(self, step: int, wall_time: float) -> dict[str, Any]:
        """체크포인트(사이드카 JSON)에 적을 내용: 예산, 다다른 스텝, 추정 전체 스텝, 쓴 시간, 잰 속도.

        ``estimated_total_steps`` 는 예산이 허락하는 스텝 수 N̂ 이고, ``schedule_steps`` 는 학습률과 EMA 가 맞춘
        min(N̂, 상한) 이다 (상한이 없으면 둘이 같다).
        """
        est, total = self.estimated_total, self.schedule_total
        return {
            "minutes": self.minutes,
            "steps_reached": step,
            "estimated_total_steps": None if est is None else round(est),
            "cap_steps": self.cap,
            "schedule_steps": None if total is None else round(total),
            "wall_time_s": round(wall_time, 2),
            "seconds_per_step": self.seconds_per_step,
            "ema_decay": None if total is None else budget_ema_decay(total, self.ema_window),
            "ema_window": self.ema_window,
            "lr_floor": self.lr_floor,
            "reached": self.reached,
        }

    def restore(self, saved: Any) -> None:
        """체크포인트의 ``record`` 에서 잰 속도를 물려받는다 (예산 자체는 지금 설정의 것이다)."""
        if isinstance(saved, dict) and isinstance(saved.get("seconds_per_step"), (int, float)):
            seconds = float(saved["seconds_per_step"])
            self.seconds_per_step = seconds if seconds > 0 and math.isfinite(seconds) else None

    # ------------------------------------------------------------------ Trainer 와 잇기
    def start(self, trainer: Any) -> int:
        """``Trainer.run`` 의 시작: 재기를 처음부터 하고 남은 예산을 알린 뒤 목표 스텝(``Trainer.total_steps``)을 돌려준다."""
        trainer.wall_time = wall = _shared_wall_time(trainer)
        self.restart(trainer.step, wall)
        self._apply(trainer)
        if self.reached:
            trainer._info(
                f"시간 예산 {self.minutes:g}분을 이미 다 썼다 ({wall:.0f}초 학습) / time budget of "
                f"{self.minutes:g} min already used ({wall:.0f}s trained): give a larger --time-budget to train more"
            )
        else:
            left = (self.seconds - wall) / 60
            trainer._info(
                f"시간 예산 {self.minutes:g}분 가운데 {left:.2f}분 남음 / time budget {self.minutes:g} min: "
                f"{left:.2f} min left (step {trainer.step}, {wall:.0f}s already trained)"
            )
        return trainer.total_steps()

    def after_step(self, trainer: Any) -> int:
        """한 스텝을 마친 뒤: 추정을 고치고 EMA 감쇠율을 맞춘 뒤 새 목표 스텝(``Trainer.total_steps``)을 돌려준다."""
        trainer.wall_time = _shared_wall_time(trainer)  # 여러 프로세스면 모두가 같은 값을 저장하고 정한다
        self.observe(trainer.step, trainer.wall_time)
        self._apply(trainer)
        warmup = trainer.cfg.warmup_steps
        scheduled = self.schedule_total
        if scheduled is not None and not self._warned and scheduled < 2 * warmup:
            self._warned = True  # 워밍업이 학습의 절반을 넘으면 최대 학습률에 거의 이르지 못한다
            trainer._info(
                f"경고: 학습할 추정 스텝 수 {scheduled:.0f} 가 워밍업 {warmup} 스텝의 2 배보다 적다: "
                f"--warmup-steps 를 줄여라 / warning: this run will train ~{scheduled:.0f} steps, less than "
                f"twice the {warmup} warm-up steps: lower --warmup-steps"
            )
        trainer.target_steps = total = trainer.total_steps()
        return total

    def _apply(self, trainer: Any) -> None:
        total = self.schedule_total
        if total is not None:
            trainer.ema.decay = budget_ema_decay(total, self.ema_window)


def _shared_wall_time(trainer: Any) -> float:
    """학습에 쓴 시간. 여러 프로세스면 모든 프로세스의 평균 (모두가 같은 값으로 정하도록; 모두가 함께 부른다)."""
    if trainer.world <= 1:
        return float(trainer.wall_time)
    value = torch.tensor(float(trainer.wall_time), dtype=torch.float64, device=trainer.device)
    return float(distributed.mean_over_ranks(value, trainer.world))
