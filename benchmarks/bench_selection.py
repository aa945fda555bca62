"""Time alliance_meta.selection_model against metafor's selmodel on dat.hackshaw1998.

Usage::

    python benchmarks/bench_selection.py [--repeat 3]

metafor runs in one Rscript subprocess with its default controls (optim BFGS,
integrate at rel.tol 1.2e-4), as a user would call it; alliance_meta with its
defaults (profile scan over δ plus Newton from the best points).  Each timing is
the best of ``--repeat`` runs.  The last column is our log-likelihood minus
metafor's at its own estimates (recomputed exactly by our likelihood, because
metafor's reported value carries its integration error).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import time
import warnings

import numpy as np
import pandas as pd

from alliance_meta import random_effects, selection_model
from alliance_meta.core import selection as core

CASES = [
    ("stepfun", [0.025, 0.10, 0.50, 1.0], "greater"),
    ("beta", None, "greater"),
    ("halfnorm", None, "greater"),
    ("negexp", None, "greater"),
    ("logistic", None, "greater"),
    ("power", None, "greater"),
]

R_CODE = r"""
suppressPackageStartupMessages(library(metafor))
d <- dat.hackshaw1998
res <- rma(yi, vi, data = d, method = "ML")
cases <- jsonlite::fromJSON('%s', simplifyVector = FALSE)
out <- lapply(cases, function(cs) {
  args <- list(x = res, type = cs$type, alternative = cs$alternative)
  if (!is.null(cs$steps)) args$steps <- unlist(cs$steps)
  best <- Inf
  for (r in seq_len(%d)) {
    t <- system.time(sel <- try(suppressWarnings(do.call(selmodel, args)), silent = TRUE))[[3]]
    best <- min(best, t)
  }
  if (inherits(sel, "try-error")) return(list(seconds = best))
  list(seconds = best, beta = c(sel$beta), tau2 = sel$tau2, delta = sel$delta)
})
cat(jsonlite::toJSON(list(yi = d$yi, vi = d$vi, out = out), auto_unbox = TRUE, digits = NA))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    spec_json = json.dumps([{"type": t, "steps": s, "alternative": a} for t, s, a in CASES])
    proc = subprocess.run(
        ["Rscript", "-e", R_CODE % (spec_json, args.repeat)],
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.load(io.StringIO(proc.stdout))
    yi, vi = np.asarray(r["yi"], float), np.asarray(r["vi"], float)
    fit = random_effects(yi=yi, vi=vi, method="ML")
    rows = []
    for (typ, steps, alt), ro in zip(CASES, r["out"], strict=True):
        best = np.inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                res = selection_model(fit, typ, steps=steps, alternative=alt)  # type: ignore[arg-type]
                best = min(best, time.perf_counter() - t0)
        gap = np.nan
        if "beta" in ro:
            spec = core.make_spec(typ, alt, None if steps is None else np.array(steps), None)
            th = np.concatenate(
                [np.atleast_1d(ro["beta"]), [ro["tau2"]], np.atleast_1d(ro["delta"])]
            )
            ll_r = core.selection_loglik(th, yi, vi, np.ones((yi.size, 1)), spec)[0]
            gap = res.loglik - ll_r
        rows.append((typ, best, ro["seconds"], gap))
    frame = pd.DataFrame(rows, columns=["type", "alliance_meta_s", "metafor_s", "ll_gain"])
    print(frame.to_string(index=False))


if __name__ == "__main__":
    main()
