"""Array types and row-wise reductions shared by the core modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

import numpy as np
import numpy.typing as npt

__all__ = ["BoolArray", "FloatArray", "IntArray", "lazy", "rowdot", "rowsum"]

_T = TypeVar("_T")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def rowsum(a: FloatArray) -> FloatArray:
    """Row sums of a 2-D array as one matrix-vector product.

    numpy's ``sum(axis=1)`` over short rows (a dozen studies) runs an inner loop per
    row; a BLAS ``gemv`` with a vector of ones is 10-20x faster on such shapes.
    """
    out: FloatArray = a @ np.ones(a.shape[1])
    return out


def rowdot(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise inner product ``sum(a * b, axis=1)``."""
    return rowsum(a * b)


class lazy(Generic[_T]):  # lower case: used as a decorator, like cached_property
    """A property computed on first access and stored on the instance.

    ``functools.cached_property`` without its lock (Python 3.11 takes an RLock on
    every first access, a cost that shows in kernels made per call).  Not
    thread-safe in the sense of computing once: two threads may both compute the
    value, which is harmless for the pure functions it wraps.
    """

    def __init__(self, fn: Callable[[Any], _T]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, cls: type | None = None) -> lazy[_T]: ...
    @overload
    def __get__(self, obj: object, cls: type | None = None) -> _T: ...

    def __get__(self, obj: object | None, cls: type | None = None) -> _T | lazy[_T]:
        if obj is None:
            return self
        value = self.fn(obj)
        obj.__dict__[self.name] = value
        return value
