"""Effect sizes of alliance_meta.escalc against metafor's escalc, row by row, and the
checks of bad input (the measures of the original eleven; every measure is in
tests/test_escalc_measures.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alliance_meta as am
from alliance_meta.data import measures as M
from alliance_meta.data.effect_sizes._common import cmi
from alliance_meta.exceptions import InvalidStudyError

REF = Path(__file__).parent / "reference"

# Issue 2 requires agreement with metafor to 1e-10 relative. The formulas are the
# same operations as metafor's, so the real differences are ~1e-15 (libm rounding
# and jsonlite's 15 significant digits); 1e-10 leaves room for other platforms.
RTOL = 1e-10
# Absolute floor for values that are exactly 0 in metafor (e.g. r = 0 for COR):
# relative error is undefined there; 1e-14 is a few ulps of the O(1) effect sizes.
ATOL = 1e-14

CORRELATION = ("ZCOR", "COR", "UCOR")
MEANS = ("SMD", "MD", "SMDH", "ROM")
COUNTS = ("OR", "RR", "RD")
ARGS = ("ri", "ni", "m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i", "ai", "bi", "ci", "di")


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _compute(measure: str, raw: dict[str, list[float]]) -> am.EscalcResult:
    return am.escalc(measure, **{k: v for k, v in raw.items() if k in ARGS})


ESCALC_CASES = [
    pytest.param(path, measure, id=f"{path.stem}-{measure}")
    for path in sorted(REF.glob("escalc_*.json"))
    if path.stem != "escalc_measures"
    for measure in _load(path)["measures"]
]


@pytest.mark.parametrize(("path", "measure"), ESCALC_CASES)
def test_matches_metafor_escalc(path: Path, measure: str) -> None:
    ref = _load(path)
    res = _compute(measure, ref["raw"])
    expected = ref["measures"][measure]
    np.testing.assert_allclose(res.yi, np.asarray(expected["yi"], float), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(res.vi, np.asarray(expected["vi"], float), rtol=RTOL, atol=ATOL)
    if "corrected" in ref["raw"]:
        np.testing.assert_array_equal(res.corrected, np.asarray(ref["raw"]["corrected"], bool))
    else:
        assert not res.corrected.any()


POOL_CASES = [
    pytest.param(path, id=path.stem)
    for path in sorted(REF.glob("pool_*.json"))
    if _load(path).get("raw") and _load(path)["measure"] in (*CORRELATION, *MEANS, *COUNTS)
]


@pytest.mark.parametrize("path", POOL_CASES)
def test_matches_pool_reference_effect_sizes(path: Path) -> None:
    ref = _load(path)
    res = _compute(ref["measure"], ref["raw"])
    np.testing.assert_allclose(res.yi, np.asarray(ref["yi"], float), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(res.vi, np.asarray(ref["vi"], float), rtol=RTOL, atol=ATOL)


def test_zero_cells_corrected_for_rd_too() -> None:
    # metafor 3.8.1 escalc("RD", ai=0, bi=10, ci=3, di=9) with default add/to:
    # 1/2 is added to all four cells, so p1 = 0.5/11, p2 = 3.5/13.
    res = am.escalc("RD", ai=[0], bi=[10], ci=[3], di=[9])
    p1, p2 = 0.5 / 11, 3.5 / 13
    # Same arithmetic in a different order: a few ulps.
    assert res.yi[0] == pytest.approx(p1 - p2, rel=1e-14)
    assert res.vi[0] == pytest.approx(p1 * (1 - p1) / 11 + p2 * (1 - p2) / 13, rel=1e-14)
    assert res.corrected[0]


def test_no_correction_without_zero_cell() -> None:
    res = am.escalc("OR", ai=[1, 0], bi=[2, 5], ci=[3, 6], di=[4, 7])
    np.testing.assert_array_equal(res.corrected, [False, True])
    # Uncorrected log OR of (1, 2, 3, 4): exact up to a few ulps.
    assert res.yi[0] == pytest.approx(np.log(1 * 4 / (2 * 3)), rel=1e-14)


def test_hedges_correction_matches_closed_form() -> None:
    # For m = 4, c(m) = Γ(2)/(√2 Γ(1.5)) = 1/(√2 · √π/2) exactly; a few ulps of rounding.
    assert cmi(np.array([4.0]))[0] == pytest.approx(2 / np.sqrt(2 * np.pi), rel=1e-14)


def test_ucor_large_n() -> None:
    # scipy's hyp2f1 returns NaN for large c near x = 1; the result must be finite
    # and close to the well-known expansion r(1 + (1 - r²)/(2(n - 3))).
    res = am.escalc("UCOR", ri=[0.15, 0.0], ni=[4000, 4000])
    assert np.all(np.isfinite(res.yi))
    assert res.yi[1] == 0.0
    # The expansion is O(1/n²) off: 1e-6 relative is ample at n = 4000.
    assert res.yi[0] == pytest.approx(0.15 * (1 + (1 - 0.15**2) / (2 * (4000 - 3))), rel=1e-6)


def test_hundred_thousand_rows_vectorised() -> None:
    # Every measure of the original eleven on 100,000 random rows; the speed is
    # measured in benchmarks/bench_escalc.py, not here.
    rng = np.random.default_rng(0)
    k = 100_000
    r = rng.uniform(-0.95, 0.95, k)
    n = rng.integers(10, 2000, k).astype(float)
    for measure in CORRELATION:
        res = am.escalc(measure, ri=r, ni=n)
        assert res.yi.shape == (k,)
        assert np.all(res.vi > 0)
    m = rng.uniform(1, 10, (2, k))
    sd = rng.uniform(0.5, 3, (2, k))
    for measure in MEANS:
        res = am.escalc(measure, m1i=m[0], sd1i=sd[0], n1i=n, m2i=m[1], sd2i=sd[1], n2i=n)
        assert np.all(res.vi > 0)
    cells = rng.integers(0, 50, (4, k)).astype(float)
    cells[[1, 3]] += 1  # keep both groups non-empty (zero cells still occur in a and c)
    for measure in COUNTS:
        res = am.escalc(measure, ai=cells[0], bi=cells[1], ci=cells[2], di=cells[3])
        assert np.all(res.vi > 0)
        np.testing.assert_array_equal(res.corrected, (cells == 0).any(axis=0))


# ---------------------------------------------------------------- properties

rs = st.floats(min_value=-0.999, max_value=0.999, allow_nan=False)
ns = st.integers(min_value=5, max_value=100_000)
means = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
pos_means = st.floats(min_value=1e-2, max_value=1e3, allow_nan=False)
sds = st.floats(min_value=1e-2, max_value=1e2, allow_nan=False)
gns = st.integers(min_value=2, max_value=10_000)
counts = st.integers(min_value=0, max_value=10_000)


@given(rs, ns)
def test_zcor_round_trips_through_tanh(r: float, n: int) -> None:
    res = am.escalc("ZCOR", ri=[r], ni=[n])
    # tanh(atanh(r)) loses at most a few ulps of |r| ≤ 1.
    assert np.tanh(res.yi[0]) == pytest.approx(r, abs=1e-15)
    assert res.vi[0] == 1.0 / (n - 3)


@given(means, sds, gns, means, sds, gns)
def test_swapping_groups_flips_smd(
    m1: float, sd1: float, n1: int, m2: float, sd2: float, n2: int
) -> None:
    for measure in ("SMD", "MD", "SMDH"):
        a = am.escalc(measure, m1i=m1, sd1i=sd1, n1i=n1, m2i=m2, sd2i=sd2, n2i=n2)
        b = am.escalc(measure, m1i=m2, sd1i=sd2, n1i=n2, m2i=m1, sd2i=sd1, n2i=n1)
        # Exactly symmetric formulas; only the order of additions can differ.
        assert a.yi[0] == pytest.approx(-b.yi[0], rel=1e-12, abs=1e-300)
        assert a.vi[0] == pytest.approx(b.vi[0], rel=1e-12)


@settings(max_examples=200)
@given(rs, ns, pos_means, sds, gns, pos_means, sds, gns, counts, counts, counts, counts)
def test_variances_always_positive(
    r: float, n: int, m1: float, sd1: float, n1: int, m2: float, sd2: float, n2: int,
    a: int, b: int, c: int, d: int,
) -> None:  # fmt: skip
    for cm in CORRELATION:
        assert am.escalc(cm, ri=r, ni=n).vi[0] > 0
    for mm in MEANS:
        assert am.escalc(mm, m1i=m1, sd1i=sd1, n1i=n1, m2i=m2, sd2i=sd2, n2i=n2).vi[0] > 0
    if a + b > 0 and c + d > 0:
        for km in COUNTS:
            assert am.escalc(km, ai=a, bi=b, ci=c, di=d).vi[0] > 0


# ---------------------------------------------------------------- bad input

LABELS = ["good", "bad study"]


@pytest.mark.parametrize(
    ("measure", "r", "n", "field"),
    [
        ("ZCOR", 1.2, 50, "ri"),
        ("COR", -1.01, 50, "ri"),
        ("ZCOR", 1.0, 50, "ri"),
        ("ZCOR", -1.0, 50, "ri"),
        ("COR", 1.0, 50, "ri"),
        ("ZCOR", 0.3, 3, "ni"),
        ("ZCOR", 0.3, 2, "ni"),
        ("COR", 0.3, 1, "ni"),
        ("UCOR", 0.3, 4, "ni"),
        ("ZCOR", float("nan"), 50, "ri"),
        ("ZCOR", 0.3, float("nan"), "ni"),
        ("COR", 0.3, float("inf"), "ni"),
    ],
)
def test_bad_correlation(measure: str, r: float, n: float, field: str) -> None:
    with pytest.raises(ValueError, match="bad study") as exc:
        am.escalc(measure, ri=[0.1, r], ni=[30, n], slab=LABELS)
    assert isinstance(exc.value, InvalidStudyError)
    assert exc.value.study == "bad study"
    assert exc.value.field == field
    assert repr(field) in str(exc.value)


def test_cor_small_n_follows_metafor() -> None:
    # metafor's escalc("COR") returns vi = NA for n <= 3 and (1 - r^2)^2 / (n - 1)
    # from n = 4 on (checked in R 4.2.2 / metafor 3.8.1): n = 3 is an error here.
    with pytest.raises(InvalidStudyError) as exc:
        am.escalc("COR", ri=[0.3], ni=[3])
    assert exc.value.field == "ni"
    # exact formula at n = 4; 1e-15 is round-off only
    assert am.escalc("COR", ri=[0.3], ni=[4]).vi[0] == pytest.approx(0.91**2 / 3, rel=1e-15)


def test_rom_of_two_negative_means() -> None:
    """metafor's escalc("ROM") takes log(m1/m2) of two negative means as well
    (``edge_bias.json``); 1e-13: closed form, metafor writes 15 significant digits."""
    ref = json.loads((REF / "edge_bias.json").read_text())["rom_negative"]
    res = am.escalc("ROM", **{k: ref[k] for k in ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i")})
    np.testing.assert_allclose(res.yi, ref["yi"], rtol=1e-13)
    np.testing.assert_allclose(res.vi, ref["vi"], rtol=1e-13)
    assert math.log(0.5) == pytest.approx(res.yi[0], rel=1e-15)


@pytest.mark.parametrize(
    ("measure", "values", "field"),
    [
        ("SMD", (1, 0, 10, 2, 1, 10), "sd1i"),
        ("MD", (1, 1, 10, 2, -1, 10), "sd2i"),
        ("SMD", (1, 1, 0, 2, 1, 10), "n1i"),
        ("SMD", (1, 1, 2, 2, 1, 1), "n1i"),
        ("SMDH", (1, 1, 1, 2, 1, 10), "n1i"),
        ("ROM", (0, 1, 10, 2, 1, 10), "m1i"),
        ("ROM", (1, 1, 10, -2, 1, 10), "m2i"),
        ("ROM", (-1, 1, 10, 2, 1, 10), "m2i"),
        ("ROM", (1, 1, 10, 0, 1, 10), "m2i"),
        ("MD", (1, float("nan"), 10, 2, 1, 10), "sd1i"),
        ("SMD", (1, 1, 10, float("nan"), 1, 10), "m2i"),
    ],
)
def test_bad_means(measure: str, values: tuple[float, ...], field: str) -> None:
    good = (1, 1, 10, 2, 1, 10)
    names = ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i")
    cols = {nm: [g, v] for nm, g, v in zip(names, good, values, strict=True)}
    with pytest.raises(InvalidStudyError) as exc:
        am.escalc(measure, slab=LABELS, **cols)
    assert isinstance(exc.value, ValueError)
    assert exc.value.study == "bad study"
    assert exc.value.field == field
    assert "bad study" in str(exc.value) and repr(field) in str(exc.value)


@pytest.mark.parametrize(
    ("cells", "field"),
    [
        ((-1, 10, 3, 9), "ai"),
        ((1, 10, 3, -9), "di"),
        ((1.5, 10, 3, 9), "ai"),
        ((1, 10, 3.2, 9), "ci"),
        ((0, 0, 3, 9), "ai"),
        ((1, 10, float("nan"), 9), "ci"),
        ((1, float("inf"), 3, 9), "bi"),
    ],
)
@pytest.mark.parametrize("measure", COUNTS)
def test_bad_counts(cells: tuple[float, ...], field: str, measure: str) -> None:
    cols = {nm: [g, v] for nm, g, v in zip(("ai", "bi", "ci", "di"), (1, 10, 3, 9), cells,
                                            strict=True)}
    with pytest.raises(InvalidStudyError) as exc:
        am.escalc(measure, slab=LABELS, **cols)
    assert isinstance(exc.value, ValueError)
    assert exc.value.study == "bad study"
    assert exc.value.field == field


def test_error_lists_further_rows_and_unlabelled_rows() -> None:
    with pytest.raises(InvalidStudyError, match=r"row 1.*also in 'row 2', 'row 3'"):
        am.escalc("ZCOR", ri=[0.1, 2, 3, 4], ni=[30, 30, 30, 30])


def test_field_renaming_for_data_frame_columns() -> None:
    with pytest.raises(InvalidStudyError) as exc:
        M.evaluate("ZCOR", {"ri": [1.5], "ni": [30]}, labels=["s"], fields={"ri": "r_col"})
    assert exc.value.field == "r_col"


def test_unknown_measure() -> None:
    with pytest.raises(InvalidStudyError, match="measure"):
        am.escalc("zcor", ri=[0.1], ni=[30])


def test_check_functions_report_masks_without_raising() -> None:
    spec = M.get("ZCOR")
    assert spec.check is not None
    inputs = M.as_inputs({"ri": [0.1, 2.0, 0.2], "ni": [30, 30, 2]})
    problems = spec.check(inputs, M.EscalcOptions())
    np.testing.assert_array_equal(M.bad_rows(problems, 3), [False, True, True])
