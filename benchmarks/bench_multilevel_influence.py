"""Speed of the case-deletion diagnostics of a multilevel fit against metafor.

Usage::

    python benchmarks/bench_multilevel_influence.py [--studies 60] [--repeat 3]

The data and model are those of ``bench_multilevel.py`` (a three-level model with
one moderator and a CHE working V, ``rho = 0.6``), with ``--studies`` studies.
Timed, on the same data:

* ``alliance_meta.influence(fit, cluster="study")`` (every study deleted in turn:
  Cook's distances, DFBETAS, studentized residuals) against metafor's
  ``cooks.distance(fit, cluster = study)`` alone (one of the three; with
  ``rstudent`` and ``dfbetas`` metafor refits each study three times);
* ``alliance_meta.leave_one_out(fit)`` (the refits without each study).

metafor's fit and its refits use ``sparse = TRUE``.  Best of ``--repeat`` runs
(metafor: one run, it takes minutes), wall clock; the machine's load is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_multilevel import fit_ours, make_data

import alliance_meta as am
from alliance_meta.models.multilevel import covariance_matrix


def r_cooks(d: dict[str, np.ndarray]) -> dict[str, Any] | None:
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
fit <- rma.mv(yi, V, mods = ~ x, random = ~ 1 | study/es, data = d, sparse = TRUE)
t <- system.time(cd <- cooks.distance(fit, cluster = d$study))
write_json(list(time = t[["elapsed"]], id = names(cd), cook = as.vector(cd),
                version = as.character(packageVersion("metafor"))),
           "{out}", digits = NA, auto_unbox = TRUE)
"""
        subprocess.run(["Rscript", "-e", script], check=True, capture_output=True)
        res: dict[str, Any] = json.loads(out.read_text())
        return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--studies", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, load average {load:.1f}")
    d = make_data(args.studies, 3.5, args.seed)
    V = covariance_matrix(vi=d["vi"], cluster=d["study"], rho=0.6, obs=d["es"])
    fit = fit_ours(d, V)
    print(f"three-level + moderator + CHE V: k = {fit.k} effects in {args.studies} studies")

    def timed(fn: Any) -> tuple[float, Any]:
        best, out = float("inf"), None
        for _ in range(args.repeat):
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
        return best, out

    t_inf, inf = timed(lambda: am.influence(fit, cluster="study"))
    t_loo, _ = timed(lambda: am.leave_one_out(fit))
    print(f"    alliance_meta influence(cluster='study')  {t_inf:8.2f} s "
          f"({1e3 * t_inf / args.studies:.1f} ms per study)")
    print(f"    alliance_meta leave_one_out               {t_loo:8.2f} s")
    r = r_cooks(d)
    if r is None:
        print("    metafor: Rscript not found")
        return
    t_r = float(r["time"])
    print(f"    metafor {r['version']} cooks.distance(cluster = study) {t_r:8.2f} s")
    print(f"    speed-up: {t_r / t_inf:.0f}x (ours computes DFBETAS and rstudent as well)")
    ours = np.array([inf.cook_d[inf.labels.index(i)] for i in r["id"]])
    print(f"    agreement: max |sqrt(D) - sqrt(D_metafor)| = "
          f"{np.max(np.abs(np.sqrt(ours) - np.sqrt(r['cook']))):.1e}")


if __name__ == "__main__":
    main()
