"""PET-PEESE: the conditional precision-effect estimate of Stanley & Doucouliagos (2014).

Two of :func:`~alliance_meta.egger_test`'s regressions: PET (the predictor is the
standard error) and PEESE (the sampling variance); PEESE is reported when PET's
limit estimate differs from zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs
import numpy.typing as npt
import pandas as pd
from statsmodels.iolib.summary import Summary

from alliance_meta.diagnostics.bias import EggerTest, egger_test
from alliance_meta.exceptions import ModelSpecificationError
from alliance_meta.models.metareg import MetaRegressionResult
from alliance_meta.models.multilevel import MultilevelResult
from alliance_meta.models.pooling import PoolResult
from alliance_meta.results.base import ConfidenceInterval, freeze_arrays
from alliance_meta.results.display import ResultDisplay, fmt_p
from alliance_meta.results.summary import frame_summary

__all__ = ["PetPeeseResult", "pet_peese"]

Alternative = Literal["two-sided", "greater", "less"]


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class PetPeeseResult(ResultDisplay):
    """Result of :func:`pet_peese`.

    Attributes
    ----------
    estimate : float
        The conditional estimate: PEESE's limit estimate if PET's test of
        ``H0: limit = 0`` rejected at ``alpha``, else PET's.
    ci : ConfidenceInterval
        Its confidence interval (of the chosen regression).
    chosen : {"PET", "PEESE"}
        Which regression's limit estimate is reported.
    reason : str
        Why, in words: PET's limit estimate, the test's p-value and ``alpha``.
    pet, peese : EggerTest
        The two regressions (predictor ``"sei"`` and ``"vi"``), each with its
        ``limit_estimate``, ``limit_ci`` and ``limit_pvalue`` and the test of its
        slope (PET's slope test is the FAT, Egger's test).
    decision_pvalue : float
        The p-value PET-PEESE decides on: PET's two-sided ``limit_pvalue``, or
        the one-sided p-value under ``alternative="greater"``/``"less"``.
    alpha : float
        Level of the decision test.
    alternative : {"two-sided", "greater", "less"}
        Its alternative hypothesis.
    model : {"lm", "rma"}
        The regression model of both fits (see :func:`egger_test`).
    k : int
        Number of studies (effects).
    """

    _repr_fields = ("estimate", "ci", "chosen", "decision_pvalue", "k")

    estimate: float
    ci: ConfidenceInterval
    chosen: str
    reason: str = attrs.field(repr=False)
    pet: EggerTest = attrs.field(repr=False)
    peese: EggerTest = attrs.field(repr=False)
    decision_pvalue: float
    alpha: float
    alternative: str
    model: str
    k: int

    def to_frame(self) -> pd.DataFrame:
        """One row per regression (PET, PEESE): the limit estimate, its CI and
        p-value, the slope and its test, and which one is chosen."""
        rows = []
        for name, eg in (("PET", self.pet), ("PEESE", self.peese)):
            ci = eg.limit_ci
            rows.append({
                "limit_estimate": eg.limit_estimate,
                "ci_low": None if ci is None else ci.low,
                "ci_high": None if ci is None else ci.high,
                "limit_pvalue": eg.limit_pvalue,
                "slope": eg.slope,
                "slope_se": eg.slope_se,
                "slope_statistic": eg.statistic,
                "slope_pvalue": eg.pvalue,
                "df": eg.df,
                "chosen": name == self.chosen,
            })
        frame: pd.DataFrame = pd.DataFrame(rows, index=pd.Index(["PET", "PEESE"],
                                                                 name="regression"))
        return frame

    def summary(self) -> Summary:
        """A statsmodels Summary: the decision and both regressions."""
        model = ("weighted least squares (lm)" if self.model == "lm"
                 else f"mixed-effects meta-regression (rma, {self.pet.method})")
        info = [
            ("Model:", model),
            ("Studies (k):", str(self.k)),
            ("Decision test:", f"PET limit = 0, {self.alternative}"),
            ("alpha:", f"{self.alpha:g}"),
            ("p-value:", fmt_p(self.decision_pvalue)),
            ("Chosen:", self.chosen),
            ("Estimate:", f"{self.estimate:.4f}"),
            (f"{100 * self.pet.level:g}% CI:", f"[{self.ci.low:.4f}, {self.ci.high:.4f}]"),
        ]
        frame = self.to_frame()[["limit_estimate", "ci_low", "ci_high", "limit_pvalue",
                                 "slope", "slope_pvalue"]]
        return frame_summary("PET-PEESE", info, frame, [self.reason])

    def __str__(self) -> str:
        return str(self.summary())


def _one_sided(eg: EggerTest, alternative: Alternative) -> float:
    """The p-value of PET's limit estimate under ``alternative``, from its two-sided
    p-value of a symmetric (t or normal) statistic."""
    p2 = eg.limit_pvalue
    est = eg.limit_estimate
    assert p2 is not None and est is not None
    if alternative == "two-sided":
        return p2
    toward = est > 0 if alternative == "greater" else est < 0
    return p2 / 2.0 if toward else 1.0 - p2 / 2.0


def pet_peese(
    fit: PoolResult | MetaRegressionResult | MultilevelResult,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    model: Literal["lm", "rma"] = "lm",
    cluster: str | npt.ArrayLike | None = None,
) -> PetPeeseResult:
    """PET-PEESE: the conditional precision-effect estimate (Stanley & Doucouliagos,
    2014).

    Parameters
    ----------
    fit : PoolResult or MultilevelResult
        An intercept-only fitted model (its effects, variances, level and, for
        ``model="rma"``, its method and test are used).
    alpha : float
        Level of PET's test of ``H0: limit estimate = 0``.  By default the test is
        two-sided, as Stanley & Doucouliagos (2014) state the rule ("if H0: β0 = 0
        is rejected, use PEESE"); with ``alternative="greater"`` it is one-sided,
        ``H1: β0 > 0`` (Stanley, 2017, recommends a one-sided test at 10%;
        Carter et al., 2019, used the two-sided p < .05 with a positive estimate,
        which is the one-sided test at 2.5%).
    alternative : {"two-sided", "greater", "less"}
        The alternative of the decision test.
    model : {"lm", "rma"}
        ``"lm"`` (default): the weighted least-squares regressions with weights
        ``1/v_i`` and a free multiplicative dispersion, t tests on k - 2 df, which
        is PET-PEESE as Stanley & Doucouliagos (2014) define it and as Carter et
        al. (2019) evaluate it (metafor's ``regtest(model = "lm")``).  ``"rma"``:
        the mixed-effects regressions with the fit's τ² estimator and test
        (``regtest``'s default model; the only one for a multilevel fit).
    cluster : str or array_like, optional
        Cluster-robust (CR2, Satterthwaite df) tests, as :func:`egger_test`'s
        ``cluster=``; needs ``model="rma"``.

    Returns
    -------
    PetPeeseResult

    Raises
    ------
    ModelSpecificationError
        A fit with moderators (the limit estimate is the intercept of an
        intercept-only model), an ``alpha`` outside (0, 1), an unknown alternative.

    Notes
    -----
    PET is ``y_i = β0 + β1 sei_i + e_i`` and PEESE ``y_i = β0 + β1 v_i + e_i``, with
    ``e_i ~ N(0, φ v_i)`` under ``"lm"`` (:func:`egger_test` with predictor
    ``"sei"`` and ``"vi"``).  ``β0`` is the limit estimate, the expected effect of
    a study with standard error 0.  The test that decides is PET's t test of the
    intercept, ``H0: β0 = 0`` (not the slope test, which is Egger's FAT): if it
    rejects at ``alpha``, there is evidence of a genuine effect, and PEESE, whose
    limit estimate is less biased toward zero when the effect is not zero, is
    reported; otherwise PET is (Stanley & Doucouliagos, 2014).  Both regressions
    are always returned.

    PET's limit estimate is biased toward zero, and PET-PEESE's coverage poor,
    when effects are heterogeneous and studies few or of similar size (Stanley,
    2017; Carter et al., 2019); report it with other methods.

    References
    ----------
    Carter, E. C., Schönbrodt, F. D., Gervais, W. M., & Hilgard, J. (2019).
    Correcting for bias in psychology: A comparison of meta-analytic methods.
    *Advances in Methods and Practices in Psychological Science*, 2(2), 115-144.

    Stanley, T. D. (2017). Limitations of PET-PEESE and other meta-analysis methods.
    *Social Psychological and Personality Science*, 8(5), 581-591.

    Stanley, T. D., & Doucouliagos, H. (2014). Meta-regression approximations to
    reduce publication selection bias. *Research Synthesis Methods*, 5(1), 60-78.

    Examples
    --------
    >>> import alliance_meta as am
    >>> fit = am.random_effects(am.datasets.load_molloy2014().studies())
    >>> pp = am.pet_peese(fit)
    >>> pp.chosen
    'PET'
    >>> round(pp.estimate, 4) == round(pp.pet.limit_estimate, 4)
    True
    """
    if not isinstance(alpha, (int, float)) or not 0.0 < float(alpha) < 1.0:
        raise ModelSpecificationError(f"alpha must be in (0, 1), got {alpha!r}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ModelSpecificationError(
            f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}"
        )
    names: Sequence[str] = fit.coef_names
    if len(names) != 1 or names[0] != "intrcpt":
        raise ModelSpecificationError(
            "PET-PEESE needs an intercept-only fit: its limit estimate is the intercept "
            f"of the regression on the standard error (this fit has {', '.join(names)})"
        )
    pet = egger_test(fit, model=model, predictor="sei", cluster=cluster)
    peese = egger_test(fit, model=model, predictor="vi", cluster=cluster)
    p = _one_sided(pet, alternative)
    reject = p < alpha
    chosen = peese if reject else pet
    assert chosen.limit_estimate is not None and chosen.limit_ci is not None
    side = {"two-sided": "two-sided", "greater": "one-sided, H1: > 0",
            "less": "one-sided, H1: < 0"}[alternative]
    assert pet.limit_estimate is not None
    if reject:
        reason = (f"PET's limit estimate ({pet.limit_estimate:.4g}) differs from 0 "
                  f"({side} p = {p:.4g} < alpha = {alpha:g}): PEESE's limit estimate is "
                  "reported.")
    else:
        reason = (f"PET's limit estimate ({pet.limit_estimate:.4g}) does not differ from 0 "
                  f"({side} p = {p:.4g} >= alpha = {alpha:g}): PET's limit estimate is "
                  "reported.")
    return PetPeeseResult(
        estimate=chosen.limit_estimate,
        ci=chosen.limit_ci,
        chosen="PEESE" if reject else "PET",
        reason=reason,
        pet=pet,
        peese=peese,
        decision_pvalue=float(p),
        alpha=float(alpha),
        alternative=alternative,
        model=model,
        k=pet.k,
    )
