"""Diagnostics and plots of multilevel and multivariate fits against metafor 3.8.1.

References (tests/reference/mlviz_*.json, written by generate_mlviz.R; fields in
PROVENANCE_mlviz.md): konstantopoulos2011 (two nested levels; intercept-only REML z
and ``~ year`` ML t), assink2016 (``~ deltype``, a deletion that empties a factor
level), assink2016 with a CHE working V, and berkey1998 (multivariate, UN).  For each:
``cooks.distance``, ``rstudent`` and ``dfbetas`` by effect and by cluster,
``hatvalues``, ``weights`` (diagonal and row sums), leave-one-cluster-out refits
(``rma.mv(..., subset =)``) and the coordinates ``funnel()`` plots.

Tolerances.  Every quantity here that involves a refit hangs on the refit's variance
components, which metafor's nlminb leaves about 1e-7 relative from the maximum (the
issue's contract for them is 1e-5 relative).  Diagnostics in standard-error units
(Cook's √D, DFBETAS, studentized residuals, coefficient differences / SE) move by
about as much as the components do relative to themselves, so they are compared
absolutely at 1e-5 (observed: 1e-6 on the nested data sets, 7e-6 on berkey1998 where
metafor's UN refits stop short; see KNOWN_SHORT).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import sparse

import alliance_meta as am
from alliance_meta.core import multilevel as ml
from alliance_meta.core import multilevel_influence as mli
from alliance_meta.diagnostics.multilevel import (
    estimate_weights,
    leave_one_cluster_out,
    multilevel_influence,
    standardized_residuals,
)
from alliance_meta.exceptions import (
    ConvergenceWarning,
    InvalidStudyError,
    ModelSpecificationError,
)

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from alliance_meta.plot import forest, forest_layout, funnel  # noqa: E402

REF = Path(__file__).parent / "reference"
FILES = [
    "konstantopoulos2011", "assink2016", "assink2016_che", "berkey1998", "crede2010",
    "kalaian1996",
]
#: Multivariate files (``~ outcome | cluster``)
MV = {"berkey1998", "kalaian1996"}

# --- tolerances --------------------------------------------------------------------
# Variance components of the refits: the contract (metafor's nlminb stops
# ~1e-7 relative from the maximum); ATOL for components at or near their bound 0.
RTOL_VC = 1e-5
ATOL_VC = 1e-8
# Quantities in standard-error units that hang on the (refits') variance components:
# coefficient differences / SE, √(Cook's D), DFBETAS, studentized residuals, √X².
# Their error is about the components' relative error (module docstring).
ATOL_SE_UNITS = 1e-5
# Standard errors, leverages and weights at the fit's own components (1e-7 relative
# from metafor's): relative agreement to 1e-6.
RTOL_GIVEN = 1e-6
# QE of a refit does not involve the variance components: rounding only.
RTOL_EXACT = 1e-9
# Log-likelihoods: the 1e-7 absolute.
ATOL_LL = 1e-7
# Ours must never be below metafor's beyond the rounding of a log-likelihood sum.
LL_ROUNDING = 1e-9
# p-values: compared relatively above 1e-10, absolutely below (metafor's p-values of
# these tests are z/t tail areas of statistics that agree to ATOL_SE_UNITS: their
# relative error is at most ~|z| times that).
RTOL_P, ATOL_P = 1e-4, 1e-10

#: Leave-one-cluster-out refits where metafor's nlminb (rel.tol 1e-10, the tightest
#: it confirms) stops short of the maximum on a flat likelihood, so that a component
#: differs by more than RTOL_VC: berkey1998 without trial 2 (ρ = -0.0484756 here,
#: -0.0484610 in metafor).  The test demands the evidence instead: our log-likelihood
#: at metafor's estimate is below our maximum, and the components agree to 1e-3.
KNOWN_SHORT = {("berkey1998", "2")}


def _load(name: str) -> dict[str, Any]:
    with open(REF / f"mlviz_{name}.json") as fh:
        out: dict[str, Any] = json.load(fh)
    return out


def _arr(x: Any) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in np.atleast_1d(x)], dtype=float)


def _V(d: dict[str, Any]) -> Any:
    if "V" not in d:
        return None
    if isinstance(d["V"], dict):
        k = len(d["yi"])
        return sparse.csr_matrix((d["V"]["x"], (d["V"]["i"], d["V"]["j"])), shape=(k, k))
    return np.asarray(d["V"])


def _fit(name: str, case: dict[str, Any]) -> am.MultilevelResult:
    d = _load(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        if name in MV:
            return am.multivariate(
                yi=d["yi"], V=_V(d), cluster=d["cluster_values"], outcome=d["outcome"],
                struct=case["struct"], moderators={"outcome": d["outcome"]}, intercept=False,
                method=case["method"], test=case["test"],
            )
        mods = None if case["mods"] is None else dict(d["moderators"])
        V = _V(d)
        kw: dict[str, Any] = {"vi": d["vi"]} if V is None else {"V": V}
        return am.multilevel(
            yi=d["yi"], levels=d["levels"], moderators=mods, method=case["method"],
            test=case["test"], **kw,
        )


def _cluster_arg(name: str, i: int = 0) -> str:
    """The level name of the fit that is metafor's ``cluster`` of case ``i``."""
    if name in MV:
        return "cluster"
    d = _load(name)
    cl = str(d["cases"][i].get("cluster", d.get("cluster")))
    # crede2010's samples: R's paste(studyid, sampleid) is the sampleid level's path
    return {"sample": "sampleid"}.get(cl, cl)


CASES = [
    pytest.param(
        (name, i),
        id=f"{name}-{c.get('struct', '')}{c['method']}-{c['test']}-{c['mods'] or 'none'}"
        + (f"-{c['cluster']}" if "cluster" in c else ""),
    )
    for name in FILES
    for i, c in enumerate(_load(name)["cases"])
]


@dataclasses.dataclass
class Computed:
    name: str
    expected: dict[str, Any]
    fit: am.MultilevelResult
    loo: am.MultilevelLeaveOneOutResult
    by_cluster: am.MultilevelInfluenceResult
    by_effect: am.MultilevelInfluenceResult | None


_CACHE: dict[tuple[str, int], Computed] = {}


def _computed(name: str, i: int) -> Computed:
    if (name, i) not in _CACHE:
        case = _load(name)["cases"][i]
        fit = _fit(name, case)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)  # every refit converges
            by_effect = "cooks_effect" in case["expected"]  # else cluster-level only
            _CACHE[(name, i)] = Computed(
                name, case["expected"], fit,
                leave_one_cluster_out(fit, _cluster_arg(name, i)),
                multilevel_influence(fit, _cluster_arg(name, i)),
                multilevel_influence(fit) if by_effect else None,
            )
    return _CACHE[(name, i)]


@pytest.fixture(params=CASES)
def comp(request: pytest.FixtureRequest) -> Computed:
    return _computed(*request.param)


#: The cases whose reference has the by-effect diagnostics too.
EFFECT_CASES = [p for p in CASES if "cooks_effect" in _load(p.values[0][0])["cases"][
    p.values[0][1]]["expected"]]


@pytest.fixture(params=EFFECT_CASES)
def comp_e(request: pytest.FixtureRequest) -> Computed:
    return _computed(*request.param)


def _by_label(res: am.MultilevelInfluenceResult, values: np.ndarray, ids: list[str]) -> Any:
    """``values`` (one per unit of ``res``) in the order of metafor's ``ids``."""
    return np.array([values[res.labels.index(str(i))] for i in ids])


# ---------------------------------------------------------------------------
# the fits themselves (the diagnostics below compare refits of these)
# ---------------------------------------------------------------------------


def test_fit_matches_metafor(comp: Computed) -> None:
    e = comp.expected["fit"]
    fit = comp.fit
    assert list(fit.coef_names) == e["coef_names"]
    np.testing.assert_allclose((fit.coef - e["coef"]) / fit.se, 0.0, atol=ATOL_SE_UNITS)
    theta = np.concatenate([fit.sigma2, fit.tau2, fit.rho])
    ref = np.concatenate([_arr(e[c]) for c in ("sigma2", "tau2", "rho")
                          if getattr(fit, c)])  # fmt: skip
    np.testing.assert_allclose(theta, ref, rtol=RTOL_VC, atol=ATOL_VC)
    assert fit.loglik >= e["logLik"] - LL_ROUNDING
    assert abs(fit.loglik - e["logLik"]) < ATOL_LL


# ---------------------------------------------------------------------------
# leave one cluster out: rma.mv(..., subset = cluster != c)
# ---------------------------------------------------------------------------


def test_leave_one_cluster_out_matches_refits(comp: Computed) -> None:
    loo, fit = comp.loo, comp.fit
    refs = comp.expected["loo_cluster"]
    assert list(loo.labels) == [r["id"] for r in refs]  # order of first appearance
    for i, r in enumerate(refs):
        assert not r.get("failed")
        ours = loo.coef[i]
        est = ~np.isnan(ours)
        # a coefficient is missing exactly when metafor drops its column
        assert bool(r["coef_na"]) == (not est.all())
        assert est.sum() == len(r["coef"])
        se_r = _arr(r["se"])
        np.testing.assert_allclose((ours[est] - _arr(r["coef"])) / se_r, 0.0,
                                   atol=ATOL_SE_UNITS)  # fmt: skip
        np.testing.assert_allclose(loo.se[i][est], se_r, rtol=ATOL_SE_UNITS)
        np.testing.assert_allclose(loo.statistic[i][est], _arr(r["zval"]), rtol=0,
                                   atol=ATOL_SE_UNITS)  # fmt: skip
        np.testing.assert_allclose(loo.pvalue[i][est], _arr(r["pval"]), rtol=RTOL_P,
                                   atol=ATOL_P)  # fmt: skip
        for bound, key in ((loo.ci.low, "ci_lb"), (loo.ci.high, "ci_ub")):
            np.testing.assert_allclose((bound[i][est] - _arr(r[key])) / se_r, 0.0,
                                       atol=ATOL_SE_UNITS)  # fmt: skip
        assert loo.k[i] == r["k"]
        np.testing.assert_allclose(loo.QE[i], r["QE"], rtol=RTOL_EXACT)
        np.testing.assert_allclose(loo.QE_pvalue[i], r["QEp"], rtol=RTOL_P, atol=ATOL_P)
        assert loo.loglik[i] >= r["logLik"] - LL_ROUNDING
        theta = np.concatenate([loo.sigma2[i], loo.tau2[i], loo.rho[i]])
        ref = np.concatenate([_arr(r[c]) for c in ("sigma2", "tau2", "rho")
                              if getattr(fit, c)])  # fmt: skip
        if (comp.name, r["id"]) in KNOWN_SHORT:
            np.testing.assert_allclose(theta, ref, rtol=1e-3)
            continue
        np.testing.assert_allclose(theta, ref, rtol=RTOL_VC, atol=ATOL_VC)
        assert abs(loo.loglik[i] - r["logLik"]) < ATOL_LL
    assert loo.converged.all()
    p_refit = (~np.isnan(loo.coef)).sum(axis=1)
    if fit.test == "t":
        np.testing.assert_array_equal(loo.df, loo.k - p_refit)
    else:
        assert np.isnan(loo.df).all()


def test_known_short_refits_are_below_our_maximum() -> None:
    """Where metafor's refit stops short (KNOWN_SHORT), our likelihood at its
    estimate is lower than at ours: ours is the maximum."""
    for name, cl in sorted(KNOWN_SHORT):
        d = _load(name)
        case = d["cases"][0]
        fit = _fit(name, case)
        loo = leave_one_cluster_out(fit, _cluster_arg(name))
        i = loo.labels.index(cl)
        ref = next(r for r in case["expected"]["loo_cluster"] if r["id"] == cl)
        data = mli.ModelData(
            fit.yi, fit.X, fit._V, [], fit._problem.structure, fit._fixed,
            np.asarray(np.unique(d["cluster_values"], return_inverse=True)[1], dtype=np.int64),
            fit._outcome_codes,
        )
        keep = np.asarray(d["cluster_values"]) != cl
        problem = mli.subset_problem(data, keep, np.ones(fit.p, dtype=bool))
        th_r = np.concatenate([_arr(ref["tau2"]), _arr(ref["rho"])])
        ll_at_r = float(ml.evaluate(problem, problem.structure.to_internal(th_r), True).ll[0])
        # metafor's own logLik at its estimate, recomputed here to rounding
        assert abs(ll_at_r - ref["logLik"]) < 1e-10
        assert loo.loglik[i] > ll_at_r + 1e-11


def test_leave_one_out_dispatches_and_defaults_to_the_outer_level() -> None:
    fit = _fit("konstantopoulos2011", _load("konstantopoulos2011")["cases"][0])
    res = am.leave_one_out(fit)
    assert isinstance(res, am.MultilevelLeaveOneOutResult)
    assert res.cluster == "district"
    assert list(res.labels) == [str(x) for x in dict.fromkeys(fit.levels["district"])]
    np.testing.assert_array_equal(res.coef, leave_one_cluster_out(fit, "district").coef)


def test_a_refit_is_the_model_fitted_to_the_subset() -> None:
    """Self-consistency on data metafor never saw: row c equals multilevel() on the
    effects outside cluster c (same maximiser: to its convergence, 1e-9)."""
    studies = am.datasets.load_alliance_dependent().studies()
    fit = am.multilevel(studies, levels=("study", "label"), moderators="~ rater")
    loo = am.leave_one_out(fit)
    study = np.asarray(fit.levels["study"])
    frame = studies.to_dataframe()
    for i in (0, 5, 11):
        keep = study != loo.labels[i]
        sub = am.multilevel(
            yi=fit.yi[keep], vi=fit.vi[keep],
            levels={"study": study[keep], "label": np.asarray(fit.labels)[keep]},
            moderators={"rater": frame["rater"].to_numpy()[keep]},
        )
        np.testing.assert_allclose(loo.coef[i], sub.coef, rtol=1e-9)
        np.testing.assert_allclose(loo.se[i], sub.se, rtol=1e-9)
        np.testing.assert_allclose(loo.sigma2[i], sub.sigma2, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(loo.QE[i], sub.QE, rtol=RTOL_EXACT)
        np.testing.assert_allclose(loo.loglik[i], sub.loglik, rtol=0, atol=1e-10)
        assert loo.I2[i] == pytest.approx(sub.I2, rel=1e-6)


# ---------------------------------------------------------------------------
# Cook's distance, DFBETAS, rstudent, hat values
# ---------------------------------------------------------------------------


def _stuck(expected: dict[str, Any]) -> set[str]:
    """Clusters whose refit, started as metafor's cooks.distance / dfbetas / rstudent
    start it (at the fit's components; ``loo_cluster[].warm``), stops below the
    maximum that metafor's own fresh refit of the same subset reaches (and ours,
    checked in test_leave_one_cluster_out_matches_refits)."""
    out = set()
    for r in expected["loo_cluster"]:
        w = r.get("warm")
        if w is not None and w["logLik"] < r["logLik"] - 1e-6:
            out.add(str(r["id"]))
    return out


def test_stuck_warm_started_refits_are_below_our_maximum() -> None:
    """crede2010 without study 10: metafor's warm-started refit keeps σ²₂ at the
    full fit's 2e-13 (nlminb on log σ² cannot leave it) and stops 1.19 log-likelihood
    units below the maximum that its fresh refit reaches (σ²₂ = 0.011), so its Cook's
    distance (1.178), DFBETAS and studentized residuals for that study are those of
    a non-maximum.  Ours are those of the maximum (test_cooks_distance_by_cluster
    checks them against metafor's fresh refit)."""
    seen = set()
    for i, c in enumerate(_load("crede2010")["cases"]):
        for r in c["expected"]["loo_cluster"]:
            if str(r["id"]) in _stuck(c["expected"]):
                seen.add((i, r["id"]))
                assert r["warm"]["logLik"] < r["logLik"] - 1.0
                assert r["warm"]["sigma2"][1] < 1e-12 < r["sigma2"][1]
    assert seen == {(0, "10"), (1, "10/1")}


def test_cooks_distance_by_cluster(comp: Computed) -> None:
    e = comp.expected["cooks_cluster"]
    ours = _by_label(comp.by_cluster, comp.by_cluster.cook_d, e["id"])
    ref = _arr(e["value"])
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))  # NA where metafor's are
    ok = np.array([str(i) not in _stuck(comp.expected) for i in e["id"]])
    np.testing.assert_allclose(np.sqrt(ours[ok]), np.sqrt(ref[ok]), rtol=0, atol=ATOL_SE_UNITS)
    # where metafor's warm-started refit is stuck: Cook's distance of its fresh refit
    loo = {str(r["id"]): r for r in comp.expected["loo_cluster"]}
    for cid in _stuck(comp.expected):
        d = comp.fit.coef - _arr(loo[cid]["coef"])
        want = float(d @ np.linalg.solve(comp.fit.vcov, d))
        got = comp.by_cluster.cook_d[comp.by_cluster.labels.index(cid)]
        assert np.sqrt(got) == pytest.approx(np.sqrt(want), abs=ATOL_SE_UNITS)


def test_cooks_distance_by_effect(comp_e: Computed) -> None:
    comp = comp_e
    by_effect = comp.by_effect
    assert by_effect is not None
    ref = _arr(comp.expected["cooks_effect"])
    ours = by_effect.cook_d
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_allclose(np.sqrt(ours), np.sqrt(ref), rtol=0, atol=ATOL_SE_UNITS)
    assert by_effect.cluster is None and by_effect.labels == comp.fit.labels


def test_dfbetas(comp: Computed) -> None:
    e = comp.expected["dfbetas_cluster"]
    ours = np.array([comp.by_cluster.dfbetas[comp.by_cluster.labels.index(i)] for i in e["id"]])
    ref = np.array([_arr(v) for v in e["value"]])
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    ok = np.array([str(i) not in _stuck(comp.expected) for i in e["id"]])  # see _stuck
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=0, atol=ATOL_SE_UNITS)
    if comp.by_effect is not None:
        ref_e = np.array([_arr(v) for v in comp.expected["dfbetas_effect"]])
        np.testing.assert_allclose(comp.by_effect.dfbetas, ref_e, rtol=0, atol=ATOL_SE_UNITS)


def test_rstudent_by_cluster(comp: Computed) -> None:
    e = comp.expected["rstudent_cluster"]
    res = comp.by_cluster
    stuck = _stuck(comp.expected)  # see _stuck: metafor's values there are not at a maximum
    ok = np.array([res.labels[int(u)] not in stuck for u in res.unit_of_effect])
    np.testing.assert_allclose(res.rstudent[ok], _arr(e["obs"]["z"])[ok], rtol=0,
                               atol=ATOL_SE_UNITS)  # fmt: skip
    np.testing.assert_allclose(res.se_resid[ok], _arr(e["obs"]["se"])[ok], rtol=ATOL_SE_UNITS)
    # residuals in SE units (NaN where metafor's are NA)
    ref = _arr(e["obs"]["resid"])
    np.testing.assert_array_equal(np.isnan(res.resid), np.isnan(ref))
    np.testing.assert_allclose(((res.resid - ref) / res.se_resid)[ok],
                               np.where(np.isnan(ref), np.nan, 0.0)[ok], atol=ATOL_SE_UNITS)
    X2 = _by_label(res, res.X2, e["cluster"]["id"])
    okc = np.array([str(i) not in stuck for i in e["cluster"]["id"]])
    np.testing.assert_allclose(np.sqrt(X2)[okc], np.sqrt(_arr(e["cluster"]["X2"]))[okc],
                               rtol=0, atol=ATOL_SE_UNITS)  # fmt: skip
    k_ref = _arr(e["cluster"]["k"])  # NA in metafor where its 1e-12 refit failed
    n_eff = _by_label(res, res.n_effects, e["cluster"]["id"]).astype(float)
    np.testing.assert_array_equal(n_eff[~np.isnan(k_ref)], k_ref[~np.isnan(k_ref)])


def test_rstudent_by_effect(comp_e: Computed) -> None:
    comp = comp_e
    res = comp.by_effect
    assert res is not None
    e = comp.expected["rstudent_effect"]
    np.testing.assert_allclose(res.rstudent, _arr(e["z"]), rtol=0, atol=ATOL_SE_UNITS)
    np.testing.assert_allclose(res.se_resid, _arr(e["se"]), rtol=ATOL_SE_UNITS)
    # single effects: X² is the square of the studentized residual
    np.testing.assert_allclose(res.X2, res.rstudent**2, rtol=1e-12)


def test_hat_values(comp: Computed) -> None:
    hat = comp.by_cluster.hat  # per effect, whatever the deletions
    np.testing.assert_allclose(hat, comp.expected["hat"], rtol=RTOL_GIVEN)
    assert hat.sum() == pytest.approx(comp.fit.p, rel=1e-12)  # tr(H) = p


# ---------------------------------------------------------------------------
# weights: shares of the estimate, not metafor's weights() (metafor #52)
# ---------------------------------------------------------------------------


def test_estimate_weights_reproduce_the_estimate(comp: Computed) -> None:
    A = estimate_weights(comp.fit)
    np.testing.assert_allclose(A @ comp.fit.yi, comp.fit.coef, rtol=1e-10, atol=1e-12)
    # AX = I, to rounding relative to the size of the products' terms (a year column)
    scale = np.abs(A) @ np.abs(comp.fit.X)
    np.testing.assert_allclose(A @ comp.fit.X - np.eye(comp.fit.p), 0.0, atol=1e-12 * scale.max())
    if "weights_rowsum" in comp.expected:  # intercept-only fits
        np.testing.assert_allclose(100 * A[0], comp.expected["weights_rowsum"],
                                   rtol=RTOL_GIVEN)  # fmt: skip
        # metafor's default weights() (the diagonal of W) are not the shares
        diag = np.asarray(comp.expected["weights"])
        assert np.max(np.abs(diag - 100 * A[0])) > 0.05


# ---------------------------------------------------------------------------
# funnel: what metafor's funnel() plots for an rma.mv fit
# ---------------------------------------------------------------------------


@pytest.fixture
def _close() -> Iterator[None]:
    yield
    plt.close("all")


def _points(fig: Any) -> tuple[np.ndarray, np.ndarray]:
    pts = [a for a in fig.findobj(lambda a: a.get_gid() == "study-point")]
    x = np.array([float(p.get_xdata()[0]) for p in pts])
    y = np.array([float(p.get_ydata()[0]) for p in pts])
    return x, y


@pytest.mark.usefixtures("_close")
def test_funnel_plots_metafors_coordinates(comp: Computed) -> None:
    f = comp.expected["funnel"]
    fig = funnel(comp.fit)
    x, y = _points(fig)
    se = np.asarray(f["y"])
    # effects for an intercept-only fit (exact), residuals otherwise (in SE units)
    np.testing.assert_allclose((x - np.asarray(f["x"])) / se, 0.0, atol=ATOL_SE_UNITS)
    np.testing.assert_allclose(y, se, rtol=RTOL_GIVEN)
    (line,) = fig.findobj(lambda a: a.get_gid() == "estimate-line")
    # the estimate (intercept-only fits) hangs on σ²: compared in SE units
    se_fit = float(comp.fit.se[0]) if comp.fit.p == 1 else 1.0
    assert float(line.get_xdata()[0]) == pytest.approx(f["refline"], abs=ATOL_SE_UNITS * se_fit)
    assert (fig.axes[0].get_xlabel() == "Residual value") == (comp.fit.p > 1)


def test_standardized_residuals_definition() -> None:
    """se² = diag((I - H) M (I - H)') computed densely on a small fit."""
    d = _load("berkey1998")
    fit = _fit("berkey1998", d["cases"][0])
    e, se = standardized_residuals(fit)
    Mb = ml.marginal_covariance(fit._problem, np.asarray(fit._theta))
    M = np.zeros((fit.k, fit.k))
    for Mk, b in zip(Mb, fit._problem.layout.buckets, strict=True):
        for n in range(Mk.shape[0]):
            idx = b.index[n][b.mask[n]]
            M[np.ix_(idx, idx)] = Mk[n][np.ix_(b.mask[n], b.mask[n])]
    W = np.linalg.inv(M)
    X = fit.X
    H = X @ np.linalg.solve(X.T @ W @ X, X.T @ W)
    ImH = np.eye(fit.k) - H
    np.testing.assert_allclose(se, np.sqrt(np.diag(ImH @ M @ ImH.T)), rtol=1e-10)
    np.testing.assert_allclose(e, fit.yi - X @ fit.coef, atol=1e-14)


# ---------------------------------------------------------------------------
# forest: effects grouped by study, the multilevel diamond, shares as weights
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dep_fit() -> am.MultilevelResult:
    studies = am.datasets.load_alliance_dependent().studies()
    return am.multilevel(studies, levels=("study", "label"))


def test_forest_layout_groups_effects_by_study(dep_fit: am.MultilevelResult) -> None:
    lay = forest_layout(dep_fit)
    assert lay.group_level == "study"
    studies = list(dict.fromkeys(dep_fit.levels["study"]))
    headers = lay.rows_of("header")
    assert [h.label for h in headers] == studies
    # every effect once, under its own study's header, in data order
    current = None
    seen = []
    for r in lay.rows:
        if r.kind == "header":
            current = r.label
        elif r.kind == "study":
            assert dep_fit.levels["study"][r.index] == current
            assert dep_fit.labels[r.index].endswith(r.label)  # the study's name dropped
            seen.append(r.index)
    assert seen == list(range(dep_fit.k))
    # rows top to bottom, one unit apart
    ys = [r.y for r in lay.rows]
    assert ys == sorted(ys, reverse=True) and np.allclose(-np.diff(ys), 1.0)


def test_forest_weights_are_shares_of_the_estimate(dep_fit: am.MultilevelResult) -> None:
    lay = forest_layout(dep_fit)
    eff = lay.rows_of("study")
    w = np.array([r.weights[0] for r in eff])
    assert w.sum() == pytest.approx(100.0, abs=1e-10)
    # Σ w_i y_i / 100 is the pooled estimate: the weights are the estimator's
    yi = np.array([r.yi for r in eff])
    assert float(w @ yi) / 100 == pytest.approx(float(dep_fit.coef[0]), rel=1e-12)
    np.testing.assert_allclose(w, 100 * estimate_weights(dep_fit)[0][[r.index for r in eff]],
                               rtol=1e-12)  # fmt: skip
    np.testing.assert_array_equal([r.weight for r in eff], w)  # square sizes
    # a study's weight is the sum of its effects'
    study = np.asarray(dep_fit.levels["study"])
    heads = lay.rows_of("header")
    assert len(heads) == dep_fit.n_clusters[0]
    for h in heads:
        mine = [r.weights[0] for r in eff if study[r.index] == h.label]
        assert len(mine) == 4 and h.weights[0] == pytest.approx(sum(mine), rel=1e-12)
    assert sum(h.weights[0] for h in heads) == pytest.approx(100.0, abs=1e-10)
    assert [r.weight_texts[0] for r in lay.rows_of("overall")] == ["100%"]


def test_forest_weights_match_metafor_rowsum_weights_under_a_che_v() -> None:
    """Under a correlated V the shares differ from metafor's weights() (W's
    diagonal, metafor #52) and equal its weights(type = "rowsum")."""
    d = _load("assink2016_che")
    e = d["cases"][0]["expected"]
    fit = _fit("assink2016_che", d["cases"][0])
    lay = forest_layout(fit)
    eff = sorted(lay.rows_of("study"), key=lambda r: r.index)
    w = np.array([r.weights[0] for r in eff])
    np.testing.assert_allclose(w, e["weights_rowsum"], rtol=RTOL_GIVEN)
    assert np.max(np.abs(w - np.asarray(e["weights"]))) > 0.05


def test_forest_diamond_and_prediction_interval(dep_fit: am.MultilevelResult) -> None:
    lay = forest_layout(dep_fit)
    (ov,) = lay.rows_of("overall")
    assert (ov.yi, ov.lo, ov.hi) == (dep_fit.coef[0], dep_fit.ci.low[0], dep_fit.ci.high[0])
    (pi,) = lay.rows_of("pi")
    pred = dep_fit.predict()
    assert (pi.lo, pi.hi) == (pred.pi.low[0], pred.pi.high[0])
    # the PI counts every level's variance: wider than with the study level alone
    assert pi.hi - pi.lo > 2 * 1.959963984540054 * np.sqrt(
        dep_fit.se[0] ** 2 + dep_fit.sigma2[0]
    )
    (note,) = lay.rows_of("note")
    assert "\u03c3\u00b2(study) = 0.008" in note.text and "Q(47) = 225.27" in note.text
    assert lay.overall is dep_fit


@pytest.mark.usefixtures("_close")
def test_forest_renders_a_multilevel_fit(dep_fit: am.MultilevelResult, tmp_path: Path) -> None:
    fig = forest(dep_fit, title="Three-level model")
    gids = [a.get_gid() for a in fig.findobj(lambda a: a.get_gid() is not None)]
    assert gids.count("study-row") == dep_fit.k
    assert gids.count("weight-cluster") == dep_fit.n_clusters[0]
    assert gids.count("weight-text") == dep_fit.k
    assert gids.count("diamond-overall") == 1 and gids.count("prediction-interval") == 1
    texts = {t.get_text() for t in fig.findobj(lambda a: a.get_gid() == "weight-cluster")}
    assert all(t.endswith("%") for t in texts)
    (diamond,) = fig.findobj(lambda a: a.get_gid() == "diamond-overall")
    xy = np.asarray(diamond.get_xy())
    # ZCOR on the natural scale: the diamond spans tanh of the CI
    np.testing.assert_allclose(xy[[0, 1, 2], 0], np.tanh([dep_fit.ci.low[0], dep_fit.coef[0],
                                                          dep_fit.ci.high[0]]), atol=1e-12)
    path = tmp_path / "forest_multilevel.png"
    fig.savefig(path, dpi=80)
    assert path.stat().st_size > 10_000


def test_forest_of_a_multivariate_fit_without_moderators() -> None:
    d = _load("berkey1998")
    fit = am.multivariate(yi=d["yi"], V=_V(d), cluster=d["cluster_values"],
                          outcome=d["outcome"], struct="CS")  # fmt: skip
    lay = forest_layout(fit)
    assert lay.group_level == "cluster" and len(lay.rows_of("header")) == 5
    assert lay.rows_of("header")[0].label == "Cluster 1"  # a bare id gets the level's name
    assert len(lay.rows_of("pi")) == 1  # one τ²: a single prediction interval
    assert "\u03c1 = " in lay.rows_of("note")[0].text


def test_forest_of_one_effect_per_cluster_has_no_headers() -> None:
    """A two-level model of one effect per study (the univariate random-effects
    model as a multilevel fit): a plain list of studies, weights 1/(v_i + σ²)."""
    studies = am.datasets.load_alliance_example().studies()
    fit = am.multilevel(studies, levels=("study",))
    lay = forest_layout(fit)
    assert lay.group_level is None and not lay.rows_of("header")
    eff = lay.rows_of("study")
    assert [r.label for r in eff] == list(fit.labels)
    w = 1.0 / (fit.vi + fit.sigma2[0])
    np.testing.assert_allclose([r.weights[0] for r in eff], 100 * w / w.sum(), rtol=1e-12)
    # the same numbers as random_effects' forest (REML: σ² = τ²)
    pool = forest_layout(am.random_effects(studies))
    np.testing.assert_allclose([r.weights[0] for r in eff],
                               [r.weights[0] for r in pool.rows_of("study")], rtol=1e-6)


def test_forest_refuses_models_with_moderators_and_common() -> None:
    fit = _fit("assink2016", _load("assink2016")["cases"][0])
    with pytest.raises(ModelSpecificationError, match="orchard"):
        forest_layout(fit)
    studies = am.datasets.load_alliance_dependent().studies()
    with pytest.raises(ModelSpecificationError, match="common"):
        forest_layout(am.multilevel(studies, levels=("study", "label")), common=True)


# ---------------------------------------------------------------------------
# convergence, NA rows, bad input
# ---------------------------------------------------------------------------


def test_a_deletion_that_empties_a_factor_level_gives_nan() -> None:
    """assink2016 study 16 holds every 'covert' effect: without it metafor drops
    that column (coefficient NA) and its Cook's distance and DFBETAS are NA."""
    fit = _fit("assink2016", _load("assink2016")["cases"][0])
    loo = leave_one_cluster_out(fit, "study")
    i = loo.labels.index("16")
    # intercept (covert) = general + overt without covert effects: R's lm drops the
    # last of the collinear columns
    assert fit.coef_names == ("intrcpt", "deltypegeneral", "deltypeovert")
    np.testing.assert_array_equal(np.isnan(loo.coef[i]), [False, False, True])
    inf = multilevel_influence(fit, "study")
    assert np.isnan(inf.cook_d[i]) and np.isnan(inf.dfbetas[i]).all()
    assert np.isfinite(np.delete(inf.cook_d, i)).all()


def test_a_deletion_that_removes_an_outcome() -> None:
    """Deleting the only cluster with outcome 'c': τ²_c is not identified in the
    refit (NaN); Cook's distance is that of the subset's fit (metafor: NA, its
    refit fails), DFBETAS and residuals NaN; the other clusters as usual (metafor
    3.8.1, HCS, rel.tol 1e-10 (1e-12 does not converge): cluster '1' D = 0.18718044,
    DFBETAS 0.43374480; they agree to 1.3e-6 relative, so 1e-5 allows for metafor's
    refits at rel.tol 1e-10)."""
    rng = np.random.default_rng(3)
    cl = np.repeat(np.arange(8), 2).astype(str)
    out = np.tile(["a", "b"], 8).astype(object)
    out[0] = "c"
    y, v = rng.normal(0.3, 0.3, 16), rng.uniform(0.01, 0.05, 16)
    fit = am.multivariate(yi=y, V=v, cluster=cl, outcome=out, struct="HCS")
    inf = multilevel_influence(fit, "cluster")
    assert np.isnan(inf.components_del[0, 2]) and np.isfinite(inf.components_del[1]).all()
    assert np.isnan(inf.dfbetas[0]).all() and np.isnan(inf.rstudent[:2]).all()
    sub = am.multivariate(yi=y[2:], V=v[2:], cluster=cl[2:], outcome=out[2:], struct="HCS")
    d = fit.coef - sub.coef
    assert inf.cook_d[0] == pytest.approx(float(d @ np.linalg.solve(fit.vcov, d)), rel=1e-8)
    assert inf.cook_d[1] == pytest.approx(0.18718044, rel=1e-5)
    assert inf.dfbetas[1, 0] == pytest.approx(0.43374480, rel=1e-5)


def test_unconverged_refits_warn_once_naming_the_clusters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fit = _fit("konstantopoulos2011", _load("konstantopoulos2011")["cases"][0])
    real = mli.estimate_components
    calls = {"n": 0}

    def flaky(*args: Any, **kw: Any) -> mli.ComponentFit:
        out = real(*args, **kw)
        calls["n"] += 1
        if calls["n"] in (2, 5):  # the refits without the 2nd and 5th district
            sol = dataclasses.replace(out.solution, converged=False)
            return dataclasses.replace(out, solution=sol)
        return out

    monkeypatch.setattr(mli, "estimate_components", flaky)
    with pytest.warns(ConvergenceWarning) as rec:
        loo = leave_one_cluster_out(fit)
    assert len(rec) == 1
    assert f"'{loo.labels[1]}'" in str(rec[0].message)
    assert f"'{loo.labels[4]}'" in str(rec[0].message)
    np.testing.assert_array_equal(np.flatnonzero(~loo.converged), [1, 4])
    assert "10 of 11" not in str(loo) and "9 of 11" in str(loo)


def test_bad_cluster_arguments() -> None:
    fit = _fit("konstantopoulos2011", _load("konstantopoulos2011")["cases"][0])
    with pytest.raises(ModelSpecificationError, match="not a level"):
        leave_one_cluster_out(fit, "country")
    with pytest.raises(InvalidStudyError, match="one label per effect"):
        multilevel_influence(fit, ["a", "b"])
    labels = np.array(fit.levels["district"], dtype=object)
    labels[3] = None
    with pytest.raises(InvalidStudyError, match="missing cluster label"):
        multilevel_influence(fit, labels)
    with pytest.raises(ModelSpecificationError, match="at least 2 clusters"):
        leave_one_cluster_out(fit, np.zeros(fit.k))
    pool = am.random_effects(yi=[0.1, 0.3, 0.2], vi=[0.01, 0.02, 0.015])
    with pytest.raises(ModelSpecificationError, match="multilevel fits"):
        am.leave_one_out(pool, cluster="study")
    with pytest.raises(ModelSpecificationError, match="multilevel fits"):
        am.influence(pool, cluster="study")
    with pytest.raises(ModelSpecificationError, match="MultilevelResult"):
        leave_one_cluster_out(pool)  # type: ignore[arg-type]


def test_cluster_given_as_labels_and_by_an_inner_level() -> None:
    fit = _fit("konstantopoulos2011", _load("konstantopoulos2011")["cases"][0])
    by_name = multilevel_influence(fit, "district")
    by_values = multilevel_influence(fit, np.asarray(fit.levels["district"]))
    np.testing.assert_array_equal(by_name.cook_d, by_values.cook_d)
    assert by_values.cluster == "cluster"
    # every school is one effect here: deleting schools is deleting effects
    by_school = multilevel_influence(fit, "school")
    np.testing.assert_allclose(by_school.cook_d, multilevel_influence(fit).cook_d,
                               rtol=1e-10)  # fmt: skip


def test_result_tables() -> None:
    fit = _fit("konstantopoulos2011", _load("konstantopoulos2011")["cases"][1])
    loo = leave_one_cluster_out(fit)
    frame = loo.to_frame()
    assert list(frame.index) == list(loo.labels)
    assert {"estimate[intrcpt]", "se[year]", "sigma2.district", "QE", "converged"} <= set(
        frame.columns
    )
    np.testing.assert_array_equal(frame["estimate[year]"], loo.coef[:, 1])
    inf = multilevel_influence(fit, "district")
    frame = inf.to_frame()
    assert {"cook_d", "dfbetas[intrcpt]", "dfbetas[year]", "X2", "n_effects"} <= set(
        frame.columns
    )
    eff = inf.effects_frame()
    assert len(eff) == fit.k and list(eff["unit"]) == list(fit.levels["district"])
    text = str(inf)
    assert f"{np.nanmax(inf.cook_d):.4f}" in text
    pooled = leave_one_cluster_out(_fit("konstantopoulos2011",
                                        _load("konstantopoulos2011")["cases"][0]))
    assert "estimate" in pooled.to_frame().columns
    np.testing.assert_array_equal(pooled.estimate, pooled.coef[:, 0])
