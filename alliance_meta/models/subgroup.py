"""Subgroup analysis: pooled estimates per subgroup and the test of subgroup differences.

All subgroups are pooled by one call of the vectorised core over a ragged layout
(one row per subgroup); the between-subgroup test is a second core call, either the
equal-effects Q of the subgroup estimates (separate τ²) or the omnibus QM of a
mixed-effects model with the subgroup factor (common τ²).

References
----------
Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009).
*Introduction to Meta-Analysis*, chapter 19. Wiley.

Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package.
*Journal of Statistical Software*, 36(3), 1-48.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.iolib.summary import Summary

from alliance_meta import core
from alliance_meta._transforms import back_transform, natural_scale_name
from alliance_meta._types import FloatArray, Measure, Method, Test
from alliance_meta.core.estimators import CoreMethod
from alliance_meta.core.inference import chi2_sf
from alliance_meta.core.layout import fit_groups
from alliance_meta.core.vcov import CoreTest
from alliance_meta.data.design import check_design, factor_codes
from alliance_meta.exceptions import (
    ConvergenceWarning,
    FewStudiesWarning,
    InvalidStudyError,
    ModelSpecificationError,
)
from alliance_meta.models._inputs import check_level, check_method, check_test, resolve_input
from alliance_meta.models.pooling import (
    PoolResult,
    _pool_single,
    fit_one,
    reset_message,
    result_from_core,
)
from alliance_meta.results.base import FrozenMap, IntervalArray, freeze_arrays
from alliance_meta.results.summary import info_table, make_summary, value_table

if TYPE_CHECKING:
    from alliance_meta.data.study import Moderator, Study, StudySet

__all__ = ["SubgroupResult", "subgroup_analysis"]

Tau2Mode = Literal["separate", "common"]


def _readonly_mapping(d: Mapping[str, Any]) -> Mapping[str, Any]:
    # picklable and deep-copyable, unlike types.MappingProxyType
    return FrozenMap(d)


@attrs.frozen(field_transformer=freeze_arrays)
class SubgroupResult:
    """Subgroup analysis with a test of subgroup differences.

    Attributes
    ----------
    groups : mapping of str to PoolResult
        Each subgroup pooled on its own, in level order.
    Q_between, Q_between_df, Q_between_pvalue : float, int, float
        Test of subgroup differences (χ² on ``G - 1`` df; under ``tau2="common"``
        with ``test`` t/knha/adhoc it is metafor's F statistic, with denominator df
        ``Q_between_df2``).
    Q_between_df2 : int or None
        Denominator df of the F test (common τ² with a t-type test), else ``None``.
    Q_within : mapping of str to float
        Cochran's Q within each subgroup.
    Q_within_total, Q_within_df, Q_within_pvalue : float, int, float
        Their sum, its df ``Σ (k_g - 1)`` and χ² p-value.
    tau2_mode : {"separate", "common"}
        How τ² was treated in the between-subgroup test.
    tau2, QE, QE_df, QE_pvalue : float or None
        Under ``tau2="common"``: the common (residual) τ² and the residual
        heterogeneity test of ``rma(yi, vi, mods = ~ factor(g))``; ``None`` under
        ``"separate"``.
    common_estimate, common_se : ndarray or None
        Under ``tau2="common"``: each subgroup's estimate and its standard error in
        the common-τ² model, in the order of ``groups`` (the coefficients of
        ``rma(yi, vi, mods = ~ factor(g) - 1)``; Knapp-Hartung scaled by the joint
        model under knha/adhoc); ``None`` under ``"separate"``.
    common_ci : IntervalArray or None
        Their confidence intervals (t on ``k - G`` df under t/knha/adhoc).
    overall : PoolResult
        Every study pooled together with the same method, test and level (the
        overall diamond of a forest plot).
    """

    groups: Mapping[str, PoolResult] = attrs.field(converter=_readonly_mapping)
    Q_between: float
    Q_between_df: int
    Q_between_pvalue: float
    Q_between_df2: int | None
    Q_within: Mapping[str, float] = attrs.field(converter=_readonly_mapping)
    Q_within_total: float
    Q_within_df: int
    Q_within_pvalue: float
    tau2_mode: Tau2Mode
    tau2: float | None
    QE: float | None
    QE_df: int | None
    QE_pvalue: float | None
    by: str
    k: int
    method: CoreMethod
    test: CoreTest
    level: float
    measure: Measure
    overall: PoolResult = attrs.field(repr=False)
    common_estimate: FloatArray | None = attrs.field(default=None, eq=False)
    common_se: FloatArray | None = attrs.field(default=None, eq=False)
    common_ci: IntervalArray | None = None

    def to_frame(self) -> pd.DataFrame:
        """One row per subgroup (the fields of :meth:`PoolResult.to_frame`).

        Under ``tau2="common"`` the columns ``estimate_common``, ``se_common``,
        ``ci_low_common`` and ``ci_high_common`` add the common-τ² model's values.
        """
        frames = [res.to_frame() for res in self.groups.values()]
        frame: pd.DataFrame = pd.concat(frames, ignore_index=True)
        frame.index = pd.Index(list(self.groups), name=self.by)
        if self.common_estimate is not None:
            assert self.common_se is not None and self.common_ci is not None
            frame["estimate_common"] = self.common_estimate
            frame["se_common"] = self.common_se
            frame["ci_low_common"] = self.common_ci.low
            frame["ci_high_common"] = self.common_ci.high
        return frame

    def summary(self) -> Summary:
        """Table like R's ``meta``: one row per subgroup, then the test of differences.

        Estimates and CIs are back-transformed to the natural scale (r for Fisher's
        z, ratios for log ratios).
        """
        scale = natural_scale_name(self.measure)
        lo, hi = f"[{(1 - self.level) / 2:.3f}", f"{1 - (1 - self.level) / 2:.3f}]"
        rows = []
        for g, res in enumerate(self.groups.values()):
            m = res.measure
            est, low, high, tau2 = res.estimate, res.ci.low, res.ci.high, res.tau2
            if self.common_estimate is not None and self.common_ci is not None:
                # the common-τ² model's rows, as R's meta with tau.common = TRUE
                est = self.common_estimate[g]
                low, high = self.common_ci.low[g], self.common_ci.high[g]
                tau2 = self.tau2 if self.tau2 is not None else tau2
            rows.append([
                str(res.k),
                f"{back_transform(est, m):.4f}",
                f"{back_transform(low, m):.4f}",
                f"{back_transform(high, m):.4f}",
                f"{res.Q:.2f}",
                f"{res.I2:.1f}",
                f"{tau2:.4f}",
            ])
        est_name = scale if scale != "GEN" else "estimate"
        model = "Equal-effects model" if self.method == "EE" else "Random-effects model"
        left = [
            ("Method:", self.method),
            ("Measure:", self.measure),
            ("Studies (k):", str(self.k)),
            ("Subgroups:", str(len(self.groups))),
        ]
        right = [
            ("Subgroups by:", self.by),
            ("tau^2:", self.tau2_mode),
            ("Test:", self.test),
            ("Level:", f"{self.level:g}"),
        ]
        df_txt = (
            str(self.Q_between_df)
            if self.Q_between_df2 is None
            else f"{self.Q_between_df}, {self.Q_between_df2}"
        )
        stat = "Q" if self.Q_between_df2 is None else "F"
        tests = [
            [f"{self.Q_between:.2f}", df_txt, f"{self.Q_between_pvalue:.4g}"],
            [
                f"{self.Q_within_total:.2f}",
                str(self.Q_within_df),
                f"{self.Q_within_pvalue:.4g}",
            ],
        ]
        tables = [
            info_table(left, right, f"Subgroup analysis ({model})"),
            value_table(
                rows, ["k", est_name, lo, hi, "Q", "I^2 (%)", "tau^2"], list(self.groups)
            ),
            value_table(
                tests,
                [stat, "df", "p-value"],
                ["Between groups", "Within groups"],
                title="Test for subgroup differences",
            ),
        ]
        notes = []
        if self.tau2_mode == "common" and self.tau2 is not None:
            notes.append(
                f"Common tau^2 = {self.tau2:.4f}; residual QE({self.QE_df}) = "
                f"{self.QE:.2f} (p = {self.QE_pvalue:.4g}).  Estimates and CIs are those "
                "of the common-tau^2 model; Q and I^2 are each subgroup's own."
            )
        return make_summary(tables, notes)

    def __str__(self) -> str:
        return str(self.summary())


def subgroup_analysis(
    studies: StudySet | Sequence[Study] | None = None,
    *,
    by: str | Moderator | None = None,
    yi: npt.ArrayLike | None = None,
    vi: npt.ArrayLike | None = None,
    groups: npt.ArrayLike | None = None,
    method: Method = "REML",
    test: Test = "z",
    level: float = 0.95,
    tau2: Tau2Mode = "separate",
    measure: Measure = "GEN",
) -> SubgroupResult:
    """Pool each subgroup and test for subgroup differences (R's ``meta`` ``subgroup=``).

    Parameters
    ----------
    studies : StudySet or sequence of Study, optional
        The studies, with the moderator named by ``by``.
    by : str or Moderator, optional
        The grouping moderator (a ``Moderator`` fixes the level order and the
        reference level of the common-τ² model).
    yi, vi, groups : array_like, optional
        Effects, variances and group labels when ``studies`` is not given.
    method, test, level
        As for :func:`~alliance_meta.random_effects`.
    tau2 : {"separate", "common"}
        Separate τ² per subgroup (R's ``meta`` default) or one common τ².
    measure : str
        Effect-size measure of ``yi`` (taken from the studies when given).

    Returns
    -------
    SubgroupResult

    Raises
    ------
    InvalidStudyError
        Unknown moderator or group labels of the wrong length (naming the field).
    ModelSpecificationError
        An empty subgroup, fewer than two subgroups, or bad settings.

    Notes
    -----
    Each subgroup g is pooled on its own (``groups[g]``), with its own τ²_g.

    *Separate τ²* (Borenstein et al., 2009, ch. 19): the subgroup estimates
    ``μ̂_g`` with standard errors ``SE_g`` are combined in an equal-effects model,
    ``Q_between = Σ_g (μ̂_g - μ̄)² / SE_g²``, ``μ̄ = Σ μ̂_g SE_g⁻² / Σ SE_g⁻²``,
    referred to χ² on ``G - 1`` df.

    *Common τ²* (Viechtbauer, 2010): the mixed-effects model
    ``rma(yi, vi, mods = ~ factor(g), method)``, whose omnibus
    ``QM = β̂' Var(β̂)⁻¹ β̂`` over the ``G - 1`` contrasts is the test (an F test
    ``QM/(G-1)`` on ``(G-1, k-G)`` df under t/knha/adhoc); its τ², QE and QE
    p-value are reported too, and each subgroup's estimate in that model
    (``common_estimate``, ``common_se``, ``common_ci``: the coefficients of
    ``rma(yi, vi, mods = ~ factor(g) - 1)``, which the summary shows).  Under EE both
    versions coincide.

    ``Q_within`` is each subgroup's Cochran Q; their sum is χ² on ``Σ (k_g - 1)``
    df under the equal-effects model (Thompson & Higgins, 2002).

    Thompson, S. G., & Higgins, J. P. T. (2002). How should meta-regression analyses
    be undertaken and interpreted? *Statistics in Medicine*, 21(11), 1559-1573.
    """
    from alliance_meta.data.study import Moderator, StudySet

    core_method = check_method(method)
    core_test = check_test(test)
    lv = check_level(level)
    if tau2 not in ("separate", "common"):
        raise ModelSpecificationError(f"tau2 must be 'separate' or 'common', got {tau2!r}")
    y, v, labels, meas = resolve_input(studies, yi, vi, measure)

    spec: Moderator | None = None
    if studies is not None:
        if groups is not None:
            raise ModelSpecificationError("with studies, give `by`, not `groups`")
        if by is None:
            raise ModelSpecificationError("give `by`, the moderator that defines subgroups")
        sset = studies if isinstance(studies, StudySet) else StudySet(tuple(studies))
        if isinstance(by, Moderator):
            spec, name = by, by.name
        else:
            name = str(by)
        # an unknown name raises InvalidStudyError naming it and the known ones
        values = np.asarray(sset.moderator(name))
        if spec is None and sset.moderator_spec(name).kind == "continuous":
            raise ModelSpecificationError(
                f"moderator {name!r} is numeric (continuous): subgroups need a categorical "
                f"one.  Group by its values with by=Moderator({name!r}, 'categorical'), or "
                "use meta_regression for a continuous moderator"
            )
    else:
        if groups is None:
            raise ModelSpecificationError("give `groups` (one label per study) with yi/vi")
        if isinstance(by, Moderator):
            spec, name = by, by.name
        else:
            name = "groups" if by is None else str(by)
        # object dtype for a list: numpy would turn ["a", nan] into the string "nan"
        values = groups if isinstance(groups, np.ndarray) else np.asarray(groups, dtype=object)
        if values.ndim != 1 or values.shape[0] != y.size:
            raise InvalidStudyError(
                f"groups has shape {values.shape}, expected ({y.size},)", field="groups"
            )
    levels, codes = factor_codes(values, spec, name, labels)
    G = len(levels)
    if G < 2:
        raise ModelSpecificationError(
            f"field {name!r}: need at least two subgroups, got {list(levels)}"
        )

    # -- every subgroup in one core call over a ragged layout --------------------
    fit = fit_groups(y, v, codes.astype(np.int64), G, core_method, core_test, lv)
    if not fit.converged.all():
        warnings.warn(
            f"the {core_method} estimator did not converge in some subgroups",
            ConvergenceWarning,
            stacklevel=2,
        )
    if fit.tau2_differs.any():
        reset = ", ".join(repr(levels[g]) for g in np.flatnonzero(fit.tau2_differs))
        warnings.warn(reset_message(core_method, f" in subgroup {reset}"), ConvergenceWarning,
                      stacklevel=2)
    if (fit.k == 1).any():
        warnings.warn(
            "some subgroups have k = 1: their tau^2 is 0 and inference uses z",
            FewStudiesWarning,
            stacklevel=2,
        )
    pooled: dict[str, PoolResult] = {}
    for g, lvl in enumerate(levels):
        idx = np.flatnonzero(codes == g)
        shown = "z" if idx.size == 1 else core_test
        pooled[lvl] = result_from_core(
            fit, g, y[idx], v[idx], tuple(labels[i] for i in idx), core_method, shown, lv, meas
        )

    q_within = {lvl: float(fit.QE[g]) for g, lvl in enumerate(levels)}
    qw_total = float(fit.QE.sum())
    qw_df = int((fit.k - 1).sum())

    qw_p = float(chi2_sf(qw_total, qw_df)) if qw_df > 0 else 1.0

    common_tau2: float | None = None
    common_QE: float | None = None
    common_QE_df: int | None = None
    common_QE_p: float | None = None
    common_est: FloatArray | None = None
    common_se: FloatArray | None = None
    common_ci: IntervalArray | None = None
    df2: int | None = None
    if tau2 == "separate":
        # EE model of the subgroup estimates with their standard errors (m = 1)
        kb = core.kernel_from_padded(fit.beta[None, :, 0], (fit.se[None, :, 0]) ** 2)
        between = core.fit(kb, "EE", "z", lv)
        Qb = float(between.QE[0])
        Qb_df = int(between.QE_df[0])
        Qb_p = float(between.QE_pvalue[0])
    else:
        ref = levels.index(spec.reference) if spec is not None and spec.reference else 0
        others = [g for g in range(G) if g != ref]
        X = np.ones((y.size, G))
        for j, g in enumerate(others):
            X[:, j + 1] = codes == g
        check_design(
            X, [f"subgroup {levels[g]}" for g in [ref, *others]], core_method,
            "use tau2='separate'",
        )
        common = fit_one(y, v, X, core_method, core_test, lv, "common-tau^2 model")
        Qb = float(common.QM[0])
        Qb_df = int(common.QM_df1[0])
        Qb_p = float(common.QM_pvalue[0])
        d2 = float(common.QM_df2[0])
        df2 = None if math.isnan(d2) else int(d2)
        common_tau2 = float(common.tau2[0])
        common_QE = float(common.QE[0])
        common_QE_df = int(common.QE_df[0])
        common_QE_p = float(common.QE_pvalue[0])
        # the subgroup estimates under the common τ²: the coefficients of the same
        # model without the intercept, L β with L the map from the treatment coding
        # (reference, then contrasts) to one mean per subgroup, and Var = L Vb L'
        L = np.zeros((G, G))
        L[:, 0] = 1.0
        for j, g in enumerate(others):
            L[g, j + 1] = 1.0
        common_est = L @ common.beta[0]
        common_se = np.sqrt(np.einsum("ij,jk,ik->i", L, common.vb[0], L))
        half = common.crit[0] * common_se
        common_ci = IntervalArray(common_est - half, common_est + half)

    return SubgroupResult(
        groups=pooled,
        Q_between=Qb,
        Q_between_df=Qb_df,
        Q_between_pvalue=Qb_p,
        Q_between_df2=df2,
        Q_within=q_within,
        Q_within_total=qw_total,
        Q_within_df=qw_df,
        Q_within_pvalue=qw_p,
        tau2_mode=tau2,
        tau2=common_tau2,
        QE=common_QE,
        QE_df=common_QE_df,
        QE_pvalue=common_QE_p,
        by=name,
        k=int(y.size),
        method=core_method,
        test=core_test,
        level=lv,
        measure=meas,
        overall=_pool_single(y, v, labels, method=core_method, test=core_test, level=lv,
                             measure=meas),
        common_estimate=common_est,
        common_se=common_se,
        common_ci=common_ci,
    )

