"""Sensitivity and influence diagnostics: leave-one-out, influence, cumulative.

The refits of one diagnostic are a few calls of the vectorised core: the subsets
are rows of padded ``(batch, k)`` arrays in which NaN marks a study left out
(:func:`_refit_subsets`, :func:`_refit_batches`), so k leave-one-out fits cost a
few batched τ² searches, not a Python loop, and memory stays ``O(batch · k · p)``
(never ``k x k``).  The formulas follow R's metafor (``leave1out``, ``influence`` and
``cumul`` for ``rma.uni``; checked against metafor 3.8.1).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, overload

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.iolib.summary import Summary

from alliance_meta import core
from alliance_meta._types import FloatArray
from alliance_meta.core.inference import chi2_sf
from alliance_meta.core.univariate import concat_fits
from alliance_meta.diagnostics.multilevel import (
    MultilevelInfluenceResult,
    MultilevelLeaveOneOutResult,
    leave_one_cluster_out,
    multilevel_influence,
)
from alliance_meta.exceptions import ConvergenceWarning, ModelSpecificationError
from alliance_meta.models._inputs import check_method, check_test
from alliance_meta.models.multilevel import MultilevelResult
from alliance_meta.models.pooling import PoolResult
from alliance_meta.models.protocol import UnivariateModel
from alliance_meta.results.base import IntervalArray, freeze_arrays
from alliance_meta.results.display import ResultDisplay
from alliance_meta.results.summary import frame_summary, info_table, make_summary, value_table

__all__ = [
    "CumulativeResult",
    "InfluenceResult",
    "LeaveOneOutResult",
    "cumulative",
    "influence",
    "leave_one_out",
]

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

#: Residuals smaller than this, relative to the size of the numbers subtracted, are
#: set to 0: metafor sets |resid| < 100 * .Machine$double.eps to 0, an absolute bound
#: that equals this one for effects of order 1 and, unlike it, does not depend on the
#: scale of the data.
_RESID_ZERO = 100.0 * float(np.finfo(np.float64).eps)
#: Cells (refits x studies) per batch of refits: memory is O(batch x k x p), never
#: O(k²), whatever k.
_REFIT_CELLS = 1 << 20


def _refit_subsets(result: UnivariateModel, include: BoolArray) -> core.CoreFit:
    """Refit ``result``'s model on every row-subset of ``include`` in ONE core call.

    ``include`` has shape ``(m, k)``; row ``j`` selects the studies of refit ``j``.
    Excluded studies become NaN in the padded arrays given to
    :func:`core.kernel_from_padded`, so every refit uses the same design, estimator,
    test and level as ``result`` (an intercept-only design takes the closed-form
    kernel).
    """
    Y = np.where(include, result.yi[None, :], np.nan)
    V = np.where(include, result.vi[None, :], np.nan)
    # the design as fitted (a single column of ones takes the intercept-only kernel)
    kern = core.kernel_from_padded(Y, V, np.asarray(result.X, dtype=np.float64))
    # a fit made with metafor's control= is refitted with it, as metafor's refits are
    control = getattr(result, "control", None)
    return core.fit(kern, check_method(result.method), check_test(result.test), result.level,
                    rule=None if control is None else control.to_rule())


def _batch_rows(k: int, p: int = 1) -> int:
    """Refits per batch: :data:`_REFIT_CELLS` cells of ``k`` studies (``p`` columns)."""
    return max(1, _REFIT_CELLS // max(1, k * p))


def _refit_batches(
    result: UnivariateModel, m: int, rows: Callable[[int, int], BoolArray]
) -> core.CoreFit:
    """The ``m`` refits whose subsets ``rows(start, stop)`` gives, batch by batch.

    Each batch is one call of the vectorised core on a ``(batch, k)`` padded array,
    so memory stays ``O(batch · k · p)`` however many refits there are.
    """
    step = _batch_rows(result.k, result.p)
    fits = [
        _refit_subsets(result, rows(start, min(m, start + step)))
        for start in range(0, m, step)
    ]
    return concat_fits(fits)


def _warn_refits(what: str, fit: core.CoreFit, labels: Sequence[str]) -> BoolArray:
    """One ConvergenceWarning naming the refits whose τ² search did not converge or
    whose likelihood maximum is above metafor's; returns the ``converged`` flags."""
    conv: BoolArray = np.asarray(fit.converged, dtype=bool)
    differs = np.asarray(fit.tau2_differs, dtype=bool)
    parts = []
    for flag, text in ((~conv, "did not converge"),
                       (differs, "have a likelihood maximum above the one metafor stops at")):
        bad = np.flatnonzero(flag)
        if bad.size:
            shown = ", ".join(repr(labels[i]) for i in bad[:10])
            more = f", ... ({bad.size} in all)" if bad.size > 10 else ""
            parts.append(f"{text}: {shown}{more}")
    if parts:
        warnings.warn(
            f"{what}: the refits of rows " + "; rows ".join(parts) + " (see result.converged)",
            ConvergenceWarning,
            stacklevel=3,
        )
    return conv


def _col(a: FloatArray) -> FloatArray:
    out: FloatArray = np.ascontiguousarray(a, dtype=np.float64)
    return out


def _df_or_nan(fit: core.CoreFit) -> FloatArray:
    return _col(fit.df)


# ---------------------------------------------------------------------------
# Leave-one-out
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class LeaveOneOutResult(ResultDisplay):
    """Leave-one-out meta-analyses (metafor's ``leave1out``), one row per omitted study.

    Attributes
    ----------
    estimate, se, statistic, pvalue : ndarray
        Pooled estimate without study i, its standard error, z (or t) statistic and
        p-value.
    df : ndarray
        Degrees of freedom of the t statistic (NaN under the z test).
    ci : IntervalArray
        Confidence intervals of the estimates.
    tau2 : ndarray
        τ² without study i.
    Q, Q_pvalue : ndarray
        Cochran's Q without study i and its p-value.
    I2, H2 : ndarray
        I² (percent) and H² without study i.
    converged : ndarray of bool
        Whether the τ² search of each refit converged.
    labels : tuple of str
        The omitted study of each row.
    method, test : str
        Estimator and test of the refits (those of the input result).
    level : float
        Confidence level.
    """

    estimate: FloatArray = attrs.field(eq=False)
    se: FloatArray = attrs.field(eq=False)
    statistic: FloatArray = attrs.field(eq=False)
    pvalue: FloatArray = attrs.field(eq=False)
    df: FloatArray = attrs.field(eq=False)
    ci: IntervalArray
    tau2: FloatArray = attrs.field(eq=False)
    Q: FloatArray = attrs.field(eq=False)
    Q_pvalue: FloatArray = attrs.field(eq=False)
    I2: FloatArray = attrs.field(eq=False)
    H2: FloatArray = attrs.field(eq=False)
    converged: BoolArray = attrs.field(eq=False)
    labels: tuple[str, ...]
    method: str
    test: str
    level: float

    def __len__(self) -> int:
        return len(self.labels)

    def to_frame(self) -> pd.DataFrame:
        """DataFrame indexed by the omitted study."""
        return _series_frame(self, "omitted", {})

    def summary(self) -> Summary:
        """A statsmodels Summary like metafor's ``print(leave1out(fit))``."""
        return _series_summary(self, "Leave-one-out analysis", "Row: the omitted study.")

    def __str__(self) -> str:
        return str(self.summary())


def _series_summary(
    res: LeaveOneOutResult | CumulativeResult, title: str, note: str
) -> Summary:
    """The shared Summary of leave-one-out and cumulative results."""
    info = [
        ("Method:", res.method),
        ("Test:", res.test),
        ("Level:", f"{res.level:g}"),
        ("Rows:", str(len(res))),
    ]
    return frame_summary(title, info, res.to_frame(), [note])


def _series_frame(
    res: LeaveOneOutResult | CumulativeResult, index_name: str, extra: dict[str, Any]
) -> pd.DataFrame:
    """The shared DataFrame of leave-one-out and cumulative results."""
    frame: pd.DataFrame = pd.DataFrame(
        {
            **extra,
            "estimate": res.estimate,
            "se": res.se,
            "statistic": res.statistic,
            "pvalue": res.pvalue,
            "ci_low": res.ci.low,
            "ci_high": res.ci.high,
            "Q": res.Q,
            "Q_pvalue": res.Q_pvalue,
            "tau2": res.tau2,
            "I2": res.I2,
            "H2": res.H2,
        },
        index=pd.Index(list(res.labels), name=index_name),
    )
    return frame


def _series_fields(fit: core.CoreFit) -> dict[str, Any]:
    """The per-refit fields shared by leave-one-out and cumulative results."""
    return {
        "estimate": _col(fit.beta[:, 0]),
        "se": _col(fit.se[:, 0]),
        "statistic": _col(fit.statistic[:, 0]),
        "pvalue": _col(fit.pvalue[:, 0]),
        "df": _df_or_nan(fit),
        "ci": IntervalArray(_col(fit.ci_low[:, 0]), _col(fit.ci_high[:, 0])),
        "tau2": _col(fit.tau2),
        "Q": _col(fit.QE),
        "Q_pvalue": _col(fit.QE_pvalue),
        "I2": _col(fit.I2),
        "H2": _col(fit.H2),
    }


def _loo_fit(result: PoolResult) -> core.CoreFit:
    """The k leave-one-out refits, in batches of rows of a padded array with study i
    of row i marked absent."""
    k = result.k
    if k < 2:
        raise ModelSpecificationError("leave-one-out needs at least 2 studies")

    def rows(start: int, stop: int) -> BoolArray:
        inc = np.ones((stop - start, k), dtype=bool)
        inc[np.arange(stop - start), np.arange(start, stop)] = False
        return inc

    return _refit_batches(result, k, rows)


@overload
def leave_one_out(result: PoolResult, cluster: None = None) -> LeaveOneOutResult: ...


@overload
def leave_one_out(
    result: MultilevelResult, cluster: str | npt.ArrayLike | None = None
) -> MultilevelLeaveOneOutResult: ...


def leave_one_out(
    result: PoolResult | MultilevelResult, cluster: str | npt.ArrayLike | None = None
) -> LeaveOneOutResult | MultilevelLeaveOneOutResult:
    """Leave-one-out sensitivity analysis.

    Parameters
    ----------
    result : PoolResult or MultilevelResult
        A fitted pooled result; every refit uses its method, test and level.  A
        multilevel or multivariate fit is refitted without each *cluster*
        (:func:`~alliance_meta.diagnostics.multilevel.leave_one_cluster_out`).
    cluster : str or array_like, optional
        Multilevel fits only: what to omit, a level name of the fit or one cluster
        label per effect; default its outer level (the studies).

    Returns
    -------
    LeaveOneOutResult or MultilevelLeaveOneOutResult

    Notes
    -----
    Row i is the model of :func:`~alliance_meta.random_effects` fitted to the data
    without study i (τ² re-estimated), exactly as metafor's ``leave1out``.  The k
    refits are calls of the vectorised core on batches of rows of a padded array
    whose diagonal is marked absent (``O(k)`` memory per refit, never ``k x k``).
    Refits whose τ² search does not converge are named in one
    :class:`~alliance_meta.exceptions.ConvergenceWarning` and flagged in
    ``converged``.

    References
    ----------
    Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and influence diagnostics
    for meta-analysis. *Research Synthesis Methods*, 1(2), 112-125.
    """
    if isinstance(result, MultilevelResult):
        return leave_one_cluster_out(result, cluster)
    if cluster is not None:
        raise ModelSpecificationError(
            "cluster= applies to multilevel fits; a univariate leave-one-out omits each study"
        )
    fit = _loo_fit(result)
    return LeaveOneOutResult(
        **_series_fields(fit),
        converged=_warn_refits("leave_one_out", fit, result.labels),
        labels=result.labels,
        method=result.method,
        test=result.test,
        level=result.level,
    )


# ---------------------------------------------------------------------------
# Influence diagnostics
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class InfluenceResult(ResultDisplay):
    """Case-deletion diagnostics (metafor's ``influence.rma.uni``), one row per study.

    Attributes
    ----------
    rstudent : ndarray
        Externally studentized residuals.
    dffits : ndarray
        DFFITS.
    cook_d : ndarray
        Cook's distances.
    cov_r : ndarray
        Covariance ratios.
    tau2_del : ndarray
        τ² with study i deleted.
    QE_del : ndarray
        Q with study i deleted.
    hat : ndarray
        Leverages (diagonal of the hat matrix).
    weight : ndarray
        Weights in percent.
    dfbetas : ndarray
        DFBETAS: of the pooled estimate, shape ``(k,)``, for a pooled result; of
        every coefficient, shape ``(k, p)``, for a meta-regression.
    influential : ndarray of bool
        metafor's ``is.infl`` flag (see :func:`influence`).
    converged : ndarray of bool
        Whether the τ² search of each deletion's refit converged.
    labels : tuple of str
        Study labels.
    k, p : int
        Number of studies and of coefficients.
    coef_names : tuple of str
        Names of the coefficients (the columns of a 2-D ``dfbetas``).

    A study whose deletion leaves a coefficient inestimable (the only study of a
    level) has NaN diagnostics and is not flagged, as metafor reports NA.
    """

    _repr_fields = ('k', 'p', 'coef_names')

    rstudent: FloatArray = attrs.field(eq=False)
    dffits: FloatArray = attrs.field(eq=False)
    cook_d: FloatArray = attrs.field(eq=False)
    cov_r: FloatArray = attrs.field(eq=False)
    tau2_del: FloatArray = attrs.field(eq=False)
    QE_del: FloatArray = attrs.field(eq=False)
    hat: FloatArray = attrs.field(eq=False)
    weight: FloatArray = attrs.field(eq=False)
    dfbetas: FloatArray = attrs.field(eq=False)
    influential: BoolArray = attrs.field(eq=False)
    converged: BoolArray = attrs.field(eq=False)
    labels: tuple[str, ...]
    k: int
    p: int = 1
    coef_names: tuple[str, ...] = ("intrcpt",)

    def __len__(self) -> int:
        return len(self.labels)

    def _dfbetas_columns(self) -> dict[str, FloatArray]:
        if self.dfbetas.ndim == 1:
            return {"dfbetas": self.dfbetas}
        return {f"dfbetas[{n}]": self.dfbetas[:, j] for j, n in enumerate(self.coef_names)}

    def to_frame(self) -> pd.DataFrame:
        """DataFrame indexed by study, columns as metafor's ``influence()`` (``$inf``
        and ``$dfbs``; one ``dfbetas[name]`` column per coefficient of a
        meta-regression)."""
        frame: pd.DataFrame = pd.DataFrame(
            {
                "rstudent": self.rstudent,
                "dffits": self.dffits,
                "cook_d": self.cook_d,
                "cov_r": self.cov_r,
                "tau2_del": self.tau2_del,
                "QE_del": self.QE_del,
                "hat": self.hat,
                "weight": self.weight,
                **self._dfbetas_columns(),
                "influential": self.influential,
            },
            index=pd.Index(list(self.labels), name="study"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary table like metafor's ``print(influence(fit))``."""
        dfbs = self._dfbetas_columns()
        rows = [
            [
                f"{self.rstudent[i]:.4f}",
                f"{self.dffits[i]:.4f}",
                f"{self.cook_d[i]:.4f}",
                f"{self.cov_r[i]:.4f}",
                f"{self.tau2_del[i]:.4f}",
                f"{self.QE_del[i]:.4f}",
                f"{self.hat[i]:.4f}",
                f"{self.weight[i]:.4f}",
                *(f"{col[i]:.4f}" for col in dfbs.values()),
                "*" if self.influential[i] else "",
            ]
            for i in range(self.k)
        ]
        headers = [
            "rstudent", "dffits", "cook.d", "cov.r", "tau2.del", "QE.del", "hat",
            "weight", *(n.replace("dfbetas", "dfbs") for n in dfbs), "inf",
        ]
        n_infl = int(np.sum(self.influential))
        tables = [
            info_table(
                [("Studies (k):", str(self.k))],
                [("Influential:", str(n_infl))],
                "Influence diagnostics",
            ),
            value_table(rows, headers, list(self.labels)),
        ]
        return make_summary(tables, ["* marks an influential study (metafor's is.infl rules)."])

    def __str__(self) -> str:
        return str(self.summary())


def _loo_fit_model(result: UnivariateModel) -> tuple[core.CoreFit, BoolArray]:
    """Leave-one-out refits of a univariate model, in batches of rows.

    Returns the fits of the deletions that leave the design of full rank (and, when
    τ² is estimated, more studies than coefficients), and a mask of those deletions;
    metafor reports NA for the others, whose refit it cannot fit.  Deleting study i
    lowers the rank of ``X`` exactly when its leverage in the unweighted projection
    is 1 (the row is outside the span of the others), found from the QR of ``X``.
    """
    k = result.k
    X = np.asarray(result.X, dtype=np.float64)
    Qx, _ = np.linalg.qr(X)
    lev = np.einsum("ij,ij->i", Qx, Qx)
    valid = lev < 1.0 - 1e-10
    if result.method != "EE" and result.p > 1 and k - 1 <= result.p:
        valid[:] = False  # k - 1 studies for p coefficients and τ²: rma() stops
    if not valid.any():
        raise ModelSpecificationError(
            f"influence needs a study whose deletion leaves all {result.p} coefficients "
            f"estimable (k = {k})"
            + ("" if result.method == "EE" else " with a residual df for tau^2")
        )
    vidx = np.flatnonzero(valid)

    def rows(start: int, stop: int) -> BoolArray:
        inc = np.ones((stop - start, k), dtype=bool)
        inc[np.arange(stop - start), vidx[start:stop]] = False
        return inc

    return _refit_batches(result, vidx.size, rows), valid


@overload
def influence(result: UnivariateModel, cluster: None = None) -> InfluenceResult: ...


@overload
def influence(
    result: MultilevelResult, cluster: str | npt.ArrayLike | None = None
) -> MultilevelInfluenceResult: ...


def influence(
    result: UnivariateModel | MultilevelResult, cluster: str | npt.ArrayLike | None = None
) -> InfluenceResult | MultilevelInfluenceResult:
    """Outlier and influence diagnostics of a pooled result or a meta-regression.

    Parameters
    ----------
    result : PoolResult, MetaRegressionResult or MultilevelResult
        A fitted univariate model (any
        :class:`~alliance_meta.models.protocol.UnivariateModel`).  The deleted fits
        are the k leave-one-out refits (one call
        of the vectorised core), with the model's method, test and level.  A
        multilevel or multivariate fit gets Cook's distances, DFBETAS and
        studentized deleted residuals by effect or by cluster
        (:func:`~alliance_meta.diagnostics.multilevel.multilevel_influence`).
    cluster : str or array_like, optional
        Multilevel fits only: delete whole clusters (a level name of the fit, or one
        label per effect), as metafor's ``cooks.distance(fit, cluster =)``; by
        default each effect.

    Returns
    -------
    InfluenceResult or MultilevelInfluenceResult

    Notes
    -----
    With design ``X`` (a column of ones for a pooled result), full-model weights
    ``W = diag(1/(v_i + τ̂²))``, coefficients ``b`` with covariance ``Vb`` (Knapp-
    Hartung scaled when the test is), and the fit without study i giving ``b₍ᵢ₎``,
    ``Vb₍ᵢ₎``, ``τ̂²₍ᵢ₎``, ``Q₍ᵢ₎`` and Knapp-Hartung factor ``s²₍ᵢ₎`` (1 unless
    ``test="knha"``/``"adhoc"``), following Viechtbauer & Cheung (2010) and
    metafor's ``influence.rma.uni``:

    * hat ``h_i``: the diagonal of ``X (X'WX)⁻¹ X'W``; weight ``100 w_i / Σ w``;
    * rstudent ``(y_i - x_i b₍ᵢ₎) / sqrt(s²₍ᵢ₎ (v_i + τ̂²₍ᵢ₎) + x_i Vb₍ᵢ₎ x_i')``;
    * DFFITS ``(x_i b - x_i b₍ᵢ₎) / sqrt(s²₍ᵢ₎ h_i (τ̂²₍ᵢ₎ + v_i))``;
    * Cook's distance ``d' Vb⁻¹ d`` with ``d = b - b₍ᵢ₎``;
    * covariance ratio ``det Vb₍ᵢ₎ / det Vb``;
    * DFBETAS ``(b - b₍ᵢ₎) / sqrt(s²₍ᵢ₎ diag((X'W₍ᵢ₎X)⁻¹))`` with
      ``W₍ᵢ₎ = diag(1/(v_j + τ̂²₍ᵢ₎))`` over all k studies;
    * a study is flagged influential (metafor's ``is.infl``) when any of
      ``|DFFITS| > 3 sqrt(p/(k-p))``, ``F_χ²_p(Cook's d) > 0.5``, ``h_i > 3p/k`` or
      ``|DFBETAS| > 1`` (any coefficient) holds, with ``p`` the number of
      coefficients (metafor's default ``btt``: all of them).

    References
    ----------
    Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and influence diagnostics
    for meta-analysis. *Research Synthesis Methods*, 1(2), 112-125.
    """
    if isinstance(result, MultilevelResult):
        return multilevel_influence(result, cluster)
    if cluster is not None:
        raise ModelSpecificationError(
            "cluster= applies to multilevel fits; a univariate model deletes each study"
        )
    k = result.k
    yi, vi = result.yi, result.vi
    X = np.asarray(result.X, dtype=np.float64)
    coef = np.asarray(result.coef, dtype=np.float64)
    vb_full = np.asarray(result.vcov, dtype=np.float64)
    coef_names = result.coef_names
    fit, valid = _loo_fit_model(result)
    p = X.shape[1]
    w = 1.0 / (vi + result.tau2)
    Qw, _ = core.wls_qr(X, w)
    hat = np.einsum("ij,ij->i", Qw, Qw)  # diagonal of the hat matrix QQᵀ
    pred_full = X @ coef

    def full(values: FloatArray) -> FloatArray:
        out = np.full((k, *values.shape[1:]), np.nan)
        out[valid] = values
        return out

    Xv = X[valid]
    beta_del = fit.beta
    tau2_del = full(fit.tau2)
    s2w = full(fit.s2w)
    delpred = full(np.einsum("ij,ij->i", Xv, beta_del))
    vdelpred = full(np.einsum("ij,ijk,ik->i", Xv, fit.vb, Xv))
    dfb = full(coef[None, :] - beta_del)
    # diag((X'W₍ᵢ₎X)⁻¹) with all k studies at each deletion's τ², in batches
    vb_plug_v = np.empty((beta_del.shape[0], p))
    step = _batch_rows(k, p)
    for a in range(0, beta_del.shape[0], step):
        b = min(beta_del.shape[0], a + step)
        wd = 1.0 / (vi[None, :] + fit.tau2[a:b, None])
        _, Rinv_del = core.wls_qr(np.broadcast_to(X, (b - a, *X.shape)), wd)
        vb_plug_v[a:b] = np.einsum("ijk,ijk->ij", Rinv_del, Rinv_del)  # diag of R⁻¹R⁻ᵀ
    vb_plug = full(vb_plug_v)
    converged = np.ones(k, dtype=bool)
    converged[valid] = _warn_refits("influence", fit, [result.labels[i] for i in
                                                       np.flatnonzero(valid)])
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = yi - delpred
        size = np.maximum(np.abs(yi), np.abs(delpred))
        resid = np.where(np.abs(resid) < _RESID_ZERO * size, 0.0, resid)
        rstudent = resid / np.sqrt(vi * s2w + vdelpred + tau2_del * s2w)
        dffits = (pred_full - delpred) / np.sqrt(s2w * hat * (tau2_del + vi))
        cook_d = np.einsum("ij,ji->i", dfb, np.linalg.solve(vb_full, dfb.T))
        cov_r = full(np.linalg.det(fit.vb)) / np.linalg.det(vb_full)
        dfbetas = dfb / np.sqrt(s2w[:, None] * vb_plug)
        influential = (
            (np.abs(dffits) > (3.0 * math.sqrt(p / (k - p)) if k > p else math.inf))
            | (chi2_sf(cook_d, p) < 0.5)
            | (hat > 3.0 * p / k)
            | np.any(np.abs(dfbetas) > 1.0, axis=1)
        )
    return InfluenceResult(
        rstudent=_col(rstudent),
        dffits=_col(dffits),
        cook_d=_col(cook_d),
        cov_r=_col(cov_r),
        tau2_del=_col(tau2_del),
        QE_del=_col(full(fit.QE)),
        hat=_col(hat),
        weight=_col(100.0 * w / w.sum()),
        dfbetas=_col(dfbetas[:, 0] if p == 1 else dfbetas),
        influential=np.asarray(influential & ~np.isnan(dffits), dtype=bool),
        converged=converged,
        labels=result.labels,
        k=k,
        p=p,
        coef_names=coef_names,
    )


# ---------------------------------------------------------------------------
# Cumulative meta-analysis
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class CumulativeResult(ResultDisplay):
    """Cumulative meta-analysis (metafor's ``cumul``), one row per step.

    Row j pools the first j + 1 studies in ``order``; ``labels[j]`` is the study
    added at step j.  Fields are as in :class:`LeaveOneOutResult`, plus ``k`` (the
    number of studies pooled at each step) and ``order`` (the 0-based indices of
    the studies, in the order used), and ``converged`` (whether each step's τ²
    search converged).
    """

    estimate: FloatArray = attrs.field(eq=False)
    se: FloatArray = attrs.field(eq=False)
    statistic: FloatArray = attrs.field(eq=False)
    pvalue: FloatArray = attrs.field(eq=False)
    df: FloatArray = attrs.field(eq=False)
    ci: IntervalArray
    tau2: FloatArray = attrs.field(eq=False)
    Q: FloatArray = attrs.field(eq=False)
    Q_pvalue: FloatArray = attrs.field(eq=False)
    I2: FloatArray = attrs.field(eq=False)
    H2: FloatArray = attrs.field(eq=False)
    converged: BoolArray = attrs.field(eq=False)
    k: IntArray = attrs.field(eq=False)
    order: npt.NDArray[np.intp] = attrs.field(eq=False)
    labels: tuple[str, ...]
    method: str
    test: str
    level: float

    def __len__(self) -> int:
        return len(self.labels)

    def to_frame(self) -> pd.DataFrame:
        """DataFrame indexed by the study added at each step."""
        return _series_frame(self, "added", {"k": self.k})

    def summary(self) -> Summary:
        """A statsmodels Summary like metafor's ``print(cumul(fit))``."""
        return _series_summary(
            self, "Cumulative meta-analysis", "Row: the study added at that step."
        )

    def __str__(self) -> str:
        return str(self.summary())


def _resolve_order(order: npt.ArrayLike | None, k: int) -> npt.NDArray[np.intp]:
    if order is None:
        return np.arange(k, dtype=np.intp)
    arr = np.asarray(order)
    if arr.ndim != 1 or arr.size != k:
        raise ModelSpecificationError(
            f"order must be one-dimensional with one entry per study ({k}), got shape "
            f"{arr.shape}"
        )
    try:
        idx = np.argsort(arr, kind="stable")
    except TypeError as exc:
        raise ModelSpecificationError(f"cannot sort by the given order key: {exc}") from exc
    return idx.astype(np.intp)


def cumulative(result: PoolResult, order: npt.ArrayLike | None = None) -> CumulativeResult:
    """Cumulative meta-analysis: studies added one at a time.

    Parameters
    ----------
    result : PoolResult
        A fitted pooled result; every step uses its method, test and level.
    order : array_like, optional
        A key with one value per study (e.g. publication year) to sort the studies
        by, ascending and stable (ties keep data order; NaN keys sort last), as
        metafor's ``cumul(x, order = year)``.  Default: data order.  For a given
        sequence of study positions ``idx``, pass ``numpy.argsort(idx)`` (its
        inverse), as ``order`` is always a sort key, in metafor too.

    Returns
    -------
    CumulativeResult

    Notes
    -----
    Step j is the model fitted to the first j + 1 studies (τ² re-estimated; a
    single study gives τ² = 0 and a z test, as metafor).  The k steps are calls of
    the vectorised core on batches of rows of a lower-triangular padded array (Lau
    et al., 1992), ``O(k)`` memory per step, never ``k x k``; steps whose τ² search
    does not converge are named in one ConvergenceWarning and flagged in
    ``converged``.

    References
    ----------
    Lau, J., Antman, E. M., Jimenez-Silva, J., Kupelnick, B., Mosteller, F., &
    Chalmers, T. C. (1992). Cumulative meta-analysis of therapeutic trials for
    myocardial infarction. *New England Journal of Medicine*, 327(4), 248-254.
    """
    k = result.k
    idx = _resolve_order(order, k)
    pos = np.empty(k, dtype=np.intp)
    pos[idx] = np.arange(k)  # the step at which each study enters

    def rows(start: int, stop: int) -> BoolArray:
        out: BoolArray = pos[None, :] <= np.arange(start, stop)[:, None]
        return out

    fit = _refit_batches(result, k, rows)
    labels = tuple(result.labels[i] for i in idx)
    return CumulativeResult(
        **_series_fields(fit),
        converged=_warn_refits("cumulative", fit, labels),
        k=np.asarray(fit.k, dtype=np.int64),
        order=idx,
        labels=labels,
        method=result.method,
        test=result.test,
        level=result.level,
    )
