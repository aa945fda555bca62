"""Conversions against published worked examples (quoted with their source), and
the artefact corrections."""

from __future__ import annotations

import math

import numpy as np
import pytest

import alliance_meta as am
from alliance_meta import conversions as cv
from alliance_meta.exceptions import InvalidStudyError

# Published values are rounded to 4 (or 3, 6) decimals: each test compares at the
# published precision, half a unit in the last published digit.


def _round_eq(value: float, published: float, decimals: int) -> None:
    assert abs(value - published) <= 0.5 * 10.0**-decimals + 1e-12


def test_borenstein_ch7_log_odds_ratio_to_d() -> None:
    # Borenstein et al. (2009), ch. 7, "Converting from the log odds ratio to d":
    # LogOddsRatio = 0.9069, V = 0.0676 -> d = 0.5000, Vd = 0.0205
    d, vd = cv.d_from_logor(0.9069, 0.0676)
    _round_eq(d[0], 0.5000, 4)
    _round_eq(vd[0], 0.0205, 4)


def test_borenstein_ch7_d_to_log_odds_ratio() -> None:
    # Borenstein et al. (2009), ch. 7, "Converting from d to the log odds ratio":
    # d = 0.5000, Vd = 0.0205 -> LogOddsRatio = 0.9069, V = 0.0674
    lor, v = cv.logor_from_d(0.5, 0.0205)
    _round_eq(lor[0], 0.9069, 4)
    _round_eq(v[0], 0.0674, 4)


def test_borenstein_ch7_r_to_d() -> None:
    # Borenstein et al. (2009), ch. 7, "Converting from r to d":
    # r = 0.50, Vr = 0.0058 -> d = 1.1547, Vd = 0.0550
    d, vd = cv.d_from_r(0.5, 0.0058)
    _round_eq(d[0], 1.1547, 4)
    _round_eq(vd[0], 0.0550, 4)


def test_borenstein_ch7_d_to_r() -> None:
    # Borenstein et al. (2009), ch. 7, "Converting from d to r" (n1 = n2, a = 4):
    # d = 1.1547, Vd = 0.0550 -> r = 0.5000, Vr = 0.0058
    r, vr = cv.r_from_d(1.1547, 0.0550)
    _round_eq(r[0], 0.5000, 4)
    _round_eq(vr[0], 0.0058, 4)
    # with the group sizes given, a = (n1 + n2)^2 / (n1 n2) = 4 for n1 = n2
    r2, _ = cv.r_from_d(1.1547, 0.0550, n1=50, n2=50)
    assert r2[0] == pytest.approx(r[0], rel=1e-15)  # the same a, exactly


def test_borenstein_ch4_d_from_t() -> None:
    # Borenstein et al. (2009), ch. 4, worked example of d from independent groups:
    # means 103 and 100, S_within = 5.0249, n1 = n2 = 50 -> d = 0.5970, Vd = 0.0418;
    # the t statistic of that comparison gives the same d (eq. of d from t, ch. 4)
    t = (103.0 - 100.0) / (5.0249 * math.sqrt(1 / 50 + 1 / 50))
    d, vd = cv.d_from_t(t, 50, 50)
    _round_eq(d[0], 0.5970, 4)
    _round_eq(vd[0], 0.0418, 4)
    # ... and Hedges' g = 0.5924 with Vg = J^2 Vd = 0.0411 (metafor's vtype "LS2")
    g = am.escalc("SMD", ti=t, n1i=50, n2i=50, vtype="LS2")
    _round_eq(g.yi[0], 0.5924, 4)
    _round_eq(g.vi[0], 0.0411, 4)


def test_cochrane_handbook_t_from_p() -> None:
    # Cochrane Handbook 5.1, section 7.7.3.3: P = 0.008 for a comparison of 25 and 22
    # participants -> t = 2.78 with 45 df (Excel's TINV(0.008, 45)); a mean difference
    # of 3.8 then has SE = 3.8 / 2.78 = 1.37
    t = cv.t_from_p(0.008, 25 + 22 - 2)[0]
    _round_eq(t, 2.78, 2)
    _round_eq(3.8 / t, 1.37, 2)
    d, _ = cv.d_from_p(0.008, 25, 22)
    assert d[0] == pytest.approx(t * math.sqrt(1 / 25 + 1 / 22), rel=1e-15)
    assert cv.t_from_p(-0.008, 45)[0] == -t  # the sign of p is the direction


def test_wald_ratio_with_ci_heart_tutorial() -> None:
    # Heart (BMJ) tutorial on sex differences, Table 4, "Worked examples using the first
    # study in table 3 (the Adventist study)": RR 2.15 (1.33 to 3.47) -> ln RR 0.765468
    # (0.285179 to 1.244155), SE of ln RR 0.244637 (the average of the two half-widths
    # divided by 1.96)
    yi, vi = cv.wald(2.15, 1.33, 3.47, crit=1.96)
    _round_eq(yi[0], 0.765468, 6)
    _round_eq(math.sqrt(vi[0]), 0.244637, 6)
    # metafor's conv.wald uses the exact quantile 1.959964...: 2e-5 relative larger
    _, vi_exact = cv.wald(2.15, 1.33, 3.47)
    assert math.sqrt(vi_exact[0]) == pytest.approx(0.244637 * 1.96 / 1.959964, rel=1e-5)


def test_wald_from_p_value() -> None:
    # a p-value gives SE = |y| / z_{1-p/2}; Altman & Bland (2011) d2304's reverse:
    # p = 0.05 for ln RR = log(0.5) puts the 95% CI's upper bound at RR = 1 exactly
    yi, vi = cv.wald(0.5, pval=0.05)
    upper = math.exp(yi[0] + 1.959963984540054 * math.sqrt(vi[0]))
    assert upper == pytest.approx(1.0, rel=1e-12)  # closed form: a few ulps


@pytest.mark.parametrize(
    ("n", "published"),
    [(2, 1.128), (3, 1.693), (5, 2.326), (10, 3.078), (11, 3.173), (20, 3.735),
     (25, 3.931), (33, 4.165), (41, 4.341), (50, 4.498)],
)
def test_wan_table1_expected_range(n: int, published: float) -> None:
    # Wan et al. (2014), Table 1: values of xi(n) in formula (7) for n <= 50
    _round_eq(float(cv.expected_range(n)[0]), published, 3)


def test_fivenum_formulas() -> None:
    # metafor 4's conv.fivenum (Luo et al., 2018, eqs. 7, 11, 15; Wan et al., 2014,
    # eqs. 9, 16; Shi et al., 2020, eq. 10), evaluated by hand for n = 100
    from scipy.stats import norm

    n = 100.0
    xi = 2 * norm.ppf((n - 0.375) / (n + 0.25))
    eta = 2 * norm.ppf((0.75 * n - 0.125) / (n + 0.25))
    m1, s1 = cv.fivenum(n, 10.0, min=2.0, max=20.0)
    w = 4 / (4 + n**0.75)
    # the same formula in another order: a few ulps
    assert m1[0] == pytest.approx(w * 11.0 + (1 - w) * 10.0, rel=1e-14)
    assert s1[0] == pytest.approx(18.0 / xi, rel=1e-14)
    m2, s2 = cv.fivenum(n, 10.0, q1=7.0, q3=14.0)
    w = 0.7 + 0.39 / n
    assert m2[0] == pytest.approx(w * 10.5 + (1 - w) * 10.0, rel=1e-14)
    assert s2[0] == pytest.approx(7.0 / eta, rel=1e-14)
    m3, s3 = cv.fivenum(n, 10.0, min=2.0, max=20.0, q1=7.0, q3=14.0)
    w1, w2 = 2.2 / (2.2 + n**0.75), 0.7 - 0.72 / n**0.55
    assert m3[0] == pytest.approx(w1 * 11 + w2 * 10.5 + (1 - w1 - w2) * 10, rel=1e-14)
    ws = 1 / (1 + 0.07 * n**0.6)
    assert s3[0] == pytest.approx(ws * 18 / xi + (1 - ws) * 7 / eta, rel=1e-14)
    with pytest.raises(InvalidStudyError) as exc:
        cv.fivenum([100, 100], [10, 10], q1=[7, 12], q3=[14, 11])
    assert exc.value.study == "row 1"


def test_r_from_t_matches_escalc() -> None:
    # r = t / sqrt(t^2 + df) is what escalc("COR", ti=, ni=) uses with df = ni - 2
    r, vr = cv.r_from_t(2.5, 28)
    res = am.escalc("COR", ti=2.5, ni=30)
    assert r[0] == pytest.approx(res.yi[0], rel=1e-15)  # same operations
    assert vr[0] == pytest.approx(res.vi[0], rel=1e-15)


# ------------------------------------------------------------ artefact corrections


def test_disattenuation_for_unreliability() -> None:
    # Hunter & Schmidt (2015, ch. 3): r_c = r / sqrt(rxx ryy), variance / (rxx ryy)
    base = am.escalc("COR", ri=[0.3, -0.2], ni=[100, 50])
    res = am.escalc("COR", ri=[0.3, -0.2], ni=[100, 50], rxx=0.8, ryy=[0.7, 0.9])
    a = np.sqrt(0.8 * np.array([0.7, 0.9]))
    np.testing.assert_allclose(res.yi, base.yi / a, rtol=1e-15)  # one division
    np.testing.assert_allclose(res.vi, base.vi / a**2, rtol=1e-14)
    assert res.artefacts == ("rxx", "ryy")


def test_range_restriction_case_ii() -> None:
    # Thorndike's Case II with U = 1/ux = 1.25 for r = 0.3:
    # r_c = 1.25 * 0.3 / sqrt(1 + (1.25^2 - 1) 0.09) = 0.375 / 1.025 = 0.36585...
    rc, factor = am.correct_r(np.array([0.3]), ux=np.array([0.8]))
    assert rc[0] == pytest.approx(0.375 / math.sqrt(1.050625), rel=1e-15)
    # the factor is the derivative d r_c / d r (with ryy = rxx = 1, psychmeta's a)
    h = 1e-6
    up, _ = am.correct_r(np.array([0.3 + h]), ux=np.array([0.8]))
    down, _ = am.correct_r(np.array([0.3 - h]), ux=np.array([0.8]))
    # central difference error O(h^2): 1e-8 relative
    assert factor[0] == pytest.approx((up[0] - down[0]) / (2 * h), rel=1e-8)
    # no restriction, perfect reliability: nothing changes (exactly)
    rc1, f1 = am.correct_r(np.array([0.3]), ux=np.array([1.0]))
    assert rc1[0] == pytest.approx(0.3, rel=1e-15) and f1[0] == pytest.approx(1.0, rel=1e-15)


def test_uvdrr_order_as_psychmeta() -> None:
    # psychmeta's correct_r("uvdrr_x"): ryy in the restricted sample first, then Case
    # II, then rxx carried to the unrestricted population, 1 - ux^2 (1 - rxx)
    r, rxx, ryy, ux = 0.3, 0.8, 0.8, 0.8
    r1 = r / math.sqrt(ryy)
    big_u = 1 / ux
    r2 = big_u * r1 / math.sqrt((big_u**2 - 1) * r1**2 + 1)
    expected = r2 / math.sqrt(1 - ux**2 * (1 - rxx))
    rc, _ = am.correct_r(np.array([r]), np.array([rxx]), np.array([ryy]), np.array([ux]))
    assert rc[0] == pytest.approx(expected, rel=1e-15)  # the same operations


def test_zcor_correction_on_the_r_scale() -> None:
    # ZCOR: r is corrected, then transformed; the variance by the chain rule
    base = am.escalc("ZCOR", ri=0.3, ni=100)
    res = am.escalc("ZCOR", ri=0.3, ni=100, rxx=0.81, ryy=1.0)
    rc = 0.3 / 0.9
    assert res.yi[0] == pytest.approx(math.atanh(rc), rel=1e-15)
    expected = base.vi[0] * ((1 / 0.9) * (1 - 0.09) / (1 - rc**2)) ** 2
    assert res.vi[0] == pytest.approx(expected, rel=1e-14)  # a few roundings


def test_correction_errors() -> None:
    with pytest.raises(am.exceptions.AllianceMetaError, match="corrects correlations"):
        am.escalc("SMD", m1i=1, m2i=0, sd1i=1, sd2i=1, n1i=10, n2i=10, rxx=0.8)
    with pytest.raises(InvalidStudyError) as exc:
        am.escalc("COR", ri=[0.3, 0.3], ni=50, rxx=[0.8, 1.2], slab=["a", "b"])
    assert exc.value.study == "b" and exc.value.field == "rxx"
    with pytest.raises(InvalidStudyError, match="corrected correlation"):
        am.escalc("COR", ri=0.9, ni=50, rxx=0.5, ryy=0.5)
