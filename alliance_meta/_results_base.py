"""Small value types shared by the result classes."""

from __future__ import annotations

from collections.abc import Iterator

import attrs

__all__ = ["ConfidenceInterval"]


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
