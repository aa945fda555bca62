"""How values of a measure are mapped to, and shown on, a plot's x axis."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import numpy as np

from alliance_meta._types import FloatArray
from alliance_meta.data.measures import back_transform
from alliance_meta.plot.style import fmt_fixed, fmt_tick, nice_ticks, ratio_ticks

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["HasInterval", "Scale"]


class HasInterval(Protocol):
    """A row with an estimate and interval bounds on the analysis scale."""

    @property
    def yi(self) -> float: ...
    @property
    def lo(self) -> float: ...
    @property
    def hi(self) -> float: ...

_LOG_MEASURES = frozenset({"OR", "RR", "ROM"})

_AXIS_NAMES: dict[str, str] = {
    "ZCOR": "Correlation (r)",
    "COR": "Correlation (r)",
    "UCOR": "Correlation (r)",
    "OR": "Odds ratio (log scale)",
    "RR": "Risk ratio (log scale)",
    "ROM": "Ratio of means (log scale)",
    "SMD": "Standardized mean difference (Hedges' g)",
    "SMDH": "Standardized mean difference (heteroscedastic)",
    "MD": "Mean difference",
    "RD": "Risk difference",
    "GEN": "Effect size",
}

_ANALYSIS_NAMES: dict[str, str] = {
    "ZCOR": "Fisher's z",
    "OR": "Log odds ratio",
    "RR": "Log risk ratio",
    "ROM": "Log ratio of means",
}

_SHORT_NAMES: dict[str, str] = {
    "ZCOR": "r",
    "COR": "r",
    "UCOR": "r",
    "OR": "OR",
    "RR": "RR",
    "ROM": "ROM",
    "SMD": "g",
    "SMDH": "SMD",
    "MD": "MD",
    "RD": "RD",
    "GEN": "Estimate",
}


@attrs.frozen
class Scale:
    """How analysis-scale values are mapped to, and shown on, the x axis."""

    measure: str
    transform: bool

    @property
    def kind(self) -> str:
        """``"r"`` (tanh/atanh function scale), ``"log"`` or ``"linear"``."""
        if not self.transform:
            return "linear"
        if self.measure == "ZCOR":
            return "r"
        if self.measure in _LOG_MEASURES:
            return "log"
        return "linear"

    def to_plot(self, x: Any) -> FloatArray:
        """Map analysis-scale values to plotted (data) values."""
        arr = np.asarray(x, dtype=np.float64)
        if self.kind == "linear":
            return arr
        out: FloatArray = np.asarray(back_transform(arr, self.measure), dtype=np.float64)
        return out

    def to_plot_scalar(self, x: float) -> float:
        """:meth:`to_plot` for one value."""
        return float(self.to_plot(np.array([x]))[0])

    def row_values(self, row: HasInterval) -> tuple[float, float, float]:
        """A row's ``(estimate, low, high)`` on the plotted scale."""
        x, lo, hi = (float(v) for v in self.to_plot(np.array([row.yi, row.lo, row.hi])))
        return x, lo, hi

    @property
    def null(self) -> float:
        """The null value on the plotted scale (1 for ratios, else 0)."""
        return 1.0 if self.kind == "log" else 0.0

    @property
    def axis_label(self) -> str:
        """Default x-axis label."""
        if self.transform or self.measure not in _ANALYSIS_NAMES:
            return _AXIS_NAMES.get(self.measure, self.measure)
        return _ANALYSIS_NAMES[self.measure]

    @property
    def short_name(self) -> str:
        """Short name for the estimate column header."""
        if not self.transform and self.measure in _ANALYSIS_NAMES:
            return {"ZCOR": "z"}.get(self.measure, "log " + self.measure)
        return _SHORT_NAMES.get(self.measure, self.measure)

    def configure(
        self, ax: Axes, lo: float, hi: float, exact: bool = False, axis: str = "x"
    ) -> None:
        """Set the scale, limits and natural-scale ticks of ``ax``'s x (or, with
        ``axis="y"``, y) axis for the plotted range [lo, hi] (padded by 4 % of the
        range unless ``exact``)."""
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        kind = self.kind
        frac = 0.0 if exact else 0.04
        set_scale = ax.set_xscale if axis == "x" else ax.set_yscale
        set_lim = ax.set_xlim if axis == "x" else ax.set_ylim
        target = ax.xaxis if axis == "x" else ax.yaxis
        if kind == "r":
            set_scale("function", functions=(_atanh_clipped, np.tanh))
            zlo, zhi = math.atanh(lo), math.atanh(hi)
            pad = frac * (zhi - zlo)
            set_lim(math.tanh(zlo - pad), math.tanh(zhi + pad))
            target.set_major_locator(FixedLocator(nice_ticks(lo, hi, bounded=True)))
            target.set_major_formatter(FuncFormatter(fmt_tick))
        elif kind == "log":
            set_scale("log")
            llo, lhi = math.log(lo), math.log(hi)
            pad = frac * (lhi - llo)
            set_lim(math.exp(llo - pad), math.exp(lhi + pad))
            target.set_major_locator(FixedLocator(ratio_ticks(lo, hi)))
            target.set_major_formatter(FuncFormatter(fmt_tick))
            target.set_minor_locator(NullLocator())
        else:
            pad = frac * (hi - lo)
            set_lim(lo - pad, hi + pad)
            target.set_major_locator(FixedLocator(nice_ticks(lo, hi, bounded=False)))
            target.set_major_formatter(FuncFormatter(fmt_tick))

    def format_value(self, x: float, digits: int) -> str:
        """Format a plotted value for the text column (a true minus sign, never
        ``−0.00``: a value that rounds to zero is printed unsigned)."""
        return fmt_fixed(x, digits)


def _atanh_clipped(x: Any) -> Any:
    """``atanh`` for the function scale, clipped inside (-1, 1) so that it stays finite."""
    return np.arctanh(np.clip(x, -0.999999, 0.999999))
