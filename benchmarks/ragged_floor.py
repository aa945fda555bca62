"""Why long-format (ragged) DL stays above 2x the 2-D time: the figures.

Usage::

    python benchmarks/ragged_floor.py --m 100000 --k 12

Issue 6 asks that long-format input (the 1.2 million rows of
``bench_pool_many.py``, shuffled, with group labels) take at most 2x the time of
the same data as a 2-D array, and that a compiled kernel be justified with figures
before a dependency is added.  This script prints those figures, in one process on
the data of ``bench_pool_many.py``:

* ``pool_many`` DL on the 2-D and on the long input;
* the numpy floor of the long path: only the grouped sums it cannot avoid without
  sorting (the pass at τ² = 0 needs Σw, Σwy, Σwy², Σw²; the re-weighted pass Σw*,
  Σw*y; the group sizes), timed as bare numpy primitives on precomputed terms, with
  no arithmetic, no checks and no per-analysis algebra;
* where numba is importable (it is not a dependency of alliance_meta), a fused
  compiled loop doing the whole long-format DL (both passes and the τ² formula,
  again with no checks), with its compile time reported separately.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from bench_pool_many import best, make_data

from alliance_meta import pool_many


def numpy_floor(codes: np.ndarray, m: int, repeat: int) -> dict[str, float]:
    """Best times of the grouped-sum primitives the long DL path needs."""
    n = codes.size
    rng = np.random.default_rng(0)
    pair = rng.normal(size=n) + 1j * rng.normal(size=n)  # two sums per scatter
    tau2 = rng.uniform(0.0, 0.1, m)
    gathered = np.empty(n)

    def scatter() -> None:
        acc = np.zeros(m, dtype=np.complex128)
        np.add.at(acc, codes, pair)

    out = {
        "np.add.at, one complex pair of sums": best(scatter, repeat)[0],
        "np.bincount, group sizes": best(lambda: np.bincount(codes, minlength=m), repeat)[0],
        "np.take, tau2 of each row": best(
            lambda: np.take(tau2, codes, out=gathered, mode="clip"), repeat
        )[0],
    }
    # three pairs of sums (4 at tau2 = 0, 2 re-weighted), the sizes, one gather
    out["floor: 3 scatters + sizes + gather"] = (
        3 * out["np.add.at, one complex pair of sums"]
        + out["np.bincount, group sizes"]
        + out["np.take, tau2 of each row"]
    )
    return out


def numpy_dl(y: np.ndarray, v: np.ndarray, codes: np.ndarray, m: int) -> np.ndarray:
    """The long DL of pool_many with nothing else: no checks, fallbacks or results.

    The same blocks, complex pairs of sums and arithmetic as the library's scatter
    kernel; group sizes by ``bincount``.
    """
    block = 24576
    k = np.bincount(codes, minlength=m)
    acc = [np.zeros(m, dtype=np.complex128) for _ in range(3)]
    for shifted, pairs in ((False, acc[:2]), (True, acc[2:])):
        if shifted:
            s1, swy = acc[0].real, acc[0].imag
            q = acc[1].real - swy**2 / s1
            tau2 = np.maximum((q - (k - 1)) / (s1 - acc[1].imag / s1), 0.0)
        for lo in range(0, y.size, block):
            cb, yb, vb = codes[lo : lo + block], y[lo : lo + block], v[lo : lo + block]
            w = 1.0 / (vb + np.take(tau2, cb, mode="clip")) if shifted else 1.0 / vb
            c = np.empty((len(pairs), cb.size), dtype=np.complex128)
            c[0].real, c[0].imag = w, w * yb
            if not shifted:
                c[1].real, c[1].imag = c[0].imag * yb, w * w
            for j, a in enumerate(pairs):
                np.add.at(a, cb, c[j])
    out: np.ndarray = acc[2].imag / acc[2].real
    return out


def numba_dl() -> Callable[..., Any] | None:
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False)  # type: ignore[misc]
    def dl_long(y: Any, v: Any, codes: Any, m: int) -> Any:
        s = np.zeros((m, 5))
        for i in range(y.size):
            c = codes[i]
            w = 1.0 / v[i]
            wy = w * y[i]
            s[c, 0] += 1.0
            s[c, 1] += w
            s[c, 2] += wy
            s[c, 3] += wy * y[i]
            s[c, 4] += w * w
        tau2 = np.empty(m)
        for c in range(m):
            q = s[c, 3] - s[c, 2] ** 2 / s[c, 1]
            t = (q - (s[c, 0] - 1.0)) / (s[c, 1] - s[c, 4] / s[c, 1])
            tau2[c] = t if t > 0.0 else 0.0
        r = np.zeros((m, 2))
        for i in range(y.size):
            c = codes[i]
            w = 1.0 / (v[i] + tau2[c])
            r[c, 0] += w
            r[c, 1] += w * y[i]
        return r[:, 1] / r[:, 0], tau2

    return dl_long  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--m", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    m, k, rep = args.m, args.k, args.repeat
    y, v = make_data(m, k, args.seed)
    perm = np.random.default_rng(args.seed + 1).permutation(m * k)
    codes = np.repeat(np.arange(m), k)[perm]
    yl, vl = y.ravel()[perm], v.ravel()[perm]

    t2d, ref = best(lambda: pool_many(y, v, method="DL"), rep)
    tlong, _ = best(lambda: pool_many(yl, vl, codes, method="DL"), rep)
    rows: list[tuple[str, float, str]] = [
        ("pool_many DL, 2-D", t2d, ""),
        ("pool_many DL, long (shuffled, labels)", tlong, ""),
    ]
    for name, t in numpy_floor(codes, m, rep).items():
        rows.append((f"numpy primitive: {name}", t, "no arithmetic, no checks"))
    tnp, est_np = best(lambda: numpy_dl(yl, vl, codes, m), rep)
    rows.append(
        (
            "stripped-down numpy long DL",
            tnp,
            f"no checks; max|d est| {np.abs(est_np - ref.estimate).max():.1e}",
        )
    )
    fused = numba_dl()
    if fused is None:
        rows.append(("numba fused long DL", float("nan"), "numba not installed"))
    else:
        t0 = time.perf_counter()
        est, tau2 = fused(yl, vl, codes, m)
        compile_s = time.perf_counter() - t0
        tnb, _ = best(lambda: fused(yl, vl, codes, m), rep)
        diff = max(np.abs(est - ref.estimate).max(), np.abs(tau2 - ref.tau2).max())
        rows.append(
            (
                "numba fused long DL",
                tnb,
                f"no checks; first call {compile_s:.2f} s (compile); max|d| {diff:.1e}",
            )
        )

    print(f"m = {m} analyses x k = {k} studies ({m * k:,} rows); best of {rep}")
    print(f"{'what':58s} {'time (ms)':>10s} {'/ 2-D':>7s}  note")
    print("-" * 100)
    for name, t, note in rows:
        print(f"{name:58s} {1e3 * t:10.2f} {t / t2d:6.2f}x  {note}")


if __name__ == "__main__":
    main()
