"""pool_many before and after: two source trees timed in one run, interleaved.

Usage::

    python benchmarks/compare_pool_many.py --before /path/to/main --after . \\
        --m 100000 --k 12 --rounds 3

Each round runs one subprocess per tree (``PYTHONPATH`` set to it) that times
``pool_many`` on the same generated data (``bench_pool_many.make_data``) for each
method, best of ``--repeat`` calls, in CPU time (the machine may be shared); the
table shows the best over the rounds.  2-D input and shuffled long format.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CODE = r"""
import json, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
sys.path.insert(0, {bench!r})
from bench_pool_many import make_data
import alliance_meta as am
y, v = make_data({m}, {k}, 2024)
perm = np.random.default_rng(2025).permutation(y.size)
g = np.repeat(np.arange({m}), {k})
yl, vl, gl = y.ravel()[perm], v.ravel()[perm], g[perm]
out = {{}}
for meth in {methods!r}:
    for layout, args in (("2-D", (y, v)), ("long", (yl, vl, gl))):
        ts = []
        for _ in range({repeat}):
            t = time.process_time()
            am.pool_many(*args, method=meth)
            ts.append(time.process_time() - t)
        out[f"{{meth}} {{layout}}"] = min(ts)
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--before", required=True, help="source tree of the old version")
    ap.add_argument("--after", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--m", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--methods", nargs="+", default=["DL", "REML", "ML"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    bench = str(Path(__file__).resolve().parent)
    code = CODE.format(bench=bench, m=args.m, k=args.k, methods=args.methods,
                       repeat=args.repeat)
    best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    for _ in range(args.rounds):
        for name, tree in (("before", args.before), ("after", args.after)):
            env = {**os.environ, "PYTHONPATH": tree}
            res = subprocess.run([sys.executable, "-c", code], env=env, cwd="/",
                                 capture_output=True, text=True, check=True)
            for key, val in json.loads(res.stdout.strip().splitlines()[-1]).items():
                best[name][key] = min(val, best[name].get(key, float("inf")))
    print(f"m = {args.m} x k = {args.k}; CPU seconds, best of {args.rounds} x {args.repeat}")
    print(f"{'':14s} {'before':>9s} {'after':>9s} {'ratio':>7s}")
    for key in best["before"]:
        b, a = best["before"][key], best["after"][key]
        print(f"{key:14s} {b:9.3f} {a:9.3f} {a / b:7.2f}")


if __name__ == "__main__":
    main()
