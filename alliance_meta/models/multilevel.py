"""Dependent effect sizes: multilevel and multivariate models (metafor's ``rma.mv``).

* :func:`multilevel`: nested random intercepts, one variance component per level
  (``rma.mv(yi, V, random = ~ 1 | study/es)``), with a known sampling covariance;
* :func:`multivariate`: ``random = ~ outcome | cluster`` with a CS, HCS, UN or DIAG
  between-outcome covariance;
* :func:`likelihood_ratio_test`: ``anova(full, reduced)``;
* :func:`covariance_matrix`: ``vcalc`` with a constant within-cluster correlation;
* :func:`aggregate`: ``aggregate.escalc``, one effect per cluster.

The numerical work is in :mod:`alliance_meta.core.multilevel` (REML/ML over padded
blocks) and :mod:`alliance_meta.core.blocks`; coefficient inference in
:mod:`alliance_meta.core.inference`.

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package.
*Journal of Statistical Software*, 36(3), 1-48; and metafor's ``rma.mv``, ``vcalc``,
``aggregate.escalc``, ``confint.rma.mv`` documentation (version 3.8-1).

Konstantopoulos, S. (2011). Fixed effects and variance components estimation in
three-level meta-analysis. *Research Synthesis Methods*, 2(1), 61-76.

Cheung, M. W.-L. (2014). Modeling dependent effect sizes with three-level
meta-analyses: a structural equation modeling approach. *Psychological Methods*,
19(2), 211-229.

Nakagawa, S., & Santos, E. S. A. (2012). Methodological issues and advances in
biological meta-analysis. *Evolutionary Ecology*, 26(5), 1253-1274.

Pustejovsky, J. E., & Tipton, E. (2022). Meta-analysis with robust variance
estimation: expanding the range of working models. *Prevention Science*, 23,
425-438 (the correlated-and-hierarchical-effects working model built with
:func:`covariance_matrix`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse
from statsmodels.iolib.summary import Summary

from alliance_meta.core import blocks as bl
from alliance_meta.core import multilevel as core
from alliance_meta.core.inference import (
    chi2_sf,
    coef_inference,
    critical_value,
    prediction_interval,
    wald_test,
)
from alliance_meta.core.multilevel_influence import estimate_components
from alliance_meta.data.design import Design, make_design, warn_dropped
from alliance_meta.exceptions import (
    ConvergenceWarning,
    InvalidStudyError,
    ModelSpecificationError,
    ModelSpecificationWarning,
)
from alliance_meta.models._inputs import (
    _data_values,
    check_level,
    frame_column,
    split_source,
)
from alliance_meta.results.base import ConfidenceInterval, IntervalArray, freeze_arrays
from alliance_meta.results.display import ResultDisplay, fmt_p, fmt_p_eq
from alliance_meta.results.prediction import Prediction
from alliance_meta.results.summary import coefficient_frame, info_table, make_summary, value_table
from alliance_meta.results.wald import CoefficientTests

if TYPE_CHECKING:
    from alliance_meta.data.study import StudySet

__all__ = [
    "AggregateResult",
    "LikelihoodRatioTest",
    "MultilevelResult",
    "VarianceComponentCI",
    "aggregate",
    "covariance_matrix",
    "likelihood_ratio_test",
    "multilevel",
    "multivariate",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MVMethod = Literal["REML", "ML"]
MVTest = Literal["z", "t"]
Struct = Literal["UN", "CS", "HCS", "DIAG"]
#: ``levels``: a mapping level name -> labels (or a StudySet column name), outer
#: first, or a sequence of StudySet column names.
LevelSpec: TypeAlias = "Mapping[str, npt.ArrayLike | str] | Sequence[str]"

_METHODS = ("REML", "ML")
_TESTS = ("z", "t")
_STRUCTS = ("UN", "CS", "HCS", "DIAG")


# ---------------------------------------------------------------------------
# Input helpers
# ---------------------------------------------------------------------------


def _label_str(v: object) -> str:
    """R's ``as.character`` of a grouping value (``2`` not ``2.0``)."""
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(v)


def _is_missing(v: object) -> bool:
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return bool(np.isnan(v))
    return False


def _effect_labels(k: int) -> tuple[str, ...]:
    """``("Effect 1", ..., "Effect k")`` (the labels of effects given as arrays)."""
    return tuple(np.char.add("Effect ", np.arange(1, k + 1).astype(str)).tolist())


def _check_choice(value: object, allowed: Sequence[str], what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ModelSpecificationError(f"{what} must be one of {list(allowed)}, got {value!r}")
    return value



def _resolve_yi(
    studies: StudySet | None, yi: npt.ArrayLike | None
) -> tuple[FloatArray, tuple[str, ...], str]:
    """``(y, labels, measure)`` from a StudySet or an array."""
    if studies is not None:
        if yi is not None:
            raise ModelSpecificationError("give either studies or yi, not both")
        y = np.array(studies.yi, dtype=np.float64)
        labels = tuple(str(s) for s in studies.labels)
        measure = str(getattr(studies, "measure", "GEN"))
    else:
        if yi is None:
            raise ModelSpecificationError("give studies, or yi")
        try:
            y = np.array(yi, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidStudyError("effect sizes must be numbers", field="yi") from None
        labels = _effect_labels(y.size)
        measure = "GEN"
    if y.ndim != 1 or y.size == 0:
        raise InvalidStudyError(
            f"yi must be a non-empty 1-D array, got shape {y.shape}", field="yi"
        )
    bad = ~np.isfinite(y)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidStudyError("effect size is missing or not finite", study=labels[i], field="yi")
    return y, labels, measure


def _resolve_vi(
    studies: StudySet | None, vi: npt.ArrayLike | None, k: int, labels: Sequence[str]
) -> FloatArray | None:
    if vi is None:
        if studies is None:
            return None
        v = np.array(studies.vi, dtype=np.float64)
    else:
        try:
            v = np.array(vi, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidStudyError("sampling variances must be numbers", field="vi") from None
    if v.shape != (k,):
        raise InvalidStudyError(f"vi has shape {v.shape}, expected ({k},)", field="vi")
    bad = ~(np.isfinite(v) & (v > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidStudyError(
            f"sampling variance must be positive and finite, got {v[i]!r}",
            study=labels[i],
            field="vi",
        )
    return v


def _column(
    name: str,
    values: object,
    studies: StudySet | None,
    k: int,
    field: str,
    frame: pd.DataFrame | None = None,
) -> npt.NDArray[Any]:
    """A grouping column given as values, or as the name of a StudySet column or of a
    ``data=`` column."""
    if isinstance(values, str) and frame is not None:
        arr = np.asarray(frame_column(frame, values, name).to_numpy())
    elif isinstance(values, str):
        if studies is None:
            raise InvalidStudyError(
                f"{field} {name!r} is given as the column name {values!r} but no studies "
                "were given; pass the labels instead",
                field=name,
            )
        arr = np.asarray(studies.column(values))
    else:
        try:
            arr = np.asarray(values)
        except (TypeError, ValueError):
            arr = np.asarray(values, dtype=object)
    if arr.ndim != 1 or arr.shape[0] != k:
        raise InvalidStudyError(
            f"{field} {name!r} has shape {arr.shape}, expected ({k},) (one label per effect)",
            field=name,
        )
    return arr


def _labels_of(arr: npt.NDArray[Any], name: str, labels: Sequence[str]) -> npt.NDArray[Any]:
    """Labels as R's ``as.character`` spells them (object array of str); an error
    naming the effect for a missing label.  Vectorised for numeric and text arrays."""
    kind = arr.dtype.kind
    if kind in "US":
        return arr.astype(str).astype(object)
    if kind in "iu":
        return arr.astype(str).astype(object)
    if kind == "b":
        return np.where(arr, "TRUE", "FALSE").astype(object)
    if kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidStudyError(f"missing label of {name!r}", study=labels[i], field=name)
        if np.all(arr == np.round(arr)) and np.all(np.abs(arr) < 2**53):
            return arr.astype(np.int64).astype(str).astype(object)
    out = np.empty(arr.size, dtype=object)
    for i, v in enumerate(arr):
        if _is_missing(v):
            raise InvalidStudyError(f"missing label of {name!r}", study=labels[i], field=name)
        out[i] = _label_str(v)
    return out


def _codes(keys: npt.ArrayLike) -> tuple[IntArray, npt.NDArray[Any]]:
    """Codes 0..m-1 of labels in order of first appearance, and the labels."""
    codes, uniq = pd.factorize(np.asarray(keys), sort=False)
    return np.asarray(codes, dtype=np.int64), np.asarray(uniq, dtype=object)


def _parse_levels(
    levels: object,
    studies: StudySet | None,
    k: int,
    labels: Sequence[str],
    frame: pd.DataFrame | None = None,
) -> tuple[tuple[str, ...], list[npt.NDArray[Any]]]:
    """Level names (outer first) and the label of every effect at each level."""
    if isinstance(levels, Mapping):
        items = [(str(n), v) for n, v in levels.items()]
    elif isinstance(levels, Sequence) and not isinstance(levels, str):
        items = [(str(n), str(n)) for n in levels]
    elif isinstance(levels, str):
        items = [(levels, levels)]
    else:
        raise ModelSpecificationError(
            "levels must be a mapping level name -> labels (outer first) or a sequence of "
            "StudySet column names"
        )
    if not items:
        raise ModelSpecificationError("levels must name at least one level")
    names = tuple(n for n, _ in items)
    if len(set(names)) != len(names):
        raise ModelSpecificationError(f"level names must be distinct, got {list(names)}")
    cols = [_labels_of(_column(n, v, studies, k, "level", frame), n, labels) for n, v in items]
    return names, cols


def _parse_sigma2(sigma2: object, n: int, names: Sequence[str]) -> FloatArray:
    """Fixed values (NaN where estimated) of the level variances."""
    if sigma2 is None:
        return np.full(n, np.nan)
    vals: list[object] = list(sigma2) if isinstance(sigma2, Sequence) else [sigma2]
    if len(vals) == 1 and n > 1:
        vals = vals * n
    if len(vals) != n:
        raise ModelSpecificationError(
            f"sigma2 has {len(vals)} values but the model has {n} levels ({', '.join(names)})"
        )
    out = np.full(n, np.nan)
    for j, v in enumerate(vals):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, bool):
            raise ModelSpecificationError(
                f"sigma2 of level {names[j]!r} must be a number or None, got {v!r}"
            )
        fv = float(v)
        if not (fv >= 0 and math.isfinite(fv)):
            raise ModelSpecificationError(
                f"sigma2 of level {names[j]!r} must be non-negative and finite, got {v!r}"
            )
        out[j] = fv
    return out


def _as_matrix(V: object, k: int, labels: Sequence[str]) -> sparse.csr_matrix | FloatArray:
    """A validated sampling covariance: csr matrix, or a (k,) diagonal."""
    if sparse.issparse(V):
        M: sparse.csr_matrix = sparse.csr_matrix(V).astype(np.float64)  # type: ignore[call-overload]
    else:
        try:
            arr = np.asarray(V, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidStudyError("V must be a numeric matrix", field="V") from None
        if arr.ndim == 1:
            if arr.shape != (k,):
                raise InvalidStudyError(f"V has shape {arr.shape}, expected ({k}, {k})", field="V")
            bad = ~(np.isfinite(arr) & (arr > 0))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InvalidStudyError(
                    f"sampling variance must be positive and finite, got {arr[i]!r}",
                    study=labels[i],
                    field="V",
                )
            out: FloatArray = arr.copy()
            return out
        M = sparse.csr_matrix(arr)
    if M.shape != (k, k):
        raise InvalidStudyError(f"V has shape {M.shape}, expected ({k}, {k})", field="V")
    M.sum_duplicates()
    if not np.all(np.isfinite(M.data)):
        r = int(sparse.coo_matrix(M).row[~np.isfinite(sparse.coo_matrix(M).data)][0])
        raise InvalidStudyError("V has a missing or infinite entry", study=labels[r], field="V")
    d = M.diagonal()
    bad = ~(d > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidStudyError(
            f"V has a non-positive variance {d[i]!r} on its diagonal", study=labels[i], field="V"
        )
    return M  # symmetry is checked block by block (_block_checks)


def _vdiag(V: sparse.csr_matrix | FloatArray) -> FloatArray:
    if isinstance(V, np.ndarray):
        out: FloatArray = V.copy()
        return out
    return np.asarray(V.diagonal(), dtype=np.float64)


def _constant_rho_matrix(
    vi: FloatArray, codes: IntArray, rho: FloatArray, obs: IntArray | None
) -> sparse.csr_matrix:
    """``V_ij = r_ij √(v_i v_j)`` within clusters: ``r = 1`` on the diagonal and for
    effects with the same ``obs``, else the cluster's ``rho`` (metafor's ``vcalc``)."""
    k = vi.size
    layout = bl.make_layout(codes)
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[FloatArray] = []
    for b in layout.buckets:
        m = b.mask[:, :, None] & b.mask[:, None, :]
        n_i, i_i, j_i = np.nonzero(m)
        ei, ej = b.index[n_i, i_i], b.index[n_i, j_i]
        r = rho[codes[ei]]
        same = ei == ej
        if obs is not None:
            same = same | (obs[ei] == obs[ej])
        corr = np.where(same, 1.0, r)
        rows.append(ei)
        cols.append(ej)
        vals.append(corr * np.sqrt(vi[ei] * vi[ej]))
    Vm = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(k, k)
    )
    Vm.eliminate_zeros()
    return Vm


def _check_rho(rho: object, n: int, field: str = "rho") -> FloatArray:
    arr = np.atleast_1d(np.asarray(rho, dtype=np.float64))
    if arr.size == 1:
        arr = np.full(n, float(arr[0]))
    if arr.shape != (n,):
        raise ModelSpecificationError(
            f"{field} must be one correlation or one per cluster ({n}), got {arr.size} values"
        )
    if not np.all(np.isfinite(arr) & (np.abs(arr) <= 1.0)):
        raise ModelSpecificationError(f"{field} must be correlations in [-1, 1], got {rho!r}")
    return arr


# ---------------------------------------------------------------------------
# Design matrix
# ---------------------------------------------------------------------------


def _has_moderators(mods: object) -> bool:
    if isinstance(mods, (Mapping, Sequence)) and not isinstance(mods, str):
        return len(mods) > 0
    return True


def _design(
    moderators: object,
    studies: StudySet | None,
    k: int,
    labels: Sequence[str],
    intercept: bool,
    frame: pd.DataFrame | None = None,
) -> Design:
    """The model's design, from the one design builder (formulas, names, values)."""
    mods: object = [] if moderators is None else moderators
    if not intercept and not _has_moderators(mods):
        warnings.warn(
            "a model needs an intercept or moderators: the intercept was put back "
            "(as metafor does)",
            ModelSpecificationWarning,
            stacklevel=3,
        )
        intercept = True
    design = make_design(
        mods, k=k, labels=labels, studies=studies, data=frame, intercept=intercept
    )
    warn_dropped(design, stacklevel=3)
    return design


def _check_k_p(k: int, p: int, names: Sequence[str]) -> None:
    if k <= p:
        raise ModelSpecificationError(
            f"too few effects: k = {k} for {p} coefficients ({', '.join(names)}) and the "
            "variance components; use fewer moderators"
        )


# ---------------------------------------------------------------------------
# Result classes
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class VarianceComponentCI(ResultDisplay):
    """Profile-likelihood confidence intervals of variance components
    (metafor's ``confint.rma.mv``).

    Attributes
    ----------
    names : tuple of str
        ``sigma2.<level>``, ``tau2[.<outcome>]``, ``rho[.<a>.<b>]``.
    estimate : ndarray
    ci : IntervalArray
        Bounds; a variance's lower bound is 0 (a correlation's ±1) when the CI
        reaches it.  NaN where the bound could not be found (see ``converged``).
    level : float
    converged : ndarray of bool
        Whether both bounds were found.
    """

    names: tuple[str, ...]
    estimate: FloatArray = attrs.field(eq=False)
    ci: IntervalArray
    level: float
    converged: npt.NDArray[np.bool_] = attrs.field(eq=False)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[ConfidenceInterval]:
        """The interval of each component, in order (``[tuple(c) for c in ci]`` is
        metafor's ``[[ci.lb, ci.ub], ...]``)."""
        return (self[i] for i in range(len(self.names)))

    def __getitem__(self, key: int | str) -> ConfidenceInterval:
        """The interval of one component, by position or name."""
        i = self.names.index(key) if isinstance(key, str) else int(key)
        return ConfidenceInterval(float(self.ci.low[i]), float(self.ci.high[i]))

    def to_frame(self) -> pd.DataFrame:
        """One row per component: estimate and CI bounds."""
        frame: pd.DataFrame = pd.DataFrame(
            {"estimate": self.estimate, "ci_low": self.ci.low, "ci_high": self.ci.high},
            index=pd.Index(list(self.names), name="component"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels ``Summary`` of the intervals."""
        lo, hi = f"[{(1 - self.level) / 2:.3f}", f"{1 - (1 - self.level) / 2:.3f}]"
        rows = [
            [f"{e:.4f}", f"{low:.4f}", f"{high:.4f}"]
            for e, low, high in zip(self.estimate, self.ci.low, self.ci.high, strict=True)
        ]
        notes = [] if self.converged.all() else ["Some bounds could not be found (NaN)."]
        return make_summary(
            [value_table(rows, ["estimate", lo, hi], list(self.names),
                         f"Profile-likelihood CIs ({100 * self.level:g}%)")],
            notes,
        )

    def __str__(self) -> str:
        return str(self.summary())


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class MultilevelResult(CoefficientTests, ResultDisplay):
    """A fitted multilevel or multivariate meta-analysis (metafor's ``rma.mv``).

    Attributes
    ----------
    coef_names : tuple of str
        R's coefficient names (``intrcpt``, moderator columns).
    coef, se, statistic, pvalue : ndarray
        Coefficients, standard errors, z (or t) statistics and two-sided p-values.
    ci : IntervalArray
        Confidence intervals of the coefficients.
    df : float or None
        ``k - p`` under ``test="t"``, else None.
    vcov : ndarray
        ``(X'M⁻¹X)⁻¹``.
    sigma2 : tuple of float
        One variance component per nested level, outer first (empty for a
        multivariate model).
    tau2, rho : tuple of float
        Outcome variances and correlations of a multivariate model (``rho``: the
        lower triangle in column-major order for UN); empty for nested models.
    QE, QE_df, QE_pvalue : float, int, float
        Test of residual heterogeneity, ``(y - Xβ̂_V)'V⁻¹(y - Xβ̂_V)`` on ``k - p``
        df (the full ``V``; metafor's ``QE`` of ``rma.mv``, Viechtbauer's ``rma.mv``
        documentation).
    QM, QM_df, QM_pvalue : float, tuple, float
        Omnibus test of the non-intercept coefficients (all coefficients without an
        intercept): χ² on ``QM_df = (m, None)``, or F on ``(m, k - p)`` under t.
    loglik, deviance, aic, bic, aicc : float
        metafor's ``fitstats`` for the fitted method (REML or ML).
    k : int
        Number of effects.
    level_names, n_clusters : tuple
        Level names (outer first) and the number of clusters at each level; for a
        multivariate model the cluster variable and its number of clusters.
    I2 : float or None
        Multilevel I² (total, percent); None for a multivariate model.
    I2_levels : tuple of float
        I² of each level (percent).
    typical_v : float
        The typical sampling variance ``(k - p) / tr(P)`` of I².
    struct : str or None
        The ``~ outcome | cluster`` structure (None for nested models).
    outcome_levels : tuple of str
        Outcome levels of a multivariate model (R's sorted factor levels).
    method, test, level, measure, converged, iterations, parms
        Settings, convergence and the number of estimated parameters.
    X, yi, vi, labels
        Design matrix, effects, sampling variances (``diag V``) and effect labels.
    """

    coef_names: tuple[str, ...]
    coef: FloatArray = attrs.field(eq=False)
    se: FloatArray = attrs.field(eq=False)
    statistic: FloatArray = attrs.field(eq=False, repr=False)
    pvalue: FloatArray = attrs.field(eq=False, repr=False)
    ci: IntervalArray = attrs.field(repr=False)
    df: float | None = attrs.field(repr=False)
    vcov: FloatArray = attrs.field(eq=False, repr=False)
    sigma2: tuple[float, ...]
    tau2: tuple[float, ...]
    rho: tuple[float, ...]
    QE: float = attrs.field(repr=False)
    QE_df: int = attrs.field(repr=False)
    QE_pvalue: float = attrs.field(repr=False)
    QM: float = attrs.field(repr=False)
    QM_df: tuple[int, int | None] = attrs.field(repr=False)
    QM_pvalue: float = attrs.field(repr=False)
    loglik: float
    deviance: float = attrs.field(repr=False)
    aic: float = attrs.field(repr=False)
    bic: float = attrs.field(repr=False)
    aicc: float = attrs.field(repr=False)
    k: int
    level_names: tuple[str, ...]
    n_clusters: tuple[int, ...]
    I2: float | None
    I2_levels: tuple[float, ...] = attrs.field(repr=False)
    typical_v: float = attrs.field(repr=False)
    struct: str | None
    outcome_levels: tuple[str, ...] = attrs.field(repr=False)
    method: str
    test: str = attrs.field(repr=False)
    level: float = attrs.field(repr=False)
    measure: str = attrs.field(repr=False)
    converged: bool
    iterations: int = attrs.field(repr=False)
    parms: int = attrs.field(repr=False)
    labels: tuple[str, ...] = attrs.field(repr=False)
    yi: FloatArray = attrs.field(eq=False, repr=False)
    vi: FloatArray = attrs.field(eq=False, repr=False)
    X: FloatArray = attrs.field(eq=False, repr=False)
    dropped: tuple[str, ...] = attrs.field(repr=False)
    sigma2_fixed: tuple[bool, ...] = attrs.field(repr=False)
    _design: Design = attrs.field(eq=False, repr=False, alias="design")
    _V: Any = attrs.field(eq=False, repr=False, alias="V")
    _problem: core.Problem = attrs.field(eq=False, repr=False, alias="problem")
    _theta: FloatArray = attrs.field(eq=False, repr=False, alias="theta")
    _fixed: FloatArray = attrs.field(eq=False, repr=False, alias="fixed")
    _outcome_codes: IntArray | None = attrs.field(eq=False, repr=False, alias="outcome_codes")
    _component_names: tuple[str, ...] = attrs.field(repr=False, alias="component_names")
    _level_labels: tuple[npt.NDArray[Any], ...] = attrs.field(
        eq=False, repr=False, alias="level_labels"
    )

    _repr_fields = ("coef_names", "coef", "sigma2", "tau2", "k", "n_clusters", "method")

    @property
    def p(self) -> int:
        """Number of coefficients."""
        return len(self.coef_names)

    @property
    def levels(self) -> dict[str, npt.NDArray[Any]]:
        """Each level's (or the multivariate cluster's) cluster of every effect, by
        level name: ``robust(fit, cluster="study")`` reads it.  An inner level's
        clusters are paths through the outer ones (``"11/1"``: school 1 of district
        11), as its labels are relative to them (R's ``study/es``)."""
        out: dict[str, npt.NDArray[Any]] = {}
        path: npt.NDArray[Any] | None = None
        for name, lab in zip(self.level_names, self._level_labels, strict=True):
            path = lab if path is None else np.char.add(np.char.add(
                path.astype(str), "/"), lab.astype(str)).astype(object)
            out[name] = path
        return out

    # -- variance components ---------------------------------------------------
    def profile_ci(self, level: float | None = None) -> VarianceComponentCI:
        """Profile-likelihood CIs of the estimated variance components.

        Parameters
        ----------
        level : float, optional
            Confidence level (default: the fit's).

        Returns
        -------
        VarianceComponentCI

        Notes
        -----
        As metafor's ``confint.rma.mv`` (Viechtbauer's documentation; Hardy &
        Thompson, 1996, for profile-likelihood intervals of a heterogeneity
        variance): the bounds of component ``θ_j`` solve
        ``2 (ℓ̂ - ℓ_p(θ_j)) = χ²_{1, level}``, where the profile ``ℓ_p`` maximises
        the (restricted) likelihood over the other components (each point a global
        maximisation); a variance's lower bound is 0 (a correlation's ±1) when the
        statistic there is below the critical value.  The roots are solved to 1e-12
        relative; metafor's ``uniroot`` uses ``tol = .Machine$double.eps^0.25``, so
        its bounds agree to about 1e-4.  metafor searches the upper bound of a
        variance up to ``max(10, 100 θ̂)``; here the search range grows until the
        bound is bracketed, so the interval does not depend on the units of ``y``.

        Hardy, R. J., & Thompson, S. G. (1996). A likelihood approach to
        meta-analysis with random effects. *Statistics in Medicine*, 15(6), 619-629.
        """
        lv = self.level if level is None else check_level(level)
        free = np.flatnonzero(np.isnan(self._fixed))
        if free.size == 0:
            raise ModelSpecificationError(
                "no estimated variance components: every component was fixed"
            )
        reml = self.method == "REML"
        est = np.empty(free.size)
        low = np.empty(free.size)
        high = np.empty(free.size)
        conv = np.empty(free.size, dtype=bool)
        for n, j in enumerate(free):
            lb, ub = core.profile_interval(
                self._problem, reml, self._fixed, self._theta, self.loglik, int(j), lv
            )
            est[n] = self._theta[j]
            low[n], high[n] = lb.value, ub.value
            conv[n] = lb.converged and ub.converged
        if not conv.all():
            bad = [self._component_names[j] for n, j in enumerate(free) if not conv[n]]
            warnings.warn(
                f"profile-likelihood bound(s) of {', '.join(bad)} could not be found",
                ConvergenceWarning,
                stacklevel=2,
            )
        return VarianceComponentCI(
            names=tuple(self._component_names[j] for j in free),
            estimate=est,
            ci=IntervalArray(low, high),
            level=lv,
            converged=conv,
        )

    # -- prediction ------------------------------------------------------------
    def _new_design(self, new_moderators: object) -> FloatArray:
        return self._design.new_rows(new_moderators)

    def _has_intercept(self) -> bool:
        return self._design.intercept

    def predict(self, new_moderators: object = None, *, outcome: object = None) -> Prediction:
        """Predicted effects with confidence and prediction intervals (``predict.rma``).

        Parameters
        ----------
        new_moderators : mapping or array_like, optional
            A mapping ``name -> values`` of raw moderator values, or numeric design
            columns without the intercept (metafor's ``newmods``).  None gives the
            fitted values of the effects (one prediction for an intercept-only
            model; one per outcome for an intercept-only multivariate model with
            several outcome variances).
        outcome : str or sequence of str, optional
            Multivariate models with several ``τ²``: the outcome(s) whose ``τ²``
            enters the prediction interval (metafor's ``tau2.levels``); without it
            the PI of a new design is NaN, as metafor's is NA.

        Returns
        -------
        Prediction

        Notes
        -----
        ``ŷ = x'β̂``, ``SE = √(x'Var(β̂)x)``, CI ``ŷ ± c SE`` and PI
        ``ŷ ± c √(SE² + Σ_l σ²_l + τ²_o)`` with ``c`` the normal quantile or the
        t quantile on ``k - p`` df (metafor's ``predict.rma`` for ``rma.mv`` fits).
        """
        tau2 = np.asarray(self.tau2, dtype=np.float64)
        n_tau = tau2.size
        out_idx: IntArray | None = None
        if new_moderators is None:
            if self.p == 1 and self._design.intercept:
                if self.struct is not None and n_tau > 1 and outcome is None:
                    Xn = np.ones((n_tau, 1))
                    out_idx = np.arange(n_tau, dtype=np.int64)
                else:
                    Xn = np.ones((1, 1))
            else:
                Xn = self.X
                if self._outcome_codes is not None:
                    out_idx = self._outcome_codes
        else:
            Xn = self._new_design(new_moderators)
        if outcome is not None:
            if self.struct is None:
                raise ModelSpecificationError("outcome applies to multivariate models only")
            outs = [outcome] if isinstance(outcome, str) else list(outcome)  # type: ignore[call-overload]
            pos = []
            for o in outs:
                key = _label_str(o)
                if key not in self.outcome_levels:
                    raise InvalidStudyError(
                        f"unknown outcome {key!r} (outcomes: {list(self.outcome_levels)})",
                        field="outcome",
                    )
                pos.append(self.outcome_levels.index(key))
            out_idx = np.asarray(pos, dtype=np.int64)
            if out_idx.size == 1 and Xn.shape[0] > 1:
                out_idx = np.full(Xn.shape[0], out_idx[0])
            if out_idx.size != Xn.shape[0]:
                raise InvalidStudyError(
                    f"{out_idx.size} outcomes for {Xn.shape[0]} predictions", field="outcome"
                )
        pred = Xn @ self.coef
        se = np.sqrt(np.einsum("ij,jk,ik->i", Xn, self.vcov, Xn))
        df = np.array([np.nan if self.df is None else self.df])
        crit = critical_value(df, self.level)[0]
        extra = np.full(pred.shape, float(np.sum(self.sigma2)))
        if self.struct is not None:
            if n_tau == 1:
                extra = extra + tau2[0]
            elif out_idx is not None:
                extra = extra + tau2[out_idx]
            else:
                extra = np.full(pred.shape, np.nan)
        pi_lo, pi_hi = prediction_interval(pred, se, extra, np.full(pred.shape, crit))
        return Prediction(
            pred=pred,
            se=se,
            ci=IntervalArray(pred - crit * se, pred + crit * se),
            pi=IntervalArray(pi_lo, pi_hi),
            X=Xn,
            level=self.level,
        )

    # -- cluster-robust helper protocol ----------------------------------------
    def marginal_blocks(self, codes: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
        """The fitted marginal covariance ``M = V + ZGZ'`` cluster by cluster (the
        model's ``Var(y)``: Konstantopoulos, 2011; Viechtbauer's ``rma.mv``
        documentation).

        Parameters
        ----------
        codes : (k,) int array
            Cluster codes ``0..G-1``, one per effect, in any order.

        Returns
        -------
        index : (G, b) int64
            Positions of each cluster's effects (in order), ``-1`` on padding.
        M : (G, b, b)
            ``M`` restricted to each cluster, identity on padding.

        Raises
        ------
        ModelSpecificationError
            If ``M`` links effects of two different clusters (the clusters must
            contain the model's independent blocks), naming them.
        """
        c = np.asarray(codes)
        if c.shape != (self.k,) or c.dtype.kind not in "iu":
            raise ModelSpecificationError(f"codes must be {self.k} integer cluster codes")
        c = c.astype(np.int64)
        if c.size and (c.min() < 0 or np.unique(c).size != int(c.max()) + 1):
            raise ModelSpecificationError("cluster codes must be 0..G-1, each used")
        index, M, linked = core.marginal_blocks(self._problem, self._theta, c)
        if linked.shape[0]:
            pairs = sorted({(int(c[i]), int(c[j])) for i, j in linked if c[i] < c[j]})
            i, j = linked[0]
            raise ModelSpecificationError(
                f"the fitted covariance links effects of different clusters (e.g. "
                f"{self.labels[int(i)]!r} in cluster {int(c[i])} and {self.labels[int(j)]!r} "
                f"in cluster {int(c[j])}; cluster pairs {pairs[:5]}): cluster by the model's "
                "outer level (or coarser)"
            )
        return index, M

    # -- display -----------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """Coefficient table: one row per coefficient."""
        return coefficient_frame(
            self.coef_names, self.coef, self.se, self.statistic, self.pvalue, self.ci
        )

    def variance_components(self) -> pd.DataFrame:
        """Variance components: estimate, square root (variances), whether fixed,
        and the number of clusters of each nested level."""
        names = list(self._component_names)
        est = list(self._theta)
        fixed = list(~np.isnan(self._fixed))
        sqrt = [
            math.sqrt(v) if not n.startswith("rho") and v >= 0 else math.nan
            for n, v in zip(names, est, strict=True)
        ]
        nlev: list[float] = [float(n) for n in self.n_clusters[: len(self.sigma2)]]
        nlev += [math.nan] * (len(names) - len(nlev))
        frame: pd.DataFrame = pd.DataFrame(
            {"estimate": est, "sqrt": sqrt, "n_levels": nlev, "fixed": fixed},
            index=pd.Index(names, name="component"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels ``Summary`` laid out like metafor's ``print.rma.mv``."""
        title = (
            "Multivariate meta-analysis (~ outcome | cluster, struct = "
            f"{self.struct})" if self.struct is not None else "Multilevel meta-analysis"
        )
        qm_df = f"{self.QM_df[0]}" if self.QM_df[1] is None else f"{self.QM_df[0]}, {self.QM_df[1]}"
        qm_name = "QM" if self.QM_df[1] is None else "F"
        left = [
            ("Method:", self.method),
            ("Measure:", self.measure),
            ("Effects (k):", str(self.k)),
            ("Levels:", ", ".join(f"{n} ({c})" for n, c in
                                  zip(self.level_names, self.n_clusters, strict=True))),
            ("Test:", self.test),
            ("Converged:", "yes" if self.converged else "no"),
        ]
        right = [
            ("logLik:", f"{self.loglik:.4f}"),
            ("deviance:", f"{self.deviance:.4f}"),
            ("AIC / BIC:", f"{self.aic:.4f} / {self.bic:.4f}"),
            ("AICc:", f"{self.aicc:.4f}"),
            (f"QE({self.QE_df}):", f"{self.QE:.4f} (p {fmt_p_eq(self.QE_pvalue)})"),
            (f"{qm_name}({qm_df}):", f"{self.QM:.4f} (p {fmt_p_eq(self.QM_pvalue)})"),
        ]
        if self.I2 is not None:
            right.append(("I^2 (total, %):", f"{self.I2:.2f}"))
        vc = self.variance_components()
        vrows = [
            [f"{e:.4f}", "" if math.isnan(sq) else f"{sq:.4f}",
             "" if math.isnan(nl) else f"{int(nl)}", "yes" if fx else "no"]
            for e, sq, nl, fx in zip(
                vc["estimate"].to_numpy(float), vc["sqrt"].to_numpy(float),
                vc["n_levels"].to_numpy(float), vc["fixed"].to_numpy(bool), strict=True,
            )
        ]
        stat = "z" if self.df is None else "t"
        lo, hi = f"[{(1 - self.level) / 2:.3f}", f"{1 - (1 - self.level) / 2:.3f}]"
        rows = [
            [f"{self.coef[j]:.4f}", f"{self.se[j]:.4f}", f"{self.statistic[j]:.3f}",
             fmt_p(self.pvalue[j]), f"{self.ci.low[j]:.4f}", f"{self.ci.high[j]:.4f}"]
            for j in range(self.p)
        ]
        tables = [
            info_table(left, right, title),
            value_table(vrows, ["estimate", "sqrt", "n levels", "fixed"], list(vc.index),
                        "Variance components"),
            value_table(rows, ["estimate", "se", stat, f"P>|{stat}|", lo, hi],
                        list(self.coef_names)),
        ]
        notes = []
        if not self.converged:
            notes.append(f"The {self.method} estimates did not converge.")
        if self.dropped:
            notes.append(f"Redundant predictors dropped: {', '.join(self.dropped)}.")
        return make_summary(tables, notes)

    def __str__(self) -> str:
        return str(self.summary())


# ---------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------


def _symmetry_check(problem: core.Problem, labels: Sequence[str]) -> None:
    """Every block of V symmetric (to R's ``isSymmetric`` tolerance, 1.5e-8 of the
    largest variance), else an error naming the effect.  Every non-zero of V lies in
    a block, so this checks all of V."""
    vmax = max(float(np.max(np.abs(np.diagonal(Vb, axis1=1, axis2=2)))) for Vb in problem.V)
    for Vb, b in zip(problem.V, problem.layout.buckets, strict=True):
        asym = np.abs(Vb - np.swapaxes(Vb, 1, 2))
        if float(asym.max()) > 1.5e-8 * vmax:
            bn, bi, bj = np.unravel_index(int(np.argmax(asym)), asym.shape)
            r, c = int(b.index[bn, bi]), int(b.index[bn, bj])
            raise InvalidStudyError(
                f"V is not symmetric: V[{r}, {c}] differs from V[{c}, {r}]",
                study=labels[min(r, c)],
                field="V",
            )


def _pd_check(
    problem: core.Problem, labels: Sequence[str], cluster_of: tuple[str, npt.NDArray[Any]]
) -> None:
    """An error naming the cluster whose block of V is not positive definite."""
    what, lab = cluster_of
    for Vb, b in zip(problem.V, problem.layout.buckets, strict=True):
        _, bad = bl.cholesky(Vb)
        if bad is not None:
            n = int(np.flatnonzero(bad)[0])
            members = b.index[n][b.mask[n]]
            names = sorted({str(lab[int(i)]) for i in members})
            clusters = ", ".join(f"{what} {nm!r}" for nm in names)
            raise InvalidStudyError(
                "the sampling covariance V is not positive definite for the effects "
                f"{[labels[int(i)] for i in members][:6]} of {clusters}",
                study=names[0],
                field="V",
            )


def _fit(
    *,
    y: FloatArray,
    V: sparse.csr_matrix | FloatArray,
    design: Design,
    level_names: tuple[str, ...],
    level_codes: list[IntArray],
    n_clusters: tuple[int, ...],
    structure: core.Structure,
    fixed: FloatArray,
    component_names: tuple[str, ...],
    cluster_codes: IntArray | None,
    outcome_codes: IntArray | None,
    outcome_levels: tuple[str, ...],
    cluster_labels_of: tuple[str, npt.NDArray[Any]],
    level_labels: tuple[npt.NDArray[Any], ...],
    labels: tuple[str, ...],
    measure: str,
    method: str,
    test: str,
    level: float,
) -> MultilevelResult:
    X, names, intercept = design.X, design.coef_names, design.intercept
    k, p = X.shape
    L = structure.n_sigma
    if structure.struct in ("HCS", "UN"):
        # standard deviations internally: G_ab = ρ s_a s_b is smooth where a variance is 0
        structure = dataclasses.replace(structure, sd=True)
    if structure.struct == "UN" and structure.n_outcomes >= 3:
        structure = dataclasses.replace(structure, psd=True)
    problem = core.build_problem(y, X, V, level_codes, structure, cluster_codes, outcome_codes)
    _symmetry_check(problem, labels)
    try:
        ss = core.sampling_stats(problem)  # factors every block of V
    except np.linalg.LinAlgError:
        _pd_check(problem, labels, cluster_labels_of)  # names the cluster
        raise
    reml = method == "REML"
    # UN over every positive semi-definite G through its Cholesky factor (metafor's
    # default for UN); the other structures in their own parameters
    est = estimate_components(problem, reml, fixed)
    sol, theta, unsettled = est.solution, est.theta, list(est.unsettled)
    if not sol.converged:
        comps = [component_names[i] for i in unsettled] or [
            component_names[i] for i in np.flatnonzero(np.isnan(fixed))
        ]
        warnings.warn(
            f"the {method} estimates of {', '.join(comps)} did not converge; the results "
            "are those of the last iteration",
            ConvergenceWarning,
            stacklevel=3,
        )
    ev = sol.evaluation
    beta = ev.beta[0]
    vb = ev.vb[0]
    df = float(k - p) if test == "t" else None
    dfa = None if df is None else np.array([df])
    ct = coef_inference(beta[None], vb[None], dfa, level)
    btt = np.arange(1, p) if (intercept and p > 1) else np.arange(p)
    wt = wald_test(beta[None], vb[None], btt.astype(np.intp), dfa)
    qe_df = k - p
    n_free = int(np.isnan(fixed).sum())
    parms = p + n_free
    ll = sol.ll
    dev, aic, bic, aicc = core.fit_statistics(ll, reml, k, p, parms, ss.ll_QE)
    sigma2 = tuple(float(v) for v in theta[:L])
    tau2 = tuple(float(v) for v in theta[L : L + structure.n_tau2])
    rho = tuple(float(v) for v in theta[L + structure.n_tau2 :])
    if structure.struct is None:
        i2, i2l, tv = core.multilevel_i2(theta[:L], k, p, ss.trace_P)
        I2: float | None = i2
        I2_levels = tuple(float(x) for x in i2l)
    else:
        tv = (k - p) / ss.trace_P
        I2, I2_levels = None, ()
    q2 = float(wt.df2[0])
    return MultilevelResult(
        coef_names=names,
        coef=beta,
        se=ct.se[0],
        statistic=ct.statistic[0],
        pvalue=ct.pvalue[0],
        ci=IntervalArray(ct.ci_low[0], ct.ci_high[0]),
        df=df,
        vcov=vb,
        sigma2=sigma2,
        tau2=tau2,
        rho=rho,
        QE=float(ss.QE),
        QE_df=int(qe_df),
        QE_pvalue=float(chi2_sf(ss.QE, qe_df)) if qe_df > 0 else 1.0,
        QM=float(wt.statistic[0]),
        QM_df=(int(wt.df1[0]), None if math.isnan(q2) else int(q2)),
        QM_pvalue=float(wt.pvalue[0]),
        loglik=float(ll),
        deviance=float(dev),
        aic=float(aic),
        bic=float(bic),
        aicc=float(aicc),
        k=int(k),
        level_names=level_names,
        n_clusters=n_clusters,
        I2=I2,
        I2_levels=I2_levels,
        typical_v=float(tv),
        struct=structure.struct,
        outcome_levels=outcome_levels,
        method=method,
        test=test,
        level=level,
        measure=measure,
        converged=bool(sol.converged),
        iterations=int(sol.iterations),
        parms=int(parms),
        labels=labels,
        yi=y,
        vi=_vdiag(V),
        X=X,
        dropped=design.dropped,
        sigma2_fixed=tuple(bool(not np.isnan(f)) for f in fixed[:L]),
        design=design,
        V=V,
        problem=problem,
        theta=theta,
        fixed=fixed,
        outcome_codes=outcome_codes,
        component_names=component_names,
        level_labels=level_labels,
    )


def multilevel(
    studies: StudySet | None = None,
    *,
    data: object = None,
    yi: npt.ArrayLike | str | None = None,
    vi: npt.ArrayLike | str | None = None,
    V: npt.ArrayLike | sparse.spmatrix | None = None,
    levels: LevelSpec,
    moderators: object = None,
    intercept: bool = True,
    rho: float | None = None,
    sigma2: Sequence[float | None] | float | None = None,
    method: MVMethod = "REML",
    test: MVTest = "z",
    level: float = 0.95,
) -> MultilevelResult:
    """Fit a multilevel (nested random-intercepts) meta-analysis, as metafor's
    ``rma.mv(yi, V, mods, random = ~ 1 | study/es)``.

    Parameters
    ----------
    studies : StudySet, optional
        Effects (``yi``, ``vi``), labels, and level / moderator columns by name.
    data : DataFrame, optional
        A data frame (or anything with the DataFrame interchange protocol) whose
        columns ``yi``, ``vi``, the levels and the moderators (names or a formula)
        name, as ``rma.mv(yi, vi, data = dat, ...)``; ``yi`` and ``vi`` default to
        the columns ``"yi"`` and ``"vi"`` that ``escalc`` writes.
    yi, vi : array_like or str, optional
        Effects and sampling variances (or, with ``data=``, their column names),
        when ``studies`` is not given.
    V : (k, k) array or scipy.sparse matrix, optional
        Known sampling covariance (otherwise ``diag(vi)``).
    levels : mapping or sequence of str
        Level name -> labels (or a StudySet column name), outer level first
        (``{"study": ..., "es": ...}``): ``random = ~ 1 | study/es``.  Labels of an
        inner level are relative to the outer ones (R's ``study/es``: school "1"
        of district 11 and school "1" of district 12 are different clusters).
    moderators : mapping or sequence, optional
        Moderators: names of StudySet columns or a mapping name -> values
        (continuous numbers; strings and logicals are treatment-coded factors).
    intercept : bool
        ``False`` is R's ``- 1`` (the first factor gets one column per level).
    rho : float, optional
        Build ``V`` with a constant correlation ``rho`` between the sampling errors
        of the effects of one outer cluster (:func:`covariance_matrix`).
    sigma2 : sequence, optional
        Fixed values of the level variances, ``None`` where estimated (metafor's
        ``sigma2 = c(0, NA)``).
    method : {"REML", "ML"}
    test : {"z", "t"}
        Normal or t (``k - p`` df) tests of the coefficients; QM is F under t.
    level : float
        Confidence level.

    Returns
    -------
    MultilevelResult

    Raises
    ------
    InvalidStudyError
        Missing or non-finite effects, variances or labels, a V that is not
        symmetric positive definite (naming the cluster), bad moderators.
    ModelSpecificationError
        A level with a single cluster, ``k <= p``, bad options.

    Warns
    -----
    ConvergenceWarning
        When the estimates of a component did not converge (naming it).
    ModelSpecificationWarning
        Redundant moderator columns dropped; two levels with the same clusters.

    Notes
    -----
    The model (Konstantopoulos, 2011; Cheung, 2014; Viechtbauer's ``rma.mv``
    documentation) is ``y = Xβ + Σ_l Z_l u_l + ε`` with ``u_l ~ N(0, σ²_l I)``
    one random intercept per cluster of level ``l`` and ``ε ~ N(0, V)``; the
    marginal covariance ``M = V + Σ_l σ²_l Z_l Z_l'`` is block-diagonal over the
    outer clusters (and ``V``'s blocks).  ``σ²`` maximise the REML or ML
    log-likelihood (with metafor's constants) globally: a scan of the parameter
    space, then bounded Newton iterations from the best basins, with components at
    0 held there when the score points outwards.  ``β̂ = (X'M⁻¹X)⁻¹X'M⁻¹y``,
    ``Var(β̂) = (X'M⁻¹X)⁻¹``.  ``QE = (y - Xβ̂_V)'V⁻¹(y - Xβ̂_V)`` on ``k - p`` df.
    Multilevel ``I²_l = 100 σ²_l / (Σσ² + ṽ)`` with ``ṽ = (k - p)/tr(P)``,
    ``P = W - WX(X'WX)⁻¹X'W``, ``W = V⁻¹`` (metafor FAQ; Nakagawa & Santos, 2012).

    Examples
    --------
    >>> import alliance_meta.models.multilevel as mm
    >>> fit = mm.multilevel(
    ...     yi=[0.1, 0.3, 0.2, 0.5, 0.4, 0.25, 0.6, 0.1],
    ...     vi=[0.01, 0.02, 0.015, 0.01, 0.02, 0.01, 0.03, 0.02],
    ...     levels={"study": ["a", "a", "b", "b", "c", "c", "d", "d"],
    ...             "es": ["1", "2", "1", "2", "1", "2", "1", "2"]})
    >>> len(fit.sigma2)
    2
    """
    meth = _check_choice(method, _METHODS, "method")
    tst = _check_choice(test, _TESTS, "test")
    lv = check_level(level)
    studies, frame = split_source(studies, data)
    if frame is not None:
        yi = _data_values(frame, yi, "yi", "yi")
        if V is None:
            vi = _data_values(frame, vi, "vi", "vi")
    y, labels, measure = _resolve_yi(studies, yi)
    k = y.size
    if V is not None and vi is not None:
        raise ModelSpecificationError("give vi or V, not both")
    level_names, cols = _parse_levels(levels, studies, k, labels, frame)
    fixed = _parse_sigma2(sigma2, len(level_names), level_names)
    level_codes: list[IntArray] = []
    n_clusters: list[int] = []
    prev = np.zeros(k, dtype=np.int64)
    for j, (name, col) in enumerate(zip(level_names, cols, strict=True)):
        lab_codes, _ = _codes(col)
        # R's a/b: clusters of level j are the combinations of levels 1..j
        codes, _ = _codes(prev * (int(lab_codes.max()) + 1) + lab_codes)
        level_codes.append(codes)
        n = int(codes.max()) + 1
        n_clusters.append(n)
        if n == 1 and np.isnan(fixed[j]):
            path = "/".join(str(c[0]) for c in cols[: j + 1])
            raise ModelSpecificationError(
                f"level {name!r} has a single cluster ({path!r}): its variance component "
                "cannot be estimated (fix it with sigma2 or drop the level)"
            )
        if j and n == n_clusters[j - 1]:
            warnings.warn(
                f"levels {level_names[j - 1]!r} and {name!r} have the same clusters (each "
                f"{level_names[j - 1]!r} cluster holds one {name!r} cluster): their variance "
                "components are not separately identifiable, only their sum",
                ModelSpecificationWarning,
                stacklevel=2,
            )
        prev = codes
    outer_labels = cols[0]
    if V is not None:
        if rho is not None:
            raise ModelSpecificationError("give V or rho, not both")
        Vm = _as_matrix(V, k, labels)
    else:
        v = _resolve_vi(studies, vi, k, labels)
        if v is None:
            raise ModelSpecificationError("give vi or V (or studies)")
        if rho is not None:
            r = _check_rho(rho, 1)[0]
            Vm = _constant_rho_matrix(v, level_codes[0], np.full(n_clusters[0], r), None)
        else:
            Vm = v
    design = _design(moderators, studies, k, labels, intercept, frame)
    _check_k_p(k, design.p, design.coef_names)
    structure = core.Structure(len(level_names))
    comp_names = tuple(f"sigma2.{n}" for n in level_names)
    return _fit(
        y=y, V=Vm, design=design,
        level_names=level_names, level_codes=level_codes, n_clusters=tuple(n_clusters),
        structure=structure, fixed=fixed, component_names=comp_names, cluster_codes=None,
        outcome_codes=None, outcome_levels=(),
        cluster_labels_of=(level_names[0], outer_labels),
        level_labels=tuple(cols),
        labels=labels, measure=measure, method=meth, test=tst, level=lv,
    )


def _sorted_levels(values: npt.NDArray[Any], raw: npt.NDArray[Any]) -> list[str]:
    """R's ``factor`` level order: numeric values numerically, else by text."""
    uniq = sorted({str(v) for v in values})
    try:
        nums = {_label_str(v): float(v) for v in raw}
        return sorted(uniq, key=lambda s: nums[s])
    except (TypeError, ValueError):
        return sorted(uniq, key=lambda s: (s.casefold(), s.swapcase()))


def multivariate(
    studies: StudySet | None = None,
    *,
    data: object = None,
    yi: npt.ArrayLike | str | None = None,
    V: npt.ArrayLike | sparse.spmatrix | None = None,
    cluster: npt.ArrayLike | str,
    outcome: npt.ArrayLike | str,
    struct: Struct = "UN",
    moderators: object = None,
    intercept: bool = True,
    method: MVMethod = "REML",
    test: MVTest = "z",
    level: float = 0.95,
) -> MultilevelResult:
    """Fit a multivariate meta-analysis, as metafor's ``rma.mv(yi, V, mods,
    random = ~ outcome | cluster, struct = struct)``.

    Parameters
    ----------
    studies : StudySet, optional
        Effects, labels, and cluster / outcome / moderator columns by name.
    data : DataFrame, optional
        A data frame whose columns ``yi``, ``cluster``, ``outcome`` and the
        moderators name (``yi`` defaults to the column ``"yi"``); without ``V``,
        its column ``"vi"`` gives the sampling variances.
    yi : array_like or str, optional
        Effects (or, with ``data=``, their column name), when ``studies`` is not
        given.
    V : (k, k) array, scipy.sparse matrix or (k,) variances
        Known sampling covariance (``studies.vi`` on the diagonal when omitted).
    cluster, outcome : array_like or str
        The cluster (e.g. study) and outcome of each effect, or StudySet column
        names.
    struct : {"UN", "CS", "HCS", "DIAG"}
        Between-outcome covariance ``G``: unstructured (``τ²_a``, ``ρ_ab``),
        compound symmetry (one ``τ²``, one ``ρ``), heteroscedastic CS (``τ²_a``,
        one ``ρ``), or diagonal (``τ²_a``).
    moderators, intercept, method, test, level
        As :func:`multilevel`.

    Returns
    -------
    MultilevelResult
        ``tau2`` holds the outcome variances (one for CS), ``rho`` the correlations
        (UN: the lower triangle of ``G`` in column-major order).

    Notes
    -----
    The model (Berkey et al., 1998; Viechtbauer's ``rma.mv`` documentation) is
    ``y = Xβ + u + ε`` with ``Cov(u_i, u_j) = G[o_i, o_j]`` for effects of the same
    cluster (0 otherwise) and ``ε ~ N(0, V)``: ``M = V + (Z₁GZ₁') ∘ (Z₂Z₂')``.
    Outcomes are ordered as R's sorted factor levels.  As in metafor, correlations
    that the data cannot inform are fixed at 0 with a warning: every ``ρ`` when
    each cluster holds one effect (CS, HCS) and, under UN, ``ρ_ab`` of outcome pairs
    that never share a cluster.  Estimation, tests and fit statistics are those of
    :func:`multilevel`.
    """
    meth = _check_choice(method, _METHODS, "method")
    tst = _check_choice(test, _TESTS, "test")
    st_name = _check_choice(struct, _STRUCTS, "struct")
    lv = check_level(level)
    studies, frame = split_source(studies, data)
    vi_data: FloatArray | None = None
    if frame is not None:
        yi = _data_values(frame, yi, "yi", "yi")
        if V is None:
            vi_data = _data_values(frame, None, "vi", "vi")
    y, labels, measure = _resolve_yi(studies, yi)
    k = y.size
    cl = _labels_of(_column("cluster", cluster, studies, k, "variable", frame), "cluster", labels)
    oc_raw = _column("outcome", outcome, studies, k, "variable", frame)
    oc = _labels_of(oc_raw, "outcome", labels)
    if V is None:
        v = _resolve_vi(studies, vi_data, k, labels)
        if v is None:
            raise ModelSpecificationError("give V (or studies with sampling variances)")
        Vm: sparse.csr_matrix | FloatArray = v
    else:
        Vm = _as_matrix(V, k, labels)
    ccodes, cuniq = _codes(cl)
    if len(cuniq) == 1:
        raise ModelSpecificationError(
            f"cluster has a single level ({cuniq[0]!r}): the between-outcome covariance "
            "cannot be estimated"
        )
    out_levels = _sorted_levels(oc, oc_raw)
    pos_of = {lvl: i for i, lvl in enumerate(out_levels)}
    ocodes = np.fromiter((pos_of[str(o)] for o in oc), np.int64, k)
    q = len(out_levels)
    structure = core.Structure(0, st_name, q)
    fixed = np.full(structure.n_params, np.nan)
    comp: list[str] = []
    if structure.n_tau2 == 1:
        comp.append("tau2")
    else:
        comp += [f"tau2.{o}" for o in out_levels]
    if st_name in ("CS", "HCS"):
        comp.append("rho")
    elif st_name == "UN":
        comp += [f"rho.{out_levels[r]}.{out_levels[c]}" for r, c in structure.pairs]
    # correlations the data cannot inform are fixed at 0 (as metafor)
    r0 = structure.n_tau2
    pair_counts = np.zeros((q, q), dtype=np.int64)
    for cc in range(len(cuniq)):
        present = np.unique(ocodes[ccodes == cc])
        pair_counts[np.ix_(present, present)] += 1
    if st_name in ("CS", "HCS") and (q == 1 or len(cuniq) == k):
        fixed[r0] = 0.0
        why = "a single outcome" if q == 1 else "each cluster holds a single effect"
        warnings.warn(f"{why}: rho is fixed at 0 (as metafor does)", ModelSpecificationWarning,
                      stacklevel=2)
    elif st_name == "UN":
        never = [m for m, (r, c) in enumerate(structure.pairs) if pair_counts[r, c] == 0]
        if never:
            fixed[r0 + np.asarray(never)] = 0.0
            warnings.warn(
                "some outcome pairs never share a cluster; their correlations are fixed at 0 "
                f"(as metafor does): {', '.join(comp[r0 + m] for m in never)}",
                ModelSpecificationWarning,
                stacklevel=2,
            )
    design = _design(moderators, studies, k, labels, intercept, frame)
    _check_k_p(k, design.p, design.coef_names)
    return _fit(
        y=y, V=Vm, design=design,
        level_names=("cluster",), level_codes=[], n_clusters=(len(cuniq),),
        structure=structure, fixed=fixed, component_names=tuple(comp), cluster_codes=ccodes,
        outcome_codes=ocodes, outcome_levels=tuple(out_levels),
        cluster_labels_of=("cluster", cl),
        level_labels=(cl,),
        labels=labels, measure=measure, method=meth, test=tst, level=lv,
    )


# ---------------------------------------------------------------------------
# Likelihood-ratio test
# ---------------------------------------------------------------------------


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class LikelihoodRatioTest(ResultDisplay):
    """Likelihood-ratio test of two nested fits (metafor's ``anova(full, reduced)``).

    Attributes
    ----------
    statistic : float
        ``LRT = dev_reduced - dev_full`` (≥ 0).
    df : int
        Difference in the number of estimated parameters.
    pvalue : float
        ``P(χ²_df > LRT)``.
    loglik_full, loglik_reduced, aic_full, aic_reduced, bic_full, bic_reduced,
    aicc_full, aicc_reduced, parms_full, parms_reduced
        Both fits' statistics (metafor's ``fitstats``).
    method : str
    """

    statistic: float
    df: int
    pvalue: float
    loglik_full: float
    loglik_reduced: float
    aic_full: float
    aic_reduced: float
    bic_full: float
    bic_reduced: float
    aicc_full: float
    aicc_reduced: float
    parms_full: int
    parms_reduced: int
    method: str

    def to_frame(self) -> pd.DataFrame:
        """Two rows (full, reduced): parameters, logLik, AIC, BIC, AICc, LRT, p."""
        frame: pd.DataFrame = pd.DataFrame(
            {
                "parms": [self.parms_full, self.parms_reduced],
                "loglik": [self.loglik_full, self.loglik_reduced],
                "aic": [self.aic_full, self.aic_reduced],
                "bic": [self.bic_full, self.bic_reduced],
                "aicc": [self.aicc_full, self.aicc_reduced],
                "LRT": [math.nan, self.statistic],
                "pvalue": [math.nan, self.pvalue],
            },
            index=pd.Index(["full", "reduced"], name="model"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels ``Summary`` laid out like metafor's ``anova`` table."""
        rows = [
            [str(parms), f"{aic:.4f}", f"{bic:.4f}", f"{aicc:.4f}", f"{ll:.4f}", lrt, pv]
            for parms, aic, bic, aicc, ll, lrt, pv in (
                (self.parms_full, self.aic_full, self.bic_full, self.aicc_full,
                 self.loglik_full, "", ""),
                (self.parms_reduced, self.aic_reduced, self.bic_reduced, self.aicc_reduced,
                 self.loglik_reduced, f"{self.statistic:.4f}", fmt_p(self.pvalue)),
            )
        ]
        return make_summary([
            value_table(rows, ["df", "AIC", "BIC", "AICc", "logLik", "LRT", "pval"],
                        ["Full", "Reduced"], f"Likelihood-ratio test ({self.method})")
        ])

    def __str__(self) -> str:
        return str(self.summary())


def _same_V(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    A = sparse.csr_matrix(sparse.diags(a) if isinstance(a, np.ndarray) else a)
    B = sparse.csr_matrix(sparse.diags(b) if isinstance(b, np.ndarray) else b)
    if A.shape != B.shape:
        return False
    diff = sparse.csr_matrix(A - B)
    diff.eliminate_zeros()
    return int(diff.nnz) == 0


def likelihood_ratio_test(full: MultilevelResult, reduced: MultilevelResult) -> LikelihoodRatioTest:
    """Likelihood-ratio test of two nested multilevel / multivariate fits.

    Parameters
    ----------
    full, reduced : MultilevelResult
        Fits of the same effects and sampling covariance by the same method; the
        one with more estimated parameters is taken as the full model (as metafor).

    Returns
    -------
    LikelihoodRatioTest

    Raises
    ------
    ModelSpecificationError
        Different data, different methods, the same number of parameters, or REML
        fits whose fixed effects differ (their restricted likelihoods are not
        comparable; refit with ``method="ML"``).

    Notes
    -----
    ``LRT = dev_r - dev_f = 2 (ℓ_f - ℓ_r)`` (clipped at 0) on ``parms_f - parms_r``
    df, as metafor's ``anova.rma``.  A variance component tested at its bound 0
    makes the χ² reference conservative (Self & Liang, 1987); metafor uses it
    unchanged, and so does this function.
    """
    for fit in (full, reduced):
        if not isinstance(fit, MultilevelResult):
            raise ModelSpecificationError(
                f"likelihood_ratio_test compares MultilevelResult fits, got {type(fit).__name__}"
            )
    if full.parms == reduced.parms:
        raise ModelSpecificationError(
            f"the models have the same number of parameters ({full.parms}): an LRT is not "
            "meaningful"
        )
    if full.parms < reduced.parms:
        full, reduced = reduced, full
    if (
        full.k != reduced.k
        or not np.array_equal(full.yi, reduced.yi)
        or not _same_V(full._V, reduced._V)
    ):
        raise ModelSpecificationError(
            "the fits use different effects or sampling covariances; an LRT needs the same data"
        )
    if full.method != reduced.method:
        raise ModelSpecificationError(
            f"the fits use different methods ({full.method} and {reduced.method})"
        )
    if full.method == "REML" and (
        full.X.shape != reduced.X.shape or not np.array_equal(full.X, reduced.X)
    ):
        raise ModelSpecificationError(
            "REML fits with different fixed effects (moderators) cannot be compared by a "
            "likelihood-ratio test: their restricted likelihoods differ; refit both with "
            "method='ML'"
        )
    lrt = max(0.0, reduced.deviance - full.deviance)
    df = full.parms - reduced.parms
    return LikelihoodRatioTest(
        statistic=float(lrt),
        df=int(df),
        pvalue=float(chi2_sf(lrt, df)),
        loglik_full=full.loglik,
        loglik_reduced=reduced.loglik,
        aic_full=full.aic,
        aic_reduced=reduced.aic,
        bic_full=full.bic,
        bic_reduced=reduced.bic,
        aicc_full=full.aicc,
        aicc_reduced=reduced.aicc,
        parms_full=full.parms,
        parms_reduced=reduced.parms,
        method=full.method,
    )


# ---------------------------------------------------------------------------
# Sampling covariances and aggregation
# ---------------------------------------------------------------------------


def covariance_matrix(
    studies: StudySet | None = None,
    *,
    vi: npt.ArrayLike | None = None,
    cluster: npt.ArrayLike | str,
    rho: float,
    obs: npt.ArrayLike | str | None = None,
) -> sparse.csr_matrix:
    """Sampling covariance with a constant within-cluster correlation (metafor's
    ``vcalc(vi, cluster, obs, rho)``).

    Parameters
    ----------
    studies : StudySet, optional
        Supplies ``vi`` and, by name, ``cluster`` / ``obs`` columns.
    vi : array_like, optional
        Sampling variances (when ``studies`` is not given).
    cluster : array_like or str
        Cluster (e.g. study) of each effect.
    rho : float
        Correlation between the sampling errors of two effects of one cluster.
    obs : array_like or str, optional
        Observation (sample) of each effect within its cluster: effects with the
        same ``obs`` in one cluster are computed on the same observations and get
        correlation 1.  By default every effect is its own observation, so every
        pair of a cluster gets ``rho``.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``V`` (k × k, in the order of the effects), block-diagonal by cluster:
        ``V_ii = v_i``, ``V_ij = r_ij √(v_i v_j)`` within a cluster.

    Notes
    -----
    metafor's ``vcalc`` treats all effects of a cluster as the same observation
    when ``obs`` is omitted (so their correlation is 1, whatever ``rho``); the
    constant-correlation matrix of ``aggregate.escalc`` and of the CHE working
    model (Pustejovsky & Tipton, 2022) is ``vcalc(vi, cluster, obs = 1:k, rho)``,
    which is this function's default.
    """
    k_labels: tuple[str, ...]
    if studies is not None:
        if vi is not None:
            raise ModelSpecificationError("give either studies or vi, not both")
        k_labels = tuple(str(s) for s in studies.labels)
        v = _resolve_vi(studies, None, len(k_labels), k_labels)
    else:
        if vi is None:
            raise ModelSpecificationError("give studies, or vi")
        va = np.atleast_1d(np.asarray(vi, dtype=np.float64))
        k_labels = _effect_labels(va.size)
        v = _resolve_vi(None, va, va.size, k_labels)
    assert v is not None
    k = v.size
    cl = _labels_of(_column("cluster", cluster, studies, k, "variable"), "cluster", k_labels)
    codes, uniq = _codes(cl)
    r = _check_rho(rho, 1)[0]
    ob: IntArray | None = None
    if obs is not None:
        ol = _labels_of(_column("obs", obs, studies, k, "variable"), "obs", k_labels)
        ob, _ = _codes(ol)
    return _constant_rho_matrix(v, codes, np.full(len(uniq), r), ob)


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class AggregateResult(ResultDisplay):
    """One inverse-variance-weighted effect per cluster (metafor's ``aggregate.escalc``).

    Attributes
    ----------
    cluster : tuple of str
        Cluster labels, in order of first appearance.
    yi, vi : ndarray
        ``ȳ_c = 1'W_c y_c / 1'W_c 1`` and ``v̄_c = 1 / 1'W_c 1`` with ``W_c = V_c⁻¹``.
    n_effects : ndarray of int
        Number of effects aggregated into each.
    rho : ndarray
        The within-cluster correlation used for each cluster.
    """

    cluster: tuple[str, ...]
    yi: FloatArray = attrs.field(eq=False)
    vi: FloatArray = attrs.field(eq=False)
    n_effects: npt.NDArray[np.int64] = attrs.field(eq=False)
    rho: FloatArray = attrs.field(eq=False, repr=False)

    _repr_fields = ("k", "n_effects")

    @property
    def k(self) -> int:
        """Number of clusters (aggregated effects)."""
        return len(self.cluster)

    def to_frame(self) -> pd.DataFrame:
        """One row per cluster: ``yi``, ``vi``, ``n_effects``."""
        frame: pd.DataFrame = pd.DataFrame(
            {"yi": self.yi, "vi": self.vi, "n_effects": self.n_effects},
            index=pd.Index(list(self.cluster), name="cluster"),
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels ``Summary`` of the aggregated effects."""
        rows = [[f"{y:.4f}", f"{v:.4f}", str(int(n))]
                for y, v, n in zip(self.yi, self.vi, self.n_effects, strict=True)]
        return make_summary([value_table(rows, ["yi", "vi", "effects"], list(self.cluster),
                                         "Aggregated effects")])

    def __str__(self) -> str:
        return str(self.summary())


def aggregate(
    studies: StudySet | None = None,
    *,
    yi: npt.ArrayLike | None = None,
    vi: npt.ArrayLike | None = None,
    cluster: npt.ArrayLike | str,
    rho: float | Sequence[float],
) -> AggregateResult:
    """Aggregate dependent effects to one per cluster (metafor's
    ``aggregate(escalc, cluster, rho)``, ``struct = "CS"``, weighted).

    Parameters
    ----------
    studies : StudySet, optional
        Supplies ``yi``, ``vi`` and, by name, the ``cluster`` column.
    yi, vi : array_like, optional
        Effects and sampling variances (when ``studies`` is not given).
    cluster : array_like or str
        Cluster of each effect.
    rho : float or sequence of float
        Correlation of the sampling errors within a cluster (one, or one per
        cluster in order of first appearance).

    Returns
    -------
    AggregateResult

    Raises
    ------
    InvalidStudyError
        When a cluster's covariance is not positive definite (naming it).

    Notes
    -----
    ``V_c`` has ``v_i`` on the diagonal and ``ρ √(v_i v_j)`` off it; the aggregate is
    the GLS mean ``ȳ_c = 1'V_c⁻¹y_c / 1'V_c⁻¹1`` with variance ``1 / 1'V_c⁻¹1``
    (Viechtbauer's ``aggregate.escalc`` documentation; Borenstein et al., 2009,
    ch. 24, for the composite of correlated outcomes).

    Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009).
    *Introduction to Meta-Analysis*. Wiley.
    """
    y, labels, _ = _resolve_yi(studies, yi)
    k = y.size
    v = _resolve_vi(studies, vi, k, labels)
    if v is None:
        raise ModelSpecificationError("give vi (or studies)")
    cl = _labels_of(_column("cluster", cluster, studies, k, "variable"), "cluster", labels)
    codes, uniq = _codes(cl)
    n = len(uniq)
    r = _check_rho(rho, n)
    layout = bl.make_layout(codes)
    Vb = bl.pad_covariance(layout, _constant_rho_matrix(v, codes, r, None))
    yb = bl.pad_vector(layout, y)
    yagg = np.empty(n)
    vagg = np.empty(n)
    for Vk, yk, b in zip(Vb, yb, layout.buckets, strict=True):
        L, bad = bl.cholesky(Vk)
        if bad is not None:
            c = int(b.blocks[int(np.flatnonzero(bad)[0])])
            raise InvalidStudyError(
                f"cannot aggregate: the covariance of cluster {uniq[c]!r} with rho = {r[c]:g} is "
                "not positive definite",
                study=str(uniq[c]),
                field="rho",
            )
        W = bl.spd_inverse(L)
        W = W * (b.mask[:, :, None] & b.mask[:, None, :])
        sw = W.sum(axis=(1, 2))
        yagg[b.blocks] = np.einsum("nij,nj->n", W, yk) / sw
        vagg[b.blocks] = 1.0 / sw
    return AggregateResult(
        cluster=tuple(str(u) for u in uniq),
        yi=yagg,
        vi=vagg,
        n_effects=np.bincount(codes, minlength=n).astype(np.int64),
        rho=r,
    )
