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

from alliance_meta._types import FloatArray, Measure, Method, NanPolicy, Test
from alliance_meta.core.estimators import CoreMethod
from alliance_meta.core.heterogeneity import qprofile
from alliance_meta.core.kernel import kernel_from_padded
from alliance_meta.core.univariate import CoreFit
from alliance_meta.core.univariate import fit as core_fit
from alliance_meta.core.vcov import CoreTest
from alliance_meta.data.measures import back_transform, natural_scale_name
from alliance_meta.exceptions import (
    ConvergenceWarning,
    FewStudiesWarning,
    InvalidStudyError,
    ModelSpecificationError,
)
from alliance_meta.models._inputs import (
    check_level,
    check_method,
    check_test,
    check_zero_variances,
    resolve_model_input,
)
from alliance_meta.models.control import Control, ControlSpec, as_control, as_rule
from alliance_meta.models.protocol import UnivariateFit
from alliance_meta.results.base import ConfidenceInterval, freeze_arrays, readonly
from alliance_meta.results.display import ResultDisplay, Transf, fmt_p, fmt_p_eq
from alliance_meta.results.prediction import Prediction, make_prediction
from alliance_meta.results.report import pooled_sentence
from alliance_meta.results.summary import frame_summary, info_table, make_summary, value_table

if TYPE_CHECKING:
    import pandas as pd
    from statsmodels.iolib.summary import Summary

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


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class BackTransformed(ResultDisplay):
    """Pooled estimate, CI and prediction interval on the natural scale.

    ``scale`` names it: ``"r"`` for Fisher's z, ``"OR"``/``"RR"``/``"ROM"`` for log
    ratios, otherwise the measure itself (no transformation).
    """

    estimate: float
    ci: ConfidenceInterval
    pi: ConfidenceInterval
    scale: str

    _repr_fields = ("estimate", "ci", "pi", "scale")

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame: estimate, CI and PI bounds, and the scale."""
        import pandas as pd
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


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class HeterogeneityCI(ResultDisplay):
    """Q-profile confidence intervals for τ², I² (percent) and H²."""

    tau2: ConfidenceInterval
    I2: ConfidenceInterval
    H2: ConfidenceInterval
    level: float

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd
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


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class PoolResult(UnivariateFit, ResultDisplay):
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
    #: metafor's stopping rule the fit used (``None``: solved to 1e-10); refits
    #: (``refit``, the diagnostics) use it too
    control: Control | None = attrs.field(default=None, repr=False)

    _repr_fields = ("estimate", "ci", "tau2", "I2", "k", "method", "measure")

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
        """The same data pooled with some of ``method``, ``test``, ``level`` changed
        (and the same ``control``)."""
        return _pool_single(
            self.yi,
            self.vi,
            self.labels,
            method=self.method if method is None else method,
            test=self.test if test is None else test,
            level=self.level if level is None else level,
            measure=self.measure,
            control=self.control,
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
        if (self.vi == 0).any():  # metafor's confint stops too
            raise ModelSpecificationError(
                "Q-profile intervals are not defined with a sampling variance of 0 (the "
                "generalised Q needs the weights 1/vi at tau^2 = 0)"
            )
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

    def predict(self, *, transf: Transf = None) -> Prediction:
        """The pooled estimate with its CI and prediction interval (metafor's
        ``predict(fit)``), optionally transformed (``predict(fit, transf=)``).

        Parameters
        ----------
        transf : True or callable, optional
            ``True`` for the measure's back-transformation (``tanh`` for ZCOR,
            ``exp`` for log ratios), or any function applied to the estimate and
            the bounds (``se`` is then NaN, as in metafor).

        Returns
        -------
        Prediction
            One row, ``"pooled"``.
        """
        return make_prediction(np.ones((1, 1)), self.coef, self.vcov, self.tau2, self.df,
                               self.level, measure=self.measure, transf=transf,
                               labels=("pooled",))

    def report(self, digits: int = 2) -> str:
        """The pooled result as a sentence for a paper (APA style), back-transformed
        to the natural scale: ``"r = −0.31, 95% CI [−0.38, −0.24], k = 6,
        τ² = 0.0005, I² = 7%"``.

        Parameters
        ----------
        digits : int
            Decimals of the estimate and its interval.
        """
        return pooled_sentence(self, digits)

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of every scalar field."""
        import pandas as pd
        row = {name: [value] for name, value in frame_columns(self).items()}
        row.update(
            method=[self.method], test=[self.test], level=[self.level], measure=[self.measure]
        )
        frame: pd.DataFrame = pd.DataFrame(row)
        return frame

    def summary(self) -> Summary:
        """A statsmodels :class:`~statsmodels.iolib.summary.Summary` like metafor's print.

        As ``print(rma(...))``: τ² with its standard error, τ, I², H², the Q test,
        and the estimate with its test (the t test's df), p-values as metafor
        prints them (``<.0001``), CI and prediction interval; for measures on a
        transformed scale the same on the natural scale.
        """
        model = "Equal-effects model" if self.method == "EE" else "Random-effects model"
        left = [
            ("Method:", self.method),
            ("Measure:", self.measure),
            ("Studies (k):", str(self.k)),
            ("Test:", self.test),
        ]
        right = heterogeneity_rows(self.tau2, self.tau2_se, self.I2, self.H2, self.method)
        right.append((f"Q({self.Q_df}):", f"{_num(self.Q)}, p {fmt_p_eq(self.Q_pvalue)}"))
        stat_name = "z" if self.df is None else "t"
        lo, hi = f"[{(1 - self.level) / 2:.3f}", f"{1 - (1 - self.level) / 2:.3f}]"
        row = [f"{self.estimate:.4f}", f"{self.se:.4f}", f"{self.statistic:.4f}"]
        headers = ["estimate", "se", stat_name]
        if self.df is not None:
            row.append(f"{self.df:g}")
            headers.append("df")
        row += [fmt_p(self.pvalue), f"{self.ci.low:.4f}", f"{self.ci.high:.4f}",
                f"{self.pi.low:.4f}", f"{self.pi.high:.4f}"]
        headers += ["pval", lo, hi, "pi.lb", "pi.ub"]
        tables = [
            info_table(left, right, model),
            value_table([row], headers, ["pooled"]),
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
        if np.isnan(self.Q):
            notes.append("Q, I^2 and H^2 are not defined with a sampling variance of 0 "
                         "(as in metafor).")
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
    control: Control | None = None,
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
        control=control,
    )


def fit_one(
    yi: FloatArray,
    vi: FloatArray,
    X: FloatArray | None,
    method: CoreMethod,
    test: CoreTest,
    level: float,
    what: str = "",
    labels: Sequence[str] | None = None,
    control: Control | None = None,
    omnibus: bool = True,
    unit: bool = False,
) -> CoreFit:
    """One model (m = 1) through the vectorised core, warning if it did not converge.

    With a zero sampling variance, a τ² estimated as 0 leaves that study an infinite
    weight: an error naming it.  ``omnibus=False`` skips the omnibus test (the
    pooled result reports the coefficient's own test only); ``unit=True`` asserts
    the data inside the core's unit range (the validation found it so).
    """
    # validated input: finite, no study absent (complete)
    kern = kernel_from_padded(yi[None, :], vi[None, :], X, complete=True, unit=unit)
    fit = core_fit(kern, method, test, level, rule=as_rule(control), omnibus=omnibus)
    if not unit:  # (in the unit range every v_i > 0)
        check_positive_tau2(fit.tau2, vi, labels, method, what)
    if not fit.converged[0]:
        warnings.warn(
            f"the {method} estimator did not converge in {fit.iterations[0]} iterations"
            + (f" ({what})" if what else ""),
            ConvergenceWarning,
            stacklevel=4,
        )
    if fit.tau2_differs[0]:
        warnings.warn(reset_message(method, "", control is not None)
                      + (f" ({what})" if what else ""), ConvergenceWarning, stacklevel=4)
    return fit


def check_positive_tau2(
    tau2: FloatArray,
    vi: FloatArray,
    labels: Sequence[str] | None,
    method: str,
    what: str = "",
) -> None:
    """An error when some ``v_i = 0`` and τ² is not estimated above 0 (the weight
    ``1/(v_i + τ²)`` of that study is then infinite)."""
    zero = vi == 0
    if zero.any() and not bool(np.all(tau2 > 0)):
        i = int(np.argmax(zero))
        raise InvalidStudyError(
            f"sampling variance is 0 and tau^2 is estimated as {float(np.min(tau2)):g} by "
            f"{method}{f' ({what})' if what else ''}: the study's weight 1/(vi + tau^2) is "
            "infinite, so the model cannot be fitted",
            study=labels[i] if labels is not None else f"#{i}", field="vi",
        )


def reset_message(method: str, which: str, metafor_rule: bool = False) -> str:
    """The warning where metafor's Fisher scoring stops at a lower local maximum, or,
    under metafor's own stopping rule (``control=``), its ``ll0check`` reset."""
    if metafor_rule:
        return (
            f"the {method} root{which} reached by metafor's Fisher scoring from the Hedges "
            "start has a lower likelihood than tau^2 = 0, so tau^2 is set to 0, as "
            "metafor does ('Fisher scoring algorithm may have gotten stuck at a local "
            "maximum'); without control= the global maximum is reported"
        )
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
    control: Control | None = None,
    unit: bool = False,
) -> PoolResult:
    """The m = 1 call of the vectorised core (``unit``: see :func:`fit_one`)."""
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
    if not unit:  # (in the unit range every v_i > 0)
        check_zero_variances(vi, labels, core_method)
    fit = fit_one(yi, vi, None, core_method, core_test, lv, labels=labels, control=control,
                  omnibus=False, unit=unit)
    shown_test = "z" if yi.size == 1 else core_test
    return result_from_core(fit, 0, yi, vi, labels, core_method, shown_test, lv, measure,
                            control)


def random_effects(
    studies: StudySet | Sequence[Study] | None = None,
    *,
    yi: npt.ArrayLike | str | None = None,
    vi: npt.ArrayLike | str | None = None,
    data: object = None,
    measure: Measure = "GEN",
    method: Method = "REML",
    test: Test = "z",
    level: float = 0.95,
    control: ControlSpec = None,
    nan_policy: NanPolicy = "raise",
) -> PoolResult:
    """Pool effect sizes with a random-effects model (metafor's ``rma(yi, vi)``).

    Parameters
    ----------
    studies : StudySet or sequence of Study, optional
        The studies; their labels, effects and measure are used.  (A data frame
        here is taken as ``data``.)
    yi, vi : array_like or str, optional
        Effects and sampling variances, when ``studies`` is not given; with
        ``data``, the names of its columns (by default ``"yi"`` and ``"vi"``, the
        columns metafor's ``escalc`` writes).  Variances may be 0 when τ² is
        estimated (above 0) by REML, ML, HE, SJ or EB.
    data : DataFrame, optional
        A data frame, or any object with the DataFrame interchange protocol, whose
        columns hold ``yi`` and ``vi`` (metafor's ``data=``).
    measure : str
        The effect-size measure of ``yi`` (used for back-transformation).
    method : {"REML", "DL", "HE", "HS", "HSk", "SJ", "ML", "EB", "PM", "PMM", "EE"}
        τ² estimator, as in metafor's ``rma.uni`` (``"FE"``/``"CE"`` alias ``"EE"``).
    test : {"z", "t", "knha", "adhoc"}
        Inference for the pooled estimate.
    level : float
        Confidence level of the CI and prediction interval.
    control : Control or mapping, optional
        Stop the iterative estimators as metafor's ``control`` does
        (``Control()``: metafor's defaults, to reproduce a published analysis);
        by default they are solved to 1e-10 relative.  See :class:`Control`.
    nan_policy : {"raise", "omit"}
        With ``data``: a missing ``yi`` or ``vi`` raises, naming the study
        (``"raise"``), or the study is dropped with a
        :class:`~alliance_meta.exceptions.DataOmittedWarning` (``"omit"``, metafor's
        ``na.omit``).

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
    >>> import pandas as pd
    >>> df = pd.DataFrame({"yi": [0.1, 0.3, 0.35, 0.2], "vi": [0.01, 0.02, 0.015, 0.01]})
    >>> am.random_effects(data=df, yi="yi", vi="vi") == res
    True
    """
    inp = resolve_model_input(studies, yi, vi, measure, data, nan_policy=nan_policy)
    return _pool_single(inp.yi, inp.vi, inp.labels, method=method, test=test, level=level,
                        measure=inp.measure, control=as_control(control), unit=inp.unit)


def fixed_effect(
    studies: StudySet | Sequence[Study] | None = None,
    *,
    yi: npt.ArrayLike | str | None = None,
    vi: npt.ArrayLike | str | None = None,
    data: object = None,
    measure: Measure = "GEN",
    test: Test = "z",
    level: float = 0.95,
    nan_policy: NanPolicy = "raise",
) -> PoolResult:
    """Pool effect sizes with the equal-effects (fixed-effect) model (``method="EE"``).

    See :func:`random_effects` for the parameters; τ² is 0 by definition and
    ``I²``/``H²`` are computed from Q as metafor does for EE models.  Sampling
    variances must be > 0 (an equal-effects weight ``1/v_i`` is infinite at 0).
    """
    inp = resolve_model_input(studies, yi, vi, measure, data, nan_policy=nan_policy)
    return _pool_single(inp.yi, inp.vi, inp.labels, method="EE", test=test, level=level,
                        measure=inp.measure, unit=inp.unit)


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


def _num(x: float, digits: int = 4) -> str:
    return "NA" if math.isnan(x) else f"{x:.{digits}f}"


def heterogeneity_rows(
    tau2: float, tau2_se: float | None, I2: float, H2: float, method: str,
    residual: bool = False,
) -> list[tuple[str, str]]:
    """The heterogeneity lines of metafor's printout: τ² (SE), τ, I², H²."""
    r = " (residual)" if residual else ""
    rows: list[tuple[str, str]] = []
    if method != "EE":
        se = "" if tau2_se is None or math.isnan(tau2_se) else f" (SE = {tau2_se:.4f})"
        rows.append((f"tau^2{r}:", f"{tau2:.4f}{se}"))
        rows.append((f"tau{r}:", f"{math.sqrt(tau2):.4f}"))
    rows.append((f"I^2{r} (%):", _num(I2, 2)))
    rows.append((f"H^2{r}:", _num(H2, 2)))
    return rows
