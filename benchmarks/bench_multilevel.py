"""Speed of the three-level model (issue 13): alliance_meta against metafor's rma.mv.

Usage::

    python benchmarks/bench_multilevel.py            # both parts
    python benchmarks/bench_multilevel.py --part a   # ~700 effects vs metafor
    python benchmarks/bench_multilevel.py --part b   # 70,000 effects vs random_effects

The model is a three-level meta-analysis (effects within studies, ``random = ~ 1 |
study/es``) with one continuous moderator and a CHE working covariance: the
sampling errors of one study correlate ``rho = 0.6`` (``vcalc(vi, study, obs = es,
rho = 0.6)`` / :func:`alliance_meta.models.multilevel.covariance_matrix`).

(a) About 700 effects in 200 studies: ``multilevel(...)`` against metafor's
    ``rma.mv(yi, V, mods = ~ x, random = ~ 1 | study/es, sparse = TRUE)``, timed in
    one Rscript subprocess on the same data (V built beforehand on both sides).
    Goal: at least 50x faster.
(b) 70,000 effects in 20,000 studies: ``multilevel(...)`` against a univariate REML
    ``alliance_meta.random_effects`` on the same effects, and the peak memory growth
    of the multilevel fit (tracemalloc).  Goals: at most 100x the univariate time,
    under 1 GiB.  Then cluster-robust inference on that fit (issue 14):
    ``robust(fit, "study")`` (CR2 with Satterthwaite df) and its HTZ Wald test, as a
    ratio to the fit.  Goal: at most 2x.

Each timing is the best of ``--repeat`` runs, wall clock and CPU time (R:
``system.time`` user + sys; Python: ``time.process_time``); the fits are
single-threaded, so on a busy machine the CPU-time ratio is the steadier one.  The
machine's load is printed.
"""

from __future__ import annotations

import argparse
import json
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

from alliance_meta import random_effects, robust
from alliance_meta.models.multilevel import covariance_matrix, multilevel


def make_data(n_studies: int, mean_k: float, seed: int) -> dict[str, np.ndarray]:
    """Three-level data: 1..(2 mean_k - 1) effects per study, one moderator."""
    rng = np.random.default_rng(seed)
    ks = rng.integers(1, round(2 * mean_k), n_studies)
    study = np.repeat(np.arange(n_studies), ks)
    k = study.size
    es = np.concatenate([np.arange(n) for n in ks])
    vi = rng.uniform(0.01, 0.1, k)
    x = rng.normal(size=k)
    # CHE sampling errors: rho = 0.6 within a study
    z = 0.6**0.5 * rng.normal(size=n_studies)[study] + 0.4**0.5 * rng.normal(size=k)
    yi = 0.2 + 0.1 * x + rng.normal(0, 0.05**0.5, n_studies)[study] + rng.normal(0, 0.03**0.5, k)
    yi = yi + np.sqrt(vi) * z
    return {"yi": yi, "vi": vi, "x": x, "study": study.astype(str), "es": es.astype(str)}


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Best wall-clock and best CPU time of ``repeat`` runs, and the last result."""
    wall, cpu, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return min(wall), min(cpu), out


def fit_ours(d: dict[str, np.ndarray], V: Any) -> Any:
    return multilevel(
        yi=d["yi"], V=V, levels={"study": d["study"], "es": d["es"]},
        moderators={"x": d["x"]},
    )


def r_metafor(d: dict[str, np.ndarray], repeat: int) -> dict[str, Any] | None:
    """Best time of rma.mv(sparse = TRUE) in one Rscript, with its estimates."""
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp, "in.csv"), Path(tmp, "out.json")
        with open(inp, "w") as f:
            f.write("yi,vi,x,study,es\n")
            for row in zip(d["yi"], d["vi"], d["x"], d["study"], d["es"], strict=True):
                f.write(f"{row[0]:.17g},{row[1]:.17g},{row[2]:.17g},{row[3]},{row[4]}\n")
        script = f"""
suppressPackageStartupMessages({{library(metafor); library(jsonlite)}})
d <- read.csv("{inp}", colClasses = c("numeric", "numeric", "numeric", "character",
                                      "character"))
V <- vcalc(vi, cluster = study, obs = es, rho = 0.6, data = d)
times <- c()
cpu <- c()
for (i in seq_len({repeat})) {{
  t <- system.time(fit <- rma.mv(yi, V, mods = ~ x, random = ~ 1 | study/es, data = d,
                                 sparse = TRUE))
  times <- c(times, t[["elapsed"]])
  cpu <- c(cpu, t[["user.self"]] + t[["sys.self"]])
}}
write_json(list(time = min(times), cpu = min(cpu), sigma2 = fit$sigma2,
                beta = as.vector(fit$beta),
                logLik = as.numeric(logLik(fit)),
                version = as.character(packageVersion("metafor"))),
           "{out}", digits = NA, auto_unbox = TRUE)
"""
        subprocess.run(["Rscript", "-e", script], check=True, capture_output=True)
        res: dict[str, Any] = json.loads(out.read_text())
        return res


def part_a(repeat: int, seed: int) -> None:
    d = make_data(200, 3.5, seed)
    k = d["yi"].size
    V = covariance_matrix(vi=d["vi"], cluster=d["study"], rho=0.6, obs=d["es"])
    fit_ours(d, V)  # warm-up (imports, first allocations)
    t_ours, c_ours, fit = best(lambda: fit_ours(d, V), repeat)
    print(f"(a) three-level + moderator + CHE V: k = {k} effects in 200 studies")
    print(f"    alliance_meta.multilevel            {1e3 * t_ours:8.1f} ms wall "
          f"{1e3 * c_ours:8.1f} ms CPU")
    r = r_metafor(d, max(1, min(repeat, 5)))
    if r is None:
        print("    metafor: Rscript not found")
        return
    t_r, c_r = float(r["time"]), float(r["cpu"])
    print(f"    metafor {r['version']} rma.mv(sparse=TRUE) {1e3 * t_r:8.1f} ms wall "
          f"{1e3 * c_r:8.1f} ms CPU")
    print(f"    speed-up: {t_r / t_ours:.0f}x wall, {c_r / c_ours:.0f}x CPU   (goal: >= 50x; "
          "R's timer resolution is 1 ms)")
    print(
        "    agreement: max |Δσ²|/σ² = "
        f"{np.max(np.abs(np.asarray(fit.sigma2) - r['sigma2']) / np.asarray(r['sigma2'])):.1e}, "
        f"Δ logLik (ours - metafor) = {fit.loglik - r['logLik']:.1e}"
    )


def part_b(repeat: int, seed: int) -> None:
    d = make_data(20_000, 3.5, seed)
    k = d["yi"].size
    V = covariance_matrix(vi=d["vi"], cluster=d["study"], rho=0.6, obs=d["es"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_uni, c_uni, _ = best(lambda: random_effects(yi=d["yi"], vi=d["vi"]), repeat)
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    fit = fit_ours(d, V)
    t_first = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    t_ml, c_ml, fit = best(lambda: fit_ours(d, V), max(1, repeat // 2))
    t_ml = min(t_ml, t_first)
    print(f"(b) three-level + moderator + CHE V: k = {k} effects in 20,000 studies")
    print(f"    random_effects (univariate REML) {1e3 * t_uni:8.1f} ms wall "
          f"{1e3 * c_uni:8.1f} ms CPU")
    print(f"    multilevel                       {1e3 * t_ml:8.1f} ms wall "
          f"{1e3 * c_ml:8.1f} ms CPU "
          f"({fit.iterations} Newton iterations, converged: {fit.converged})")
    print(f"    ratio: {t_ml / t_uni:.0f}x wall, {c_ml / c_uni:.0f}x CPU   (goal: <= 100x)")
    print(f"    peak memory growth of the fit: {(peak - base) / 2**20:.0f} MiB   (goal: < 1024 MiB;"
          f" a dense k x k matrix would be {8 * k * k / 2**30:.0f} GiB)")
    # issue 14: CR2 on this fit, clustered by study, as a ratio to the fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_cr2, c_cr2, rob = best(lambda: robust(fit, "study"), repeat)

        def cr2_htz() -> None:
            robust(fit, "study").wald_test()

        t_htz, c_htz, _ = best(cr2_htz, repeat)
    print(f"    robust(fit, 'study'), CR2 + Satterthwaite df {1e3 * t_cr2:8.1f} ms wall "
          f"{1e3 * c_cr2:8.1f} ms CPU ({rob.n_clusters} clusters)")
    print(f"    ... and its HTZ Wald test                {1e3 * t_htz:8.1f} ms wall "
          f"{1e3 * c_htz:8.1f} ms CPU")
    print(f"    CR2 / fit: {t_cr2 / t_ml:.2f}x wall, {c_cr2 / c_ml:.2f}x CPU; with HTZ "
          f"{t_htz / t_ml:.2f}x wall, {c_htz / c_ml:.2f}x CPU   (goal: <= 2x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["a", "b", "both"], default="both")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy "
          f"{scipy.__version__}, {os.cpu_count()} CPUs, load average {load:.1f}")
    if args.part in ("a", "both"):
        part_a(args.repeat, args.seed)
    if args.part in ("b", "both"):
        part_b(args.repeat, args.seed)


if __name__ == "__main__":
    main()
