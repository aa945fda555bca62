"""The one design builder: factor coding and design matrices, as R builds them.

Every model builds its design here: R's ``factor()`` levels (sorted, numbers
numerically, logicals as ``TRUE``/``FALSE``), treatment coding with a reference
level, ``intrcpt`` first, R's coefficient names, the columns metafor drops as
redundant, and the rows of new data for ``predict``.  :class:`Moderator` (the data
model), :func:`~alliance_meta.meta_regression`, the subgroup analyses and ``predict``
all call it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs
import numpy as np
import numpy.typing as npt

from alliance_meta._types import FloatArray
from alliance_meta.exceptions import InvalidStudyError, ModelSpecificationError

if TYPE_CHECKING:
    from alliance_meta.data.study import Moderator, Study, StudySet

__all__ = [
    "ModeratorSpec",
    "Term",
    "build_design",
    "check_design",
    "check_design_values",
    "factor_codes",
    "independent_columns",
    "new_design_rows",
    "r_level",
    "treatment_columns",
]


def r_level(v: object) -> str:
    """R's ``as.character`` of one factor value (``2`` not ``2.0``, ``TRUE``/``FALSE``)."""
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(v)


def _is_numeric(values: npt.NDArray[Any]) -> bool:
    if values.dtype.kind in "iuf":
        return True
    if values.dtype.kind == "O":
        return all(
            isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_))
            for v in values
        )
    return False


@attrs.frozen
class Term:
    """One moderator as it enters the design: its name, coding and columns."""

    name: str
    moderator: Moderator
    numeric_levels: bool  # categorical coded from numeric values (R's factor(x))
    coef_names: tuple[str, ...]


def _spec_for(
    name: str, values: npt.NDArray[Any], given: Moderator | None, labels: Sequence[str]
) -> tuple[Moderator, bool, npt.NDArray[Any]]:
    """The Moderator used for ``values`` and the values as ``design_columns`` wants them."""
    from alliance_meta.data.study import Moderator

    numeric = _is_numeric(values)
    if given is not None and given.kind == "categorical" and numeric:
        # factor(x) of a numeric moderator: levels sorted numerically, spelled as R does
        fl = values.astype(np.float64)
        if not np.all(np.isfinite(fl)):
            i = int(np.flatnonzero(~np.isfinite(fl))[0])
            raise InvalidStudyError("missing moderator value", study=labels[i], field=name)
        strs = np.asarray([r_level(v) for v in fl], dtype=object)
        levels = given.levels
        if levels is None:
            levels = tuple(r_level(v) for v in np.unique(fl))
        return Moderator(name, "categorical", levels, given.reference), True, strs
    if given is not None:
        if given.kind == "categorical":
            given = given.with_levels_from(list(values))
        return given, False, values
    if values.dtype.kind == "b":
        values = values.astype(object)
    spec = Moderator.infer(name, list(values), labels=labels)
    return spec, False, values


def _moderator_items(
    moderators: object,
) -> list[tuple[str, Moderator | None, object | None]]:
    """``(name, Moderator or None, values or None)`` in the order given."""
    from alliance_meta.data.study import Moderator

    if isinstance(moderators, (str, Moderator)):
        moderators = [moderators]
    items: list[tuple[str, Moderator | None, object | None]] = []
    if isinstance(moderators, Mapping):
        for key, vals in moderators.items():
            if isinstance(key, Moderator):
                items.append((key.name, key, vals))
            elif isinstance(key, str):
                items.append((key, None, vals))
            else:
                raise ModelSpecificationError(
                    f"moderator names must be str or Moderator, got {type(key).__name__}"
                )
        return items
    if isinstance(moderators, Sequence):
        for m in moderators:
            if isinstance(m, Moderator):
                items.append((m.name, m, None))
            elif isinstance(m, str):
                items.append((m, None, None))
            else:
                raise ModelSpecificationError(
                    f"moderators must be names, Moderator objects or a mapping, got {m!r}"
                )
        return items
    raise ModelSpecificationError(
        "moderators must be a name, a Moderator, a sequence of them, or a mapping "
        "name -> values"
    )


def as_studyset(studies: StudySet | Sequence[Study] | None) -> StudySet | None:
    from alliance_meta.data.study import StudySet

    if studies is None or isinstance(studies, StudySet):
        return studies
    return StudySet(tuple(studies))


def _moderator_values(
    name: str, vals: object | None, sset: StudySet | None, k: int
) -> npt.NDArray[Any]:
    if vals is None:
        if sset is None:
            raise InvalidStudyError(
                "moderator given by name but no studies; pass a mapping name -> values",
                field=name,
            )
        # an unknown name raises InvalidStudyError naming it and the known ones
        arr = np.asarray(sset.moderator(name))
    else:
        arr = np.asarray(vals)
        if arr.dtype.kind == "U":
            arr = arr.astype(object)
    if arr.ndim != 1 or arr.shape[0] != k:
        raise InvalidStudyError(
            f"moderator has shape {arr.shape}, expected ({k},) (one value per study)",
            field=name,
        )
    return arr


#: What ``meta_regression(moderators=...)`` takes: moderator names (or Moderator
#: objects) of the studies, or a mapping of them to values (with yi/vi).
ModeratorSpec: TypeAlias = (
    "str | Moderator | Sequence[str | Moderator] | Mapping[str, npt.ArrayLike]"
    " | Mapping[Moderator, npt.ArrayLike] | Mapping[str | Moderator, npt.ArrayLike]"
)


def build_design(
    moderators: object,
    sset: StudySet | None,
    k: int,
    labels: Sequence[str],
) -> tuple[tuple[str, ...], FloatArray, tuple[Term, ...]]:
    """R's model matrix ``[1, moderator columns...]`` with coefficient names."""
    names: list[str] = ["intrcpt"]
    cols: list[FloatArray] = [np.ones((k, 1))]
    terms: list[Term] = []
    seen: set[str] = set()
    for name, given, vals in _moderator_items(moderators):
        if name in seen:
            raise ModelSpecificationError(f"moderator {name!r} is given twice")
        seen.add(name)
        arr = _moderator_values(name, vals, sset, k)
        spec, numeric_levels, coded = _spec_for(name, arr, given, labels)
        cn, block = spec.design_columns(list(coded), labels)
        if block.shape[1] == 0:
            raise InvalidStudyError(
                "categorical moderator has a single level (no contrast to estimate)",
                field=name,
            )
        names.extend(cn)
        cols.append(block)
        terms.append(Term(name, spec, numeric_levels, tuple(cn)))
    X = np.hstack(cols).astype(np.float64)
    return tuple(names), X, tuple(terms)


#: A column is redundant when projecting it on the kept columns leaves at most this
#: fraction of its norm (the tolerance of R's ``lm``, which metafor uses to find them).
REDUNDANT_TOL = 1e-7


#: Design values beyond this magnitude (2^400, about 2.6e120) are refused: the
#: coefficients' covariance ~ 1/x² would underflow and the products x² w of the
#: weighted cross-products overflow.
DESIGN_LIMIT = 2.0**400


def check_design_values(
    X: FloatArray, names: Sequence[str], labels: Sequence[str]
) -> None:
    """Refuse a design value that is not finite or beyond :data:`DESIGN_LIMIT`,
    naming the study and the column (moderator): such a column must not be silently
    dropped as redundant, nor give wrong numbers."""
    bad = ~np.isfinite(X) | (np.abs(X) > DESIGN_LIMIT)
    if bad.any():
        i, j = (int(t) for t in np.argwhere(bad)[0])
        raise InvalidStudyError(
            f"moderator value {float(X[i, j])!r} in design column {names[j]!r} is "
            + ("not finite" if not np.isfinite(X[i, j]) else
               f"beyond {DESIGN_LIMIT:.3g} in magnitude; rescale the moderator")
            + " (it would otherwise be dropped as redundant or overflow)",
            study=labels[i],
            field=names[j],
        )


def independent_columns(X: FloatArray) -> npt.NDArray[np.bool_]:
    """Columns of ``X`` kept by R's ``lm(yi ~ X - 1)``: each in turn unless it is a
    linear combination of the kept ones before it (its residual after projecting
    on them is at most ``REDUNDANT_TOL`` times its norm).

    Each column is first scaled by a power of two to a largest value near 1 (the
    test is scale-free per column), so that norms of large values cannot overflow
    and make a column look redundant."""
    big = np.max(np.abs(X), axis=0) if X.size else np.zeros(X.shape[1])
    _, e = np.frexp(np.where(big > 0, big, 1.0))
    X = np.ldexp(X, -e[None, :])
    keep = np.zeros(X.shape[1], dtype=bool)
    for j in range(X.shape[1]):
        col = X[:, j]
        norm = float(np.linalg.norm(col))
        if keep.any():
            basis = X[:, keep]
            coef = np.linalg.lstsq(basis, col, rcond=None)[0]
            resid = float(np.linalg.norm(col - basis @ coef))
        else:
            resid = norm
        keep[j] = norm > 0 and resid > REDUNDANT_TOL * norm
    return keep


def check_design(
    X: FloatArray, names: Sequence[str], method: str, hint: str = "use fewer moderators"
) -> None:
    """metafor's rule, after redundant columns are dropped: k >= p, and k > p when τ²
    is estimated too ("Number of parameters to be estimated is larger than the number
    of observations")."""
    k, p = X.shape
    if k < p or (method != "EE" and k == p):
        extra = "" if method == "EE" else " and tau^2"
        raise ModelSpecificationError(
            f"too few studies: k = {k} for {p} coefficients ({', '.join(names)}){extra}; "
            + hint + ("" if method == "EE" else " or method='EE'")
        )


def factor_codes(
    values: npt.NDArray[Any], spec: Moderator | None, field: str, labels: Sequence[str]
) -> tuple[tuple[str, ...], npt.NDArray[np.int64]]:
    """R's ``factor()`` of one grouping: the levels (R's order, or those of ``spec``)
    and the 0-based level of each study; an error names a missing value's study, an
    unknown level, and an empty level."""

    def missing(i: int) -> InvalidStudyError:
        return InvalidStudyError("missing group value", study=labels[i], field=field)

    if values.dtype.kind == "U":
        values = values.astype(object)
    numeric = values.dtype.kind in "iuf" or (
        values.dtype.kind == "O"
        and all(
            isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_))
            for v in values
        )
    )
    if numeric:
        fl = values.astype(np.float64)
        if not np.all(np.isfinite(fl)):
            raise missing(int(np.argmin(np.isfinite(fl))))
        strs = [r_level(v) for v in fl]
        natural = [r_level(v) for v in np.unique(fl)]
    else:
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                raise missing(i)
        strs = [r_level(v) for v in values]
        natural = sorted(set(strs))
    levels: tuple[str, ...] = tuple(natural)
    if spec is not None and spec.levels is not None:
        levels = tuple(spec.levels)
        unknown = sorted(set(strs) - set(levels))
        if unknown:
            raise InvalidStudyError(
                f"unknown level {unknown[0]!r}; expected one of {levels}", field=field
            )
    index = {lv: i for i, lv in enumerate(levels)}
    codes = np.fromiter((index[s] for s in strs), dtype=np.int64, count=len(strs))
    counts = np.bincount(codes, minlength=len(levels))
    if (counts == 0).any():
        empty = levels[int(np.argmin(counts))]
        raise ModelSpecificationError(f"field {field!r}: subgroup {empty!r} has no studies")
    return levels, codes


def treatment_columns(
    strs: npt.NDArray[Any], levels: Sequence[str], reference: str
) -> FloatArray:
    """R's treatment coding: one indicator column per non-reference level, in level
    order (``strs`` are the studies' level labels)."""
    others = [lv for lv in levels if lv != reference]
    cols = np.empty((len(strs), len(others)), dtype=np.float64)
    for j, lv in enumerate(others):
        cols[:, j] = strs == lv
    return cols


def new_design_rows(
    terms: Sequence[Term], kept: npt.NDArray[np.bool_], new_moderators: Mapping[Any, Any]
) -> FloatArray:
    """Design rows of new moderator values (a mapping name -> values), coded as the
    model's ``terms`` coded the data, with the model's ``kept`` columns."""
    given = {str(getattr(k, "name", k)): v for k, v in new_moderators.items()}
    missing = [t.name for t in terms if t.name not in given]
    extra = sorted(set(given) - {t.name for t in terms})
    if missing or extra:
        what = f"missing {missing}" if missing else f"unknown {extra}"
        raise InvalidStudyError(
            f"new moderators must name exactly the model's moderators ({what})",
            field=(missing or extra)[0],
        )
    lens = {np.atleast_1d(np.asarray(v)).shape[0] for v in given.values()}
    # no moderators (an intercept-only model): one prediction, the intercept
    n = lens.pop() if len(lens) == 1 else (1 if not lens else -1)
    if n < 0:
        raise InvalidStudyError("new moderators differ in length", field="new_moderators")
    cols: list[FloatArray] = [np.ones((n, 1))]
    labels = [f"new {i}" for i in range(n)]
    for t in terms:
        vals = np.atleast_1d(np.asarray(given[t.name]))
        if vals.dtype.kind == "U":
            vals = vals.astype(object)
        if t.numeric_levels:
            vals = np.asarray([r_level(v) for v in vals.astype(float)], dtype=object)
        elif vals.dtype.kind == "b":
            vals = vals.astype(object)
        _, block = t.moderator.design_columns(list(vals), labels)
        cols.append(block)
    return np.hstack(cols)[:, kept]
