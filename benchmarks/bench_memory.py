"""Peak memory growth of the model functions at large k (issue 18: never k x k).

Usage::

    python benchmarks/bench_memory.py --k 60000 --k-refits 20000

Each call runs with :mod:`tracemalloc` on (numpy reports its allocations to it) and
prints the peak of memory allocated during the call, beyond what existed before.
A dense ``k x k`` float64 matrix would take ``8 k²`` bytes: 26.8 GiB at
k = 60,000.  Meta-regression, common-τ² subgroups, Egger's test (``model="rma"``)
and trim and fill run at ``--k``; leave-one-out, cumulative and influence refit the
model k times (their time grows as k², their memory as k per batch of refits) and
run at ``--k-refits``.  Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import alliance_meta as am

GIB = 2.0**30


def peak(fn: Callable[[], Any]) -> tuple[float, float]:
    """``(peak growth in GiB, seconds)`` of one call."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t = time.perf_counter()
    fn()
    el = time.perf_counter() - t
    top = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (top - base) / GIB, el


def data(k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.2, k)
    x1 = rng.normal(size=k)
    x2 = rng.choice([0.0, 1.0, 2.0], k)
    y = 0.2 + 0.1 * x1 - 0.3 * np.sqrt(v) + rng.normal(0, np.sqrt(v + 0.05))
    return y, v, x1, x2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--k", type=int, default=60_000)
    ap.add_argument("--k-refits", type=int, default=20_000)
    ap.add_argument("--method", default="REML")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    k = args.k
    y, v, x1, x2 = data(k)
    fit = am.random_effects(yi=y, vi=v, method=args.method)
    studies = am.StudySet.from_arrays(
        y, v, moderators={"x1": x1, "grp": [f"g{int(g)}" for g in x2]}
    )
    kk = args.k_refits
    yr, vr, _, _ = data(kk, seed=1)
    fit_r = am.random_effects(yi=yr, vi=vr, method="DL")
    rows: list[tuple[str, int, Callable[[], Any]]] = [
        ("random_effects", k, lambda: am.random_effects(yi=y, vi=v, method=args.method)),
        ("meta_regression (p = 2)", k,
         lambda: am.meta_regression(yi=y, vi=v, moderators={"x1": x1}, method=args.method)),
        ("meta_regression (p = 4)", k,
         lambda: am.meta_regression(studies, moderators=["x1", "grp"], method=args.method)),
        ("subgroup_analysis (common tau2)", k,
         lambda: am.subgroup_analysis(studies, by="grp", tau2="common")),
        ("egger_test (model='rma')", k, lambda: am.egger_test(fit, model="rma")),
        ("trim_and_fill", k, lambda: am.trim_and_fill(fit)),
        ("rank_correlation_test", k, lambda: am.rank_correlation_test(fit)),
        ("leave_one_out (DL)", kk, lambda: am.leave_one_out(fit_r)),
        ("cumulative (DL)", kk, lambda: am.cumulative(fit_r)),
        ("influence (DL)", kk, lambda: am.influence(fit_r)),
    ]
    print(f"{'call':34s} {'k':>7s} {'peak growth':>12s} {'k x k would be':>15s} {'time':>8s}")
    for name, kn, fn in rows:
        gib, el = peak(fn)
        print(f"{name:34s} {kn:7d} {gib * 1024:9.1f} MiB {8 * kn * kn / GIB:11.1f} GiB "
              f"{el:7.2f}s")


if __name__ == "__main__":
    main()
