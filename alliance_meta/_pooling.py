"""Public pooling API: :func:`random_effects`, :func:`fixed_effect` and :func:`pool_many`.

This module is the thin typed shell around :mod:`alliance_meta._core`: it validates
and lays out the data, calls the core once, and wraps the arrays in frozen result
classes.  The scalar functions are the m = 1 case of the same core call that
:func:`pool_many` makes for m analyses.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.iolib.summary import Summary

from alliance_meta import _core
from alliance_meta._data import _check_unique, _numeric
from alliance_meta._types import FloatArray, Measure, Method, Test
from alliance_meta.data.measures import back_transform, natural_scale_name
from alliance_meta.exceptions import (
    ConvergenceWarning,
    FewStudiesWarning,
    InvalidStudyError,
    ModelSpecificationError,
)
from alliance_meta.results.base import ConfidenceInterval, freeze_arrays, readonly
from alliance_meta.results.summary import frame_summary, info_table, make_summary, value_table

if TYPE_CHECKING:
    from alliance_meta._data import Study, StudySet

__all__ = [
    "BackTransformed",
    "HeterogeneityCI",
    "IntervalArray",
    "ManyHeterogeneityCI",
    "ManyPoolResult",
    "PoolResult",
    "fixed_effect",
    "pool_many",
    "random_effects",
]

_METHODS: tuple[str, ...] = tuple(_core.METHOD_ALIASES)


# ---------------------------------------------------------------------------
# Validation helpers shared by every entry point
# ---------------------------------------------------------------------------


def check_method(method: str) -> _core.CoreMethod:
    """Canonical core method name (``FE``/``CE`` → ``EE``) or a clear error."""
    try:
        return _core.METHOD_ALIASES[method]
    except (KeyError, TypeError):
        raise ModelSpecificationError(
            f"unknown method {method!r}; expected one of {', '.join(_METHODS)}"
        ) from None


def check_test(test: str) -> _core.CoreTest:
    if test not in _core.TESTS:
        raise ModelSpecificationError(
            f"unknown test {test!r}; expected one of {', '.join(_core.TESTS)}"
        )
    return test


def check_level(level: float) -> float:
    lv = float(level)
    if not 0.0 < lv < 1.0:
        raise ModelSpecificationError(f"level must lie strictly between 0 and 1, got {level!r}")
    return lv


def as_float_array(values: object, field: str) -> FloatArray:
    """Convert array-like input to float64, with an error naming the field (and the
    first entry that is not a number)."""
    return _numeric(values, field)


def validate_studies(
    yi: FloatArray, vi: FloatArray, labels: Sequence[str] | None = None
) -> None:
    """Check 1-D effect/variance vectors, naming the first offending study and field."""
    if yi.ndim != 1 or vi.ndim != 1:
        raise InvalidStudyError(
            "expected 1-D arrays for a single analysis; use pool_many for 2-D input",
            field="yi" if yi.ndim != 1 else "vi",
        )
    if yi.shape != vi.shape:
        raise InvalidStudyError(
            f"yi has {yi.size} values but vi has {vi.size}", field="vi"
        )
    if yi.size == 0:
        raise InvalidStudyError("no studies given (empty input)", field="yi")

    def name(i: int) -> str:
        return labels[i] if labels is not None else f"#{i}"

    for field, arr in (("yi", yi), ("vi", vi)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidStudyError(
                f"value is {arr[i]!r} (must be finite)", study=name(i), field=field
            )
    bad = vi <= 0
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidStudyError(
            f"sampling variance must be > 0, got {vi[i]!r}", study=name(i), field="vi"
        )


def resolve_input(
    studies: StudySet | Sequence[Study] | None,
    yi: npt.ArrayLike | None,
    vi: npt.ArrayLike | None,
    measure: str,
) -> tuple[FloatArray, FloatArray, tuple[str, ...], str]:
    """``(yi, vi, labels, measure)`` from either studies or arrays, validated."""
    if studies is not None:
        if yi is not None or vi is not None:
            raise ModelSpecificationError("give either studies or yi/vi, not both")
        study_list = list(studies)
        if not study_list:
            raise InvalidStudyError("no studies given (empty input)", field="studies")
        labels = tuple(str(s.label) for s in study_list)
        _check_unique(labels)  # as a StudySet does
        y = np.array([s.effect.value for s in study_list], dtype=np.float64)
        v = np.array([s.effect.variance for s in study_list], dtype=np.float64)
        measures = {str(s.effect.measure) for s in study_list}
        if measure == "GEN" and len(measures) == 1:
            measure = measures.pop()
        elif len(measures) > 1:
            raise ModelSpecificationError(
                f"studies mix effect-size measures {sorted(measures)}; pool one measure at a time"
            )
        validate_studies(y, v, labels)
        return y, v, labels, measure
    if yi is None or vi is None:
        raise ModelSpecificationError("give studies, or both yi and vi")
    # copies: the result keeps them, and must not change if the caller's arrays do
    y = as_float_array(yi, "yi").copy()
    v = as_float_array(vi, "vi").copy()
    validate_studies(y, v)
    return y, v, tuple(f"Study {i + 1}" for i in range(y.size)), measure


# ---------------------------------------------------------------------------
# Result classes
# ---------------------------------------------------------------------------


def _opt_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


@attrs.frozen(field_transformer=freeze_arrays)
class BackTransformed:
    """Pooled estimate, CI and prediction interval on the natural scale.

    ``scale`` names it: ``"r"`` for Fisher's z, ``"OR"``/``"RR"``/``"ROM"`` for log
    ratios, otherwise the measure itself (no transformation).
    """

    estimate: float
    ci: ConfidenceInterval
    pi: ConfidenceInterval
    scale: str

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame: estimate, CI and PI bounds, and the scale."""
        frame: pd.DataFrame = pd.DataFrame(
            {
                "estimate": [self.estimate],
                "ci_low": [self.ci.low],
                "ci_high": [self.ci.high],
                "pi_low": [self.pi.low],
                "pi_high": [self.pi.high],
                "scale": [self.scale],
            }
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary like metafor's ``predict(fit, transf=...)``."""
        return frame_summary(
            f"Pooled result on the {self.scale} scale",
            [("Scale:", self.scale)],
            self.to_frame().drop(columns="scale"),
        )

    def __str__(self) -> str:
        return str(self.summary())


@attrs.frozen(field_transformer=freeze_arrays)
class HeterogeneityCI:
    """Q-profile confidence intervals for τ², I² (percent) and H²."""

    tau2: ConfidenceInterval
    I2: ConfidenceInterval
    H2: ConfidenceInterval
    level: float

    def to_frame(self) -> pd.DataFrame:
        frame: pd.DataFrame = pd.DataFrame(
            {
                "low": [self.tau2.low, self.I2.low, self.H2.low],
                "high": [self.tau2.high, self.I2.high, self.H2.high],
            },
            index=pd.Index(["tau2", "I2", "H2"], name="parameter"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary like metafor's ``confint(fit)``."""
        return frame_summary(
            "Q-profile confidence intervals",
            [("Level:", f"{self.level:g}")],
            self.to_frame(),
            ["I2 in percent; bounds from the Q-profile method (Viechtbauer, 2007)."],
        )

    def __str__(self) -> str:
        return str(self.summary())


@attrs.frozen(field_transformer=freeze_arrays)
class PoolResult:
    """A fixed- or random-effects meta-analysis (metafor's ``rma.uni`` without moderators).

    Attributes follow scipy.stats result objects: ``statistic`` and ``pvalue`` test
    the pooled estimate, ``ci`` is its confidence interval (``.low``/``.high``), and
    ``pi`` the prediction interval for the true effect in a new study.

    Notes
    -----
    Weights are ``w_i = 1/(v_i + τ²)``; the estimate is ``Σ w_i y_i / Σ w_i`` with
    standard error ``(Σ w_i)^{-1/2}``, scaled by ``s² = Σ w_i (y_i - μ̂)²/(k-1)`` under
    Knapp–Hartung (``test="knha"``, Knapp & Hartung, 2003; ``"adhoc"`` floors ``s²``
    at 1).  ``Q = Σ (y_i - μ̂_FE)²/v_i``; ``I² = 100 τ²/(τ² + ṽ)`` and ``H² = τ²/ṽ + 1``
    with the typical within-study variance ``ṽ = (k-1) Σw / ((Σw)² - Σw²)``
    (Higgins & Thompson, 2002); for the equal-effects model ``I² = 100 (Q-(k-1))/Q``
    and ``H² = Q/(k-1)``.  The prediction interval is ``μ̂ ± c √(SE² + τ²)`` with
    ``c`` from the normal, or t with k-1 df under ``t``/``knha``/``adhoc``
    (Riley et al., 2011), as metafor's ``predict``.
    """

    estimate: float
    se: float
    statistic: float
    pvalue: float
    df: float | None
    ci: ConfidenceInterval
    pi: ConfidenceInterval
    tau2: float
    tau2_se: float | None
    Q: float
    Q_df: int
    Q_pvalue: float
    I2: float
    H2: float
    k: int
    method: str
    test: str
    level: float
    measure: str
    iterations: int
    converged: bool
    labels: tuple[str, ...] = attrs.field(repr=False)
    yi: FloatArray = attrs.field(eq=False, repr=False)
    vi: FloatArray = attrs.field(eq=False, repr=False)

    @property
    def weights(self) -> FloatArray:
        """Percentage weights ``100 w_i / Σ w`` with ``w_i = 1/(v_i + τ²)``."""
        w = 1.0 / (self.vi + self.tau2)
        out: FloatArray = 100.0 * w / w.sum()
        return readonly(out)

    def confidence_interval(self, level: float | None = None) -> ConfidenceInterval:
        """CI of the pooled estimate (at the fit's level, or refitted at another)."""
        if level is None or float(level) == self.level:
            return self.ci
        return self.refit(level=level).ci

    def refit(
        self,
        *,
        method: Method | None = None,
        test: Test | None = None,
        level: float | None = None,
    ) -> PoolResult:
        """The same data pooled with some of ``method``, ``test``, ``level`` changed."""
        return _pool_single(
            self.yi,
            self.vi,
            self.labels,
            method=self.method if method is None else method,
            test=self.test if test is None else test,
            level=self.level if level is None else level,
            measure=self.measure,
        )

    def heterogeneity_ci(self, level: float | None = None) -> HeterogeneityCI:
        """Q-profile confidence intervals for τ², I² and H² (Viechtbauer, 2007).

        These depend on the data and ``level`` only, not on the τ² estimator, exactly
        as metafor's ``confint(fit)$random``.  A bound whose estimating equation has
        no non-negative root is reported as 0.
        """
        lv = self.level if level is None else check_level(level)
        if self.k < 2:  # as metafor's confint: "Stopped because k = 1."
            raise ModelSpecificationError("Q-profile intervals need at least 2 studies (k = 1)")
        kern = _core.kernel_from_padded(self.yi[None, :], self.vi[None, :])
        qp = _core.qprofile(kern, lv)
        return HeterogeneityCI(
            tau2=ConfidenceInterval(qp.tau2_low[0], qp.tau2_high[0]),
            I2=ConfidenceInterval(qp.I2_low[0], qp.I2_high[0]),
            H2=ConfidenceInterval(qp.H2_low[0], qp.H2_high[0]),
            level=lv,
        )

    def back_transformed(self) -> BackTransformed:
        """Estimate, CI and PI on the natural scale (r for ZCOR, ratios for log ratios)."""
        m = self.measure
        return BackTransformed(
            estimate=back_transform(self.estimate, m),
            ci=ConfidenceInterval(back_transform(self.ci.low, m), back_transform(self.ci.high, m)),
            pi=ConfidenceInterval(back_transform(self.pi.low, m), back_transform(self.pi.high, m)),
            scale=natural_scale_name(m),
        )

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of every scalar field."""
        row = {name: [value] for name, value in _frame_columns(self).items()}
        row.update(
            method=[self.method], test=[self.test], level=[self.level], measure=[self.measure]
        )
        frame: pd.DataFrame = pd.DataFrame(row)
        return frame

    def summary(self) -> Summary:
        """A statsmodels :class:`~statsmodels.iolib.summary.Summary` like metafor's print."""
        model = "Equal-effects model" if self.method == "EE" else "Random-effects model"
        left = [
            ("Method:", self.method),
            ("Measure:", self.measure),
            ("Studies (k):", str(self.k)),
            ("Test:", self.test),
        ]
        right = [
            ("tau^2:", f"{self.tau2:.4f}"),
            ("I^2 (%):", f"{self.I2:.2f}"),
            ("H^2:", f"{self.H2:.2f}"),
            (f"Q({self.Q_df}):", f"{self.Q:.4f} (p = {self.Q_pvalue:.4g})"),
        ]
        stat_name = "z" if self.df is None else "t"
        lo, hi = f"[{(1 - self.level) / 2:.3f}", f"{1 - (1 - self.level) / 2:.3f}]"
        tables = [
            info_table(left, right, model),
            value_table(
                [[
                    f"{self.estimate:.4f}", f"{self.se:.4f}", f"{self.statistic:.3f}",
                    f"{self.pvalue:.4g}", f"{self.ci.low:.4f}", f"{self.ci.high:.4f}",
                    f"{self.pi.low:.4f}", f"{self.pi.high:.4f}",
                ]],
                ["estimate", "se", stat_name, f"P>|{stat_name}|", lo, hi, "pi.lb", "pi.ub"],
                ["pooled"],
            ),
        ]
        if self.measure in ("ZCOR", "OR", "RR", "ROM"):
            bt = self.back_transformed()
            tables.append(
                value_table(
                    [[
                        f"{bt.estimate:.4f}", f"{bt.ci.low:.4f}", f"{bt.ci.high:.4f}",
                        f"{bt.pi.low:.4f}", f"{bt.pi.high:.4f}",
                    ]],
                    [bt.scale, lo, hi, "pi.lb", "pi.ub"],
                    [f"{bt.scale} scale"],
                )
            )
        notes = [] if self.converged else [f"The {self.method} estimator did not converge."]
        return make_summary(tables, notes)

    def __str__(self) -> str:
        return str(self.summary())


def result_from_core(
    fit: _core.CoreFit,
    row: int,
    yi: FloatArray,
    vi: FloatArray,
    labels: tuple[str, ...],
    method: str,
    test: str,
    level: float,
    measure: str,
) -> PoolResult:
    """Wrap row ``row`` of an intercept-only core fit as a :class:`PoolResult`."""
    df = float(fit.df[row])
    tau2_se = _opt_float(float(fit.tau2_se[row]))
    return PoolResult(
        estimate=float(fit.beta[row, 0]),
        se=float(fit.se[row, 0]),
        statistic=float(fit.statistic[row, 0]),
        pvalue=float(fit.pvalue[row, 0]),
        df=None if math.isnan(df) else df,
        ci=ConfidenceInterval(fit.ci_low[row, 0], fit.ci_high[row, 0]),
        pi=ConfidenceInterval(fit.pi_low[row], fit.pi_high[row]),
        tau2=float(fit.tau2[row]),
        tau2_se=tau2_se,
        Q=float(fit.QE[row]),
        Q_df=int(fit.QE_df[row]),
        Q_pvalue=float(fit.QE_pvalue[row]),
        I2=float(fit.I2[row]),
        H2=float(fit.H2[row]),
        k=int(fit.k[row]),
        method=method,
        test=test,
        level=level,
        measure=measure,
        iterations=int(fit.iterations[row]),
        converged=bool(fit.converged[row]),
        labels=labels,
        yi=yi,
        vi=vi,
    )


def fit_one(
    yi: FloatArray,
    vi: FloatArray,
    X: FloatArray | None,
    method: _core.CoreMethod,
    test: _core.CoreTest,
    level: float,
    what: str = "",
) -> _core.CoreFit:
    """One model (m = 1) through the vectorised core, warning if it did not converge."""
    fit = _core.fit(_core.kernel_from_padded(yi[None, :], vi[None, :], X), method, test, level)
    if not fit.converged[0]:
        warnings.warn(
            f"the {method} estimator did not converge in {fit.iterations[0]} iterations"
            + (f" ({what})" if what else ""),
            ConvergenceWarning,
            stacklevel=4,
        )
    if fit.tau2_reset[0]:
        warnings.warn(_reset_message(method, "")
                      + (f" ({what})" if what else ""), ConvergenceWarning, stacklevel=4)
    return fit


def _reset_message(method: str, which: str) -> str:
    return (
        f"the {method} root reached from the Hedges start{which} has a lower likelihood "
        "than tau^2 = 0, so tau^2 is set to 0, as metafor does ('Fisher scoring algorithm "
        "may have gotten stuck at a local maximum'); check the likelihood profile"
    )


def _pool_single(
    yi: FloatArray,
    vi: FloatArray,
    labels: tuple[str, ...],
    *,
    method: str,
    test: str,
    level: float,
    measure: str,
) -> PoolResult:
    """The m = 1 call of the vectorised core."""
    core_method = check_method(method)
    core_test = check_test(test)
    lv = check_level(level)
    if yi.size == 1:
        warnings.warn(
            "only one study (k = 1): tau^2 is set to 0 and the test uses the normal "
            "distribution, as in metafor",
            FewStudiesWarning,
            stacklevel=3,
        )
    fit = fit_one(yi, vi, None, core_method, core_test, lv)
    shown_test = "z" if yi.size == 1 else core_test
    return result_from_core(fit, 0, yi, vi, labels, core_method, shown_test, lv, measure)


def random_effects(
    studies: StudySet | Sequence[Study] | None = None,
    *,
    yi: npt.ArrayLike | None = None,
    vi: npt.ArrayLike | None = None,
    measure: Measure = "GEN",
    method: Method = "REML",
    test: Test = "z",
    level: float = 0.95,
) -> PoolResult:
    """Pool effect sizes with a random-effects model (metafor's ``rma(yi, vi)``).

    Parameters
    ----------
    studies : StudySet or sequence of Study, optional
        The studies; their labels, effects and measure are used.
    yi, vi : array_like, optional
        Effects and sampling variances, when ``studies`` is not given.
    measure : str
        The effect-size measure of ``yi`` (used for back-transformation).
    method : {"REML", "DL", "HE", "HS", "HSk", "SJ", "ML", "EB", "PM", "PMM", "EE"}
        τ² estimator, as in metafor's ``rma.uni`` (``"FE"``/``"CE"`` alias ``"EE"``).
    test : {"z", "t", "knha", "adhoc"}
        Inference for the pooled estimate.
    level : float
        Confidence level of the CI and prediction interval.

    Returns
    -------
    PoolResult

    Notes
    -----
    Estimators (Viechtbauer, 2005; metafor's ``rma.uni``): DerSimonian & Laird
    (1986) ``τ² = max(0, (Q - (k-1)) / (Σw - Σw²/Σw))``; Hedges (1983) ``HE``;
    Hunter & Schmidt (2004) ``HS`` and its k-corrected ``HSk``; Sidik & Jonkman
    (2005) ``SJ``; maximum likelihood ``ML`` and restricted ML ``REML`` (Viechtbauer,
    2005); empirical Bayes ``EB`` (Morris, 1983), which solves the same equation as
    Paule & Mandel (1982) ``PM``, ``Q(τ²) = k-1``; and the median-unbiased ``PMM``,
    ``Q(τ²) = χ²_{k-1; 0.5}``.  Iterative estimators are solved to 1e-10 relative by
    Newton steps kept inside a sign-change bracket (bisection where a step leaves
    it), so they cannot oscillate or diverge; iterations and convergence are
    reported on the result.

    Examples
    --------
    >>> import alliance_meta as am
    >>> res = am.random_effects(yi=[0.1, 0.3, 0.35, 0.2], vi=[0.01, 0.02, 0.015, 0.01])
    >>> round(res.estimate, 4)
    0.2141
    """
    y, v, labels, meas = resolve_input(studies, yi, vi, measure)
    return _pool_single(y, v, labels, method=method, test=test, level=level, measure=meas)


def fixed_effect(
    studies: StudySet | Sequence[Study] | None = None,
    *,
    yi: npt.ArrayLike | None = None,
    vi: npt.ArrayLike | None = None,
    measure: Measure = "GEN",
    test: Test = "z",
    level: float = 0.95,
) -> PoolResult:
    """Pool effect sizes with the equal-effects (fixed-effect) model (``method="EE"``).

    See :func:`random_effects` for the parameters; τ² is 0 by definition and
    ``I²``/``H²`` are computed from Q as metafor does for EE models.
    """
    y, v, labels, meas = resolve_input(studies, yi, vi, measure)
    return _pool_single(y, v, labels, method="EE", test=test, level=level, measure=meas)


# ---------------------------------------------------------------------------
# Many analyses
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays)
class IntervalArray:
    """Interval bounds for many analyses: ``low`` and ``high`` arrays."""

    low: FloatArray = attrs.field(eq=False)
    high: FloatArray = attrs.field(eq=False)

    def __iter__(self) -> Iterable[FloatArray]:
        return iter((self.low, self.high))


@attrs.frozen(field_transformer=freeze_arrays)
class ManyHeterogeneityCI:
    """Q-profile intervals for τ², I² and H² of many analyses."""

    tau2: IntervalArray
    I2: IntervalArray
    H2: IntervalArray
    level: float
    groups: npt.NDArray[Any] = attrs.field(eq=False, repr=False)

    def to_frame(self) -> pd.DataFrame:
        frame: pd.DataFrame = pd.DataFrame(
            {
                "tau2_low": self.tau2.low,
                "tau2_high": self.tau2.high,
                "I2_low": self.I2.low,
                "I2_high": self.I2.high,
                "H2_low": self.H2.low,
                "H2_high": self.H2.high,
            },
            index=pd.Index(self.groups, name="group"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary of the bounds' distribution over the analyses."""
        return frame_summary(
            "Q-profile confidence intervals of many analyses",
            [("Analyses:", str(len(self.groups))), ("Level:", f"{self.level:g}")],
            _describe(self.to_frame()),
            ["Rows: quantiles over the analyses; to_frame() gives each analysis."],
        )

    def __str__(self) -> str:
        return str(self.summary())


def _describe(frame: pd.DataFrame) -> pd.DataFrame:
    """Minimum, quartiles and maximum of each column over the rows."""
    q: pd.DataFrame = frame.quantile([0.0, 0.25, 0.5, 0.75, 1.0])
    q.index = pd.Index(["min", "25%", "median", "75%", "max"])
    return q


@attrs.define(eq=False)
class _LongData:
    """Validated long-format studies with group codes ``0..m-1``, grouped on demand.

    The moment-level fits read them in input order through a
    :class:`alliance_meta._core.ScatterKernel`; everything else (likelihood and
    Q-root searches) needs them grouped into padded chunks, which costs a sort and is
    done once, when first needed.
    """

    y: FloatArray
    v: FloatArray
    codes: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    _grouped: _GroupedLong | None = attrs.field(default=None, init=False)

    def grouped(self) -> _GroupedLong:
        if self._grouped is None:
            self._grouped = _group_long(self.y, self.v, self.codes, self.counts.size, self.counts)
        return self._grouped


@attrs.frozen
class _ManyData:
    """The validated input of :func:`pool_many`, kept for ``heterogeneity_ci``."""

    padded_y: FloatArray | None
    padded_v: FloatArray | None
    long: _LongData | None = None
    #: the padded input is known to have no absent study (no NaN)
    complete: bool = False


@attrs.frozen(field_transformer=freeze_arrays)
class ManyPoolResult:
    """Pooled results of many analyses; every field is an array with one entry each.

    Field names match :class:`PoolResult`.  ``groups`` holds the sorted group labels
    (or ``0..m-1`` for 2-D input).  The estimation results (``estimate``, ``se``,
    ``tau2``, ``Q``, ``k``, ``iterations``, ``converged``) are computed by
    :func:`pool_many`; the quantities derived from them and the data (``tau2_se``,
    ``statistic``, ``pvalue``, ``df``, ``ci``, ``pi``, ``Q_df``, ``Q_pvalue``,
    ``I2``, ``H2``) are computed on first access by the same core functions as for
    :class:`PoolResult`, and cached, like statsmodels' results (p-values over
    millions of analyses cost more than the pooling itself, and many uses never
    read them; the standard error of a DL τ² needs a weight moment that nothing
    else does).
    """

    groups: npt.NDArray[Any] = attrs.field(eq=False)
    estimate: FloatArray = attrs.field(eq=False)
    se: FloatArray = attrs.field(eq=False)
    tau2: FloatArray = attrs.field(eq=False)
    Q: FloatArray = attrs.field(eq=False)
    k: npt.NDArray[np.int64] = attrs.field(eq=False)
    iterations: npt.NDArray[np.int64] = attrs.field(eq=False)
    converged: npt.NDArray[np.bool_] = attrs.field(eq=False)
    method: str
    test: str
    level: float
    measure: str
    _vt: FloatArray = attrs.field(eq=False, repr=False, alias="vt")
    _data: _ManyData = attrs.field(eq=False, repr=False, alias="data")
    _tau2_se_known: FloatArray | None = attrs.field(
        default=None, eq=False, repr=False, alias="tau2_se_known"
    )

    @functools.cached_property
    def tau2_se(self) -> FloatArray:
        """Standard error of τ² (NaN for EE and where k = 1), as :class:`PoolResult`."""
        if self._tau2_se_known is not None:
            return self._tau2_se_known
        out = np.empty(len(self))
        method = cast(_core.CoreMethod, self.method)
        for kern, rows in _iter_kernels(self._data, moments=method in _core.MOMENT_METHODS):
            out[rows] = _core.tau2_se(kern, method, self.tau2[rows])
        return readonly(out)

    @functools.cached_property
    def df(self) -> FloatArray:
        """Degrees of freedom of the test (NaN under z, and where k = 1)."""
        return readonly(_core.inference_df(self.k, 1, cast(_core.CoreTest, self.test)))

    @functools.cached_property
    def _tests(self) -> tuple[FloatArray, FloatArray]:
        stat, pval = _core.coef_tests(self.estimate, self.se, self.df)
        return readonly(stat), readonly(pval)

    @property
    def statistic(self) -> FloatArray:
        """z or t statistic of the pooled estimate."""
        return self._tests[0]

    @property
    def pvalue(self) -> FloatArray:
        """Two-sided p-value of the pooled estimate."""
        return self._tests[1]

    @functools.cached_property
    def _crit(self) -> FloatArray:
        return _core.critical_value(self.df, self.level)

    @functools.cached_property
    def ci(self) -> IntervalArray:
        """Confidence interval of the pooled estimate."""
        half = self._crit * self.se
        return IntervalArray(self.estimate - half, self.estimate + half)

    @functools.cached_property
    def pi(self) -> IntervalArray:
        """Prediction interval (metafor's ``predict``)."""
        lo, hi = _core.prediction_interval(self.estimate, self.se, self.tau2, self._crit)
        return IntervalArray(lo, hi)

    @functools.cached_property
    def Q_df(self) -> FloatArray:
        """Degrees of freedom of Q, ``k - 1``."""
        return readonly((self.k - 1).astype(np.float64))

    @functools.cached_property
    def Q_pvalue(self) -> FloatArray:
        """p-value of the Q test of heterogeneity."""
        return readonly(_core.q_pvalue(self.Q, self.Q_df))

    @functools.cached_property
    def _i2_h2(self) -> tuple[FloatArray, FloatArray]:
        i2, h2 = _core.i2_h2(self.Q, self.Q_df, self.tau2, self._vt, self.method == "EE")
        return readonly(i2), readonly(h2)

    @property
    def I2(self) -> FloatArray:
        """I² in percent."""
        return self._i2_h2[0]

    @property
    def H2(self) -> FloatArray:
        """H²."""
        return self._i2_h2[1]

    def __len__(self) -> int:
        return int(self.estimate.shape[0])

    def heterogeneity_ci(self, level: float | None = None) -> ManyHeterogeneityCI:
        """Q-profile CIs for every analysis, computed by the vectorised core."""
        lv = self.level if level is None else check_level(level)
        parts = []
        order_parts = []
        for (_, rows), qp_part in _map_chunks(
            lambda kr: _core.qprofile(kr[0], lv), _iter_kernels(self._data)
        ):
            parts.append(qp_part)
            order_parts.append(_row_indices(rows))
        qp = _core.concat_qprofiles(parts)
        order = np.concatenate(order_parts)
        fields = {}
        for name in ("tau2_low", "tau2_high", "I2_low", "I2_high", "H2_low", "H2_high"):
            arr = np.empty(order.size)
            arr[order] = getattr(qp, name)
            fields[name] = arr
        return ManyHeterogeneityCI(
            tau2=IntervalArray(fields["tau2_low"], fields["tau2_high"]),
            I2=IntervalArray(fields["I2_low"], fields["I2_high"]),
            H2=IntervalArray(fields["H2_low"], fields["H2_high"]),
            level=lv,
            groups=self.groups,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per analysis, indexed by group."""
        cols = _frame_columns(self)
        cols.update(iterations=self.iterations, converged=self.converged)
        frame: pd.DataFrame = pd.DataFrame(cols, index=pd.Index(self.groups, name="group"))
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary of the results' distribution over the analyses."""
        cols = ["k", "estimate", "se", "pvalue", "tau2", "Q", "I2"]
        frame = pd.DataFrame({c: np.asarray(getattr(self, c), dtype=float) for c in cols})
        n_bad = int((~self.converged).sum())
        return frame_summary(
            "Many meta-analyses",
            [
                ("Analyses:", str(len(self))),
                ("Studies:", str(int(self.k.sum()))),
                ("Method:", self.method),
                ("Test:", self.test),
                ("Level:", f"{self.level:g}"),
                ("Not converged:", str(n_bad)),
            ],
            _describe(frame),
            ["Rows: quantiles over the analyses; to_frame() gives each analysis."],
        )

    def __str__(self) -> str:
        return str(self.summary())


def _frame_columns(res: PoolResult | ManyPoolResult) -> dict[str, Any]:
    """The columns shared by the frames of single and many pooled results."""
    return {
        "k": res.k,
        "estimate": res.estimate,
        "se": res.se,
        "statistic": res.statistic,
        "pvalue": res.pvalue,
        "df": res.df,
        "ci_low": res.ci.low,
        "ci_high": res.ci.high,
        "pi_low": res.pi.low,
        "pi_high": res.pi.high,
        "tau2": res.tau2,
        "tau2_se": res.tau2_se,
        "Q": res.Q,
        "Q_df": res.Q_df,
        "Q_pvalue": res.Q_pvalue,
        "I2": res.I2,
        "H2": res.H2,
    }


#: Target number of cells (analyses x studies) per chunk: large enough that numpy's
#: per-call overhead is negligible, small enough that a chunk's temporaries stay in
#: cache (see docs/benchmarks.rst).
CHUNK_CELLS = 98304

_T = TypeVar("_T")
_R = TypeVar("_R")


def _n_threads() -> int:
    """Worker threads for chunked pooling (``ALLIANCE_META_NUM_THREADS``, default 1)."""
    env = os.environ.get("ALLIANCE_META_NUM_THREADS")
    if env:
        return max(1, int(env))
    # One thread by default: on this 2-core reference machine a second thread made
    # every pool_many benchmark slower (memory-bound passes, GIL hand-offs between
    # short numpy calls); see docs/benchmarks.rst.
    return 1


def _map_chunks(fn: Callable[[_T], _R], items: Iterable[_T]) -> Iterator[tuple[_T, _R]]:
    """``(item, fn(item))`` in order, on a few threads with a bounded number in flight.

    numpy and BLAS release the GIL inside their loops, so chunks pool in parallel;
    at most one chunk per thread (plus one) is materialised at a time, keeping memory flat.
    """
    nt = _n_threads()
    if nt == 1:
        for it in items:
            yield it, fn(it)
        return
    with ThreadPoolExecutor(max_workers=nt) as ex:
        pending: list[tuple[_T, Future[_R]]] = []
        for it in items:
            pending.append((it, ex.submit(fn, it)))
            if len(pending) > nt:
                first, fut = pending.pop(0)
                yield first, fut.result()
        for it, fut in pending:
            yield it, fut.result()


def _chunk_rows(width: int) -> int:
    return max(1, min(_core.CHUNK_ROWS, CHUNK_CELLS // max(width, 1)))


@attrs.frozen
class _GroupedLong:
    """Long-format rows with their order by (group size, group code), to slice into chunks."""

    y: FloatArray  # values in input order
    v: FloatArray
    order: npt.NDArray[np.int64]  # input positions in by-size, by-group order
    groups: npt.NDArray[np.int64]  # group codes in by-size order
    sizes: npt.NDArray[np.int64]  # their sizes
    starts: npt.NDArray[np.int64]  # first sorted row of each group (len G + 1)


#: Rows per block when building the sort keys (keeps temporaries under 128 KiB).
_KEY_BLOCK = 16000


def _group_long(
    y: FloatArray,
    v: FloatArray,
    codes: npt.NDArray[np.int64],
    G: int,
    counts: npt.NDArray[np.int64] | None = None,
) -> _GroupedLong:
    """Order long-format rows by (size of their group, group code, original position).

    One ``np.sort`` of a combined int64 key replaces a stable argsort (which numpy
    runs as a much slower merge sort); groups of equal size end up adjacent, so most
    chunks are plain reshapes.  Only the key array is as long as the input: it is
    built block by block, sorted and masked in place, and the values are gathered
    chunk by chunk when the chunks are fitted (large fresh arrays cost page faults
    that dominate this step).
    """
    N = codes.size
    if counts is None:
        counts = np.bincount(codes, minlength=G).astype(np.int64)
    if G and int(counts.min()) == int(counts.max()):
        by_size = np.arange(G, dtype=np.int64)  # equal sizes: the code is the rank
        rank = None
    else:
        by_size = np.argsort(counts, kind="stable").astype(np.int64)
        rank = np.empty(G, dtype=np.int64)
        rank[by_size] = np.arange(G, dtype=np.int64)
    bits = max(1, int(N - 1).bit_length())
    if G < 2 ** (62 - bits):
        # (rank, position) packed into one int64: sort the keys, then mask out the
        # positions (cheaper than an argsort, and than a modulo)
        key = np.empty(N, dtype=np.int64)
        pos = np.arange(_KEY_BLOCK, dtype=np.int64)
        for lo in range(0, N, _KEY_BLOCK):
            hi = min(N, lo + _KEY_BLOCK)
            kb = key[lo:hi]
            if rank is None:
                np.left_shift(codes[lo:hi], bits, out=kb)
            else:
                np.take(rank, codes[lo:hi], out=kb)
                np.left_shift(kb, bits, out=kb)
            kb |= pos[: hi - lo]
            pos += hi - lo
        key.sort()
        order = np.bitwise_and(key, (1 << bits) - 1, out=key)
    else:  # pragma: no cover - astronomically large inputs
        order = np.argsort(codes if rank is None else rank[codes], kind="stable")
    sizes = counts[by_size]
    starts = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    return _GroupedLong(y, v, order.astype(np.int64, copy=False), by_size, sizes, starts)


def _iter_grouped(gl: _GroupedLong) -> Iterator[tuple[_core.Kernel, npt.NDArray[np.int64]]]:
    G = gl.groups.size
    i = 0
    while i < G:
        width = int(gl.sizes[i])
        j = min(G, i + _chunk_rows(width))
        # groups are sorted by size: close the chunk where padding to the largest
        # group would exceed twice the chunk's cells
        if gl.sizes[j - 1] != width:
            cells = gl.starts[i + 1 : j + 1] - gl.starts[i]
            rows = np.arange(1, j - i + 1)
            ok = rows * gl.sizes[i:j] <= 2 * cells + 4096
            if not ok.all():
                j = i + max(1, int(np.argmin(ok)))
        a, b = int(gl.starts[i]), int(gl.starts[j])
        sz = gl.sizes[i:j]
        w = int(sz[-1])
        idx = gl.order[a:b]
        if int(sz[0]) == w:
            Y = np.take(gl.y, idx).reshape(j - i, w)
            V = np.take(gl.v, idx).reshape(j - i, w)
            yield _core.kernel_from_padded(Y, V, complete=True), gl.groups[i:j]
        else:
            row = np.repeat(np.arange(j - i), sz)
            pos = np.arange(b - a) - np.repeat(gl.starts[i:j] - a, sz)
            Y = np.full((j - i, w), np.nan)
            V = np.full((j - i, w), np.nan)
            Y[row, pos] = np.take(gl.y, idx)
            V[row, pos] = np.take(gl.v, idx)
            yield _core.kernel_from_padded(Y, V), gl.groups[i:j]
        i = j


#: The analyses a chunk holds: a slice of consecutive rows (2-D input) or indices.
Rows = slice | npt.NDArray[np.int64]


def _row_indices(rows: Rows) -> npt.NDArray[np.int64]:
    if isinstance(rows, slice):
        return np.arange(rows.start, rows.stop, dtype=np.int64)
    return rows


def _iter_kernels(
    data: _ManyData, moments: bool = False
) -> Iterable[tuple[_core.Kernel, Rows]]:
    """Kernels of consecutive chunks with the analyses they hold.

    ``moments``: the caller needs only the moment levels of the intercept-only
    kernel, which long-format data supply ungrouped, as one scatter kernel.
    """
    if data.padded_y is not None:
        assert data.padded_v is not None
        m, n = data.padded_y.shape
        step = _chunk_rows(n)
        for start in range(0, m, step):
            stop = min(start + step, m)
            kern = _core.kernel_from_padded(
                data.padded_y[start:stop], data.padded_v[start:stop], complete=data.complete
            )
            yield kern, slice(start, stop)
    else:
        long = data.long
        assert long is not None
        if moments:
            kern = _core.kernel_from_long(long.y, long.v, long.codes, long.counts)
            yield kern, slice(0, long.counts.size)
        else:
            yield from _iter_grouped(long.grouped())


def fit_groups(
    y: FloatArray,
    v: FloatArray,
    codes: npt.NDArray[np.int64],
    n_groups: int,
    method: _core.CoreMethod,
    test: _core.CoreTest,
    level: float,
) -> _core.CoreFit:
    """Full core fits of every group of long-format data, row ``g`` for code ``g``.

    The groups are laid out exactly as in :func:`pool_many` (one grouping, chunked
    by size) and fitted chunk by chunk with :func:`alliance_meta._core.fit`.
    """
    fits: list[_core.CoreFit] = []
    rows: list[npt.NDArray[np.int64]] = []
    for kern, grp in _iter_grouped(_group_long(y, v, codes, n_groups)):
        fits.append(_core.fit(kern, method, test, level))
        rows.append(grp)
    return _core.permute_rows(_core.concat_fits(fits), np.concatenate(rows).astype(np.intp))


def _prepare_padded(y: FloatArray, v: FloatArray) -> bool:
    """Validate 2-D input; True if it is complete (no absent study) and valid.

    ``min``/``max`` propagate NaN and expose ±inf, so two reductions prove every
    variance present, finite and positive.  The effects of such input are checked
    by :func:`_check_complete_fit` after pooling (a NaN or infinite effect makes its
    analysis's estimate non-finite).  Anything else goes to :func:`_validate_padded`,
    which names the offending entry.
    """
    if (
        y.shape == v.shape
        and y.size > 0
        and float(v.min()) > 0
        and float(v.max()) < math.inf
    ):
        return True
    _validate_padded(y, v)
    return False


def _check_complete_fit(y: FloatArray, v: FloatArray, estimate: FloatArray) -> None:
    """Name the bad effect of input :func:`_prepare_padded` passed as complete."""
    if not np.isfinite(estimate).all():
        _validate_padded(y, v)


def _validate_padded(Y: FloatArray, V: FloatArray) -> None:
    if Y.shape != V.shape:
        raise InvalidStudyError(f"yi has shape {Y.shape} but vi has shape {V.shape}", field="vi")
    if Y.size == 0:
        raise InvalidStudyError("no studies given (empty input)", field="yi")
    ny, nv = np.isnan(Y), np.isnan(V)
    mismatch = ny != nv
    if mismatch.any():
        i, j = np.argwhere(mismatch)[0]
        raise InvalidStudyError(
            "NaN marks an absent study and must appear in both yi and vi",
            study=f"analysis {i}, study {j}",
            field="vi" if ny[i, j] else "yi",
        )
    for field, arr in (("yi", Y), ("vi", V)):
        bad = np.isinf(arr)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise InvalidStudyError(
                f"value is {arr[i, j]!r} (must be finite)", study=f"analysis {i}, study {j}",
                field=field,
            )
    bad = V <= 0
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InvalidStudyError(
            f"sampling variance must be > 0, got {V[i, j]!r}",
            study=f"analysis {i}, study {j}",
            field="vi",
        )
    empty = (~ny).sum(axis=1) == 0
    if empty.any():
        i = int(np.argmax(empty))
        raise InvalidStudyError("analysis has no studies (empty group)", study=f"analysis {i}",
                                field="yi")


def _is_dask(obj: object) -> bool:
    """dask collections, detected without importing dask."""
    mod = type(obj).__module__
    return mod.split(".")[0] in ("dask", "dask_expr")


def _factorize(
    g: npt.NDArray[Any],
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Sorted unique labels, the code of each row and the count of each code.

    Like ``np.unique(..., return_inverse=True)``.  Non-negative integer labels of
    moderate range take an O(n) path through ``bincount`` instead of a sort; labels
    that are already ``0..G-1`` are their own codes.  Other labels go through
    ``pandas.factorize`` (hashing, then a sort of the unique labels only), which is
    2-6x faster than ``np.unique`` for string labels (1.2 million rows of 100,000
    gene-like names: 115-180 ms against 340-670 ms); NaN is a label of its own,
    sorted last, as in ``np.unique``.
    """
    if g.size and g.dtype.kind in "iu":
        lo, hi = int(g.min()), int(g.max())
        if lo >= 0 and hi < 4 * g.size + 1024:
            counts = np.bincount(g, minlength=hi + 1).astype(np.int64, copy=False)
            present = counts > 0
            if present.all():
                return np.arange(hi + 1, dtype=g.dtype), g.astype(np.int64, copy=False), counts
            labels = np.flatnonzero(present).astype(g.dtype)
            remap = np.cumsum(present, dtype=np.int64) - 1
            return labels, remap[g], counts[present]
    if g.dtype.kind in "iu":  # wide-ranging integers: a sort is as fast as hashing
        labels, inv = np.unique(g, return_inverse=True)
        codes = inv.astype(np.int64).reshape(-1)
        return labels, codes, np.bincount(codes, minlength=labels.size).astype(np.int64)
    inverse, uniques = pd.factorize(g, sort=True, use_na_sentinel=False)
    labels = np.asarray(uniques)
    codes = np.asarray(inverse, dtype=np.int64)
    return labels, codes, np.bincount(codes, minlength=labels.size).astype(np.int64)


def _validate_long(y: FloatArray, v: FloatArray) -> None:
    """Validate long-format variances; else name the offending entry.

    Two reductions prove every variance present, finite and positive.  The effects
    are checked by :func:`_check_long_fit` after pooling.
    """
    if not (v.size and float(v.min()) > 0 and float(v.max()) < math.inf):
        validate_studies(y, v)


def _check_long_fit(y: FloatArray, v: FloatArray, estimate: FloatArray) -> None:
    """Name the bad effect of long-format input that :func:`_validate_long` passed.

    With valid variances, an analysis's estimate (a weighted mean of its effects with
    finite positive weights) is finite exactly when all its effects are.
    """
    if not np.isfinite(estimate).all():
        validate_studies(y, v)


#: SlimFit fields that pool_many computes; the rest of ManyPoolResult derives from them.
_MANY_FIELDS = (
    "estimate", "se", "tau2", "QE", "vt", "k", "iterations", "converged",
)


def _fit_chunks(
    data: _ManyData,
    m: int,
    method: _core.CoreMethod,
    test: _core.CoreTest,
    with_se: bool = False,
) -> dict[str, npt.NDArray[Any]]:
    """Fit every chunk and scatter the estimation results into m-arrays.

    ``with_se`` adds ``tau2_se`` (in the same passes), for callers that need every
    field anyway.
    """
    out: dict[str, npt.NDArray[Any]] = {}
    names = (*_MANY_FIELDS, "tau2_reset", *(("tau2_se",) if with_se else ()))
    kernels = _iter_kernels(data, moments=method in _core.MOMENT_METHODS)
    for (_, rows), part in _map_chunks(
        lambda kr: _core.fit_slim(kr[0], method, test, with_se), kernels
    ):
        if isinstance(rows, slice) and rows == slice(0, m):  # one chunk holds all
            return {name: getattr(part, name) for name in names}
        for name in names:
            val = getattr(part, name)
            if name not in out:
                out[name] = np.empty(m, dtype=val.dtype)
            out[name][rows] = val
    return out


def _many_result(
    fit: dict[str, npt.NDArray[Any]],
    labels: npt.NDArray[Any],
    method: str,
    test: str,
    level: float,
    measure: str,
    data: _ManyData,
) -> ManyPoolResult:
    return ManyPoolResult(
        groups=labels,
        estimate=fit["estimate"],
        se=fit["se"],
        tau2=fit["tau2"],
        Q=fit["QE"],
        k=fit["k"],
        iterations=fit["iterations"],
        converged=fit["converged"],
        method=method,
        test=test,
        level=level,
        measure=measure,
        vt=fit["vt"],
        data=data,
        tau2_se_known=fit.get("tau2_se"),
    )


def pool_many(
    yi: npt.ArrayLike,
    vi: npt.ArrayLike,
    groups: npt.ArrayLike | None = None,
    *,
    method: Method = "REML",
    test: Test = "z",
    level: float = 0.95,
    measure: Measure = "GEN",
) -> ManyPoolResult:
    """Pool many meta-analyses at once with one call of the vectorised core.

    Parameters
    ----------
    yi, vi : array_like
        Either 1-D long-format effects and variances with ``groups`` labels (in any
        order, any group sizes), or 2-D arrays of shape ``(n_analyses, n_studies)``
        where NaN (in both) marks an absent study.
    groups : array_like, optional
        Analysis label of each row of 1-D input.  Results are ordered by the sorted
        unique labels, available as ``result.groups``.
    method, test, level, measure
        As for :func:`random_effects`.

    Returns
    -------
    ManyPoolResult
        Arrays with the field names of :class:`PoolResult`.

    Notes
    -----
    dask input (the ``dask`` extra) -- a 2-D dask array chunked along rows, or dask
    Series ``yi``, ``vi``, ``groups`` of one DataFrame partitioned so that no analysis
    spans two partitions -- returns a lazy
    :class:`alliance_meta._dask.DaskPoolResult` computed blockwise by the same core.

    The input arrays are not copied (they may be large): the fields computed on
    first access (``tau2_se``, ``heterogeneity_ci()``, ...) read them, so do not
    modify them while the result is in use.  The result's own arrays are read-only.

    Row ``i`` equals ``random_effects(yi=..., vi=...)`` on that analysis alone (the
    scalar API is the m = 1 case of the same core).  Data are processed in chunks
    of rows.  Long-format input is read in input order for EE, DL, HS and HSk, whose
    fits need only per-analysis weight moments (scatter-added, no sort); for the
    other estimators, and for ``heterogeneity_ci``, its groups are put in order once,
    sorted by size so that padding stays below twice the data.
    """
    core_method = check_method(method)
    core_test = check_test(test)
    lv = check_level(level)
    if _is_dask(yi):
        from alliance_meta._dask import pool_many_dask

        return pool_many_dask(  # type: ignore[return-value]
            yi, vi, groups, method=core_method, test=core_test, level=lv
        )
    y = as_float_array(yi, "yi")
    v = as_float_array(vi, "vi")
    if groups is None:
        if y.ndim != 2:
            raise InvalidStudyError(
                "pool_many needs 2-D (n_analyses, n_studies) arrays or 1-D arrays with groups",
                field="yi",
            )
        data = _ManyData(y, v, complete=_prepare_padded(y, v))
        labels: npt.NDArray[Any] = np.arange(y.shape[0])
        m = y.shape[0]
    else:
        g = np.asarray(groups)
        if y.ndim != 1 or v.ndim != 1 or g.ndim != 1:
            raise InvalidStudyError("with groups, yi, vi and groups must be 1-D", field="groups")
        if not (y.size == v.size == g.size):
            raise InvalidStudyError(
                f"lengths differ: yi {y.size}, vi {v.size}, groups {g.size}", field="groups"
            )
        _validate_long(y, v)
        labels, codes, counts = _factorize(g)
        m = labels.size
        data = _ManyData(None, None, _LongData(y, v, codes, counts))

    # A non-finite effect (found by the checks below, which name it) would make the
    # core warn of invalid values first; valid input raises no such warning anyway.
    with np.errstate(invalid="ignore"):
        fit = _fit_chunks(data, m, core_method, core_test)
    if data.long is not None:
        _check_long_fit(y, v, fit["estimate"])
    elif data.complete:
        _check_complete_fit(y, v, fit["estimate"])
    n_bad = int((~fit["converged"]).sum())
    if n_bad:
        warnings.warn(
            f"the {core_method} estimator did not converge for {n_bad} of {m} analyses "
            "(see result.converged)",
            ConvergenceWarning,
            stacklevel=2,
        )
    n_reset = int(fit["tau2_reset"].sum())
    if n_reset:
        warnings.warn(
            _reset_message(core_method, f" in {n_reset} of {m} analyses"),
            ConvergenceWarning,
            stacklevel=2,
        )
    if (fit["k"] == 1).any():
        warnings.warn(
            f"{int((fit['k'] == 1).sum())} analyses have k = 1: tau^2 is 0 and inference uses z",
            FewStudiesWarning,
            stacklevel=2,
        )
    return _many_result(fit, labels, core_method, core_test, lv, measure, data)
