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
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.iolib.summary import Summary

from alliance_meta import core
from alliance_meta._types import FloatArray, Measure, Method, Test
from alliance_meta.core.estimators import CoreMethod
from alliance_meta.core.inference import critical_value
from alliance_meta.core.vcov import CoreTest
from alliance_meta.data.design import (
    ModeratorSpec,
    Term,
    as_studyset,
    build_design,
    check_design,
    check_design_values,
    independent_columns,
    new_design_rows,
)
from alliance_meta.exceptions import (
    InvalidStudyError,
    ModelSpecificationError,
    ModelSpecificationWarning,
)
from alliance_meta.models._inputs import check_level, check_method, check_test, resolve_input
from alliance_meta.models.pooling import fit_one
from alliance_meta.models.protocol import UnivariateFit
from alliance_meta.results.base import IntervalArray, freeze_arrays
from alliance_meta.results.summary import frame_summary, info_table, make_summary, value_table

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
# Design matrices
# ---------------------------------------------------------------------------




# ---------------------------------------------------------------------------
# Result classes
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays)
class Prediction:
    """Fitted values of a meta-regression at new moderator values (``predict.rma``).

    ``pred = x'β̂``, ``se = √(x' V_β x)``, ``ci = pred ± c·se`` and
    ``pi = pred ± c·√(se² + τ²)``, with ``c`` the normal quantile, or the t quantile
    on ``k - p`` df under ``test="t"``/``"knha"``/``"adhoc"``.
    """

    pred: FloatArray = attrs.field(eq=False)
    se: FloatArray = attrs.field(eq=False)
    ci: IntervalArray
    pi: IntervalArray
    X: FloatArray = attrs.field(eq=False, repr=False)
    level: float

    def to_frame(self) -> pd.DataFrame:
        """One row per prediction."""
        frame: pd.DataFrame = pd.DataFrame(
            {
                "pred": self.pred,
                "se": self.se,
                "ci_low": self.ci.low,
                "ci_high": self.ci.high,
                "pi_low": self.pi.low,
                "pi_high": self.pi.high,
            }
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary like metafor's ``print(predict(fit, newmods))``."""
        return frame_summary(
            "Predicted values",
            [("Predictions:", str(self.pred.size)), ("Level:", f"{self.level:g}")],
            self.to_frame(),
            ["ci: confidence interval of the fitted value; pi: prediction interval."],
        )

    def __str__(self) -> str:
        return str(self.summary())


@attrs.frozen(field_transformer=freeze_arrays)
class PermutationTestResult:
    """A permutation test of a meta-regression (metafor's ``permutest``).

    ``pvalue[j]`` is the share of permutations (the observed data included) whose
    ``|z_j|`` is at least the observed ``|z_j|``; ``QM_pvalue`` the same for QM.
    """

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
                ("QM p-value:", f"{self.QM_pvalue:.4g}"),
            ],
            self.to_frame(),
        )

    def __str__(self) -> str:
        return str(self.summary())


@attrs.frozen(field_transformer=freeze_arrays)
class MetaRegressionResult(UnivariateFit):
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
    _terms: tuple[Term, ...] = attrs.field(eq=False, repr=False, alias="terms")
    #: which columns of the full design (intercept, then each moderator's columns)
    #: the model kept; metafor drops redundant ones
    _kept: npt.NDArray[np.bool_] = attrs.field(eq=False, repr=False, alias="kept")

    @property
    def dropped(self) -> tuple[str, ...]:
        """Names of the redundant design columns dropped from the model (metafor's
        ``coef.na``); empty when the design had full rank."""
        full = ["intrcpt", *(c for t in self._terms for c in t.coef_names)]
        return tuple(n for n, kept in zip(full, self._kept, strict=True) if not kept)

    @property
    def p(self) -> int:
        """Number of coefficients."""
        return len(self.coef_names)

    # -- predict -------------------------------------------------------------
    def _new_design(self, new_moderators: object) -> FloatArray:
        p = self.p
        if isinstance(new_moderators, Mapping):
            return new_design_rows(self._terms, self._kept, new_moderators)
        try:
            Xn = np.asarray(new_moderators, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidStudyError(
                "new moderators given as an array must be numeric design columns; give "
                "a mapping name -> values for raw (e.g. categorical) moderator values",
                field="new_moderators",
            ) from None
        if Xn.ndim <= 1:
            Xn = Xn.reshape(-1, 1) if p == 2 else Xn.reshape(1, -1)
        if Xn.shape[1] == p - 1:
            Xn = np.hstack([np.ones((Xn.shape[0], 1)), Xn])
        if Xn.shape[1] != p:
            raise InvalidStudyError(
                f"new moderators have {Xn.shape[1]} columns; the model has {p - 1} "
                f"moderator columns ({', '.join(self.coef_names[1:])})",
                field="new_moderators",
            )
        return Xn

    def predict(self, new_moderators: object = None) -> Prediction:
        """Predicted effects with confidence and prediction intervals.

        Parameters
        ----------
        new_moderators : mapping or array_like, optional
            Either a mapping ``name -> values`` of raw moderator values (strings for
            categorical moderators, coded as in the fit), or an array of design
            columns without the intercept (metafor's ``newmods``).  ``None`` gives
            the fitted values of the studies.

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
        pred = Xn @ self.coef
        se = np.sqrt(np.einsum("ij,jk,ik->i", Xn, self.vcov, Xn))
        crit = float(critical_value(np.array(np.nan if self.df is None else self.df), self.level))
        half_pi = crit * np.sqrt(se**2 + self.tau2)
        return Prediction(
            pred=pred,
            se=se,
            ci=IntervalArray(pred - crit * se, pred + crit * se),
            pi=IntervalArray(pred - half_pi, pred + half_pi),
            X=Xn,
            level=self.level,
        )

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
        int_only = p == 1
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
        obs = core.fit(
            obs_kern,
            core_method,
            core_test,
            self.level,
        )
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
            f = core.fit(kern, core_method, core_test, self.level)
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
        frame: pd.DataFrame = pd.DataFrame(
            {
                "coef": self.coef,
                "se": self.se,
                "statistic": self.statistic,
                "pvalue": self.pvalue,
                "ci_low": self.ci.low,
                "ci_high": self.ci.high,
            },
            index=pd.Index(list(self.coef_names), name="coefficient"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels ``Summary`` laid out like metafor's ``print.rma.uni``."""
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
        right = [
            ("tau^2 (residual):", f"{self.tau2:.4f}"),
            ("I^2 (residual, %):", f"{self.I2:.2f}"),
            ("H^2 (residual):", f"{self.H2:.2f}"),
            ("R^2 (%):", "-" if self.R2 is None else f"{self.R2:.2f}"),
            (f"QE({self.QE_df}):", f"{self.QE:.4f} (p = {self.QE_pvalue:.4g})"),
            (f"{qm_name}({qm_df}):", f"{self.QM:.4f} (p = {self.QM_pvalue:.4g})"),
        ]
        stat = "z" if self.df is None else "t"
        lo, hi = f"[{(1 - self.level) / 2:.3f}", f"{1 - (1 - self.level) / 2:.3f}]"
        rows = [
            [
                f"{self.coef[j]:.4f}", f"{self.se[j]:.4f}", f"{self.statistic[j]:.3f}",
                f"{self.pvalue[j]:.4g}", f"{self.ci.low[j]:.4f}", f"{self.ci.high[j]:.4f}",
            ]
            for j in range(self.p)
        ]
        tables = [
            info_table(left, right, model),
            value_table(rows, ["estimate", "se", stat, f"P>|{stat}|", lo, hi],
                        list(self.coef_names)),
        ]
        notes = [] if self.converged else [f"The {self.method} estimator did not converge."]
        if self.dropped:
            notes.append(f"Redundant predictors dropped: {', '.join(self.dropped)}.")
        return make_summary(tables, notes)

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
    tau2_re = float(core.estimate_tau2(kern0, method).tau2[0])
    if tau2_re == 0.0:
        return 0.0
    return max(0.0, 100.0 * (tau2_re - tau2) / tau2_re)


def meta_regression(
    studies: StudySet | Sequence[Study] | None = None,
    *,
    moderators: ModeratorSpec,
    yi: npt.ArrayLike | None = None,
    vi: npt.ArrayLike | None = None,
    method: Method = "REML",
    test: Test = "z",
    level: float = 0.95,
    measure: Measure = "GEN",
) -> MetaRegressionResult:
    """Fit a (mixed-effects) meta-regression, as metafor's ``rma(yi, vi, mods=~...)``.

    Parameters
    ----------
    studies : StudySet or sequence of Study, optional
        The studies; moderators given by name are taken from them.
    moderators : str, Moderator, sequence of them, or mapping
        Names of study moderators (or :class:`Moderator` objects, which fix the
        coding), or a mapping ``name -> values`` (keys may also be ``Moderator``).
        Numeric values are continuous; strings and booleans are categorical with
        treatment coding, levels sorted and the first the reference (R's
        ``factor``), unless a ``Moderator`` says otherwise.  An empty sequence
        fits the intercept-only model.
    yi, vi : array_like, optional
        Effects and sampling variances, when ``studies`` is not given.
    method : str
        τ² estimator: EE (FE, CE), DL, HE, HS, HSk, SJ, ML, REML, EB, PM or PMM.
    test : {"z", "t", "knha", "adhoc"}
        Inference for the coefficients; QM is an F test unless ``"z"``.
    level : float
        Confidence level.
    measure : str
        Effect-size measure of ``yi`` (taken from the studies when given).

    Returns
    -------
    MetaRegressionResult

    Raises
    ------
    InvalidStudyError
        Unknown moderator, wrong length, missing or mis-typed values (naming it).
    ModelSpecificationError
        Bad method/test/level, or fewer studies than coefficients.

    Warns
    -----
    ModelSpecificationWarning
        When a design column is a linear combination of the columns before it: it
        is dropped (listed in ``result.dropped``), as metafor drops "redundant
        predictors" (with the tolerance of R's ``lm``, 1e-7).

    Notes
    -----
    The model is ``y_i = x_i'β + u_i + ε_i``, ``u_i ~ N(0, τ²)``, ``ε_i ~ N(0, v_i)``
    (Thompson & Higgins, 2002; Viechtbauer, 2010).  Given τ̂²,
    ``β̂ = (X'WX)^{-1} X'Wy`` with ``W = diag(1/(v_i + τ̂²))`` and
    ``Var(β̂) = (X'WX)^{-1}``, multiplied by ``s² = y'Py/(k-p)`` under Knapp-Hartung.
    ``QE = y'P₀y`` with ``P₀`` the projection at τ² = 0 (χ² on k-p df);
    ``QM = β̂_m' Var(β̂_m)^{-1} β̂_m`` over the non-intercept coefficients (χ² on m
    df, or QM/m as F on (m, k-p) df).  Residual ``I² = 100 τ²/(τ² + ṽ)`` and
    ``H² = τ²/ṽ + 1`` with ``ṽ = (k-p)/tr(P₀)``.  The pseudo-R² is described in
    :func:`pseudo_r2`.  τ² estimators are those of metafor's ``rma.uni``
    (Viechtbauer, 2005), solved to 1e-10 relative.

    Examples
    --------
    >>> import alliance_meta as am
    >>> res = am.meta_regression(
    ...     yi=[0.1, 0.3, 0.35, 0.2, 0.5], vi=[0.01, 0.02, 0.015, 0.01, 0.02],
    ...     moderators={"dose": [1.0, 2.0, 3.0, 1.5, 4.0]}, method="DL")
    >>> res.coef_names
    ('intrcpt', 'dose')
    """
    core_method = check_method(method)
    core_test = check_test(test)
    lv = check_level(level)
    y, v, labels, meas = resolve_input(studies, yi, vi, measure)
    sset = as_studyset(studies)
    names, X, terms = build_design(moderators, sset, y.size, labels)
    check_design_values(X, names, labels)
    keep = independent_columns(X)
    dropped = tuple(n for n, kept in zip(names, keep, strict=True) if not kept)
    if dropped:
        warnings.warn(
            f"redundant predictors dropped from the model: {', '.join(dropped)} (a linear "
            "combination of the columns before them), as metafor does",
            ModelSpecificationWarning,
            stacklevel=2,
        )
        X = X[:, keep]
        names = tuple(n for n, kept in zip(names, keep, strict=True) if kept)
    check_design(X, names, core_method)
    fit = fit_one(y, v, None if X.shape[1] == 1 else X, core_method, core_test, lv)
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
        R2=pseudo_r2(y, v, X, tau2, core_method, float(fit.QE[0])),
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
        terms=terms,
        kept=keep,
    )
