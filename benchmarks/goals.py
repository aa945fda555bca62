"""Issue 19's goals, every ratio from one run of this script.

Usage::

    python benchmarks/goals.py [--m 100000] [--m-large 1000000] [--k 12]

One table: single-analysis latency (from ``latency.py``), the import, REML against
DL at scale, the peers (PyMARE) at scale, peak memory, shuffled long format against
2-D at ``--m-large``, and one against two threads.  The machine (``lscpu`` model,
cores) and its load average before and after are printed, with the processes that
were using the CPU, because other work on the machine changes every figure.

Single-threaded timings are CPU time of this process (``time.process_time``), best
of ``--repeat``: on a shared machine CPU time is what the code costs, wall time is
what the scheduler grants.  The thread comparison is wall time (CPU time would hide
any gain), in fresh processes.  Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_pool_many import make_data
from latency import _IMPORT, data, fresh, median_time


def cpu_best(fn: Callable[[], Any], repeat: int) -> float:
    """Least CPU time of ``repeat`` calls after one untimed call (first-call imports)."""
    fn()
    out = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return min(out)


def machine() -> str:
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def busy() -> str:
    """Processes using the CPU now (other than this one)."""
    ps = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True,
                        text=True).stdout.splitlines()[1:6]  # fmt: skip
    return ", ".join(" ".join(p.split()[::-1]) + "%" for p in ps if float(p.split()[0]) >= 5)


_THREADS = r"""
import json, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
sys.path.insert(0, {bench!r})
from bench_pool_many import make_data
from alliance_meta import pool_many
y, v = make_data({m}, {k}, 2024)
out = {{}}
for method in ("DL", "REML"):
    pool_many(y, v, method=method)
    ts = []
    for _ in range({repeat}):
        t = time.perf_counter(); pool_many(y, v, method=method); ts.append(time.perf_counter() - t)
    out[method] = min(ts)
print(json.dumps(out))
"""


def threads(m: int, k: int, n: int, repeat: int) -> dict[str, float]:
    code = _THREADS.format(bench=str(Path(__file__).parent), m=m, k=k, repeat=repeat)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "ALLIANCE_META_NUM_THREADS": str(n)})
    out: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=100_000)
    ap.add_argument("--m-large", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--single-repeat", type=int, default=1000)
    ap.add_argument("--fresh", type=int, default=5)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    # the in-process rows are single-threaded CPU time: with the default two threads
    # the CPU time would add both threads' work (the thread rows below compare them)
    os.environ["ALLIANCE_META_NUM_THREADS"] = "1"
    load0 = os.getloadavg()
    print(f"machine: {machine()}; python {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"load before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; busy: {busy()}")
    rows: list[tuple[str, float, float, str]] = []

    import alliance_meta as am
    from alliance_meta import pool_many

    # -- one analysis
    y1, v1 = data(args.k)
    sr = args.single_repeat
    t_dl = median_time(lambda: am.random_effects(yi=y1, vi=v1, method="DL"), sr)
    t_reml = median_time(lambda: am.random_effects(yi=y1, vi=v1, method="REML"), sr)
    fit = am.random_effects(yi=y1, vi=v1, method="REML")
    t_ci = median_time(fit.heterogeneity_ci, sr)
    from pymare.estimators import DerSimonianLaird, VarianceBasedLikelihoodEstimator
    from statsmodels.stats.meta_analysis import combine_effects

    t_sm = median_time(lambda: combine_effects(y1, v1, method_re="chi2"), sr)
    X1 = np.ones((args.k, 1))
    t_pm1 = median_time(lambda: VarianceBasedLikelihoodEstimator(method="REML").fit(
        y1[:, None], v1[:, None], X1), max(1, sr // 4))
    rows += [("single DL random_effects / statsmodels combine_effects", t_dl, t_sm, "<= 1.0"),
             ("single REML random_effects / PyMARE REML", t_reml, t_pm1, "<= 0.2"),
             ("heterogeneity_ci() / its REML fit", t_ci, t_reml, "<= 2")]
    imp = fresh(_IMPORT.format(module="alliance_meta"), args.fresh)
    imp_sm = fresh(_IMPORT.format(module="statsmodels.stats.meta_analysis"), args.fresh)
    rows.append(("import alliance_meta / import statsmodels...meta_analysis (CPU)", imp,
                 imp_sm, "<= 0.5"))

    # -- at scale, 2-D
    m, k, rp = args.m, args.k, args.repeat
    y, v = make_data(m, k, 2024)
    dl_s = cpu_best(lambda: pool_many(y, v, method="DL"), rp)
    reml_s = cpu_best(lambda: pool_many(y, v, method="REML"), rp)
    rows.append((f"pool_many REML / DL, {m:,} x {k}", reml_s, dl_s, "<= 6"))
    X = np.ones((k, 1))
    yT, vT = np.ascontiguousarray(y.T), np.ascontiguousarray(v.T)
    pm_reml = cpu_best(lambda: VarianceBasedLikelihoodEstimator(method="REML").fit(yT, vT, X), 1)
    pm_dl = cpu_best(lambda: DerSimonianLaird().fit(yT, vT, X), 1)
    rows += [(f"PyMARE REML / pool_many REML, {m:,} x {k}", pm_reml, reml_s, ">= 10"),
             (f"PyMARE DL / pool_many DL, {m:,} x {k}", pm_dl, dl_s, ">= 3")]
    from alliance_meta.core import kernel as _kernel

    _kernel._SCRATCH.__dict__.clear()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    res = pool_many(y, v, method="REML")
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del res
    rows.append((f"peak memory of pool_many REML / input, {m:,} x {k}", peak,
                 y.nbytes + v.nbytes, "<= 1.2"))

    # -- 1M: long format (shuffled) against 2-D, and how REML holds up
    ml = args.m_large
    yL, vL = make_data(ml, k, 2025)
    rng = np.random.default_rng(7)
    perm = rng.permutation(ml * k)
    yl, vl = yL.ravel()[perm], vL.ravel()[perm]
    gl = np.repeat(np.arange(ml), k)[perm]
    dl2 = cpu_best(lambda: pool_many(yL, vL, method="DL"), rp)
    dll = cpu_best(lambda: pool_many(yl, vl, gl, method="DL"), rp)
    rows.append((f"pool_many DL long (shuffled) / 2-D, {ml:,} x {k}", dll, dl2, "<= 3"))
    reml2 = cpu_best(lambda: pool_many(yL, vL, method="REML"), 1)
    rows.append((f"pool_many REML / DL, {ml:,} x {k} (2-D)", reml2, dl2, ""))
    rows.append((f"pool_many DL 2-D {ml:,} x {k} / {m:,} x {k} (per analysis: x{ml // m})",
                 dl2, dl_s, f"{ml / m:.0f} if linear"))

    # -- threads (wall time, fresh processes)
    t1 = threads(m, k, 1, rp)
    t2 = threads(m, k, 2, rp)
    for meth in ("DL", "REML"):
        rows.append((f"pool_many {meth} 2 threads / 1 thread (wall), {m:,} x {k}", t2[meth],
                     t1[meth], "< 1: two help"))

    load1 = os.getloadavg()
    w = max(len(r[0]) for r in rows)
    print(f"{'ratio':<{w}}  {'numerator':>12}  {'denominator':>12}  {'ratio':>7}  goal")
    for name, a, b, goal in rows:
        unit = "MiB" if "memory" in name else "ms"
        sc = 2.0**-20 if unit == "MiB" else 1e3
        print(f"{name:<{w}}  {a * sc:>9.3f} {unit:<3}  {b * sc:>8.3f} {unit:<3}  "
              f"{a / b:>6.2f}x  {goal}")
    print(f"load after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; busy: {busy()}")


if __name__ == "__main__":
    main()
