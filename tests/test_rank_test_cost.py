"""The rank correlation test's p-value: exact only where it is cheap (issue 18).

Before: the exact Kendall distribution was used at any k (its cost grows as k³:
31 s at k = 1,500).  Now, by default, as R's ``cor.test``: exact below 50 studies
without ties, the normal approximation above; ``exact=True`` gives metafor's
``ranktest`` default (exact at any k).  References: ranktest_large.json
(generate_ranktest_large.R, metafor 3.8.1).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import alliance_meta as am

REF = json.loads((Path(__file__).parent / "reference" / "ranktest_large.json").read_text())
#: p-values and τ from closed forms and scipy's implementation of R's algorithms:
#: agreement to round-off, 1e-10
RTOL = 1e-10


@pytest.mark.parametrize("name", sorted(REF["cases"]))
def test_default_follows_cor_test_and_exact_true_follows_metafor(name: str) -> None:
    case = REF["cases"][name]
    fit = am.fixed_effect(yi=case["yi"], vi=case["vi"])
    k = len(case["yi"])
    default = am.rank_correlation_test(fit)
    assert default.exact == (k < 50)
    assert math.isclose(default.tau, case["tau"], rel_tol=RTOL)
    assert math.isclose(default.pvalue, case["pval_cortest_default"], rel_tol=RTOL)
    exact = am.rank_correlation_test(fit, exact=True)
    assert exact.exact
    assert math.isclose(exact.pvalue, case["pval_exact"], rel_tol=RTOL)  # metafor's default
    approx = am.rank_correlation_test(fit, exact=False)
    assert not approx.exact
    assert math.isclose(approx.pvalue, case["pval_approx"], rel_tol=RTOL)


def test_many_studies_use_the_normal_approximation() -> None:
    """k = 1,500: the default p-value is the normal approximation (the exact one took
    31 s on main); ``exact`` accepts only True, False or None."""
    rng = np.random.default_rng(4)
    k = 1500
    v = rng.uniform(0.01, 0.3, k)
    y = rng.normal(0.1, np.sqrt(v))
    res = am.rank_correlation_test(am.fixed_effect(yi=y, vi=v))
    assert not res.exact and 0.0 <= res.pvalue <= 1.0
    with pytest.raises(am.exceptions.ModelSpecificationError):
        am.rank_correlation_test(am.fixed_effect(yi=y[:5], vi=v[:5]), exact="yes")  # type: ignore[arg-type]
