"""The fitted-model protocol: the names every fitted model exposes.

Pooled results (:class:`~alliance_meta.PoolResult`, the intercept-only case),
meta-regressions, common-τ² subgroup models and the dependent-effects models all
answer to these names, so that diagnostics, plots and cluster-robust inference work
on any of them without checking types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from alliance_meta._types import FloatArray, Measure
from alliance_meta.core.estimators import CoreMethod
from alliance_meta.core.layout import diagonal_blocks
from alliance_meta.core.vcov import CoreTest
from alliance_meta.results.base import readonly

__all__ = ["FittedModel", "UnivariateFit", "UnivariateModel"]


@runtime_checkable
class FittedModel(Protocol):
    """A fitted (mixed-effects) meta-analytic model ``y = Xβ + random effects + e``.

    Attributes
    ----------
    coef_names : tuple of str
        R's names of the coefficients (``intrcpt`` first when there is one).
    coef, vcov : ndarray
        ``β̂`` (p,) and its covariance (p, p) as the model's ``test`` defines it.
    X : ndarray
        The design actually fitted (k, p), redundant columns dropped.
    yi, vi : ndarray
        Effects and sampling variances (k,).
    k, p : int
        Number of effects and of coefficients.
    method, test, level, measure, labels
        The fit's settings and the effects' labels.
    """

    @property
    def coef_names(self) -> tuple[str, ...]: ...
    @property
    def coef(self) -> FloatArray: ...
    @property
    def vcov(self) -> FloatArray: ...
    @property
    def X(self) -> FloatArray: ...
    @property
    def yi(self) -> FloatArray: ...
    @property
    def vi(self) -> FloatArray: ...
    @property
    def k(self) -> int: ...
    @property
    def p(self) -> int: ...
    @property
    def method(self) -> CoreMethod: ...
    @property
    def test(self) -> CoreTest: ...
    @property
    def level(self) -> float: ...
    @property
    def measure(self) -> Measure: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def converged(self) -> bool: ...

    def fitted(self) -> FloatArray:
        """``X β̂``: the fitted values."""
        ...

    def residuals(self) -> FloatArray:
        """``y - X β̂``: the raw residuals."""
        ...

    def marginal_blocks(
        self, codes: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """The fitted marginal covariance ``M`` of the effects, by cluster.

        Given cluster codes ``0..G-1`` (one per effect), returns ``index`` (G, b):
        the positions of each cluster's effects, padded with -1, and ``M`` (G, b, b):
        ``Var(y)`` under the fitted model restricted to each cluster (identity on the
        padding).  Raises :class:`~alliance_meta.exceptions.ModelSpecificationError`
        if ``M`` links effects of two clusters.
        """
        ...


@runtime_checkable
class UnivariateModel(FittedModel, Protocol):
    """A model with one heterogeneity variance τ² and independent effects
    (``M = diag(v_i + τ²)``): pooled results, meta-regressions, common-τ² subgroups."""

    @property
    def tau2(self) -> float: ...
    @property
    def weights(self) -> FloatArray:
        """Percentage weights ``100 w_i / Σ w`` with ``w_i = 1/(v_i + τ²)``."""
        ...


class UnivariateFit:
    """What a univariate fit computes from its design, coefficients and τ²: mixed into
    the result classes of pooled results and meta-regressions (no fields of its own).
    """

    __slots__ = ()

    if TYPE_CHECKING:

        @property
        def X(self) -> FloatArray: ...
        @property
        def coef(self) -> FloatArray: ...
        @property
        def yi(self) -> FloatArray: ...
        @property
        def vi(self) -> FloatArray: ...
        @property
        def tau2(self) -> float: ...

    @property
    def weights(self) -> FloatArray:
        """Percentage weights ``100 w_i / Σ w`` with ``w_i = 1/(v_i + τ²)`` (metafor's
        ``weights()``)."""
        w = 1.0 / (self.vi + self.tau2)
        out: FloatArray = 100.0 * w / w.sum()
        return readonly(out)

    def fitted(self) -> FloatArray:
        """``X β̂``: the fitted values (metafor's ``fitted()``)."""
        out: FloatArray = self.X @ self.coef
        return readonly(out)

    def residuals(self) -> FloatArray:
        """``y - X β̂``: the raw residuals (metafor's ``residuals()``)."""
        out: FloatArray = self.yi - self.X @ self.coef
        return readonly(out)

    def marginal_blocks(
        self, codes: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """Blocks of ``M = diag(v_i + τ²)`` by cluster (see :class:`FittedModel`);
        independent effects never link two clusters."""
        from alliance_meta.core.layout import cluster_index

        index = cluster_index(codes)
        return index, diagonal_blocks(index, self.vi + self.tau2)
