"""Predicted effects of a fitted model (metafor's ``predict``), on any fit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
import numpy as np

from alliance_meta.core.inference import critical_value
from alliance_meta.results.base import FloatArray, IntervalArray, freeze_arrays
from alliance_meta.results.display import ResultDisplay, Transf, resolve_transf
from alliance_meta.results.summary import frame_summary

if TYPE_CHECKING:
    import pandas as pd
    from statsmodels.iolib.summary import Summary

__all__ = ["Prediction", "make_prediction"]


def _labels(x: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if x is None else tuple(str(v) for v in x)


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class Prediction(ResultDisplay):
    """Predicted effects with confidence and prediction intervals (``predict.rma``).

    ``pred = x'β̂``, ``se = √(x' V_β x)``, ``ci = pred ± c·se`` and
    ``pi = pred ± c·√(se² + τ²)``, with ``c`` the normal quantile, or the t quantile
    on ``k - p`` df under ``test="t"``/``"knha"``/``"adhoc"``.  With ``transf``,
    ``pred`` and the bounds are transformed (and each interval's bounds put in
    order), and ``se`` is NaN, as metafor's ``predict(fit, transf=)`` gives them.

    Attributes
    ----------
    pred, se : ndarray
        Predicted values and their standard errors.
    ci, pi : IntervalArray
        Confidence and prediction intervals.
    X : ndarray
        The design rows predicted.
    level : float
        Confidence level.
    labels : tuple of str or None
        A name for each row (subgroups, ``"pooled"``), when the rows have names.
    transf : str or None
        The name of the transformation applied (``None``: the analysis scale).
    """

    pred: FloatArray = attrs.field(eq=False)
    se: FloatArray = attrs.field(eq=False)
    ci: IntervalArray
    pi: IntervalArray
    X: FloatArray = attrs.field(eq=False, repr=False)
    level: float
    labels: tuple[str, ...] | None = attrs.field(default=None, converter=_labels)
    transf: str | None = None

    _repr_fields = ("pred", "ci", "pi", "level", "transf")

    def to_frame(self) -> pd.DataFrame:
        """One row per prediction."""
        import pandas as pd
        frame: pd.DataFrame = pd.DataFrame(
            {
                "pred": self.pred,
                "se": self.se,
                "ci_low": self.ci.low,
                "ci_high": self.ci.high,
                "pi_low": self.pi.low,
                "pi_high": self.pi.high,
            },
            index=None if self.labels is None else pd.Index(list(self.labels)),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary like metafor's ``print(predict(fit, newmods))``."""
        info = [("Predictions:", str(self.pred.size)), ("Level:", f"{self.level:g}")]
        if self.transf is not None:
            info.append(("Transformation:", self.transf))
        return frame_summary(
            "Predicted values",
            info,
            self.to_frame(),
            ["ci: confidence interval of the fitted value; pi: prediction interval."],
        )

    def __str__(self) -> str:
        return str(self.summary())


def make_prediction(
    X: FloatArray,
    coef: FloatArray,
    vcov: FloatArray,
    tau2: float,
    df: float | None,
    level: float,
    *,
    measure: str = "GEN",
    transf: Transf = None,
    labels: Sequence[str] | None = None,
) -> Prediction:
    """metafor's ``predict.rma`` of design rows ``X`` (the one builder of every fit's
    ``predict``): ``pred = Xβ̂``, ``se = √diag(X V Xᵀ)``, CI and PI with the critical
    value of the fit (t on ``df`` when given), then ``transf``."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    pred = X @ coef
    se = np.sqrt(np.einsum("ij,jk,ik->i", X, vcov, X))
    crit = float(critical_value(np.array(np.nan if df is None else df), level))
    half_pi = crit * np.sqrt(se**2 + tau2)
    ci_lo, ci_hi = pred - crit * se, pred + crit * se
    pi_lo, pi_hi = pred - half_pi, pred + half_pi
    fn, name = resolve_transf(transf, measure)
    if fn is not None:
        pred = fn(pred)
        a, b = fn(ci_lo), fn(ci_hi)
        ci_lo, ci_hi = np.minimum(a, b), np.maximum(a, b)
        a, b = fn(pi_lo), fn(pi_hi)
        pi_lo, pi_hi = np.minimum(a, b), np.maximum(a, b)
        se = np.full(pred.shape, np.nan)
    return Prediction(
        pred=pred,
        se=se,
        ci=IntervalArray(ci_lo, ci_hi),
        pi=IntervalArray(pi_lo, pi_hi),
        X=X,
        level=level,
        labels=labels,
        transf=name,
    )
