"""Track pool_many over time with asv (airspeed velocity).

The same generated data as ``benchmarks/bench_pool_many.py`` (which compares against
PyMARE, statsmodels and metafor in one run), scaled down so that a full asv run over
many commits stays short.  Run from ``benchmarks/``::

    asv run --config asv.conf.json            # commits on main, in fresh virtualenvs
    asv run --config asv.conf.json --python=same --quick   # this environment, once
"""

from __future__ import annotations

import numpy as np

from alliance_meta import pool_many


def _data(m: int, k: int, seed: int = 2024) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.2, (m, k))
    tau2 = rng.choice([0.0, 0.02, 0.1], m)
    y = 0.3 + rng.normal(0, np.sqrt(tau2))[:, None] + rng.normal(0, np.sqrt(v))
    return y, v


class PoolMany2D:
    """2-D input: m analyses x 12 studies."""

    params = (["EE", "DL", "REML", "PM"], [10_000, 100_000])
    param_names = ("method", "m")

    def setup(self, method: str, m: int) -> None:
        self.y, self.v = _data(m, 12)

    def time_pool_many(self, method: str, m: int) -> None:
        pool_many(self.y, self.v, method=method)  # type: ignore[arg-type]

    def peakmem_pool_many(self, method: str, m: int) -> None:
        pool_many(self.y, self.v, method=method)  # type: ignore[arg-type]


class PoolManyLong:
    """The same rows shuffled into long format with group labels."""

    params = (["DL", "REML"],)
    param_names = ("method",)

    def setup(self, method: str) -> None:
        m, k = 100_000, 12
        y, v = _data(m, k)
        perm = np.random.default_rng(2025).permutation(m * k)
        self.y, self.v = y.ravel()[perm], v.ravel()[perm]
        self.g = np.repeat(np.arange(m), k)[perm]

    def time_pool_many_long(self, method: str) -> None:
        pool_many(self.y, self.v, self.g, method=method)  # type: ignore[arg-type]


class HeterogeneityCI:
    """Q-profile intervals of τ² for every analysis."""

    def setup(self) -> None:
        y, v = _data(20_000, 12)
        self.res = pool_many(y, v, method="REML")

    def time_heterogeneity_ci(self) -> None:
        self.res.heterogeneity_ci()
