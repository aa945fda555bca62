"""Cluster-robust inference for any fitted model: ``robust(fit, cluster)``.

CR2 standard errors with Satterthwaite degrees of freedom and the HTZ Wald test,
exact to clubSandwich 0.5.8 with the model's own working weights; CR1 is metafor's
``robust(fit, cluster)``.  The numerical work is :mod:`alliance_meta.core.sandwich`;
this module turns a fit into its design, effects, coefficients and marginal
covariance blocks, and wraps the answer in a frozen result.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.iolib.summary import Summary

from alliance_meta.core.sandwich import (
    ADJUSTMENTS,
    ClusterWald,
    CRType,
    Sandwich,
    chi2_cluster_test,
    cluster_coef_tests,
    cluster_f_test,
    cluster_sandwich,
    htz_test,
)
from alliance_meta.exceptions import (
    FewStudiesWarning,
    InvalidStudyError,
    ModelSpecificationError,
)
from alliance_meta.models.protocol import FittedModel
from alliance_meta.results.base import IntervalArray, freeze_arrays
from alliance_meta.results.display import ResultDisplay
from alliance_meta.results.summary import coefficient_frame, frame_summary
from alliance_meta.results.wald import CoefficientSpec, coefficient_positions

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

WaldTestKind = Literal["HTZ", "chi2"]

__all__ = ["RobustResult", "RobustWaldTest", "robust"]

#: Satterthwaite df below this make t and F p-values unreliable (Tipton, 2015;
#: Pustejovsky & Tipton, 2018; clubSandwich's documentation).
MIN_RELIABLE_DF = 4.0


def _as_fit(fit: object) -> FittedModel:
    """The fitted model whose blocks ``robust`` uses: any fit of the fitted-model
    protocol, or the common-τ² model of a subgroup analysis."""
    if hasattr(fit, "common_model"):
        common = fit.common_model
        if common is None:
            raise ModelSpecificationError(
                "this subgroup analysis pooled each subgroup with its own tau^2 "
                "(tau2='separate'): there is no single model to take cluster-robust "
                "inference of; use subgroup_analysis(..., tau2='common')"
            )
        fit = common
    if not callable(getattr(fit, "marginal_blocks", None)):
        raise TypeError(
            "robust() needs a fitted model (random_effects, fixed_effect, "
            "meta_regression, a common-tau^2 subgroup analysis, multilevel or "
            f"multivariate), not {type(fit).__name__}"
        )
    return fit  # type: ignore[return-value]


def _cluster_codes(fit: object, cluster: object, k: int) -> tuple[IntArray, list[Any]]:
    """Cluster codes ``0 … G − 1`` (in sorted label order where sortable) and labels."""
    if isinstance(cluster, str):
        levels = getattr(fit, "levels", None)
        if not isinstance(levels, Mapping):
            raise ModelSpecificationError(
                f"cluster={cluster!r} names a level, but this fit has no levels; give "
                f"one cluster label per effect ({k} labels)"
            )
        if cluster not in levels:
            raise ModelSpecificationError(
                f"cluster={cluster!r} is not a level of the fit (levels: "
                f"{', '.join(map(str, levels))})"
            )
        cluster = levels[cluster]
    if isinstance(cluster, (np.ndarray, pd.Series, pd.Index)) and np.asarray(
        cluster
    ).dtype.kind in "iufb":
        # a numeric array: factorised natively (no Python objects)
        values = np.asarray(cluster)
    else:
        # a list (whose mixed labels, e.g. 1 and "1", must stay distinct), a
        # categorical or an object array
        try:
            values = np.asarray(cluster, dtype=object)
        except (TypeError, ValueError):
            raise InvalidStudyError(
                "cluster must be one label per effect", field="cluster"
            ) from None
    if values.ndim != 1:
        raise InvalidStudyError(
            f"cluster must be one label per effect (a 1-d sequence); got shape "
            f"{values.shape}",
            field="cluster",
        )
    if values.shape[0] != k:
        raise InvalidStudyError(
            f"cluster has {values.shape[0]} labels but the fit has {k} effects",
            field="cluster",
        )
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # labels of mixed, unorderable types
        codes, uniques = pd.factorize(values, sort=False)
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0])
        raise InvalidStudyError("cluster label is missing", study=str(row), field="cluster")
    return codes.astype(np.int64), list(uniques)


def _has_intercept(X: FloatArray, names: Sequence[str]) -> bool:
    return bool(names and names[0] == "intrcpt") or bool(
        X.shape[1] and np.all(X[:, 0] == 1.0)
    )


def _warn_few_df(df: FloatArray, what: str) -> None:
    low = np.isfinite(df) & (df < MIN_RELIABLE_DF)
    if low.any():
        warnings.warn(
            f"Satterthwaite degrees of freedom below {MIN_RELIABLE_DF:g} ({what}: "
            f"{', '.join(f'{d:.3g}' for d in np.asarray(df)[low])}); the robust p-values "
            "and confidence intervals are unreliable (Tipton, 2015; Pustejovsky & "
            "Tipton, 2018)",
            FewStudiesWarning,
            stacklevel=3,
        )


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class RobustWaldTest(ResultDisplay):
    """A cluster-robust Wald test that some coefficients are zero.

    Attributes
    ----------
    test : str
        ``"HTZ"`` (Tipton & Pustejovsky, 2015), ``"F"`` (metafor's robust ``QM``
        under CR1) or ``"chi2"`` (naive).
    F : float
        The test statistic: ``δ Q / q`` for HTZ, ``Q / q`` otherwise.
    df_num, df_denom : int, float
        Degrees of freedom (``df_denom`` is ``inf`` for the χ² test).
    pvalue : float
    Q : float
        The unadjusted Wald statistic ``β_S' V_S⁻¹ β_S`` (χ² on ``q`` df).
    coefs : tuple of str
        The tested coefficients.
    """

    test: str
    F: float
    df_num: int
    df_denom: float
    pvalue: float
    Q: float
    coefs: tuple[str, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row: the test."""
        frame: pd.DataFrame = pd.DataFrame(
            {
                "F": [self.F],
                "df_num": [self.df_num],
                "df_denom": [self.df_denom],
                "pvalue": [self.pvalue],
                "Q": [self.Q],
            },
            index=pd.Index([self.test], name="test"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary like clubSandwich's ``Wald_test`` print."""
        return frame_summary(
            "Cluster-robust Wald test",
            [("Test:", self.test), ("Coefficients:", ", ".join(self.coefs))],
            self.to_frame(),
        )

    def __str__(self) -> str:
        return str(self.summary())


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class RobustResult(ResultDisplay):
    """Cluster-robust inference for a fitted model (:func:`robust`).

    Attributes
    ----------
    coef_names : tuple of str
    coef, se, statistic, df, pvalue : ndarray
        Coefficients (the fit's), robust standard errors, t statistics, degrees of
        freedom (one per coefficient) and two-sided p-values.
    ci : IntervalArray
        Confidence intervals at ``level`` (``.low``, ``.high``).
    vcov : ndarray
        The robust variance matrix.
    n_clusters : int
    adjust : str
        ``"CR0"``, ``"CR1"`` or ``"CR2"``.
    level : float
    k : int
        Number of effects.
    """

    _repr_fields = ("coef_names", "coef", "pvalue", "n_clusters", "adjust", "k")

    coef_names: tuple[str, ...]
    coef: FloatArray = attrs.field(eq=False)
    se: FloatArray = attrs.field(eq=False)
    statistic: FloatArray = attrs.field(eq=False)
    df: FloatArray = attrs.field(eq=False)
    pvalue: FloatArray = attrs.field(eq=False)
    ci: IntervalArray
    vcov: FloatArray = attrs.field(eq=False, repr=False)
    n_clusters: int
    adjust: str
    level: float
    k: int
    _sandwich: Sandwich = attrs.field(eq=False, repr=False, alias="sandwich")
    _intercept: bool = attrs.field(repr=False, alias="intercept")

    def _positions(self, coefs: CoefficientSpec) -> npt.NDArray[np.intp]:
        return coefficient_positions(self.coef_names, coefs, self._intercept)

    def wald_test(
        self, coefs: Sequence[int | str] | int | str | None = None, *, test: WaldTestKind = "HTZ"
    ) -> RobustWaldTest:
        """Test that the chosen coefficients are all zero.

        Parameters
        ----------
        coefs : sequence of int (or str), optional
            0-based coefficient positions (or names); default all but the intercept
            (all in a model without one; the intercept in an intercept-only model, as
            metafor's ``btt``).
        test : {"HTZ", "chi2"}
            ``"HTZ"``: the small-sample test of the estimator (HTZ for CR0/CR2;
            metafor's ``F = Q / q`` on ``(q, n − p)`` df for CR1); ``"chi2"``: the
            naive ``Q`` on χ²(q).

        Returns
        -------
        RobustWaldTest

        Notes
        -----
        ``Q = β_S' (V^R_S)⁻¹ β_S``.  HTZ (Tipton & Pustejovsky, 2015; clubSandwich's
        ``Wald_test(test = "HTZ")``) refers ``δ Q / q`` to ``F(q, ν − q + 1)`` with
        ``δ = (ν − q + 1)/ν`` and ``ν`` from a Hotelling T² approximation whose
        variance is matched under the working model.
        """
        btt = self._positions(coefs)
        s = self._sandwich
        res: ClusterWald
        if test == "chi2":
            res = chi2_cluster_test(s, btt)
        elif test == "HTZ":
            if s.df_kind == "clusters":
                res = cluster_f_test(s, btt)
            else:
                res = htz_test(s, btt)
                _warn_few_df(np.array([res.df_denom]), "HTZ denominator")
        else:
            raise ModelSpecificationError(f"test must be 'HTZ' or 'chi2', not {test!r}")
        return RobustWaldTest(
            res.test,
            float(res.F),
            int(res.df_num),
            float(res.df_denom),
            float(res.pvalue),
            float(res.Q),
            tuple(self.coef_names[i] for i in btt),
        )

    def to_frame(self) -> pd.DataFrame:
        """Coefficient table: one row per coefficient."""
        return coefficient_frame(
            self.coef_names, self.coef, self.se, self.statistic, self.pvalue, self.ci, df=self.df
        )

    def summary(self) -> Summary:
        """A statsmodels ``Summary``: the estimator, the clusters and the coefficient table."""
        spec = ADJUSTMENTS[self.adjust]
        info = [
            ("Estimator:", self.adjust),
            ("Clusters:", str(self.n_clusters)),
            ("Effects (k):", str(self.k)),
            ("df:", "Satterthwaite" if spec.df == "satterthwaite" else "n - p"),
            ("Level:", f"{self.level:g}"),
        ]
        notes = [spec.description + "."]
        if len(self.coef_names) > (1 if self._intercept else 0):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FewStudiesWarning)
                w = self.wald_test()
            notes.append(
                f"Wald test ({w.test}) of {', '.join(w.coefs)}: F = {w.F:.4f} on "
                f"({w.df_num}, {w.df_denom:.4g}) df, p = {w.pvalue:.4g}."
            )
        if spec.df == "satterthwaite" and np.any(self.df < MIN_RELIABLE_DF):
            notes.append(
                f"Some df are below {MIN_RELIABLE_DF:g}: p-values and CIs are unreliable."
            )
        return frame_summary("Cluster-robust inference", info, self.to_frame(), notes)

    def __str__(self) -> str:
        return str(self.summary())


def robust(
    fit: object,
    cluster: str | Sequence[Hashable] | npt.ArrayLike,
    *,
    adjust: CRType = "CR2",
) -> RobustResult:
    """Cluster-robust standard errors, t tests and CIs of a fitted model.

    Parameters
    ----------
    fit : fitted model
        A ``random_effects``/``fixed_effect`` result, a ``meta_regression`` result,
        a common-τ² ``subgroup_analysis`` (its ``common_model``), or a
        multilevel/multivariate fit (anything with ``marginal_blocks``).
    cluster : sequence or str
        One cluster label per effect, or the name of one of the fit's levels.
    adjust : {"CR2", "CR1", "CR0"}
        ``"CR2"`` (default): Bell & McCaffrey's bias-reduced linearisation with the
        model's own working weights, t tests on Satterthwaite df for each
        coefficient (clubSandwich's ``coef_test(fit, vcov = "CR2")``); ``"CR1"``:
        metafor's ``robust(fit, cluster)``, scaled by ``n/(n − p)`` with ``n``
        clusters, t tests on ``n − p`` df; ``"CR0"``: no adjustment (Satterthwaite
        df).

    Returns
    -------
    RobustResult

    Raises
    ------
    InvalidStudyError
        ``cluster`` has the wrong length or a missing label.
    ModelSpecificationError
        One cluster only; fewer clusters than coefficients (``n ≤ p`` for CR1);
        clusters that split a block of correlated effects of a multilevel fit.

    Warns
    -----
    FewStudiesWarning
        A Satterthwaite df is below 4: the p-values are unreliable.

    Notes
    -----
    With ``W_j = M_j⁻¹`` the model's weights in cluster ``j``, ``B = (X'WX)⁻¹`` and
    residuals ``r = y − Xβ̂``, ``V^R = B [Σ_j X_j'W_j A_j r_j r_j' A_j' W_j X_j] B``;
    CR2 takes ``A_j = F_j' [F_j (M_j − X_j B X_j') F_j']^{-1/2} F_j`` (``F_j'F_j = M_j``),
    which makes ``V^R`` unbiased when the working model is right (Bell &
    McCaffrey, 2002; Tipton, 2015; Pustejovsky & Tipton, 2018).  The
    Satterthwaite df ``ν_i = 2 E[V^R_ii]² / Var[V^R_ii]`` are computed under the
    working model; below 4 the tests are unreliable.  CR1 is metafor's
    ``robust()`` (Hedges, Tipton & Johnson, 2010); the HTZ Wald test of
    :meth:`RobustResult.wald_test` is Tipton & Pustejovsky's (2015).  See
    :mod:`alliance_meta.core.sandwich` for the computation.

    References
    ----------
    Bell, R. M., & McCaffrey, D. F. (2002). Bias reduction in standard errors for
    linear regression with multi-stage samples. *Survey Methodology*, 28(2),
    169-181.

    Hedges, L. V., Tipton, E., & Johnson, M. C. (2010). Robust variance estimation
    in meta-regression with dependent effect size estimates. *Research Synthesis
    Methods*, 1(1), 39-65.

    Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods for cluster-robust
    variance estimation and hypothesis testing in fixed effects models. *Journal of
    Business & Economic Statistics*, 36(4), 672-683.

    Tipton, E. (2015). Small sample adjustments for robust variance estimation with
    meta-regression. *Psychological Methods*, 20(3), 375-393.

    Tipton, E., & Pustejovsky, J. E. (2015). Small-sample adjustments for tests of
    moderators and model fit using robust variance estimation in meta-regression.
    *Journal of Educational and Behavioral Statistics*, 40(6), 604-634.
    """
    if adjust not in ADJUSTMENTS:
        raise ModelSpecificationError(
            f"adjust must be one of {', '.join(ADJUSTMENTS)}, not {adjust!r}"
        )
    bf = _as_fit(fit)
    X = np.asarray(bf.X, dtype=np.float64)
    y = np.asarray(bf.yi, dtype=np.float64)
    coef = np.atleast_1d(np.asarray(bf.coef, dtype=np.float64))
    names = tuple(str(n) for n in bf.coef_names)
    k, p = X.shape
    codes, _ = _cluster_codes(fit, cluster, k)
    n = int(codes.max()) + 1
    if n < 2:
        raise ModelSpecificationError(
            "all effects are in one cluster: cluster-robust variance needs at least two "
            "clusters"
        )
    if n < p or (adjust == "CR1" and n == p):
        need = "more clusters than" if adjust == "CR1" else "at least as many clusters as"
        raise ModelSpecificationError(
            f"{n} clusters for {p} coefficients: {adjust} needs {need} coefficients "
            f"({adjust} is undefined here)"
        )
    try:
        index, M = bf.marginal_blocks(codes)
    except ModelSpecificationError as err:
        raise ModelSpecificationError(
            f"the clusters split a block of correlated effects (effects that share a "
            f"random effect or a sampling covariance must be in the same cluster): {err}"
        ) from err
    s = cluster_sandwich(X, y, codes, np.asarray(index), np.asarray(M), coef, adjust)
    tests = cluster_coef_tests(s, float(bf.level))
    if s.df_kind == "satterthwaite":
        _warn_few_df(s.df, "coefficients " + ", ".join(
            nm for nm, d in zip(names, s.df, strict=True) if d < MIN_RELIABLE_DF
        ))
    return RobustResult(
        names,
        coef,
        tests.se[0],
        tests.statistic[0],
        s.df,
        tests.pvalue[0],
        IntervalArray(tests.ci_low[0], tests.ci_high[0]),
        s.vcov,
        n,
        adjust,
        float(bf.level),
        k,
        sandwich=s,
        intercept=_has_intercept(X, names),
    )
