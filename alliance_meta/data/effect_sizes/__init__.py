"""The effect-size measures, one module per family of input data.

Importing this package registers every measure in
:mod:`alliance_meta.data.measures`, family by family.
"""

from __future__ import annotations

from alliance_meta.data.effect_sizes import (
    change,
    correlations,
    generic,
    means,
    proportions,
    rates,
    reliability,
    single_group,
    tables,
)

__all__ = [
    "change",
    "correlations",
    "generic",
    "means",
    "proportions",
    "rates",
    "reliability",
    "single_group",
    "tables",
]
