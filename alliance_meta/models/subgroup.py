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
from alliance_meta._types import FloatArray, Measure, Method, NanPolicy, Test
from alliance_meta.core.estimators import CoreMethod
from alliance_meta.core.inference import chi2_sf
from alliance_meta.core.layout import fit_groups
from alliance_meta.core.vcov import CoreTest
from alliance_meta.data.design import (
    categories_of,
    check_design,
    factor_codes,
    is_formula,
    make_design,
    moderator_columns,
)
from alliance_meta.data.measures import back_transform, natural_scale_name
from alliance_meta.exceptions import (
    ConvergenceWarning,
    FewStudiesWarning,
    InvalidStudyError,
    ModelSpecificationError,
)
from alliance_meta.models._inputs import (
    ModelInput,
    check_level,
    check_method,
    check_test,
    check_zero_variances,
    frame_column,
    resolve_model_input,
)
from alliance_meta.models.control import ControlSpec, as_control, as_rule
from alliance_meta.models.metareg import MetaRegressionResult, regression_result
from alliance_meta.models.pooling import (
    PoolResult,
    _num,
    _pool_single,
    check_positive_tau2,
    fit_one,
    reset_message,
    result_from_core,
)
from alliance_meta.results.base import FrozenMap, IntervalArray, freeze_arrays
from alliance_meta.results.display import (
    ResultDisplay,
    Transf,
    apa_number,
    effect_name,
    fmt_p,
    fmt_p_eq,
)
from alliance_meta.results.prediction import Prediction, make_prediction
from alliance_meta.results.report import (
    interval,
    level_text,
    pooled_sentence,
    tau2_text,
    test_clause,
)
from alliance_meta.results.summary import info_table, make_summary, value_table

if TYPE_CHECKING:
    from alliance_meta.data.study import Moderator, Study, StudySet

__all__ = ["SubgroupResult", "subgroup_analysis"]

Tau2Mode = Literal["separate", "common"]


def _readonly_mapping(d: Mapping[str, Any]) -> Mapping[str, Any]:
    # picklable and deep-copyable, unlike types.MappingProxyType
    return FrozenMap(d)


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class SubgroupResult(ResultDisplay):
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
    common_model : MetaRegressionResult or None
        Under ``tau2="common"``: the fitted common-τ² model itself,
        ``rma(yi, vi, mods = ~ g)`` (the intercept and one contrast per other
        subgroup), whose τ², QE and QM the attributes above report;
        :func:`~alliance_meta.robust` takes its cluster-robust inference.  ``None``
        under ``"separate"``.
    overall : PoolResult
        Every study pooled together with the same method, test and level (the
        overall diamond of a forest plot).
    """

    _repr_fields = ('by', 'groups', 'Q_between', 'Q_between_pvalue', 'tau2_mode', 'k', 'method')

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
    common_model: MetaRegressionResult | None = attrs.field(default=None, eq=False,
                                                            repr=False)

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
                _num(res.Q, 2),
                _num(res.I2, 1),
                f"{tau2:.4f}",
                f"{math.sqrt(tau2):.4f}",
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
            [f"{self.Q_between:.2f}", df_txt, fmt_p(self.Q_between_pvalue)],
            [
                _num(self.Q_within_total, 2),
                str(self.Q_within_df),
                fmt_p(self.Q_within_pvalue),
            ],
        ]
        tables = [
            info_table(left, right, f"Subgroup analysis ({model})"),
            value_table(
                rows, ["k", est_name, lo, hi, "Q", "I^2 (%)", "tau^2", "tau"], list(self.groups)
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
                f"Common tau^2 = {self.tau2:.4f} (tau = {math.sqrt(self.tau2):.4f}); "
                f"residual QE({self.QE_df}) = {_num(self.QE or math.nan, 2)} "
                f"(p {fmt_p_eq(self.QE_pvalue)}).  Estimates and CIs are those "
                "of the common-tau^2 model; Q and I^2 are each subgroup's own."
            )
        return make_summary(tables, notes)

    def __str__(self) -> str:
        return str(self.summary())

    def predict(self, *, transf: Transf = None) -> Prediction:
        """Each subgroup's estimate with its CI and prediction interval, optionally
        transformed (metafor's ``predict(fit, transf=)``).

        Under ``tau2="separate"`` each subgroup's own pooled model (as
        ``predict(rma(yi, vi, subset = g))``); under ``"common"`` the common-τ²
        model at each level (as ``predict(rma(yi, vi, mods = ~ factor(g) - 1),
        newmods = ...)``: its estimates, their CIs, and prediction intervals with the
        common τ²).

        Parameters
        ----------
        transf : True or callable, optional
            ``True`` for the measure's back-transformation, or any function.

        Returns
        -------
        Prediction
            One row per subgroup, in the order of ``groups``.
        """
        names = list(self.groups)
        if self.common_estimate is not None and self.common_se is not None:
            G = len(names)
            vcov = np.diag(self.common_se**2)
            assert self.tau2 is not None
            df = None if self.Q_between_df2 is None else float(self.Q_between_df2)
            return make_prediction(np.eye(G), self.common_estimate, vcov, self.tau2, df,
                                   self.level, measure=self.measure, transf=transf,
                                   labels=names)
        parts = [res.predict(transf=transf) for res in self.groups.values()]
        return Prediction(
            pred=np.concatenate([p.pred for p in parts]),
            se=np.concatenate([p.se for p in parts]),
            ci=IntervalArray(np.concatenate([p.ci.low for p in parts]),
                             np.concatenate([p.ci.high for p in parts])),
            pi=IntervalArray(np.concatenate([p.pi.low for p in parts]),
                             np.concatenate([p.pi.high for p in parts])),
            X=np.eye(len(parts)),
            level=self.level,
            labels=names,
            transf=parts[0].transf,
        )

    def report(self, digits: int = 2) -> str:
        """The subgroups and the test of their difference as sentences for a paper
        (APA style), estimates back-transformed to the natural scale: ``"patient:
        r = −0.31, 95% CI [−0.38, −0.24], k = 6, τ² = 0.0005, I² = 7%.  therapist:
        ...  Test of subgroup differences: Q(1) = 33.14, p < .001."``

        Parameters
        ----------
        digits : int
            Decimals of the estimates and their intervals.
        """
        parts = []
        for g, (name, res) in enumerate(self.groups.items()):
            if self.common_estimate is not None and self.common_ci is not None:
                # the common-τ² model's estimate; τ² is reported once, at the end
                m = self.measure
                lo = back_transform(float(self.common_ci.low[g]), m)
                hi = back_transform(float(self.common_ci.high[g]), m)
                est = back_transform(float(self.common_estimate[g]), m)
                parts.append(
                    f"{name}: {effect_name(m)} = {apa_number(est, digits)}, "
                    f"{level_text(self.level)} CI {interval(min(lo, hi), max(lo, hi), digits)}"
                    f", k = {res.k}"
                )
            else:
                parts.append(f"{name}: {pooled_sentence(res, digits)}")
        stat = "Q" if self.Q_between_df2 is None else "F"
        parts.append("Test of subgroup differences: " + test_clause(
            stat, self.Q_between, self.Q_between_df, self.Q_between_df2,
            self.Q_between_pvalue))
        if self.tau2_mode == "common" and self.tau2 is not None:
            parts[-1] += f" (common {tau2_text(self.tau2)})"
        return ". ".join(parts) + "."


def subgroup_analysis(
    studies: StudySet | Sequence[Study] | None = None,
    *,
    by: str | Moderator | None = None,
    yi: npt.ArrayLike | str | None = None,
    vi: npt.ArrayLike | str | None = None,
    groups: npt.ArrayLike | None = None,
    data: object = None,
    method: Method = "REML",
    test: Test = "z",
    level: float = 0.95,
    tau2: Tau2Mode = "separate",
    measure: Measure = "GEN",
    control: ControlSpec = None,
    nan_policy: NanPolicy = "raise",
) -> SubgroupResult:
    """Pool each subgroup and test for subgroup differences (R's ``meta`` ``subgroup=``).

    Parameters
    ----------
    studies : StudySet or sequence of Study, optional
        The studies, with the moderator named by ``by``.
    by : str or Moderator, optional
        The grouping: a moderator of the studies or a column of ``data`` (a
        ``Moderator`` fixes the level order and the reference level of the
        common-τ² model), or a one-sided R formula of one factor, as metafor's
        ``mods = ~ factor(g)`` (``"~ relevel(factor(alloc), ref = 'random')"``).
        Levels are sorted as R's ``factor()`` sorts them; a pandas ``Categorical``
        keeps its category order (the first category is the reference; unused
        categories are dropped).
    yi, vi : array_like or str, optional
        Effects and variances when ``studies`` is not given; with ``data`` the
        names of its columns (by default ``"yi"`` and ``"vi"``).
    groups : array_like, optional
        One group label per study, with ``yi``/``vi`` arrays.
    data : DataFrame, optional
        A data frame (or any object with the DataFrame interchange protocol) with
        the columns of ``yi``, ``vi`` and ``by``.
    method, test, level
        As for :func:`~alliance_meta.random_effects`.
    tau2 : {"separate", "common"}
        Separate τ² per subgroup (R's ``meta`` default) or one common τ².
    measure : str
        Effect-size measure of ``yi`` (taken from the studies when given).
    control : Control or mapping, optional
        Stop the iterative estimators as metafor's ``control`` does (see
        :class:`~alliance_meta.Control`); by default they are solved to 1e-10.
    nan_policy : {"raise", "omit"}
        With ``data``: a missing value in ``yi``, ``vi`` or ``by`` raises, naming the
        study (``"raise"``), or the study is dropped with a
        :class:`~alliance_meta.exceptions.DataOmittedWarning` (``"omit"``).

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

    Examples
    --------
    >>> import alliance_meta as am
    >>> import pandas as pd
    >>> df = pd.DataFrame({"yi": [0.1, 0.3, 0.35, 0.2, 0.5, 0.4],
    ...                    "vi": [0.01, 0.02, 0.015, 0.01, 0.02, 0.01],
    ...                    "arm": ["b", "a", "b", "a", "b", "a"]})
    >>> list(am.subgroup_analysis(data=df, by="arm").groups)
    ['a', 'b']
    """
    from alliance_meta.data.study import Moderator

    core_method = check_method(method)
    core_test = check_test(test)
    lv = check_level(level)
    if tau2 not in ("separate", "common"):
        raise ModelSpecificationError(f"tau2 must be 'separate' or 'common', got {tau2!r}")
    needed = () if by is None else moderator_columns(by)
    inp = resolve_model_input(studies, yi, vi, measure, data, nan_policy=nan_policy,
                              needed=needed)
    y, v, labels, meas = inp.yi, inp.vi, inp.labels, inp.measure
    check_zero_variances(v, labels, core_method)

    spec: Moderator | None = None
    cats: tuple[str, ...] | None = None
    levels_codes: tuple[tuple[str, ...], npt.NDArray[np.int64]] | None = None
    if inp.studies is not None or inp.data is not None:
        if groups is not None:
            raise ModelSpecificationError(
                "with studies or data=, give `by` (a moderator or column), not `groups`"
            )
        if by is None:
            raise ModelSpecificationError("give `by`, the moderator that defines subgroups")
        if isinstance(by, Moderator):
            spec, name = by, by.name
        else:
            name = str(by)
        if is_formula(name):
            name, levels_codes = _formula_groups(name, inp, labels)
            values = np.zeros(0)
        elif inp.data is not None:
            col = frame_column(inp.data, name, "by")
            cats = categories_of(col)
            values = col.to_numpy(dtype=object)
        else:
            assert inp.studies is not None
            sset = inp.studies
            # an unknown name raises InvalidStudyError naming it and the known ones
            values = np.asarray(sset.moderator(name))
            if spec is None and sset.moderator_spec(name).kind == "continuous":
                raise ModelSpecificationError(
                    f"moderator {name!r} is numeric (continuous): subgroups need a "
                    f"categorical one.  Group by its values with by=Moderator({name!r}, "
                    "'categorical'), or use meta_regression for a continuous moderator"
                )
    else:
        if groups is None:
            raise ModelSpecificationError("give `groups` (one label per study) with yi/vi")
        if isinstance(by, Moderator):
            spec, name = by, by.name
        else:
            name = "groups" if by is None else str(by)
        cats = categories_of(groups)
        # object dtype for a list: numpy would turn ["a", nan] into the string "nan"
        values = (groups if isinstance(groups, np.ndarray) and cats is None
                  else np.asarray(groups, dtype=object))
        if values.ndim != 1 or values.shape[0] != y.size:
            raise InvalidStudyError(
                f"groups has shape {values.shape}, expected ({y.size},)", field="groups"
            )
    if levels_codes is None:
        levels, codes = factor_codes(values, spec, name, labels, cats)
    else:
        levels, codes = levels_codes
    G = len(levels)
    if G < 2:
        raise ModelSpecificationError(
            f"field {name!r}: need at least two subgroups, got {list(levels)}"
        )

    # -- every subgroup in one core call over a ragged layout --------------------
    ctl = as_control(control)
    fit = fit_groups(y, v, codes.astype(np.int64), G, core_method, core_test, lv,
                     rule=as_rule(ctl))
    if (v == 0).any():
        for g, lvl in enumerate(levels):
            idx = np.flatnonzero(codes == g)
            check_positive_tau2(fit.tau2[g : g + 1], v[idx], [labels[i] for i in idx],
                                core_method, f"subgroup {lvl!r}")
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
            fit, g, y[idx], v[idx], tuple(labels[i] for i in idx), core_method, shown, lv, meas,
            ctl,
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
    common_model: MetaRegressionResult | None = None
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
        # rma(yi, vi, mods = ~ g): the subgroup factor, treatment-coded against the
        # reference level (intercept, then one indicator per other level in order)
        design = make_design(
            {Moderator(name, "categorical", tuple(levels), levels[ref]):
             np.asarray(levels, dtype=object)[codes]},
            k=y.size, labels=labels,
        )
        X = design.X
        check_design(
            X, [f"subgroup {levels[g]}" for g in [ref, *others]], core_method,
            "use tau2='separate'",
        )
        common = fit_one(y, v, X, core_method, core_test, lv, "common-tau^2 model",
                         labels=labels, control=ctl)
        common_model = regression_result(common, design, y, v, labels, core_method,
                                         core_test, lv, meas, ctl)
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
                             measure=meas, control=ctl),
        common_estimate=common_est,
        common_se=common_se,
        common_ci=common_ci,
        common_model=common_model,
    )



def _formula_groups(
    formula: str, inp: ModelInput, labels: Sequence[str]
) -> tuple[str, tuple[tuple[str, ...], npt.NDArray[np.int64]]]:
    """The subgroups of ``by="~ factor(...)"``: one factor, as R codes ``mods = ~ f``.

    Returns the factor's name (R's deparse) and its levels (reference first) with
    each study's level.
    """
    design = make_design(formula, k=len(labels), labels=labels, studies=inp.studies,
                         data=inp.data)
    fd = design.formula
    assert fd is not None
    factors = [c for c in fd.variables if c.kind == "factor"]
    if len(fd.variables) != 1 or not factors or len(fd.term_labels) != 1 or not fd.intercept:
        raise ModelSpecificationError(
            f"by={formula!r}: a subgroup formula has one factor and the intercept, e.g. "
            "'~ factor(g)' or \"~ relevel(factor(g), ref = 'b')\""
        )
    coding = factors[0]
    # the design with every column: intercept, then one indicator per other level
    ind = fd.X[:, 1:]
    codes = np.where(ind.any(axis=1), np.argmax(ind, axis=1) + 1, 0).astype(np.int64)
    levels = coding.levels
    counts = np.bincount(codes, minlength=len(levels))
    if (counts == 0).any():
        # unused levels of a Categorical (R's factor() would drop them)
        used = np.flatnonzero(counts)
        remap = np.full(len(levels), -1, dtype=np.int64)
        remap[used] = np.arange(used.size)
        codes = remap[codes]
        levels = tuple(levels[i] for i in used)
    return coding.name, (tuple(levels), codes)
