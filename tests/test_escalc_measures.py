"""Every escalc measure against metafor 3.8.1 (tests/reference/escalc_measures.json,
made by generate_escalc_measures.R on the data sets of metafor's help examples, edge
rows, and the non-default vtype/add/to/drop00 options), plus the registry contract."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import alliance_meta as am
from alliance_meta._types import Measure
from alliance_meta.data import measures as M

REF = json.loads((Path(__file__).parent / "reference" / "escalc_measures.json").read_text())

# The issue asks for 1e-8 relative; the formulas are metafor's operations in the same
# order, so the differences are ~1e-15 (libm, and jsonlite's 15 significant digits).
RTOL = 1e-8
# RTET runs metafor's optimize + Nelder-Mead + finite-difference Hessian step by step,
# with Genz's bivariate normal in place of mvtnorm's (same algorithm, different
# rounding): yi agrees to ~1e-11 and vi to ~5e-9; 1e-6 is the tolerance for it.
# PBIT uses only qnorm and is held to 1e-6 as the issue allows, though it agrees to 1e-13.
RTOL_NUMERICAL = {"RTET": 1e-6, "PBIT": 1e-6}
# Values that are exactly 0 in metafor (r = 0, equal means): relative error is
# undefined; 1e-14 is a few ulps of O(1) effect sizes.
ATOL = 1e-14


def _array(values: Any) -> np.ndarray:
    vals = values if isinstance(values, list) else [values]
    return np.asarray([np.nan if v is None else v for v in vals], dtype=np.float64)


def _options(case: dict[str, Any]) -> dict[str, Any]:
    opts = case["options"] if isinstance(case["options"], dict) else {}
    return {k: opts[k] for k in ("add", "to", "drop00", "vtype") if k in opts}


def _run(case: dict[str, Any]) -> am.EscalcResult:
    inputs = {k: _array(v) for k, v in case["inputs"].items()}
    return am.escalc(case["measure"], **inputs, **_options(case))


CASES = [pytest.param(case, id=case["id"]) for case in REF["cases"]]


@pytest.mark.parametrize("case", CASES)
def test_matches_metafor(case: dict[str, Any]) -> None:
    res = _run(case)
    yi, vi = _array(case["yi"]), _array(case["vi"])
    rtol = RTOL_NUMERICAL.get(case["measure"], RTOL)
    if "exact_yi" in case:
        # metafor's UCOR takes 2F1 from GSL, which is wrong by up to 1e-3 for even n
        # from 8 to 22 and |r| < 0.07 (c - a - b whole, x > 0.995): check against the
        # exact series
        # everywhere, and against metafor where GSL is right
        exact_yi, exact_vi = _array(case["exact_yi"]), _array(case["exact_vi"])
        ok = np.isfinite(exact_yi)
        np.testing.assert_allclose(res.yi[ok], exact_yi[ok], rtol=rtol, atol=ATOL)
        # the UB variance is a difference of O(1) terms: 1e-12 absolute is its rounding
        np.testing.assert_allclose(res.vi[ok], exact_vi[ok], rtol=rtol, atol=1e-12)
        gsl_right = ~ok | (np.abs(yi - exact_yi) <= 1e-10 * np.abs(exact_yi))
        yi, vi, res_yi, res_vi = yi[gsl_right], vi[gsl_right], res.yi[gsl_right], res.vi[gsl_right]
    else:
        res_yi, res_vi = res.yi, res.vi
    if case["options"] and isinstance(case["options"], dict) and case["options"].get("drop00"):
        # drop00: the tables set aside have no effect (metafor: yi NA)
        gone = np.isnan(yi)
        assert np.all(np.isnan(res_yi[gone]))
        yi, vi, res_yi, res_vi = yi[~gone], vi[~gone], res_yi[~gone], res_vi[~gone]
    np.testing.assert_allclose(res_yi, yi, rtol=rtol, atol=ATOL)
    np.testing.assert_allclose(res_vi, vi, rtol=rtol, atol=ATOL)


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c["id"]) for c in REF["cases"] if c["ni"] is not None]
)
def test_sample_sizes_as_metafor(case: dict[str, Any]) -> None:
    # metafor's attr(yi, "ni"): counts and sizes, exact for whole numbers; sums of
    # person-times (t1i + t2i) may differ in the last ulp of jsonlite's 15 digits
    res = _run(case)
    ni = _array(case["ni"])
    keep = np.isfinite(ni)
    np.testing.assert_allclose(res.ni[: ni.size][keep], ni[keep], rtol=1e-14)


def test_every_measure_is_tested() -> None:
    tested = {case["measure"] for case in REF["cases"]}
    assert tested == set(M.names())


def test_measure_literal_is_the_registry() -> None:
    assert set(typing.get_args(Measure)) == set(M.names())


def test_metafor_gsl_error_is_documented() -> None:
    """The evidence for leaving metafor's UCOR: GSL's 2F1(1/2, 1/2; 5; 0.99718...)."""
    case = next(c for c in REF["cases"] if c["id"] == "UCOR-from-p")
    yi, exact = _array(case["yi"]), _array(case["exact_yi"])
    # row 3: p = 0.87, n = 12: metafor 0.0564741..., exact 0.0564212... (1e-3 apart)
    assert abs(yi[2] / exact[2] - 1) > 5e-4
    assert am.escalc("UCOR", pi=0.87, ni=12).yi[0] == pytest.approx(exact[2], rel=1e-12)


@pytest.mark.parametrize("spec", M.specs(), ids=lambda s: s.name)
def test_registry_entries_are_complete(spec: M.MeasureSpec) -> None:
    # what the docs table, the plots and back_transformed() read
    assert spec.family and spec.description and spec.formula and spec.variance
    assert spec.reference and spec.axis_label and spec.analysis_label
    assert spec.vtypes[0] == "LS"
    if spec.back_transform is not None:
        assert spec.transform is not None and spec.back_transform_label
        assert spec.axis in ("log", "function")
        # the transforms are inverses of each other
        x = {"r": 0.3, "alpha": 0.7}.get(spec.natural_name, 0.3)
        n = np.array([20.0, 30.0])
        assert spec.to_natural(spec.to_analysis([x], n), n)[0] == pytest.approx(x, rel=1e-12)
    else:
        assert spec.axis == "linear"


@pytest.mark.parametrize(
    ("measure", "value", "natural"),
    [
        ("ZCOR", 0.5, np.tanh(0.5)),
        ("OR", 0.5, np.exp(0.5)),
        ("PLO", 0.0, 0.5),
        ("PAS", np.pi / 4, 0.5),
        ("IRS", 0.3, 0.09),
        ("AHW", 0.5, 0.875),
        ("ABT", np.log(2.0), 0.5),
        ("SMD", 0.4, 0.4),
    ],
)
def test_back_transform(measure: str, value: float, natural: float) -> None:
    # closed forms: a few ulps
    assert M.back_transform(value, measure) == pytest.approx(natural, rel=1e-14)


def test_pft_back_transform_uses_harmonic_mean() -> None:
    # metafor 3.8.1: transf.ipft.hm(0.5, targs = list(ni = c(10, 20, 40)))
    #                = 0.214704040937641 (R 4.2.2); the harmonic mean of n is 17.14...
    n = np.array([10.0, 20.0, 40.0])
    # 1e-12: closed form with sin/cos, R prints 15 digits
    assert M.back_transform(0.5, "PFT", n=n) == pytest.approx(0.214704040937641, rel=1e-12)
    with pytest.raises(am.exceptions.AllianceMetaError, match="sample sizes"):
        M.back_transform(0.5, "PFT")


def test_docs_table_is_generated_from_the_registry() -> None:
    committed = (Path(__file__).parents[1] / "docs" / "effect_sizes_table.rst").read_text()
    assert committed == M.docs_table()
