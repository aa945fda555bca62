"""Wald tests of chosen coefficients (metafor's ``anova(fit, btt = ...)``).

``coefficient_positions`` reads a user's choice of coefficients (names or 0-based
positions; by default metafor's ``btt``) for every model; ``model_wald_test`` is the
model-based test of :meth:`MetaRegressionResult.wald_test` and
:meth:`MultilevelResult.wald_test` through the one inference layer
(:func:`alliance_meta.core.inference.wald_test`).  The cluster-robust tests
(:meth:`RobustResult.wald_test`) use the same positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import attrs
import numpy as np
import numpy.typing as npt

from alliance_meta.core.inference import wald_test
from alliance_meta.exceptions import ModelSpecificationError
from alliance_meta.results.base import freeze_arrays
from alliance_meta.results.display import ResultDisplay, fmt_p_eq
from alliance_meta.results.summary import frame_summary

if TYPE_CHECKING:
    import pandas as pd
    from statsmodels.iolib.summary import Summary

    from alliance_meta._types import FloatArray

__all__ = [
    "CoefficientSpec",
    "CoefficientTests",
    "ModelWaldTest",
    "coefficient_positions",
    "model_wald_test",
]

#: Coefficients to test: 0-based positions or names, one or several.
CoefficientSpec = Sequence[int | str] | int | str | None


def coefficient_positions(
    coef_names: Sequence[str], coefs: CoefficientSpec, intercept: bool
) -> npt.NDArray[np.intp]:
    """0-based positions of the chosen coefficients, or a clear error.

    ``None`` is metafor's default ``btt``: every coefficient but the intercept (all
    of them in a model without one; the intercept in an intercept-only model).
    """
    p = len(coef_names)
    if coefs is None:
        pos = list(range(1 if intercept else 0, p)) or [0]
        return np.asarray(pos, dtype=np.intp)
    items: list[object] = (
        [coefs] if isinstance(coefs, (int, np.integer, str)) else list(coefs)
    )
    pos = []
    for c in items:
        if isinstance(c, str):
            if c not in coef_names:
                raise ModelSpecificationError(
                    f"no coefficient named {c!r} (coefficients: {', '.join(coef_names)})"
                )
            pos.append(list(coef_names).index(c))
        elif isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= int(c) < p:
                raise ModelSpecificationError(
                    f"coefficient position {int(c)} is out of range: positions are 0-based, "
                    f"0 … {p - 1}"
                )
            pos.append(int(c))
        else:
            raise ModelSpecificationError(
                f"coefs must be 0-based coefficient positions (or names), not {c!r}"
            )
    if not pos:
        raise ModelSpecificationError("coefs is empty: nothing to test")
    if len(set(pos)) != len(pos):
        raise ModelSpecificationError(f"coefs repeats a coefficient: {items!r}")
    return np.asarray(pos, dtype=np.intp)


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class ModelWaldTest(ResultDisplay):
    """A model-based Wald test that some coefficients are all zero (metafor's
    ``anova(fit, btt = ...)``).

    Attributes
    ----------
    coefs : tuple of str
        The tested coefficients.
    statistic : float
        ``QM`` (χ² on ``df_num`` df) under z tests; ``QM / q`` (F on ``df_num``,
        ``df_denom`` df) under t or Knapp-Hartung tests, as metafor reports it.
    distribution : {"chi2", "F"}
    df_num : int
    df_denom : float
        NaN for the χ² test.
    pvalue : float
    """

    _repr_fields = ("coefs", "statistic", "distribution", "df_num", "pvalue")

    coefs: tuple[str, ...]
    statistic: float
    distribution: Literal["chi2", "F"]
    df_num: int
    df_denom: float
    pvalue: float

    def to_frame(self) -> pd.DataFrame:
        """One row: the test."""
        import pandas as pd

        frame: pd.DataFrame = pd.DataFrame(
            {
                "statistic": [self.statistic],
                "df_num": [self.df_num],
                "df_denom": [self.df_denom],
                "pvalue": [self.pvalue],
            },
            index=pd.Index([self.distribution], name="test"),
        )
        return frame

    def summary(self) -> Summary:
        """metafor's "Test of Moderators (coefficients ...)" line, as a table."""
        if self.distribution == "F":
            line = (f"F(df1 = {self.df_num}, df2 = {self.df_denom:g}) = {self.statistic:.4f}, "
                    f"p-val {fmt_p_eq(self.pvalue)}")
        else:
            line = f"QM(df = {self.df_num}) = {self.statistic:.4f}, p-val {fmt_p_eq(self.pvalue)}"
        return frame_summary(
            "Wald test of coefficients",
            [("Coefficients:", ", ".join(self.coefs)), ("Test:", line)],
            self.to_frame(),
        )

    def __str__(self) -> str:
        return str(self.summary())


def model_wald_test(
    coef_names: Sequence[str],
    coef: FloatArray,
    vcov: FloatArray,
    coefs: CoefficientSpec,
    *,
    intercept: bool,
    df_denom: float | None,
) -> ModelWaldTest:
    """The Wald test of ``coefs`` from a fit's coefficients and covariance.

    Notes
    -----
    ``QM = β_S' V_S⁻¹ β_S`` on ``q`` df; with ``df_denom`` (t and Knapp-Hartung
    tests) ``QM / q`` is referred to ``F(q, df_denom)`` (metafor's ``anova.rma``;
    Viechtbauer, 2010).
    """
    btt = coefficient_positions(coef_names, coefs, intercept)
    beta = np.asarray(coef, dtype=np.float64)[None, :]
    vb = np.asarray(vcov, dtype=np.float64)[None, :, :]
    d2 = None if df_denom is None else np.array([float(df_denom)])
    wt = wald_test(beta, vb, btt, d2)
    is_f = df_denom is not None
    return ModelWaldTest(
        coefs=tuple(coef_names[int(i)] for i in btt),
        statistic=float(wt.statistic[0]),
        distribution="F" if is_f else "chi2",
        df_num=int(btt.size),
        df_denom=float(df_denom) if is_f else float("nan"),  # type: ignore[arg-type]
        pvalue=float(wt.pvalue[0]),
    )


class CoefficientTests:
    """``wald_test`` for the model results that take it (meta-regression and
    multilevel fits): they provide ``coef_names``, ``coef``, ``vcov``, ``test``, ``df``
    and whether the design has an intercept (``_has_intercept``)."""

    __slots__ = ()

    coef_names: tuple[str, ...]
    coef: FloatArray
    vcov: FloatArray
    test: str
    df: float | None

    def _has_intercept(self) -> bool:  # pragma: no cover - provided by the result
        raise NotImplementedError

    def wald_test(self, coefs: CoefficientSpec = None) -> ModelWaldTest:
        """Test that the chosen coefficients are all zero (metafor's
        ``anova(fit, btt = ...)``).

        Parameters
        ----------
        coefs : sequence of int or str, optional
            0-based positions or names of the coefficients (a factor's dummies
            together test the factor); by default every coefficient but the
            intercept, metafor's ``btt`` (the omnibus ``QM``).

        Returns
        -------
        ModelWaldTest
            ``QM`` on χ²(q) under z tests; ``QM / q`` on F(q, k − p) under t and
            Knapp-Hartung tests, as metafor.

        Notes
        -----
        ``QM = β_S' Var(β̂)_S⁻¹ β_S`` with the model's ``Var(β̂)`` (Viechtbauer,
        2010).  For cluster-robust tests use :func:`~alliance_meta.robust` and its
        ``wald_test``.
        """
        df2 = self.df if self.test != "z" and self.df is not None else None
        return model_wald_test(self.coef_names, self.coef, self.vcov, coefs,
                               intercept=self._has_intercept(), df_denom=df2)
