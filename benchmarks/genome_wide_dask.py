"""Genome-wide-style run: m analyses x n cohorts read out of core with dask.

Writes yi/vi as .npy files (memory-mapped), pools them blockwise with EE and DL via
``pool_many`` on dask arrays, writes Q and I² back to .npy files, and reports the
wall time and the peak resident memory of the process (``ru_maxrss``).

    python benchmarks/genome_wide_dask.py --m 10000000 --n 20 --dir /tmp/gw --workers 1,2

``--workers`` lists the dask thread counts to run (each method once per count), and
the speed-up of each over the first is printed.
"""

from __future__ import annotations

import os

# dask runs one block per thread; a multi-threaded BLAS underneath each block
# oversubscribes the cores (here DL took 5.5 s instead of 3.1 s), so pin BLAS to one
# thread per block, as dask's documentation advises.  Must precede the numpy import.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402

from alliance_meta import pool_many  # noqa: E402


def write_inputs(d: Path, m: int, n: int, block: int = 500_000) -> None:
    y = np.lib.format.open_memmap(d / "yi.npy", mode="w+", dtype=np.float64, shape=(m, n))
    v = np.lib.format.open_memmap(d / "vi.npy", mode="w+", dtype=np.float64, shape=(m, n))
    rng = np.random.default_rng(7)
    for s in range(0, m, block):
        e = min(m, s + block)
        vv = rng.uniform(0.001, 0.05, (e - s, n))
        yy = rng.normal(0, 0.02, (e - s, 1)) + rng.normal(0, np.sqrt(vv))
        miss = rng.random((e - s, n)) < 0.05  # 5% of cohorts lack a variant
        yy[miss] = np.nan
        vv[miss] = np.nan
        y[s:e], v[s:e] = yy, vv
    y.flush()
    v.flush()
    del y, v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=10_000_000)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/gw"))
    ap.add_argument("--chunk", type=int, default=250_000)
    ap.add_argument("--workers", default="2", help="comma-separated dask thread counts")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    if not (args.dir / "yi.npy").exists():
        write_inputs(args.dir, args.m, args.n)
    print(f"inputs written in {time.perf_counter() - t:.1f} s "
          f"({2 * args.m * args.n * 8 / 2**30:.2f} GiB on disk)")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    y = da.from_array(np.load(args.dir / "yi.npy", mmap_mode="r"), chunks=(args.chunk, args.n))
    v = da.from_array(np.load(args.dir / "vi.npy", mmap_mode="r"), chunks=(args.chunk, args.n))
    workers = [int(w) for w in args.workers.split(",")]
    first: dict[str, float] = {}
    for nw, method in ((nw, m) for nw in workers for m in ("EE", "DL")):
        t = time.perf_counter()
        res = pool_many(y, v, method=method)  # lazy: nothing read yet
        outs = {}
        for name in ("Q", "I2", "estimate", "se", "tau2"):
            path = args.dir / f"{method}_{name}.npy"
            outs[name] = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64,
                                                   shape=(args.m,))
        targets = [outs[nm] for nm in outs]
        sources = [getattr(res, nm) for nm in outs]
        with dask.config.set(scheduler="threads", num_workers=nw):
            da.store(sources, targets, lock=False)  # type: ignore[no-untyped-call]
        for a in targets:
            a.flush()
        el = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        first.setdefault(method, el)
        print(f"{method}, {nw} dask worker(s): {args.m:,} analyses x {args.n} cohorts "
              f"pooled and written in {el:.1f} s "
              f"({1e9 * el / (args.m * args.n):.1f} ns per cell); peak RSS so far "
              f"{rss / 2**10:.0f} MiB (before pooling {rss0 / 2**10:.0f} MiB)")
        print(f"   speed-up over {workers[0]} worker(s): {first[method] / el:.2f}x; "
              f"load {os.getloadavg()[0]:.2f}")
        print(f"   check: mean I2 {np.nanmean(outs['I2']):.2f}, mean Q {np.nanmean(outs['Q']):.2f}")


if __name__ == "__main__":
    main()
