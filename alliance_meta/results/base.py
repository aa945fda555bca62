"""Small value types shared by the result classes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar, cast

import attrs
import numpy as np
import numpy.typing as npt

__all__ = ["ConfidenceInterval", "IntervalArray", "freeze_arrays", "readonly"]

_T = TypeVar("_T")
FloatArray = npt.NDArray[np.float64]


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


def brief_repr(x: object) -> str:
    """``repr`` of a field, with long arrays and tuples elided in the middle."""
    if isinstance(x, np.ndarray) and x.size > 6:
        with np.printoptions(threshold=6, edgeitems=2, precision=4):
            return repr(x)
    if isinstance(x, tuple) and len(x) > 6:
        head = ", ".join(repr(v) for v in x[:2])
        return f"({head}, ..., {x[-1]!r}) [{len(x)} items]"
    return repr(x)


def freeze_arrays(
    cls: type, fields: list[attrs.Attribute[Any]]
) -> list[attrs.Attribute[Any]]:
    """attrs ``field_transformer`` of the result classes.

    Every field without a converter gets :func:`readonly`, so a frozen result's
    arrays are frozen too: ``fit.yi[0] = 5`` raises instead of silently changing
    what later calls (``egger_test(fit)``, ``predict``) compute.  Fields shown in the
    repr use :func:`brief_repr`, so that a result of many studies prints in a few
    lines (``to_frame()`` and ``summary()`` show everything).
    """
    out = []
    for f in fields:
        if f.converter is None:
            f = f.evolve(converter=readonly)
        if f.repr is True:
            f = f.evolve(repr=brief_repr)
        out.append(f)
    return out


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


@attrs.frozen(field_transformer=freeze_arrays)
class IntervalArray:
    """Interval bounds for many analyses or coefficients: ``low`` and ``high`` arrays."""

    low: FloatArray = attrs.field(eq=False)
    high: FloatArray = attrs.field(eq=False)

    def __iter__(self) -> Iterator[FloatArray]:
        return iter((self.low, self.high))
