"""``robust()`` end to end: the real fitters against clubSandwich 0.5.8 and metafor 3.8.1.

tests/test_robust.py checks the sandwich on stand-in fits built from R's own
variance components; here the models are fitted by alliance_meta itself --
``multilevel``/``multivariate`` on the ``mv_*.json`` and ``robustmv_*.json``
references and ``subgroup_analysis(..., tau2="common")`` on
``clubsandwich_subgroups.json``, and the one-level multilevel model of the
univariate ``robust_*.json`` -- and ``robust(fit, cluster)`` is compared with the
``robust`` blocks of the same files (CR2 ``coef_test``/``conf_int``/``Wald_test``
HTZ, CR0, and metafor's ``robust()``).  (tests/test_robust.py fits the univariate
``robust_*.json`` cases with ``random_effects``/``meta_regression``.)  Fields: PROVENANCE.md,
PROVENANCE_robust.md, PROVENANCE_depdocs.md.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import sparse

import alliance_meta as am
from alliance_meta.exceptions import FewStudiesWarning, ModelSpecificationWarning
from alliance_meta.models.multilevel import MultilevelResult
from alliance_meta.models.robust import RobustResult, robust

REF = Path(__file__).parent / "reference"

# The tolerance: the issue's 1e-5 "where the fit's own variance components are the
# limit".  Our σ² (τ², ρ) are the maximisers to ~1e-12; metafor's nlminb (rel.tol
# 1e-10 to 1e-12) leaves its own 1e-8 to 1e-6 relative from them (the multilevel
# tests bound that by 1e-5), and every robust quantity is a smooth function of the
# components with a sensitivity of order one, so the references agree with our
# fits' robust values to the same order; observed: 3e-6 at worst (see
# PROVENANCE_depdocs.md).  The sandwich itself is exact to 1e-10 given the
# components (tests/test_robust.py).
RTOL = 1e-5
# Location quantities (coefficients, CI bounds) can be near 0 where a relative
# error means nothing: they are compared to RTOL of their standard error (the scale
# on which they are read), t statistics to RTOL absolute (an error δ in the
# coefficient moves t by δ/SE) and p-values likewise (their density in t is below 1).
ATOL_T = RTOL


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REF / f"{name}.json").read_text())
    return data


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call without the df < 4 warnings (what they say is tested in test_robust.py)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewStudiesWarning)
        return fn(*args, **kwargs)


def _close(ours: Any, exp: Any, what: str, atol: Any = 0.0) -> None:
    """``|ours - exp| <= atol + RTOL |exp|`` elementwise (``atol`` may be an array)."""
    a = np.atleast_1d(np.asarray(ours, dtype=float))
    b = np.atleast_1d(np.asarray(exp, dtype=float))
    assert a.shape == b.shape, what
    bound = np.asarray(atol, dtype=float) + RTOL * np.abs(b)
    err = np.abs(a - b)
    assert np.all(err <= bound), (
        f"{what}: ours {a}, reference {b}; error {err} > bound {bound}"
    )


def _check_satterthwaite(res: RobustResult, blk: dict[str, Any], what: str) -> None:
    scale = RTOL * np.asarray(blk["se"], dtype=float)
    _close(res.coef, blk["coef"], f"{what} coef", scale)
    _close(res.se, blk["se"], f"{what} se")
    _close(res.statistic, blk["statistic"], f"{what} t", ATOL_T)
    _close(res.df, blk["df"], f"{what} df")
    _close(res.pvalue, blk["p_value"], f"{what} p", ATOL_T)
    _close(res.ci.low, blk["ci_lb"], f"{what} ci_lb", scale)
    _close(res.ci.high, blk["ci_ub"], f"{what} ci_ub", scale)
    if "wald" in blk:
        w = blk["wald"]
        coefs = [c - 1 for c in np.atleast_1d(w["coefs"])]
        ours = _quiet(res.wald_test, coefs)
        assert ours.test == "HTZ" and ours.df_num == w["df_num"] == len(coefs)
        _close(ours.F, w["F"], f"{what} Wald F")
        _close(ours.df_denom, w["df_denom"], f"{what} Wald df")
        _close(ours.pvalue, w["p_value"], f"{what} Wald p", ATOL_T)


def _check_metafor(res: RobustResult, blk: dict[str, Any]) -> None:
    assert res.adjust == "CR1"
    scale = RTOL * np.asarray(blk["se"], dtype=float)
    _close(res.se, blk["se"], "metafor se")
    _close(res.statistic, blk["statistic"], "metafor t", ATOL_T)
    _close(res.pvalue, blk["p_value"], "metafor p", ATOL_T)
    _close(res.ci.low, blk["ci_lb"], "metafor ci_lb", scale)
    _close(res.ci.high, blk["ci_ub"], "metafor ci_ub", scale)
    assert np.all(res.df == blk["df"])
    w = res.wald_test()
    assert (w.df_num, w.df_denom) == tuple(blk["QM_df"])
    _close(w.F, blk["QM"], "metafor QM")


def _check_robust(fit: Any, cluster: Any, exp: dict[str, Any]) -> None:
    blk = exp["robust"]
    res = _quiet(robust, fit, cluster)
    assert list(res.coef_names) == list(np.atleast_1d(exp["coef_names"]))
    _check_satterthwaite(res, blk, "CR2")
    if "CR0" in blk:
        _check_satterthwaite(_quiet(robust, fit, cluster, adjust="CR0"), blk["CR0"], "CR0")
    _check_metafor(robust(fit, cluster, adjust="CR1"), blk["metafor_robust"])


# ---------------------------------------------------------------------------
# Nested (multilevel) fits
# ---------------------------------------------------------------------------


def _sampling_V(d: dict[str, Any]) -> Any:
    """V as the reference builds it: ``vi`` on the diagonal, ``V_offdiag`` (with
    their positions, where given) off it; None where a constant ``rho`` describes it."""
    if "V_offdiag_row" not in d:
        return None
    k = len(d["yi"])
    r = np.asarray(d["V_offdiag_row"]) - 1
    c = np.asarray(d["V_offdiag_col"]) - 1
    v = np.asarray(d["V_offdiag"], dtype=float)
    diag = np.arange(k)
    return sparse.csr_matrix(
        (np.concatenate([np.asarray(d["vi"], dtype=float), v, v]),
         (np.concatenate([diag, r, c]), np.concatenate([diag, c, r]))),
        shape=(k, k),
    )


def _nested_fit(d: dict[str, Any], case: dict[str, Any]) -> MultilevelResult:
    mods = dict(d["moderators"]) if case["with_moderators"] else None
    V = _sampling_V(d)
    kw: dict[str, Any] = {"V": V} if V is not None else {"vi": d["vi"], "rho": d.get("rho")}
    fit = am.multilevel(yi=d["yi"], levels=d["levels"], moderators=mods,
                        method=case["method"], test=case["test"], **kw)
    if "X" in case:
        # the design metafor fitted
        np.testing.assert_array_equal(fit.X, np.asarray(case["X"], dtype=float))
    return fit


NESTED = ["mv_konstantopoulos2011", "mv_bornmann2007", "robustmv_assink2016",
          "robustmv_crede2010", "robustmv_tannersmith2016"]
NESTED_CASES = [
    pytest.param(name, i, id=f"{name}-{c['method']}-{c['test']}-{c['with_moderators']}")
    for name in NESTED
    for i, c in enumerate(_load(name)["cases"])
    if "robust" in c["expected"]
]


@pytest.mark.parametrize(("name", "i"), NESTED_CASES)
def test_multilevel_fit_robust(name: str, i: int) -> None:
    d = _load(name)
    case = d["cases"][i]
    exp = case["expected"]
    fit = _nested_fit(d, case)
    assert fit.converged
    # the components the comparison rests on (test_multilevel.py's bound)
    _close(fit.sigma2, exp["sigma2"], "sigma2", 1e-8)
    outer = next(iter(d["levels"]))
    # the cluster by the level's name, as a user would write it
    _check_robust(fit, outer, exp)


# ---------------------------------------------------------------------------
# The univariate references through the multilevel fitter
# ---------------------------------------------------------------------------

UNI_CASES = [
    pytest.param(path.stem, i, id=path.stem)
    for path in sorted(REF.glob("robust_*.json"))
    for i, c in enumerate(json.loads(path.read_text())["cases"])
    if c["method"] == "REML"
]


@pytest.mark.parametrize(("name", "i"), UNI_CASES)
def test_one_level_multilevel_fit_is_the_univariate_model(name: str, i: int) -> None:
    # rma.mv(yi, vi, random = ~ 1 | es) with one effect per es is rma.uni's REML
    # model (σ² = τ²): robust() on the multilevel fit reproduces the rma.uni
    # references (tests/test_robust.py fits those with meta_regression)
    d = _load(name)
    exp = dict(d["cases"][i]["expected"])
    k = len(d["yi"])
    fit = am.multilevel(yi=d["yi"], vi=d["vi"], levels={"es": np.arange(k)},
                        moderators=d.get("moderators"))
    _close(fit.sigma2, exp["tau2"], "sigma2 = tau2")
    exp.setdefault("coef_names", list(fit.coef_names))
    _check_robust(fit, d["cluster"], exp)


# ---------------------------------------------------------------------------
# Multivariate fits
# ---------------------------------------------------------------------------


def _mv_fit(d: dict[str, Any], case: dict[str, Any]) -> MultilevelResult:
    formula = case.get("mods", d.get("mods"))
    outcome = list(d["outcome"])
    mods: dict[str, Any] = {"outcome": outcome}
    for name, values in (d.get("moderators") or {}).items():
        if name in formula:
            mods[name] = np.asarray(values, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelSpecificationWarning)  # metafor warns too
        fit = am.multivariate(
            yi=d["yi"], V=np.asarray(d["V"], dtype=float), cluster=d["cluster"],
            outcome=outcome, struct=case["struct"], moderators=mods,
            intercept="- 1" not in formula, method=case["method"], test=case["test"],
        )
    if "X" in case:
        np.testing.assert_array_equal(fit.X, np.asarray(case["X"], dtype=float))
    return fit


MV = ["mv_berkey1998", "robustmv_kalaian1996"]
MV_CASES = [
    pytest.param(name, i, id=f"{name}-{c['struct']}-{c.get('mods', '')}")
    for name in MV
    for i, c in enumerate(_load(name)["cases"])
    if "robust" in c["expected"]
]


@pytest.mark.parametrize(("name", "i"), MV_CASES)
def test_multivariate_fit_robust(name: str, i: int) -> None:
    d = _load(name)
    case = d["cases"][i]
    exp = case["expected"]
    fit = _mv_fit(d, case)
    assert fit.converged
    _close(fit.tau2, exp["tau2"], "tau2", 1e-8)
    _check_robust(fit, d["cluster"], exp)


# ---------------------------------------------------------------------------
# Common-τ² subgroup analyses
# ---------------------------------------------------------------------------

SUBGROUP_CASES = [
    pytest.param(i, id=f"{c['data']}-{c['method']}-{c['test']}")
    for i, c in enumerate(_load("clubsandwich_subgroups")["cases"])
]


@pytest.mark.parametrize("i", SUBGROUP_CASES)
def test_common_tau2_subgroups_robust(i: int) -> None:
    case = _load("clubsandwich_subgroups")["cases"][i]
    exp = case["expected"]
    res = am.subgroup_analysis(yi=case["yi"], vi=case["vi"], groups=case["group"],
                               by="g", tau2="common", method=case["method"],
                               test=case["test"])
    cm = res.common_model
    assert cm is not None
    # the common model is the fit behind the subgroup numbers (tight: same core fit)
    np.testing.assert_allclose(cm.tau2, res.tau2, rtol=1e-14)
    np.testing.assert_allclose(cm.QM, res.Q_between, rtol=1e-14)
    _close(cm.tau2, exp["tau2"], "tau2", 1e-12)
    _check_robust(res, case["cluster"], exp)


def test_common_model_is_the_subgroup_fit() -> None:
    # the common model reproduces every common-τ² number of the subgroup result
    studies = am.datasets.load_alliance_example().studies()
    res = am.subgroup_analysis(studies, by="rater", tau2="common", test="knha")
    cm = res.common_model
    assert cm is not None and cm.coef_names == ("intrcpt", "ratertherapist")
    assert (cm.tau2, cm.QE, cm.QE_pvalue) == (res.tau2, res.QE, res.QE_pvalue)
    assert (cm.QM, cm.QM_pvalue, cm.QM_df) == (
        res.Q_between, res.Q_between_pvalue, (res.Q_between_df, res.Q_between_df2))
    assert res.common_estimate is not None and res.common_se is not None
    L = np.array([[1.0, 0.0], [1.0, 1.0]])  # subgroup means from the treatment coding
    np.testing.assert_allclose(L @ cm.coef, res.common_estimate, rtol=1e-14)
    np.testing.assert_allclose(np.sqrt(np.diag(L @ cm.vcov @ L.T)), res.common_se,
                               rtol=1e-14)
    # an R formula names the coefficients as metafor does
    by_formula = am.subgroup_analysis(data=studies.to_dataframe(), by="~ factor(rater)",
                                      tau2="common")
    assert by_formula.common_model is not None
    assert by_formula.common_model.coef_names == ("intrcpt", "factor(rater)therapist")
    # separate τ² has no single model to be robust about
    sep = am.subgroup_analysis(studies, by="rater")
    assert sep.common_model is None
    with pytest.raises(am.exceptions.ModelSpecificationError, match="tau2='common'"):
        robust(sep, np.arange(sep.k))
