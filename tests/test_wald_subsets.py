"""Wald tests of chosen coefficients against metafor 3.8.1's ``anova(fit, btt =)``
(tests/reference/wald_subsets.json from generate_wald.R; PROVENANCE.md)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import alliance_meta as am
from alliance_meta.exceptions import ModelSpecificationError

REF = json.loads((Path(__file__).parent / "reference" / "wald_subsets.json").read_text())
# Univariate fits are metafor's exact roots (threshold 1e-12): the test statistic and
# p-value agree to round-off; 1e-8 leaves room for the QM solve's conditioning.
RTOL_UNI = 1e-8
# rma.mv's σ² come from nlminb (rel.tol 1e-12): the 1e-5 for quantities that
# hang on σ² (tests/test_multilevel.py, RTOL_FIT).
RTOL_MV = 1e-5


def _fit(case: dict[str, Any]) -> Any:
    if case["kind"] == "uni":
        d = REF["bcg"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Knapp-Hartung on an EE fit, as metafor warns
            return am.meta_regression(
                yi=d["yi"], vi=d["vi"],
                moderators={"ablat": d["ablat"], "year": d["year"], "alloc": d["alloc"]},
                method=case["method"], test=case["test"])
    d = REF["assink2016"]
    return am.multilevel(
        yi=d["yi"], vi=d["vi"], levels={"study": d["study"], "esid": d["esid"]},
        moderators={"deltype": d["deltype"], "year": d["year"]}, test=case["test"])


@pytest.mark.parametrize("case", REF["cases"], ids=[c["name"] for c in REF["cases"]])
def test_wald_test_matches_anova_btt(case: dict[str, Any]) -> None:
    fit = _fit(case)
    assert list(fit.coef_names) == case["coef_names"]
    btt = [b - 1 for b in case["btt"]]  # R's 1-based btt
    res = fit.wald_test(btt)
    rtol = RTOL_UNI if case["kind"] == "uni" else RTOL_MV
    assert res.statistic == pytest.approx(case["QM"], rel=rtol)
    assert res.pvalue == pytest.approx(case["QMp"], rel=rtol)
    assert res.df_num == case["QMdf"][0]
    if case["QMdf"][1] == "NA":
        assert res.distribution == "chi2" and math.isnan(res.df_denom)
    else:
        assert res.distribution == "F" and res.df_denom == case["QMdf"][1]
    # names give the same test
    assert fit.wald_test([case["coef_names"][b] for b in btt]) == res


def test_default_is_the_omnibus_qm() -> None:
    fit = _fit(REF["cases"][0])
    res = fit.wald_test()
    # the fit's QM is the same quadratic form through the same inference layer:
    # equal up to round-off
    assert res.statistic == pytest.approx(fit.QM, rel=1e-12)
    assert res.coefs == fit.coef_names[1:]


def test_bad_choices_are_named() -> None:
    fit = _fit(REF["cases"][0])
    with pytest.raises(ModelSpecificationError, match="no coefficient named 'ablatt'"):
        fit.wald_test(["ablatt"])
    with pytest.raises(ModelSpecificationError, match="0-based"):
        fit.wald_test([5])
    with pytest.raises(ModelSpecificationError, match="repeats"):
        fit.wald_test([1, 1])
    assert np.isfinite(fit.wald_test(1).pvalue)
