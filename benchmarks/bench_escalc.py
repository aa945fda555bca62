"""Time alliance_meta.escalc for every measure on a million generated rows.

Usage::

    python benchmarks/bench_escalc.py --rows 1000000 --repeat 3

Each measure runs on ``--rows`` rows of valid, realistic input (sample sizes 10 to
2000, zero cells and counts as they come); the time is the best of ``--repeat``
runs of the whole ``escalc`` call (checks, computation, result).  RTET replicates
metafor's per-table maximum likelihood fit (Brent, Nelder-Mead, numerical Hessian,
about 100 likelihood evaluations per table, all tables in lockstep); it runs once,
on ``--rtet-rows`` rows (default: all), extrapolated linearly if fewer.  UCOR is
also timed on small samples (n 5 to 50), where its hypergeometric function takes
the slower analytic continuation, and against scipy's ``hyp2f1``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy
from scipy import special

import alliance_meta as am
from alliance_meta.data import measures as M


def make_inputs(measure: str, k: int, rng: np.random.Generator) -> dict[str, Any]:
    """Valid inputs of ``measure`` for ``k`` rows."""
    spec = M.get(measure)
    n = rng.integers(10, 2000, k).astype(float)
    n1 = rng.integers(5, 1000, k).astype(float)
    n2 = rng.integers(5, 1000, k).astype(float)
    fam = spec.family
    if fam in ("2x2 tables", "paired 2x2 tables"):
        a = rng.binomial(n1.astype(int), 0.3).astype(float)
        c = rng.binomial(n2.astype(int), 0.2).astype(float)
        b, d = n1 - a, n2 - c
        if measure == "RTET":
            a, b, c, d = a + 1, b + 1, c + 1, d + 1
        out = {"ai": a, "bi": b, "ci": c, "di": d}
        if measure == "MPORM":
            out["ri"] = rng.uniform(0, 0.6, k)
        return out
    if fam == "genotype counts":
        return {"ai": n1, "bi": n2, "ci": n1 + 3}
    if fam == "incidence rates":
        t = rng.uniform(50, 5000, k)
        return {"xi": rng.poisson(t * 0.01).astype(float), "ti": t}
    if fam == "incidence rate comparisons":
        t1, t2 = rng.uniform(50, 5000, k), rng.uniform(50, 5000, k)
        return {"x1i": rng.poisson(t1 * 0.01).astype(float),
                "x2i": rng.poisson(t2 * 0.02).astype(float), "t1i": t1, "t2i": t2}
    if fam == "proportions":
        return {"xi": rng.binomial(n.astype(int), 0.3).astype(float), "ni": n}
    if fam == "correlations":
        out = {"ri": rng.uniform(-0.95, 0.95, k), "ni": n}
        if measure in ("PCOR", "ZPCOR", "SPCOR"):
            out = {"ti": np.clip(rng.normal(0, 1.5, k), -4.5, 4.5), "ni": n + 50,
                   "mi": rng.integers(1, 8, k).astype(float),
                   "r2i": rng.uniform(0.5, 0.9, k)}
        return out
    if fam == "two-group means":
        return {"m1i": rng.uniform(5, 10, k), "m2i": rng.uniform(5, 10, k),
                "sd1i": rng.uniform(0.5, 3, k), "sd2i": rng.uniform(0.5, 3, k),
                "n1i": n1, "n2i": n2}
    if fam == "single-group means":
        return {"mi": rng.uniform(5, 10, k), "sdi": rng.uniform(0.5, 3, k), "ni": n}
    if fam == "pre-post change":
        return {"m1i": rng.uniform(5, 10, k), "m2i": rng.uniform(5, 10, k),
                "sd1i": rng.uniform(0.5, 3, k), "sd2i": rng.uniform(0.5, 3, k), "ni": n,
                "ri": rng.uniform(0.1, 0.9, k)}
    if fam == "reliability (Cronbach's alpha)":
        return {"ai": rng.uniform(0.5, 0.95, k), "mi": rng.integers(3, 40, k).astype(float),
                "ni": n}
    if fam == "generic":
        return {"yi": rng.normal(0, 1, k), "vi": rng.uniform(0.01, 0.2, k)}
    raise ValueError(fam)


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rtet-rows", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"alliance_meta escalc, {args.rows:,} rows, best of {args.repeat}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}, scipy {scipy.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'measure':8s} {'s per 1e6 rows':>15s}")
    worst = ("", 0.0)
    for measure in M.names():
        k = (args.rtet_rows or args.rows) if measure == "RTET" else args.rows
        inputs = make_inputs(measure, k, rng)
        repeat = 1 if measure == "RTET" else args.repeat
        sec = best(lambda m=measure, i=inputs: am.escalc(m, **i), repeat)
        per_million = sec * 1_000_000 / k
        note = f"  (on {k} rows, extrapolated)" if k != args.rows else ""
        if measure == "RTET":
            note += "  (one run)"
        print(f"{measure:8s} {per_million:15.3f}{note}")
        if measure != "RTET" and per_million > worst[1]:
            worst = (measure, per_million)
    print(f"slowest vectorised measure: {worst[0]} at {worst[1]:.3f} s per 1e6 rows")
    # UCOR on small samples, and scipy's hyp2f1 on the same (typical) input
    small = {"ri": rng.uniform(-0.95, 0.95, args.rows),
             "ni": rng.integers(5, 50, args.rows).astype(float)}
    sec = best(lambda: am.escalc("UCOR", **small), args.repeat)
    print(f"UCOR with n in 5..49: {sec * 1e6 / args.rows:.3f} s per 1e6 rows")
    r = rng.uniform(-0.95, 0.95, 100_000)
    n = rng.integers(10, 2000, 100_000).astype(float)
    sec = best(lambda: special.hyp2f1(0.5, 0.5, (n - 2) / 2, 1 - r**2), 1)
    print(f"scipy.special.hyp2f1 for UCOR's 2F1: {sec * 10:.1f} s per 1e6 rows")


if __name__ == "__main__":
    main()
