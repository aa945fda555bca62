"""Back-transformations from the analysis scale to the natural scale."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["back_transform", "natural_scale_name"]

_T = TypeVar("_T", float, npt.NDArray[np.float64])

_LOG_MEASURES = frozenset({"OR", "RR", "ROM"})


def _identity(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return x


def _transform_for(measure: str) -> Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    if measure == "ZCOR":
        return np.tanh  # Fisher's z back to r (metafor's transf.ztor)
    if measure in _LOG_MEASURES:
        return np.exp  # log ratio back to ratio (metafor's transf = exp)
    return _identity


def back_transform(value: _T, measure: str) -> _T:
    """Map ``value`` from the analysis scale of ``measure`` to its natural scale.

    ZCOR → r by ``tanh``; OR, RR and ROM (log ratios) → ratios by ``exp``; every
    other measure is already on its natural scale and is returned unchanged.
    """
    out = _transform_for(measure)(np.asarray(value, dtype=np.float64))
    if isinstance(value, float | int):
        return float(out)
    return out


def natural_scale_name(measure: str) -> str:
    """Name of the natural scale: ``"r"`` for ZCOR, the ratio for log ratios."""
    return {"ZCOR": "r", "OR": "OR", "RR": "RR", "ROM": "ROM"}.get(measure, measure)
