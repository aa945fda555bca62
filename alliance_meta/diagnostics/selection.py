"""Selection models for publication bias (metafor's ``selmodel``).

:func:`selection_model` refits a random- or equal-effects model (with or without
moderators) jointly with a model of how studies were selected for publication by
their p-values, and reports the selection-adjusted estimates, the estimated
selection function and the likelihood-ratio test of no selection.  The numerical
work is in :mod:`alliance_meta.core.selection`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.iolib.summary import Summary

from alliance_meta.core import selection as core
from alliance_meta.core.inference import chi2_sf, coef_inference, wald_test
from alliance_meta.exceptions import (
    BoundaryWarning,
    ConvergenceWarning,
    FewStudiesWarning,
    InvalidStudyError,
    ModelSpecificationError,
)
from alliance_meta.models.metareg import MetaRegressionResult
from alliance_meta.models.pooling import PoolResult
from alliance_meta.results.base import ConfidenceInterval, IntervalArray, freeze_arrays
from alliance_meta.results.display import ResultDisplay
from alliance_meta.results.summary import frame_table, info_table, make_summary

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SelectionType = Literal["stepfun", "beta", "halfnorm", "negexp", "logistic", "power"]
Alternative = Literal["two.sided", "greater", "less"]

__all__ = [
    "Alternative",
    "SelectionMetaRegressionResult",
    "SelectionModelResult",
    "SelectionType",
    "selection_model",
]

#: metafor warns about nothing below this; the issue asks for a warning (Vevea &
#: Woods, 2005, advise several studies per interval)
_FEW_PER_INTERVAL = 4

_TYPE_NAMES = {
    "stepfun": "step function",
    "beta": "beta",
    "halfnorm": "half-normal",
    "negexp": "negative-exponential",
    "logistic": "logistic",
    "power": "power",
}


# ---------------------------------------------------------------------------
# Result classes
# ---------------------------------------------------------------------------


def _interval_labels(steps: FloatArray) -> list[str]:
    """``"0 < p <= 0.025"``-style labels of the p-value intervals (metafor's rows)."""
    left = ["0", *(f"{s:g}" for s in steps[:-1])]
    return [f"{lo} < p <= {s:g}" for lo, s in zip(left, steps, strict=True)]


def _tau2_text(tau2: float, se: float | None) -> str:
    return f"{tau2:.4f}" if se is None else f"{tau2:.4f} ({se:.4f})"


class _SelectionMixin(ResultDisplay):
    """Methods shared by the two result classes (fields are declared on them)."""

    __slots__ = ()

    type: str
    alternative: str
    steps: FloatArray | None
    delta: FloatArray
    delta_se: FloatArray
    delta_statistic: FloatArray
    delta_pvalue: FloatArray
    delta_ci: IntervalArray
    delta_fixed: BoolArray
    tau2: float
    tau2_se: float | None
    tau2_ci: ConfidenceInterval
    LRT: float
    LRT_df: int
    LRT_pvalue: float
    loglik: float
    loglik_null: float
    k: tuple[int, ...] | None
    n_studies: int
    method: str
    level: float
    converged: bool
    at_bound: tuple[str, ...]
    pvalues: FloatArray
    vcov: FloatArray
    _spec: core.SelectionSpec

    @property
    def delta_names(self) -> tuple[str, ...]:
        """Row names of the selection parameters (the p-value intervals of a step
        function, ``delta`` or ``delta.1``, ``delta.2`` otherwise)."""
        if self.type == "stepfun":
            assert self.steps is not None
            return tuple(_interval_labels(self.steps))
        if self.delta.size == 1:
            return ("delta",)
        return tuple(f"delta.{j + 1}" for j in range(self.delta.size))

    def selection_function(self, p: npt.ArrayLike) -> FloatArray:
        """The estimated selection function ``w(p; δ̂)`` at p-values ``p``
        (relative likelihood of selection; metafor's ``wi.fun``)."""
        return core.weight_function(np.asarray(p, dtype=np.float64), self.delta, self._spec)

    def plot(
        self,
        ax: Axes | None = None,
        *,
        n: int = 1000,
        xlim: tuple[float, float] | None = None,
        ylim: tuple[float, float] | None = None,
        ci: Literal[False, "wald", "boot"] = False,
        reps: int = 1000,
        seed: int | None = None,
        rug: bool = True,
        scale: bool = False,
        add: bool = False,
        **line_kwargs: Any,
    ) -> Axes:
        """Plot the estimated selection function (metafor's ``plot(sel)``).

        See :func:`alliance_meta.plot.selection.selection_function`.
        """
        from alliance_meta.plot.selection import selection_function

        return selection_function(
            self,
            ax,
            n=n,
            xlim=xlim,
            ylim=ylim,
            ci=ci,
            reps=reps,
            seed=seed,
            rug=rug,
            scale=scale,
            add=add,
            **line_kwargs,
        )

    # -- tables --------------------------------------------------------------
    def _coef_rows(self) -> pd.DataFrame:  # pragma: no cover - overridden
        raise NotImplementedError

    def _extra_info(self) -> list[tuple[str, str]]:
        return []

    def _delta_frame(self) -> pd.DataFrame:
        fr: pd.DataFrame = pd.DataFrame(
            {
                "estimate": self.delta,
                "se": self.delta_se,
                "statistic": self.delta_statistic,
                "pvalue": self.delta_pvalue,
                "ci_low": self.delta_ci.low,
                "ci_high": self.delta_ci.high,
                "fixed": self.delta_fixed,
            },
            index=list(self.delta_names),
        )
        if self.type == "stepfun" and self.k is not None:
            fr.insert(0, "k", list(self.k))
        return fr

    def to_frame(self) -> pd.DataFrame:
        """One row per parameter: the coefficients, ``tau2`` and the selection
        parameters, with estimate, se, statistic, pvalue, ci_low, ci_high, the
        ``kind`` of parameter and (step functions) the studies per interval ``k``."""
        coefs = self._coef_rows()
        coefs["kind"] = "coefficient"
        tau = pd.DataFrame(
            {
                "estimate": [self.tau2],
                "se": [np.nan if self.tau2_se is None else self.tau2_se],
                "statistic": [np.nan],
                "pvalue": [np.nan],
                "ci_low": [self.tau2_ci.low],
                "ci_high": [self.tau2_ci.high],
                "kind": ["tau2"],
            },
            index=["tau2"],
        )
        d = self._delta_frame().drop(columns=["fixed"])
        d["kind"] = "delta"
        frame: pd.DataFrame = pd.concat([coefs, tau, d])
        if "k" in frame.columns:
            frame["k"] = frame["k"].astype("Int64")
        return frame

    def summary(self) -> Summary:
        """A statsmodels ``Summary`` like metafor's ``print(sel)``."""
        model = "equal-effects" if self.method in ("EE", "FE", "CE") else "random-effects"
        steps = "" if self.steps is None else ", ".join(f"{s:g}" for s in self.steps)
        left = [
            ("Selection model:", _TYPE_NAMES[self.type]),
            ("Alternative:", self.alternative),
            ("Steps:", steps or "none"),
            ("Model:", f"{model} (ML)"),
            ("Studies (k):", str(self.n_studies)),
        ]
        lrt_p = "NA" if math.isnan(self.LRT_pvalue) else f"{self.LRT_pvalue:.4g}"
        right = [
            ("Log-likelihood:", f"{self.loglik:.4f}"),
            ("tau^2 (se):", _tau2_text(self.tau2, self.tau2_se)),
            (f"LRT (df = {self.LRT_df}):", f"{self.LRT:.4f}"),
            ("LRT p-value:", lrt_p),
            ("Converged:", "yes" if self.converged else "no"),
        ]
        left.extend(self._extra_info())
        tables = [
            info_table(left, right, "Selection model (metafor's selmodel)"),
            frame_table(self._coef_rows(), "Model results"),
            frame_table(self._delta_frame(), "Selection model parameters"),
        ]
        notes = []
        if self.at_bound:
            bound = ", ".join(self.at_bound)
            notes.append(f"Estimates on a bound of the parameter space: {bound}.")
        if self.method not in ("ML", "EE", "FE", "CE"):
            notes.append(f"The input {self.method} fit was refitted by ML (as metafor's selmodel).")
        return make_summary(tables, notes)

    def __str__(self) -> str:
        return str(self.summary())


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class SelectionModelResult(_SelectionMixin):
    """A selection model without moderators (metafor's ``selmodel`` on ``rma(yi, vi)``).

    Attributes
    ----------
    estimate, se, statistic, pvalue, ci
        The selection-adjusted average effect μ̂, its standard error (observed
        information), z statistic, two-sided p-value and confidence interval.
    tau2, tau2_se, tau2_ci
        ML estimate of τ² under the selection model, its standard error and Wald
        interval truncated at 0 (``tau2_se`` is None for an equal-effects model).
    delta, delta_se, delta_statistic, delta_pvalue, delta_ci, delta_fixed
        Selection parameters, their standard errors, z tests of the value of no
        selection (1 for stepfun and beta, 0 otherwise), Wald intervals truncated at
        0, and which were fixed by ``delta=`` (NaN inference for those).
    LRT, LRT_df, LRT_pvalue
        Likelihood-ratio test of no selection against the ML fit without selection.
    loglik, loglik_null
        Maximised log-likelihood with and without selection.
    k
        Studies per p-value interval (step functions and a threshold ``steps``);
        None otherwise.
    n_studies
        Number of studies.
    type, alternative, steps, method, level, measure
        The model and the input fit's settings (``method`` is the input fit's τ²
        estimator; the selection model is always fitted by ML).
    converged, at_bound
        Whether the maximisation converged (Newton decrement ≤ 1e-10) and the
        names of parameters whose estimate lies on a bound (``"tau2"`` at 0, a δ
        at its ``[delta_min, delta_max]`` limit).
    pvalues
        The studies' (clamped) one- or two-sided p-values.
    """

    _repr_fields = ("estimate", "ci", "tau2", "delta", "LRT_pvalue", "type", "k")

    estimate: float
    se: float = attrs.field(repr=False)
    statistic: float = attrs.field(repr=False)
    pvalue: float = attrs.field(repr=False)
    ci: ConfidenceInterval = attrs.field(repr=False)
    tau2: float
    tau2_se: float | None = attrs.field(repr=False)
    tau2_ci: ConfidenceInterval = attrs.field(repr=False)
    delta: FloatArray = attrs.field(eq=False)
    delta_se: FloatArray = attrs.field(eq=False, repr=False)
    delta_statistic: FloatArray = attrs.field(eq=False, repr=False)
    delta_pvalue: FloatArray = attrs.field(eq=False, repr=False)
    delta_ci: IntervalArray = attrs.field(repr=False)
    delta_fixed: BoolArray = attrs.field(eq=False, repr=False)
    LRT: float
    LRT_df: int = attrs.field(repr=False)
    LRT_pvalue: float
    loglik: float
    loglik_null: float = attrs.field(repr=False)
    k: tuple[int, ...] | None
    n_studies: int = attrs.field(repr=False)
    type: str
    alternative: str = attrs.field(repr=False)
    steps: FloatArray | None = attrs.field(eq=False, repr=False)
    method: str = attrs.field(repr=False)
    level: float = attrs.field(repr=False)
    measure: str = attrs.field(repr=False)
    converged: bool
    at_bound: tuple[str, ...] = attrs.field(repr=False)
    vcov: FloatArray = attrs.field(eq=False, repr=False)
    labels: tuple[str, ...] = attrs.field(repr=False)
    yi: FloatArray = attrs.field(eq=False, repr=False)
    vi: FloatArray = attrs.field(eq=False, repr=False)
    pvalues: FloatArray = attrs.field(eq=False, repr=False)
    _spec: core.SelectionSpec = attrs.field(eq=False, repr=False, alias="spec")

    def _coef_rows(self) -> pd.DataFrame:
        fr: pd.DataFrame = pd.DataFrame(
            {
                "estimate": [self.estimate],
                "se": [self.se],
                "statistic": [self.statistic],
                "pvalue": [self.pvalue],
                "ci_low": [self.ci.low],
                "ci_high": [self.ci.high],
            },
            index=["intrcpt"],
        )
        return fr


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class SelectionMetaRegressionResult(_SelectionMixin):
    """A selection model with moderators (metafor's ``selmodel`` on ``rma(yi, vi, mods=)``).

    As :class:`SelectionModelResult`, with the coefficients in ``coef``, ``se``,
    ``statistic``, ``pvalue`` and ``ci`` (``.low``/``.high``) arrays named by
    ``coef_names``, their covariance ``vcov``, and the omnibus Wald test of the
    moderators ``QM`` (χ² on ``QM_df`` df, p-value ``QM_pvalue``), as metafor.
    """

    _repr_fields = ("coef_names", "coef", "tau2", "delta", "LRT_pvalue", "type")

    coef_names: tuple[str, ...]
    coef: FloatArray = attrs.field(eq=False)
    se: FloatArray = attrs.field(eq=False, repr=False)
    statistic: FloatArray = attrs.field(eq=False, repr=False)
    pvalue: FloatArray = attrs.field(eq=False, repr=False)
    ci: IntervalArray = attrs.field(repr=False)
    QM: float = attrs.field(repr=False)
    QM_df: int = attrs.field(repr=False)
    QM_pvalue: float = attrs.field(repr=False)
    tau2: float
    tau2_se: float | None = attrs.field(repr=False)
    tau2_ci: ConfidenceInterval = attrs.field(repr=False)
    delta: FloatArray = attrs.field(eq=False)
    delta_se: FloatArray = attrs.field(eq=False, repr=False)
    delta_statistic: FloatArray = attrs.field(eq=False, repr=False)
    delta_pvalue: FloatArray = attrs.field(eq=False, repr=False)
    delta_ci: IntervalArray = attrs.field(repr=False)
    delta_fixed: BoolArray = attrs.field(eq=False, repr=False)
    LRT: float
    LRT_df: int = attrs.field(repr=False)
    LRT_pvalue: float
    loglik: float
    loglik_null: float = attrs.field(repr=False)
    k: tuple[int, ...] | None
    n_studies: int = attrs.field(repr=False)
    type: str
    alternative: str = attrs.field(repr=False)
    steps: FloatArray | None = attrs.field(eq=False, repr=False)
    method: str = attrs.field(repr=False)
    level: float = attrs.field(repr=False)
    measure: str = attrs.field(repr=False)
    converged: bool
    at_bound: tuple[str, ...] = attrs.field(repr=False)
    vcov: FloatArray = attrs.field(eq=False, repr=False)
    labels: tuple[str, ...] = attrs.field(repr=False)
    yi: FloatArray = attrs.field(eq=False, repr=False)
    vi: FloatArray = attrs.field(eq=False, repr=False)
    X: FloatArray = attrs.field(eq=False, repr=False)
    pvalues: FloatArray = attrs.field(eq=False, repr=False)
    _spec: core.SelectionSpec = attrs.field(eq=False, repr=False, alias="spec")

    def _coef_rows(self) -> pd.DataFrame:
        fr: pd.DataFrame = pd.DataFrame(
            {
                "estimate": self.coef,
                "se": self.se,
                "statistic": self.statistic,
                "pvalue": self.pvalue,
                "ci_low": self.ci.low,
                "ci_high": self.ci.high,
            },
            index=list(self.coef_names),
        )
        return fr

    def _extra_info(self) -> list[tuple[str, str]]:
        if self.QM_df == 0:
            return []
        p = "NA" if math.isnan(self.QM_pvalue) else f"{self.QM_pvalue:.4g}"
        return [(f"QM (df = {self.QM_df}):", f"{self.QM:.4f}"), ("QM p-value:", p)]


# ---------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------


def _check_steps(type: str, steps: npt.ArrayLike | None) -> FloatArray | None:
    if steps is None:
        if type == "stepfun":
            raise ModelSpecificationError(
                "type='stepfun' needs 'steps': the right ends of the p-value intervals, "
                "e.g. steps=[0.025, 0.5] (a final 1 is added)"
            )
        return None
    if type == "beta":
        raise ModelSpecificationError("'steps' does not apply to the beta selection model")
    st = np.atleast_1d(np.asarray(steps, dtype=np.float64))
    if st.ndim != 1 or st.size == 0:
        raise ModelSpecificationError("'steps' must be a non-empty sequence of p-values")
    for j, s in enumerate(st):
        if not (math.isfinite(s) and 0.0 < s <= 1.0):
            raise ModelSpecificationError(
                f"steps[{j}] = {s!r} is not within (0, 1]: step boundaries are p-values"
            )
    bad = np.flatnonzero(np.diff(st) <= 0)
    if bad.size:
        j = int(bad[0]) + 1
        raise ModelSpecificationError(
            f"step boundaries must be strictly increasing: steps[{j}] = {st[j]!r} does not "
            f"exceed steps[{j - 1}] = {st[j - 1]!r}"
        )
    if type != "stepfun":
        below = st[st < 1.0]
        if below.size != 1:
            raise ModelSpecificationError(
                f"type={type!r} takes a single threshold in (0, 1) as 'steps' (below which "
                f"the selection weight is 1), got {st.tolist()}"
            )
        return below
    return st


def _check_delta(
    type: str, delta: float | Sequence[float | None] | npt.ArrayLike | None, n_delta: int
) -> FloatArray | None:
    if delta is None:
        return None
    raw = np.atleast_1d(np.asarray(delta, dtype=object))
    vals = np.array([np.nan if v is None else float(v) for v in raw], dtype=np.float64)
    if vals.size == 1:
        vals = np.full(n_delta, vals[0])
    if vals.size != n_delta:
        raise ModelSpecificationError(
            f"'delta' must have length {n_delta} for this {type} selection model "
            f"(or be a single value), got {vals.size}"
        )
    for j, v in enumerate(vals):
        if np.isnan(v):
            continue
        if not math.isfinite(v) or v < 0 or (type == "beta" and v == 0):
            bound = "> 0" if type == "beta" else ">= 0"
            raise ModelSpecificationError(f"delta[{j}] = {v!r} must be finite and {bound}")
    if type == "stepfun" and not np.isnan(vals[0]) and vals[0] != 1.0:
        raise ModelSpecificationError(
            f"delta[0] = {vals[0]!r}: the first interval of a step function is the reference "
            "and its weight is 1 (give 1 or None)"
        )
    return vals


def _n_delta(type: str, steps: FloatArray | None) -> int:
    if type == "stepfun":
        assert steps is not None
        return int(steps.size + (0 if steps[-1] == 1.0 else 1))
    return 2 if type == "beta" else 1


# ---------------------------------------------------------------------------
# The public function
# ---------------------------------------------------------------------------


@overload
def selection_model(
    fit: PoolResult,
    type: SelectionType,
    *,
    steps: npt.ArrayLike | None = None,
    alternative: Alternative = "two.sided",
    delta: float | Sequence[float | None] | npt.ArrayLike | None = None,
) -> SelectionModelResult: ...


@overload
def selection_model(
    fit: MetaRegressionResult,
    type: SelectionType,
    *,
    steps: npt.ArrayLike | None = None,
    alternative: Alternative = "two.sided",
    delta: float | Sequence[float | None] | npt.ArrayLike | None = None,
) -> SelectionMetaRegressionResult: ...


def selection_model(
    fit: PoolResult | MetaRegressionResult,
    type: SelectionType,
    *,
    steps: npt.ArrayLike | None = None,
    alternative: Alternative = "two.sided",
    delta: float | Sequence[float | None] | npt.ArrayLike | None = None,
) -> SelectionModelResult | SelectionMetaRegressionResult:
    """Fit a selection model for publication bias (metafor's ``selmodel``).

    Parameters
    ----------
    fit : PoolResult or MetaRegressionResult
        The model to adjust: random effects (any τ² estimator; it is refitted by
        ML, as metafor does) or equal effects (``method="EE"``), with or without
        moderators.
    type : {"stepfun", "beta", "halfnorm", "negexp", "logistic", "power"}
        The selection function ``w(p)``: a step function with weight ``δ_j`` on the
        j-th p-value interval (``δ_1 = 1``; Vevea & Hedges, 1995), the beta
        function ``p^{δ1-1}(1-p)^{δ2-1}`` (Citkowicz & Vevea, 2017), or the
        half-normal ``exp(-δp²)``, negative-exponential ``exp(-δp)``, logistic
        ``2exp(-δp)/(1+exp(-δp))`` (Preston et al., 2004) and power ``(1-p)^δ``
        functions.
    steps : sequence of float, optional
        Step functions: the right ends ``α_1 < ... < α_c`` of the p-value
        intervals, each within (0, 1] (1 is appended if missing).  halfnorm,
        negexp, logistic, power: an optional single threshold ``α``; ``w = 1``
        for ``p <= α`` and ``w(p)/w(α)`` above it.
    alternative : {"two.sided", "greater", "less"}
        Which p-values drive selection: two-sided, or one-sided for positive
        (``"greater"``) or negative (``"less"``) effects.  Note that metafor's
        default is ``"greater"``.
    delta : float or sequence, optional
        Fixed selection parameters (``None``/NaN entries are estimated), as
        ``selmodel(delta=)``; a scalar fixes all of them.  For a step function
        the first value must be 1 (or None).

    Returns
    -------
    SelectionModelResult or SelectionMetaRegressionResult
        The latter when ``fit`` is a :class:`MetaRegressionResult`.

    Raises
    ------
    ModelSpecificationError
        For an unsupported fit, an unknown ``type``/``alternative``, step
        boundaries not strictly increasing or not within (0, 1], an interval with
        no studies whose weight is estimated, a ``delta`` of the wrong length or
        outside its range, or fewer studies than parameters.
    InvalidStudyError
        For a study with a non-positive or non-finite sampling variance.

    Warns
    -----
    FewStudiesWarning
        When a p-value interval holds fewer than 4 studies.
    BoundaryWarning
        When an estimated δ lies on its bound ``[delta_min, delta_max]``
        (metafor's ``[0, 100]``, ``[1e-5, 100]`` for beta).
    ConvergenceWarning
        When the maximisation did not converge.

    Notes
    -----
    With ``μ_i = x_i'β``, ``V_i = v_i + τ²`` and ``p_i`` the p-value of
    ``y_i/√v_i``, the log-likelihood is (Hedges, 1992; Vevea & Hedges, 1995)

        ℓ = Σ_i [log w(p_i) + log φ(y_i; μ_i, V_i) - log A_i],
        A_i = ∫ w(p(y)) φ(y; μ_i, V_i) dy,

    maximised over ``β``, ``τ² >= 0`` and the free ``δ`` within metafor's bounds,
    to the true maximum (several starts, analytic gradient and Hessian, Newton
    polishing; see :mod:`alliance_meta.core.selection`).  Standard errors are from
    the inverse observed information in ``(β, τ², δ)``, as metafor's numerical
    Hessian; tests and intervals are Wald z (metafor sets ``test="z"``).  The
    likelihood-ratio test compares ``ℓ`` with the ML log-likelihood of the model
    without selection, on the number of estimated δ (``LRT = max(0, 2Δℓ)``).
    p-values are clamped to ``[1e-5, 1 - 1e-5]`` for the beta and power models,
    as in metafor.  metafor's ``optim`` often stops ~1e-4 short in the estimates;
    this implementation reaches the maximum (see the tests for the evidence).

    Selection models need many studies (k of about 30 or more) for a stable δ,
    and assume that selection depends on the p-value alone.

    References
    ----------
    Citkowicz, M., & Vevea, J. L. (2017). A parsimonious weight function for
    modeling publication bias. *Psychological Methods*, 22(1), 28-41.

    Hedges, L. V. (1992). Modeling publication selection effects in
    meta-analysis. *Statistical Science*, 7(2), 246-255.

    Preston, C., Ashby, D., & Smyth, R. (2004). Adjusting for publication bias:
    Modelling the selection process. *Journal of Evaluation in Clinical
    Practice*, 10(2), 313-322.

    Vevea, J. L., & Hedges, L. V. (1995). A general linear model for estimating
    effect size in the presence of publication bias. *Psychometrika*, 60(3),
    419-435.

    Vevea, J. L., & Woods, C. M. (2005). Publication bias in research synthesis:
    Sensitivity analysis using a priori weight functions. *Psychological
    Methods*, 10(4), 428-443.
    """
    if isinstance(fit, MetaRegressionResult):
        X = np.asarray(fit.X, dtype=np.float64)
        coef_names: tuple[str, ...] | None = tuple(fit.coef_names)
    elif isinstance(fit, PoolResult):
        X = np.ones((int(np.asarray(fit.yi).size), 1))
        coef_names = None
    else:
        raise ModelSpecificationError(
            "selection_model needs a PoolResult (random_effects/fixed_effect) or a "
            f"MetaRegressionResult (meta_regression), got {type_name(fit)}"
        )
    if type not in core.SELECTION_TYPES:
        raise ModelSpecificationError(
            f"unknown selection model type {type!r}; choose one of "
            + ", ".join(core.SELECTION_TYPES)
        )
    if alternative not in core.ALTERNATIVES:
        raise ModelSpecificationError(
            f"unknown alternative {alternative!r}; choose one of {', '.join(core.ALTERNATIVES)}"
        )
    yi = np.asarray(fit.yi, dtype=np.float64)
    vi = np.asarray(fit.vi, dtype=np.float64)
    labels = tuple(fit.labels)
    for i in range(yi.size):
        if not (math.isfinite(vi[i]) and vi[i] > 0):
            raise InvalidStudyError(
                f"the sampling variance must be positive to fit a selection model, got {vi[i]!r}",
                study=labels[i] if i < len(labels) else str(i),
                field="vi",
            )
        if not math.isfinite(yi[i]):
            raise InvalidStudyError(
                f"the effect size is not finite ({yi[i]!r})",
                study=labels[i] if i < len(labels) else str(i),
                field="yi",
            )
    st = _check_steps(type, steps)
    nd = _n_delta(type, st)
    dl = _check_delta(type, delta, nd)
    spec = core.make_spec(type, alternative, st, dl)
    ee = fit.method in ("EE", "FE", "CE")
    k, p = X.shape
    n_free = int(spec.delta_free.sum())
    if k < p + (0 if ee else 1) + n_free:
        raise ModelSpecificationError(
            f"too few studies (k = {k}) for {p + (0 if ee else 1) + n_free} parameters "
            "of this selection model"
        )

    # studies per p-value interval
    pv = core.study_pvalues(yi, vi, spec)
    counts: tuple[int, ...] | None = None
    if type == "stepfun" or st is not None:
        bounds = spec.steps if type == "stepfun" else np.array([spec.steps[0], 1.0])
        grp = core.interval_groups(pv, bounds)
        cnt = np.bincount(grp, minlength=bounds.size)
        counts = tuple(int(c) for c in cnt)
        labs = _interval_labels(bounds)
        for j, c in enumerate(counts):
            if c == 0 and (type != "stepfun" or spec.delta_free[j]):
                raise ModelSpecificationError(
                    f"the p-value interval {labs[j]} holds no studies, so its selection "
                    "weight cannot be estimated; choose other steps"
                )
        few = [labs[j] for j, c in enumerate(counts) if 0 < c < _FEW_PER_INTERVAL]
        if few:
            warnings.warn(
                f"fewer than {_FEW_PER_INTERVAL} studies in the p-value interval(s) "
                f"{'; '.join(few)}: the selection weights are poorly determined",
                FewStudiesWarning,
                stacklevel=2,
            )

    res = core.selection_fit(yi, vi, X, spec, tau2_free=not ee)
    return _build(fit, res, spec, X, coef_names, counts, pv, ee)


def type_name(x: object) -> str:
    """The class name of ``x``, for error messages."""
    return type(x).__name__ if not isinstance(x, type) else x.__name__


def _build(
    fit: PoolResult | MetaRegressionResult,
    res: core.SelectionFit,
    spec: core.SelectionSpec,
    X: FloatArray,
    coef_names: tuple[str, ...] | None,
    counts: tuple[int, ...] | None,
    pv: FloatArray,
    ee: bool,
) -> SelectionModelResult | SelectionMetaRegressionResult:
    p = res.p
    level = float(fit.level)
    nd = spec.n_delta
    theta = res.theta
    V = res.vcov
    vb = V[:p, :p]
    beta = theta[:p]
    inf = coef_inference(beta[None, :], vb[None], None, level)

    # τ²: Wald interval truncated at 0 (metafor's ci.lb.tau2 / ci.ub.tau2)
    tau2 = float(theta[p])
    if ee:
        tau2_se: float | None = None
        tau2_ci = ConfidenceInterval(np.nan, np.nan)
    else:
        tinf = coef_inference(np.array([[tau2]]), V[p : p + 1, p : p + 1][None], None, level)
        tau2_se = float(tinf.se[0, 0])
        tau2_ci = ConfidenceInterval(max(0.0, float(tinf.ci_low[0, 0])), float(tinf.ci_high[0, 0]))

    # δ: z tests of the value of no selection, intervals truncated at the lower bound
    delta = theta[p + 1 :].copy()
    vd = V[p + 1 :, p + 1 :]
    h0 = spec.delta_h0
    dinf = coef_inference((delta - h0)[None, :], vd[None], None, level)
    fixed = ~spec.delta_free
    nanv = np.where(fixed, np.nan, 1.0)
    d_se = dinf.se[0] * nanv
    d_stat = dinf.statistic[0] * nanv
    d_p = dinf.pvalue[0] * nanv
    d_lo = np.maximum(dinf.ci_low[0] + h0, spec.delta_lb) * nanv
    d_hi = (dinf.ci_high[0] + h0) * nanv

    # likelihood-ratio test of no selection
    lrt_df = int(spec.delta_free.sum())
    lrt = max(0.0, -2.0 * (res.null.loglik - res.loglik))
    lrt_p = float(chi2_sf(lrt, lrt_df)) if lrt_df > 0 else math.nan

    names = ["intrcpt"] if coef_names is None else list(coef_names)
    dnames = (
        _interval_labels(spec.steps)
        if spec.type == "stepfun"
        else (["delta"] if nd == 1 else [f"delta.{j + 1}" for j in range(nd)])
    )
    all_names = [*names, "tau2", *dnames]
    at_bound = tuple(n for n, b in zip(all_names, res.at_lower | res.at_upper, strict=True) if b)
    d_bound = (res.at_lower | res.at_upper)[p + 1 :]
    if d_bound.any():
        warnings.warn(
            "selection parameter estimate(s) on the bound of the parameter space: "
            + ", ".join(f"{dnames[j]} = {delta[j]:g}" for j in np.flatnonzero(d_bound))
            + " (treat the results with caution)",
            BoundaryWarning,
            stacklevel=3,
        )
    if res.vcov_status != "full":
        held = ", ".join(at_bound) if res.vcov_status == "conditional" else ""
        warnings.warn(
            "the observed information matrix is not positive definite (metafor: 'Error "
            "when trying to invert Hessian'); "
            + (
                f"standard errors are conditional on the parameters on a bound ({held})"
                if held
                else "standard errors are NaN"
            ),
            ConvergenceWarning,
            stacklevel=3,
        )
    if not res.converged:
        warnings.warn(
            f"the selection-model likelihood maximisation did not converge (Newton "
            f"decrement {res.decrement:.3g})",
            ConvergenceWarning,
            stacklevel=3,
        )
    steps_out: FloatArray | None
    if spec.type == "stepfun":
        steps_out = spec.steps.copy()
    elif spec.steps[0] > 0:
        steps_out = np.array([spec.steps[0], 1.0])
    else:
        steps_out = None
    common: dict[str, Any] = {
        "tau2": tau2,
        "tau2_se": tau2_se,
        "tau2_ci": tau2_ci,
        "delta": delta,
        "delta_se": d_se,
        "delta_statistic": d_stat,
        "delta_pvalue": d_p,
        "delta_ci": IntervalArray(d_lo, d_hi),
        "delta_fixed": fixed,
        "LRT": lrt,
        "LRT_df": lrt_df,
        "LRT_pvalue": lrt_p,
        "loglik": res.loglik,
        "loglik_null": res.null.loglik,
        "k": counts,
        "n_studies": int(X.shape[0]),
        "type": spec.type,
        "alternative": spec.alternative,
        "steps": steps_out,
        "method": fit.method,
        "level": level,
        "measure": fit.measure,
        "converged": res.converged,
        "at_bound": at_bound,
        "vcov": V,
        "labels": tuple(fit.labels),
        "yi": np.asarray(fit.yi, dtype=np.float64),
        "vi": np.asarray(fit.vi, dtype=np.float64),
        "pvalues": pv,
        "spec": spec,
    }
    if coef_names is None:
        return SelectionModelResult(
            estimate=float(beta[0]),
            se=float(inf.se[0, 0]),
            statistic=float(inf.statistic[0, 0]),
            pvalue=float(inf.pvalue[0, 0]),
            ci=ConfidenceInterval(inf.ci_low[0, 0], inf.ci_high[0, 0]),
            **common,
        )
    btt = np.arange(1, p, dtype=np.intp)
    if btt.size:
        wt = wald_test(beta[None, :], vb[None], btt)
        QM, QM_p = float(wt.statistic[0]), float(wt.pvalue[0])
    else:
        QM, QM_p = math.nan, math.nan
    return SelectionMetaRegressionResult(
        coef_names=tuple(names),
        coef=beta.copy(),
        se=inf.se[0].copy(),
        statistic=inf.statistic[0].copy(),
        pvalue=inf.pvalue[0].copy(),
        ci=IntervalArray(inf.ci_low[0].copy(), inf.ci_high[0].copy()),
        QM=QM,
        QM_df=int(btt.size),
        QM_pvalue=QM_p,
        X=X,
        **common,
    )
