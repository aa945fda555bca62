"""Small value types shared by the result classes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar, cast

import attrs
import numpy as np
import numpy.typing as npt

__all__ = [
    "ConfidenceInterval",
    "FrozenMap",
    "IntervalArray",
    "freeze_arrays",
    "readonly",
    "value_key",
]

_T = TypeVar("_T")
FloatArray = npt.NDArray[np.float64]


#: Immutable field types that :func:`readonly` returns as they are.
_PLAIN: frozenset[type] = frozenset({float, int, bool, str, type(None), tuple})


def readonly(x: _T) -> _T:
    """``x``, or for an ndarray a read-only view that cannot be made writable again.

    The view's base is an array owned by the result and locked
    (``writeable=False``), so ``arr.setflags(write=True)`` on the handed-out view
    raises.  An array the result owns (no base) is locked in place and viewed; any
    other (a view of someone else's memory, e.g. the caller's) is copied first, so
    the caller's own array stays writable.  Mappings become :class:`FrozenMap`.
    """
    if x.__class__ in _PLAIN:  # the common case, without the ABC checks below
        return x
    if isinstance(x, np.ndarray):
        if x.base is None:
            if x.flags.writeable:
                x.flags.writeable = False
            return cast(_T, x.view())
        if not x.flags.writeable and _locked(x):
            return x
        owned = np.array(x, copy=True)
        owned.flags.writeable = False
        return cast(_T, owned.view())
    if isinstance(x, Mapping) and not isinstance(x, FrozenMap):
        return cast(_T, FrozenMap(x))
    return x


def _locked(x: npt.NDArray[Any]) -> bool:
    """Whether ``x`` is a view whose every base is a read-only ndarray."""
    base = x.base
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        if base.base is None:
            return True
        base = base.base
    return False


class FrozenMap(Mapping[Any, Any]):
    """A read-only mapping that pickles and deep-copies (unlike ``MappingProxyType``).

    Equal to any mapping with the same items; hashable when its values are.
    """

    __slots__ = ("_d",)
    _d: dict[Any, Any]

    def __init__(self, items: Mapping[Any, Any] | None = None) -> None:
        object.__setattr__(self, "_d", dict(items or {}))

    def __getitem__(self, key: Any) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenMap is read-only")

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (dict(self._d),))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return len(self) == len(other) and all(
            k in other and value_key(v) == value_key(other[k]) for k, v in self._d.items()
        )

    def __hash__(self) -> int:
        return hash(frozenset((k, value_key(v)) for k, v in self._d.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"


class _ArrayKey:
    """The value of an array for equality and hashing: dtype kind, shape and
    contents, with every NaN alike and -0.0 equal to 0.0."""

    __slots__ = ("_key",)

    def __init__(self, a: npt.NDArray[Any]) -> None:
        kind = a.dtype.kind
        if kind in "fc":
            b = np.array(a, dtype=np.complex128 if kind == "c" else np.float64) + 0.0
            b[np.isnan(b)] = np.nan  # one NaN bit pattern
            body: object = b.tobytes()
        elif kind == "O":
            body = tuple(value_key(x) for x in a.reshape(-1).tolist())
        else:
            body = np.ascontiguousarray(a).tobytes()
            kind = a.dtype.str
        self._key = (kind, a.shape, body)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ArrayKey) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)


_NAN = ("nan",)


def value_key(x: Any) -> Any:
    """A hashable stand-in for ``x`` that compares by value: arrays by their
    contents, NaN equal to NaN, containers element by element.

    The equality and hash of every result class (see :func:`freeze_arrays`).
    """
    if isinstance(x, np.ndarray):
        return _ArrayKey(x)
    if isinstance(x, (float, np.floating)):
        return _NAN if x != x else float(x) + 0.0
    if isinstance(x, (tuple, list)):
        return tuple(value_key(v) for v in x)
    if isinstance(x, Mapping):
        return frozenset((k, value_key(v)) for k, v in x.items())
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


#: Field annotations of immutable values, which :func:`freeze_arrays` leaves without
#: the :func:`readonly` converter (it would return them as they are: an identity
#: call per field on every result built, a few percent of a small fit).
_IMMUTABLE_TYPES: frozenset[object] = frozenset({
    float, int, bool, str,
    "float", "int", "bool", "str", "float | None", "int | None", "bool | None",
    "str | None", "tuple[str, ...]", "tuple[str, ...] | None",
})


def freeze_arrays(
    cls: type, fields: list[attrs.Attribute[Any]]
) -> list[attrs.Attribute[Any]]:
    """attrs ``field_transformer`` of the result classes.

    Every field without a converter gets :func:`readonly` (but those annotated as
    immutable scalars, strings or tuples of strings), so a frozen result's
    arrays are frozen too: ``fit.yi[0] = 5`` raises instead of silently changing
    what later calls (``egger_test(fit)``, ``predict``) compute, and
    ``setflags(write=True)`` is refused.  Fields shown in the repr use
    :func:`brief_repr`, so that a result of many studies prints in a few lines
    (``to_frame()`` and ``summary()`` show everything).

    Equality and hashing: two results are equal when they are of the same class and
    every field is equal by value (:func:`value_key`: arrays by contents, NaN equal
    to NaN, nested results by their own equality), whatever ``eq`` a field was
    declared with; private fields (a leading underscore: the fit's internal state,
    such as its design or solver problem) and fields with
    ``metadata={"cache": True}`` (caches and inputs kept for later methods) do not
    take part.  The hash agrees with that equality, so
    results can be set members and dict keys (hashing an array reads all of it).
    """
    out = []
    for f in fields:
        if f.converter is None and f.type not in _IMMUTABLE_TYPES:
            f = f.evolve(converter=readonly)
        if f.repr is True:
            f = f.evolve(repr=brief_repr)
        if f.name.startswith("_") or f.metadata.get("cache", False):
            f = f.evolve(eq=False, order=False, hash=False)
        else:
            # every field but caches takes part in ==, and in the hash, by value
            f = f.evolve(eq=True, eq_key=value_key, order=False, order_key=None,
                         hash=None)
        out.append(f)
    return out


def _to_float(x: float) -> float:
    return float(x)


@attrs.frozen(field_transformer=freeze_arrays)
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
