"""장(노트북)의 준비 코드 ddpm_ko.book: setup() 과 myst-nb 가 없어도 도는 glue."""

from __future__ import annotations

import sys
import types

import matplotlib
import pytest
import torch

from ddpm_ko import book


def test_setup_reads_fast_mode_seeds_and_picks_the_device(monkeypatch) -> None:
    monkeypatch.setenv("DDPM_KO_FAST", "1")
    fast, device = book.setup(seed=3, device="cpu", korean_font=False)
    a = torch.rand(4)
    assert fast is True and device == torch.device("cpu")
    monkeypatch.setenv("DDPM_KO_FAST", "0")
    result = book.setup(seed=3, device="cpu", korean_font=False)
    assert result.fast is False and torch.equal(torch.rand(4), a)  # 같은 시드 → 같은 난수


def test_glue_without_myst_nb_shows_the_value(monkeypatch) -> None:
    shown = []
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import myst_nb → ImportError (Colab 처럼)
    monkeypatch.setattr("IPython.display.display", lambda v: shown.append(v))
    book.glue("fig-a", "값", display=False)
    assert shown == ["값"]  # 책의 {glue:figure} 가 없는 곳에서는 display=False 라도 보여 준다


def test_glue_with_myst_nb_hands_over(monkeypatch) -> None:
    calls = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, variable, display=True: calls.append((name, variable, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    monkeypatch.setattr("IPython.display.display", lambda v: pytest.fail("myst-nb 가 있으면 직접 보여 주지 않는다"))
    book.glue("fig-b", 1.5, display=False)
    assert calls == [("fig-b", 1.5, False)]


def test_png_registration_is_harmless_outside_ipython() -> None:
    assert book.register_png_figures() is False


def test_plain_log_ticks() -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xscale("log")
    book.plain_log_ticks(ax.xaxis)
    assert ax.xaxis.get_major_formatter()(0.01, 0) == "0.01"
    plt.close(fig)
