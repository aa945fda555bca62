"""Output people read: printouts, p-values as metafor prints them, predict(transf=)
on every fit, and report() sentences.

References: tests/reference/rstyle.json (generate_rstyle.R, metafor 3.8.1).
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import alliance_meta as am
from alliance_meta.results.display import apa_number, apa_p, fmt_p

REF = Path(__file__).parent / "reference" / "rstyle.json"
#: the contract's tolerance (issue 15); the references are tight-control fits
RTOL = 1e-6


@cache
def ref() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REF.read_text(encoding="utf-8"))
    return data


def _studies() -> am.StudySet:
    return am.datasets.load_alliance_example().studies()


def _close(got: Any, want: Any) -> None:
    np.testing.assert_allclose(np.atleast_1d(np.asarray(got, dtype=float)),
                               np.atleast_1d(np.array(want, dtype=float)), rtol=RTOL)


# ---------------------------------------------------------------------------
# p-values and numbers
# ---------------------------------------------------------------------------


def test_p_values_are_printed_as_metafor_prints_them() -> None:
    r = ref()["pval_format"]
    assert [fmt_p(p) for p in r["p"]] == r["text"]
    assert fmt_p(math.nan) == "NA"


def test_apa_numbers_and_p_values() -> None:
    assert apa_number(-0.3123) == "\u22120.31"  # a typographic minus
    assert apa_number(-0.001) == "0.00"  # never "−0.00"
    assert apa_number(0.0005, 4) == "0.0005"
    assert apa_p(0.0316) == "p = .032"
    assert apa_p(0.0004) == "p < .001"
    assert apa_p(0.5) == "p = .500"


# ---------------------------------------------------------------------------
# Printouts: tau, SE(tau^2), df of t tests, metafor's p-values
# ---------------------------------------------------------------------------


def test_pool_printout_shows_tau_its_se_and_the_t_df() -> None:
    fit = am.random_effects(_studies(), test="knha")
    text = str(fit)
    assert f"{fit.tau2:.4f} (SE = {fit.tau2_se:.4f})" in text
    assert f"tau:               {math.sqrt(fit.tau2):.4f}" in text
    assert f" {fit.df:g} " in text and " df " in text  # the t test's df column
    assert "Q(11):   63.7072, p < .0001" in text  # metafor: "p-val < .0001"
    assert f"{fit.pvalue:.4f}" in text
    ee = str(am.fixed_effect(_studies()))
    assert "tau" not in ee.split("====")[1]  # no tau^2 for an equal-effects model


def test_metareg_printout() -> None:
    fit = am.meta_regression(_studies(), moderators=["rater", "experience"], test="t")
    text = str(fit)
    assert f"{fit.tau2:.4f} (SE = {fit.tau2_se:.4f})" in text
    assert "tau (residual):" in text
    assert "F(2, 9):  16.0218, p = 0.0011" in text
    assert "QE(9):  12.6198, p = 0.1806" in text
    assert "-5.3057  9 0.0005" in text  # t, its df, metafor's 4-decimal p
    assert text.count("  9 ") == 3  # the df column of each coefficient
    z = str(am.meta_regression(_studies(), moderators=["rater", "experience"]))
    assert "QM(2):" in z and "<.0001" in z and " df " not in z


def test_subgroup_printout() -> None:
    sub = am.subgroup_analysis(_studies(), by="rater")
    text = str(sub)
    assert "tau^2   tau" in text  # a tau column beside tau^2
    assert f"{math.sqrt(sub.groups['patient'].tau2):.4f}" in text
    assert "Between groups 33.14  1  <.0001" in text  # metafor's p-value format


# ---------------------------------------------------------------------------
# predict(transf=) on every fit, against metafor's predict(fit, transf=)
# ---------------------------------------------------------------------------


def _pred_matches(pred: am.Prediction, want: dict[str, Any], se: bool = True) -> None:
    _close(pred.pred, want["pred"])
    _close(pred.ci.low, want["ci_lb"])
    _close(pred.ci.high, want["ci_ub"])
    _close(pred.pi.low, want["pi_lb"])
    _close(pred.pi.high, want["pi_ub"])
    if se:
        _close(pred.se, want["se"])
    else:
        assert all(x is None for x in np.atleast_1d(want["se"]))  # metafor: NA
        assert np.isnan(pred.se).all()


def test_pooled_predict_transf_zcor() -> None:
    r = ref()["predict"]["pooled_zcor"]
    mcd = ref()["control_default"]["mcdaniel1994"]
    fit = am.random_effects(yi=mcd["yi"], vi=mcd["vi"], measure="ZCOR")
    _pred_matches(fit.predict(), r["plain"])
    _pred_matches(fit.predict(transf=True), r["ztor"], se=False)  # tanh: transf.ztor
    _pred_matches(fit.predict(transf=np.tanh), r["ztor"], se=False)
    assert fit.predict(transf=True).transf == "r"
    assert fit.predict(transf=np.tanh).transf == "tanh"


def test_pooled_predict_transf_exp_knha() -> None:
    r = ref()["predict"]["pooled_rr"]
    bcg = ref()["control_default"]["bcg"]
    fit = am.random_effects(yi=bcg["yi"], vi=bcg["vi"], measure="RR", test="knha")
    _pred_matches(fit.predict(), r["plain"])
    _pred_matches(fit.predict(transf=True), r["exp"], se=False)
    # a scalar function is applied element by element
    _pred_matches(fit.predict(transf=math.exp), r["exp"], se=False)
    bt = fit.back_transformed()
    assert fit.predict(transf=True).pred[0] == pytest.approx(bt.estimate, rel=1e-15)


def test_metareg_predict_transf_matches_metafor() -> None:
    r = ref()["predict"]["interaction"]
    bcg = ref()["control_default"]["bcg"]
    df = pd.DataFrame({
        "yi": bcg["yi"], "vi": bcg["vi"],
        "ablat": [44, 55, 42, 52, 13, 44, 19, 13, 27, 42, 18, 33, 33],
        "alloc": ["random"] * 4 + ["alternate"] * 2 + ["random"] * 3 + ["systematic"] * 4,
    })
    fit = am.meta_regression(data=df, moderators=r["formula"], measure="RR")
    _pred_matches(fit.predict(r["new"], transf=True), r["exp"], se=False)
    _pred_matches(fit.predict(r["new"], transf=np.exp), r["exp"], se=False)


def test_subgroup_predict() -> None:
    studies = _studies()
    sep = am.subgroup_analysis(studies, by="rater")
    pred = sep.predict(transf=True)
    assert pred.labels == ("patient", "therapist")
    for i, res in enumerate(sep.groups.values()):
        one = res.predict(transf=True)
        assert pred.pred[i] == one.pred[0] and pred.pi.high[i] == one.pi.high[0]
    # common tau^2: the no-intercept model ~ factor(rater) - 1, as metafor's predict
    com = am.subgroup_analysis(studies, by="rater", tau2="common", test="knha")
    reg = am.meta_regression(studies, moderators="~ rater - 1", test="knha")
    want = reg.predict(np.eye(2))
    got = com.predict()
    np.testing.assert_allclose(got.pred, want.pred, rtol=1e-10)
    np.testing.assert_allclose(got.ci.low, want.ci.low, rtol=1e-10)
    np.testing.assert_allclose(got.pi.high, want.pi.high, rtol=1e-10)
    assert list(got.to_frame().index) == ["patient", "therapist"]


def test_transf_must_be_true_or_callable() -> None:
    fit = am.random_effects(_studies())
    with pytest.raises(am.exceptions.ModelSpecificationError, match="transf"):
        fit.predict(transf="exp")  # type: ignore[arg-type]
    assert fit.predict(transf=False).transf is None


# ---------------------------------------------------------------------------
# report()
# ---------------------------------------------------------------------------


def test_pooled_report_is_the_apa_sentence() -> None:
    therapist = _studies().subset(rater="therapist")
    fit = am.random_effects(therapist)
    assert fit.report() == (
        "r = \u22120.31, 95% CI [\u22120.37, \u22120.24], k = 6, \u03c4\u00b2 = 0.0005, "
        "I\u00b2 = 7%"
    )
    assert am.fixed_effect(therapist).report().startswith("r = \u22120.31, 95% CI")
    assert "\u03c4\u00b2" not in am.fixed_effect(therapist).report()
    ratio = am.random_effects(yi=ref()["control_default"]["bcg"]["yi"],
                              vi=ref()["control_default"]["bcg"]["vi"], measure="RR",
                              level=0.9)
    text = ratio.report(digits=3)
    assert text.startswith(f"RR = {math.exp(ratio.estimate):.3f}, 90% CI")


def test_metareg_and_subgroup_reports() -> None:
    studies = _studies()
    reg = am.meta_regression(studies, moderators=["rater", "experience"])
    text = reg.report()
    assert text.startswith("Test of moderators: QM(2) = 32.04, p < .001. intrcpt: b = ")
    assert "ratertherapist: b = \u22120.35, 95% CI [" in text
    assert text.endswith(f"k = 12, \u03c4\u00b2 = {reg.tau2:.4f} (residual), "
                         f"I\u00b2 = {reg.I2:.0f}%, R\u00b2 = {reg.R2:.0f}%.")
    sub = am.subgroup_analysis(studies, by="rater")
    text = sub.report()
    assert text.startswith("patient: r = 0.04, 95% CI [\u22120.06, 0.13], k = 6")
    assert "therapist: r = \u22120.31, 95% CI [\u22120.37, \u22120.24]" in text
    assert text.endswith("Test of subgroup differences: Q(1) = 33.14, p < .001.")
    egger = am.egger_test(am.random_effects(studies))
    assert egger.report() == (
        f"Egger's regression test for funnel plot asymmetry: z = "
        f"{egger.statistic:.2f}, {apa_p(egger.pvalue)}."
    )
