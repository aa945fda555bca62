"""RTET's batched fit (alliance_meta.data.effect_sizes.tetrachoric): all tables run
metafor's Brent / Nelder-Mead / optimHess steps in lockstep, each with its own
branches.  The per-case comparison with metafor is in test_escalc_measures.py; here:
all of metafor's RTET tables in one batch, independence of a table's result from
its neighbours in the batch, and closeness to the exact maximum likelihood."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special

from alliance_meta.data.effect_sizes.tetrachoric import bvn_upper, tetrachoric

REF = json.loads((Path(__file__).parent / "reference" / "escalc_measures.json").read_text())


def _rtet_reference() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every RTET table of the metafor reference (add applied as metafor does:
    ``add = 1/2`` to every cell of a table with a zero cell), with yi and vi."""
    cells, yi, vi = [], [], []
    for case in REF["cases"]:
        if case["measure"] != "RTET":
            continue
        tab = np.array([case["inputs"][k] for k in ("ai", "bi", "ci", "di")], dtype=float)
        opts: dict[str, Any] = case["options"] if isinstance(case["options"], dict) else {}
        if "add" in opts:
            zero = (tab == 0).any(axis=0)
            tab[:, zero] += opts["add"]
        cells.append(tab)
        yi += case["yi"]
        vi += case["vi"]
    return np.concatenate(cells, axis=1), np.asarray(yi, float), np.asarray(vi, float)


def test_one_batch_of_all_reference_tables_matches_metafor() -> None:
    cells, yi, vi = _rtet_reference()
    assert cells.shape[1] > 50
    # reversed, so that every table has other neighbours than in its own case
    got_yi, got_vi = tetrachoric(*cells[:, ::-1])
    # 1e-6: the tolerance for RTET; the agreement is ~4e-9 (yi) and ~3e-9
    # (vi), the rounding of Genz's algorithm against mvtnorm's build of it
    np.testing.assert_allclose(got_yi[::-1], yi, rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(got_vi[::-1], vi, rtol=1e-6)


def _random_tables(k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = rng.integers(10, 2001, k)
    rho = rng.uniform(-0.999, 0.999, k)
    h, c = rng.normal(0, 1.2, (2, k))
    cells = np.empty((4, k))
    for i in range(k):
        pa = bvn_upper(-c[i], -h[i], rho[i]).item()
        pr, pc = special.ndtr(h[i]), special.ndtr(c[i])
        p = np.clip([pa, pr - pa, pc - pa, 1.0 - pr - pc + pa], 0.0, None)
        cells[:, i] = rng.multinomial(n[i], p / p.sum())
    return cells


def test_a_table_gives_the_same_alone_as_in_a_batch() -> None:
    # the lockstep must not leak between rows: bit for bit the same, whatever the
    # neighbours (strong correlations, extreme margins, zero cells included)
    cells = _random_tables(60, seed=11)
    assert (cells == 0).any(axis=0).sum() >= 5
    yi, vi = tetrachoric(*cells)
    for i in range(cells.shape[1]):
        one_yi, one_vi = tetrachoric(*cells[:, i : i + 1])
        np.testing.assert_array_equal(one_yi, yi[i : i + 1])
        np.testing.assert_array_equal(one_vi, vi[i : i + 1])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 500), min_size=4, max_size=4))
def test_close_to_the_exact_maximum_likelihood(counts: list[int]) -> None:
    # the saturated model's MLE: thresholds at the marginal quantiles and
    # Phi2(h, k; rho) = a / n.  metafor's Nelder-Mead stops short of it by up to
    # ~3.3e-5 in rho (seen over 2,800 random tables); 1e-4 allows for that and
    # would still catch a wrong branch or a wrong likelihood (errors of 1e-2 and up)
    a, b, c, d = (float(x) for x in counts)
    n = a + b + c + d
    cut_row, cut_col = special.ndtri((a + b) / n), special.ndtri((a + c) / n)

    def excess(r: float) -> float:
        return float(bvn_upper(-cut_col, -cut_row, r)) - a / n

    lo, hi = -0.999, 0.999
    if excess(lo) * excess(hi) > 0:  # MLE beyond |rho| = 0.999: metafor clips at 0.9999
        return
    exact = optimize.brentq(excess, lo, hi, xtol=1e-14)
    yi, vi = tetrachoric(*(np.array([x]) for x in (a, b, c, d)))
    assert abs(yi[0] - exact) < 1e-4
    assert vi[0] > 0
