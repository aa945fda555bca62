"""Regression tests from the validation sweep against metafor 3.8.1 / clubSandwich 0.5.8.

References: ``tests/reference/sweep_*.json`` (``generate_sweep.R``, see
``PROVENANCE_sweep.md``).  The full sweep (every case) is
``benchmarks/sweep_compare.py``; the tests here keep the cases that found a defect and a
sample of the rest.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import alliance_meta as am
from alliance_meta.exceptions import InvalidStudyError

REF = Path(__file__).parent / "reference"


def _load(name: str) -> Any:
    return json.loads((REF / name).read_text())


def _escalc_case(label: str, measure: str) -> dict[str, Any]:
    for c in _load("sweep_escalc.json")["cases"]:
        if c["label"] == label and c["measure"] == measure and not c["options"]:
            return c  # type: ignore[no-any-return]
    raise KeyError((label, measure))


def test_escalc_error_names_the_input_row_after_omitting_missing_rows() -> None:
    """dat.collins1985a has missing counts in rows 5 and 17 (0-based 4 and 16) and a
    table with no events at all in 0-based row 13, where PHI is undefined (metafor:
    NA).  With nan_policy="omit" the error used to name "row 12" (the position after
    the missing rows were dropped); it must name the input row, as "propagate" does."""
    c = _escalc_case("collins1985a", "PHI")
    inp = {k: np.array(v, dtype=float) for k, v in c["inputs"].items()}
    assert c["yi"][13] is None  # metafor: undefined for this table
    for policy in ("omit", "propagate"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(InvalidStudyError, match="'row 13'"):
                am.escalc("PHI", nan_policy=policy, **inp)
