"""사용자가 고칠 수 있는 오류. 명령줄은 이 오류들을 한 줄 메시지로 보여 주고 0 이 아닌 값으로 끝낸다."""

from __future__ import annotations

__all__ = ["DdpmKoError", "CheckpointError", "TrainingDivergedError"]


class DdpmKoError(Exception):
    """ddpm_ko 가 내는 모든 사용자 오류의 부모."""


class CheckpointError(DdpmKoError):
    """체크포인트가 없거나, 손상되었거나, 모델 설정과 맞지 않을 때."""


class TrainingDivergedError(DdpmKoError):
    """손실이 NaN/Inf 가 되었을 때. 마지막으로 저장한 정상 체크포인트는 그대로 남는다."""
