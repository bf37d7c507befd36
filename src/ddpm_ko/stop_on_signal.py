"""SIGINT·SIGTERM 을 받으면 그 학습 스텝을 마치고 저장한 뒤 멈추게 하는 신호 처리기."""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["StopOnSignal"]


class StopOnSignal:
    """학습 고리 동안 SIGINT·SIGTERM 을 받으면 표시만 해 두어, 그 스텝을 마치고 저장한 뒤 멈추게 한다.

    처리기는 표시만 하고 원래 처리기를 되돌려 놓으므로, 두 번째 신호는 예전처럼 곧바로 멈춘다 (Ctrl-C 면
    ``KeyboardInterrupt``). 분산 학습에서는 모든 프로세스가 같은 스텝에서 멈춰야 하므로 쓰지 않는다.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        self.uninstall()

    def install(self) -> None:
        if self.enabled:
            for name in ("SIGINT", "SIGTERM"):
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """원래 처리기로 되돌린다."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}
