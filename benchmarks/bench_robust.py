"""CR2 cluster-robust inference on a large three-level problem: the figures.

Usage::

    python benchmarks/bench_robust.py [--effects 70000] [--clusters 20000] [--repeat 7]

Issue 14 asks that CR2 (with Satterthwaite df and the HTZ test) on the 70,000-effect
three-level benchmark of the dependent-effects issue cost at most 2x the model fit.
That ratio, on the real ``multilevel`` fit, is part (b) of
``benchmarks/bench_multilevel.py``.  This script isolates the sandwich: it times CR2
against the cost of *one* weighted least-squares (GLS) fit of the same marginal
blocks -- one step of what a REML fit repeats at every likelihood evaluation -- so
the ratio printed here is an upper bound on the ratio to a whole fit.

The problem: ``effects`` effects in ``clusters`` clusters of 1-7 effects (unequal
sizes, mean 3.5 for the defaults), 2 coefficients (an intercept and a continuous
moderator), and a CHE-style marginal covariance within each cluster,
``M_j = V_j + σ²_study J + σ²_es I`` with ``V_j`` a constant sampling correlation
ρ = 0.6 between effects with unequal sampling variances (``vcalc``'s recipe).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from alliance_meta.core.sandwich import (
    cluster_coef_tests,
    cluster_sandwich,
    htz_test,
    lower_solve,
)
from alliance_meta.models.robust import robust

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def make_problem(k: int, G: int, seed: int = 0) -> dict[str, Any]:
    """Effects, design, cluster codes and the padded CHE blocks."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 8, size=G)
    # adjust to exactly k effects, keeping sizes in 1..7
    while sizes.sum() != k:
        d = k - sizes.sum()
        j = rng.integers(0, G, size=abs(d))
        sizes[j] = np.clip(sizes[j] + np.sign(d), 1, 7)
    codes = np.repeat(np.arange(G), sizes)
    vi = rng.uniform(0.01, 0.2, size=k)
    x = rng.normal(size=G)[codes] + 0.3 * rng.normal(size=k)
    X = np.column_stack([np.ones(k), x])
    s2_study, s2_es, rho = 0.05, 0.02, 0.6
    b = int(sizes.max())
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    slot = np.arange(k) - np.repeat(starts, sizes)
    index = np.full((G, b), -1, dtype=np.int64)
    index[codes, slot] = np.arange(k)
    sd = np.zeros((G, b))
    sd[codes, slot] = np.sqrt(vi)
    valid = index >= 0
    both = valid[:, :, None] & valid[:, None, :]
    M = np.where(both, rho * sd[:, :, None] * sd[:, None, :] + s2_study, 0.0)
    eye = np.eye(b, dtype=bool)[None]
    M = np.where(eye & both, sd[:, :, None] ** 2 + s2_study + s2_es, M)
    M = np.where(eye & ~both, 1.0, M)
    # effects drawn from the model
    L = np.linalg.cholesky(M)
    e = (L @ rng.normal(size=(G, b, 1)))[:, :, 0][valid]
    y = X @ np.array([0.3, 0.1]) + e[np.argsort(index[valid])]
    return {"X": X, "y": y, "codes": codes, "index": index, "M": M, "sizes": sizes}


def gls_fit(X: FloatArray, y: FloatArray, index: IntArray, M: FloatArray) -> FloatArray:
    """One blockwise GLS fit, batched by cluster size as the sandwich is."""
    p = X.shape[1]
    sizes = (index >= 0).sum(axis=1)
    XtWX = np.zeros((p, p))
    XtWy = np.zeros(p)
    for s in np.unique(sizes):
        members = np.flatnonzero(sizes == s)
        idx = index[members, :s]
        L = np.linalg.cholesky(M[members, :s, :s])
        rhs = np.concatenate([X[idx], y[idx][:, :, None]], axis=2)
        sol = lower_solve(L, rhs)
        Z, w = sol[:, :, :p], sol[:, :, p]
        XtWX += np.einsum("nsa,nsb->ab", Z, Z)
        XtWy += np.einsum("nsa,ns->a", Z, w)
    out: FloatArray = np.linalg.solve(XtWX, XtWy)
    return out


class BlocksFit:
    """A stand-in fit whose ``marginal_blocks`` returns the precomputed blocks."""

    def __init__(self, prob: dict[str, Any], coef: FloatArray) -> None:
        self.X, self.yi, self.coef = prob["X"], prob["y"], coef
        self.coef_names = ("intrcpt", "x")
        self.level = 0.95
        self._index, self._M = prob["index"], prob["M"]

    def marginal_blocks(self, codes: IntArray) -> tuple[IntArray, FloatArray]:
        return self._index, self._M


def best_interleaved(
    fns: dict[str, Callable[[], object]], repeat: int
) -> dict[str, tuple[float, float]]:
    """Best wall and CPU time of each function over ``repeat`` rounds run in turn.

    Interleaving makes the ratios robust to a machine whose load changes while the
    benchmark runs (the best of each is its least disturbed run); the CPU time
    (``process_time``) is less sensitive to other processes on a shared machine.
    """
    for fn in fns.values():
        fn()  # warm up
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {name: (min(wall[name]), min(cpu[name])) for name in fns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--effects", type=int, default=70_000)
    ap.add_argument("--clusters", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    prob = make_problem(args.effects, args.clusters)
    X, y, codes, index, M = (prob[n] for n in ("X", "y", "codes", "index", "M"))
    coef = gls_fit(X, y, index, M)
    fit = BlocksFit(prob, coef)
    btt = np.array([1])

    def cr2_full() -> None:
        s = cluster_sandwich(X, y, codes, index, M, coef, "CR2")
        cluster_coef_tests(s, 0.95)
        htz_test(s, btt)

    times = best_interleaved(
        {
            "one GLS fit of the blocks": lambda: gls_fit(X, y, index, M),
            "CR1 sandwich (metafor's robust)": lambda: cluster_sandwich(
                X, y, codes, index, M, coef, "CR1"
            ),
            "CR2 sandwich + Satterthwaite df": lambda: cluster_sandwich(
                X, y, codes, index, M, coef, "CR2"
            ),
            "CR2 + coef tests + HTZ test": cr2_full,
            "robust(fit, cluster) (public, CR2)": lambda: robust(fit, codes),
        },
        args.repeat,
    )
    base_wall, base_cpu = times["one GLS fit of the blocks"]
    print(
        f"{args.effects} effects in {args.clusters} clusters (sizes "
        f"{prob['sizes'].min()}-{prob['sizes'].max()}), p = 2, CHE blocks; "
        f"best of {args.repeat} (wall, and CPU time of this process)"
    )
    for name, (w, c) in times.items():
        print(
            f"  {name:<36s} {1e3 * w:7.1f} ms {w / base_wall:5.2f}x   "
            f"cpu {1e3 * c:7.1f} ms {c / base_cpu:5.2f}x"
        )

if __name__ == "__main__":
    main()
