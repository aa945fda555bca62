"""Literal types shared by the public API."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "ArrayLike",
    "FloatArray",
    "Measure",
    "Method",
    "NanPolicy",
    "Test",
]

#: Effect-size measures, named as in metafor's ``escalc``; ``"GEN"`` is a generic outcome.
#: The same names as the measure registry (:mod:`alliance_meta.data.measures`), which
#: a test checks.
Measure = Literal[
    "GEN",
    # 2x2 tables, paired tables, genotype counts
    "RR", "OR", "RD", "PETO", "AS", "PHI", "YUQ", "YUY", "RTET", "PBIT", "OR2D", "OR2DN",
    "OR2DL", "MPRD", "MPRR", "MPOR", "MPORC", "MPPETO", "MPORM", "REH",
    # incidence rates
    "IRR", "IRD", "IRSD", "IR", "IRLN", "IRS", "IRFT",
    # two groups' means
    "MD", "SMD", "SMDH", "SMD1", "SMD1H", "ROM", "CVR", "VR", "RPB", "RBIS", "D2OR",
    "D2ORN", "D2ORL",
    # correlations
    "COR", "UCOR", "ZCOR", "PCOR", "ZPCOR", "SPCOR",
    # proportions
    "PR", "PLN", "PLO", "PAS", "PFT",
    # single groups
    "MN", "MNLN", "CVLN", "SDLN", "SMN",
    # pre-post change
    "MC", "SMCC", "SMCR", "SMCRH", "ROMC", "CVRC", "VRC",
    # Cronbach's alpha
    "ARAW", "AHW", "ABT",
]  # fmt: skip

#: τ² estimators, named as in metafor's ``rma.uni`` (``FE`` and ``CE`` are aliases of ``EE``).
Method = Literal[
    "EE", "FE", "CE", "DL", "HE", "HS", "HSk", "SJ", "ML", "REML", "EB", "PM", "PMM"
]

#: Test of the pooled estimate: normal, t with k-p df, Knapp-Hartung, or Knapp-Hartung
#: with the scale factor floored at 1.
Test = Literal["z", "t", "knha", "adhoc"]

#: What to do with missing values.
NanPolicy = Literal["raise", "omit"]

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike
