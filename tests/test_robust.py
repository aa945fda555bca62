"""Cluster-robust inference (``robust``) against clubSandwich 0.5.8 and metafor 3.8.1.

References: ``robust_*.json`` (rma.uni fits) and the ``robust`` blocks of
``mv_*.json`` / ``robustmv_*.json`` (rma.mv fits); fields in PROVENANCE.md and
PROVENANCE.md (section "robust").  The rma.mv cases are checked through a small stand-in fit
that builds the marginal covariance from the reference's own variance components,
so that only the sandwich is under test (not a multilevel fitter).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from statsmodels.iolib.summary import Summary

import alliance_meta as am
from alliance_meta.core import sandwich as sw
from alliance_meta.exceptions import (
    FewStudiesWarning,
    InvalidStudyError,
    ModelSpecificationError,
)
from alliance_meta.models.robust import RobustResult, robust

REF = Path(__file__).parent / "reference"
UNI_FILES = sorted(REF.glob("robust_*.json"))
MV_FILES = [
    p for p in sorted(REF.glob("mv_*.json")) + sorted(REF.glob("robustmv_*.json"))
    # the files with a list of fitted cases (mv_vcalc and mv_local_maxima hold others)
    if isinstance(json.loads(p.read_text()).get("cases"), list)
]

# The project's contract with metafor/clubSandwich.  Univariate fits are refitted by
# alliance_meta, whose τ² agrees with metafor's (tight controls) to ~1e-12, and the
# sandwich is a closed form of the fit: every robust quantity agrees to 6e-11 at
# worst (konstantopoulos2011, the shared file).  1e-6 is the contract, left at that
# because the fit's own τ² is part of the comparison; any formula error (a wrong
# adjustment, target or df) moves the values at the 1e-3 level or more.
RTOL = 1e-6
# The rma.mv cases use the reference's own variance components (full double
# precision), so only the sandwich's arithmetic can differ: observed agreement is
# 1e-10 at worst (a CR0 HTZ p-value of assink2016), ~1e-14 typically.  1e-8 keeps a
# margin of 100x and is tighter than the contract, as no fitted σ² limits it here.
RTOL_MV = 1e-8
# p-values near 0 are compared relatively down to this absolute floor (far below any
# decision threshold); also covers the −0/+0 of exactly zero quantities.
ATOL = 1e-14


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call without the df < 4 warnings (tested separately)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewStudiesWarning)
        return fn(*args, **kwargs)


# ---------------------------------------------------------------------------
# Comparison of a result with a reference block
# ---------------------------------------------------------------------------


def _close(ours: Any, exp: Any, rtol: float, what: str) -> None:
    np.testing.assert_allclose(
        np.asarray(ours, dtype=float), np.asarray(exp, dtype=float), rtol=rtol, atol=ATOL,
        err_msg=what,
    )


def _close_bound(ours: Any, exp: Any, res: RobustResult, rtol: float, what: str) -> None:
    """A CI bound ``coef ± c·se``, relative to its terms: a bound near 0 is the
    difference of two larger numbers, so its own relative error is not the measure
    (scipy 1.10's t quantile ``stdtrit`` of a fractional df is exact to ~1e-9
    relative, which is 3e-8 of a bound of -0.009 made of terms near 0.1)."""
    scale = np.abs(res.coef) + np.abs(np.asarray(ours) - res.coef)
    np.testing.assert_allclose(
        np.asarray(ours, dtype=float), np.asarray(exp, dtype=float), rtol=0,
        atol=rtol * float(np.max(scale)) + ATOL, err_msg=what,
    )


def _check_satterthwaite(res: RobustResult, blk: dict[str, Any], rtol: float) -> None:
    """A CR2 (or CR0) result against clubSandwich's coef_test / conf_int / Wald_test."""
    for ours, key in [
        (res.coef, "coef"), (res.se, "se"), (res.statistic, "statistic"), (res.df, "df"),
        (res.pvalue, "p_value"),
    ]:
        _close(ours, blk[key], rtol, key)
    if "ci_lb" in blk:
        _close_bound(res.ci.low, blk["ci_lb"], res, rtol, "ci_lb")
        _close_bound(res.ci.high, blk["ci_ub"], res, rtol, "ci_ub")
    if "wald" in blk:
        w = blk["wald"]
        coefs = [c - 1 for c in np.atleast_1d(w["coefs"])]
        ours = _quiet(res.wald_test, coefs)
        assert ours.test == "HTZ"
        assert ours.df_num == w["df_num"] == len(coefs)
        _close(ours.F, w["F"], rtol, "wald F")
        _close(ours.df_denom, w["df_denom"], rtol, "wald df_denom")
        _close(ours.pvalue, w["p_value"], rtol, "wald p")


def _check_metafor_robust(res: RobustResult, blk: dict[str, Any], rtol: float) -> None:
    """A CR1 result against metafor's robust()."""
    assert res.adjust == "CR1"
    for ours, key in [
        (res.se, "se"), (res.statistic, "statistic"), (res.pvalue, "p_value"),
        (res.ci.low, "ci_lb"), (res.ci.high, "ci_ub"),
    ]:
        _close(ours, blk[key], rtol, "metafor " + key)
    assert np.all(res.df == blk["df"])
    # metafor's QM: its default btt (all but an intercept; all without one)
    w = res.wald_test()
    assert (w.df_num, w.df_denom) == tuple(blk["QM_df"])
    _close(w.F, blk["QM"], rtol, "metafor QM")


def _check_all(fit: Any, cluster: Any, exp: dict[str, Any], rtol: float) -> None:
    blk = exp["robust"]
    res = _quiet(robust, fit, cluster)
    assert list(res.coef_names) == list(exp["coef_names"])
    _check_satterthwaite(res, blk, rtol)
    if "CR0" in blk:
        _check_satterthwaite(_quiet(robust, fit, cluster, adjust="CR0"), blk["CR0"], rtol)
    _check_metafor_robust(robust(fit, cluster, adjust="CR1"), blk["metafor_robust"], rtol)


# ---------------------------------------------------------------------------
# Univariate fits (robust_*.json), refitted by alliance_meta
# ---------------------------------------------------------------------------


def _uni_fit(data: dict[str, Any], method: str) -> Any:
    mods = data.get("moderators")
    if mods:
        return am.meta_regression(yi=data["yi"], vi=data["vi"], moderators=mods,
                                  method=method)
    if method == "EE":
        return am.fixed_effect(yi=data["yi"], vi=data["vi"])
    return am.random_effects(yi=data["yi"], vi=data["vi"], method=method)


UNI_CASES = [
    pytest.param(path, i, id=f"{path.stem}-{c['method']}")
    for path in UNI_FILES
    for i, c in enumerate(_load(path)["cases"])
]


@pytest.mark.parametrize(("path", "i"), UNI_CASES)
def test_univariate_against_clubsandwich_and_metafor(path: Path, i: int) -> None:
    data = _load(path)
    exp = dict(data["cases"][i]["expected"])
    fit = _uni_fit(data, data["cases"][i]["method"])
    np.testing.assert_allclose(fit.tau2, exp["tau2"], rtol=1e-8, atol=1e-12)
    exp.setdefault("coef_names", list(getattr(fit, "coef_names", ["intrcpt"])))
    _check_all(fit, data["cluster"], exp, RTOL)


# ---------------------------------------------------------------------------
# Multilevel / multivariate fits: a stand-in built from the reference's components
# ---------------------------------------------------------------------------


@attrs.frozen
class StandInFit:
    """A fitted rma.mv model as ``robust`` sees it: a dense marginal covariance ``M``
    (fine for these small data sets) cut into the blocks of a clustering."""

    X: npt.NDArray[np.float64]
    yi: npt.NDArray[np.float64]
    coef: npt.NDArray[np.float64]
    coef_names: tuple[str, ...]
    vcov: npt.NDArray[np.float64]
    level: float
    M: npt.NDArray[np.float64]
    levels: dict[str, list[str]] | None = None

    def marginal_blocks(
        self, codes: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        cross = (codes[:, None] != codes[None, :]) & (self.M != 0)
        if cross.any():
            i, j = np.argwhere(cross)[0]
            raise ModelSpecificationError(
                f"effects {i} and {j} are correlated but in different clusters"
            )
        G = int(codes.max()) + 1
        members = [np.flatnonzero(codes == g) for g in range(G)]
        b = max(len(m) for m in members)
        index = np.full((G, b), -1, dtype=np.int64)
        M = np.tile(np.eye(b), (G, 1, 1))
        for g, m in enumerate(members):
            index[g, : len(m)] = m
            M[g, : len(m), : len(m)] = self.M[np.ix_(m, m)]
        return index, M


def _nested_keys(levels: dict[str, list[str]]) -> list[list[tuple[str, ...]]]:
    """For each level (outer first), each effect's key: its labels down to that level."""
    names = list(levels)
    return [
        list(zip(*(levels[n] for n in names[: i + 1]), strict=True)) for i in range(len(names))
    ]


def _sampling_V(data: dict[str, Any]) -> npt.NDArray[np.float64]:
    if "V" in data:
        return np.asarray(data["V"], dtype=float)
    vi = np.asarray(data["vi"], dtype=float)
    V = np.diag(vi)
    if "V_offdiag" in data:
        vals = np.asarray(data["V_offdiag"], dtype=float)
        if "V_offdiag_row" in data:
            rows = np.asarray(data["V_offdiag_row"]) - 1
            cols = np.asarray(data["V_offdiag_col"]) - 1
        else:
            # vcalc with a constant rho: every pair of the outer cluster, lower
            # triangle, column-major
            outer = next(iter(data["levels"].values()))
            pairs = [(i, j) for j in range(len(vi)) for i in range(j + 1, len(vi))
                     if outer[i] == outer[j]]
            assert len(pairs) == len(vals)
            rows, cols = np.asarray(pairs).T
            # the recipe: rho √(v_i v_j)
            np.testing.assert_allclose(vals, data["rho"] * np.sqrt(vi[rows] * vi[cols]),
                                       rtol=1e-12)
        V[rows, cols] = vals
        V[cols, rows] = vals
    return V


def _random_part(data: dict[str, Any], case: dict[str, Any]) -> npt.NDArray[np.float64]:
    exp = case["expected"]
    k = len(data["yi"])
    R = np.zeros((k, k))
    if "levels" in data:
        for s2, keys in zip(np.atleast_1d(exp["sigma2"]), _nested_keys(data["levels"]),
                            strict=True):
            lab = pd.factorize(pd.Series([str(x) for x in keys]))[0]
            R += s2 * (lab[:, None] == lab[None, :])
        return R
    # random = ~ outcome | cluster, struct = UN/CS/HCS/DIAG
    outcomes = sorted(set(data["outcome"]))
    o = np.asarray([outcomes.index(x) for x in data["outcome"]])
    cl = np.asarray(data["cluster"])
    tau2 = np.broadcast_to(np.atleast_1d(exp["tau2"]), (len(outcomes),))
    rho = np.atleast_1d(exp["rho"]) if exp["rho"] is not None else np.zeros(1)
    C = np.eye(len(outcomes))
    if case["struct"] == "UN":
        n_o = len(outcomes)
        lower = [(i, j) for j in range(n_o) for i in range(j + 1, n_o)]  # column-major
        for (i, j), r in zip(lower, rho, strict=True):
            C[i, j] = C[j, i] = r
    elif case["struct"] in ("CS", "HCS"):
        C[~np.eye(len(outcomes), dtype=bool)] = rho[0]
    Sigma = np.sqrt(tau2)[:, None] * C * np.sqrt(tau2)[None, :]
    return (cl[:, None] == cl[None, :]) * Sigma[o[:, None], o[None, :]]


def _design(data: dict[str, Any], case: dict[str, Any]) -> npt.NDArray[np.float64]:
    if "X" in case:
        return np.asarray(case["X"], dtype=float)
    k = len(data["yi"])
    mods = dict(data.get("moderators") or {})
    if "outcome" in data:
        mods["outcome"] = data["outcome"]
    cols = []
    for name in np.atleast_1d(case["expected"]["coef_names"]):
        if name == "intrcpt":
            cols.append(np.ones(k))
        elif name in mods:
            cols.append(np.asarray(mods[name], dtype=float))
        else:  # treatment-coded level of a categorical moderator
            var = next(v for v in mods if name.startswith(v))
            cols.append(np.asarray(mods[var]) == name[len(var):])
    return np.column_stack(cols).astype(float)


def _stand_in(data: dict[str, Any], case: dict[str, Any]) -> StandInFit:
    exp = case["expected"]
    M = _sampling_V(data) + _random_part(data, case)
    X = _design(data, case)
    coef = np.atleast_1d(np.asarray(exp["coef"], dtype=float))
    W = np.linalg.inv(M)
    vcov = np.linalg.inv(X.T @ W @ X)
    # the stand-in's GLS coefficients are the reference's: M and X are right
    np.testing.assert_allclose(vcov @ X.T @ W @ np.asarray(data["yi"]), coef, rtol=1e-6,
                               atol=1e-10)
    names = tuple(np.atleast_1d(exp["coef_names"]))
    return StandInFit(X, np.asarray(data["yi"], dtype=float), coef, names, vcov, 0.95, M,
                      data.get("levels"))


def _outer_cluster(data: dict[str, Any]) -> list[str]:
    if "levels" in data:
        return list(next(iter(data["levels"].values())))
    return list(data["cluster"])


MV_CASES = [
    pytest.param(path, i, id=f"{path.stem}-{i}-{c.get('struct', c['method'])}")
    for path in MV_FILES
    for i, c in enumerate(_load(path)["cases"])
    if "robust" in c["expected"]
]


@pytest.mark.parametrize(("path", "i"), MV_CASES)
def test_multilevel_against_clubsandwich_and_metafor(path: Path, i: int) -> None:
    data = _load(path)
    case = data["cases"][i]
    fit = _stand_in(data, case)
    exp = dict(case["expected"])
    exp["coef_names"] = list(np.atleast_1d(exp["coef_names"]))
    _check_all(fit, _outer_cluster(data), exp, RTOL_MV)


def test_cluster_by_level_name() -> None:
    data = _load(REF / "mv_konstantopoulos2011.json")
    case = next(c for c in data["cases"] if "robust" in c["expected"])
    fit = _stand_in(data, case)
    by_name = _quiet(robust, fit, "district")
    by_labels = _quiet(robust, fit, data["levels"]["district"])
    np.testing.assert_array_equal(by_name.vcov, by_labels.vcov)
    np.testing.assert_array_equal(by_name.df, by_labels.df)
    with pytest.raises(ModelSpecificationError, match="not a level"):
        robust(fit, "region")


def test_clusters_that_split_a_block_are_an_error() -> None:
    # schools are nested in districts: clustering by school splits the district blocks
    data = _load(REF / "mv_konstantopoulos2011.json")
    case = next(c for c in data["cases"] if "robust" in c["expected"])
    fit = _stand_in(data, case)
    school = [f"{d}.{s}" for d, s in zip(data["levels"]["district"], data["levels"]["school"],
                                         strict=True)]
    with pytest.raises(ModelSpecificationError, match="split a block"):
        robust(fit, school)


# ---------------------------------------------------------------------------
# Invariances and relationships
# ---------------------------------------------------------------------------


def _assink() -> tuple[dict[str, Any], Any]:
    data = _load(REF / "robust_assink2016.json")
    return data, am.meta_regression(yi=data["yi"], vi=data["vi"],
                                    moderators=data["moderators"])


def test_shuffled_rows_and_relabelled_clusters_give_the_same_result() -> None:
    data, fit = _assink()
    ref = _quiet(robust, fit, data["cluster"])
    # the clusters under other (unsorted, non-contiguous) names
    rng = np.random.default_rng(7)
    names = sorted(set(data["cluster"]))
    new = dict(zip(names, rng.permutation([f"s{j}" for j in range(len(names))]),
                   strict=True))
    relabelled = _quiet(robust, fit, [new[c] for c in data["cluster"]])
    # the data in a shuffled order, refitted
    perm = rng.permutation(len(data["yi"]))
    mods = {k: np.asarray(v, dtype=object if isinstance(v[0], str) else float)[perm]
            for k, v in data["moderators"].items()}
    fit_p = am.meta_regression(yi=np.asarray(data["yi"])[perm],
                               vi=np.asarray(data["vi"])[perm], moderators=mods)
    shuffled = _quiet(robust, fit_p, np.asarray(data["cluster"])[perm])
    # only the order of floating-point sums differs: agreement to ~1e-13
    for other in (relabelled, shuffled):
        for attr in ("coef", "se", "df", "pvalue", "vcov"):
            np.testing.assert_allclose(getattr(other, attr), getattr(ref, attr),
                                       rtol=1e-10, err_msg=attr)
        assert other.n_clusters == ref.n_clusters
        np.testing.assert_allclose(_quiet(other.wald_test).F, _quiet(ref.wald_test).F,
                                   rtol=1e-10)


def test_cr0_cr1_cr2_relationships() -> None:
    data, fit = _assink()
    cr0 = _quiet(robust, fit, data["cluster"], adjust="CR0")
    cr1 = robust(fit, data["cluster"], adjust="CR1")
    cr2 = _quiet(robust, fit, data["cluster"], adjust="CR2")
    n, p = cr0.n_clusters, len(cr0.coef)
    # CR1 is CR0 scaled by n/(n-p), on n - p df
    np.testing.assert_allclose(cr1.vcov, cr0.vcov * n / (n - p), rtol=1e-12)
    assert np.all(cr1.df == n - p)
    np.testing.assert_array_equal(cr0.coef, cr2.coef)
    # CR2 inflates the underestimating CR0 here
    assert np.all(cr2.se > cr0.se)


def test_cr2_is_unbiased_under_the_working_model() -> None:
    # E[V^CR2] = Σ_j gram_j - Σ_j H_j H_j' equals the model-based (X'WX)^{-1} when
    # no cluster's G_j is singular (tannersmith2016: propmale varies across
    # studies); CR0's expectation is smaller.  (In assink2016 the reference level
    # of deltype occurs in one study only, its G_j is singular, and CR2 is unbiased
    # only for the other contrasts, as in clubSandwich.)
    data = _load(REF / "robust_tannersmith2016.json")
    fit = am.meta_regression(yi=data["yi"], vi=data["vi"], moderators=data["moderators"])
    for adjust, unbiased in (("CR2", True), ("CR0", False)):
        s = _quiet(robust, fit, data["cluster"], adjust=adjust)._sandwich
        assert s.gram is not None and s.H is not None
        expected = s.gram.sum(0) - np.einsum("jau,jbu->ab", s.H, s.H)
        if unbiased:
            np.testing.assert_allclose(expected, s.bread, rtol=1e-10)
        else:
            assert np.all(np.diag(expected) < np.diag(s.bread))


def test_cr2_with_single_effect_clusters_is_hc2() -> None:
    # one effect per cluster, intercept only: A_j = (1 - h_j)^{-1/2}, the HC2
    # estimator Σ w_j² r_j² / (1 - h_j) / (Σ w)², h_j = w_j / Σ w
    data = _load(REF / "pool_bcg_rr.json") if (REF / "pool_bcg_rr.json").exists() else None
    assert data is not None
    yi, vi = np.asarray(data["yi"], dtype=float), np.asarray(data["vi"], dtype=float)
    fit = am.random_effects(yi=yi, vi=vi)
    res = robust(fit, np.arange(len(yi)))
    w = 1.0 / (vi + fit.tau2)
    r = yi - fit.estimate
    h = w / w.sum()
    hc2 = np.sum(w**2 * r**2 / (1.0 - h)) / w.sum() ** 2
    np.testing.assert_allclose(res.vcov[0, 0], hc2, rtol=1e-12)


def test_chi2_wald_test_is_the_naive_test() -> None:
    data, fit = _assink()
    res = _quiet(robust, fit, data["cluster"])
    w = res.wald_test([1, 2, 3], test="chi2")
    b = res.coef[1:]
    Q = b @ np.linalg.solve(res.vcov[1:, 1:], b)
    np.testing.assert_allclose(w.Q, Q, rtol=1e-12)
    np.testing.assert_allclose(w.F, Q / 3, rtol=1e-12)
    assert (w.test, w.df_num, w.df_denom) == ("chi2", 3, np.inf)
    from scipy import stats

    np.testing.assert_allclose(w.pvalue, stats.chi2.sf(Q, 3), rtol=1e-10)
    # by name, and in another order, is the same test
    w2 = res.wald_test(["deltypeovert", "year", "deltypegeneral"], test="chi2")
    np.testing.assert_allclose(w2.Q, Q, rtol=1e-12)
    h1 = _quiet(res.wald_test, [3, 1, 2])
    h2 = _quiet(res.wald_test)
    np.testing.assert_allclose([h1.F, h1.df_denom], [h2.F, h2.df_denom], rtol=1e-10)


def test_adjustment_registry() -> None:
    assert set(sw.ADJUSTMENTS) == {"CR0", "CR1", "CR2"}
    assert sw.ADJUSTMENTS["CR1"].scale(10, 2) == 10 / 8
    assert sw.ADJUSTMENTS["CR2"].df == "satterthwaite"
    assert sw.ADJUSTMENTS["CR1"].df == "clusters"


# ---------------------------------------------------------------------------
# Bad input and warnings
# ---------------------------------------------------------------------------


def test_one_cluster_is_an_error() -> None:
    data, fit = _assink()
    with pytest.raises(ModelSpecificationError, match="one cluster"):
        robust(fit, ["a"] * len(data["yi"]))


def test_fewer_clusters_than_coefficients_is_an_error() -> None:
    data, fit = _assink()  # 4 coefficients
    lab = (["a", "b", "c"] * len(data["yi"]))[: len(data["yi"])]
    with pytest.raises(ModelSpecificationError, match="3 clusters for 4 coefficients"):
        robust(fit, lab)
    lab4 = (["a", "b", "c", "d"] * len(data["yi"]))[: len(data["yi"])]
    with pytest.raises(ModelSpecificationError, match="CR1 needs more clusters"):
        robust(fit, lab4, adjust="CR1")


def test_wrong_length_or_missing_labels_are_errors() -> None:
    data, fit = _assink()
    with pytest.raises(InvalidStudyError, match="99 labels but the fit has 100 effects"):
        robust(fit, data["cluster"][:-1])
    lab = list(data["cluster"])
    lab[5] = None
    with pytest.raises(InvalidStudyError, match=r"study '5'.*missing"):
        robust(fit, lab)
    with pytest.raises(ModelSpecificationError, match="no levels"):
        robust(fit, "study")
    with pytest.raises(ModelSpecificationError, match="adjust must be"):
        robust(fit, data["cluster"], adjust="CR3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fitted model"):
        robust(object(), data["cluster"])


def test_wald_test_arguments() -> None:
    data, fit = _assink()
    res = _quiet(robust, fit, data["cluster"])
    with pytest.raises(ModelSpecificationError, match="out of range"):
        res.wald_test([4])
    with pytest.raises(ModelSpecificationError, match="repeats"):
        res.wald_test([1, 1])
    with pytest.raises(ModelSpecificationError, match="no coefficient named"):
        res.wald_test(["age"])
    with pytest.raises(ModelSpecificationError, match="'HTZ' or 'chi2'"):
        res.wald_test(test="F")  # type: ignore[arg-type]
    pooled = robust(am.random_effects(yi=data["yi"], vi=data["vi"]), data["cluster"])
    # the intercept-only model's default test is the intercept's (metafor's btt),
    # and its HTZ test is its squared Satterthwaite t test
    w = pooled.wald_test()
    assert w.coefs == ("intrcpt",)
    np.testing.assert_allclose([w.F, w.df_denom, w.pvalue],
                               [pooled.statistic[0] ** 2, pooled.df[0], pooled.pvalue[0]],
                               rtol=1e-10)


def test_few_df_warn() -> None:
    data = _load(REF / "robust_konstantopoulos2011.json")  # df ≈ 3.3
    fit = am.meta_regression(yi=data["yi"], vi=data["vi"], moderators=data["moderators"])
    with pytest.warns(FewStudiesWarning, match="below 4.*unreliable"):
        res = robust(fit, data["cluster"])
    with pytest.warns(FewStudiesWarning, match="HTZ"):
        res.wald_test()
    # CR1 has no Satterthwaite df, and an intercept-only fit here has df ≈ 7.4
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewStudiesWarning)
        robust(fit, data["cluster"], adjust="CR1")
        robust(am.random_effects(yi=data["yi"], vi=data["vi"]), data["cluster"])


# ---------------------------------------------------------------------------
# Result contract
# ---------------------------------------------------------------------------


def test_result_contract() -> None:
    data, fit = _assink()
    res = _quiet(robust, fit, data["cluster"])
    assert isinstance(res.summary(), Summary)
    text = str(res)
    assert "CR2" in text and "Satterthwaite" in text and "HTZ" in text
    frame = res.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.index) == list(res.coef_names)
    np.testing.assert_array_equal(frame["df"], res.df)
    assert "\n" not in repr(res) and len(repr(res)) < 800
    assert re.match(r"RobustResult\(coef_names=", repr(res))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        res.adjust = "CR1"  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        res.se[0] = 1.0
    w = _quiet(res.wald_test)
    assert isinstance(w.summary(), Summary) and "HTZ" in str(w)
    assert list(w.to_frame().columns) == ["F", "df_num", "df_denom", "pvalue", "Q"]
    assert w.coefs == ("year", "deltypegeneral", "deltypeovert")
    assert res.n_clusters == len(set(data["cluster"])) and res.k == len(data["yi"])


def test_the_fits_test_option_does_not_enter_the_sandwich() -> None:
    # The bread is (X'WX)^{-1} of the model's weights whatever the fit's test:
    # clubSandwich recomputes it from the weights (its CR2 is the same for z and
    # knha fits).  metafor 3.8.1's robust() instead reuses the fit's vb, which under
    # test="knha" carries the Knapp-Hartung factor s², so its CR1 variance is s⁴
    # times ours on knha fits (s² = 0.9646 for konstantopoulos2011 with year: its SEs
    # are 0.9646 x those of the z fit); ours is the estimator its code comment
    # intends, "vb = (X'WX)^-1".
    data = _load(REF / "robust_konstantopoulos2011.json")
    z = am.meta_regression(yi=data["yi"], vi=data["vi"], moderators=data["moderators"])
    knha = am.meta_regression(yi=data["yi"], vi=data["vi"], moderators=data["moderators"],
                              test="knha")
    for adjust in ("CR1", "CR2"):
        a = _quiet(robust, z, data["cluster"], adjust=adjust)
        b = _quiet(robust, knha, data["cluster"], adjust=adjust)
        np.testing.assert_allclose(b.vcov, a.vcov, rtol=1e-12)


def test_core_accepts_blocks_in_any_order_and_padding_anywhere() -> None:
    data, fit = _assink()
    ref = _quiet(robust, fit, data["cluster"])
    codes = pd.factorize(np.asarray(data["cluster"]), sort=True)[0].astype(np.int64)
    X, y, coef = fit.X, np.asarray(data["yi"]), fit.coef
    vi, tau2 = np.asarray(data["vi"]), fit.tau2
    G = int(codes.max()) + 1
    b = int(np.bincount(codes).max()) + 2
    rng = np.random.default_rng(3)
    rows = rng.permutation(G)
    index = np.full((G, b), -1, dtype=np.int64)
    M = np.tile(np.eye(b), (G, 1, 1))
    for row, g in zip(range(G), rows, strict=True):
        members = np.flatnonzero(codes == g)
        slots = np.sort(rng.choice(b, size=members.size, replace=False))
        index[row, slots] = members
        M[row, slots, slots] = vi[members] + tau2
    s = _quiet(sw.cluster_sandwich, X, y, codes, index, M, coef, "CR2")
    np.testing.assert_allclose(s.vcov, ref.vcov, rtol=1e-12)
    np.testing.assert_allclose(s.df, ref.df, rtol=1e-12)
    # blocks that mix two clusters (one effect swapped between two blocks) are an error
    two = index.copy()
    i0, i1 = np.flatnonzero(two[0] >= 0)[0], np.flatnonzero(two[1] >= 0)[0]
    two[0, i0], two[1, i1] = index[1, i1], index[0, i0]
    with pytest.raises(ModelSpecificationError, match="two clusters"):
        sw.cluster_sandwich(X, y, codes, two, M, coef, "CR2")
