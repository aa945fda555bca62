"""Helpers that build statsmodels summary tables for every result class."""

from __future__ import annotations

from collections.abc import Sequence

from statsmodels.iolib.summary import Summary
from statsmodels.iolib.table import SimpleTable

__all__ = ["info_table", "make_summary", "value_table"]


def info_table(
    left: Sequence[tuple[str, str]], right: Sequence[tuple[str, str]], title: str
) -> SimpleTable:
    """A two-column block of ``label: value`` pairs, like statsmodels' model header."""
    n = max(len(left), len(right))
    lpad = list(left) + [("", "")] * (n - len(left))
    rpad = list(right) + [("", "")] * (n - len(right))
    data = [[lv, rk, rv] for (_, lv), (rk, rv) in zip(lpad, rpad, strict=True)]
    stubs = [lk for lk, _ in lpad]
    return SimpleTable(data, stubs=stubs, title=title, txt_fmt={"table_dec_above": "="})


def value_table(
    rows: Sequence[Sequence[str]], headers: Sequence[str], stubs: Sequence[str], title: str = ""
) -> SimpleTable:
    """A table of formatted values with column headers and row labels."""
    return SimpleTable(
        [list(r) for r in rows], headers=list(headers), stubs=list(stubs), title=title
    )


def make_summary(tables: Sequence[SimpleTable], notes: Sequence[str] = ()) -> Summary:
    """Assemble tables (and optional notes) into a statsmodels ``Summary``."""
    smry = Summary()
    smry.tables.extend(tables)
    if notes:
        smry.add_extra_txt(list(notes))
    return smry
