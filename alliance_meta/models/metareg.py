"""Meta-regression: mixed-effects models with moderators (metafor's ``rma(yi, vi, mods=)``).

The shell builds R's treatment-coded design matrix, calls the vectorised core once
(:func:`alliance_meta.core.fit` with an ``(k, p)`` design) and wraps the arrays in
frozen result classes.  Permutation tests fit every permutation in one core call
with an ``(n_perm, k, p)`` design (chunked only to bound memory).

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package.
*Journal of Statistical Software*, 36(3), 1-48.

Thompson, S. G., & Higgins, J. P. T. (2002). How should meta-regression analyses be
undertaken and interpreted? *Statistics in Medicine*, 21(11), 1559-1573.

Higgins, J. P. T., & Thompson, S. G. (2004). Controlling the risk of spurious
findings from meta-regression. *Statistics in Medicine*, 23(11), 1663-1682.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.iolib.summary import Summary

from alliance_meta import core
from alliance_meta._types import FloatArray, Measure, Method, NanPolicy, Test
from alliance_meta.core.estimators import CoreMethod
from alliance_meta.core.univariate import CoreFit
from alliance_meta.core.vcov import CoreTest
from alliance_meta.data.design import (
    Design,
    ModeratorSpec,
    check_design,
    make_design,
    moderator_columns,
    warn_dropped,
)
from alliance_meta.exceptions import (
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
from alliance_meta.models.pooling import _num, fit_one, heterogeneity_rows
from alliance_meta.models.protocol import UnivariateFit
from alliance_meta.results.base import IntervalArray, freeze_arrays
from alliance_meta.results.display import ResultDisplay, Transf, fmt_p, fmt_p_eq
from alliance_meta.results.prediction import Prediction, make_prediction
from alliance_meta.results.report import coefficient_clause, i2_text, tau2_text, test_clause
from alliance_meta.results.summary import (
    coefficient_frame,
    frame_summary,
    info_table,
    make_summary,
    value_table,
)
from alliance_meta.results.wald import CoefficientTests

if TYPE_CHECKING:
    from alliance_meta.data.study import Study, StudySet

__all__ = [
    "MetaRegressionResult",
    "PermutationTestResult",
    "Prediction",
    "meta_regression",
]

#: metafor's ``permutest`` comparison tolerance, ``.Machine$double.eps^0.5``.
PERM_COMPTOL = float(np.finfo(np.float64).eps) ** 0.5
#: Largest number of permutations enumerated by ``exact=True``.
MAX_EXACT = 2_000_000
#: Permutations fitted per core call (bounds the (n_perm, k, k) projection arrays).
_PERM_CHUNK = 4096

# ---------------------------------------------------------------------------
# Result classes
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class PermutationTestResult(ResultDisplay):
    """A permutation test of a meta-regression (metafor's ``permutest``).

    ``pvalue[j]`` is the share of permutations (the observed data included) whose
    ``|z_j|`` is at least the observed ``|z_j|``; ``QM_pvalue`` the same for QM.
    """

    _repr_fields = ('coef_names', 'pvalue', 'QM', 'QM_pvalue', 'n_permutations', 'exact')

    coef_names: tuple[str, ...]
    coef: FloatArray = attrs.field(eq=False)
    statistic: FloatArray = attrs.field(eq=False)
    pvalue: FloatArray = attrs.field(eq=False)
    QM: float
    QM_pvalue: float
    n_permutations: int
    exact: bool
    permuted_statistic: FloatArray = attrs.field(eq=False, repr=False)
    permuted_QM: FloatArray = attrs.field(eq=False, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per coefficient with the permutation p-values."""
        frame: pd.DataFrame = pd.DataFrame(
            {"coef": self.coef, "statistic": self.statistic, "perm_pvalue": self.pvalue},
            index=pd.Index(list(self.coef_names), name="coefficient"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary like metafor's ``print(permutest(fit))``."""
        kind = "exact (every permutation)" if self.exact else "random"
        return frame_summary(
            "Permutation test of a meta-regression",
            [
                ("Permutations:", f"{self.n_permutations} ({kind})"),
                ("QM:", f"{self.QM:.4f}"),
                ("QM p-value:", fmt_p(self.QM_pvalue)),
            ],
            self.to_frame(),
        )

    def __str__(self) -> str:
        return str(self.summary())


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class MetaRegressionResult(UnivariateFit, CoefficientTests, ResultDisplay):
    """A fitted mixed-effects meta-regression (metafor's ``rma(yi, vi, mods=...)``).

    Attributes
    ----------
    coef_names : tuple of str
        ``intrcpt``, then one name per design column in the order the moderators
        were given (R's names: ``allocrandom``, ``ablat``).
    coef, se, statistic, pvalue : ndarray
        Coefficients, standard errors, z (or t) statistics and two-sided p-values.
    ci : IntervalArray
        Confidence intervals of the coefficients (``.low``, ``.high``).
    tau2, tau2_se : float
        Residual heterogeneity and its standard error (``None`` for EE).
    QE, QE_df, QE_pvalue : float, int, float
        Test for residual heterogeneity.
    QM, QM_df, QM_pvalue : float, tuple, float
        Omnibus test of the moderators: χ² on ``QM_df = (m, None)`` under z, an F
        test on ``(m, k - p)`` df under t/knha/adhoc.
    I2, H2 : float
        Residual heterogeneity measures.
    R2 : float or None
        Pseudo-R² in percent (``None`` for an intercept-only model).
    k, method, test, level, measure
        Number of studies and the fit's settings.
    """

    _repr_fields = ('coef_names', 'coef', 'tau2', 'QM', 'QM_pvalue', 'k', 'method')

    coef_names: tuple[str, ...]
    coef: FloatArray = attrs.field(eq=False)
    se: FloatArray = attrs.field(eq=False)
    statistic: FloatArray = attrs.field(eq=False)
    pvalue: FloatArray = attrs.field(eq=False)
    df: float | None
    ci: IntervalArray
    vcov: FloatArray = attrs.field(eq=False, repr=False)
    tau2: float
    tau2_se: float | None
    QE: float
    QE_df: int
    QE_pvalue: float
    QM: float
    QM_df: tuple[int, int | None]
    QM_pvalue: float
    I2: float
    H2: float
    R2: float | None
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
    X: FloatArray = attrs.field(eq=False, repr=False)
    _design: Design = attrs.field(eq=False, repr=False, alias="design")
    #: metafor's stopping rule the fit used (``None``: solved to 1e-10)
    control: Control | None = attrs.field(default=None, repr=False)

    @property
    def dropped(self) -> tuple[str, ...]:
        """Names of the redundant design columns dropped from the model (metafor's
        ``coef.na``); empty when the design had full rank."""
        return self._design.dropped

    @property
    def intercept(self) -> bool:
        """Whether the model has an intercept (``intrcpt``, column 0)."""
        return self._design.intercept

    @property
    def formula(self) -> str | None:
        """The moderators' R formula, when they were given as one."""
        return None if self._design.formula is None else self._design.formula.formula

    @property
    def p(self) -> int:
        """Number of coefficients."""
        return len(self.coef_names)

    # -- predict -------------------------------------------------------------
    def _new_design(self, new_moderators: object) -> FloatArray:
        return self._design.new_rows(new_moderators)

    def _has_intercept(self) -> bool:
        return self._design.intercept

    def predict(self, new_moderators: object = None, *, transf: Transf = None) -> Prediction:
        """Predicted effects with confidence and prediction intervals.

        Parameters
        ----------
        new_moderators : data frame, mapping or array_like, optional
            For a formula model, a data frame or mapping of the formula's variables
            (coded as the data were: factor levels, references and ``scale()``
            centres, as R's ``predict``); otherwise a mapping ``name -> values`` of
            raw moderator values (strings for categorical moderators, coded as in
            the fit).  Or an array of design columns, without the intercept column
            when the model has one (metafor's ``newmods``).  ``None`` gives the
            fitted values of the studies.
        transf : True or callable, optional
            Transform the predictions and the bounds, as metafor's
            ``predict(fit, transf=)``: ``True`` for the measure's
            back-transformation (``tanh`` for ZCOR, ``exp`` for log ratios), or any
            function (e.g. ``np.exp``).

        Returns
        -------
        Prediction

        Notes
        -----
        As metafor's ``predict.rma``: ``ŷ = x'β̂``, ``SE = √(x' V x)``, CI
        ``ŷ ± c SE`` and PI ``ŷ ± c √(SE² + τ²)``, where ``c`` is ``z_{1-α/2}`` or,
        under t/knha/adhoc, ``t_{k-p, 1-α/2}`` (and ``V`` is Knapp-Hartung scaled).
        """
        Xn = self.X if new_moderators is None else self._new_design(new_moderators)
        labels = self.labels if new_moderators is None else None
        return make_prediction(Xn, self.coef, self.vcov, self.tau2, self.df, self.level,
                               measure=self.measure, transf=transf, labels=labels)

    # -- permutation test ----------------------------------------------------
    def permutation_test(
        self, n: int = 1000, seed: int | np.random.Generator | None = None, *, exact: bool = False
    ) -> PermutationTestResult:
        """Permutation test of every coefficient and of QM (metafor's ``permutest``).

        Parameters
        ----------
        n : int
            Number of random permutations (the observed data count as the first).
        seed : int or numpy Generator, optional
            Seeds the random permutations.
        exact : bool
            Enumerate every unique permutation.  As in metafor, the exact test is
            also used when it needs no more than ``n`` permutations.

        Returns
        -------
        PermutationTestResult

        Notes
        -----
        With moderators, the rows of the design matrix are permuted relative to
        ``(y_i, v_i)``; only unique permutations are enumerated when rows are tied
        (``k! / Π n_j!``).  For an intercept-only model the signs of ``y_i`` are
        flipped (``2^k`` patterns).  The p-value of coefficient j is
        ``mean(|z_j^perm| ≥ |z_j^obs| - ε)`` with ``ε = √eps_mach`` over the
        permutations, the observed data included, and likewise for QM (Higgins &
        Thompson, 2004; Viechtbauer et al., 2015).  Every permutation is fitted by
        one vectorised core call (in chunks of 4096 to bound memory).

        Viechtbauer, W., López-López, J. A., Sánchez-Meca, J., & Marín-Martínez, F.
        (2015). A comparison of procedures to test for moderators in mixed-effects
        meta-regression models. *Psychological Methods*, 20(3), 360-374.
        """
        n = int(n)
        if n < 2:
            raise ModelSpecificationError("n must be >= 2 permutations")
        k, p = self.X.shape
        int_only = p == 1 and self.intercept
        if int_only:
            n_exact = 2.0**k
        else:
            _, codes = np.unique(self.X, axis=0, return_inverse=True)
            counts = np.bincount(codes.ravel())
            n_exact = float(math.factorial(k)) / float(
                np.prod([math.factorial(int(c)) for c in counts])
            )
        use_exact = exact or n_exact <= n
        if use_exact and n_exact > MAX_EXACT:
            raise ModelSpecificationError(
                f"an exact test needs {n_exact:.0f} permutations (more than {MAX_EXACT})"
            )
        core_method = check_method(self.method)
        core_test = check_test(self.test)
        if use_exact:
            if int_only:
                bits = (np.arange(2**k)[:, None] >> np.arange(k)[None, :]) & 1
                perms: npt.NDArray[Any] = 1.0 - 2.0 * bits  # sign patterns
            else:
                perms = _unique_permutations(codes.ravel())
        else:
            rng = np.random.default_rng(seed)
            if int_only:
                perms = rng.choice(np.array([-1.0, 1.0]), size=(n, k))
                perms[0] = 1.0
            else:
                perms = np.argsort(rng.random((n, k)), axis=1)
                perms[0] = np.arange(k)

        obs_kern = core.kernel_from_padded(
            self.yi[None, :], self.vi[None, :], None if int_only else self.X
        )
        rule = as_rule(self.control)
        obs = core.fit(obs_kern, core_method, core_test, self.level, rule=rule)
        z_obs = obs.statistic[0]
        qm_obs = float(obs.QM[0])
        zs: list[FloatArray] = []
        qms: list[FloatArray] = []
        for start in range(0, perms.shape[0], _PERM_CHUNK):
            block = perms[start : start + _PERM_CHUNK]
            m = block.shape[0]
            V = np.broadcast_to(self.vi, (m, k)).copy()
            if int_only:
                Y = block * self.yi[None, :]
                kern = core.kernel_from_padded(Y, V)
            else:
                if use_exact:
                    # block holds, per permutation, which X row goes to study i
                    Xp = self.X[block.astype(np.intp)]
                else:
                    Xp = self.X[block]
                Y = np.broadcast_to(self.yi, (m, k)).copy()
                kern = core.kernel_from_padded(Y, V, Xp)
            f = core.fit(kern, core_method, core_test, self.level, rule=rule)
            zs.append(f.statistic)
            qms.append(f.QM)
        zperm = np.concatenate(zs, axis=0)
        qperm = np.concatenate(qms)
        pval = np.mean(np.abs(zperm) >= np.abs(z_obs)[None, :] - PERM_COMPTOL, axis=0)
        qmp = float(np.mean(qperm >= qm_obs - PERM_COMPTOL))
        return PermutationTestResult(
            coef_names=self.coef_names,
            coef=obs.beta[0],
            statistic=z_obs,
            pvalue=np.minimum(pval, 1.0),
            QM=qm_obs,
            QM_pvalue=qmp,
            n_permutations=int(perms.shape[0]),
            exact=use_exact,
            permuted_statistic=zperm,
            permuted_QM=qperm,
        )

    # -- display -------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """Coefficient table: one row per coefficient."""
        return coefficient_frame(
            self.coef_names, self.coef, self.se, self.statistic, self.pvalue, self.ci
        )

    def summary(self) -> Summary:
        """A statsmodels ``Summary`` laid out like metafor's ``print.rma.uni``: residual
        τ² with its standard error, τ, I², H², R², the QE and QM (or F) tests, and
        the coefficients with their tests (the t tests' df), p-values as metafor
        prints them (``<.0001``)."""
        model = "Fixed-effects meta-regression" if self.method == "EE" else (
            "Mixed-effects meta-regression"
        )
        qm_df = (
            f"{self.QM_df[0]}" if self.QM_df[1] is None else f"{self.QM_df[0]}, {self.QM_df[1]}"
        )
        qm_name = "QM" if self.QM_df[1] is None else "F"
        left = [
            ("Method:", self.method),
            ("Measure:", self.measure),
            ("Studies (k):", str(self.k)),
            ("Test:", self.test),
        ]
        if self.formula is not None:
            left.append(("Moderators:", self.formula))
        right = heterogeneity_rows(self.tau2, self.tau2_se, self.I2, self.H2, self.method,
                                   residual=True)
        right += [
            ("R^2 (%):", "-" if self.R2 is None else f"{self.R2:.2f}"),
            (f"QE({self.QE_df}):", f"{_num(self.QE)}, p {fmt_p_eq(self.QE_pvalue)}"),
            (f"{qm_name}({qm_df}):", f"{self.QM:.4f}, p {fmt_p_eq(self.QM_pvalue)}"),
        ]
        stat = "z" if self.df is None else "t"
        lo, hi = f"[{(1 - self.level) / 2:.3f}", f"{1 - (1 - self.level) / 2:.3f}]"
        rows = []
        for j in range(self.p):
            row = [f"{self.coef[j]:.4f}", f"{self.se[j]:.4f}", f"{self.statistic[j]:.4f}"]
            if self.df is not None:
                row.append(f"{self.df:g}")
            row += [fmt_p(self.pvalue[j]), f"{self.ci.low[j]:.4f}", f"{self.ci.high[j]:.4f}"]
            rows.append(row)
        headers = ["estimate", "se", stat, *(["df"] if self.df is not None else []), "pval",
                   lo, hi]
        tables = [
            info_table(left, right, model),
            value_table(rows, headers, list(self.coef_names)),
        ]
        notes = [] if self.converged else [f"The {self.method} estimator did not converge."]
        if self.dropped:
            notes.append(f"Redundant predictors dropped: {', '.join(self.dropped)}.")
        tested = ("all coefficients" if not self.intercept
                  else "all but the intercept" if self.p > 1 else "the intercept")
        notes.append(f"Test of moderators ({qm_name}): {tested}.")
        if math.isnan(self.QE):
            notes.append("QE, I^2 and H^2 are not defined with a sampling variance of 0 "
                         "(as in metafor).")
        return make_summary(tables, notes)

    def report(self, digits: int = 2) -> str:
        """The meta-regression as sentences for a paper (APA style): the test of the
        moderators, each coefficient with its CI and p, and the residual
        heterogeneity, e.g. ``"Test of moderators: QM(1) = 16.36, p < .001. ablat:
        b = −0.03, 95% CI [−0.04, −0.02], p < .001. k = 13, τ² = 0.0763 (residual),
        I² = 64%, R² = 75%."``

        Parameters
        ----------
        digits : int
            Decimals of the coefficients and their intervals.
        """
        name = "QM" if self.QM_df[1] is None else "F"
        parts = ["Test of moderators: "
                 + test_clause(name, self.QM, self.QM_df[0], self.QM_df[1], self.QM_pvalue)]
        for j, cn in enumerate(self.coef_names):
            parts.append(coefficient_clause(cn, float(self.coef[j]), float(self.ci.low[j]),
                                            float(self.ci.high[j]), float(self.pvalue[j]),
                                            self.level, digits))
        het = [f"k = {self.k}"]
        if self.method != "EE":
            het.append(tau2_text(self.tau2) + " (residual)")
        het.append(i2_text(self.I2))
        if self.R2 is not None:
            het.append(f"R² = {self.R2:.0f}%")
        parts.append(", ".join(het))
        return ". ".join(parts) + "."

    def __str__(self) -> str:
        return str(self.summary())


def _unique_permutations(codes: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """All distinct orderings of the row indices, treating rows with equal codes as equal.

    Row ``r`` of the result lists, for each study position, the index of the design
    row placed there; tied rows are interchangeable, so each distinct permuted
    design appears once (``k! / Π n_j!`` rows, as metafor's ``.genuperms``).
    """
    codes = np.asarray(codes)
    k = codes.size
    reps: dict[int, list[int]] = {}
    for i, c in enumerate(codes.tolist()):
        reps.setdefault(int(c), []).append(i)
    counts = {c: len(ix) for c, ix in reps.items()}
    keys = sorted(counts)

    def gen(prefix: list[int], remaining: dict[int, int]) -> Iterator[list[int]]:
        if len(prefix) == k:
            yield list(prefix)
            return
        for c in keys:
            if remaining[c]:
                remaining[c] -= 1
                prefix.append(c)
                yield from gen(prefix, remaining)
                prefix.pop()
                remaining[c] += 1

    seqs = np.array(list(gen([], dict(counts))), dtype=np.intp)
    # map each code sequence to row indices (the j-th occurrence of a code takes the
    # j-th row with that code; equal rows make the choice immaterial)
    out = np.empty_like(seqs)
    for c, ix in reps.items():
        mask = seqs == c
        occ = np.cumsum(mask, axis=1) - 1
        out[mask] = np.asarray(ix, dtype=np.intp)[occ[mask]]
    return out


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def pseudo_r2(
    yi: FloatArray,
    vi: FloatArray,
    X: FloatArray,
    tau2: float,
    method: core.CoreMethod,
    QE: float,
    control: Control | None = None,
) -> float | None:
    """metafor's pseudo-R² (percent) of a model with an intercept and moderators.

    Mixed-effects models: ``max(0, 100 (τ²_0 - τ²) / τ²_0)`` with ``τ²_0`` the
    estimate of the intercept-only model with the same estimator, and 0 when
    ``τ²_0 = 0`` (Raudenbush, 2009).  Equal-effects models: ``max(0, 100 R²_adj)``
    of the weighted least-squares fit with weights ``1/v_i`` (metafor's
    ``lm(yi ~ X, weights = wi)``), and 0 when all ``y_i`` are equal.  Its residual
    and centred total sums of squares are the models' Q statistics, so
    ``R²_adj = 1 - (QE / (k-p)) / (QE_0 / (k-1))`` with ``QE`` of this model and
    ``QE_0`` of the intercept-only model.
    """
    if X.shape[1] == 1:
        return None
    if method == "EE":
        if float(np.var(yi)) == 0.0:
            return 0.0
        if X.shape[0] <= X.shape[1]:  # saturated: adjusted R² undefined (metafor: NaN)
            return None
        k, p = int(X.shape[0]), int(X.shape[1])
        qe0 = float(core.fit(core.kernel_from_padded(yi[None, :], vi[None, :]), "EE").QE[0])
        adj = 1.0 - (QE / (k - p)) / (qe0 / (k - 1))
        return max(0.0, 100.0 * adj)
    kern0 = core.kernel_from_padded(yi[None, :], vi[None, :])
    tau2_re = float(core.estimate_tau2(kern0, method, rule=as_rule(control)).tau2[0])
    if tau2_re == 0.0:
        return 0.0
    return max(0.0, 100.0 * (tau2_re - tau2) / tau2_re)


def meta_regression(
    studies: StudySet | Sequence[Study] | None = None,
    *,
    moderators: ModeratorSpec,
    yi: npt.ArrayLike | str | None = None,
    vi: npt.ArrayLike | str | None = None,
    data: object = None,
    method: Method = "REML",
    test: Test = "z",
    level: float = 0.95,
    measure: Measure = "GEN",
    control: ControlSpec = None,
    nan_policy: NanPolicy = "raise",
) -> MetaRegressionResult:
    """Fit a (mixed-effects) meta-regression, as metafor's ``rma(yi, vi, mods=~...)``.

    Parameters
    ----------
    studies : StudySet or sequence of Study, optional
        The studies; moderators (and a formula's variables) are taken from them.
    moderators : str, Moderator, sequence of them, or mapping
        An R formula, as metafor's ``mods = ~ ...`` (``"~ ablat * year"``,
        ``"~ factor(g) + I(year - 1950)"``, ``"~ relevel(factor(g), ref = 'b')"``,
        ``"~ x - 1"``; see :func:`~alliance_meta.data.formula.model_matrix`), whose
        variables are columns of ``data`` or moderators of ``studies``; or names of
        moderators or of columns of ``data`` (or :class:`Moderator` objects, which
        fix the coding), or a mapping ``name -> values`` (keys may also be
        ``Moderator``).  Numeric values are continuous; strings and booleans are
        categorical with treatment coding, levels sorted as R sorts them and the
        first the reference (R's ``factor``); a pandas ``Categorical`` keeps its
        category order (the first category is the reference).  An empty sequence
        (or ``"~ 1"``) fits the intercept-only model.
    yi, vi : array_like or str, optional
        Effects and sampling variances, when ``studies`` is not given; with ``data``
        the names of its columns (by default ``"yi"`` and ``"vi"``, as ``escalc``
        names them).  Variances may be 0 when τ² is estimated by REML, ML, HE, SJ
        or EB (metafor's ``rma(yi, vi = 0, mods = ...)``).
    data : DataFrame, optional
        A data frame (or any object with the DataFrame interchange protocol) whose
        columns hold ``yi``, ``vi`` and the moderators.
    method : str
        τ² estimator: EE (FE, CE), DL, HE, HS, HSk, SJ, ML, REML, EB, PM or PMM.
    test : {"z", "t", "knha", "adhoc"}
        Inference for the coefficients; QM is an F test unless ``"z"``.
    level : float
        Confidence level.
    measure : str
        Effect-size measure of ``yi`` (taken from the studies when given).
    control : Control or mapping, optional
        Stop the iterative estimators as metafor's ``control`` does (see
        :class:`Control`); by default they are solved to 1e-10 relative.
    nan_policy : {"raise", "omit"}
        With ``data``: a missing value in ``yi``, ``vi`` or a moderator raises,
        naming the study and the column (``"raise"``), or the study is dropped with
        a :class:`~alliance_meta.exceptions.DataOmittedWarning` (``"omit"``,
        metafor's ``na.omit``).

    Returns
    -------
    MetaRegressionResult

    Raises
    ------
    InvalidStudyError
        Unknown moderator or column, wrong length, missing or mis-typed values
        (naming it).
    ModelSpecificationError
        Bad method/test/level or formula, or fewer studies than coefficients.

    Warns
    -----
    ModelSpecificationWarning
        When a design column is a linear combination of the columns before it: it
        is dropped (listed in ``result.dropped``), as metafor drops "redundant
        predictors" (with R's ``lm`` QR and its tolerance, 1e-7).

    Notes
    -----
    The model is ``y_i = x_i'β + u_i + ε_i``, ``u_i ~ N(0, τ²)``, ``ε_i ~ N(0, v_i)``
    (Thompson & Higgins, 2002; Viechtbauer, 2010).  Given τ̂²,
    ``β̂ = (X'WX)^{-1} X'Wy`` with ``W = diag(1/(v_i + τ̂²))`` and
    ``Var(β̂) = (X'WX)^{-1}``, multiplied by ``s² = y'Py/(k-p)`` under Knapp-Hartung.
    ``QE = y'P₀y`` with ``P₀`` the projection at τ² = 0 (χ² on k-p df);
    ``QM = β̂_m' Var(β̂_m)^{-1} β̂_m`` over the non-intercept coefficients, or over
    all of them in a model without an intercept (metafor's ``btt``), χ² on m df, or
    QM/m as F on (m, k-p) df.  Residual ``I² = 100 τ²/(τ² + ṽ)`` and
    ``H² = τ²/ṽ + 1`` with ``ṽ = (k-p)/tr(P₀)``.  The pseudo-R² is described in
    :func:`pseudo_r2`.  τ² estimators are those of metafor's ``rma.uni``
    (Viechtbauer, 2005), solved to 1e-10 relative.

    As metafor does, τ² and QE are computed from the effects centred at their mean
    (its ``Ymc``), also in a model without an intercept; the coefficients (and the
    Knapp-Hartung factor) from the effects themselves.

    Examples
    --------
    >>> import alliance_meta as am
    >>> res = am.meta_regression(
    ...     yi=[0.1, 0.3, 0.35, 0.2, 0.5], vi=[0.01, 0.02, 0.015, 0.01, 0.02],
    ...     moderators={"dose": [1.0, 2.0, 3.0, 1.5, 4.0]}, method="DL")
    >>> res.coef_names
    ('intrcpt', 'dose')
    >>> import pandas as pd
    >>> df = pd.DataFrame({"yi": [0.1, 0.3, 0.35, 0.2, 0.5, 0.4],
    ...                    "vi": [0.01, 0.02, 0.015, 0.01, 0.02, 0.01],
    ...                    "dose": [1.0, 2.0, 3.0, 1.5, 4.0, 3.5],
    ...                    "arm": ["a", "b", "a", "b", "a", "b"]})
    >>> am.meta_regression(data=df, moderators="~ dose * arm").coef_names
    ('intrcpt', 'dose', 'armb', 'dose:armb')
    """
    core_method = check_method(method)
    core_test = check_test(test)
    lv = check_level(level)
    inp = resolve_model_input(studies, yi, vi, measure, data, nan_policy=nan_policy,
                              needed=moderator_columns(moderators))
    y, v, labels, meas = inp.yi, inp.vi, inp.labels, inp.measure
    check_zero_variances(v, labels, core_method)
    design = make_design(moderators, k=y.size, labels=labels, studies=inp.studies,
                         data=inp.data)
    warn_dropped(design, stacklevel=2)
    X, names = design.X, design.coef_names
    check_design(X, names, core_method)
    ctl = as_control(control)
    fit = fit_one(y, v, X, core_method, core_test, lv, labels=labels, control=ctl)
    return regression_result(fit, design, y, v, labels, core_method, core_test, lv, meas, ctl)


def regression_result(
    fit: CoreFit,
    design: Design,
    y: FloatArray,
    v: FloatArray,
    labels: tuple[str, ...],
    core_method: CoreMethod,
    core_test: CoreTest,
    lv: float,
    meas: Measure,
    ctl: Control | None,
) -> MetaRegressionResult:
    """Wrap a one-model core fit of ``design`` as a :class:`MetaRegressionResult`
    (``meta_regression``'s result, and the common-τ² model of a subgroup analysis)."""
    X, names = design.X, design.coef_names
    tau2 = float(fit.tau2[0])
    df = float(fit.df[0])
    tau2_se = float(fit.tau2_se[0])
    q2 = float(fit.QM_df2[0])
    return MetaRegressionResult(
        coef_names=names,
        coef=fit.beta[0],
        se=fit.se[0],
        statistic=fit.statistic[0],
        pvalue=fit.pvalue[0],
        df=None if math.isnan(df) else df,
        ci=IntervalArray(fit.ci_low[0], fit.ci_high[0]),
        vcov=fit.vb[0],
        tau2=tau2,
        tau2_se=None if math.isnan(tau2_se) else tau2_se,
        QE=float(fit.QE[0]),
        QE_df=int(fit.QE_df[0]),
        QE_pvalue=float(fit.QE_pvalue[0]),
        QM=float(fit.QM[0]),
        QM_df=(int(fit.QM_df1[0]), None if math.isnan(q2) else int(q2)),
        QM_pvalue=float(fit.QM_pvalue[0]),
        I2=float(fit.I2[0]),
        H2=float(fit.H2[0]),
        R2=pseudo_r2(y, v, X, tau2, core_method, float(fit.QE[0]), ctl) if design.intercept
        else None,
        k=int(y.size),
        method=core_method,
        test=core_test,
        level=lv,
        measure=meas,
        iterations=int(fit.iterations[0]),
        converged=bool(fit.converged[0]),
        labels=labels,
        yi=y,
        vi=v,
        X=X,
        design=design,
        control=ctl,
    )
