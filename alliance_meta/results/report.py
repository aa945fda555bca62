"""APA-style sentences of the main results (``report()``).

A pooled result reads ``"r = −0.31, 95% CI [−0.38, −0.24], k = 6, τ² = 0.0005,
I² = 7%"``: the estimate and its confidence interval on the natural scale of the
measure (``r`` for Fisher's z, ratios for log ratios), the number of studies, τ² on
the analysis scale and I² in percent (American Psychological Association, 2020,
sec. 6.43-6.46: typographic minus signs, ``p < .001``, no leading zero for p).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

from alliance_meta.data.measures import back_transform
from alliance_meta.results.display import MINUS, apa_number, apa_p, effect_name

if TYPE_CHECKING:
    from alliance_meta.results.base import ConfidenceInterval

__all__ = ["heterogeneity_clause", "interval", "pooled_sentence", "tau2_text"]


class _Pooled(Protocol):
    @property
    def estimate(self) -> float: ...
    @property
    def ci(self) -> ConfidenceInterval: ...
    @property
    def k(self) -> int: ...
    @property
    def tau2(self) -> float: ...
    @property
    def I2(self) -> float: ...
    @property
    def level(self) -> float: ...
    @property
    def measure(self) -> str: ...
    @property
    def method(self) -> str: ...


def level_text(level: float) -> str:
    """``"95%"`` of a confidence level 0.95."""
    pct = 100.0 * level
    return f"{pct:.0f}%" if pct == round(pct) else f"{pct:g}%"


def interval(low: float, high: float, digits: int) -> str:
    """``"[−0.38, −0.24]"``."""
    return f"[{apa_number(low, digits)}, {apa_number(high, digits)}]"


def tau2_text(tau2: float) -> str:
    """τ² to 4 decimals (``"< 0.0001"`` when positive but smaller)."""
    if math.isnan(tau2):
        return "τ² = NA"
    if 0 < tau2 < 0.00005:
        return "τ² < 0.0001"
    return f"τ² = {apa_number(tau2, 4)}"


def i2_text(i2: float) -> str:
    """I² as a whole percentage (``"I² = 7%"``; NA when undefined)."""
    if math.isnan(i2):
        return "I² = NA"
    return f"I² = {i2:.0f}%"


def heterogeneity_clause(k: int, tau2: float, i2: float, method: str) -> str:
    """``"k = 6, τ² = 0.0005, I² = 7%"`` (no τ² for an equal-effects model)."""
    parts = [f"k = {k}"]
    if method != "EE":
        parts.append(tau2_text(tau2))
    parts.append(i2_text(i2))
    return ", ".join(parts)


def pooled_sentence(fit: _Pooled, digits: int = 2) -> str:
    """``"r = −0.31, 95% CI [−0.38, −0.24], k = 6, τ² = 0.0005, I² = 7%"``."""
    m = fit.measure
    est = back_transform(float(fit.estimate), m)
    lo = back_transform(float(fit.ci.low), m)
    hi = back_transform(float(fit.ci.high), m)
    lo, hi = min(lo, hi), max(lo, hi)
    name = effect_name(m)
    return (
        f"{name} = {apa_number(est, digits)}, {level_text(fit.level)} CI "
        f"{interval(lo, hi, digits)}, "
        + heterogeneity_clause(fit.k, float(fit.tau2), float(fit.I2), fit.method)
    )


def test_clause(name: str, statistic: float, df1: int, df2: int | None, p: float) -> str:
    """``"QM(2) = 16.36, p < .001"`` or ``"F(2, 10) = 4.96, p = .032"``."""
    dfs = f"{df1}" if df2 is None else f"{df1}, {df2}"
    return f"{name}({dfs}) = {apa_number(statistic, 2)}, {apa_p(p)}"


def coefficient_clause(name: str, b: float, low: float, high: float, p: float,
                       level: float, digits: int) -> str:
    """``"ablat: b = −0.03, 95% CI [−0.04, −0.02], p < .001"``."""
    return (f"{name}: b = {apa_number(b, digits)}, {level_text(level)} CI "
            f"{interval(low, high, digits)}, {apa_p(p)}")


__all__ += ["MINUS", "coefficient_clause", "i2_text", "level_text", "test_clause"]
