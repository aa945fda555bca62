"""The one design builder: factor coding and design matrices, as R builds them.

Every model builds its design here (:func:`make_design`), from either kind of
moderator specification:

- an R formula, ``"~ ablat * year"``, built by :func:`~alliance_meta.data.formula.
  model_matrix` as R's ``model.matrix``;
- moderator names, :class:`Moderator` objects or a mapping ``name -> values``, each
  moderator coded as R codes ``mods = ~ name``.

Both follow one set of rules: R's ``factor()`` levels (strings in R's collation,
:func:`~alliance_meta.data.formula.r_collation_key`, numbers numerically, logicals
as ``FALSE``, ``TRUE``; a pandas ``Categorical`` keeps its category order, the first
category the reference), treatment coding with a reference level, R's coefficient
names, the columns metafor drops as redundant (R's ``lm`` QR,
:func:`~alliance_meta.data.formula.redundant_columns`), an all-ones column moved
first as ``intrcpt`` (metafor's ``.is.intercept``), and the rows of new data for
``predict``.  :class:`Moderator` (the data model), :func:`~alliance_meta.
meta_regression`, the subgroup analyses and ``predict`` all call it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd

from alliance_meta._types import FloatArray
from alliance_meta.data.formula import (
    FormulaDesign,
    formula_names,
    model_matrix,
    r_collation_key,
    r_number_string,
    redundant_columns,
    warn_numeric_text,
)
from alliance_meta.exceptions import (
    InvalidStudyError,
    ModelSpecificationError,
    ModelSpecificationWarning,
)

if TYPE_CHECKING:
    from alliance_meta.data.study import Moderator, Study, StudySet

__all__ = [
    "Design",
    "ModeratorSpec",
    "Term",
    "build_design",
    "categories_of",
    "check_design",
    "check_design_values",
    "factor_codes",
    "is_formula",
    "make_design",
    "moderator_columns",
    "new_design_rows",
    "r_level",
    "r_sorted_levels",
    "studies_frame",
    "treatment_columns",
    "warn_dropped",
]

#: metafor's ``.is.intercept``: a column within this of 1 everywhere is an intercept.
INTERCEPT_EPS = 1e-8


def r_level(v: object) -> str:
    """R's ``as.character`` of one factor value (``2`` not ``2.0``, ``0.3`` for
    ``0.1 + 0.2``, ``TRUE``/``FALSE``)."""
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return r_number_string(float(v))
    return str(v)


def r_sorted_levels(labels: Iterable[str]) -> tuple[str, ...]:
    """The distinct labels in the order of R's ``sort()`` (R's collation)."""
    return tuple(sorted(set(labels), key=r_collation_key))


def is_formula(moderators: object) -> bool:
    """Whether a moderator specification is an R formula (a string starting with ``~``)."""
    return isinstance(moderators, str) and moderators.lstrip().startswith("~")


def moderator_columns(moderators: object) -> tuple[str, ...]:
    """The data columns a moderator specification reads: a formula's variables, or
    the names given (none for a mapping of values)."""
    from alliance_meta.data.study import Moderator

    if is_formula(moderators):
        assert isinstance(moderators, str)
        return formula_names(moderators)
    if isinstance(moderators, (str, Moderator)):
        moderators = [moderators]
    if isinstance(moderators, Mapping) or not isinstance(moderators, Sequence):
        return ()
    return tuple(m.name if isinstance(m, Moderator) else str(m) for m in moderators)


def categories_of(values: object) -> tuple[str, ...] | None:
    """The categories of a pandas ``Categorical`` (or categorical Series), as R's
    level labels, in their order; ``None`` for anything else."""
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, pd.CategoricalDtype):
        return tuple(r_level(c) for c in dtype.categories)
    return None


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
    name: str,
    values: npt.NDArray[Any],
    given: Moderator | None,
    labels: Sequence[str],
    categories: tuple[str, ...] | None = None,
) -> tuple[Moderator, bool, npt.NDArray[Any]]:
    """The Moderator used for ``values`` and the values as ``design_columns`` wants them.

    ``categories`` are those of a pandas ``Categorical``: their order gives the
    levels and the first is the reference, unless ``given`` fixes them.
    """
    from alliance_meta.data.study import Moderator

    if categories is not None:
        strs = np.asarray([r_level(v) for v in values], dtype=object)
        if given is not None and given.kind == "continuous":
            raise InvalidStudyError(
                "a categorical (pandas Categorical) column cannot be a continuous moderator",
                field=name,
            )
        if given is not None and given.levels is not None:
            return given, False, strs
        ref = given.reference if given is not None else None
        return Moderator(name, "categorical", categories, ref), False, strs
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
            levels = tuple(dict.fromkeys(r_level(v) for v in np.unique(fl)))
        return Moderator(name, "categorical", levels, given.reference), True, strs
    if given is not None:
        if given.kind == "categorical":
            given = given.with_levels_from(list(values))
        return given, False, values
    if values.dtype.kind == "b":
        values = values.astype(object)
    spec = Moderator.infer(name, list(values), labels=labels)
    if spec.kind == "categorical":  # undeclared text: check for a numeric column's typo
        warn_numeric_text(name, values, labels, formula=False, stacklevel=5)
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
        "moderators must be an R formula ('~ x1 + x2'), a name, a Moderator, a sequence "
        "of them, or a mapping name -> values"
    )


def as_studyset(studies: StudySet | Sequence[Study] | None) -> StudySet | None:
    from alliance_meta.data.study import StudySet

    if studies is None or isinstance(studies, StudySet):
        return studies
    return StudySet(tuple(studies))


def studies_frame(sset: StudySet) -> pd.DataFrame:
    """The studies' moderators as a data frame (index: the labels; a study without a
    moderator has a missing value there), for formulas and moderator names."""
    data: dict[str, list[object]] = {
        name: [s.moderators.get(name) for s in sset.studies] for name in sset.moderator_names
    }
    frame: pd.DataFrame = pd.DataFrame(data, index=pd.Index(list(sset.labels)))
    return frame


def _column(data: pd.DataFrame, name: str) -> pd.Series[Any]:
    if name not in data.columns:
        known = ", ".join(repr(str(c)) for c in data.columns) or "none"
        raise InvalidStudyError(f"the data have no column of this name (columns: {known})",
                                field=name)
    col: pd.Series[Any] = data[name]
    return col


def _moderator_values(
    name: str,
    vals: object | None,
    sset: StudySet | None,
    k: int,
    data: pd.DataFrame | None,
    labels: Sequence[str],
) -> tuple[npt.NDArray[Any], tuple[str, ...] | None]:
    """The values of one moderator and, for a pandas Categorical, its categories."""
    cats: tuple[str, ...] | None = None
    if vals is None:
        if data is not None:
            series = _column(data, name)
            cats = categories_of(series)
            na = series.isna().to_numpy()
            if na.any():
                raise InvalidStudyError("missing moderator value",
                                        study=labels[int(np.argmax(na))], field=name)
            arr = series.to_numpy(dtype=object) if cats is not None else series.to_numpy()
        elif sset is not None:
            # an unknown name raises InvalidStudyError naming it and the known ones
            arr = np.asarray(sset.moderator(name))
        else:
            raise InvalidStudyError(
                "moderator given by name but no studies or data; pass data=, or a "
                "mapping name -> values",
                field=name,
            )
    else:
        cats = categories_of(vals)
        arr = np.asarray(vals, dtype=object) if cats is not None else np.asarray(vals)
        if arr.dtype.kind == "U":
            arr = arr.astype(object)
    if arr.ndim != 1 or arr.shape[0] != k:
        raise InvalidStudyError(
            f"moderator has shape {arr.shape}, expected ({k},) (one value per study)",
            field=name,
        )
    if arr.dtype.kind == "O":
        for i, v in enumerate(arr):
            if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
                raise InvalidStudyError("missing moderator value", study=labels[i],
                                        field=name)
    return arr, cats


#: What ``meta_regression(moderators=...)`` takes: an R formula (``"~ x1 * x2"``),
#: moderator names (or Moderator objects) of the studies or columns of ``data``,
#: or a mapping of them to values (with yi/vi).
ModeratorSpec: TypeAlias = (
    "str | Moderator | Sequence[str | Moderator] | Mapping[str, npt.ArrayLike]"
    " | Mapping[Moderator, npt.ArrayLike] | Mapping[str | Moderator, npt.ArrayLike]"
)


def build_design(
    moderators: object,
    sset: StudySet | None,
    k: int,
    labels: Sequence[str],
    data: pd.DataFrame | None = None,
) -> tuple[tuple[str, ...], FloatArray, tuple[Term, ...]]:
    """R's model matrix ``[1, moderator columns...]`` of moderator names or values,
    with coefficient names (each moderator coded as ``mods = ~ name`` codes it)."""
    names: list[str] = ["intrcpt"]
    cols: list[FloatArray] = [np.ones((k, 1))]
    terms: list[Term] = []
    seen: set[str] = set()
    for name, given, vals in _moderator_items(moderators):
        if name in seen:
            raise ModelSpecificationError(f"moderator {name!r} is given twice")
        seen.add(name)
        arr, cats = _moderator_values(name, vals, sset, k, data, labels)
        if given is None and cats is None and arr.dtype.kind in "iuf":
            # a numeric column: continuous, checked and coded without a loop over values
            from alliance_meta.data.study import Moderator

            col = arr.astype(np.float64)
            bad = ~np.isfinite(col)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InvalidStudyError("missing or infinite moderator value",
                                        study=labels[i], field=name)  # fmt: skip
            names.append(name)
            cols.append(col.reshape(-1, 1))
            terms.append(Term(name, Moderator.continuous(name), False, (name,)))
            continue
        spec, numeric_levels, coded = _spec_for(name, arr, given, labels, cats)
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


def _readonly(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a = np.array(a)
    a.setflags(write=False)
    return a


@attrs.frozen(eq=False, repr=False)
class Design:
    """A model's design: the columns R builds, those metafor fits, and how to code
    new rows the same way.

    Attributes
    ----------
    full_names : tuple of str
        R's names of every column of the model matrix (redundant ones included).
    kept : ndarray of bool
        Which of them the model keeps (metafor drops redundant columns).
    order : ndarray of int
        The kept columns in the order fitted (an all-ones column moved first).
    X : ndarray, shape (k, p)
        The fitted design.
    coef_names : tuple of str
        The fitted columns' names (``intrcpt`` for the intercept).
    intercept : bool
        Whether column 0 of ``X`` is the intercept.
    formula : FormulaDesign or None
        The formula's design, when the moderators were a formula.
    terms : tuple of Term
        The moderators' coding, when they were names or values.
    transform : ndarray or None
        For names or values without an intercept (R's ``- 1``): the map from the
        treatment-coded columns ``[1, moderators]`` to the model's columns, applied
        before ``kept`` and ``order``.
    """

    full_names: tuple[str, ...]
    kept: npt.NDArray[np.bool_] = attrs.field(converter=_readonly)
    order: npt.NDArray[np.intp] = attrs.field(converter=_readonly)
    X: FloatArray = attrs.field(converter=_readonly)
    coef_names: tuple[str, ...]
    intercept: bool
    formula: FormulaDesign | None = None
    terms: tuple[Term, ...] = ()
    transform: FloatArray | None = None

    @property
    def dropped(self) -> tuple[str, ...]:
        """Names of the redundant columns dropped (metafor's ``coef.na``)."""
        return tuple(n for n, kept in zip(self.full_names, self.kept, strict=True) if not kept)

    @property
    def p(self) -> int:
        """Number of fitted coefficients."""
        return len(self.coef_names)

    def new_rows(self, new_moderators: object) -> FloatArray:
        """Rows of the fitted design for new moderator values (metafor's ``newmods``).

        ``new_moderators`` is a data frame or a mapping ``name -> values`` (a scalar
        is one row): for a formula the variables it names, coded as the data were
        (factor levels and references, ``scale()`` centres, as R's ``predict``);
        otherwise the model's moderators.  An array of design columns is taken as it
        is, without the intercept column when the model has one.
        """
        if self.formula is not None and (
            isinstance(new_moderators, (Mapping, pd.DataFrame))
            or hasattr(new_moderators, "__dataframe__")
        ):
            rows = self.formula.new_rows(new_moderators)
            out: FloatArray = rows[:, self.order]
            return out
        if isinstance(new_moderators, Mapping):
            full = new_design_rows(self.terms, new_moderators)
            if self.transform is not None:
                full = full @ self.transform
            out = full[:, self.order]
            return out
        if isinstance(new_moderators, pd.DataFrame):
            # the model's moderators among the columns (a frame may hold others)
            names = {t.name for t in self.terms}
            return self.new_rows({c: new_moderators[c] for c in new_moderators.columns
                                  if c in names or not names})
        return self._array_rows(new_moderators)

    def _array_rows(self, new_moderators: object) -> FloatArray:
        p = self.p
        try:
            Xn = np.asarray(new_moderators, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidStudyError(
                "new moderators given as an array must be numeric design columns; give "
                "a mapping name -> values for raw (e.g. categorical) moderator values",
                field="new_moderators",
            ) from None
        ncol = p - 1 if self.intercept else p
        if Xn.ndim <= 1:
            Xn = Xn.reshape(-1, 1) if ncol == 1 else Xn.reshape(1, -1)
        if self.intercept and Xn.shape[1] == p - 1:
            Xn = np.hstack([np.ones((Xn.shape[0], 1)), Xn])
        if Xn.shape[1] != p:
            names = self.coef_names[1:] if self.intercept else self.coef_names
            raise InvalidStudyError(
                f"new moderators have {Xn.shape[1]} columns; the model has {ncol} "
                f"moderator columns ({', '.join(names)})",
                field="new_moderators",
            )
        return Xn


def _finish(
    full_names: Sequence[str],
    X: FloatArray,
    formula: FormulaDesign | None,
    terms: tuple[Term, ...],
    transform: FloatArray | None = None,
) -> Design:
    """metafor's steps after the model matrix: drop the columns ``lm`` finds
    redundant, then move an all-ones column first as ``intrcpt``."""
    if X.shape[1] == 0:
        raise ModelSpecificationError(
            "the model has no coefficients (an empty design: '~ 0' or '~ -1' alone); "
            "add moderators or the intercept"
        )
    # each column scaled by a power of two to a largest value near 1 (the test is
    # scale-free per column): norms of large values cannot overflow and make a
    # column look redundant
    big = np.max(np.abs(X), axis=0)
    _, e = np.frexp(np.where(big > 0, big, 1.0))
    kept = ~redundant_columns(np.ldexp(X, -e[None, :]))
    idx = np.flatnonzero(kept)
    is_int = np.all(np.abs(X[:, idx] - 1.0) < INTERCEPT_EPS, axis=0)
    names = [str(full_names[int(j)]) for j in idx]
    if is_int.any():
        first = int(idx[np.argmax(is_int)])
        # the intercept first; other all-ones columns go (metafor: "this removes any
        # duplicate intercepts"; lm has dropped them already)
        order = np.array([first, *(j for j, one in zip(idx, is_int, strict=True) if not one)],
                         dtype=np.intp)
        coef_names = ("intrcpt", *(n for n, one in zip(names, is_int, strict=True) if not one))
        intercept = True
    else:
        order = idx.astype(np.intp)
        coef_names = tuple(names)
        intercept = False
    return Design(
        full_names=tuple(str(n) for n in full_names),
        kept=kept,
        order=order,
        X=X[:, order],
        coef_names=coef_names,
        intercept=intercept,
        formula=formula,
        terms=terms,
        transform=transform,
    )


def no_intercept_transform(
    names: Sequence[str], terms: Sequence[Term]
) -> tuple[tuple[str, ...], FloatArray]:
    """R's coding without an intercept (``- 1``) from the treatment-coded columns.

    Returns the new column names and the map ``T`` from ``[1, moderators]`` to them:
    the first categorical moderator gets one indicator per level (the reference
    level's indicator is ``1 - Σ`` the others, in R's level order) and the intercept
    column goes; other columns are kept.
    """
    p_full = len(names)
    eye = np.eye(p_full)
    cols: list[FloatArray] = []
    out: list[str] = []
    first_cat = next(
        (i for i, tt in enumerate(terms) if tt.moderator.kind == "categorical"), None
    )
    pos = 1
    for ti, t in enumerate(terms):
        width = len(t.coef_names)
        if ti == first_cat:
            mod = t.moderator
            assert mod.levels is not None
            ref = mod.reference if mod.reference is not None else mod.levels[0]
            ref_col = eye[:, 0] - eye[:, pos : pos + width].sum(axis=1)
            others = [lvl for lvl in mod.levels if lvl != ref]
            for lvl in mod.levels:
                if lvl == ref:
                    cols.append(ref_col)
                    out.append(f"{t.name}{ref}")
                else:
                    cols.append(eye[:, pos + others.index(lvl)])
                    out.append(t.coef_names[others.index(lvl)])
        else:
            for j in range(width):
                cols.append(eye[:, pos + j])
                out.append(t.coef_names[j])
        pos += width
    if not cols:
        raise ModelSpecificationError(
            "a model without an intercept needs at least one moderator"
        )
    return tuple(out), np.stack(cols, axis=1)


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


def make_design(
    moderators: object,
    *,
    k: int,
    labels: Sequence[str],
    studies: StudySet | None = None,
    data: pd.DataFrame | None = None,
    intercept: bool = True,
) -> Design:
    """The design of a model with these moderators, as metafor builds it.

    Parameters
    ----------
    moderators : str, Moderator, sequence or mapping
        An R formula (``"~ ablat * year"``), moderator names (or :class:`Moderator`
        objects), or a mapping ``name -> values``; an empty sequence is the
        intercept-only model.
    k : int
        Number of studies.
    labels : sequence of str
        The studies' labels (for errors).
    studies : StudySet, optional
        Where names (and a formula's variables) are looked up: the moderators of
        the studies.
    data : DataFrame, optional
        Where names and a formula's variables are looked up (``data=``).
    intercept : bool
        False is R's ``- 1`` (for a formula, the same as writing it).

    Returns
    -------
    Design
    """
    if is_formula(moderators):
        assert isinstance(moderators, str)
        if not intercept:
            moderators = f"{moderators} - 1"
        source: pd.DataFrame
        if data is not None:
            # rows named by the studies' labels, so that errors name the study
            source = data.set_axis(pd.Index(list(labels)), axis=0) if len(data) == k else data
        elif studies is not None:
            source = studies_frame(studies)
        else:
            raise ModelSpecificationError(
                "a formula needs the data its variables come from: pass data= (a data "
                "frame) or studies with these moderators"
            )
        if len(source) != k:
            raise InvalidStudyError(f"the data have {len(source)} rows for {k} studies",
                                    field="data")
        fd = model_matrix(moderators, source)
        check_design_values(fd.X, fd.column_names, labels)
        return _finish(fd.column_names, fd.X, fd, ())
    if isinstance(moderators, str) and data is None and studies is None:
        raise ModelSpecificationError(
            f"moderators={moderators!r} names a moderator, but there are no studies or "
            "data to take it from; write a formula ('~ x') with data=, or pass a mapping "
            "name -> values"
        )
    names, X, terms = build_design(moderators, studies, k, labels, data)
    check_design_values(X, names, labels)
    if intercept:
        return _finish(names, X, None, terms)
    new_names, T = no_intercept_transform(names, terms)
    return _finish(new_names, X @ T, None, terms, T)


def warn_dropped(design: Design, stacklevel: int = 3) -> None:
    """metafor's "Redundant predictors dropped from the model." warning."""
    if design.dropped:
        warnings.warn(
            f"redundant predictors dropped from the model: {', '.join(design.dropped)} (a "
            "linear combination of the columns before them), as metafor does",
            ModelSpecificationWarning,
            stacklevel=stacklevel + 1,
        )


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
    values: npt.NDArray[Any],
    spec: Moderator | None,
    field: str,
    labels: Sequence[str],
    categories: tuple[str, ...] | None = None,
) -> tuple[tuple[str, ...], npt.NDArray[np.int64]]:
    """R's ``factor()`` of one grouping: the levels (R's order: strings in R's
    collation, numbers numerically; a pandas Categorical's categories in their order,
    unused ones dropped, as ``factor()`` drops them; or those of ``spec``) and the
    0-based level of each study; an error names a missing value's study, an unknown
    level, and an empty level."""

    def missing(i: int) -> InvalidStudyError:
        return InvalidStudyError("missing group value", study=labels[i], field=field)

    if values.dtype.kind == "U":
        values = values.astype(object)
    numeric = categories is None and (values.dtype.kind in "iuf" or (
        values.dtype.kind == "O"
        and all(
            isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_))
            for v in values
        )
    ))
    if numeric:
        fl = values.astype(np.float64)
        if not np.all(np.isfinite(fl)):
            raise missing(int(np.argmin(np.isfinite(fl))))
        strs = [r_level(v) for v in fl]
        natural = list(dict.fromkeys(r_level(v) for v in np.unique(fl)))
    else:
        for i, v in enumerate(values):
            if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                raise missing(i)
        strs = [r_level(v) for v in values]
        if categories is not None:
            used = set(strs)
            natural = [c for c in categories if c in used]
        else:
            natural = list(r_sorted_levels(strs))
    levels: tuple[str, ...] = tuple(natural)
    if spec is not None and spec.levels is not None:
        levels = tuple(spec.levels)
        unknown = sorted(set(strs) - set(levels), key=r_collation_key)
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


def new_design_rows(terms: Sequence[Term], new_moderators: Mapping[Any, Any]) -> FloatArray:
    """Rows of the full design (every column, the intercept first) of new moderator
    values (a mapping name -> values; a scalar is one row), coded as the model's
    ``terms`` coded the data."""
    given = {str(getattr(k, "name", k)): v for k, v in new_moderators.items()}
    missing = [t.name for t in terms if t.name not in given]
    extra = sorted(set(given) - {t.name for t in terms})
    if missing or extra:
        what = f"missing {missing}" if missing else f"unknown {extra}"
        raise InvalidStudyError(
            f"new moderators must name exactly the model's moderators ({what})",
            field=(missing or extra)[0],
        )
    lens = {np.atleast_1d(np.asarray(v, dtype=object)).shape[0] for v in given.values()}
    # no moderators (an intercept-only model): one prediction, the intercept
    n = lens.pop() if len(lens) == 1 else (1 if not lens else -1)
    if n < 0:
        raise InvalidStudyError("new moderators differ in length", field="new_moderators")
    cols: list[FloatArray] = [np.ones((n, 1))]
    labels = [f"new {i}" for i in range(n)]
    for t in terms:
        raw = given[t.name]
        if categories_of(raw) is not None:
            vals = np.asarray([r_level(v) for v in np.asarray(raw, dtype=object)],
                              dtype=object)
        else:
            vals = np.atleast_1d(np.asarray(raw))
        if vals.dtype.kind == "U":
            vals = vals.astype(object)
        if t.numeric_levels:
            vals = np.asarray([r_level(v) for v in vals.astype(float)], dtype=object)
        elif vals.dtype.kind == "b":
            vals = vals.astype(object)
        elif t.moderator.kind == "categorical" and vals.dtype.kind in "iuf":
            vals = np.asarray([r_level(v) for v in vals], dtype=object)
        _, block = t.moderator.design_columns(list(vals), labels)
        cols.append(block)
    return np.hstack(cols)
