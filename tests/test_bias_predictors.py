"""egger_test with every regtest predictor, on meta-regressions and dependent effects.

References: metafor 3.8.1's ``regtest`` (tests/reference/regtest_predictors.json from
generate_regtest.R, regtest_extra.json from generate_bias2.R) and clubSandwich 0.5.8's
``coef_test(vcov = "CR2")`` of rma.mv/rma.uni fits with the predictor among the fixed
effects (egger_robust.json, generate_bias2.R); see PROVENANCE.md (section "bias2").
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

import alliance_meta as am
from alliance_meta.exceptions import (
    FewStudiesWarning,
    InvalidStudyError,
    ModelSpecificationError,
)

REF_DIR = Path(__file__).parent / "reference"

# regtest's fits are closed forms or one τ² root solved to 1e-12 on both sides: they
# agree to ~1e-9 (the largest seen: 6e-10, an EB τ² root); 1e-6 relative is the
# project's contract for such quantities (the issue asks for 1e-5).
RTOL = 1e-6
# rma.mv's variance components come from nlminb, stopped at rel.tol = 1e-12 or, where
# that reports non-convergence, 1e-10 (PROVENANCE.md (section "bias2")); their error reaches
# coefficients, CR2 standard errors and Satterthwaite df at up to ~1e-6 relative
# (largest seen: 1.2e-6, a p-value on assink2016), so 1e-5 is the tightest tolerance
# that metafor's optimiser, not ours, does not break.
RTOL_MV = 1e-5


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REF_DIR / name).read_text())
    return data


def _regtest_cases() -> list[Any]:
    cases = []
    for fname in ("regtest_predictors.json", "regtest_extra.json"):
        ref = _load(fname)
        for ds, entry in ref.items():
            if ds in ("source", "controls"):
                continue
            for fit in entry["fits"]:
                cases.append(pytest.param(entry, fit, id=f"{fname.split('.')[0]}-{ds}-"
                                          f"{fit['label']}"))
    return cases


def _fit(entry: dict[str, Any], fit: dict[str, Any]) -> Any:
    yi, vi = np.array(entry["yi"]), np.array(entry["vi"])
    if fit["mods"]:
        X = np.array(fit["X"])
        return am.meta_regression(yi=yi, vi=vi, moderators={entry["moderator"]: X[:, 1]},
                                  method=fit["method"], test=fit["test"])
    return am.random_effects(yi=yi, vi=vi, method=fit["method"], test=fit["test"])


@pytest.mark.parametrize(("entry", "fit"), _regtest_cases())
def test_regtest_every_predictor_and_model(entry: dict[str, Any], fit: dict[str, Any]) -> None:
    res = _fit(entry, fit)
    ni = np.array(entry["ni"])
    checked = 0
    for key, ref in fit["regtest"].items():
        model, predictor = key.split("_")
        if "error" in ref:  # pragma: no cover - no reference case errs today
            with pytest.raises(ModelSpecificationError):
                am.egger_test(res, model=model, predictor=predictor, ni=ni)
            continue
        eg = am.egger_test(res, model=model, predictor=predictor, ni=ni)
        assert eg.model == model and eg.predictor == predictor
        assert eg.statistic == pytest.approx(ref["statistic"], rel=RTOL)
        assert eg.pvalue == pytest.approx(ref["pvalue"], rel=RTOL)
        if ref["df"] is None:
            assert eg.df is None
        else:
            assert eg.df == ref["df"]
        np.testing.assert_allclose(eg.coef, ref["coef"], rtol=RTOL)
        np.testing.assert_allclose(eg.se, ref["se"], rtol=RTOL)
        assert eg.slope == pytest.approx(ref["coef"][-1], rel=RTOL)
        if ref["est"] is None:  # "ni"/"sqrtni" and meta-regressions: no limit estimate
            assert eg.limit_estimate is None and eg.limit_ci is None
        else:
            assert eg.limit_estimate == pytest.approx(ref["est"], rel=RTOL)
            assert eg.limit_ci is not None
            assert eg.limit_ci.low == pytest.approx(ref["ci_lb"], rel=RTOL)
            assert eg.limit_ci.high == pytest.approx(ref["ci_ub"], rel=RTOL)
        checked += 1
    assert checked == len(fit["regtest"])


def test_limit_estimate_only_where_metafor_gives_it() -> None:
    ref = _load("regtest_predictors.json")["molloy2014"]
    fit = am.random_effects(yi=ref["yi"], vi=ref["vi"])
    ni = np.array(ref["ni"])
    for predictor in ("sei", "vi", "ninv", "sqrtninv"):
        assert am.egger_test(fit, predictor=predictor, ni=ni).limit_estimate is not None
    for predictor in ("ni", "sqrtni"):
        assert am.egger_test(fit, predictor=predictor, ni=ni).limit_estimate is None


def test_default_is_the_sei_predictor() -> None:
    fit = am.random_effects(am.datasets.load_molloy2014().studies())
    assert am.egger_test(fit) == am.egger_test(fit, "rma", "sei")
    assert am.egger_test(fit).predictor == "sei"


def test_sample_sizes_from_a_studyset() -> None:
    studies = am.datasets.load_molloy2014().studies()
    fit = am.random_effects(studies)
    by_set = am.egger_test(fit, predictor="ninv", ni=studies)
    by_array = am.egger_test(fit, predictor="ninv", ni=studies.n)
    assert by_set == by_array
    assert by_set.slope == pytest.approx(
        am.egger_test(fit, predictor="ninv", ni=list(studies.n)).slope, rel=0, abs=0
    )


def test_n_predictors_without_sample_sizes_are_refused() -> None:
    fit = am.random_effects(am.datasets.load_molloy2014().studies())
    for predictor in ("ni", "ninv", "sqrtni", "sqrtninv"):
        with pytest.raises(ModelSpecificationError, match="sample sizes"):
            am.egger_test(fit, predictor=predictor)  # type: ignore[arg-type]


def test_bad_sample_sizes_name_the_study() -> None:
    studies = am.datasets.load_molloy2014().studies()
    fit = am.random_effects(studies)
    n = np.array(studies.n)
    n[3] = 0.0
    with pytest.raises(InvalidStudyError, match="positive") as err:
        am.egger_test(fit, predictor="ninv", ni=n)
    assert err.value.study == fit.labels[3]
    assert err.value.field == "ni"
    n[3] = np.nan
    with pytest.raises(InvalidStudyError):
        am.egger_test(fit, predictor="ni", ni=n)
    with pytest.raises(InvalidStudyError, match="16 effects"):
        am.egger_test(fit, predictor="ni", ni=n[:5])


def test_unknown_predictor_and_collinear_design() -> None:
    fit = am.random_effects(yi=[0.1, 0.3, 0.2, 0.5], vi=[0.02, 0.02, 0.02, 0.02])
    with pytest.raises(ModelSpecificationError, match="predictor must be"):
        am.egger_test(fit, predictor="se")  # type: ignore[arg-type]
    with pytest.raises(ModelSpecificationError, match="not identifiable"):
        am.egger_test(fit)
    with pytest.raises(ModelSpecificationError, match="full rank"):
        am.egger_test(fit, predictor="vi")
    # a predictor equal to a moderator: collinear in a meta-regression
    vi = np.array([0.01, 0.02, 0.03, 0.04, 0.05])
    reg = am.meta_regression(yi=[0.1, 0.3, 0.2, 0.5, 0.4], vi=vi, moderators={"v": vi},
                             method="DL")
    with pytest.raises(ModelSpecificationError, match="full rank"):
        am.egger_test(reg, predictor="vi")


def test_exact_fit_of_lm_gives_nan_as_metafor() -> None:
    # k = p + 1 = 3 in a meta-regression with one moderator: no residual df
    reg = am.meta_regression(yi=[0.1, 0.3, 0.2], vi=[0.01, 0.02, 0.04],
                             moderators={"x": [1.0, 2.0, 4.0]}, method="EE")
    with pytest.warns(FewStudiesWarning):
        lm = am.egger_test(reg, model="lm")
    assert np.isnan(lm.statistic) and np.isnan(lm.pvalue) and lm.df == 0
    with pytest.raises(ModelSpecificationError, match="more parameters"):
        am.egger_test(am.meta_regression(yi=[0.1, 0.3, 0.2], vi=[0.01, 0.02, 0.04],
                                         moderators={"x": [1.0, 2.0, 4.0]}))


# ---------------------------------------------------------------------------
# Dependent effects: the predictor in the multilevel model, tested with CR2
# ---------------------------------------------------------------------------

ROB = _load("egger_robust.json")


def _ml_fit(ds: str, case: dict[str, Any]) -> tuple[Any, Any, str | list[Any]]:
    """(fit, ni, cluster) of a reference case."""
    d = ROB[ds]
    lab = case["label"]
    if ds == "alliance_dependent":
        levels = {"study": d["study"], "effect": d["effect"]}
        if lab == "uni_sei":
            return am.random_effects(yi=d["yi"], vi=d["vi"]), None, d["study"]
        mods = {"rater": d["rater"]} if "rater" in lab else None
        test = "t" if lab.endswith("_t") else "z"
        return (am.multilevel(yi=d["yi"], vi=d["vi"], levels=levels, moderators=mods,
                              test=test), d["ni"], "study")
    if ds == "konstantopoulos2011":
        levels = {"district": d["district"], "school": d["school"]}
        if "year" in lab:
            return (am.multilevel(yi=d["yi"], vi=d["vi"], levels=levels,
                                  moderators={"year": d["year"]}, method="ML"),
                    None, "district")
        return am.multilevel(yi=d["yi"], vi=d["vi"], levels=levels), None, "district"
    if ds == "assink2016":
        levels = {"study": d["study"], "esid": d["esid"]}
        return am.multilevel(yi=d["yi"], vi=d["vi"], levels=levels), None, "study"
    assert ds == "berkey1998"
    fit = am.multivariate(yi=d["yi"], V=np.array(d["V"]), cluster=d["trial"],
                          outcome=d["outcome"], struct="UN",
                          moderators={"outcome": d["outcome"]}, intercept=False)
    return fit, None, d["trial"]


ROBUST_CASES = [
    pytest.param(ds, case, id=f"{ds}-{case['label']}")
    for ds, entry in ROB.items() if isinstance(entry, dict) and "cases" in entry
    for case in entry["cases"]
]


@pytest.mark.parametrize(("ds", "case"), ROBUST_CASES)
def test_cluster_robust_egger_matches_clubsandwich(ds: str, case: dict[str, Any]) -> None:
    fit, ni, cluster = _ml_fit(ds, case)
    predictor = next(p for p in ("sei", "vi", "ninv") if p in case["coef_names"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewStudiesWarning)  # berkey1998: 5 trials
        eg = am.egger_test(fit, predictor=predictor, ni=ni, cluster=cluster)
        model_based = am.egger_test(fit, predictor=predictor, ni=ni)
    j = len(case["coef_names"]) - 1  # the predictor is the last coefficient
    cr2 = case["CR2"]
    assert eg.robust == "CR2"
    np.testing.assert_allclose(eg.coef, case["coef"], rtol=RTOL_MV)
    np.testing.assert_allclose(eg.se, cr2["se"], rtol=RTOL_MV)
    assert eg.statistic == pytest.approx(cr2["statistic"][j], rel=RTOL_MV)
    assert eg.df == pytest.approx(cr2["df"][j], rel=RTOL_MV)
    assert eg.pvalue == pytest.approx(cr2["pvalue"][j], rel=RTOL_MV)
    if case["coef_names"][0] == "intrcpt" and len(case["coef_names"]) == 2 and predictor != "ni":
        assert eg.limit_estimate == pytest.approx(case["coef"][0], rel=RTOL_MV)
        assert eg.limit_ci is not None
        assert eg.limit_ci.low == pytest.approx(cr2["ci_lb"][0], rel=RTOL_MV)
        assert eg.limit_ci.high == pytest.approx(cr2["ci_ub"][0], rel=RTOL_MV)
        assert eg.limit_pvalue == pytest.approx(cr2["pvalue"][0], rel=RTOL_MV)
    else:
        assert eg.limit_estimate is None
    # without cluster=: metafor's model-based test of the same rma.mv / rma.uni fit
    mb = case["model"]
    assert model_based.robust is None
    assert model_based.statistic == pytest.approx(mb["statistic"][j], rel=RTOL_MV)
    assert model_based.pvalue == pytest.approx(mb["pvalue"][j], rel=RTOL_MV)
    np.testing.assert_allclose(model_based.se, mb["se"], rtol=RTOL_MV)


def test_multilevel_refuses_lm() -> None:
    d = ROB["konstantopoulos2011"]
    fit = am.multilevel(yi=d["yi"], vi=d["vi"],
                        levels={"district": d["district"], "school": d["school"]})
    with pytest.raises(ModelSpecificationError, match="model='rma'"):
        am.egger_test(fit, model="lm")
    with pytest.raises(ModelSpecificationError, match="not a level"):
        am.egger_test(fit, cluster="region")


# ---------------------------------------------------------------------------
# PET-PEESE
# ---------------------------------------------------------------------------


def _regtest_fit(ds: str) -> tuple[Any, dict[str, Any]]:
    entry = _load("regtest_predictors.json")[ds]
    fit = next(f for f in entry["fits"] if f["label"] == "REML_z")
    return am.random_effects(yi=entry["yi"], vi=entry["vi"]), fit["regtest"]


@pytest.mark.parametrize("ds", ["bcg", "molloy2014", "bangertdrowns2004", "normand1999"])
def test_pet_peese_is_regtest_lm_with_sei_and_vi(ds: str) -> None:
    fit, ref = _regtest_fit(ds)
    pp = am.pet_peese(fit)
    assert pp.model == "lm"
    assert pp.pet == am.egger_test(fit, model="lm", predictor="sei")
    assert pp.peese == am.egger_test(fit, model="lm", predictor="vi")
    for eg, key in ((pp.pet, "lm_sei"), (pp.peese, "lm_vi")):
        assert eg.limit_estimate == pytest.approx(ref[key]["est"], rel=RTOL)
        assert eg.limit_ci is not None
        assert eg.limit_ci.low == pytest.approx(ref[key]["ci_lb"], rel=RTOL)
        # the intercept's t test on k - 2 df, from metafor's coefficient and SE
        t0 = ref[key]["coef"][0] / ref[key]["se"][0]
        p0 = 2 * sps.t.sf(abs(t0), ref[key]["df"])
        assert eg.limit_pvalue == pytest.approx(p0, rel=RTOL)
    # the decision: PET's two-sided test of the intercept at alpha
    p_pet = pp.pet.limit_pvalue
    assert p_pet is not None and pp.decision_pvalue == p_pet
    assert pp.chosen == ("PEESE" if p_pet < 0.05 else "PET")
    chosen = pp.peese if pp.chosen == "PEESE" else pp.pet
    assert pp.estimate == chosen.limit_estimate and pp.ci == chosen.limit_ci
    assert pp.chosen in pp.reason
    frame = pp.to_frame()
    assert list(frame.index) == ["PET", "PEESE"]
    assert frame.loc[pp.chosen, "chosen"]


def test_pet_peese_switches_at_alpha_and_one_sided() -> None:
    fit, _ = _regtest_fit("molloy2014")
    p = am.pet_peese(fit).decision_pvalue  # 0.32: PET's limit estimate is positive
    assert am.pet_peese(fit, alpha=p * 1.01).chosen == "PEESE"
    assert am.pet_peese(fit, alpha=p * 0.99).chosen == "PET"
    greater = am.pet_peese(fit, alternative="greater")
    assert greater.decision_pvalue == pytest.approx(p / 2, rel=1e-15)  # exact halving
    less = am.pet_peese(fit, alternative="less")
    assert less.decision_pvalue == pytest.approx(1 - p / 2, rel=1e-15)
    rma = am.pet_peese(fit, model="rma")
    assert rma.pet == am.egger_test(fit, predictor="sei")


def test_pet_peese_refuses_moderators_and_bad_alpha() -> None:
    studies = am.datasets.load_molloy2014().studies()
    reg = am.meta_regression(studies, moderators=["meanage"])
    with pytest.raises(ModelSpecificationError, match="intercept-only"):
        am.pet_peese(reg)
    fit = am.random_effects(studies)
    for alpha in (0.0, 1.0, -0.1):
        with pytest.raises(ModelSpecificationError, match="alpha"):
            am.pet_peese(fit, alpha=alpha)
    with pytest.raises(ModelSpecificationError, match="alternative"):
        am.pet_peese(fit, alternative="one-sided")  # type: ignore[arg-type]


def test_pet_peese_on_dependent_effects_with_cluster() -> None:
    d = ROB["konstantopoulos2011"]
    fit = am.multilevel(yi=d["yi"], vi=d["vi"],
                        levels={"district": d["district"], "school": d["school"]})
    with pytest.warns(FewStudiesWarning, match="Satterthwaite"):  # PEESE's slope: 2.3 df
        pp = am.pet_peese(fit, model="rma", cluster="district")
    case = next(c for c in d["cases"] if c["label"] == "ml_sei")
    assert pp.pet.limit_pvalue == pytest.approx(case["CR2"]["pvalue"][0], rel=RTOL_MV)
    assert pp.pet.robust == "CR2"


@pytest.mark.parametrize(("ds", "case"), [c for c in ROBUST_CASES
                                          if c.values[1]["label"] != "uni_sei"])  # type: ignore[index]
def test_refit_reaches_metafors_likelihood(ds: str, case: dict[str, Any]) -> None:
    """The model refitted with the predictor is at least as likely as metafor's rma.mv
    fit (where nlminb stopped at rel.tol = 1e-10, ours is up to 3e-11 higher)."""
    from alliance_meta.diagnostics.bias import _refit_multilevel

    fit, ni, _ = _ml_fit(ds, case)
    pred = case["coef_names"][-1]
    col = {"sei": np.sqrt(fit.vi), "vi": np.asarray(fit.vi),
           "ninv": 1.0 / np.asarray(ni if ni is not None else fit.vi, dtype=float)}[pred]
    refit = _refit_multilevel(fit, np.column_stack([fit.X, col]), (*fit.coef_names, pred))
    # 1e-10 absolute: the log-likelihoods are O(10), summed in a different order
    assert refit.loglik >= case["loglik"] - 1e-10
