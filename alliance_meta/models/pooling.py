"""Pooling: :func:`random_effects` and :func:`fixed_effect` (metafor's ``rma.uni``).

The thin typed shell around the core: it validates the input, calls
:func:`alliance_meta.core.univariate.fit` once (the m = 1 case of the batched core that
:func:`~alliance_meta.models.many.pool_many` calls for m analyses) and wraps the
arrays in frozen result classes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.iolib.summary import Summary

from alliance_meta._transforms import back_transform, natural_scale_name
from alliance_meta._types import FloatArray, Measure, Method, Test
from alliance_meta.core.estimators import CoreMethod
from alliance_meta.core.heterogeneity import qprofile
from alliance_meta.core.kernel import kernel_from_padded
from alliance_meta.core.univariate import CoreFit
from alliance_meta.core.univariate import fit as core_fit
from alliance_meta.core.vcov import CoreTest
from alliance_meta.exceptions import (
    ConvergenceWarning,
    FewStudiesWarning,
    ModelSpecificationError,
)
from alliance_meta.models._inputs import check_level, check_method, check_test, resolve_input
from alliance_meta.models.protocol import UnivariateFit
from alliance_meta.results.base import ConfidenceInterval, freeze_arrays, readonly
from alliance_meta.results.summary import frame_summary, info_table, make_summary, value_table

if TYPE_CHECKING:
    from alliance_meta.data.study import Study, StudySet
    from alliance_meta.models.many import ManyPoolResult

__all__ = [
    "BackTransformed",
    "HeterogeneityCI",
    "PoolResult",
    "fixed_effect",
    "random_effects",
]


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
class PoolResult(UnivariateFit):
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
    method: CoreMethod
    test: CoreTest
    level: float
    measure: Measure
    iterations: int
    converged: bool
    labels: tuple[str, ...] = attrs.field(repr=False)
    yi: FloatArray = attrs.field(eq=False, repr=False)
    vi: FloatArray = attrs.field(eq=False, repr=False)

    # -- the fitted-model protocol: the intercept-only case -------------------
    @property
    def coef_names(self) -> tuple[str, ...]:
        """``("intrcpt",)``: the one coefficient, as metafor names it."""
        return ("intrcpt",)

    @property
    def coef(self) -> FloatArray:
        """``[estimate]``."""
        return readonly(np.array([self.estimate]))

    @property
    def vcov(self) -> FloatArray:
        """``[[se²]]``."""
        return readonly(np.array([[self.se**2]]))

    @property
    def X(self) -> FloatArray:
        """The design: a column of ones."""
        return readonly(np.ones((self.k, 1)))

    @property
    def p(self) -> int:
        """Number of coefficients (1)."""
        return 1

    @property
    def QE(self) -> float:
        """``Q`` under the name meta-regressions use."""
        return self.Q

    @property
    def QE_df(self) -> int:
        """``Q_df`` under the name meta-regressions use."""
        return self.Q_df

    @property
    def QE_pvalue(self) -> float:
        """``Q_pvalue`` under the name meta-regressions use."""
        return self.Q_pvalue

    def confidence_interval(self, level: float | None = None) -> ConfidenceInterval:
        """CI of the pooled estimate (at the fit's level, or refitted at another)."""
        if level is None or check_level(level) == self.level:
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
        kern = kernel_from_padded(self.yi[None, :], self.vi[None, :])
        qp = qprofile(kern, lv)
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
        row = {name: [value] for name, value in frame_columns(self).items()}
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
    fit: CoreFit,
    row: int,
    yi: FloatArray,
    vi: FloatArray,
    labels: tuple[str, ...],
    method: CoreMethod,
    test: CoreTest,
    level: float,
    measure: Measure,
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
    method: CoreMethod,
    test: CoreTest,
    level: float,
    what: str = "",
) -> CoreFit:
    """One model (m = 1) through the vectorised core, warning if it did not converge."""
    fit = core_fit(kernel_from_padded(yi[None, :], vi[None, :], X), method, test, level)
    if not fit.converged[0]:
        warnings.warn(
            f"the {method} estimator did not converge in {fit.iterations[0]} iterations"
            + (f" ({what})" if what else ""),
            ConvergenceWarning,
            stacklevel=4,
        )
    if fit.tau2_differs[0]:
        warnings.warn(reset_message(method, "")
                      + (f" ({what})" if what else ""), ConvergenceWarning, stacklevel=4)
    return fit


def reset_message(method: str, which: str) -> str:
    """The warning where metafor's Fisher scoring stops at a lower local maximum."""
    return (
        f"the {method} likelihood{which} has a higher maximum than the local maximum "
        "metafor's rma stops at (its Fisher scoring from the Hedges start, and its "
        "ll0check): the global maximum is reported, so tau^2 differs from metafor's "
        "(see the validation notes in the documentation)"
    )


def _pool_single(
    yi: FloatArray,
    vi: FloatArray,
    labels: tuple[str, ...],
    *,
    method: Method,
    test: Test,
    level: float,
    measure: Measure,
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


def frame_columns(res: PoolResult | ManyPoolResult) -> dict[str, Any]:
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
