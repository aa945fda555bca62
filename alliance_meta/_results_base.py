"""Small value types shared by the result classes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar, cast

import attrs
import numpy as np

__all__ = ["ConfidenceInterval", "freeze_arrays", "readonly"]

_T = TypeVar("_T")


def readonly(x: _T) -> _T:
    """``x``, or for a writable ndarray a read-only view of it.

    A view, not a copy: results stay cheap for millions of analyses, and an array
    the caller passed in stays writable for the caller.
    """
    if isinstance(x, np.ndarray) and x.flags.writeable:
        view = x.view()
        view.flags.writeable = False
        return cast(_T, view)
    return x


def freeze_arrays(
    cls: type, fields: list[attrs.Attribute[Any]]
) -> list[attrs.Attribute[Any]]:
    """attrs ``field_transformer``: every field without a converter gets :func:`readonly`.

    So a frozen result's arrays are frozen too: ``fit.yi[0] = 5`` raises instead of
    silently changing what later calls (``egger_test(fit)``, ``predict``) compute.
    """
    return [f if f.converter is not None else f.evolve(converter=readonly) for f in fields]


def _to_float(x: float) -> float:
    return float(x)


@attrs.frozen
class ConfidenceInterval:
    """A two-sided interval ``[low, high]``.

    Parameters
    ----------
    low, high : float
        The bounds (converted to float; NaN for an interval that could not be
        computed).

    Examples
    --------
    >>> ci = ConfidenceInterval(-0.5, 0.25)
    >>> low, high = ci
    >>> ci.contains(0.0)
    True
    """

    low: float = attrs.field(converter=_to_float)
    high: float = attrs.field(converter=_to_float)

    def __iter__(self) -> Iterator[float]:
        """Iterate over ``(low, high)`` so that ``low, high = ci`` works."""
        return iter((self.low, self.high))

    @property
    def width(self) -> float:
        """``high - low``."""
        return self.high - self.low

    def contains(self, x: float) -> bool:
        """Whether ``low <= x <= high``."""
        return self.low <= x <= self.high
