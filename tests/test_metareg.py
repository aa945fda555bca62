"""Meta-regression against metafor 3.8.1 (tests/reference/metareg_*.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import alliance_meta as am
from alliance_meta.core.estimators import ESTIMATORS
from alliance_meta.exceptions import InvalidStudyError, ModelSpecificationError

REF = Path(__file__).parent / "reference"
FILES = sorted(REF.glob("metareg_*.json"))

# metafor was run with tol = threshold = 1e-12 and our core solves τ² to 1e-10
# relative; every derived quantity then agrees to ~1e-9, so 1e-6 (the project's
# contract with metafor) leaves a wide margin while still catching any formula error.
RTOL = 1e-6
# Pseudo-R² = 100 (τ²_0 - τ²)/τ²_0 is a ratio of two iteratively estimated τ²
# values, each solved to tolerance, and the difference amplifies their relative
# errors by τ²_0/(τ²_0 - τ²); 1e-5 allows for that amplification.
RTOL_R2 = 1e-5
# p-values below ~1e-300 are meaningless to compare relatively; an absolute floor
# of 1e-12 (far below any reported decision threshold) covers values that are 0.
ATOL = 1e-12


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _moderators(data: dict[str, Any]) -> dict[str, Any]:
    """Moderator values as given; ``factor(x)`` of numbers becomes text levels."""
    out: dict[str, Any] = {}
    for name, vals in data["moderators"].items():
        if f"factor({name})" in data["formula"]:
            out[name] = [str(v) for v in vals]
        else:
            out[name] = vals
    return out


def _r_name(name: str, formula: str) -> str:
    """Our coefficient name for metafor's (``factor(grade)2`` -> ``grade2``)."""
    if name.startswith("factor("):
        inner, level = name[len("factor(") :].split(")", 1)
        return inner + level
    return name


CASES = [
    pytest.param(path, i, id=f"{path.stem}-{c['method']}-{c['test']}")
    for path in FILES
    for i, c in enumerate(_load(path)["cases"])
]


@pytest.mark.parametrize(("path", "i"), CASES)
def test_against_metafor(path: Path, i: int) -> None:
    data = _load(path)
    case = data["cases"][i]
    exp = case["expected"]
    res = am.meta_regression(
        yi=data["yi"],
        vi=data["vi"],
        moderators=_moderators(data),
        method=case["method"],
        test=case["test"],
    )
    # coefficient names in R's order (formula form translated to R's plain names)
    assert list(res.coef_names) == [_r_name(n, data["formula"]) for n in exp["coef_names"]]
    for ours, key in [
        (res.coef, "coef"),
        (res.se, "se"),
        (res.statistic, "statistic"),
        (res.pvalue, "p_value"),
        (res.ci.low, "ci_lb"),
        (res.ci.high, "ci_ub"),
    ]:
        np.testing.assert_allclose(ours, exp[key], rtol=RTOL, atol=ATOL, err_msg=key)
    for attr, key in [
        ("QE", "QE"),
        ("QE_pvalue", "QE_p"),
        ("QM", "QM"),
        ("QM_pvalue", "QM_p"),
        ("I2", "I2"),
        ("H2", "H2"),
    ]:
        np.testing.assert_allclose(getattr(res, attr), exp[key], rtol=RTOL, atol=ATOL,
                                   err_msg=key)
    # τ² can be an exact 0 (EE, boundary fits); metafor may return ~1e-13 there
    np.testing.assert_allclose(res.tau2, exp["tau2"], rtol=RTOL, atol=1e-10)
    if "tau2_se" not in exp:
        pass  # the original metareg files predate the tau2_se field
    elif exp["tau2_se"] is None:
        assert res.tau2_se is None
    else:
        np.testing.assert_allclose(res.tau2_se, exp["tau2_se"], rtol=RTOL)
    assert res.QM_df == tuple(exp["QM_df"])
    assert res.QE_df == len(data["yi"]) - len(exp["coef"])
    assert res.R2 is not None
    np.testing.assert_allclose(res.R2, exp["R2"], rtol=RTOL_R2, atol=1e-8)


PREDICT = [
    pytest.param(b, id=f"{b['method']}-{b['test']}")
    for b in _load(REF / "metareg_bcg_ablat.json")["predict"]
]


@pytest.mark.parametrize("block", PREDICT)
def test_predict(block: dict[str, Any]) -> None:
    data = _load(REF / "metareg_bcg_ablat.json")
    res = am.meta_regression(
        yi=data["yi"], vi=data["vi"], moderators=data["moderators"],
        method=block["method"], test=block["test"],
    )
    pr = res.predict(block["newmods"])
    for ours, key in [
        (pr.pred, "pred"), (pr.se, "se"), (pr.ci.low, "ci_lb"), (pr.ci.high, "ci_ub"),
        (pr.pi.low, "pi_lb"), (pr.pi.high, "pi_ub"),
    ]:
        np.testing.assert_allclose(ours, block[key], rtol=RTOL, err_msg=key)
    # metafor's newmods form (design columns without the intercept) gives the same
    bare = res.predict(np.asarray(block["newmods"]["ablat"], dtype=float))
    np.testing.assert_allclose(bare.pred, pr.pred, rtol=1e-14)


PERM = [
    pytest.param(b, id=f"{b['formula']}-{b['method']}")
    for b in _load(REF / "metareg_bcg_ablat.json")["permutest_exact"]
]


@pytest.mark.parametrize("block", PERM)
def test_permutest_exact(block: dict[str, Any]) -> None:
    mods = {} if block["formula"] == "~1" else block["moderators"]
    res = am.meta_regression(
        yi=block["yi"], vi=block["vi"], moderators=mods,
        method=block["method"], test=block["test"],
    )
    np.testing.assert_allclose(res.coef, block["coef"], rtol=RTOL)
    np.testing.assert_allclose(res.statistic, block["statistic"], rtol=RTOL)
    np.testing.assert_allclose(res.QM, block["QM"], rtol=RTOL)
    pt = res.permutation_test(exact=True)
    assert pt.exact
    assert pt.n_permutations == block["n_permutations"]
    # p-values are counts / n_permutations: exact rationals, so they must agree to
    # rounding (a single differing permutation would change them by 1/2520 ≈ 4e-4)
    np.testing.assert_allclose(pt.pvalue, block["pval"], rtol=1e-12)
    np.testing.assert_allclose(pt.QM_pvalue, block["QMp"], rtol=1e-12)


def test_random_permutations_include_observed_and_are_reproducible() -> None:
    data = _load(REF / "metareg_bcg_ablat.json")
    res = am.meta_regression(yi=data["yi"], vi=data["vi"], moderators=data["moderators"])
    a = res.permutation_test(n=300, seed=7)
    b = res.permutation_test(n=300, seed=7)
    assert not a.exact and a.n_permutations == 300
    np.testing.assert_array_equal(a.pvalue, b.pvalue)
    # the observed data are the first permutation, so p >= 1/n
    np.testing.assert_allclose(a.permuted_statistic[0], res.statistic, rtol=1e-12)
    assert np.all(a.pvalue >= 1 / 300)
    # ablat is a strong moderator (z = -5.4): very few permutations beat it
    assert a.pvalue[1] < 0.02


def test_two_level_factor_equals_numeric_coding() -> None:
    data = _load(REF / "metareg_bcg_alloc.json")
    alloc = np.asarray(data["moderators"]["alloc"])
    lab = np.where(alloc == "random", "random", "other")
    for method in ("REML", "DL", "EE"):
        cat = am.meta_regression(
            yi=data["yi"], vi=data["vi"], moderators={"rnd": lab}, method=method
        )
        num = am.meta_regression(
            yi=data["yi"], vi=data["vi"], moderators={"rnd": (lab == "random").astype(float)},
            method=method,
        )
        assert cat.coef_names == ("intrcpt", "rndrandom")
        # identical design matrices, so equal to rounding
        np.testing.assert_allclose(cat.QM, num.QM, rtol=1e-12)
        np.testing.assert_allclose(cat.coef, num.coef, rtol=1e-12)


def test_moderator_reference_override() -> None:
    data = _load(REF / "metareg_bcg_alloc.json")
    mods = {am.Moderator.categorical("alloc", reference="random"): data["moderators"]["alloc"]}
    res = am.meta_regression(yi=data["yi"], vi=data["vi"], moderators=mods)
    assert res.coef_names == ("intrcpt", "allocalternate", "allocsystematic")
    base = am.meta_regression(
        yi=data["yi"], vi=data["vi"], moderators=data["moderators"]
    )
    # reparametrisation: same model, same QM and τ²; intercept = the random level
    np.testing.assert_allclose(res.QM, base.QM, rtol=1e-9)
    np.testing.assert_allclose(res.tau2, base.tau2, rtol=1e-9)
    np.testing.assert_allclose(res.coef[0], base.coef[0] + base.coef[1], rtol=1e-9)


@pytest.mark.parametrize(
    "method", list(ESTIMATORS)
)
def test_every_estimator_gives_r2(method: str) -> None:
    data = _load(REF / "metareg_bcg_ablat.json")
    res = am.meta_regression(
        yi=data["yi"], vi=data["vi"], moderators=data["moderators"], method=method
    )
    assert res.R2 is not None and 0.0 <= res.R2 <= 100.0
    assert res.QE_df == 11 and np.isfinite(res.QM)


def test_studyset_input_and_errors() -> None:
    data = _load(REF / "metareg_bcg_ablat.json")
    sset = am.StudySet.from_arrays(
        yi=data["yi"], vi=data["vi"], moderators={"ablat": data["moderators"]["ablat"]}
    )
    res = am.meta_regression(sset, moderators=["ablat"])
    ref = am.meta_regression(yi=data["yi"], vi=data["vi"], moderators=data["moderators"])
    np.testing.assert_allclose(res.coef, ref.coef, rtol=1e-14)
    with pytest.raises(InvalidStudyError, match="nope"):
        am.meta_regression(sset, moderators=["nope"])
    with pytest.raises(InvalidStudyError, match="ablat"):
        am.meta_regression(yi=data["yi"], vi=data["vi"], moderators={"ablat": [1.0, 2.0]})
    # b is dropped as redundant (k = 2), as in metafor; then k = p leaves no df for τ²
    with pytest.raises(ModelSpecificationError, match="too few studies"), pytest.warns(
        am.exceptions.ModelSpecificationWarning, match="redundant"
    ):
        am.meta_regression(yi=data["yi"][:2], vi=data["vi"][:2],
                           moderators={"a": [1.0, 2.0], "b": [0.0, 5.0]})
    assert issubclass(InvalidStudyError, ValueError)


_REDUNDANT = json.loads((REF / "redundant_metareg.json").read_text())


@pytest.mark.parametrize("case", _REDUNDANT["cases"], ids=[c["name"] for c in _REDUNDANT["cases"]])
def test_redundant_columns_dropped_like_metafor(case: dict[str, Any]) -> None:
    """A design column that is a linear combination of the columns before it is
    dropped with a warning, as metafor does ("Redundant predictors dropped from the
    model."); the fit then equals metafor's to RTOL (the contract)."""
    data = _REDUNDANT["data"]
    mods: dict[str, Any] = {}
    for name in case["moderators"]:
        vals = data[name]
        mods[name] = np.asarray(vals, dtype=object if isinstance(vals[0], str) else float)
    with pytest.warns(am.exceptions.ModelSpecificationWarning, match="redundant"):
        res = am.meta_regression(
            yi=_REDUNDANT["yi"], vi=_REDUNDANT["vi"], moderators=mods, method=case["method"]
        )
    names = [n.replace("factor(alloc)", "alloc") for n in case["coef_names"]]
    assert list(res.coef_names) == names
    assert list(res.dropped) == case["dropped"]
    np.testing.assert_allclose(res.coef, case["coef"], rtol=RTOL)
    np.testing.assert_allclose(res.se, case["se"], rtol=RTOL)
    assert res.tau2 == pytest.approx(case["tau2"], rel=RTOL)
    assert res.QM == pytest.approx(case["QM"], rel=RTOL)
    assert res.QE == pytest.approx(case["QE"], rel=RTOL)
    # predictions take the full moderator values and drop the same columns
    new = {name: np.asarray(v)[:2] for name, v in mods.items()}
    np.testing.assert_allclose(res.predict(new).pred, res.X[:2] @ res.coef, rtol=1e-12)


def test_frames_and_summary() -> None:
    data = _load(REF / "metareg_bcg_alloc.json")
    res = am.meta_regression(yi=data["yi"], vi=data["vi"], moderators=data["moderators"],
                             test="knha")
    frame = res.to_frame()
    assert list(frame.index) == list(res.coef_names)
    np.testing.assert_array_equal(frame["coef"].to_numpy(), res.coef)
    text = str(res.summary())
    assert "allocsystematic" in text and "F(2, 10)" in text
    with pytest.raises(AttributeError):
        res.tau2 = 0.0  # type: ignore[misc]


def test_predict_input_errors_and_intercept_only() -> None:
    """Bad new moderator values raise InvalidStudyError naming the field; an empty
    mapping on an intercept-only model predicts the intercept (metafor's predict)."""
    yi, vi = [0.1, 0.3, 0.2, 0.5], [0.01, 0.02, 0.03, 0.02]
    only = am.meta_regression(yi=yi, vi=vi, moderators={})
    np.testing.assert_array_equal(only.predict({}).pred, only.coef)
    fit = am.meta_regression(yi=yi, vi=vi, moderators={"g": ["a", "b", "a", "b"]})
    with pytest.raises(am.exceptions.InvalidStudyError) as info:
        fit.predict("b")  # a raw level must come in a mapping
    assert info.value.field == "new_moderators"
    with pytest.raises(am.exceptions.InvalidStudyError) as info:
        fit.predict({"h": ["a"]})
    assert info.value.field == "g"  # the missing moderator is named first
    with pytest.raises(am.exceptions.InvalidStudyError) as info:
        fit.predict([[1.0, 2.0, 3.0]])
    assert info.value.field == "new_moderators"
    # the intercept plus the "b" dummy: (1, 1) @ coef, up to round-off
    assert fit.predict({"g": ["b"]}).pred[0] == pytest.approx(fit.coef.sum(), rel=1e-14)


def test_saturated_models_follow_metafor() -> None:
    """metafor (rma.uni) stops when k - p < 1 for a random-effects model ("Number of
    parameters to be estimated is larger than the number of observations"), but fits
    the equal-effects model with k = p, after dropping redundant columns."""
    yi, vi = [0.1, 0.2, 0.3, 0.25], [0.02, 0.017, 0.014, 0.0125]
    for method in ("REML", "DL", "ML", "PM"):
        with pytest.raises(ModelSpecificationError, match="k = 4 for 4 coefficients"):
            am.meta_regression(yi=yi, vi=vi, moderators={"g": list("abcd")}, method=method)
        with pytest.raises(ModelSpecificationError, match="tau2='separate'"), pytest.warns(
            am.exceptions.FewStudiesWarning, match="k = 1"  # each subgroup has one study
        ):
            am.subgroup_analysis(yi=yi, vi=vi, groups=list("abcd"), tau2="common",
                                 method=method)
    ee = am.meta_regression(yi=yi, vi=vi, moderators={"g": list("abcd")}, method="EE")
    # saturated EE: the coefficients solve X b = y exactly (R: 0.1 0.1 0.2 0.15);
    # 1e-12 leaves room for the rounding of the QR solve only
    np.testing.assert_allclose(ee.coef, [0.1, 0.1, 0.2, 0.15], rtol=1e-12)
    assert ee.QE_df == 0
    # k < p: metafor drops x3 as redundant, then fits EE with coefficients
    # 0.1, 0.06, -0.02 (rma(yi, vi, mods = ~ x1 + x2 + x3, method = "EE"))
    with pytest.warns(am.exceptions.ModelSpecificationWarning, match="x3"):
        wide = am.meta_regression(
            yi=yi[:3], vi=vi[:3], method="EE",
            moderators={"x1": [1.0, 2.0, 4.0], "x2": [3.0, 1.0, 2.0], "x3": [5.0, 5.0, 1.0]},
        )
    # the exact solution of three equations in three unknowns; 1e-10 covers the QR
    # solve of this ill-scaled design, atol the rounding of a coefficient near 0
    np.testing.assert_allclose(wide.coef, [0.1, 0.06, -0.02], rtol=1e-10, atol=1e-14)
