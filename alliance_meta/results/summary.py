"""Helpers that build statsmodels summary tables for every result class."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from statsmodels.iolib.summary import Summary
    from statsmodels.iolib.table import SimpleTable

__all__ = [
    "coefficient_frame",
    "frame_summary", "frame_table", "info_table", "make_summary", "value_table"]


def info_table(
    left: Sequence[tuple[str, str]], right: Sequence[tuple[str, str]], title: str
) -> SimpleTable:
    """A two-column block of ``label: value`` pairs, like statsmodels' model header."""
    from statsmodels.iolib.table import SimpleTable
    n = max(len(left), len(right))
    lpad = list(left) + [("", "")] * (n - len(left))
    rpad = list(right) + [("", "")] * (n - len(right))
    data = [[lv, rk, rv] for (_, lv), (rk, rv) in zip(lpad, rpad, strict=True)]
    stubs = [lk for lk, _ in lpad]
    table = SimpleTable(data, stubs=stubs, title=title, txt_fmt={"table_dec_above": "="})
    # statsmodels sizes the rules to the cells, not the title: widen the last column
    # so that the title's rule is as long as the title
    width = max((len(line) for line in table.as_text().splitlines()[1:]), default=0)
    if data and width < len(title):
        pad = len(title) - width
        data = [[*row[:-1], row[-1] + " " * pad] for row in data]
        table = SimpleTable(data, stubs=stubs, title=title, txt_fmt={"table_dec_above": "="})
    return table


def value_table(
    rows: Sequence[Sequence[str]], headers: Sequence[str], stubs: Sequence[str], title: str = ""
) -> SimpleTable:
    """A table of formatted values with column headers and row labels."""
    from statsmodels.iolib.table import SimpleTable
    return SimpleTable(
        [list(r) for r in rows], headers=list(headers), stubs=list(stubs), title=title
    )


def make_summary(tables: Sequence[SimpleTable], notes: Sequence[str] = ()) -> Summary:
    """Assemble tables (and optional notes) into a statsmodels ``Summary``."""
    from statsmodels.iolib.summary import Summary
    smry = Summary()
    smry.tables.extend(tables)
    if notes:
        smry.add_extra_txt(list(notes))
    return smry


def coefficient_frame(
    names: Sequence[str],
    coef: Any,
    se: Any,
    statistic: Any,
    pvalue: Any,
    ci: Any,
    *,
    df: Any = None,
    estimate_name: str = "coef",
    index_name: str | None = "coefficient",
) -> pd.DataFrame:
    """The coefficient table every model's ``to_frame()`` returns: one row per
    coefficient with ``coef`` (or ``estimate_name``), ``se``, ``statistic``, ``df``
    (only where the tests have degrees of freedom per coefficient), ``pvalue``,
    ``ci_low`` and ``ci_high``; ``ci`` is anything with ``.low`` and ``.high``."""
    import pandas as pd

    columns: dict[str, Any] = {estimate_name: coef, "se": se, "statistic": statistic}
    if df is not None:
        columns["df"] = df
    columns.update({"pvalue": pvalue, "ci_low": ci.low, "ci_high": ci.high})
    frame: pd.DataFrame = pd.DataFrame(columns, index=pd.Index(list(names), name=index_name))
    return frame


def _cell(x: Any) -> str:
    """One table cell: floats to 4 decimals (NA for NaN, as metafor prints), None blank."""
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return "NA" if math.isnan(x) else f"{float(x):.4f}"
    return str(x)


def _is_pvalue_column(name: object) -> bool:
    s = str(name).lower()
    return s in ("p", "pval") or "pvalue" in s or "p_value" in s or s.startswith("p>")


def frame_table(frame: pd.DataFrame, title: str = "") -> SimpleTable:
    """A DataFrame as a table: its columns as headers and its index as row labels.

    p-value columns (named ``pvalue``, ``p_value``, ``*_pvalue``, ``P>|z|``...) are
    printed as metafor prints p-values (``<.0001``)."""
    from alliance_meta.results.display import fmt_p

    is_p = [_is_pvalue_column(c) for c in frame.columns]
    rows = [
        [fmt_p(float(x)) if p and isinstance(x, (float, np.floating)) else _cell(x)
         for x, p in zip(row, is_p, strict=True)]
        for row in frame.itertuples(index=False, name=None)
    ]
    stubs = [str(i) for i in frame.index]
    return value_table(rows, [str(c) for c in frame.columns], stubs, title)


def frame_summary(
    title: str,
    info: Sequence[tuple[str, str]],
    frame: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
) -> Summary:
    """A header of ``label: value`` pairs (split over two columns), then ``frame``."""
    half = (len(info) + 1) // 2
    tables = [info_table(info[:half], info[half:], title)]
    if frame is not None:
        tables.append(frame_table(frame))
    return make_summary(tables, notes)
