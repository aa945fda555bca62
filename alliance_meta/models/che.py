"""The CHE + CR2 workflow in one call: ``che`` and its ρ sensitivity analysis.

The correlated-and-hierarchical-effects (CHE) working model of Pustejovsky & Tipton
(2022) is a three-level model (effects within studies) whose sampling errors
correlate with a constant, guessed ρ within a study; because the guess may be
wrong, all inference on its coefficients is cluster-robust (CR2 standard errors,
Satterthwaite t tests, HTZ Wald tests; Tipton, 2015; Tipton & Pustejovsky, 2015).
The recipe, step by step::

    V = covariance_matrix(studies, cluster="study", rho=0.6)   # vcalc
    fit = multilevel(studies, V=V, levels=("study", "label"))  # rma.mv, ~ 1 | study/es
    res = robust(fit, "study")                                 # coef_test(vcov = "CR2")

:func:`che` does exactly this, and :func:`che_sensitivity` repeats it over a grid
of ρ, which reviewers ask for because ρ is rarely known.

References
----------
Pustejovsky, J. E., & Tipton, E. (2022). Meta-analysis with robust variance
estimation: expanding the range of working models. *Prevention Science*, 23,
425-438.

Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods for cluster-robust
variance estimation and hypothesis testing in fixed effects models. *Journal of
Business & Economic Statistics*, 36(4), 672-683.

Tipton, E. (2015). Small sample adjustments for robust variance estimation with
meta-regression. *Psychological Methods*, 20(3), 375-393.

Tipton, E., & Pustejovsky, J. E. (2015). Small-sample adjustments for tests of
moderators and model fit using robust variance estimation in meta-regression.
*Journal of Educational and Behavioral Statistics*, 40(6), 604-634.

Bell, R. M., & McCaffrey, D. F. (2002). Bias reduction in standard errors for linear
regression with multi-stage samples. *Survey Methodology*, 28(2), 169-181.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.iolib.summary import Summary

from alliance_meta.core.sandwich import ADJUSTMENTS, CRType
from alliance_meta.exceptions import ModelSpecificationError
from alliance_meta.models.multilevel import (
    LevelSpec,
    MultilevelResult,
    MVMethod,
    multilevel,
)
from alliance_meta.models.robust import RobustResult, RobustWaldTest, WaldTestKind, robust
from alliance_meta.results.base import IntervalArray, freeze_arrays
from alliance_meta.results.display import ResultDisplay
from alliance_meta.results.summary import frame_summary

if TYPE_CHECKING:
    from alliance_meta.data.study import StudySet

FloatArray = npt.NDArray[np.float64]

__all__ = ["CHEResult", "CHESensitivity", "che", "che_sensitivity"]

#: The ρ grid of :func:`che_sensitivity` (Pustejovsky & Tipton, 2022, use 0-0.8).
DEFAULT_RHO_GRID = (0.2, 0.4, 0.6, 0.8)


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class CHEResult(ResultDisplay):
    """A CHE working model and its cluster-robust inference (:func:`che`).

    Attributes
    ----------
    rho : float
        The working within-study correlation of the sampling errors.
    model : MultilevelResult
        The fitted three-level working model (its own, model-based inference is in
        ``model.se``; use it only if the working model is believed).
    robust : RobustResult
        Cluster-robust inference on the model's coefficients: what to report.
    coef_names, coef, se, statistic, df, pvalue, ci
        The robust coefficient table (from ``robust``).
    sigma2 : tuple of float
        The working model's variance components, outer level first.
    n_clusters : int
        Number of clusters of the robust variance (studies).
    adjust : str
        ``"CR2"`` (default), ``"CR1"`` or ``"CR0"``.
    k : int
        Number of effects.
    """

    _repr_fields = ("rho", "coef_names", "coef", "se", "pvalue", "sigma2", "n_clusters")

    rho: float
    model: MultilevelResult = attrs.field(eq=False)
    robust: RobustResult = attrs.field(eq=False)

    @property
    def coef_names(self) -> tuple[str, ...]:
        """Coefficient names."""
        return self.robust.coef_names

    @property
    def coef(self) -> FloatArray:
        """Coefficients (the working model's GLS estimates)."""
        return self.robust.coef

    @property
    def se(self) -> FloatArray:
        """Cluster-robust standard errors."""
        return self.robust.se

    @property
    def statistic(self) -> FloatArray:
        """Robust t statistics."""
        return self.robust.statistic

    @property
    def df(self) -> FloatArray:
        """Degrees of freedom of each coefficient's t test (Satterthwaite under CR2)."""
        return self.robust.df

    @property
    def pvalue(self) -> FloatArray:
        """Two-sided robust p-values."""
        return self.robust.pvalue

    @property
    def ci(self) -> IntervalArray:
        """Robust confidence intervals."""
        return self.robust.ci

    @property
    def sigma2(self) -> tuple[float, ...]:
        """The working model's variance components (outer level first)."""
        return self.model.sigma2

    @property
    def n_clusters(self) -> int:
        """Number of clusters of the robust variance."""
        return self.robust.n_clusters

    @property
    def adjust(self) -> str:
        """The cluster-robust estimator."""
        return self.robust.adjust

    @property
    def k(self) -> int:
        """Number of effects."""
        return self.model.k

    def wald_test(
        self, coefs: Sequence[int | str] | int | str | None = None, *, test: WaldTestKind = "HTZ"
    ) -> RobustWaldTest:
        """Robust Wald test that some coefficients are zero (HTZ by default); see
        :meth:`RobustResult.wald_test`."""
        return self.robust.wald_test(coefs, test=test)

    def to_frame(self) -> pd.DataFrame:
        """The robust coefficient table, with the working model's own SE beside it
        (``model_se``)."""
        frame = self.robust.to_frame()
        frame["model_se"] = self.model.se
        return frame

    def summary(self) -> Summary:
        """A statsmodels ``Summary``: the working model, its variance components and
        the robust coefficient table."""
        info = [
            ("Working model:", "CHE (three-level)"),
            ("rho:", f"{self.rho:g}"),
            ("Effects (k):", str(self.k)),
            ("Clusters:", str(self.n_clusters)),
            ("Estimator:", self.adjust),
            ("df:", "Satterthwaite" if ADJUSTMENTS[self.adjust].df == "satterthwaite"
             else "n - p"),
        ]
        info += [
            (f"{name}:", f"{s2:.4g}")
            for name, s2 in zip(self.model.level_names, self.sigma2, strict=True)
        ]
        notes = [
            f"Working model: the sampling errors of one {self.model.level_names[0]!r} "
            f"correlate at rho = {self.rho:g}.",
            f"Inference: {ADJUSTMENTS[self.adjust].description}; model_se is the working "
            "model's own SE.",
        ]
        return frame_summary("CHE working model, cluster-robust inference", info,
                             self.to_frame(), notes)

    def __str__(self) -> str:
        return str(self.summary())


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class CHESensitivity(ResultDisplay):
    """The CHE + robust analysis over a grid of ρ (:func:`che_sensitivity`).

    Attributes
    ----------
    rho : tuple of float
        The working correlations, in the order fitted.
    results : tuple of CHEResult
        One analysis per ρ.
    coef_names : tuple of str
    k, n_clusters : int
    adjust : str
    """

    _repr_fields = ("rho", "coef_names", "k", "n_clusters", "adjust")

    rho: tuple[float, ...]
    results: tuple[CHEResult, ...] = attrs.field(eq=False)

    @property
    def coef_names(self) -> tuple[str, ...]:
        """Coefficient names."""
        return self.results[0].coef_names

    @property
    def k(self) -> int:
        """Number of effects."""
        return self.results[0].k

    @property
    def n_clusters(self) -> int:
        """Number of clusters."""
        return self.results[0].n_clusters

    @property
    def adjust(self) -> str:
        """The cluster-robust estimator."""
        return self.results[0].adjust

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> CHEResult:
        return self.results[i]

    def to_frame(self) -> pd.DataFrame:
        """One row per ρ and coefficient: ``coef``, robust ``se``, ``df``, ``pvalue``,
        ``ci_low``, ``ci_high``, and the working model's variance components
        (``sigma2.<level>``, the same on every row of one ρ)."""
        parts = []
        for r in self.results:
            f = r.robust.to_frame().drop(columns="statistic")
            for name, s2 in zip(r.model.level_names, r.sigma2, strict=True):
                f[f"sigma2.{name}"] = s2
            parts.append(f)
        frame: pd.DataFrame = pd.concat(
            parts, keys=list(self.rho), names=["rho", "coefficient"]
        )
        return frame

    def summary(self) -> Summary:
        """A statsmodels ``Summary`` of the table, with the largest change over ρ."""
        frame = self.to_frame()
        frame.index = pd.Index([f"rho={r:g} {c}" for r, c in frame.index])
        coef = np.array([r.coef for r in self.results])
        se = np.array([r.se for r in self.results])
        info = [
            ("Working model:", "CHE (three-level)"),
            ("rho grid:", ", ".join(f"{r:g}" for r in self.rho)),
            ("Effects (k):", str(self.k)),
            ("Clusters:", str(self.n_clusters)),
            ("Estimator:", self.adjust),
        ]
        notes = [
            "Largest change over the grid: coefficient "
            + ", ".join(f"{n} {np.ptp(coef[:, j]):.3g}" for j, n in enumerate(self.coef_names))
            + "; robust SE "
            + ", ".join(f"{n} {np.ptp(se[:, j]):.3g}" for j, n in enumerate(self.coef_names))
            + "."
        ]
        return frame_summary("CHE + cluster-robust inference over rho", info, frame, notes)

    def __str__(self) -> str:
        return str(self.summary())


def _cluster_name(fit: MultilevelResult, cluster: object) -> object:
    return fit.level_names[0] if cluster is None else cluster


def che(
    studies: StudySet | None = None,
    *,
    data: object = None,
    rho: float,
    yi: npt.ArrayLike | str | None = None,
    vi: npt.ArrayLike | str | None = None,
    moderators: object = None,
    levels: LevelSpec = ("study", "label"),
    cluster: str | Sequence[Hashable] | npt.ArrayLike | None = None,
    adjust: CRType = "CR2",
    intercept: bool = True,
    method: MVMethod = "REML",
    level: float = 0.95,
) -> CHEResult:
    """Fit the CHE working model and take its cluster-robust inference.

    The correlated-and-hierarchical-effects recipe of Pustejovsky & Tipton (2022):
    a three-level model (effects within studies) whose sampling errors correlate at
    a working ``rho`` within a study, with CR2 standard errors, Satterthwaite t
    tests and HTZ Wald tests clustered by study.

    Parameters
    ----------
    studies : StudySet, optional
        The effects, one row per effect, each naming its study (``yi``, ``vi``
        and the level and moderator columns by name).
    data : DataFrame, optional
        Or a data frame and column names, as :func:`~alliance_meta.multilevel`
        (``levels`` then names its columns, e.g. ``levels=["study", "es"]``).
    rho : float
        The working correlation between the sampling errors of two effects of one
        study (outer level).
    yi, vi : array_like, optional
        Effects and sampling variances when ``studies`` is not given (then
        ``levels`` is a mapping of labels).
    moderators : optional
        As :func:`~alliance_meta.multilevel` (names, a mapping, or an R formula).
    levels : mapping or sequence of str
        The nesting, outer first, as :func:`~alliance_meta.multilevel`; default
        ``("study", "label")``: effects (their unique labels) within studies.
    cluster : str or sequence, optional
        The clusters of the robust variance: a level name or one label per
        effect; default the outer level (the study).
    adjust : {"CR2", "CR1", "CR0"}
        The cluster-robust estimator (see :func:`~alliance_meta.robust`).
    intercept : bool
        ``False`` is R's ``- 1``.
    method : {"REML", "ML"}
        Estimation of the working model's variance components.
    level : float
        Confidence level.

    Returns
    -------
    CHEResult
        The working model (``.model``), its robust inference (``.robust``) and the
        robust coefficient table as attributes.  (A result of its own rather than
        the bare :class:`RobustResult`, so that ρ and the variance components the
        robust numbers rest on travel with them.)

    Raises
    ------
    ModelSpecificationError, InvalidStudyError
        As :func:`~alliance_meta.multilevel` and :func:`~alliance_meta.robust`
        (e.g. ``rho`` outside [-1, 1], one cluster, fewer clusters than
        coefficients).

    Warns
    -----
    FewStudiesWarning
        A Satterthwaite df is below 4: the robust p-values are unreliable.

    See Also
    --------
    che_sensitivity : the same analysis over a grid of ρ.

    Notes
    -----
    Three steps (the recipe of Pustejovsky & Tipton, 2022, and of clubSandwich's
    documentation):

    1. ``V = covariance_matrix(vi, cluster=<outer level>, rho=rho)``:
       ``V_ii = v_i``, ``V_ij = ρ √(v_i v_j)`` within a study (metafor's
       ``vcalc(vi, cluster, obs, rho)``);
    2. ``multilevel(yi, V=V, levels=levels, moderators=...)``: metafor's
       ``rma.mv(yi, V, mods, random = ~ 1 | study/es)``, σ² by REML
       (Konstantopoulos, 2011; Cheung, 2014; Viechtbauer's ``rma.mv``
       documentation);
    3. ``robust(fit, cluster)``: CR2 (Bell & McCaffrey, 2002) with the working
       model's weights and Satterthwaite df (Tipton, 2015; Pustejovsky & Tipton,
       2018); clubSandwich's ``coef_test(fit, vcov = "CR2")``.

    The coefficients are the working model's GLS estimates; their robust standard
    errors are consistent whatever the true ρ, but their efficiency and the
    variance components depend on it: :func:`che_sensitivity` shows how much.

    Examples
    --------
    >>> import alliance_meta as am
    >>> studies = am.datasets.load_alliance_dependent().studies()
    >>> res = am.che(studies, rho=0.5)
    >>> res.n_clusters, res.adjust
    (12, 'CR2')
    """
    if isinstance(rho, (Sequence, np.ndarray)) and not isinstance(rho, str):
        raise ModelSpecificationError(
            "che() takes one working rho; for a grid of rho use che_sensitivity()"
        )
    r = float(rho)
    if not (math.isfinite(r) and -1.0 <= r <= 1.0):
        raise ModelSpecificationError(f"rho must be a correlation in [-1, 1], got {rho!r}")
    fit = multilevel(
        studies, data=data, yi=yi, vi=vi, levels=levels, moderators=moderators, intercept=intercept,
        rho=r, method=method, level=level,
    )
    rob = robust(fit, _cluster_name(fit, cluster), adjust=adjust)  # type: ignore[arg-type]
    return CHEResult(rho=r, model=fit, robust=rob)


def che_sensitivity(
    studies: StudySet | None = None,
    *,
    data: object = None,
    rho: Sequence[float] = DEFAULT_RHO_GRID,
    yi: npt.ArrayLike | str | None = None,
    vi: npt.ArrayLike | str | None = None,
    moderators: object = None,
    levels: LevelSpec = ("study", "label"),
    cluster: str | Sequence[Hashable] | npt.ArrayLike | None = None,
    adjust: CRType = "CR2",
    intercept: bool = True,
    method: MVMethod = "REML",
    level: float = 0.95,
) -> CHESensitivity:
    """The CHE + robust analysis (:func:`che`) over a grid of working ρ.

    Parameters
    ----------
    studies : StudySet, optional
    data : DataFrame, optional
        As :func:`che`.
    rho : sequence of float
        The working correlations (default 0.2, 0.4, 0.6, 0.8).
    yi, vi, moderators, levels, cluster, adjust, intercept, method, level
        As :func:`che`.

    Returns
    -------
    CHESensitivity
        ``to_frame()`` has the coefficients, robust SEs, df, p-values, CIs and σ²
        for every ρ.

    Notes
    -----
    The robust standard errors stay valid whatever ρ is, but the working model's
    weights, and so the estimates, move with it (Pustejovsky & Tipton, 2022,
    recommend reporting this sensitivity; Tanner-Smith & Tipton, 2014, for the
    analogous check of the correlated-effects model).  A coefficient whose
    estimate or conclusion changes over plausible ρ needs the caveat.

    Tanner-Smith, E. E., & Tipton, E. (2014). Robust variance estimation with
    dependent effect sizes: practical considerations including a software
    tutorial in Stata and SPSS. *Research Synthesis Methods*, 5(1), 13-30.

    Examples
    --------
    >>> import alliance_meta as am
    >>> studies = am.datasets.load_alliance_dependent().studies()
    >>> sens = am.che_sensitivity(studies)
    >>> list(sens.to_frame().index.get_level_values("rho"))
    [0.2, 0.4, 0.6, 0.8]
    """
    grid = tuple(float(r) for r in np.atleast_1d(np.asarray(rho, dtype=np.float64)))
    if not grid:
        raise ModelSpecificationError("rho is empty: give at least one working correlation")
    if len(set(grid)) != len(grid):
        raise ModelSpecificationError(f"rho repeats a value: {grid}")
    kw: dict[str, Any] = {
        "data": data, "yi": yi, "vi": vi, "moderators": moderators, "levels": levels,
        "cluster": cluster, "adjust": adjust, "intercept": intercept, "method": method,
        "level": level,
    }
    return CHESensitivity(rho=grid, results=tuple(che(studies, rho=r, **kw) for r in grid))
