"""책의 장(노트북)이 처음에 부르는 준비 코드.

모든 장의 둘째 코드 셀은 다음 몇 줄이다::

    import torch
    import matplotlib.pyplot as plt
    from ddpm_ko.book import glue, setup

    FAST, device = setup(seed=0)

``setup`` 은 빠른 모드 판단, 시드 고정, 한글 글꼴, 그림 형식(PNG) 등록, 장치 고르기를 한 번에 한다.
``glue`` 는 책을 빌드할 때(myst-nb 가 있을 때) 그림과 값에 이름을 붙이고, myst-nb 가 없는 곳
(Colab, Kaggle, 내려받은 노트북)에서는 그 그림과 값을 그냥 보여 준다. 그래서 같은 노트북이 책 빌드와
독자의 환경 모두에서 돈다.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from .utils import fast_mode, pick_device, seed_everything
from .viz import use_korean_font

__all__ = ["BookSetup", "setup", "glue", "register_png_figures", "plain_log_ticks"]


class BookSetup(NamedTuple):
    """``setup()`` 의 결과. ``FAST, device = setup()`` 처럼 풀어 쓴다."""

    fast: bool
    """빠른 모드인가 (환경 변수 ``DDPM_KO_FAST=1``): 반복 횟수와 이미지 수만 줄인다."""
    device: torch.device
    """계산할 장치 (cuda → mps → cpu)."""


def register_png_figures() -> bool:
    """IPython 의 matplotlib 그림을 PNG 로 내보내게 한다. IPython 밖이거나 할 수 없으면 ``False``.

    ``MPLBACKEND=Agg`` 로 커널을 띄워도 그림이 글자("<Figure size …>")가 아니라 PNG 출력으로 남고,
    책 빌드의 ``glue`` 가 그림을 저장할 수 있다.
    """
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return False
    if get_ipython() is None:
        return False
    try:
        set_matplotlib_formats("png")
    except Exception:  # IPython 셸이 아닌 곳 등: 그림 형식은 기본값으로 둔다
        return False
    return True


def setup(seed: int = 0, device: str | torch.device | None = None, korean_font: bool = True) -> BookSetup:
    """한 장(chapter)을 시작할 때 한 번 부른다: 빠른 모드, 시드, 한글 글꼴, 그림 형식, 장치.

    Args:
        seed: ``seed_everything`` 에 줄 시드 (Python, NumPy, PyTorch 난수를 모두 고정한다).
        device: 쓸 장치. ``None`` 이면 cuda → mps → cpu 순으로 고른다.
        korean_font: 그림의 한글 글꼴을 설정할지.

    Returns:
        ``BookSetup(fast, device)``.
    """
    fast = fast_mode()
    seed_everything(seed)
    if korean_font:
        use_korean_font()
    register_png_figures()
    return BookSetup(fast, pick_device(device))


def glue(name: str, variable: Any, display: bool = True) -> None:
    """그림·값에 이름을 붙인다 (책 빌드). myst-nb 가 없으면 ``variable`` 을 그냥 보여 준다.

    책의 본문은 ``{glue:figure}`` 등으로 이름 붙은 그림을 번호와 캡션과 함께 싣는다. myst-nb 가 없는
    환경에서는 그 지시문이 그려지지 않으므로, ``display=False`` 라도 그 자리에서 보여 주어 독자가 그림을
    놓치지 않게 한다.
    """
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        from IPython.display import display as ipy_display

        ipy_display(variable)
        return
    myst_glue(name, variable, display=display)


def plain_log_ticks(axis: Any) -> None:
    """로그 눈금을 10^k 대신 0.01, 0.1, 1 처럼 평범한 숫자로 적는다 (한글 글꼴에서도 음수 지수가 깨지지 않게)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
