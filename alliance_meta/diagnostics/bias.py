"""Small-study effects and publication bias: Egger, Begg, trim-and-fill, fail-safe N.

Every function takes a fitted :class:`~alliance_meta.PoolResult` and reproduces the
corresponding function of R's metafor (``regtest``, ``ranktest``, ``trimfill``,
``fsn``; checked against metafor 3.8.1).  Model fits go through the vectorised core
(:mod:`alliance_meta.core`), so they use exactly the estimators of the pooling API.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps
from statsmodels.iolib.summary import Summary

from alliance_meta import core
from alliance_meta._types import FloatArray
from alliance_meta.core.inference import norm_sf, z_critical
from alliance_meta.exceptions import (
    AllianceMetaError,
    FewStudiesWarning,
    InvalidStudyError,
    ModelSpecificationError,
)
from alliance_meta.models._inputs import check_measure, check_method, check_test
from alliance_meta.models.metareg import MetaRegressionResult
from alliance_meta.models.multilevel import MultilevelResult
from alliance_meta.models.pooling import PoolResult, _pool_single
from alliance_meta.results.base import ConfidenceInterval, freeze_arrays, readonly
from alliance_meta.results.display import ResultDisplay, apa_number, apa_p, fmt_p
from alliance_meta.results.summary import frame_summary

__all__ = [
    "PREDICTORS",
    "EggerTest",
    "FailSafeN",
    "RankCorrelationTest",
    "TrimAndFillResult",
    "egger_test",
    "fail_safe_n",
    "rank_correlation_test",
    "trim_and_fill",
]

if TYPE_CHECKING:
    from alliance_meta.data.design import Design
    from alliance_meta.data.study import Study, StudySet

BoolArray = npt.NDArray[np.bool_]


# ---------------------------------------------------------------------------
# Egger's regression test
# ---------------------------------------------------------------------------


#: metafor's ``regtest`` predictors: the column added to the model's design.
Predictor = Literal["sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv"]
PREDICTORS: tuple[str, ...] = ("sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv")
#: Predictors that vanish as the study grows infinitely precise (or large): their
#: intercept is a "limit estimate" (regtest's ``est``; not for ``ni``/``sqrtni``).
LIMIT_PREDICTORS = frozenset({"sei", "vi", "ninv", "sqrtninv"})
_PREDICTOR_TEXT = {
    "sei": "standard error (sei)",
    "vi": "sampling variance (vi)",
    "ni": "sample size (ni)",
    "ninv": "inverse sample size (1/ni)",
    "sqrtni": "square root of the sample size (sqrt(ni))",
    "sqrtninv": "inverse root sample size (1/sqrt(ni))",
}


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class EggerTest(ResultDisplay):
    """Result of :func:`egger_test` (metafor's ``regtest``).

    Attributes
    ----------
    statistic : float
        t (``model="lm"``, a t-based test, or cluster-robust) or z statistic of the
        predictor's coefficient.
    pvalue : float
        Two-sided p-value of the predictor's coefficient.
    df : float or None
        Degrees of freedom of the t statistic (``None`` for a z statistic; the
        Satterthwaite df of the predictor's coefficient under ``cluster=``).
    intercept : float
        ``b0``, the first coefficient of the test's model (the limit estimate of an
        intercept-only fit: the predicted effect of a study with standard error 0).
    intercept_se : float
        Standard error of ``intercept``.
    slope : float
        The coefficient of the predictor.
    slope_se : float
        Standard error of ``slope``.
    model : {"lm", "rma"}
        Which regression was fitted.
    method : str
        τ² (or variance-component) estimator of the mixed-effects model (``"lm"``
        uses none; the field then repeats the input result's method for reference).
    k : int
        Number of studies (effects).
    predictor : str
        The predictor: ``"sei"``, ``"vi"``, ``"ni"``, ``"ninv"``, ``"sqrtni"`` or
        ``"sqrtninv"``.
    limit_estimate : float or None
        The estimate where the predictor is 0 (regtest's ``est``): the intercept of
        an intercept-only fit with a predictor that vanishes for an infinitely
        precise study (``sei``, ``vi``, ``ninv``, ``sqrtninv``); None otherwise (as
        metafor: for ``ni``/``sqrtni`` and for meta-regressions).
    limit_ci : ConfidenceInterval or None
        Its confidence interval (regtest's ``ci.lb``, ``ci.ub``).
    limit_pvalue : float or None
        Two-sided p-value of ``H0: limit = 0`` (the test PET-PEESE conditions on).
    coef_names : tuple of str
        Names of the test model's coefficients (the fit's, then the predictor).
    coef, se : ndarray
        The test model's coefficients and standard errors.
    robust : str or None
        ``"CR2"`` when the test is cluster-robust (``cluster=``), else None.
    n_clusters : int or None
        Number of clusters of a cluster-robust test.
    level : float
        Confidence level of ``limit_ci``.
    """

    _repr_fields = ("statistic", "pvalue", "df", "predictor", "limit_estimate", "model", "k")

    statistic: float
    pvalue: float
    df: float | None
    intercept: float
    intercept_se: float
    slope: float
    slope_se: float
    model: str
    method: str
    k: int
    predictor: str = "sei"
    limit_estimate: float | None = None
    limit_ci: ConfidenceInterval | None = None
    limit_pvalue: float | None = None
    coef_names: tuple[str, ...] = attrs.field(default=(), repr=False)
    coef: FloatArray = attrs.field(factory=lambda: np.empty(0), eq=False, repr=False)
    se: FloatArray = attrs.field(factory=lambda: np.empty(0), eq=False, repr=False)
    robust: str | None = None
    n_clusters: int | None = None
    level: float = 0.95

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of the test (the coefficient arrays left out; the limit
        CI as ``limit_ci_low``/``limit_ci_high``)."""
        row = {
            f.name: getattr(self, f.name)
            for f in attrs.fields(type(self))
            if f.name not in ("coef", "se", "coef_names", "limit_ci")
        }
        ci = self.limit_ci
        row["limit_ci_low"] = None if ci is None else ci.low
        row["limit_ci_high"] = None if ci is None else ci.high
        frame: pd.DataFrame = pd.DataFrame([row])
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary like metafor's ``print(regtest(fit))``."""
        model = (
            "weighted regression with multiplicative dispersion (lm)"
            if self.model == "lm"
            else f"mixed-effects meta-regression (rma, {self.method})"
        )
        stat = "z" if self.df is None else f"t({self.df:.4g})"
        if self.coef_names:
            names = list(self.coef_names)
            if names[0] == "intrcpt" and self.limit_estimate is not None:
                names[0] = "intercept (limit estimate)"
            coefs = pd.DataFrame({"estimate": self.coef, "se": self.se}, index=names)
        else:
            coefs = pd.DataFrame(
                {"estimate": [self.intercept, self.slope],
                 "se": [self.intercept_se, self.slope_se]},
                index=["intercept (limit estimate)", self.predictor],
            )
        info = [
            ("Model:", model),
            ("Predictor:", _PREDICTOR_TEXT.get(self.predictor, self.predictor)),
            ("Studies (k):", str(self.k)),
            (f"{stat}:", f"{self.statistic:.4f}"),
            ("p-value:", fmt_p(self.pvalue)),
        ]
        if self.robust is not None:
            info.append(("Variance:", f"{self.robust}, {self.n_clusters} clusters"))
        if self.limit_estimate is not None and self.limit_ci is not None:
            info.append(("Limit estimate:", f"{self.limit_estimate:.4f} "
                         f"[{self.limit_ci.low:.4f}, {self.limit_ci.high:.4f}]"))
        return frame_summary("Regression test for funnel plot asymmetry", info, coefs)

    def __str__(self) -> str:
        return str(self.summary())

    def report(self) -> str:
        """The test as a sentence for a paper (APA style): ``"Egger's regression test
        for funnel plot asymmetry: z = 0.49, p = .622."``."""
        stat = "z" if self.df is None else f"t({self.df:.4g})"
        return (f"Egger's regression test for funnel plot asymmetry: {stat} = "
                f"{apa_number(self.statistic, 2)}, {apa_p(self.pvalue)}.")


def _sample_sizes(fit: object, ni: object, k: int, labels: Sequence[str],
                  predictor: str) -> FloatArray:
    """The sample sizes of the effects: ``ni=``, else what the fit carries."""
    from alliance_meta.data.study import Study, StudySet

    if ni is None:
        ni = getattr(fit, "ni", None)
    if ni is None:
        raise ModelSpecificationError(
            f"predictor={predictor!r} needs the studies' sample sizes, and this fit does "
            "not carry them: give ni= (one total sample size per effect, e.g. n1i + n2i, "
            "or the StudySet whose n are used)"
        )
    if isinstance(ni, StudySet):
        arr = ni.n
    elif isinstance(ni, Sequence) and ni and all(isinstance(s, Study) for s in ni):
        arr = np.array([np.nan if s.n is None else float(s.n) for s in ni])
    else:
        try:
            arr = np.asarray(ni, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise InvalidStudyError("ni must be numbers, one per effect", field="ni") from None
    if arr.size != k:
        raise InvalidStudyError(f"ni has {arr.size} values for {k} effects", field="ni")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidStudyError(
            f"sample size must be a positive number, got {arr[i]!r}", study=labels[i],
            field="ni",
        )
    return np.array(arr, dtype=np.float64)


def _predictor_column(fit: object, predictor: str, ni: object, yi: FloatArray,
                      vi: FloatArray, labels: Sequence[str]) -> FloatArray:
    if predictor == "sei":
        return np.sqrt(vi)
    if predictor == "vi":
        return np.array(vi, dtype=np.float64)
    n = _sample_sizes(fit, ni, yi.size, labels, predictor)
    col: FloatArray = {"ni": n, "ninv": 1.0 / n, "sqrtni": np.sqrt(n),
                       "sqrtninv": 1.0 / np.sqrt(n)}[predictor]
    return col


def _augmented_design(X: FloatArray, col: FloatArray, predictor: str) -> FloatArray:
    """``[X, predictor]``, refused where the predictor is collinear with ``X``."""
    Xa = np.column_stack([X, col])
    if Xa.shape[0] < Xa.shape[1] or np.linalg.matrix_rank(Xa) < Xa.shape[1]:
        if predictor == "sei" and X.shape[1] == 1 and np.ptp(col) == 0.0:
            raise ModelSpecificationError(
                "all standard errors are equal: the regression on sqrt(vi) is not "
                "identifiable"
            )
        raise ModelSpecificationError(
            f"the design is not of full rank after adding the predictor {predictor!r} "
            f"({Xa.shape[0]} effects, {Xa.shape[1]} coefficients): the test cannot be "
            "fitted (metafor stops too)"
        )
    return Xa


def _has_intercept(X: FloatArray, names: Sequence[str]) -> bool:
    return bool(len(names) > 0 and names[0] == "intrcpt" and np.all(X[:, 0] == 1.0))


def _resolve_cluster(fit: object, cluster: str | npt.ArrayLike) -> str | npt.ArrayLike:
    """A level name of a multilevel fit becomes its labels (robust() reads them)."""
    levels = getattr(fit, "levels", None)
    if isinstance(cluster, str) and isinstance(levels, Mapping) and cluster in levels:
        labels: npt.ArrayLike = np.asarray(levels[cluster])
        return labels
    return cluster


def _refit_multilevel(fit: MultilevelResult, Xa: FloatArray,
                      names: tuple[str, ...]) -> MultilevelResult:
    """The multilevel/multivariate model of ``fit`` refitted with the design ``Xa``
    (same data, V, random effects, fixed components, method and test)."""
    from alliance_meta.data.design import Design
    from alliance_meta.models import multilevel as mlm

    p = Xa.shape[1]
    design = Design(full_names=names, kept=np.ones(p, dtype=np.bool_),
                    order=np.arange(p, dtype=np.intp), X=Xa, coef_names=names,
                    intercept=_has_intercept(Xa, names))
    labels0 = fit._level_labels[0]
    if fit.struct is None:
        level_codes = [np.asarray(pd.factorize(np.asarray(path))[0], dtype=np.int64)
                       for path in fit.levels.values()]
        cluster_codes = None
    else:
        level_codes = []
        cluster_codes = np.asarray(pd.factorize(np.asarray(labels0))[0], dtype=np.int64)
    return mlm._fit(
        y=np.asarray(fit.yi), V=fit._V, design=design, level_names=fit.level_names,
        level_codes=level_codes, n_clusters=fit.n_clusters,
        structure=fit._problem.structure, fixed=np.asarray(fit._fixed),
        component_names=fit._component_names, cluster_codes=cluster_codes,
        outcome_codes=fit._outcome_codes, outcome_levels=fit.outcome_levels,
        cluster_labels_of=(fit.level_names[0], labels0), level_labels=fit._level_labels,
        labels=fit.labels, measure=fit.measure, method=fit.method, test=fit.test,
        level=fit.level,
    )


def egger_test(
    result: PoolResult | MetaRegressionResult | MultilevelResult,
    model: Literal["lm", "rma"] = "rma",
    predictor: Predictor = "sei",
    ni: npt.ArrayLike | StudySet | Sequence[Study] | None = None,
    *,
    cluster: str | npt.ArrayLike | None = None,
) -> EggerTest:
    """Egger's regression test for funnel-plot asymmetry, with any of metafor's
    ``regtest`` predictors.

    Parameters
    ----------
    result : PoolResult, MetaRegressionResult or MultilevelResult
        A fitted model; its ``yi``, ``vi``, design ``X``, ``method``, ``test``,
        ``level`` (and ``control``) are used.  For a meta-regression the predictor
        is added to its moderators (as ``regtest``); for a multilevel or
        multivariate fit (``rma.mv``, which metafor's ``regtest`` refuses) it is
        added to the fixed effects of the same model.
    model : {"rma", "lm"}
        ``"rma"`` (the default, as metafor's ``regtest``): the mixed-effects model
        ``rma(yi, vi, mods = cbind(X, predictor), method = result.method,
        test = result.test)``; the statistic is a z (a t with k - p - 1 df under
        ``t``/``knha``/``adhoc``).  ``"lm"``: the classical test, a weighted
        least-squares regression of ``yi`` on ``[X, predictor]`` with weights
        ``1/vi`` and a free multiplicative dispersion, t tests on k - p - 1 df
        (metafor's ``regtest(model="lm")``, R's ``lm(yi ~ X - 1, weights = 1/vi)``).
        A multilevel fit takes ``"rma"`` only.
    predictor : {"sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv"}
        The column added: the standard error ``√v_i`` (Egger's test, "PET"), the
        sampling variance ``v_i`` ("PEESE"), the sample size ``n_i``, ``1/n_i``
        (Peters et al., 2006), ``√n_i`` or ``1/√n_i``.
    ni : array_like, StudySet or sequence of Study, optional
        Sample sizes (one per effect; of a StudySet, its studies' ``n``) for the
        ``n``-based predictors.  Fits do not carry sample sizes: without ``ni`` an
        ``n``-based predictor raises :class:`ModelSpecificationError`.
    cluster : str or array_like, optional
        Test the predictor with cluster-robust CR2 standard errors and
        Satterthwaite df (clubSandwich's ``coef_test(fit, vcov = "CR2")``, see
        :func:`alliance_meta.robust`): one cluster label per effect, or the name of
        a level of a multilevel fit.  Needs ``model="rma"``.

    Returns
    -------
    EggerTest

    Raises
    ------
    ModelSpecificationError
        An unknown model or predictor; an ``n``-based predictor without sample
        sizes; a design that is not of full rank with the predictor; fewer studies
        than parameters.
    InvalidStudyError
        A sample size that is missing, not positive, or of the wrong length (naming
        the study); ``vi = 0`` under ``model="lm"``.

    Notes
    -----
    With ``x_i`` the predictor the model is ``y_i = X_i β + b x_i + e_i``.  Under
    ``"lm"``, ``e_i ~ N(0, φ v_i)`` with a free dispersion ``φ`` estimated by the
    residual mean square ``Σ (y_i - ŷ_i)²/v_i / (k - p - 1)``, which is the original
    weighted form of Egger et al. (1997): regressing the standard normal deviate
    ``y_i/sei_i`` on the precision ``1/sei_i`` gives the same test, with the roles of
    intercept and slope swapped; its coefficients are the equal-effects estimates
    and their covariance is scaled by ``φ̂`` (here: the equal-effects fit with the
    Knapp-Hartung factor, which is exactly that regression).  Under ``"rma"``,
    ``e_i ~ N(0, v_i + τ²)`` with τ² re-estimated by the fit's method (Sterne &
    Egger, 2005; Viechtbauer, 2010), the equal-effects fit for an ``EE`` result.
    The test is of ``H0: b = 0``.

    For an intercept-only fit and a predictor that is 0 for an infinitely precise
    (or large) study, ``β₀`` is the "limit estimate" (regtest's ``est``, with its
    CI): PET (``sei``) and PEESE (``vi``) of Stanley & Doucouliagos (2014), see
    :func:`alliance_meta.pet_peese`.

    Under ``cluster=`` the model is refitted with the predictor and its
    coefficients are tested with the CR2 sandwich and Satterthwaite df (Pustejovsky
    & Tipton, 2018), the approach of Rodgers & Pustejovsky (2021) for dependent
    effects; ``df`` is then the predictor's Satterthwaite df.

    With k = p + 1 the line passes through every study: as in metafor, ``"lm"``
    gives NaN standard errors, statistic and p-value (0 residual df), and ``"rma"``
    is defined for an equal-effects result only; both warn with
    :class:`FewStudiesWarning`.

    References
    ----------
    Egger, M., Davey Smith, G., Schneider, M., & Minder, C. (1997). Bias in
    meta-analysis detected by a simple, graphical test. *BMJ*, 315, 629-634.

    Peters, J. L., Sutton, A. J., Jones, D. R., Abrams, K. R., & Rushton, L. (2006).
    Comparison of two methods to detect publication bias in meta-analysis. *JAMA*,
    295(6), 676-680.

    Rodgers, M. A., & Pustejovsky, J. E. (2021). Evaluating meta-analytic methods to
    detect selective reporting in the presence of dependent effect sizes.
    *Psychological Methods*, 26(2), 141-160.

    Stanley, T. D., & Doucouliagos, H. (2014). Meta-regression approximations to
    reduce publication selection bias. *Research Synthesis Methods*, 5(1), 60-78.

    Sterne, J. A. C., & Egger, M. (2005). Regression methods to detect publication
    and other bias in meta-analysis. In *Publication bias in meta-analysis*
    (pp. 99-110). Wiley.
    """
    from alliance_meta.models.metareg import regression_result
    from alliance_meta.models.robust import robust

    if model not in ("lm", "rma"):
        raise ModelSpecificationError(f"model must be 'lm' or 'rma', got {model!r}")
    if predictor not in PREDICTORS:
        raise ModelSpecificationError(
            f"predictor must be one of {', '.join(map(repr, PREDICTORS))}, got {predictor!r}"
        )
    multilevel = isinstance(result, MultilevelResult)
    if multilevel and model == "lm":
        raise ModelSpecificationError(
            "model='lm' is a weighted regression of independent effects: a multilevel "
            "fit takes model='rma' (the predictor added to its fixed effects; give "
            "cluster= for a cluster-robust test)"
        )
    if cluster is not None and model == "lm":
        raise ModelSpecificationError("cluster= needs model='rma' (the mixed-effects model)")
    yi = np.asarray(result.yi, dtype=np.float64)
    vi = np.asarray(result.vi, dtype=np.float64)
    X = np.asarray(result.X, dtype=np.float64)
    k = int(yi.size)
    if k < 2:
        raise ModelSpecificationError(f"Egger's test needs at least 2 studies, got k = {k}")
    names0 = tuple(str(n) for n in result.coef_names)
    col = _predictor_column(result, predictor, ni, yi, vi, result.labels)
    Xa = _augmented_design(X, col, predictor)
    names = (*names0, predictor)
    p = X.shape[1]  # the predictor's position in the augmented design
    limit = (predictor in LIMIT_PREDICTORS and p == 1 and _has_intercept(X, names0))
    level = float(result.level)
    method = str(result.method)
    robust_name: str | None = None
    n_clusters: int | None = None

    if model == "lm":
        assert not isinstance(result, MultilevelResult)
        _refuse_zero_variance(result, "Egger's test with model='lm' (weights 1/vi)")
        # weighted least squares with a free dispersion φ: the EE fit whose
        # covariance is scaled by the Knapp-Hartung factor y'Py / (k - p) = φ̂
        kern = core.kernel_from_padded(yi[None, :], vi[None, :], Xa)
        with np.errstate(divide="ignore", invalid="ignore"):
            wls = core.fit(kern, "EE", "knha", level)
        coef, se = wls.beta[0], wls.se[0]
        stat, pval = wls.statistic[0], wls.pvalue[0]
        lo, hi = wls.ci_low[0], wls.ci_high[0]
        if k == Xa.shape[1]:  # no residual df: the fit is exact, its errors unknown
            se = stat = pval = lo = hi = np.full(Xa.shape[1], np.nan)
        dfs = np.full(Xa.shape[1], float(k - Xa.shape[1]))
    elif multilevel:
        assert isinstance(result, MultilevelResult)
        refit = _refit_multilevel(result, Xa, names)
        coef = np.asarray(refit.coef)
        if cluster is None:
            se, stat, pval = refit.se, refit.statistic, refit.pvalue
            lo, hi = refit.ci.low, refit.ci.high
            dfs = np.full(Xa.shape[1], np.nan if refit.df is None else refit.df)
        else:
            rob = robust(refit, _resolve_cluster(result, cluster), adjust="CR2")
            se, stat, pval, dfs = rob.se, rob.statistic, rob.pvalue, rob.df
            lo, hi = rob.ci.low, rob.ci.high
            robust_name, n_clusters = "CR2", rob.n_clusters
    else:
        core_method = check_method(result.method)
        if k <= Xa.shape[1] and core_method != "EE":
            raise ModelSpecificationError(
                f"Egger's test (model='rma') regresses yi on {Xa.shape[1]} columns: "
                f"{Xa.shape[1]} coefficients and a {result.method} τ² are more parameters "
                f"than the k = {k} studies (metafor stops too); fit with method='EE'"
            )
        kern = core.kernel_from_padded(yi[None, :], vi[None, :], Xa)
        core_test = check_test(result.test)
        control = getattr(result, "control", None)  # regtest keeps the fit's control
        cf = core.fit(kern, core_method, core_test, level,
                      rule=None if control is None else control.to_rule())
        coef = cf.beta[0]
        if cluster is None:
            se, stat, pval = cf.se[0], cf.statistic[0], cf.pvalue[0]
            lo, hi = cf.ci_low[0], cf.ci_high[0]
            dfs = np.full(Xa.shape[1], float(cf.df[0]))
        else:
            design = _simple_design(Xa, names)
            mr = regression_result(cf, design, yi, vi, tuple(result.labels), core_method,
                                   core_test, level, check_measure(result.measure), control)
            rob = robust(mr, _resolve_cluster(result, cluster), adjust="CR2")
            se, stat, pval, dfs = rob.se, rob.statistic, rob.pvalue, rob.df
            lo, hi = rob.ci.low, rob.ci.high
            robust_name, n_clusters = "CR2", rob.n_clusters
    if k == Xa.shape[1]:
        warnings.warn(
            f"Egger's test with k = {k} studies and {k} coefficients is computed as "
            "metafor does, but carries next to no information",
            FewStudiesWarning,
            stacklevel=2,
        )
    df = float(dfs[p])
    return EggerTest(
        statistic=float(stat[p]),
        pvalue=float(pval[p]),
        df=None if math.isnan(df) else df,
        intercept=float(coef[0]),
        intercept_se=float(se[0]),
        slope=float(coef[p]),
        slope_se=float(se[p]),
        model=model,
        method=method,
        k=k,
        predictor=predictor,
        limit_estimate=float(coef[0]) if limit else None,
        limit_ci=ConfidenceInterval(float(lo[0]), float(hi[0])) if limit else None,
        limit_pvalue=float(pval[0]) if limit else None,
        coef_names=names,
        coef=np.asarray(coef, dtype=np.float64),
        se=np.asarray(se, dtype=np.float64),
        robust=robust_name,
        n_clusters=n_clusters,
        level=level,
    )


def _simple_design(X: FloatArray, names: tuple[str, ...]) -> Design:
    from alliance_meta.data.design import Design

    p = X.shape[1]
    return Design(full_names=names, kept=np.ones(p, dtype=np.bool_),
                  order=np.arange(p, dtype=np.intp), X=X, coef_names=names,
                  intercept=_has_intercept(X, names))


def _refuse_zero_variance(result: PoolResult | MetaRegressionResult, what: str) -> None:
    """An error naming the study when ``vi = 0`` makes ``what`` undefined."""
    zero = np.asarray(result.vi) == 0
    if zero.any():
        i = int(np.argmax(zero))
        raise InvalidStudyError(
            f"sampling variance is 0: {what} is not defined for it (the random-effects "
            "fit, its influence diagnostics and Egger's test with model='rma' are)",
            study=result.labels[i], field="vi",
        )


def _warn_two_studies(k: int, what: str) -> None:
    if k == 2:
        warnings.warn(
            f"{what} with k = 2 studies is computed as metafor does, but carries "
            "next to no information",
            FewStudiesWarning,
            stacklevel=3,
        )


def _sei_regression(
    result: PoolResult, test: str | None = None, purpose: str = "Egger's test (model='rma')"
) -> core.CoreFit:
    """One core fit of ``yi ~ 1 + sqrt(vi)`` with the result's τ² estimator."""
    yi, vi = result.yi, result.vi
    if yi.size <= 2 and check_method(result.method) != "EE":
        raise ModelSpecificationError(
            f"{purpose} regresses yi on sqrt(vi): 2 coefficients and a {result.method} τ² "
            f"are more parameters than the k = {yi.size} studies (metafor stops too); "
            "fit with method='EE'"
        )
    X = np.column_stack([np.ones(yi.size), np.sqrt(vi)])
    kern = core.kernel_from_padded(yi[None, :], vi[None, :], X)
    core_test = check_test(result.test if test is None else test)
    control = getattr(result, "control", None)  # metafor's regtest keeps the fit's control
    return core.fit(kern, check_method(result.method), core_test, result.level,
                    rule=None if control is None else control.to_rule())


# ---------------------------------------------------------------------------
# Begg & Mazumdar's rank correlation test
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class RankCorrelationTest(ResultDisplay):
    """Result of :func:`rank_correlation_test` (metafor's ``ranktest``).

    Attributes
    ----------
    tau : float
        Kendall's τ_b between the standardised effects and the sampling variances.
    pvalue : float
        Two-sided p-value.
    exact : bool
        Whether the p-value is the exact permutation p-value (no ties) or the
        tie-corrected normal approximation.
    k : int
        Number of studies.
    """

    tau: float
    pvalue: float
    exact: bool
    k: int

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of every field."""
        frame: pd.DataFrame = pd.DataFrame([attrs.asdict(self)])
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary like metafor's ``print(ranktest(fit))``."""
        return frame_summary(
            "Rank correlation test for funnel plot asymmetry",
            [
                ("Kendall's tau:", f"{self.tau:.4f}"),
                ("p-value:", fmt_p(self.pvalue)),
                ("Studies (k):", str(self.k)),
                ("p-value from:", "exact distribution" if self.exact else "normal approx."),
            ],
        )

    def __str__(self) -> str:
        return str(self.summary())


#: Below this many studies (and without ties) the exact null distribution of
#: Kendall's statistic is used by default, as R's ``cor.test(exact = NULL)``.
EXACT_KENDALL_MAX_K = 50


def rank_correlation_test(
    result: PoolResult, *, exact: bool | None = None
) -> RankCorrelationTest:
    """Begg and Mazumdar's rank correlation test for funnel-plot asymmetry.

    Parameters
    ----------
    result : PoolResult
        A fitted pooled result (only its ``yi`` and ``vi`` are used).
    exact : bool, optional
        Whether the p-value comes from the exact null distribution of Kendall's
        statistic (only without ties) or from the normal approximation with the
        tie-corrected variance.  ``None`` (default): exact for fewer than 50 studies
        without ties, the approximation otherwise, as R's ``cor.test`` decides by
        default; its cost grows as k³, so that exact p-values for thousands of
        studies would take minutes.  ``True``/``False``: as metafor's
        ``ranktest(exact = TRUE/FALSE)`` (exact still falls back to the
        approximation where there are ties, as in R).

    Returns
    -------
    RankCorrelationTest

    Notes
    -----
    With equal-effects weights ``w_i = 1/v_i``, ``θ̂ = Σ w_i y_i / Σ w_i`` and
    ``v_θ = 1/Σ w_i``, the standardised effects are
    ``y*_i = (y_i - θ̂) / sqrt(v_i - v_θ)``; the statistic is Kendall's τ_b between
    ``y*`` and ``v`` (Begg & Mazumdar, 1994), computed with
    :func:`scipy.stats.kendalltau`.  k = 2 is computed, as metafor does, with a
    :class:`FewStudiesWarning` (τ = ±1, p = 1).

    metafor's ``ranktest`` passes ``exact = TRUE`` to ``cor.test`` by default, so
    for 50 or more studies without ties it reports the exact p-value where this
    function, by default, reports the normal approximation (``result.exact`` says
    which); the two differ by little at that size (the approximation's error in the
    p-value is of order 1/k), and ``exact=True`` reproduces metafor.

    References
    ----------
    Begg, C. B., & Mazumdar, M. (1994). Operating characteristics of a rank
    correlation test for publication bias. *Biometrics*, 50(4), 1088-1101.
    """
    _refuse_zero_variance(result, "the rank correlation test (standardised by vi)")
    yi, vi = result.yi, result.vi
    k = int(yi.size)
    if k < 2:
        raise ModelSpecificationError(f"the rank correlation test needs k >= 2, got k = {k}")
    if exact is not None and not isinstance(exact, (bool, np.bool_)):
        raise ModelSpecificationError(f"exact must be True, False or None, got {exact!r}")
    _warn_two_studies(k, "the rank correlation test")
    wi = 1.0 / vi
    theta = float(np.sum(wi * yi) / np.sum(wi))
    vb = 1.0 / float(np.sum(wi))
    ystar = (yi - theta) / np.sqrt(vi - vb)
    ties = np.unique(ystar).size < k or np.unique(vi).size < k
    want_exact = k < EXACT_KENDALL_MAX_K if exact is None else bool(exact)
    use_exact = want_exact and not ties
    if k == 2 and not use_exact:
        # the normal approximation has zero variance with two studies (scipy
        # divides by it); R's cor.test gives τ_b and a NaN p-value
        concord = float(np.sign(ystar[1] - ystar[0]) * np.sign(vi[1] - vi[0]))
        tau_b = concord if concord != 0 else math.nan
        return RankCorrelationTest(tau=tau_b, pvalue=math.nan, exact=False, k=k)
    res = sps.kendalltau(ystar, vi, method="exact" if use_exact else "asymptotic")
    pval = float(res.pvalue)
    if use_exact and not math.isfinite(pval):  # as metafor: fall back to the approximation
        res = sps.kendalltau(ystar, vi, method="asymptotic")
        pval = float(res.pvalue)
        use_exact = False
    return RankCorrelationTest(tau=float(res.statistic), pvalue=pval, exact=use_exact, k=k)


# ---------------------------------------------------------------------------
# Trim and fill
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class TrimAndFillResult(ResultDisplay):
    """Result of :func:`trim_and_fill` (metafor's ``trimfill``).

    Attributes
    ----------
    k0 : int
        Estimated number of missing studies.
    k0_se : float
        Its standard error (as metafor's ``se.k0``; NaN, as there, where the
        variance formula of L0 or Q0 turns negative).
    side : {"left", "right"}
        Side of the funnel on which studies were imputed.
    estimator : {"L0", "R0", "Q0"}
        Estimator of ``k0``.
    result : PoolResult
        The model fitted to the augmented data (observed plus filled studies), with
        the method, test and level of the input result.  When ``k0 == 0`` this is
        the input result itself.
    yi, vi : ndarray
        Effects and variances of the augmented data (observed first).
    labels : tuple of str
        Labels of the augmented data (filled studies are ``"Filled 1"``, ...).
    filled : ndarray of bool
        True for the filled (imputed) studies of the augmented data.
    iterations : int
        Iterations of the trimming algorithm.
    """

    _repr_fields = ('k0', 'side', 'estimator')

    k0: int
    k0_se: float
    side: str
    estimator: str
    result: PoolResult
    yi: FloatArray = attrs.field(eq=False, repr=False)
    vi: FloatArray = attrs.field(eq=False, repr=False)
    labels: tuple[str, ...] = attrs.field(repr=False)
    filled: BoolArray = attrs.field(eq=False, repr=False)
    iterations: int = 0

    @property
    def filled_yi(self) -> FloatArray:
        """Effects of the filled studies."""
        out: FloatArray = self.yi[self.filled]
        return readonly(out)

    @property
    def filled_vi(self) -> FloatArray:
        """Variances of the filled studies."""
        out: FloatArray = self.vi[self.filled]
        return readonly(out)

    def to_frame(self) -> pd.DataFrame:
        """The augmented data: one row per study with ``yi``, ``vi`` and ``filled``."""
        frame: pd.DataFrame = pd.DataFrame(
            {"yi": self.yi, "vi": self.vi, "filled": self.filled},
            index=pd.Index(list(self.labels), name="study"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary: k0, the side, the refitted model and the filled studies."""
        fit = self.result
        se_k0 = "NA" if math.isnan(self.k0_se) else f"{self.k0_se:.4f}"
        frame = self.to_frame()
        return frame_summary(
            "Trim and fill",
            [
                ("Estimator:", self.estimator),
                ("Side:", self.side),
                ("Missing (k0):", f"{self.k0} (SE = {se_k0})"),
                ("Studies (k):", f"{fit.k} ({self.k0} filled)"),
                ("Estimate:", f"{fit.estimate:.4f}"),
                (f"{100 * fit.level:g}% CI:", f"[{fit.ci.low:.4f}, {fit.ci.high:.4f}]"),
                ("tau^2:", f"{fit.tau2:.4f}"),
                ("Method:", fit.method),
            ],
            frame[frame["filled"]] if self.k0 else None,
            ["Rows: the filled studies."] if self.k0 else [],
        )

    def __str__(self) -> str:
        return str(self.summary())


def _rank_first(a: FloatArray) -> npt.NDArray[np.int64]:
    """1-based ranks, ties broken by position (R's ``rank(ties.method="first")``)."""
    order = np.argsort(a, kind="stable")
    ranks = np.empty(a.size, dtype=np.int64)
    ranks[order] = np.arange(1, a.size + 1)
    return ranks


def trim_and_fill(
    result: PoolResult,
    estimator: Literal["L0", "R0", "Q0"] = "L0",
    side: Literal["left", "right"] | None = None,
    *,
    maxiter: int = 100,
) -> TrimAndFillResult:
    """Duval and Tweedie's trim-and-fill method.

    Parameters
    ----------
    result : PoolResult
        A fitted pooled result; its data, method, test and level are used.
    estimator : {"L0", "R0", "Q0"}
        Estimator of the number of missing studies.
    side : {"left", "right"}, optional
        Side on which studies are missing.  By default it is estimated as metafor
        does: from the sign of the slope ``b1`` of the meta-regression
        ``yi ~ sqrt(vi)`` fitted with the result's method ("right" if ``b1 < 0``,
        "left" otherwise); with k = 2 that needs an equal-effects result.
    maxiter : int
        Maximum number of trimming iterations (metafor's default 100).

    Returns
    -------
    TrimAndFillResult

    Raises
    ------
    AllianceMetaError
        If the algorithm does not converge in ``maxiter`` iterations or trims all
        studies, or if Q0 is not defined (``2k² - 4 S_r + 1/4 < 0``, where
        metafor stops with an error).

    Notes
    -----
    For the right side the effects are negated, so that missing studies are always
    on the left.  Studies are sorted by effect; at each iteration the model is
    refitted to the ``k - k0`` smallest effects, giving ``μ̂``, and the signed ranks
    ``r_i`` of ``|y_i - μ̂|`` over all k studies give, with ``S_r`` the sum of the
    positive ranks and ``γ*`` the length of the rightmost run of positive ranks
    (Duval & Tweedie, 2000)::

        L0 = (4 S_r - k(k+1)) / (2k - 1)
        R0 = γ* - 1
        Q0 = k - 1/2 - sqrt(2k² - 4 S_r + 1/4)

    each rounded (half to even, as R) and floored at 0, until ``k0`` stops changing.
    The ``k0`` largest effects are then reflected about the last ``μ̂``,
    ``y_fill = 2 μ̂ - y_i``, with their own variances, and the model is refitted to
    the augmented data.  ``k0_se`` follows metafor's formulas.

    Unlike metafor 3.8.1, which refits the augmented data with its default
    ``test="z"`` and ``level=0.95``, the augmented fit keeps the input's test and
    level; under the default z test at 95% the two coincide.

    Every refit here solves τ² to 1e-10 relative, or stops as the fit's
    ``control`` says (:class:`~alliance_meta.Control`).  metafor's ``trimfill``
    does not pass the fitted model's ``control`` on to its refits, so
    ``trimfill(fit)`` stops its Fisher scoring at metafor's default threshold (a τ²
    change below 1e-5); for iterative estimators its τ² and SE then differ from the
    exact root by up to a few 1e-4 relative (e.g. 2.6e-4 for τ² on Molloy et al.,
    2014, REML).  ``trimfill(fit, control = list(threshold = 1e-12))`` in R
    reproduces our numbers to about 1e-12, and a fit with ``control=Control()``
    (metafor's defaults) reproduces ``trimfill(fit)``.

    References
    ----------
    Duval, S., & Tweedie, R. (2000). Trim and fill: A simple funnel-plot-based
    method of testing and adjusting for publication bias in meta-analysis.
    *Biometrics*, 56(2), 455-463.

    Duval, S., & Tweedie, R. (2000). A nonparametric "trim and fill" method of
    accounting for publication bias in meta-analysis. *Journal of the American
    Statistical Association*, 95(449), 89-98.
    """
    if estimator not in ("L0", "R0", "Q0"):
        raise ModelSpecificationError(f"estimator must be 'L0', 'R0' or 'Q0', got {estimator!r}")
    _refuse_zero_variance(result, "trim and fill")
    yi0, vi0 = result.yi, result.vi
    k = int(yi0.size)
    if k == 1:
        raise ModelSpecificationError("trim and fill needs more than one study (k = 1)")
    method = check_method(result.method)
    if side is None:
        slope = float(
            _sei_regression(
                result, test="z", purpose="trim and fill, to choose the side (give side=)"
            ).beta[0, 1]
        )
        side = "right" if slope < 0 else "left"
    elif side not in ("left", "right"):
        raise ModelSpecificationError(f"side must be 'left' or 'right', got {side!r}")

    yflip = -yi0 if side == "right" else yi0.copy()
    ix = np.argsort(yflip, kind="stable")  # R's sort(): radix, stable
    ys, vs = yflip[ix], vi0[ix]

    # the fit's control= (metafor's trimfill refits with the model's control too)
    rule = None if result.control is None else result.control.to_rule()
    k0_prev, k0, iters = -1, 0, 0
    beta = math.nan
    se_k0 = math.nan
    while k0 != k0_prev:
        k0_prev = k0
        iters += 1
        if iters > maxiter:
            raise AllianceMetaError(
                f"trim and fill did not converge in {maxiter} iterations"
            )
        if k - k0 < 1:
            raise AllianceMetaError("trim and fill trimmed every study; k0 is not estimable")
        kern = core.kernel_from_padded(ys[None, : k - k0], vs[None, : k - k0])
        beta = float(core.fit(kern, method, "z", 0.95, rule=rule).beta[0, 0])
        yc = ys - beta
        signed = np.sign(yc) * _rank_first(np.abs(yc))
        if estimator == "R0":
            neg = signed[signed < 0]
            if neg.size == 0:
                raise AllianceMetaError("R0 is not defined: no study lies below the estimate")
            k0f = float(k - np.max(-neg) - 1)
            se_k0 = math.sqrt(2.0 * max(0.0, k0f) + 2.0)
        else:
            Sr = float(np.sum(signed[signed > 0]))
            if estimator == "L0":
                k0f = (4.0 * Sr - k * (k + 1)) / (2.0 * k - 1.0)
            else:
                disc = 2.0 * k * k - 4.0 * Sr + 0.25
                if disc < 0:  # metafor stops here with an error (NaN k0)
                    raise AllianceMetaError(
                        f"Q0 is not defined: 2k² - 4 S_r + 1/4 = {disc:g} < 0 (k = {k}, "
                        f"S_r = {Sr:g}); try the L0 or R0 estimator"
                    )
                k0f = k - 0.5 - math.sqrt(disc)
            varSr = (
                k * (k + 1) * (2 * k + 1)
                + 10 * k0f**3
                + 27 * k0f**2
                + 17 * k0f
                - 18 * k * k0f**2
                - 18 * k * k0f
                + 6 * k**2 * k0f
            ) / 24.0
            sd = math.sqrt(varSr) if varSr >= 0 else math.nan  # NaN as metafor's sqrt
            if estimator == "L0":
                se_k0 = 4.0 * sd / (2.0 * k - 1.0)
            else:
                denom = (k - 0.5) ** 2 - k0f * (2 * k - k0f - 1)
                se_k0 = 2.0 * sd / math.sqrt(denom) if denom > 0 else math.nan
        k0 = max(0, int(np.round(k0f)))
        se_k0 = max(0.0, se_k0) if math.isfinite(se_k0) else se_k0

    if k0 == 0:
        return TrimAndFillResult(
            k0=0,
            k0_se=se_k0,
            side=side,
            estimator=estimator,
            result=result,
            yi=yi0.copy(),
            vi=vi0.copy(),
            labels=result.labels,
            filled=np.zeros(k, dtype=bool),
            iterations=iters,
        )
    # reflect the k0 most extreme effects about beta, back on the original scale
    fill_flip = 2.0 * beta - ys[k - k0 :]
    fill_y = -fill_flip if side == "right" else fill_flip
    fill_v = vs[k - k0 :]
    yi = np.concatenate([yi0, fill_y])
    vi = np.concatenate([vi0, fill_v])
    labels = (*result.labels, *(f"Filled {j + 1}" for j in range(k0)))
    filled = np.concatenate([np.zeros(k, dtype=bool), np.ones(k0, dtype=bool)])
    aug = _pool_single(
        yi,
        vi,
        labels,
        method=result.method,
        test=result.test,
        level=result.level,
        measure=result.measure,
        control=result.control,
    )
    return TrimAndFillResult(
        k0=k0,
        k0_se=se_k0,
        side=side,
        estimator=estimator,
        result=aug,
        yi=yi,
        vi=vi,
        labels=labels,
        filled=filled,
        iterations=iters,
    )


# ---------------------------------------------------------------------------
# Fail-safe N
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class FailSafeN(ResultDisplay):
    """Result of :func:`fail_safe_n` (metafor's ``fsn``).

    Attributes
    ----------
    n : int or float
        The fail-safe N (an integer; ``inf`` for Orwin's method when the target is
        0).
    method : {"rosenthal", "orwin", "rosenberg"}
        The method.
    target : float or None
        Orwin's target effect, its sign set to that of the mean effect (``None`` for
        the other methods).
    pvalue : float or None
        Rosenthal: one-sided p-value of Stouffer's combined z; Rosenberg: two-sided
        p-value of the equal-effects estimate; ``None`` for Orwin.
    mean_effect : float or None
        Orwin: unweighted mean effect; Rosenberg: inverse-variance weighted mean.
    alpha : float
        Significance level.
    k : int
        Number of studies.
    """

    n: int | float
    method: str
    target: float | None
    pvalue: float | None
    mean_effect: float | None
    alpha: float
    k: int

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of every field."""
        frame: pd.DataFrame = pd.DataFrame([attrs.asdict(self)])
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary like metafor's ``print(fsn(...))``."""
        info = [("Method:", self.method), ("Fail-safe N:", f"{self.n:g}")]
        if self.target is not None:
            info.append(("Target effect:", f"{self.target:.4f}"))
        if self.mean_effect is not None:
            info.append(("Mean effect:", f"{self.mean_effect:.4f}"))
        if self.pvalue is not None:
            info.append(("p-value:", fmt_p(self.pvalue)))
        info += [("alpha:", f"{self.alpha:g}"), ("Studies (k):", str(self.k))]
        return frame_summary("Fail-safe N", info)

    def __str__(self) -> str:
        return str(self.summary())


def _fsn_round(n: float) -> int:
    """Round a fail-safe N up, or to the nearest integer within √ε of it (metafor)."""
    if abs(n - round(n)) >= math.sqrt(float(np.finfo(np.float64).eps)):
        return math.ceil(n)
    return round(n)


def fail_safe_n(
    result: PoolResult,
    method: Literal["rosenthal", "orwin", "rosenberg"] = "rosenthal",
    target: float | None = None,
    *,
    alpha: float = 0.05,
) -> FailSafeN:
    """The fail-safe N: how many null studies would overturn the conclusion.

    Parameters
    ----------
    result : PoolResult
        A fitted pooled result (only its ``yi`` and ``vi`` are used, as ``fsn``).
    method : {"rosenthal", "orwin", "rosenberg"}
        The file-drawer method (case-insensitive).
    target : float, optional
        Orwin's target (trivial) effect; default half the unweighted mean effect.
    alpha : float
        Significance level (metafor's default .05).

    Returns
    -------
    FailSafeN

    Notes
    -----
    With ``z_i = y_i/√v_i`` and ``z_α`` the upper α quantile of the normal:

    * Rosenthal (1979): ``N = max(0, (Σ z_i)² / z_α² - k)``, the number of
      studies with z = 0 that bring Stouffer's ``|Σ z_i| / √(k + N)`` down to
      ``z_α`` (one-sided).
    * Orwin (1983): ``N = max(0, k (ȳ - t) / t)`` with ``ȳ`` the unweighted
      mean effect and target ``t`` (``ȳ/2`` by default; a target of the opposite
      sign of ``ȳ`` is negated first); infinite if ``t = 0``.
    * Rosenberg (2005): with ``w_i = 1/v_i``,
      ``N = max(0, k ((Σ w_i y_i / z_{α/2})² - Σ w_i) / Σ w_i)``, the number of
      studies of average weight and zero effect that make the equal-effects
      estimate non-significant (two-sided).

    ``N`` is rounded up to an integer, or to the nearest one when it lies within
    ``√ε ≈ 1.5e-8`` of it (so that rounding error in an exact integer does not add
    a study), as in metafor 3.8.1's ``fsn``.

    References
    ----------
    Rosenthal, R. (1979). The "file drawer problem" and tolerance for null results.
    *Psychological Bulletin*, 86(3), 638-641.

    Orwin, R. G. (1983). A fail-safe N for effect size in meta-analysis. *Journal of
    Educational Statistics*, 8(2), 157-159.

    Rosenberg, M. S. (2005). The file-drawer problem revisited: A general weighted
    method for calculating fail-safe numbers in meta-analysis. *Evolution*, 59(2),
    464-468.
    """
    _refuse_zero_variance(result, "the fail-safe N (z = yi / sqrt(vi))")
    yi, vi = result.yi, result.vi
    k = int(yi.size)
    meth = str(method).lower()
    if not 0.0 < alpha < 1.0:
        raise ModelSpecificationError(f"alpha must be in (0, 1), got {alpha!r}")
    if meth == "rosenthal":
        zi = yi / np.sqrt(vi)
        z_avg = abs(float(np.sum(zi)) / math.sqrt(k))
        pval = float(norm_sf(z_avg))
        zcrit = z_critical(1.0 - 2.0 * alpha)  # the one-sided 1 - alpha quantile
        n = _fsn_round(max(0.0, k * (z_avg / zcrit) ** 2 - k))
        return FailSafeN(n, "rosenthal", None, pval, None, alpha, k)
    if meth == "orwin":
        mean = float(np.mean(yi))
        tgt = mean / 2.0 if target is None else float(target)
        if tgt == 0.0:
            n_o: int | float = math.inf
        else:
            if np.sign(tgt) != np.sign(mean):
                tgt = -tgt
            n_o = _fsn_round(max(0.0, k * (mean - tgt) / tgt))
        return FailSafeN(n_o, "orwin", tgt, None, mean, alpha, k)
    if meth == "rosenberg":
        wi = 1.0 / vi
        sw = float(np.sum(wi))
        swy = float(np.sum(wi * yi))
        mean = swy / sw
        zval = mean * math.sqrt(sw)
        pval = float(2.0 * norm_sf(abs(zval)))
        wp = (swy / z_critical(1.0 - alpha)) ** 2 - sw
        n = _fsn_round(max(0.0, k * wp / sw))
        return FailSafeN(n, "rosenberg", None, pval, mean, alpha, k)
    raise ModelSpecificationError(
        f"method must be 'rosenthal', 'orwin' or 'rosenberg', got {method!r}"
    )
