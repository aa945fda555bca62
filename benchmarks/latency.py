"""Latency: one analysis, the first call in a fresh process, and the import.

Usage::

    python benchmarks/latency.py [--k 12] [--repeat 2000] [--fresh 7]

What a notebook user or a pipeline calling the library in a loop meets first,
measured in one run against the peers on the same data:

* **one analysis**: a DL ``random_effects`` against statsmodels' ``combine_effects``
  (``method_re="chi2"``, its DL); a REML ``random_effects`` against PyMARE's
  ``VarianceBasedLikelihoodEstimator(method="REML")``; ``heterogeneity_ci()``
  against the REML fit it describes.  Each is the median of ``--repeat`` calls
  (medians: single calls of ~100 µs are at the mercy of the scheduler);
* **the first call** in a fresh process (import excluded), median over ``--fresh``
  processes;
* **the import**: ``import alliance_meta`` against
  ``import statsmodels.stats.meta_analysis``, in fresh processes (CPU time of the
  whole process, median over ``--fresh``), and the list of heavy modules that
  ``import alliance_meta`` loads.

The issue's goals (issue 19) are printed beside each ratio.  Nothing here is a
test: speed claims live in docs/benchmarks.rst with the figures of one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def data(k: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.2, k)
    y = 0.3 + rng.normal(0, np.sqrt(0.05 + v))
    return y, v


def fresh(code: str, repeat: int) -> float:
    """Median wall time of ``code`` in fresh interpreters (it prints its own timing)."""
    out = []
    for _ in range(repeat):
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
        out.append(float(res.stdout.strip().splitlines()[-1]))
    return statistics.median(out)


_IMPORT = """
import resource, time
t = time.process_time()
import {module}
r = resource.getrusage(resource.RUSAGE_SELF)
print(r.ru_utime + r.ru_stime)
"""

_FIRST_CALL = """
import time
import numpy as np
{setup}
y = np.array({y!r}); v = np.array({v!r})
t = time.perf_counter()
{call}
print(time.perf_counter() - t)
"""

_HEAVY = ("pandas", "statsmodels", "scipy.stats", "matplotlib", "dask", "formulaic")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=2000)
    ap.add_argument("--fresh", type=int, default=7)
    args = ap.parse_args()

    import alliance_meta as am

    y, v = data(args.k)
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    rows: list[tuple[str, float, float, str]] = []

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_dl = median_time(lambda: am.random_effects(yi=y, vi=v, method="DL"), args.repeat)
        t_reml = median_time(lambda: am.random_effects(yi=y, vi=v, method="REML"), args.repeat)
        fit = am.random_effects(yi=y, vi=v, method="REML")
        t_ci = median_time(fit.heterogeneity_ci, args.repeat)
        from statsmodels.stats.meta_analysis import combine_effects

        t_sm = median_time(lambda: combine_effects(y, v, method_re="chi2"), args.repeat)
        rows.append(("DL random_effects vs statsmodels combine_effects", t_dl, t_sm, "<= 1.0x"))
        try:
            from pymare.estimators import VarianceBasedLikelihoodEstimator

            X = np.ones((args.k, 1))
            t_pm = median_time(
                lambda: VarianceBasedLikelihoodEstimator(method="REML").fit(y[:, None],
                                                                            v[:, None], X),
                max(1, args.repeat // 4),
            )
            rows.append(("REML random_effects vs PyMARE REML", t_reml, t_pm, "<= 0.2x"))
        except ImportError:
            print("PyMARE not installed: skipped")
        rows.append(("heterogeneity_ci() vs its REML fit", t_ci, t_reml, "<= 2x"))

    first = fresh(_FIRST_CALL.format(setup="import alliance_meta as am", y=list(y), v=list(v),
                                     call="am.random_effects(yi=y, vi=v, method='REML')"),
                  args.fresh)
    first_sm = fresh(_FIRST_CALL.format(
        setup="from statsmodels.stats.meta_analysis import combine_effects", y=list(y),
        v=list(v), call="combine_effects(y, v, method_re='chi2')"), args.fresh)
    rows.append(("first REML call (fresh process) vs first combine_effects", first, first_sm,
                 ""))
    imp = fresh(_IMPORT.format(module="alliance_meta"), args.fresh)
    imp_sm = fresh(_IMPORT.format(module="statsmodels.stats.meta_analysis"), args.fresh)
    rows.append(("import alliance_meta vs import statsmodels.stats.meta_analysis (CPU)", imp,
                 imp_sm, "<= 0.5x"))

    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, alliance_meta; "
         f"print(' '.join(m for m in {_HEAVY!r} if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip

    w = max(len(r[0]) for r in rows)
    print(f"{'what':<{w}}  {'alliance_meta':>13}  {'peer':>10}  {'ratio':>7}  goal")
    for name, ours, peer, goal in rows:
        print(f"{name:<{w}}  {ours * 1e3:>10.3f} ms  {peer * 1e3:>7.3f} ms  "
              f"{ours / peer:>6.2f}x  {goal}")
    print(f"heavy modules loaded by 'import alliance_meta': {loaded or 'none'}")


if __name__ == "__main__":
    main()
