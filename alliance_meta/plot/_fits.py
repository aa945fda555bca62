"""What the plots of fitted models ask of a fit: the fitted-model protocol plus
``predict``.

A plot of a meta-regression, a subgroup model or a multilevel model needs the
protocol's ``coef_names``, ``X``, ``yi``, ``vi``, ``labels``, ``measure`` and
``level`` (:class:`~alliance_meta.models.protocol.FittedModel`) and predictions with
confidence and prediction intervals at new design rows:
``predict(new_moderators)`` taking the design columns without the intercept (a
2-D array, metafor's ``newmods``) and returning an object with ``pred``,
``ci.low``/``ci.high`` and ``pi.low``/``pi.high`` (as
:class:`~alliance_meta.Prediction`).  Meta-regressions have it, and so do the
multilevel models; a pooled result (the intercept-only case) is read from its
``estimate``, ``ci`` and ``pi``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np

from alliance_meta._types import FloatArray
from alliance_meta.exceptions import ModelSpecificationError
from alliance_meta.models.pooling import PoolResult

__all__ = ["Bands", "PredictingFit", "has_intercept", "predict_rows", "study_weights"]


class _Interval(Protocol):
    @property
    def low(self) -> Any: ...
    @property
    def high(self) -> Any: ...


class _Prediction(Protocol):
    @property
    def pred(self) -> Any: ...
    @property
    def ci(self) -> _Interval: ...
    @property
    def pi(self) -> _Interval: ...


class PredictingFit(Protocol):
    """The part of the fitted-model protocol the plots read, plus ``predict``."""

    @property
    def coef_names(self) -> tuple[str, ...]: ...
    @property
    def X(self) -> FloatArray: ...
    @property
    def yi(self) -> FloatArray: ...
    @property
    def vi(self) -> FloatArray: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def measure(self) -> str: ...
    @property
    def level(self) -> float: ...

    def predict(self, new_moderators: Any = None) -> _Prediction: ...


class Bands(NamedTuple):
    """Predictions at design rows on the analysis scale: the fitted value and the
    bounds of its confidence and prediction intervals."""

    pred: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    pi_low: FloatArray
    pi_high: FloatArray


def has_intercept(fit: Any) -> bool:
    """Whether the first design column is metafor's ``intrcpt`` (a column of ones)."""
    X = np.asarray(fit.X, dtype=np.float64)
    return bool(
        len(fit.coef_names) > 0 and fit.coef_names[0] == "intrcpt" and np.all(X[:, 0] == 1.0)
    )


def _f64(x: Any) -> FloatArray:
    out: FloatArray = np.array(x, dtype=np.float64).reshape(-1)
    return out


def predict_rows(fit: Any, rows: FloatArray) -> Bands:
    """``fit``'s predictions (CI and PI) at the full design rows ``rows`` (n, p)."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    n = rows.shape[0]
    if isinstance(fit, PoolResult):
        ones = np.ones(n)
        return Bands(fit.estimate * ones, fit.ci.low * ones, fit.ci.high * ones,
                     fit.pi.low * ones, fit.pi.high * ones)  # fmt: skip
    if not callable(getattr(fit, "predict", None)):
        raise ModelSpecificationError(
            f"{type(fit).__name__} has no predict(); this plot needs predictions with "
            "confidence and prediction intervals (a meta-regression, a multilevel model "
            "or any fit with predict(new_moderators))"
        )
    new = rows[:, 1:] if has_intercept(fit) else rows
    pred = fit.predict(new)
    out = Bands(_f64(pred.pred), _f64(pred.ci.low), _f64(pred.ci.high),
                _f64(pred.pi.low), _f64(pred.pi.high))  # fmt: skip
    if out.pred.shape != (n,):
        raise ModelSpecificationError(
            f"{type(fit).__name__}.predict gave {out.pred.shape[0]} predictions for {n} rows"
        )
    return out


def study_weights(fit: Any) -> FloatArray:
    """Percentage weights of the studies: ``fit.weights`` where the fit has them
    (metafor's ``weights()``), else ``100 (1/v_i) / Σ 1/v_i``."""
    w = getattr(fit, "weights", None)
    if w is not None and not callable(w):
        out: FloatArray = np.asarray(w, dtype=np.float64)
        return out
    inv = 1.0 / np.asarray(fit.vi, dtype=np.float64)
    res: FloatArray = 100.0 * inv / inv.sum()
    return res
