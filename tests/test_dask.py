"""dask input to pool_many on a real distributed LocalCluster equals numpy input."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from alliance_meta import pool_many  # noqa: E402

# identical arithmetic on identical blocks: only summation order can differ, so 1e-12
TOL = 1e-12


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as c:
        yield c


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    m, n = 3000, 9
    v = rng.uniform(0.01, 0.2, (m, n))
    y = rng.normal(0, 0.3, (m, n)) + rng.normal(0, 0.2, (m, 1))
    y[::5, 4:] = np.nan
    v[::5, 4:] = np.nan
    y[::11, 1:] = np.nan  # k = 1 rows
    v[::11, 1:] = np.nan
    return y, v


@pytest.mark.parametrize("method", ["EE", "DL", "REML"])
def test_dask_array_equals_numpy(client: object, method: str) -> None:
    y, v = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pool_many(y, v, method=method)  # type: ignore[arg-type]
        lazy = pool_many(
            da.from_array(y, chunks=(700, 3)), da.from_array(v, chunks=(700, 3)),
            method=method,  # type: ignore[arg-type]
        )
        got = lazy.compute()  # type: ignore[attr-defined]
    # tau2_se: computed with the fit in dask blocks, on first access for numpy input
    for name in ("estimate", "se", "tau2", "tau2_se", "Q", "I2", "H2", "pvalue"):
        np.testing.assert_allclose(got[name], getattr(ref, name), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(got["ci_low"], ref.ci.low, rtol=TOL, atol=TOL)
    assert np.array_equal(got["k"], ref.k)


@pytest.mark.parametrize("method", ["DL", "REML"])
def test_dask_dataframe_equals_numpy(client: object, method: str) -> None:
    y, v = _data()
    m, n = y.shape
    g = np.repeat(np.arange(m), n)
    keep = ~np.isnan(y.ravel())
    rng = np.random.default_rng(0)
    perm = rng.permutation(int(keep.sum()))
    df = pd.DataFrame(
        {"yi": y.ravel()[keep][perm], "vi": v.ravel()[keep][perm], "group": g[keep][perm]}
    )
    # partition by group so that no analysis spans two partitions
    ddf = dd.from_pandas(df.set_index("group", drop=False).sort_index(), npartitions=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pool_many(y, v, method=method)  # type: ignore[arg-type]
        out = pool_many(ddf.yi, ddf.vi, ddf.group, method=method).compute()  # type: ignore[attr-defined]
    out = out.sort_index()
    assert np.array_equal(out.index.to_numpy(), np.arange(m))
    for name in ("estimate", "se", "tau2", "Q", "I2"):
        np.testing.assert_allclose(out[name].to_numpy(), getattr(ref, name), rtol=TOL, atol=TOL)
