"""Influence diagnostics of multilevel and multivariate fits (metafor's ``rma.mv``).

* :func:`leave_one_cluster_out`: the model refitted without each cluster (a study,
  by default the fit's outer level), as refitting ``rma.mv(..., subset =)``;
* :func:`multilevel_influence`: Cook's distances, DFBETAS and externally studentized
  residuals of each effect or each cluster, as metafor's ``cooks.distance``,
  ``dfbetas`` and ``rstudent`` of ``rma.mv`` fits (with ``cluster =``);
* :func:`estimate_weights`: each effect's weight in the coefficients,
  ``(X'WX)⁻¹X'W`` (the forest plot's weights: shares of the estimate).

:func:`alliance_meta.leave_one_out` and :func:`alliance_meta.influence` call the first
two for a :class:`~alliance_meta.MultilevelResult`.  The refits are those of
:mod:`alliance_meta.core.multilevel_influence` (the fitter of the model itself, warm
started at the fit, reaching the global maximum).
"""

from __future__ import annotations

import warnings
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.iolib.summary import Summary

from alliance_meta.core import multilevel as ml
from alliance_meta.core import multilevel_influence as mli
from alliance_meta.core.inference import chi2_sf, coef_inference
from alliance_meta.exceptions import ConvergenceWarning, InvalidStudyError, ModelSpecificationError
from alliance_meta.models.multilevel import MultilevelResult
from alliance_meta.results.base import IntervalArray, freeze_arrays
from alliance_meta.results.display import ResultDisplay
from alliance_meta.results.summary import frame_summary

__all__ = [
    "MultilevelInfluenceResult",
    "MultilevelLeaveOneOutResult",
    "estimate_weights",
    "leave_one_cluster_out",
    "multilevel_influence",
    "standardized_residuals",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Residuals smaller than this are set to 0, as metafor (``100 * .Machine$double.eps``).
_RESID_ZERO = 100.0 * float(np.finfo(np.float64).eps)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def _check_fit(fit: object, what: str) -> MultilevelResult:
    if not isinstance(fit, MultilevelResult):
        raise ModelSpecificationError(
            f"{what} takes a MultilevelResult (multilevel() or multivariate()), got "
            f"{type(fit).__name__}"
        )
    return fit


def _model_data(fit: MultilevelResult) -> mli.ModelData:
    """The fit's flat data for refits (the result's private fields: the fitted
    problem's structure, the fixed components, V and the outcome codes)."""
    st = fit._problem.structure
    codes = [np.asarray(pd.factorize(fit.levels[n])[0], dtype=np.int64) for n in fit.level_names]
    if fit.struct is None:
        return mli.ModelData(fit.yi, fit.X, fit._V, codes, st, fit._fixed)
    return mli.ModelData(
        fit.yi, fit.X, fit._V, [], st, fit._fixed, cluster_codes=codes[0],
        outcome_codes=fit._outcome_codes,
    )


def _clusters(
    fit: MultilevelResult, cluster: object, default_outer: bool
) -> tuple[str | None, IntArray, tuple[str, ...]]:
    """``(name, codes, labels)`` of the deletions: the name (None for single
    effects), each effect's deletion code (order of first appearance) and the label
    of each deletion."""
    k = fit.k
    if cluster is None and not default_outer:
        return None, np.arange(k, dtype=np.int64), fit.labels
    if cluster is None:
        name: str = fit.level_names[0]
        values = np.asarray(fit.levels[name])
    elif isinstance(cluster, str):
        if cluster not in fit.levels:
            raise ModelSpecificationError(
                f"cluster {cluster!r} is not a level of the fit (levels: "
                f"{', '.join(fit.levels)}); give a level name or one cluster label per effect"
            )
        name = cluster
        values = np.asarray(fit.levels[cluster])
    else:
        try:
            values = np.asarray(cluster)
        except (TypeError, ValueError):
            values = np.asarray(cluster, dtype=object)
        if values.ndim != 1 or values.shape[0] != k:
            raise InvalidStudyError(
                f"cluster has shape {values.shape}, expected ({k},) (one label per effect)",
                field="cluster",
            )
        missing = pd.isna(values)
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise InvalidStudyError("missing cluster label", study=fit.labels[i], field="cluster")
        name = "cluster"
    codes, uniq = pd.factorize(values.astype(str) if values.dtype.kind != "O" else values)
    return name, np.asarray(codes, dtype=np.int64), tuple(str(u) for u in uniq)


def _component_split(fit: MultilevelResult, theta: FloatArray) -> dict[str, FloatArray]:
    L, nt = len(fit.sigma2), len(fit.tau2)
    return {
        "sigma2": np.ascontiguousarray(theta[:, :L]),
        "tau2": np.ascontiguousarray(theta[:, L : L + nt]),
        "rho": np.ascontiguousarray(theta[:, L + nt :]),
    }


def _warn_unconverged(fits: mli.DeletionFits, labels: tuple[str, ...], what: str) -> None:
    bad = np.flatnonzero(fits.fitted & ~fits.converged)
    if bad.size:
        names = ", ".join(repr(labels[int(i)]) for i in bad[:10])
        more = f" and {bad.size - 10} more" if bad.size > 10 else ""
        warnings.warn(
            f"the variance components of the refits without {what} {names}{more} did not "
            "converge; their rows are those of the last iteration (see `converged`)",
            ConvergenceWarning,
            stacklevel=3,
        )


def _refits(fit: MultilevelResult, codes: IntArray, n: int) -> mli.DeletionFits:
    """The refits without each unit (``codes == g`` for unit ``g``)."""
    delete = codes[None, :] == np.arange(n)[:, None]
    return mli.deletion_fits(
        _model_data(fit), fit.method == "REML", delete, np.asarray(fit._theta)
    )


# ---------------------------------------------------------------------------
# Leave one cluster out
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class MultilevelLeaveOneOutResult(ResultDisplay):
    """A multilevel or multivariate model refitted without each cluster in turn.

    Attributes
    ----------
    coef_names : tuple of str
    coef, se, statistic, pvalue : ndarray, shape (n, p)
        The refit's coefficients (NaN for a coefficient the remaining effects cannot
        estimate, as metafor drops the column), standard errors, z (or t) statistics
        and p-values.
    ci : IntervalArray
        Confidence intervals, arrays of shape (n, p).
    df : ndarray
        ``k₍c₎ - p₍c₎`` of each refit under ``test="t"``, NaN under z.
    sigma2, tau2, rho : ndarray, shape (n, ·)
        The refit's variance components (columns as the fit's ``sigma2``, ``tau2``,
        ``rho``).
    component_names : tuple of str
        ``sigma2.<level>``, ``tau2...``, ``rho...``: the columns of ``to_frame()``.
    QE, QE_pvalue : ndarray
        Test of residual heterogeneity of each refit (on ``QE_df`` df).
    QE_df : ndarray of int
    I2 : ndarray
        Multilevel I² (total, percent) of each refit; NaN for multivariate models.
    loglik : ndarray
        Maximised (restricted) log-likelihood of each refit.
    k : ndarray of int
        Number of effects in each refit.
    converged : ndarray of bool
        Whether each refit's variance components converged (False where no refit
        could be made: fewer effects than coefficients left).
    labels : tuple of str
        The omitted cluster of each row (order of first appearance).
    cluster : str
        What a row omits: the level name (``"study"``) or ``"cluster"`` for labels
        given as values.
    method, test : str
    level : float
    """

    coef_names: tuple[str, ...]
    coef: FloatArray = attrs.field(eq=False)
    se: FloatArray = attrs.field(eq=False)
    statistic: FloatArray = attrs.field(eq=False)
    pvalue: FloatArray = attrs.field(eq=False)
    ci: IntervalArray
    df: FloatArray = attrs.field(eq=False)
    sigma2: FloatArray = attrs.field(eq=False)
    tau2: FloatArray = attrs.field(eq=False)
    rho: FloatArray = attrs.field(eq=False)
    component_names: tuple[str, ...]
    QE: FloatArray = attrs.field(eq=False)
    QE_df: IntArray = attrs.field(eq=False)
    QE_pvalue: FloatArray = attrs.field(eq=False)
    I2: FloatArray = attrs.field(eq=False)
    loglik: FloatArray = attrs.field(eq=False)
    k: IntArray = attrs.field(eq=False)
    converged: BoolArray = attrs.field(eq=False)
    labels: tuple[str, ...]
    cluster: str
    method: str
    test: str
    level: float

    _repr_fields = ("cluster", "coef_names", "method")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def estimate(self) -> FloatArray:
        """The first coefficient of each refit (the pooled estimate of an
        intercept-only model)."""
        out: FloatArray = self.coef[:, 0]
        return out

    def _components(self) -> FloatArray:
        return np.concatenate([self.sigma2, self.tau2, self.rho], axis=1)

    def to_frame(self) -> pd.DataFrame:
        """One row per omitted cluster: the coefficients (``estimate``, ``se``, ...
        for one coefficient; ``coef[name]``, ``se[name]``, ... for several), the
        variance components, QE, I², the log-likelihood, ``k`` and ``converged``."""
        cols: dict[str, Any] = {}
        single = len(self.coef_names) == 1
        for j, nm in enumerate(self.coef_names):
            def key(s: str, nm: str = nm) -> str:
                return s if single else f"{s}[{nm}]"

            cols[key("estimate")] = self.coef[:, j]
            cols[key("se")] = self.se[:, j]
            cols[key("statistic")] = self.statistic[:, j]
            cols[key("pvalue")] = self.pvalue[:, j]
            cols[key("ci_low")] = self.ci.low[:, j]
            cols[key("ci_high")] = self.ci.high[:, j]
        comps = self._components()
        for j, nm in enumerate(self.component_names):
            cols[nm] = comps[:, j]
        cols["QE"] = self.QE
        cols["QE_pvalue"] = self.QE_pvalue
        if not np.all(np.isnan(self.I2)):
            cols["I2"] = self.I2
        cols["loglik"] = self.loglik
        cols["k"] = self.k
        cols["converged"] = self.converged
        frame: pd.DataFrame = pd.DataFrame(
            cols, index=pd.Index(list(self.labels), name=f"omitted {self.cluster}")
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels ``Summary``: one row per omitted cluster."""
        info = [
            ("Method:", self.method),
            ("Test:", self.test),
            ("Level:", f"{self.level:g}"),
            ("Omitted:", self.cluster),
            ("Refits:", str(len(self))),
            ("Converged:", f"{int(self.converged.sum())} of {len(self)}"),
        ]
        frame = self.to_frame()
        if len(self.coef_names) > 1:  # the table shows estimates and SEs (to_frame: all)
            keep = [c for c in frame.columns
                    if c.split("[")[0] not in ("statistic", "pvalue", "ci_low", "ci_high")]
            frame = frame[keep]
        return frame_summary(
            "Leave-one-cluster-out analysis (multilevel model)", info, frame,
            [f"Row: the model refitted without that {self.cluster}."],
        )

    def __str__(self) -> str:
        return str(self.summary())


def leave_one_cluster_out(
    fit: MultilevelResult, cluster: str | npt.ArrayLike | None = None
) -> MultilevelLeaveOneOutResult:
    """Refit a multilevel or multivariate model without each cluster in turn.

    Parameters
    ----------
    fit : MultilevelResult
        A fit of :func:`~alliance_meta.multilevel` or
        :func:`~alliance_meta.multivariate`; every refit uses its method, test,
        level, design and sampling covariance.
    cluster : str or array_like, optional
        What to omit: a level name of the fit (``fit.levels``: ``"study"``, an inner
        level's path labels, or ``"cluster"`` of a multivariate model), or one
        cluster label per effect.  Default: the outer level.

    Returns
    -------
    MultilevelLeaveOneOutResult

    Warns
    -----
    ConvergenceWarning
        One warning naming the clusters whose refit did not converge.

    Notes
    -----
    Row ``c`` is ``rma.mv`` fitted to the effects outside cluster ``c`` (its rows
    of ``V`` and of the design, variance components re-estimated by REML or ML at
    the global maximum).  As metafor, a refit drops the design columns that the
    remaining effects leave redundant (their coefficients are NaN), fixes at 0 the
    variance of a level left with one cluster and the correlations the remaining
    effects cannot inform, and keeps the components the fit fixed.  Its z or t tests
    use ``k₍c₎ - p₍c₎`` df.  metafor 3.8.1 has no ``leave1out`` for ``rma.mv``; the
    rows match ``rma.mv(..., subset = cluster != c)`` (Viechtbauer & Cheung, 2010).

    References
    ----------
    Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and influence diagnostics
    for meta-analysis. *Research Synthesis Methods*, 1(2), 112-125.
    """
    fit = _check_fit(fit, "leave_one_cluster_out")
    name, codes, labels = _clusters(fit, cluster, default_outer=True)
    n = len(labels)
    if n < 2:
        raise ModelSpecificationError(f"leave-one-out needs at least 2 clusters, got {n}")
    fits = _refits(fit, codes, n)
    assert name is not None
    _warn_unconverged(fits, labels, name)
    p = fit.p
    df = np.where(fits.fitted, (fits.k - fits.p).astype(np.float64), np.nan)
    dfa = df if fit.test == "t" else None
    beta = np.nan_to_num(fits.beta)
    vb = np.where(np.isnan(fits.vb), 0.0, fits.vb)
    ok = ~np.isnan(fits.beta)
    with np.errstate(invalid="ignore", divide="ignore"):
        ct = coef_inference(beta, vb, dfa, fit.level)

    def nan_out(a: FloatArray) -> FloatArray:
        return np.where(ok, a, np.nan)

    qe_df = np.where(fits.fitted, fits.k - fits.p, 0).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        qe_p = np.where(qe_df > 0, chi2_sf(fits.QE, np.maximum(qe_df, 1)), 1.0)
    qe_p = np.where(fits.fitted, qe_p, np.nan)
    I2 = np.full(n, np.nan)
    if fit.struct is None:
        L = len(fit.sigma2)
        for g in np.flatnonzero(fits.fitted):
            I2[g] = ml.multilevel_i2(fits.theta[g, :L], int(fits.k[g]), int(fits.p[g]),
                                     float(fits.trace_P[g]))[0]
    comps = _component_split(fit, fits.theta)
    del p
    return MultilevelLeaveOneOutResult(
        coef_names=fit.coef_names,
        coef=fits.beta.copy(),
        se=nan_out(ct.se),
        statistic=nan_out(ct.statistic),
        pvalue=nan_out(ct.pvalue),
        ci=IntervalArray(nan_out(ct.ci_low), nan_out(ct.ci_high)),
        df=df if fit.test == "t" else np.full(n, np.nan),
        component_names=fit._component_names,
        QE=fits.QE.copy(),
        QE_df=qe_df,
        QE_pvalue=qe_p,
        I2=I2,
        loglik=fits.ll.copy(),
        k=fits.k.copy(),
        converged=fits.converged.copy(),
        labels=labels,
        cluster=name,
        method=fit.method,
        test=fit.test,
        level=fit.level,
        **comps,
    )


# ---------------------------------------------------------------------------
# Influence
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class MultilevelInfluenceResult(ResultDisplay):
    """Case-deletion diagnostics of a multilevel or multivariate fit, by effect or by
    cluster (metafor's ``cooks.distance``, ``dfbetas`` and ``rstudent`` of ``rma.mv``
    fits).

    Attributes
    ----------
    labels : tuple of str
        The deleted unit of each row: an effect, or a cluster (order of first
        appearance).
    cluster : str or None
        The clustering (a level name, or ``"cluster"`` for labels given as values);
        None when single effects are deleted.
    cook_d : ndarray, shape (n,)
        Cook's distance ``(β̂ - β̂₍c₎)' Var(β̂)⁻¹ (β̂ - β̂₍c₎)`` over all coefficients.
    dfbetas : ndarray, shape (n, p)
        ``(β̂ - β̂₍c₎) / √diag((X'M₍c₎⁻¹X)⁻¹)``, ``M₍c₎`` the marginal covariance of all
        effects at the deleted fit's variance components.
    X2 : ndarray, shape (n,)
        ``e₍c₎' (M₍c₎[c, c] + X_c Var(β̂₍c₎) X_c')⁻¹ e₍c₎``: the cluster's
        studentized deleted residuals jointly (metafor's ``rstudent(...)$cluster$X2``;
        the square of ``rstudent`` for single effects).
    n_effects : ndarray of int, shape (n,)
        Effects in each deleted unit.
    components_del : ndarray, shape (n, q)
        The deleted fits' variance components (``component_names``).
    component_names : tuple of str
    converged : ndarray of bool, shape (n,)
        Whether each refit converged (False where none could be made).
    resid, se_resid, rstudent : ndarray, shape (k,)
        Per effect: the deleted residual ``y_i - x_i β̂₍c₎`` (its unit ``c`` deleted),
        its standard error ``√(M₍c₎[i, i] + x_i Var(β̂₍c₎) x_i')`` and their ratio.
    hat : ndarray, shape (k,)
        Leverages, the diagonal of ``X (X'M⁻¹X)⁻¹X'M⁻¹`` (metafor's ``hatvalues``).
    effect_labels : tuple of str
        The fit's effect labels (the rows of the per-effect arrays).
    unit_of_effect : ndarray of int, shape (k,)
        The row (deleted unit) of each effect.
    coef_names : tuple of str
    k, p : int
        Effects and coefficients of the fit.
    method : str

    Diagnostics of a unit whose refit leaves a coefficient inestimable (or cannot be
    made) are NaN, as metafor reports NA.
    """

    labels: tuple[str, ...]
    cluster: str | None
    cook_d: FloatArray = attrs.field(eq=False)
    dfbetas: FloatArray = attrs.field(eq=False)
    X2: FloatArray = attrs.field(eq=False)
    n_effects: IntArray = attrs.field(eq=False)
    components_del: FloatArray = attrs.field(eq=False)
    component_names: tuple[str, ...]
    converged: BoolArray = attrs.field(eq=False)
    resid: FloatArray = attrs.field(eq=False)
    se_resid: FloatArray = attrs.field(eq=False)
    rstudent: FloatArray = attrs.field(eq=False)
    hat: FloatArray = attrs.field(eq=False)
    effect_labels: tuple[str, ...]
    unit_of_effect: IntArray = attrs.field(eq=False)
    coef_names: tuple[str, ...]
    k: int
    p: int
    method: str

    _repr_fields = ("cluster", "k", "p", "method")

    def __len__(self) -> int:
        return len(self.labels)

    def to_frame(self) -> pd.DataFrame:
        """One row per deleted unit: Cook's distance, DFBETAS (one column per
        coefficient), X², the number of effects, the deleted fit's variance
        components and ``converged``."""
        cols: dict[str, Any] = {"cook_d": self.cook_d}
        for j, nm in enumerate(self.coef_names):
            cols[f"dfbetas[{nm}]"] = self.dfbetas[:, j]
        cols["X2"] = self.X2
        cols["n_effects"] = self.n_effects
        for j, nm in enumerate(self.component_names):
            cols[f"{nm}_del"] = self.components_del[:, j]
        cols["converged"] = self.converged
        frame: pd.DataFrame = pd.DataFrame(
            cols, index=pd.Index(list(self.labels), name=self.cluster or "effect")
        )
        return frame

    def effects_frame(self) -> pd.DataFrame:
        """One row per effect: its unit, deleted residual, its SE, the studentized
        residual (``rstudent``) and the leverage (``hat``)."""
        frame: pd.DataFrame = pd.DataFrame(
            {
                "unit": [self.labels[int(u)] for u in self.unit_of_effect],
                "resid": self.resid,
                "se": self.se_resid,
                "rstudent": self.rstudent,
                "hat": self.hat,
            },
            index=pd.Index(list(self.effect_labels), name="effect"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels ``Summary`` of the per-unit diagnostics."""
        info = [
            ("Method:", self.method),
            ("Effects (k):", str(self.k)),
            ("Deleted:", self.cluster or "each effect"),
            ("Units:", str(len(self))),
            ("Converged:", f"{int(self.converged.sum())} of {len(self)}"),
            ("Largest Cook's d:", _largest(self.cook_d, self.labels)),
        ]
        return frame_summary(
            "Influence diagnostics (multilevel model)", info, self.to_frame(),
            ["Cook's distances over all coefficients (metafor's cooks.distance.rma.mv)."],
        )

    def __str__(self) -> str:
        return str(self.summary())


def _largest(values: FloatArray, labels: tuple[str, ...]) -> str:
    if np.all(np.isnan(values)):
        return "NA"
    i = int(np.nanargmax(values))
    return f"{values[i]:.4f} ({labels[i]})"


def multilevel_influence(
    fit: MultilevelResult, cluster: str | npt.ArrayLike | None = None
) -> MultilevelInfluenceResult:
    """Cook's distances, DFBETAS and studentized deleted residuals of a multilevel or
    multivariate fit, by effect or by cluster.

    Parameters
    ----------
    fit : MultilevelResult
    cluster : str or array_like, optional
        Delete whole clusters: a level name of the fit (``fit.levels``) or one label
        per effect.  Default: delete each effect in turn (metafor's default).

    Returns
    -------
    MultilevelInfluenceResult

    Warns
    -----
    ConvergenceWarning
        One warning naming the units whose refit did not converge.

    Notes
    -----
    For each unit ``c`` (an effect or a cluster) the model is refitted without it,
    variance components re-estimated (metafor's ``reestimate = TRUE``), giving
    ``β̂₍c₎``, ``Var(β̂₍c₎)`` and components ``θ₍c₎``; ``M₍c₎`` is the marginal
    covariance of all effects at ``θ₍c₎``.  Then, as metafor 3.8.1's
    ``cooks.distance.rma.mv``, ``dfbetas.rma.mv`` and ``rstudent.rma.mv``
    (Viechtbauer & Cheung, 2010):

    * Cook's distance ``D_c = (β̂ - β̂₍c₎)' Var(β̂)⁻¹ (β̂ - β̂₍c₎)``;
    * ``DFBETAS_c = (β̂ - β̂₍c₎) / √diag((X'M₍c₎⁻¹X)⁻¹)``;
    * for each effect ``i`` of ``c``: ``e_i = y_i - x_i β̂₍c₎`` with SE
      ``√(M₍c₎[i, i] + x_i Var(β̂₍c₎) x_i')`` and ``rstudent = e_i / SE``; and
      ``X²_c = e_c' (M₍c₎[c, c] + X_c Var(β̂₍c₎) X_c')⁻¹ e_c``.

    ``Var(β̂)`` of the full data at every ``θ₍c₎`` is one batched evaluation.  A
    refit that leaves a design column empty gives NaN diagnostics (metafor: NA).
    A deletion that removes every effect of one outcome of a multivariate fit leaves
    that outcome's ``τ²`` (and correlations) unidentified (NaN in
    ``components_del``): its Cook's distance is given, its DFBETAS and residuals,
    which need ``M₍c₎`` for all effects, are NaN (metafor reports NA for all three:
    its refit is given one ``τ²`` per outcome of the full data and fails).
    Units are listed in order of first appearance (metafor sorts the cluster ids).

    References
    ----------
    Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and influence diagnostics
    for meta-analysis. *Research Synthesis Methods*, 1(2), 112-125.
    """
    fit = _check_fit(fit, "influence")
    name, codes, labels = _clusters(fit, cluster, default_outer=False)
    n = len(labels)
    fits = _refits(fit, codes, n)
    _warn_unconverged(fits, labels, name or "effect")
    problem = fit._problem
    st = problem.structure
    p = fit.p
    X = np.asarray(fit.X, dtype=np.float64)
    beta = np.asarray(fit.coef, dtype=np.float64)
    dfb = beta[None, :] - fits.beta
    with np.errstate(invalid="ignore"):
        cook = np.einsum("gi,gi->g", dfb, np.linalg.solve(fit.vcov, dfb.T).T)
    cook = np.where(fits.complete, cook, np.nan)
    # DFBETAS and rstudent need M at the deleted fit's components for all effects:
    # not defined when the deletion removed every effect of an outcome (its τ²)
    complete = fits.complete & ~np.isnan(fits.theta).any(axis=1)
    # Var(β̂) of all effects at each deleted fit's components: one batched evaluation
    dfbetas = np.full((n, p), np.nan)
    resid = np.full(fit.k, np.nan)
    se_r = np.full(fit.k, np.nan)
    X2 = np.full(n, np.nan)
    good = np.flatnonzero(complete)
    if good.size:
        th_int = st.to_internal(fits.theta[good])
        vb_full = ml.evaluate(problem, th_int, fit.method == "REML", 0).vb
        with np.errstate(invalid="ignore"):
            dfbetas[good] = dfb[good] / np.sqrt(np.einsum("gii->gi", vb_full))
        for g in good:
            idx = np.flatnonzero(codes == g)
            Mb = ml.marginal_covariance(problem, fits.theta[g])
            Mcc = mli.gather_blocks(problem.layout, Mb, idx)
            Xc = X[idx]
            e = fit.yi[idx] - Xc @ fits.beta[g]
            e = np.where(np.abs(e) < _RESID_ZERO, 0.0, e)
            S = Mcc + Xc @ fits.vb[g] @ Xc.T
            resid[idx] = e
            se_r[idx] = np.sqrt(np.diag(S))
            try:
                Lc = np.linalg.cholesky(S)
            except np.linalg.LinAlgError:
                continue
            z = np.linalg.solve(Lc, e)
            X2[g] = float(z @ z)
    _, hat = mli.projection(problem, np.asarray(fit._theta))
    hat = np.where(hat > 1.0 - 10.0 * np.finfo(np.float64).eps, 1.0, hat)
    return MultilevelInfluenceResult(
        labels=labels,
        cluster=name,
        cook_d=cook,
        dfbetas=dfbetas,
        X2=X2,
        n_effects=np.bincount(codes, minlength=n).astype(np.int64),
        components_del=fits.theta.copy(),
        component_names=fit._component_names,
        converged=fits.converged.copy(),
        resid=resid,
        se_resid=se_r,
        rstudent=resid / se_r,
        hat=hat,
        effect_labels=fit.labels,
        unit_of_effect=codes,
        coef_names=fit.coef_names,
        k=fit.k,
        p=p,
        method=fit.method,
    )


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------


def estimate_weights(fit: MultilevelResult) -> FloatArray:
    """Each effect's weight in each coefficient: ``A = (X'M⁻¹X)⁻¹X'M⁻¹``.

    Parameters
    ----------
    fit : MultilevelResult

    Returns
    -------
    ndarray, shape (p, k)
        ``β̂ = A y``: row ``j`` gives every effect's weight in coefficient ``j``.  For
        an intercept-only model the single row sums to 1 and is each effect's share
        of the pooled estimate, ``1'W / 1'W1`` with ``W = M⁻¹`` (metafor's
        ``weights(fit, type = "rowsum")``).

    Notes
    -----
    metafor's default ``weights()`` of an ``rma.mv`` fit is the diagonal of ``W``,
    which is not an effect's contribution to the estimate when ``M`` has
    off-diagonal entries (effects of one study share its random effect): an effect's
    share also counts the negative weight its correlated neighbours put on it
    (metafor issue #52).  Shares may be negative for strongly correlated effects of
    unequal precision.
    """
    fit = _check_fit(fit, "estimate_weights")
    A, _ = mli.projection(fit._problem, np.asarray(fit._theta))
    return A


def standardized_residuals(fit: MultilevelResult) -> tuple[FloatArray, FloatArray]:
    """Residuals ``e = y - Xβ̂`` and their standard errors (metafor's ``rstandard`` of
    an ``rma.mv`` fit).

    Returns
    -------
    resid, se : ndarray, shape (k,)
        ``e_i`` (0 below ``100 ε``, as metafor) and ``√((I - H)M(I - H)')_ii =
        √(M_ii - x_i Var(β̂) x_i')`` with ``H = X(X'M⁻¹X)⁻¹X'M⁻¹``.
    """
    fit = _check_fit(fit, "standardized_residuals")
    X = np.asarray(fit.X, dtype=np.float64)
    e = np.asarray(fit.yi, dtype=np.float64) - X @ np.asarray(fit.coef, dtype=np.float64)
    e = np.where(np.abs(e) < _RESID_ZERO, 0.0, e)
    m = mli.marginal_diagonal(fit._problem, np.asarray(fit._theta))
    v = m - np.einsum("ij,jk,ik->i", X, np.asarray(fit.vcov, dtype=np.float64), X)
    return e, np.sqrt(np.maximum(v, 0.0))
