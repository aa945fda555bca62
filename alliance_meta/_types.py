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
Measure = Literal["GEN", "ZCOR", "COR", "UCOR", "SMD", "MD", "SMDH", "ROM", "OR", "RR", "RD"]

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
