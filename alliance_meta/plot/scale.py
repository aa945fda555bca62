"""How values of a measure are mapped to, and shown on, a plot's x axis."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import numpy as np

from alliance_meta._types import FloatArray
from alliance_meta.data import measures
from alliance_meta.data.measures import AxisKind, MeasureSpec
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


@attrs.frozen
class Scale:
    """How analysis-scale values of a measure are mapped to, and shown on, an axis.

    Everything about the measure (back-transform, axis kind, names and labels)
    comes from the measure registry (:mod:`alliance_meta.data.measures`).

    Parameters
    ----------
    measure : str
        The effect-size measure.
    transform : bool
        Show the natural scale (True) or the analysis scale.
    n : float, optional
        The sample size that the back-transforms of PFT and IRFT need (metafor uses
        the harmonic mean of the studies' sizes); without it those measures are
        shown on the analysis scale.
    """

    measure: str
    transform: bool
    n: float | None = None

    @property
    def spec(self) -> MeasureSpec:
        """The measure's registry entry."""
        return measures.get(self.measure)

    @property
    def kind(self) -> AxisKind:
        """``"linear"`` (values as they are), ``"log"`` (ratios) or ``"function"`` (an
        axis spaced by the analysis scale, e.g. Fisher's z for r)."""
        spec = self.spec
        if not self.transform or spec.back_transform is None:
            return "linear"
        if spec.needs_n and self.n is None:
            return "linear"
        return spec.axis

    @property
    def natural(self) -> bool:
        """Whether plotted values are on the natural scale."""
        spec = self.spec
        return self.transform and spec.back_transform is not None and (
            not spec.needs_n or self.n is not None
        )

    def to_plot(self, x: Any) -> FloatArray:
        """Map analysis-scale values to plotted (data) values."""
        arr = np.asarray(x, dtype=np.float64)
        if not self.natural:
            return arr
        return self.spec.to_natural(arr, n=self.n)

    def to_plot_scalar(self, x: float) -> float:
        """:meth:`to_plot` for one value."""
        return float(self.to_plot(np.array([x]))[0])

    def row_values(self, row: HasInterval) -> tuple[float, float, float]:
        """A row's ``(estimate, low, high)`` on the plotted scale."""
        x, lo, hi = (float(v) for v in self.to_plot(np.array([row.yi, row.lo, row.hi])))
        return x, lo, hi

    @property
    def null(self) -> float:
        """The null value on the plotted scale: the analysis scale's 0 (1 for ratios)."""
        return self.to_plot_scalar(0.0)

    @property
    def axis_label(self) -> str:
        """Default axis label."""
        spec = self.spec
        label = spec.axis_label if self.natural else spec.analysis_label
        return label or spec.name

    @property
    def short_name(self) -> str:
        """Short name for the estimate column header."""
        spec = self.spec
        name = spec.natural_name if self.natural else spec.analysis_name
        return name or spec.name

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
        if kind == "function":
            spec, n = self.spec, self.n
            zlo, zhi = (float(spec.to_analysis(np.array([v]), n=n)[0]) for v in (lo, hi))
            pad = frac * (zhi - zlo)
            with np.errstate(all="ignore"):
                a, b = (float(spec.to_natural(np.array([z]), n=n)[0])
                        for z in (zlo - pad, zhi + pad))  # fmt: skip
            # padding may leave the transform's domain (e.g. past r = 1): stop at the data
            a = a if math.isfinite(a) and a <= lo else lo
            b = b if math.isfinite(b) and b >= hi else hi

            def forward(x: Any) -> Any:
                # matplotlib maps the limits and ticks; clipping to them keeps every
                # value inside the transform's domain
                with np.errstate(all="ignore"):
                    return spec.to_analysis(np.clip(np.asarray(x, dtype=np.float64), a, b), n=n)

            def inverse(z: Any) -> Any:
                with np.errstate(all="ignore"):
                    return spec.to_natural(np.asarray(z, dtype=np.float64), n=n)

            set_scale("function", functions=(forward, inverse))
            set_lim(a, b)
            target.set_major_locator(FixedLocator(nice_ticks(lo, hi, bounded=spec.bounded)))
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
