"""Time alliance_meta.pool_many against PyMARE, statsmodels and metafor on one data set.

Usage::

    python benchmarks/bench_pool_many.py --m 100000 --k 12

All tools run in this process on the same generated data (metafor in one Rscript
subprocess).  Loops that would take minutes (statsmodels, metafor) run on a
subsample and are extrapolated linearly; their rows say so.  Each timing is the best
of ``--repeat`` runs.  Differences are the largest absolute difference from
alliance_meta's estimate and τ² on the analyses the tool pooled.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy

from alliance_meta import pool_many
from alliance_meta.exceptions import ConvergenceWarning


def make_data(m: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.2, (m, k))
    tau2 = rng.choice([0.0, 0.02, 0.1], m)
    y = 0.3 + rng.normal(0, np.sqrt(tau2))[:, None] + rng.normal(0, np.sqrt(v))
    return y, v


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def r_metafor(y: np.ndarray, v: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        inp, out = Path(d, "in.csv"), Path(d, "out.csv")
        np.savetxt(inp, np.hstack([y, v]), delimiter=",", fmt="%.17g")
        k = y.shape[1]
        script = f"""
suppressMessages(library(metafor))
d <- as.matrix(read.csv("{inp}", header = FALSE))
k <- {k}; m <- nrow(d)
est <- numeric(m); tau2 <- numeric(m)
t0 <- proc.time()[["elapsed"]]
for (i in seq_len(m)) {{
  f <- rma(d[i, 1:k], d[i, (k + 1):(2 * k)], method = "REML",
           control = list(stepadj = 0.5, maxiter = 1000))
  est[i] <- f$beta[1]; tau2[i] <- f$tau2
}}
el <- proc.time()[["elapsed"]] - t0
write.csv(data.frame(est = est, tau2 = tau2), "{out}", row.names = FALSE)
cat(el)
"""
        res = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=True)
        el = float(res.stdout.strip().split()[-1])
        arr = np.loadtxt(out, delimiter=",", skiprows=1)
        return el, arr[:, 0], arr[:, 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--m", type=int, default=100_000, help="number of analyses")
    ap.add_argument("--k", type=int, default=12, help="studies per analysis")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sm-sub", type=int, default=2000, help="statsmodels subsample")
    ap.add_argument("--r-sub", type=int, default=1000, help="metafor subsample")
    args = ap.parse_args()
    # About 10 of the 100,000 generated analyses reach a REML root below the
    # likelihood at 0, which pool_many sets to 0 with a warning, as metafor's ll0check
    # does; the timings are the point here.
    warnings.filterwarnings("ignore", message="the REML root", category=ConvergenceWarning)
    m, k = args.m, args.k
    y, v = make_data(m, k, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    perm = rng.permutation(m * k)
    g = np.repeat(np.arange(m), k)
    yl, vl, gl = y.ravel()[perm], v.ravel()[perm], g[perm]
    rows: list[tuple[str, float, float | None, float | None, str]] = []

    print(f"m = {m} analyses x k = {k} studies ({m * k:,} rows); best of {args.repeat}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"threads {os.environ.get('ALLIANCE_META_NUM_THREADS', 'default')}")

    t_reml, reml = best(lambda: pool_many(y, v, method="REML"), args.repeat)
    t_dl, dl = best(lambda: pool_many(y, v, method="DL"), args.repeat)
    t_reml_l, reml_l = best(lambda: pool_many(yl, vl, gl, method="REML"), args.repeat)
    t_dl_l, dl_l = best(lambda: pool_many(yl, vl, gl, method="DL"), args.repeat)
    t_ci, _ = best(lambda: reml.heterogeneity_ci(), max(1, args.repeat // 2))

    def dl_all_fields() -> Any:
        # pool_many computes estimate, se, tau2, Q, k; the rest on first access
        r = pool_many(y, v, method="DL")
        for name in ("tau2_se", "pvalue", "ci", "pi", "Q_pvalue", "I2", "H2"):
            getattr(r, name)
        return r

    t_dl_all, _ = best(dl_all_fields, args.repeat)

    def d(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.max(np.abs(a - b)))

    rows.append(("alliance_meta REML 2-D", t_reml, 0.0, 0.0, ""))
    rows.append(("alliance_meta REML long/ragged", t_reml_l, d(reml_l.estimate, reml.estimate),
                 d(reml_l.tau2, reml.tau2), f"{t_reml_l / t_reml:.2f}x the 2-D time"))
    rows.append(("alliance_meta DL 2-D", t_dl, 0.0, 0.0, ""))
    rows.append(("alliance_meta DL 2-D, every field read", t_dl_all, None, None,
                 "tau2_se, p-values, CI, PI, Q p-value, I2, H2 computed on access"))
    rows.append(("alliance_meta DL long/ragged", t_dl_l, d(dl_l.estimate, dl.estimate),
                 d(dl_l.tau2, dl.tau2), f"{t_dl_l / t_dl:.2f}x the 2-D time"))
    rows.append(("alliance_meta heterogeneity_ci()", t_ci, None, None,
                 f"{t_ci / t_reml:.2f}x the REML pooling time"))

    try:
        from pymare.estimators import DerSimonianLaird, VarianceBasedLikelihoodEstimator

        X = np.ones((k, 1))
        yT, vT = np.ascontiguousarray(y.T), np.ascontiguousarray(v.T)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_p, est = best(lambda: VarianceBasedLikelihoodEstimator(method="REML").fit(yT, vT, X),
                            max(1, args.repeat // 2))
            pe, pt = est.params_["fe_params"].ravel(), np.asarray(est.params_["tau2"]).ravel()
            rows.append(("PyMARE 0.0.13 REML (vectorised)", t_p, d(pe, reml.estimate),
                         d(pt, reml.tau2), f"alliance_meta {t_p / t_reml:.1f}x faster"))
            t_p, est = best(lambda: DerSimonianLaird().fit(yT, vT, X), args.repeat)
            pe, pt = est.params_["fe_params"].ravel(), np.asarray(est.params_["tau2"]).ravel()
            rows.append(("PyMARE 0.0.13 DL (vectorised)", t_p, d(pe, dl.estimate),
                         d(pt, dl.tau2), f"alliance_meta {t_p / t_dl:.1f}x faster"))
    except ImportError:
        print("PyMARE not installed: skipped")

    try:
        from statsmodels.stats.meta_analysis import combine_effects

        sub = min(args.sm_sub, m)

        def sm_loop() -> tuple[np.ndarray, np.ndarray]:
            e, t = np.empty(sub), np.empty(sub)
            for i in range(sub):
                r = combine_effects(y[i], v[i], method_re="chi2")
                e[i], t[i] = r.mean_effect_re, r.tau2
            return e, t

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_s, (se_, st_) = best(sm_loop, 1)
        t_full = t_s * m / sub
        # statsmodels does not truncate its DL tau2 at 0 (negative values change its
        # estimate); compare on the analyses where it is >= 0
        ok = st_ >= 0
        rows.append((f"statsmodels combine_effects DL loop (extrapolated from {sub})", t_full,
                     d(se_[ok], dl.estimate[:sub][ok]), d(st_[ok], dl.tau2[:sub][ok]),
                     f"alliance_meta {t_full / t_dl:.0f}x faster (vs DL); "
                     f"{int((~ok).sum())} negative tau2 excluded from the differences"))
    except ImportError:
        print("statsmodels missing: skipped")

    sub = min(args.r_sub, m)
    rr = r_metafor(y[:sub], v[:sub])
    if rr is not None:
        el, re_, rt_ = rr
        t_full = el * m / sub
        rows.append((f"metafor 3.8 rma REML loop in R (extrapolated from {sub})", t_full,
                     d(re_, reml.estimate[:sub]), d(rt_, reml.tau2[:sub]),
                     f"alliance_meta {t_full / t_reml:.0f}x faster; {1e3 * el / sub:.2f} ms/fit"))
    else:
        print("Rscript not on PATH: metafor skipped")

    # memory: tracemalloc peak of pool_many above what is allocated before the call,
    # including the per-thread scratch buffer of the core (dropped first, so that its
    # allocation is counted rather than reused from the timing runs above)
    from alliance_meta.core import kernel as _kernel

    tracemalloc.start()
    for label, fn, nbytes in (
        ("REML 2-D", lambda: pool_many(y, v, method="REML"), y.nbytes + v.nbytes),
        ("REML long", lambda: pool_many(yl, vl, gl, method="REML"),
         yl.nbytes + vl.nbytes + gl.nbytes),
    ):
        _kernel._SCRATCH.__dict__.clear()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        res = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
        print(f"memory {label}: peak {peak / 2**20:.1f} MiB = {peak / nbytes:.2f}x the "
              f"{nbytes / 2**20:.1f} MiB input")
        del res
    tracemalloc.stop()

    w = max(len(r[0]) for r in rows)
    head = (f"{'tool':<{w}}  {'time (s)':>9}  {'vs am':>7}  {'max|d est|':>10}  "
            f"{'max|d tau2|':>11}  note")
    print(head)
    print("-" * len(head))
    for name, t, de, dt, note in rows:
        ref = t_dl if ("DL" in name or "combine" in name) else t_reml
        ref = t_reml if "heterogeneity" in name else ref
        ratio = t / ref if ref else float("nan")
        des = "" if de is None else f"{de:.1e}"
        dts = "" if dt is None else f"{dt:.1e}"
        print(f"{name:<{w}}  {t:>9.4f}  {ratio:>6.2f}x  {des:>10}  {dts:>11}  {note}")


if __name__ == "__main__":
    main()
