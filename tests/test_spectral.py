"""The spectral path of the multilevel core (``core.multilevel.Spectral``) against the
general blockwise path.

For nested models whose random effects are only "same effect" (``I``) and "same
block" (``11'``) bases -- ``~ 1 | study/es`` with blocks the studies, the CHE working
model -- the log-likelihood, its score and Hessian and the sampling statistics come
from ``V``'s eigen-decomposition instead of Cholesky factors of ``M``.  Both are
exact formulas; they must agree to rounding on any such problem.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from alliance_meta.core import multilevel as core
from alliance_meta.models.multilevel import covariance_matrix, multilevel, multivariate

# Two exact computations of the same quantities in double precision: their
# differences are rounding, amplified at most by the conditioning of the blocks
# (V's condition number here is below 1e3).  1e-10 relative is far above that and
# far below any formula error (which moves the values at 1e-3 or more).
RTOL = 1e-10


def _data(n_studies: int, seed: int, max_k: int = 7) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ks = rng.integers(1, max_k + 1, n_studies)
    study = np.repeat(np.arange(n_studies), ks)
    k = study.size
    vi = rng.uniform(0.01, 0.2, k)
    x = rng.normal(size=k)
    yi = 0.1 + 0.2 * x + rng.normal(0, 0.2, n_studies)[study] + rng.normal(0, 0.15, k)
    es = np.concatenate([np.arange(n) for n in ks])
    return {"yi": yi, "vi": vi, "x": x, "study": study.astype(str), "es": es.astype(str)}


def _problems() -> list[tuple[str, core.Problem]]:
    d = _data(40, 1)
    V = covariance_matrix(vi=d["vi"], cluster=d["study"], rho=0.6)
    che = multilevel(yi=d["yi"], V=V, levels={"study": d["study"], "es": d["es"]},
                     moderators={"x": d["x"]})
    j_only = multilevel(yi=d["yi"], V=V, levels={"study": d["study"]})
    i_only = multilevel(yi=d["yi"], vi=d["vi"], levels={"es": np.arange(d["yi"].size)})
    diag = multilevel(yi=d["yi"], vi=d["vi"], levels={"study": d["study"], "es": d["es"]},
                      moderators={"x": d["x"]}, method="ML")
    return [("che", che._problem), ("study only", j_only._problem),
            ("effect only", i_only._problem), ("diagonal V", diag._problem)]


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("case", range(4))
def test_spectral_evaluation_equals_the_general_path(case: int, reml: bool) -> None:
    name, P = _problems()[case]
    assert P.spectral is not None, name
    G = dataclasses.replace(P, use_spectral=False)
    rng = np.random.default_rng(case)
    q = P.structure.n_params
    theta = np.abs(rng.normal(size=(6, q))) * 0.05
    theta[0] = 0.0  # M = V
    theta[1, 0] = 0.0  # a component at its bound
    for order in (0, 1, 2):
        a = core.evaluate(P, theta, reml, order)
        b = core.evaluate(G, theta, reml, order)
        for field in ("ll", "beta", "vb", "grad", "hess", "info"):
            x, y = getattr(a, field), getattr(b, field)
            if y is None:
                assert x is None
                continue
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=RTOL * np.abs(y).max(),
                                       err_msg=f"{name} {field} order {order}")
    sa, sb = core.sampling_stats(P), core.sampling_stats(G)
    for field in ("QE", "ll_QE", "trace_P", "beta"):
        np.testing.assert_allclose(getattr(sa, field), getattr(sb, field), rtol=RTOL,
                                   atol=1e-14, err_msg=field)


def test_fits_are_the_same_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    d = _data(60, 2)
    V = covariance_matrix(vi=d["vi"], cluster=d["study"], rho=0.4)
    kw: dict[str, Any] = {"yi": d["yi"], "V": V, "levels": {"study": d["study"],
                                                           "es": d["es"]},
                          "moderators": {"x": d["x"]}}
    fast = multilevel(**kw)
    monkeypatch.setattr(core, "_spectral", lambda *a, **k: None)
    slow = multilevel(**kw)
    assert fast._problem.spectral is not None and slow._problem.spectral is None
    np.testing.assert_allclose(fast.sigma2, slow.sigma2, rtol=1e-9)
    np.testing.assert_allclose(fast.loglik, slow.loglik, rtol=1e-13)
    np.testing.assert_allclose(fast.se, slow.se, rtol=1e-9)
    np.testing.assert_allclose(fast.QE, slow.QE, rtol=1e-12)
    np.testing.assert_allclose(fast.I2_levels, slow.I2_levels, rtol=1e-9)


def test_general_path_where_the_bases_are_not_spectral() -> None:
    d = _data(30, 3)
    k = d["yi"].size
    # three levels: the middle level's basis is neither I nor 11'
    sample = np.array([f"{s}.{int(e) // 2}" for s, e in zip(d["study"], d["es"], strict=True)])
    three = multilevel(yi=d["yi"], vi=d["vi"],
                       levels={"study": d["study"], "sample": sample, "es": d["es"]})
    assert three._problem.spectral is None
    # multivariate models use the general path
    out = np.where(np.arange(k) % 2 == 0, "a", "b")
    mv = multivariate(yi=d["yi"], V=d["vi"], cluster=d["study"], outcome=out, struct="DIAG")
    assert mv._problem.spectral is None
    # V linking studies: blocks are not the outer clusters, so 11' is not a block basis
    V = np.diag(d["vi"])
    V[0, k - 1] = V[k - 1, 0] = 0.5 * np.sqrt(d["vi"][0] * d["vi"][-1])
    linked = multilevel(yi=d["yi"], V=V, levels={"study": d["study"], "es": d["es"]})
    assert linked._problem.spectral is None


def test_ill_conditioned_v_uses_the_general_path() -> None:
    # rho = 1: every block of V is singular; the general path names the study
    d = _data(10, 4)
    V = covariance_matrix(vi=d["vi"], cluster=d["study"], rho=1.0)
    P = core.build_problem(d["yi"], np.ones((d["yi"].size, 1)), V,
                           [np.unique(d["study"], return_inverse=True)[1],
                            np.arange(d["yi"].size)], core.Structure(2))
    assert P.spectral is None
