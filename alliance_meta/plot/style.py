"""Typography, text formatting and tick choices shared by every plot."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FONT_SIZE",
    "auto_digits",
    "fmt_cell",
    "fmt_fixed",
    "fmt_tick",
    "label_axes",
    "minus",
    "nice_ticks",
    "pvalue_text",
    "ratio_ticks",
    "require_matplotlib",
    "root_figure",
]

INSTALL_HINT = "pip install 'alliance_meta[plot]'"

FONT_SIZE = 9.0
ROW_HEIGHT_IN = 0.24
PLOT_WIDTH_IN = 3.6
COLUMN_GAP_PT = 14.0
MAX_SQUARE_PT = 11.0
MIN_SQUARE_PT = 3.0
DIAMOND_HALF_HEIGHT = 0.36


def require_matplotlib() -> None:
    """Import matplotlib or raise an ImportError that names the ``plot`` extra."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "alliance_meta.plot needs matplotlib, which is the optional 'plot' extra: "
            f"{INSTALL_HINT}"
        ) from exc


def root_figure(ax: Axes) -> Figure:
    """The top-level Figure holding ``ax`` (also when ``ax`` is in a SubFigure)."""
    from matplotlib.figure import Figure

    fig: Any = ax.figure
    while not isinstance(fig, Figure):
        fig = fig.figure
    return fig


def label_axes(
    ax: Axes,
    *,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    xlabel_size: float = FONT_SIZE,
) -> None:
    """The text every plot sets the same way: tick labels, axis labels and a bold,
    left-aligned title (nothing is set for a label or title that is None or empty)."""
    ax.tick_params(labelsize=FONT_SIZE)
    if xlabel is not None:
        ax.set_xlabel(xlabel, fontsize=xlabel_size)
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=FONT_SIZE)
    if title:
        ax.set_title(title, fontsize=FONT_SIZE + 1.5, fontweight="bold", loc="left")


def minus(s: str) -> str:
    return s.replace("-", "\u2212")


def fmt_fixed(x: float, digits: int) -> str:
    """``x`` with ``digits`` decimals and a true minus sign, never ``−0.00``.

    A value that rounds to zero is printed without a sign (``-0.001`` gives
    ``"0.00"``); NaN gives ``"NA"``, as metafor prints a missing value.
    """
    if math.isnan(x):
        return "NA"
    s = f"{x:.{digits}f}"
    if s.startswith("-") and float(s) == 0.0:
        s = s[1:]
    return minus(s)


def fmt_cell(value: object, digits: int) -> str:
    """Text of one cell of an extra forest-plot column.

    Missing values (None, NaN, pandas' NA) are blank; whole numbers (a sample size
    stored as a float) print without decimals; other numbers with ``digits``
    decimals through :func:`fmt_fixed`; anything else as ``str``.
    """
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if math.isnan(x):
            return ""
        if math.isinf(x):
            return minus("-Inf") if x < 0 else "Inf"
        if x == round(x) and abs(x) < 1e15:
            return minus(str(round(x)))
        return fmt_fixed(x, digits)
    try:
        if pd.isna(value):  # type: ignore[call-overload]  # pd.NA, NaT: any scalar
            return ""
    except (TypeError, ValueError):  # not a scalar
        pass
    return str(value)


def fmt_tick(x: float, _pos: object = None) -> str:
    """Tick label: shortest clean decimal (up to 3), true minus sign, no ``-0``."""
    s = fmt_fixed(x, 3)
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def nice_ticks(lo: float, hi: float, *, bounded: bool) -> list[float]:
    """Round tick values covering [lo, hi]: 4-7 ticks at a 1/2/2.5/5 x 10^k step."""
    span = max(hi - lo, 1e-12)
    raw = span / 5.0
    mag = 10.0 ** math.floor(math.log10(raw))
    step = mag
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = m * mag
        if span / step <= 6.0:
            break
    first = math.ceil(lo / step - 1e-9) * step
    ticks: list[float] = []
    t = first
    while t <= hi + 1e-9 * step:
        val = round(t, 10)
        if not bounded or abs(val) < 1.0:
            ticks.append(0.0 if abs(val) < 1e-12 else val)
        t += step
    return ticks


def ratio_ticks(lo: float, hi: float) -> list[float]:
    """Ratio ticks (0.1, 0.25, 0.5, 1, 2, 4, ...) inside [lo, hi], always with a few."""
    fine = [0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0, 20.0, 50.0, 100.0]
    coarse = [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]
    inside = [c for c in fine if lo <= c <= hi]
    if len(inside) > 8 or lo < fine[0] or hi > fine[-1]:
        inside = [c for c in coarse if lo <= c <= hi]
    if len(inside) < 3:
        inside = [float(f"{c:.2g}") for c in (lo, 1.0, hi) if lo <= c <= hi]
    return sorted(set(inside))


def auto_digits(values: Sequence[float]) -> int:
    """Decimals for the text column: 2, or 3 when the values are all small."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    if finite and max(finite) < 0.1:
        return 3
    return 2


def pvalue_text(p: float) -> str:
    """APA-style p value: ``p < .001`` or ``p = .042`` (no leading zero)."""
    if math.isnan(p):
        return "p = NA"
    if p < 0.001:
        return "p < .001"
    return "p = " + f"{p:.3f}".lstrip("0")
