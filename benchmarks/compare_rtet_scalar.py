"""Compare the batched RTET fit with the scalar one it replaced (commit 83ba557).

Usage::

    python benchmarks/compare_rtet_scalar.py --tables 20000 [--libm-erfc]

Random 2×2 tables (n 10 to 2000; latent correlation, thresholds at random, 15 %
with an extreme margin, 10 % with |rho| > 0.95, 2 % with single counts on the
diagonal; zero cells as they come) go through the scalar code (read from git) and
the batched code; prints the time of each and, for yi and vi, how many rows differ
at all and the largest relative difference.  The scalar code took Phi from
``math.erfc`` (the C library) and the batched code from ``scipy.special.erfc``,
which differ in the last bit for about 40 % of arguments; ``--libm-erfc`` gives
the batched code the C library's erfc too, to show that the rest is the same
computation bit for bit.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
from scipy import special

from alliance_meta.data.effect_sizes import tetrachoric as batched

SCALAR_COMMIT = "83ba557"


def scalar_module() -> types.ModuleType:
    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(
        ["git", "show", f"{SCALAR_COMMIT}:alliance_meta/data/effect_sizes/tetrachoric.py"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout
    mod = types.ModuleType("tetrachoric_scalar")
    exec(compile(src, "tetrachoric_scalar.py", "exec"), mod.__dict__)
    return mod


def tables(k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = rng.integers(10, 2001, k)
    rho = rng.uniform(-0.97, 0.97, k)
    h = rng.normal(0, 0.8, k)
    c = rng.normal(0, 0.8, k)
    extreme = rng.random(k) < 0.15
    h[extreme] = rng.choice([-1, 1], extreme.sum()) * rng.uniform(1.8, 2.8, extreme.sum())
    strong = rng.random(k) < 0.1
    rho[strong] = rng.choice([-1, 1], strong.sum()) * rng.uniform(0.95, 0.999, strong.sum())
    out = np.empty((k, 4))
    for i in range(k):
        x = rng.standard_normal(n[i])
        y = rho[i] * x + np.sqrt(1 - rho[i] ** 2) * rng.standard_normal(n[i])
        r1, c1 = x <= h[i], y <= c[i]
        out[i] = [np.sum(r1 & c1), np.sum(r1 & ~c1), np.sum(~r1 & c1), np.sum(~r1 & ~c1)]
    m = k // 50
    out[:m] = np.column_stack([rng.integers(1, 3, m), rng.integers(1, 400, m),
                               rng.integers(1, 400, m), rng.integers(1, 3, m)])
    return out


def report(name: str, old: np.ndarray, new: np.ndarray, rows: np.ndarray) -> None:
    old, new = old[rows], new[rows]
    same = (old == new) | (np.isnan(old) & np.isnan(new))
    both = np.isfinite(old) & np.isfinite(new) & (old != 0)
    rel = np.abs(new[both] / old[both] - 1.0)
    print(f"  {name}: {int((~same).sum())} of {rows.sum()} rows differ "
          f"({int((np.isnan(old) != np.isnan(new)).sum())} NaN in one only), "
          f"max relative difference {rel.max() if rel.size else 0.0:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--libm-erfc", action="store_true")
    args = parser.parse_args()
    if args.libm_erfc:
        erfc = np.frompyfunc(math.erfc, 1, 1)
        batched._phi = lambda x: 0.5 * erfc(-x / batched._SQRT2).astype(float)  # type: ignore[assignment]
    else:
        assert batched._phi(np.array([0.3]))[0] == 0.5 * special.erfc(-0.3 / math.sqrt(2.0))
    t = tables(args.tables, args.seed)
    cells = [t[:, j].copy() for j in range(4)]
    t0 = time.perf_counter()
    ys, vs = scalar_module().tetrachoric(*cells)
    t1 = time.perf_counter()
    yb, vb = batched.tetrachoric(*cells)
    t2 = time.perf_counter()
    print(f"{args.tables} tables: scalar {t1 - t0:.1f} s, batched {t2 - t1:.1f} s"
          f"{' (libm erfc through frompyfunc)' if args.libm_erfc else ''}")
    zero = (t == 0).any(axis=1)
    for label, rows in (("no zero cell", ~zero), ("a zero cell", zero)):
        print(f"tables with {label}:")
        report("yi", ys, yb, rows)
        report("vi", vs, vb, rows)


if __name__ == "__main__":
    sys.exit(main())
