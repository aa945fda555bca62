"""What people read: p-values as metafor prints them, short reprs, notebook views,
back-transformations for ``predict(transf=)``, and APA-style report sentences.

Every result class mixes in :class:`ResultDisplay`, which gives it a one-line
``repr`` of its headline numbers and a ``_repr_html_`` (its ``summary()`` as HTML)
for notebooks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeAlias

import attrs
import numpy as np
import numpy.typing as npt

from alliance_meta.results.base import ConfidenceInterval, IntervalArray

__all__ = [
    "MINUS",
    "ResultDisplay",
    "Transf",
    "apa_number",
    "apa_p",
    "effect_name",
    "fmt_p",
    "fmt_p_eq",
    "resolve_transf",
    "short_repr",
]

FloatArray = npt.NDArray[np.float64]

#: The typographic minus sign of APA style (U+2212).
MINUS = "\u2212"

#: What ``predict(..., transf=)`` takes: True (the measure's back-transformation),
#: a callable applied elementwise, or None/False (no transformation).
Transf: TypeAlias = "bool | Callable[[Any], Any] | None"


# ---------------------------------------------------------------------------
# p-values
# ---------------------------------------------------------------------------


def fmt_p(p: float | None, digits: int = 4) -> str:
    """A p-value as metafor prints it (its ``.pval``/``fmtp``): ``"<.0001"`` below
    ``10^-digits``, else ``digits`` decimal places (``formatC(p, digits, format =
    "f")``: ``"0.0316"``, ``"1.0000"``); ``"NA"`` when missing."""
    if p is None or math.isnan(p):
        return "NA"
    p = min(max(float(p), 0.0), 1.0)  # as fmtp, which clamps round-off outside [0, 1]
    cutoff = 10.0 ** (-digits)
    if p >= cutoff:
        return f"{p:.{digits}f}"
    return "<." + "0" * (digits - 1) + "1"


def fmt_p_eq(p: float | None, digits: int = 4) -> str:
    """``"= 0.0316"`` or ``"< .0001"``: metafor's ``p-val = ...`` of its printouts."""
    s = fmt_p(p, digits)
    return f"< {s[1:]}" if s.startswith("<") else f"= {s}"


def apa_p(p: float) -> str:
    """A p-value in APA style: ``"p = .032"``, ``"p < .001"`` (no leading zero)."""
    if math.isnan(p):
        return "p = NA"
    if p < 0.001:
        return "p < .001"
    text = f"{p:.3f}"
    return "p = " + (text[1:] if text.startswith("0") else text)


# ---------------------------------------------------------------------------
# Numbers in report sentences
# ---------------------------------------------------------------------------


def apa_number(x: float, digits: int = 2) -> str:
    """A number with ``digits`` decimals and a typographic minus (never ``"−0.00"``)."""
    if math.isnan(x):
        return "NA"
    if math.isinf(x):
        return ("" if x > 0 else MINUS) + "∞"
    text = f"{x:.{digits}f}"
    if text.startswith("-"):
        body = text[1:]
        return body if float(body) == 0 else MINUS + body
    return text


#: The conventional name of each measure's value on its natural scale.
_EFFECT_NAMES = {
    "ZCOR": "r", "COR": "r", "UCOR": "r", "SMD": "g", "SMDH": "g", "MD": "MD",
    "ROM": "ROM", "OR": "OR", "RR": "RR", "RD": "RD", "GEN": "estimate",
}  # fmt: skip


def effect_name(measure: str) -> str:
    """The name of an effect on its natural scale (``r`` for ZCOR, ``OR`` ...)."""
    from alliance_meta.data import measures

    try:
        name = measures.get(measure).natural_name
    except ValueError:
        name = ""
    return name or _EFFECT_NAMES.get(measure, measure)


# ---------------------------------------------------------------------------
# transf
# ---------------------------------------------------------------------------


def resolve_transf(
    transf: Transf, measure: str
) -> tuple[Callable[[FloatArray], FloatArray] | None, str | None]:
    """The function and name of ``predict(..., transf=)``.

    ``True`` is the measure's back-transformation (``tanh`` for ZCOR, ``exp`` for
    log ratios; the identity for measures on their natural scale), from the measure
    registry; a callable is applied elementwise (vectorised if it can be); ``None``
    and ``False`` transform nothing.
    """
    if transf is None or transf is False:
        return None, None
    if transf is True:
        from alliance_meta.data import measures

        spec = measures.get(measure)

        def bt(x: FloatArray) -> FloatArray:
            return spec.to_natural(np.asarray(x, dtype=np.float64))

        return bt, measures.natural_scale_name(measure)
    if callable(transf):
        fn = transf

        def apply(x: FloatArray) -> FloatArray:
            arr = np.asarray(x, dtype=np.float64)
            try:
                # a scalar function (math.exp) given an array: numpy < 2 converts a
                # one-element array with a DeprecationWarning; take the loop instead
                with warnings.catch_warnings():
                    warnings.simplefilter("error", DeprecationWarning)
                    out = np.asarray(fn(arr), dtype=np.float64)
                if out.shape == arr.shape:
                    return out
            except (TypeError, ValueError, DeprecationWarning):
                pass
            return np.array([float(fn(float(v))) for v in arr.ravel()]).reshape(arr.shape)

        return apply, getattr(transf, "__name__", type(transf).__name__)
    from alliance_meta.exceptions import ModelSpecificationError

    raise ModelSpecificationError(
        f"transf must be True (the measure's back-transformation), a callable or None, "
        f"not {transf!r}"
    )


# ---------------------------------------------------------------------------
# repr and notebook views
# ---------------------------------------------------------------------------


def _brief(x: object) -> str:
    if x is None:
        return "None"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.4g}"
    if isinstance(x, str):
        return repr(x)
    if isinstance(x, ConfidenceInterval):
        return f"[{x.low:.4g}, {x.high:.4g}]"
    if isinstance(x, np.ndarray):
        if x.size <= 6 and x.ndim == 1 and x.dtype.kind in "iufb":
            return "[" + ", ".join(f"{float(v):.4g}" for v in x) + "]"
        return f"<{'x'.join(map(str, x.shape))} array>"
    if isinstance(x, IntervalArray):
        if x.low.size <= 3 and x.low.ndim == 1:
            return "[" + ", ".join(f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(x.low, x.high,
                                                                        strict=True)) + "]"
        return f"<{x.low.size} intervals>"
    if isinstance(x, Mapping):
        keys = list(x)
        shown = ", ".join(repr(k) for k in keys[:4]) + (", ..." if len(keys) > 4 else "")
        return "{" + shown + "}"
    if isinstance(x, tuple):
        if len(x) <= 6:
            return "(" + ", ".join(_brief(v) for v in x) + ("," if len(x) == 1 else "") + ")"
        return f"<{len(x)} items>"
    return f"<{type(x).__name__}>"


def _is_scalar(x: object) -> bool:
    return x is None or isinstance(
        x, (bool, int, float, str, np.integer, np.floating, np.bool_, ConfidenceInterval)
    )


def short_repr(obj: object, fields: tuple[str, ...] = (), limit: int = 7) -> str:
    """``Name(field=value, ...)`` of a few headline fields, numbers to 4 significant
    digits; without ``fields``, the first ``limit`` scalar fields."""
    cls = type(obj)
    if not fields and attrs.has(cls):
        fields = tuple(
            f.name for f in attrs.fields(cls)
            if not f.name.startswith("_") and _is_scalar(getattr(obj, f.name))
        )[:limit]
    parts = [f"{name}={_brief(getattr(obj, name))}" for name in fields]
    if hasattr(cls, "__len__") and "k" not in fields:
        parts.insert(0, f"n={len(obj)}")  # type: ignore[arg-type]  # has __len__
    return f"{cls.__name__}({', '.join(parts)})"


class ResultDisplay:
    """Mixed into every result class: a one-line ``repr`` of its headline numbers
    (``_repr_fields``, or its first scalar fields) and ``_repr_html_``, its
    ``summary()`` as HTML, for notebooks."""

    __slots__ = ()

    #: the fields the repr shows (empty: the first scalar fields)
    _repr_fields: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        return short_repr(self, self._repr_fields)

    def _repr_html_(self) -> str:
        summary = getattr(self, "summary", None)
        if summary is None:
            return f"<pre>{_escape(repr(self))}</pre>"
        html: str = summary().as_html()
        return html


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
