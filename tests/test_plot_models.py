"""Bubble, Baujat, radial, profile-likelihood and orchard plots: the data each plots
(positions, sizes, lines, labels), checked against independent computations and
against the numbers metafor's ``regplot``, ``baujat``, ``radial`` and ``profile``
return (tests/reference/plots.json, from generate_plots.R), and what is drawn of it.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

import alliance_meta as am
from alliance_meta.core.estimators import profile_loglik
from alliance_meta.exceptions import (
    ConvergenceWarning,
    InvalidStudyError,
    ModelSpecificationError,
)
from alliance_meta.models.metareg import Prediction
from alliance_meta.plot import (
    baujat_layout,
    bubble_layout,
    orchard_layout,
    profile_layout,
    radial_layout,
)
from alliance_meta.results.base import IntervalArray

REF = json.loads(
    (Path(__file__).parent / "reference" / "plots.json").read_text(encoding="utf-8")
)
CASES = {c["name"]: c for c in REF["cases"]}
Z975 = 1.959963984540054  # qnorm(0.975)

# Tolerances.  Values that depend on τ̂² (weights, leave-one-out refits, τ̂² itself)
# agree with metafor to the τ² solvers' convergence (both sides solve to ~1e-10
# relative; leave-one-out refits of the uncentred ~ ablat + year design lose a few
# more digits to its conditioning, cond(X'WX) ~ 1e8): 1e-6 relative, the library's
# standard.  Values that do not (the log-likelihood on metafor's own τ² grid, the
# design, the data) are closed forms: 1e-9 relative allows for rounding amplified by
# that same conditioning.
TAU2_RTOL = 1e-6
EXACT_RTOL = 1e-9


def fit_of(case: dict[str, Any], measure: str = "GEN") -> Any:
    X = np.asarray(case["X"], dtype=float)
    names = case["coef_names"][1:]
    kw: dict[str, Any] = {"method": case["method"], "test": case["test"], "measure": measure}
    if names:
        mods = {n: X[:, j + 1] for j, n in enumerate(names)}
        return am.meta_regression(yi=case["yi"], vi=case["vi"], moderators=mods, **kw)
    return am.random_effects(yi=case["yi"], vi=case["vi"], **kw)


def cases_with(key: str) -> list[str]:
    return [name for name, c in CASES.items() if key in c]


@pytest.fixture()
def mpl() -> Iterator[Any]:
    """matplotlib with the Agg backend; closes every figure afterwards."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def by_gid(fig: Any, gid: str) -> list[Any]:
    return list(fig.findobj(lambda a: a.get_gid() == gid))


# ---------------------------------------------------------------------------
# the likelihood over a τ² grid (core)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases_with("profile"))
def test_profile_loglik_matches_metafor_on_its_grid(name: str) -> None:
    c = CASES[name]
    pr = c["profile"]
    ll, coef = profile_loglik(
        np.array(c["yi"]), np.array(c["vi"]), np.array(c["X"]), np.array(pr["tau2"]),
        reml=c["method"] == "REML",
    )  # fmt: skip
    np.testing.assert_allclose(ll, pr["ll"], rtol=EXACT_RTOL)
    np.testing.assert_allclose(coef, pr["beta"], rtol=EXACT_RTOL, atol=1e-12)


def test_profile_loglik_against_dense_formula() -> None:
    """Independent check: the likelihood from an explicit k x k covariance."""
    c = CASES["bcg_ablat_REML"]
    y, v, X = np.array(c["yi"]), np.array(c["vi"]), np.array(c["X"])
    k, p = X.shape
    grid = np.array([0.0, 0.05, 0.3, 2.0])
    for reml in (False, True):
        ll, coef = profile_loglik(y, v, X, grid, reml)
        for t, got, b in zip(grid, ll, coef, strict=True):
            M = np.diag(v + t)
            Mi = np.linalg.inv(M)
            XtMiX = X.T @ Mi @ X
            beta = np.linalg.solve(XtMiX, X.T @ Mi @ y)
            r = y - X @ beta
            want = -0.5 * np.linalg.slogdet(M)[1] - 0.5 * r @ Mi @ r
            if reml:
                want += (-0.5 * (k - p) * math.log(2 * math.pi)
                         + 0.5 * np.linalg.slogdet(X.T @ X)[1]
                         - 0.5 * np.linalg.slogdet(XtMiX)[1])  # fmt: skip
            else:
                want += -0.5 * k * math.log(2 * math.pi)
            assert got == pytest.approx(want, rel=EXACT_RTOL)
            np.testing.assert_allclose(b, beta, rtol=EXACT_RTOL)
    # the profile peaks at the REML estimate
    fit = fit_of(c)
    near = fit.tau2 * np.array([0.99, 1.0, 1.01])
    ll, _ = profile_loglik(y, v, X, near, True)
    assert ll[1] > ll[0] and ll[1] > ll[2]


# ---------------------------------------------------------------------------
# profile plot
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases_with("profile"))
def test_profile_layout_against_metafor(name: str) -> None:
    c = CASES[name]
    pr = c["profile"]
    fit = fit_of(c)
    lay = profile_layout(fit, xlim=tuple(pr["xlim"]))
    np.testing.assert_allclose(lay.tau2, pr["tau2"], rtol=1e-14, atol=1e-17)  # linspace
    np.testing.assert_allclose(lay.loglik, pr["ll"], rtol=EXACT_RTOL)
    assert lay.max_loglik == pytest.approx(pr["maxll"], rel=TAU2_RTOL)
    assert lay.estimate == pytest.approx(pr["vc"], rel=TAU2_RTOL, abs=1e-12)
    assert lay.reml == (c["method"] == "REML")
    # the default range: metafor's rule on the Q-profile CI of tau^2.  metafor's
    # profile() solves that CI with uniroot's default tolerance (eps^0.25), so its
    # grid differs in the 5th digit; the rule is checked on the CI solved tightly.
    lo, hi = c["tau2_ci_tight"]
    want = (min(c["tau2"], lo), max(0.1, c["tau2"], hi))
    default = profile_layout(fit)
    assert default.xlim == pytest.approx(want, rel=TAU2_RTOL, abs=1e-12)
    assert default.tau2.size == 20  # metafor's steps
    # the fine curve holds the estimate (when inside the range) and rises to it
    if pr["xlim"][0] < lay.estimate < pr["xlim"][1]:
        assert lay.estimate in lay.curve_tau2
    assert np.all(np.diff(lay.curve_tau2) >= 0)
    if c["method"] in ("ML", "REML"):
        assert np.nanmax(lay.curve_loglik) == pytest.approx(lay.max_loglik, rel=1e-12)


def test_profile_warns_when_the_fit_missed_the_maximum() -> None:
    fit = am.random_effects(am.datasets.load_molloy2014().studies(), method="ML")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        profile_layout(fit)  # the fit is the maximum: no warning
    wrong = attrs.evolve(fit, tau2=fit.tau2 * 5)
    with pytest.warns(ConvergenceWarning, match="did not reach the maximum"):
        profile_layout(wrong)
    with pytest.raises(ModelSpecificationError, match="equal-effects"):
        profile_layout(am.random_effects(yi=[0.1, 0.3, 0.2], vi=[0.01] * 3, method="EE"))
    with pytest.raises(ModelSpecificationError, match="xlim"):
        profile_layout(fit, xlim=(-1.0, 1.0))


def test_profile_draws_the_grid_and_marks_the_estimate(mpl: Any) -> None:
    from alliance_meta.plot import profile

    c = CASES["bcg_REML"]
    fit = fit_of(c)
    fig = profile(fit, xlim=tuple(c["profile"]["xlim"]))
    (pts,) = by_gid(fig, "profile-points")
    np.testing.assert_allclose(pts.get_xdata(), c["profile"]["tau2"], rtol=1e-14)
    np.testing.assert_allclose(pts.get_ydata(), c["profile"]["ll"], rtol=EXACT_RTOL)
    (vline,) = by_gid(fig, "profile-estimate")
    assert vline.get_xdata()[0] == pytest.approx(c["tau2"], rel=TAU2_RTOL)
    (hline,) = by_gid(fig, "profile-max")
    assert hline.get_ydata()[0] == pytest.approx(c["profile"]["maxll"], rel=TAU2_RTOL)
    assert fig.axes[0].get_ylabel() == "Restricted log-likelihood"
    (curve,) = by_gid(fig, "profile-curve")
    assert max(curve.get_ydata()) == pytest.approx(c["profile"]["maxll"], rel=TAU2_RTOL)


# ---------------------------------------------------------------------------
# Baujat plot
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_baujat_matches_metafor(name: str) -> None:
    c = CASES[name]
    lay = baujat_layout(fit_of(c))
    np.testing.assert_allclose(lay.x, c["baujat"]["x"], rtol=TAU2_RTOL, atol=1e-12)
    np.testing.assert_allclose(lay.y, c["baujat"]["y"], rtol=TAU2_RTOL, atol=1e-12)


def test_baujat_by_refitting_each_deletion() -> None:
    """Independent check: the leave-one-out fits one at a time, through the API."""
    c = CASES["bcg_REML"]
    y, v = np.array(c["yi"]), np.array(c["vi"])
    fit = am.random_effects(yi=y, vi=v)
    lay = baujat_layout(fit)
    for i in range(y.size):
        keep = np.arange(y.size) != i
        loo = am.random_effects(yi=y[keep], vi=v[keep])
        assert lay.x[i] == pytest.approx((y[i] - fit.estimate) ** 2 / (v[i] + fit.tau2),
                                         rel=1e-12)  # fmt: skip
        assert lay.y[i] == pytest.approx((loo.estimate - fit.estimate) ** 2 / loo.se**2,
                                         rel=TAU2_RTOL)  # fmt: skip
    assert lay.xlabel == "Squared Pearson residual"
    assert lay.ylabel == "Influence on overall result"
    ee = baujat_layout(am.random_effects(yi=y, vi=v, method="EE"))
    assert ee.xlabel == "Contribution to overall heterogeneity"
    # x sums to Q under the equal-effects model (each study's term of Q)
    assert ee.x.sum() == pytest.approx(am.random_effects(yi=y, vi=v, method="EE").Q, rel=1e-12)


def test_baujat_draws_ids_at_the_coordinates(mpl: Any) -> None:
    from alliance_meta.plot import baujat

    fit = fit_of(CASES["bcg_ablat_REML"])
    lay = baujat_layout(fit)
    fig = baujat(fit)
    texts = by_gid(fig, "baujat-label")
    assert [t.get_text() for t in texts] == [str(i + 1) for i in range(fit.k)]
    np.testing.assert_allclose([t.get_position() for t in texts], np.c_[lay.x, lay.y])
    assert fig.axes[0].get_ylabel() == "Influence on fitted value"
    fig2 = baujat(fit, symbol="labels")
    assert [t.get_text() for t in by_gid(fig2, "baujat-label")] == list(fit.labels)
    with pytest.warns(am.exceptions.FewStudiesWarning):
        one = am.random_effects(yi=[0.1], vi=[0.01])
    with pytest.raises(ModelSpecificationError, match="k = 1"):
        baujat_layout(one)


# ---------------------------------------------------------------------------
# radial plot
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases_with("radial"))
def test_radial_matches_metafor(name: str) -> None:
    c = CASES[name]
    fit = fit_of(c)
    lay = radial_layout(fit)
    np.testing.assert_allclose(lay.x, c["radial"]["x"], rtol=TAU2_RTOL)
    np.testing.assert_allclose(lay.y, c["radial"]["y"], rtol=TAU2_RTOL, atol=1e-12)
    # independent: precision and standardized effect
    sd = np.sqrt(np.array(c["vi"]) + fit.tau2)
    np.testing.assert_allclose(lay.x, 1 / sd, rtol=1e-14)
    np.testing.assert_allclose(lay.y, np.array(c["yi"]) / sd, rtol=1e-14)
    assert lay.slope == fit.estimate
    assert lay.zcrit == pytest.approx(Z975, rel=1e-15)
    assert lay.xlim == (0.0, pytest.approx(1.3 * max(lay.x), rel=1e-15))


def test_radial_centering_arc_and_errors() -> None:
    molloy = am.random_effects(am.datasets.load_molloy2014().studies())
    lay = radial_layout(molloy, center=True)
    assert lay.slope == 0.0
    np.testing.assert_allclose(
        lay.y, (molloy.yi - molloy.estimate) / np.sqrt(molloy.vi + molloy.tau2), rtol=1e-12
    )  # rounding only
    # the arc marks 7 effects from the smallest to the largest, labelled in r
    raw = radial_layout(molloy)
    np.testing.assert_allclose(raw.arc_values, np.linspace(min(molloy.yi), max(molloy.yi), 7))
    assert raw.arc_labels == tuple(
        f"{math.tanh(v):.2f}".replace("-", "\u2212") for v in raw.arc_values
    )
    assert radial_layout(molloy, transform=False).arc_labels[-1] == f"{max(molloy.yi):.2f}"
    fit = fit_of(CASES["bcg_ablat_REML"])
    with pytest.raises(ModelSpecificationError, match="without moderators"):
        radial_layout(fit)


def test_radial_draws_points_and_line(mpl: Any) -> None:
    from alliance_meta.plot import radial

    fit = fit_of(CASES["bcg_REML"], measure="RR")
    lay = radial_layout(fit)
    fig = radial(fit)
    (pts,) = by_gid(fig, "radial-point")
    np.testing.assert_allclose(pts.get_offsets(), np.c_[lay.x, lay.y])
    (line,) = by_gid(fig, "radial-line")
    x, y = (np.asarray(a, dtype=float) for a in line.get_data())
    assert y[1] / x[1] == pytest.approx(fit.estimate, rel=1e-12)  # slope = estimate
    labels = [t.get_text() for t in by_gid(fig, "arc-label")]
    assert [s.strip() for s in labels] == [f"{math.exp(v):.2f}" for v in lay.arc_values]


# ---------------------------------------------------------------------------
# bubble plot
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", cases_with("regplot"))
def test_bubble_matches_metafor_regplot(name: str) -> None:
    c = CASES[name]
    rp = c["regplot"]
    fit = fit_of(c)
    lay = bubble_layout(fit, rp["mod"], transform=False)
    np.testing.assert_allclose(lay.x, rp["xi"], rtol=1e-15)
    np.testing.assert_allclose(lay.y, rp["yi"], rtol=1e-15)
    np.testing.assert_allclose(lay.size, rp["psize"], rtol=TAU2_RTOL)
    np.testing.assert_allclose(lay.fitted, rp["pred"], rtol=TAU2_RTOL, atol=1e-12)
    band = rp["band"]
    idx = np.asarray(band["index"]) - 1
    np.testing.assert_allclose(lay.grid[idx], band["xs"], rtol=1e-13)  # linspace vs seq
    for ours, theirs in ((lay.pred, "pred"), (lay.ci_low, "ci_lb"), (lay.ci_high, "ci_ub")):
        np.testing.assert_allclose(ours[idx], band[theirs], rtol=TAU2_RTOL, atol=1e-12)
    if band["pi_lb"] is None:  # equal-effects: metafor has no PI
        assert np.all(np.isnan(lay.pi_low))
    else:
        np.testing.assert_allclose(lay.pi_low[idx], band["pi_lb"], rtol=TAU2_RTOL, atol=1e-12)
        np.testing.assert_allclose(lay.pi_high[idx], band["pi_ub"], rtol=TAU2_RTOL, atol=1e-12)
    means = dict(zip(c["coef_names"][1:], rp["colmeans"][1:], strict=True))
    del means[rp["mod"]]
    assert lay.at == pytest.approx(means, rel=1e-14)


def test_bubble_line_and_bands_from_the_coefficients() -> None:
    """Independent check: line x'β̂ with the other column at ``at``, CI from Var(β̂)."""
    c = CASES["bcg_ablat_year_REML"]
    fit = fit_of(c)
    lay = bubble_layout(fit, "year", at={"ablat": 30.0}, transform=False, n_points=7)
    b = fit.coef
    rows = np.c_[np.ones(7), np.full(7, 30.0), lay.grid]
    np.testing.assert_allclose(lay.pred, rows @ b, rtol=1e-12)
    se = np.sqrt(np.einsum("ij,jk,ik->i", rows, fit.vcov, rows))
    np.testing.assert_allclose(lay.ci_high - lay.pred, Z975 * se, rtol=1e-9)
    np.testing.assert_allclose(lay.pi_high - lay.pred, Z975 * np.sqrt(se**2 + fit.tau2),
                               rtol=1e-9)  # fmt: skip
    assert lay.at == {"ablat": 30.0}
    x = np.asarray(c["X"])[:, 2]
    assert lay.grid[0] == pytest.approx(x.min() - 0.04 * np.ptp(x), rel=1e-14)
    # metafor's sizes: sqrt(weight) mapped linearly onto plim
    sw = np.sqrt(fit.weights)
    np.testing.assert_allclose(lay.size, 0.5 + 2.5 * (sw - sw.min()) / np.ptp(sw), rtol=1e-12)
    assert list(lay.order) == list(np.argsort(-lay.size, kind="stable"))
    with pytest.raises(ModelSpecificationError, match="several"):
        bubble_layout(fit)
    with pytest.raises(InvalidStudyError, match="nope"):
        bubble_layout(fit, "nope")
    with pytest.raises(InvalidStudyError, match="at"):
        bubble_layout(fit, "year", at={"nope": 1.0})
    assert bubble_layout(fit, "ye").moderator == "year"  # an unambiguous prefix


def test_bubble_draws_points_line_and_bands(mpl: Any) -> None:
    from alliance_meta.plot import bubble
    from alliance_meta.plot.bubble import BUBBLE_PT

    c = CASES["bcg_ablat_REML"]
    fit = fit_of(c, measure="RR")
    lay = bubble_layout(fit)
    fig = bubble(fit)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    (pts,) = by_gid(fig, "bubble-point")
    order = lay.order.astype(int)
    np.testing.assert_allclose(pts.get_offsets(), np.c_[lay.x, np.exp(fit.yi)][order])
    np.testing.assert_allclose(pts.get_sizes(), (BUBBLE_PT * lay.size[order]) ** 2)
    (line,) = by_gid(fig, "fitted-line")
    np.testing.assert_allclose(line.get_ydata(), lay.pred)  # ratios: the plotted scale
    np.testing.assert_allclose(np.log(lay.pred), fit.coef[0] + fit.coef[1] * lay.grid,
                               rtol=1e-12)  # fmt: skip
    np.testing.assert_allclose(line.get_xdata(), lay.grid)
    assert len(by_gid(fig, "ci-band")) == 1 and len(by_gid(fig, "pi-band")) == 1
    assert len(by_gid(fig, "ci-bound")) == 2 and len(by_gid(fig, "pi-bound")) == 2
    # an equal-effects model has no prediction band
    fig2 = bubble(fit_of(CASES["syn_x_EE"]))
    assert not by_gid(fig2, "pi-band")
    assert by_gid(fig2, "ci-band")
    with pytest.raises(ModelSpecificationError, match="intercept-only"):
        bubble_layout(am.meta_regression(yi=c["yi"], vi=c["vi"], moderators=[]))


def test_bubble_on_the_r_scale() -> None:
    studies = am.datasets.load_molloy2014().studies()
    fit = am.meta_regression(studies, moderators=["meanage"])
    lay = bubble_layout(fit)
    np.testing.assert_allclose(lay.y, np.tanh(fit.yi), rtol=1e-15)
    assert np.all(np.abs(lay.pi_low) < 1) and np.all(np.abs(lay.pi_high) < 1)
    np.testing.assert_allclose(lay.pred, np.tanh(bubble_layout(fit, transform=False).pred))


# ---------------------------------------------------------------------------
# orchard plot
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bcg_alloc() -> am.StudySet:
    return am.datasets.load_bcg().studies()


def test_orchard_of_a_subgroup_analysis(bcg_alloc: am.StudySet) -> None:
    sub = am.subgroup_analysis(bcg_alloc, by="alloc")
    lay = orchard_layout(sub, transform=False, seed=3)
    assert [g.name for g in lay.groups] == list(sub.groups)
    assert [g.position for g in lay.groups] == [3.0, 2.0, 1.0]  # first group on top
    for g, res in zip(lay.groups, sub.groups.values(), strict=True):
        assert (g.estimate, g.ci_low, g.ci_high) == (res.estimate, res.ci.low, res.ci.high)
        assert (g.pi_low, g.pi_high) == (res.pi.low, res.pi.high)
        assert g.k == res.k and g.k_text == f"k = {res.k}"
    np.testing.assert_allclose(lay.x, bcg_alloc.yi)
    alloc = bcg_alloc.moderator("alloc")
    names = [g.name for g in lay.groups]
    assert [names[i] for i in lay.group] == list(alloc)
    pos = np.array([lay.groups[i].position for i in lay.group])
    assert np.all(np.abs(lay.y - pos) <= 0.3) and np.ptp(lay.y - pos) > 0  # jittered
    np.testing.assert_array_equal(lay.y, orchard_layout(sub, transform=False, seed=3).y)
    np.testing.assert_allclose(lay.precision, 1 / np.sqrt(bcg_alloc.vi))
    ratio = lay.size / lay.precision
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)  # area ∝ precision
    # the common-tau^2 model's estimates, with its PI
    common = am.subgroup_analysis(bcg_alloc, by="alloc", tau2="common")
    lc = orchard_layout(common, transform=False)
    assert common.common_estimate is not None and common.common_se is not None
    assert common.tau2 is not None
    np.testing.assert_allclose([g.estimate for g in lc.groups], common.common_estimate)
    half = Z975 * np.sqrt(common.common_se**2 + common.tau2)
    np.testing.assert_allclose([g.pi_high for g in lc.groups],
                               common.common_estimate + half, rtol=1e-12)  # fmt: skip
    # natural scale: ratios
    np.testing.assert_allclose(orchard_layout(sub).x, np.exp(bcg_alloc.yi), rtol=1e-15)


def test_orchard_of_a_meta_regression(bcg_alloc: am.StudySet) -> None:
    fit = am.meta_regression(bcg_alloc, moderators=["alloc"])
    b = fit.coef
    lay = orchard_layout(fit, transform=False)
    # groups = the design's distinct rows, named by the coefficient they switch on
    assert [g.name for g in lay.groups] == ["intrcpt", "allocrandom", "allocsystematic"]
    np.testing.assert_allclose([g.estimate for g in lay.groups],
                               [b[0], b[0] + b[1], b[0] + b[2]], rtol=1e-12)  # fmt: skip
    pred = fit.predict(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose([g.ci_low for g in lay.groups], pred.ci.low)
    np.testing.assert_allclose([g.pi_high for g in lay.groups], pred.pi.high)
    alloc = bcg_alloc.moderator("alloc")
    named = orchard_layout(fit, by=alloc, cluster=list(range(fit.k)), transform=False)
    assert [g.name for g in named.groups] == ["alternate", "random", "systematic"]
    assert [g.estimate for g in named.groups] == [g.estimate for g in lay.groups]
    assert [g.k for g in named.groups] == [int(np.sum(alloc == n)) for n in
                                           ("alternate", "random", "systematic")]  # fmt: skip
    assert named.groups[1].k_text == "k = 7 (7)"
    # one cluster per pair of effects
    clusters = [i // 2 for i in range(fit.k)]
    counts = orchard_layout(fit, by=alloc, cluster=clusters).groups
    for g in counts:
        members = [clusters[i] for i in range(fit.k) if alloc[i] == g.name]
        assert g.n_clusters == len(set(members))
    with pytest.raises(ModelSpecificationError, match="varies within group"):
        orchard_layout(fit, by=["x"] * fit.k)
    with pytest.raises(InvalidStudyError, match="by"):
        orchard_layout(fit, by=["x"])
    with pytest.raises(ModelSpecificationError, match="one group"):
        orchard_layout(am.random_effects(bcg_alloc), by=alloc)
    one = orchard_layout(am.random_effects(bcg_alloc))
    assert [g.name for g in one.groups] == ["Overall"]


@attrs.frozen
class FakeMultilevel:
    """What a multilevel fit offers the plots: the fitted-model protocol's names and
    ``predict(newmods)`` whose PI adds every variance component (``Σσ²``), as
    metafor's ``predict.rma`` for ``rma.mv``; no ``weights``, no ``tau2``."""

    coef_names: tuple[str, ...]
    coef: np.ndarray
    vcov: np.ndarray
    X: np.ndarray
    yi: np.ndarray
    vi: np.ndarray
    labels: tuple[str, ...]
    sigma2: tuple[float, ...]
    measure: str = "GEN"
    level: float = 0.95
    method: str = "REML"

    def predict(self, new_moderators: Any = None) -> Prediction:
        Xn = np.atleast_2d(np.asarray(new_moderators, dtype=float))
        Xn = np.c_[np.ones(Xn.shape[0]), Xn]
        pred = Xn @ self.coef
        se = np.sqrt(np.einsum("ij,jk,ik->i", Xn, self.vcov, Xn))
        half = Z975 * np.sqrt(se**2 + sum(self.sigma2))
        return Prediction(pred=pred, se=se, ci=IntervalArray(pred - Z975 * se, pred + Z975 * se),
                          pi=IntervalArray(pred - half, pred + half), X=Xn, level=0.95)


def test_orchard_accepts_a_multilevel_fit() -> None:
    g = np.array(["a", "a", "b", "b", "b", "c"])
    X = np.c_[np.ones(6), g == "b", g == "c"].astype(float)
    fit = FakeMultilevel(
        coef_names=("intrcpt", "gb", "gc"), coef=np.array([0.1, 0.2, -0.1]),
        vcov=np.diag([0.01, 0.02, 0.03]), X=X,
        yi=np.array([0.1, 0.15, 0.3, 0.25, 0.35, 0.0]), vi=np.full(6, 0.02),
        labels=tuple(f"es{i}" for i in range(6)), sigma2=(0.01, 0.005),
    )  # fmt: skip
    lay = orchard_layout(fit, by=g, cluster=[1, 1, 2, 3, 3, 4])
    assert [x.name for x in lay.groups] == ["a", "b", "c"]
    assert [x.estimate for x in lay.groups] == pytest.approx([0.1, 0.3, 0.0], abs=1e-15)
    se_b = math.sqrt(0.01 + 0.02)
    assert lay.groups[1].pi_high == pytest.approx(0.3 + Z975 * math.sqrt(se_b**2 + 0.015))
    assert [x.k_text for x in lay.groups] == ["k = 2 (1)", "k = 3 (2)", "k = 1 (1)"]
    # without by: named by the coefficients
    assert [x.name for x in orchard_layout(fit).groups] == ["intrcpt", "gb", "gc"]
    # and the bubble plot takes it too (weights 1/v when the fit has none)
    lay_b = bubble_layout(attrs.evolve(fit, coef_names=("intrcpt", "x"), coef=np.array([0.1, 0.2]),
                                       vcov=np.diag([0.01, 0.02]),
                                       X=np.c_[np.ones(6), np.arange(6.0)]))  # fmt: skip
    np.testing.assert_allclose(lay_b.pred, 0.1 + 0.2 * lay_b.grid, rtol=1e-12)
    assert np.all(lay_b.size == 1.0)  # equal weights: metafor's psize of 1


def test_orchard_draws_groups_points_and_intervals(mpl: Any, bcg_alloc: am.StudySet) -> None:
    from alliance_meta.plot import orchard

    sub = am.subgroup_analysis(bcg_alloc, by="alloc")
    lay = orchard_layout(sub)
    fig = orchard(sub, cluster=list(range(sub.k)))
    (pts,) = by_gid(fig, "orchard-point")
    np.testing.assert_allclose(pts.get_offsets(), np.c_[lay.x, lay.y])
    np.testing.assert_allclose(pts.get_sizes(), lay.size)
    cis = by_gid(fig, "orchard-ci")
    assert [tuple(line.get_xdata()) for line in cis] == [(g.ci_low, g.ci_high)
                                                         for g in lay.groups]  # fmt: skip
    assert len(by_gid(fig, "orchard-pi")) == len(lay.groups)
    (est,) = by_gid(fig, "orchard-estimate")
    np.testing.assert_allclose(est.get_offsets(),
                               [(g.estimate, g.position) for g in lay.groups])  # fmt: skip
    ks = [t.get_text() for t in by_gid(fig, "orchard-k")]
    assert ks == [f"k = {g.k} ({g.k})" for g in lay.groups]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(sub.groups)
    assert ax.get_xscale() == "log"
