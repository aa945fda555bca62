"""The data model: effect sizes, studies, moderators and collections of studies.

All classes are frozen :mod:`attrs` classes. Effect sizes of whole tables are
computed by the measure registry (:func:`alliance_meta.data.measures.evaluate`, the
same code as :func:`alliance_meta.escalc`); the named constructors of
:class:`EffectSize` call it with length-1 arrays.

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package.
*Journal of Statistical Software*, 36(3), 1-48. https://doi.org/10.18637/jss.v036.i03
"""

from __future__ import annotations

import datetime
import math
import os
import warnings
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, overload

import attrs
import numpy as np
import numpy.typing as npt

from alliance_meta._optional import pandas_instance
from alliance_meta._types import FloatArray, Measure, NanPolicy
from alliance_meta.core.inference import check_level, z_critical
from alliance_meta.data import measures as _measures
from alliance_meta.exceptions import (
    AllianceMetaError,
    DataOmittedWarning,
    InvalidStudyError,
)
from alliance_meta.results.base import ConfidenceInterval, brief_repr

__all__ = ["EffectSize", "Moderator", "ModeratorValue", "Study", "StudySet"]

if TYPE_CHECKING:
    import pandas as pd
    from typing_extensions import TypedDict, Unpack

    class FrameColumns(TypedDict, total=False):
        """The keyword arguments of :meth:`StudySet.from_dataframe` (for from_csv)."""

        label: str | None
        study: str | None
        r: str | None
        n: str | None
        m1: str | None
        sd1: str | None
        n1: str | None
        m2: str | None
        sd2: str | None
        n2: str | None
        a: str | None
        b: str | None
        c: str | None
        d: str | None
        yi: str | None
        vi: str | None
        se: str | None
        measure: Measure | None
        moderators: Sequence[str] | str | None
        nan_policy: NanPolicy

#: A moderator's value for one study.
ModeratorValue: TypeAlias = "str | float | bool"

#: Every registered measure (metafor's ``escalc`` measures and ``"GEN"``).
MEASURES: tuple[str, ...] = _measures.names()

#: metafor's argument names of the raw-data roles of the named constructors and of
#: ``StudySet.from_dataframe``.
_METAFOR_NAME: dict[str, str] = {
    "r": "ri", "n": "ni", "m1": "m1i", "sd1": "sd1i", "n1": "n1i", "m2": "m2i",
    "sd2": "sd2i", "n2": "n2i", "a": "ai", "b": "bi", "c": "ci", "d": "di",
}  # fmt: skip


def _measures_of(roles: Sequence[str]) -> tuple[str, ...]:
    """The measures computed from exactly these roles' metafor arguments."""
    have = {_METAFOR_NAME[r] for r in roles}
    return tuple(
        spec.name for spec in _measures.specs() if spec.inputs and set(spec.inputs) <= have
        and spec.name != "GEN"
    )


def _to_float(x: float, name: str) -> float:
    try:
        return float(x)
    except (TypeError, ValueError) as exc:
        raise InvalidStudyError(f"{x!r} is not a number", field=name) from exc


def _to_value(x: float) -> float:
    return _to_float(x, "value")


def _to_variance(x: float) -> float:
    return _to_float(x, "variance")


def _to_studies(xs: Iterable[Study]) -> tuple[Study, ...]:
    return tuple(xs)


def _to_labels(xs: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(x) for x in xs)


def _to_levels(xs: Iterable[object] | None) -> tuple[str, ...] | None:
    return None if xs is None else tuple(_level_str(x) for x in xs)


def _check_measure(measure: str, allowed: Sequence[str], label: str | None = None) -> None:
    if measure in allowed:
        return
    if measure in MEASURES:
        raise InvalidStudyError(
            f"measure {measure!r} is not computed from this input; expected one of "
            f"{tuple(allowed)}",
            study=label,
            field="measure",
        )
    try:
        _measures.get(measure)
    except InvalidStudyError as exc:
        raise InvalidStudyError(str(exc).split(": ", 1)[-1], study=label, field="measure") from None


def _evaluate(
    measure: str, roles: Mapping[str, npt.ArrayLike], label: str | None
) -> _measures.Computed:
    """One study's effect of ``measure`` from the named constructors' roles, with
    errors naming the role (``r``, ``sd1``, ``b`` ...)."""
    given: dict[str, npt.ArrayLike] = {
        _METAFOR_NAME[role]: [value] for role, value in roles.items()  # type: ignore[misc]
    }
    fields = {_METAFOR_NAME[role]: role for role in roles}
    return _measures.evaluate(measure, given, labels=[label], fields=fields).computed


# ---------------------------------------------------------------------------- EffectSize


@attrs.frozen
class EffectSize:
    """One study's effect size and its sampling variance.

    Parameters
    ----------
    value : float
        The effect size (on the analysis scale, e.g. Fisher's z for ``"ZCOR"``).
    variance : float
        Its sampling variance; must be finite and > 0.
    measure : str
        One of metafor's ``escalc`` measures (the registry's names: ``"ZCOR"``,
        ``"SMD"``, ``"OR"``, ``"PLO"``, ...; see :func:`alliance_meta.escalc`) or
        ``"GEN"`` for a generic outcome.  Ratios are on the log scale.
    corrected : bool
        Whether 1/2 was added to the cells of a 2×2 table with a zero cell.

    Raises
    ------
    InvalidStudyError
        A :class:`ValueError` naming the field, for a NaN or infinite value or a
        variance that is ≤ 0, NaN or infinite.

    Notes
    -----
    The constructors :meth:`from_correlation`, :meth:`from_means` and
    :meth:`from_counts` reproduce ``metafor::escalc`` with its default arguments
    (Viechtbauer, 2010); each measure's formula and its source are given in
    :mod:`alliance_meta.data.effect_sizes` (see :func:`alliance_meta.escalc`).

    Examples
    --------
    >>> es = EffectSize.from_correlation(r=0.3, n=103)
    >>> round(es.value, 6), round(es.variance, 6)
    (0.30952, 0.01)
    """

    value: float = attrs.field(converter=_to_value)
    variance: float = attrs.field(converter=_to_variance)
    measure: Measure = "GEN"
    corrected: bool = attrs.field(default=False, converter=bool)

    def __attrs_post_init__(self) -> None:
        _check_measure(self.measure, MEASURES)
        if not math.isfinite(self.value):
            raise InvalidStudyError(
                f"the effect size must be finite, got {self.value}", field="value"
            )
        if not (math.isfinite(self.variance) and self.variance > 0):
            raise InvalidStudyError(
                f"the sampling variance must be finite and > 0, got {self.variance}",
                field="variance",
            )

    @property
    def se(self) -> float:
        """Standard error, ``sqrt(variance)``."""
        return math.sqrt(self.variance)

    def confidence_interval(self, level: float = 0.95) -> ConfidenceInterval:
        """Wald interval ``value ± z_{1-α/2} · se`` on the analysis scale.

        Parameters
        ----------
        level : float
            Coverage, strictly between 0 and 1.

        Returns
        -------
        ConfidenceInterval
        """
        z = z_critical(check_level(level))
        return ConfidenceInterval(self.value - z * self.se, self.value + z * self.se)

    @classmethod
    def _from_result(cls, res: _measures.Computed, measure: Measure) -> EffectSize:
        return cls(
            value=float(res.yi[0]),
            variance=float(res.vi[0]),
            measure=measure,
            corrected=res.corrected is not None and bool(res.corrected[0]),
        )

    @classmethod
    def from_correlation(
        cls,
        r: float,
        n: float,
        measure: Measure = "ZCOR",
        *,
        label: str | None = None,
    ) -> EffectSize:
        """Effect size of a correlation ``r`` from ``n`` participants.

        Parameters
        ----------
        r : float
            Pearson correlation, in [-1, 1] (and not ±1).
        n : float
            Sample size: > 3 for ``"ZCOR"`` and ``"COR"`` (metafor has no variance
            below), > 4 for ``"UCOR"``.
        measure : {"ZCOR", "COR", "UCOR"}
            Fisher's z, the raw correlation, or the unbiased correlation (the
            measures computed from r and n).
        label : str, optional
            Study label used in error messages.

        Returns
        -------
        EffectSize

        Raises
        ------
        InvalidStudyError

        Notes
        -----
        ZCOR (Fisher, 1921): :math:`y = \\tfrac12\\log\\frac{1+r}{1-r}`, :math:`v = 1/(n-3)`.

        COR: :math:`y = r`, :math:`v = (1-r^2)^2/(n-1)`.

        UCOR (Olkin & Pratt, 1958):
        :math:`y = r\\,{}_2F_1(\\tfrac12,\\tfrac12;\\tfrac{n-2}{2};1-r^2)`,
        :math:`v = (1-y^2)^2/(n-1)`.

        These are metafor's ``escalc`` defaults (Viechtbauer, 2010).
        """
        _check_measure(measure, _measures_of(("r", "n")), label)
        res = _evaluate(measure, {"r": r, "n": n}, label)
        return cls._from_result(res, measure)

    @classmethod
    def from_means(
        cls,
        m1: float,
        sd1: float,
        n1: float,
        m2: float,
        sd2: float,
        n2: float,
        measure: Measure = "SMD",
        *,
        label: str | None = None,
    ) -> EffectSize:
        """Effect size comparing the means of group 1 and group 2.

        Parameters
        ----------
        m1, sd1, n1 : float
            Mean, standard deviation (> 0) and size (> 0) of group 1.
        m2, sd2, n2 : float
            The same for group 2.
        measure : str
            Hedges' g (``"SMD"``), the raw mean difference (``"MD"``), Bonett's
            heteroscedastic SMD (``"SMDH"``), the log ratio of means (``"ROM"``), or
            any other measure of two groups' means and SDs (``"SMD1"``, ``"CVR"``,
            ``"VR"``, ``"RPB"``, ``"RBIS"``, ``"D2ORL"`` ...).
        label : str, optional
            Study label used in error messages.

        Returns
        -------
        EffectSize

        Raises
        ------
        InvalidStudyError

        Notes
        -----
        SMD is Hedges' g with the exact correction
        :math:`c(m) = \\Gamma(m/2) / (\\sqrt{m/2}\\,\\Gamma((m-1)/2))`, :math:`m = n_1+n_2-2`:
        :math:`y = c(m)(\\bar x_1 - \\bar x_2)/s_p`,
        :math:`v = 1/n_1 + 1/n_2 + y^2/(2(n_1+n_2))` (Hedges, 1981).

        MD: :math:`y = \\bar x_1 - \\bar x_2`, :math:`v = s_1^2/n_1 + s_2^2/n_2`.

        SMDH (Bonett, 2009) and ROM (Hedges, Gurevitch & Curtis, 1999):
        and every other measure of two groups' means: see :func:`alliance_meta.escalc`.

        These are metafor's ``escalc`` defaults (Viechtbauer, 2010).
        """
        _check_measure(measure, _measures_of(("m1", "sd1", "n1", "m2", "sd2", "n2")), label)
        res = _evaluate(
            measure, {"m1": m1, "sd1": sd1, "n1": n1, "m2": m2, "sd2": sd2, "n2": n2}, label
        )
        return cls._from_result(res, measure)

    @classmethod
    def from_counts(
        cls,
        a: float,
        b: float,
        c: float,
        d: float,
        measure: Measure = "OR",
        *,
        label: str | None = None,
    ) -> EffectSize:
        """Effect size of a 2×2 table.

        Parameters
        ----------
        a, b : float
            Events and non-events in group 1 (non-negative whole numbers).
        c, d : float
            Events and non-events in group 2.
        measure : str
            Log odds ratio (``"OR"``), log risk ratio (``"RR"``), risk difference
            (``"RD"``), or any other measure of a 2×2 table (``"PETO"``, ``"AS"``,
            ``"PHI"``, ``"YUQ"``, ``"RTET"``, ``"PBIT"``, ``"OR2DL"`` ...).
        label : str, optional
            Study label used in error messages.

        Returns
        -------
        EffectSize
            ``corrected`` is true when 1/2 was added to every cell.

        Raises
        ------
        InvalidStudyError

        Notes
        -----
        As metafor's defaults (``add = 1/2, to = "only0"``), 1/2 is added to all four
        cells when any cell is zero, for OR, RR and RD. Then with
        :math:`p_1 = a/(a+b)`, :math:`p_2 = c/(c+d)`:

        - OR (Woolf, 1955): :math:`y = \\log\\frac{ad}{bc}`, :math:`v = 1/a+1/b+1/c+1/d`;
        - RR (Katz et al., 1978): :math:`y = \\log(p_1/p_2)`,
          :math:`v = 1/a - 1/(a+b) + 1/c - 1/(c+d)`;
        - RD: :math:`y = p_1 - p_2`, :math:`v = p_1(1-p_1)/(a+b) + p_2(1-p_2)/(c+d)`.

        Viechtbauer (2010).
        """
        _check_measure(measure, _measures_of(("a", "b", "c", "d")), label)
        res = _evaluate(measure, {"a": a, "b": b, "c": c, "d": d}, label)
        return cls._from_result(res, measure)


# ---------------------------------------------------------------- moderator mapping


class FrozenMapping(Mapping[str, ModeratorValue]):
    """An immutable, hashable, insertion-ordered mapping of moderator values."""

    __slots__ = ("_dict", "_items")

    def __init__(self, items: Mapping[str, ModeratorValue] | None = None) -> None:
        data = dict(items) if items is not None else {}
        self._dict: dict[str, ModeratorValue] = data
        self._items: tuple[tuple[str, ModeratorValue], ...] = tuple(data.items())

    def __getitem__(self, key: str) -> ModeratorValue:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._dict)


def _normalise_value(v: object) -> object:
    """Python scalars from numpy ones; ints become floats; other objects unchanged."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, np.str_):
        return str(v)
    return v


def _freeze_moderators(m: Mapping[str, ModeratorValue] | None) -> FrozenMapping:
    if isinstance(m, FrozenMapping):
        return m
    if m is None:
        return FrozenMapping()
    return FrozenMapping({str(k): _normalise_value(v) for k, v in m.items()})  # type: ignore[misc]


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _convert_n(n: float | None) -> int | None:
    if n is None:
        return None
    try:
        f = float(n)
    except (TypeError, ValueError) as exc:
        raise InvalidStudyError(f"{n!r} is not a number", field="n") from exc
    if not (math.isfinite(f) and f > 0 and f == round(f)):
        raise InvalidStudyError(
            f"a sample size must be a positive whole number, got {n}", field="n"
        )
    if f > _MAX_N:
        # beyond 2**53 a double does not hold every whole number (and past 2**63 no
        # integer column does): such a "sample size" is an input error
        raise InvalidStudyError(
            f"a sample size must be at most 2**53 = {_MAX_N:.0f}, got {f:g}", field="n"
        )
    return int(f)


#: The largest sample size accepted: every whole number up to 2**53 is a double.
_MAX_N = float(2**53)


# ------------------------------------------------------------------------------- Study


@attrs.frozen
class Study:
    """One effect size of a study: its label, value, sample size, moderators and study.

    A study that reports several effect sizes (two raters, anxiety and avoidance,
    several time points) is several ``Study`` rows that name the same ``study``;
    each row has its own unique ``label`` and its own moderators (effect-level ones
    such as the rater beside study-level ones such as the year).

    Parameters
    ----------
    label : str
        A non-empty label, unique within a :class:`StudySet`.
    effect : EffectSize
        The effect size.
    n : int, optional
        Total sample size (a positive whole number).
    moderators : mapping of str to str, float or bool
        Covariates of this effect (study-level and effect-level alike), stored as an
        immutable mapping. Integers are stored as floats; missing values (None,
        NaN) are rejected.
    study : str, optional
        The label of the study the effect comes from, when a study gives several
        effects; by default the effect is its own study (``study == label``).

    Raises
    ------
    InvalidStudyError
        Naming the label and the field.
    """

    label: str
    effect: EffectSize
    n: int | None = attrs.field(default=None, converter=_convert_n)
    moderators: Mapping[str, ModeratorValue] = attrs.field(
        factory=FrozenMapping, converter=_freeze_moderators
    )
    study: str | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise InvalidStudyError(
                f"a study label must be a non-empty str, got {self.label!r}", field="label"
            )
        if self.study is not None and (not isinstance(self.study, str) or not self.study):
            raise InvalidStudyError(
                f"study must be a non-empty str, got {self.study!r}",
                study=self.label,
                field="study",
            )
        if not isinstance(self.effect, EffectSize):
            raise InvalidStudyError(
                f"effect must be an EffectSize, got {type(self.effect).__name__}",
                study=self.label,
                field="effect",
            )
        for name, v in self.moderators.items():
            if _is_missing(v):
                raise InvalidStudyError("missing moderator value", study=self.label, field=name)
            if not isinstance(v, (str, float, bool)):
                raise InvalidStudyError(
                    f"a moderator value must be str, float or bool, got {type(v).__name__}",
                    study=self.label,
                    field=name,
                )
            if isinstance(v, float) and not math.isfinite(v):
                raise InvalidStudyError(
                    f"a moderator value must be finite, got {v}", study=self.label, field=name
                )

    @property
    def study_label(self) -> str:
        """The study this effect belongs to (its own label unless ``study`` is set)."""
        return self.label if self.study is None else self.study

    @property
    def yi(self) -> float:
        """The effect size's value."""
        return self.effect.value

    @property
    def vi(self) -> float:
        """The effect size's sampling variance."""
        return self.effect.variance


# --------------------------------------------------------------------------- Moderator


def _level_str(v: object) -> str:
    """R's spelling of a categorical value (``TRUE``/``FALSE`` for logicals)."""
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    return str(v)


def _study_name(labels: Sequence[str] | None, i: int) -> str:
    return labels[i] if labels is not None else f"row {i}"


@attrs.frozen
class Moderator:
    """A study-level covariate and how it enters a design matrix.

    Parameters
    ----------
    name : str
        The moderator's name (a column of the data).
    kind : {"categorical", "continuous"}
        How it is coded.
    levels : tuple of str, optional
        Categorical levels, in order. ``None`` means "infer from the data": sorted,
        as R's ``factor()`` does.
    reference : str, optional
        The reference level of a categorical moderator; by default the first level.

    Notes
    -----
    Categorical moderators are treatment coded as in R: one indicator column per
    non-reference level, named ``"<name><level>"`` (e.g. ``allocrandom``), which
    matches the coefficient names of ``rma(yi, vi, mods = ~ alloc)``. Logical values
    are spelled ``"TRUE"``/``"FALSE"``, as R does. Inferred levels are sorted as R's
    ``factor()`` sorts them (:func:`~alliance_meta.data.formula.r_collation_key`:
    ``"b" < "C"``, unlike Python's code-point order).
    """

    name: str
    kind: Literal["categorical", "continuous"]
    levels: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_to_levels,
    )
    reference: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.kind not in ("categorical", "continuous"):
            raise InvalidStudyError(
                f"kind must be 'categorical' or 'continuous', got {self.kind!r}", field=self.name
            )
        if self.kind == "continuous":
            if self.levels is not None or self.reference is not None:
                raise InvalidStudyError(
                    "a continuous moderator has no levels or reference", field=self.name
                )
            return
        if self.levels is None:
            return
        if len(self.levels) == 0:
            raise InvalidStudyError("a categorical moderator needs a level", field=self.name)
        if len(set(self.levels)) != len(self.levels):
            raise InvalidStudyError(f"duplicate levels in {self.levels}", field=self.name)
        if self.reference is None:
            object.__setattr__(self, "reference", self.levels[0])
        elif self.reference not in self.levels:
            raise InvalidStudyError(
                f"reference level {self.reference!r} is not one of {self.levels}",
                field=self.name,
            )

    @classmethod
    def categorical(
        cls, name: str, levels: Sequence[str] | None = None, reference: str | None = None
    ) -> Moderator:
        """A categorical moderator (levels inferred from the data when ``None``)."""
        return cls(name, "categorical", tuple(levels) if levels is not None else None, reference)

    @classmethod
    def continuous(cls, name: str) -> Moderator:
        """A continuous moderator, entered as one numeric column."""
        return cls(name, "continuous")

    @classmethod
    def infer(
        cls,
        name: str,
        values: Iterable[object],
        *,
        labels: Sequence[str] | None = None,
        reference: str | None = None,
    ) -> Moderator:
        """Infer the kind (and sorted levels) of a moderator from its values.

        Strings and logicals make a categorical moderator with sorted levels, the
        first being the reference (R's default); numbers make a continuous one.

        Raises
        ------
        InvalidStudyError
            For a missing value or a mixture of kinds, naming the study.
        """
        vals = [_normalise_value(v) for v in values]
        kinds = []
        for i, v in enumerate(vals):
            if _is_missing(v):
                raise InvalidStudyError(
                    "missing moderator value", study=_study_name(labels, i), field=name
                )
            if isinstance(v, (str, bool)):
                kinds.append("categorical")
            elif isinstance(v, float):
                kinds.append("continuous")
            else:
                raise InvalidStudyError(
                    f"a moderator value must be str, float or bool, got {type(v).__name__}",
                    study=_study_name(labels, i),
                    field=name,
                )
        if not kinds:
            raise InvalidStudyError("cannot infer a moderator from no values", field=name)
        for i, k in enumerate(kinds):
            if k != kinds[0]:
                raise InvalidStudyError(
                    f"moderator value {vals[i]!r} is {k} but earlier values are {kinds[0]}",
                    study=_study_name(labels, i),
                    field=name,
                )
        if kinds[0] == "continuous":
            return cls.continuous(name)
        from alliance_meta.data.formula import r_collation_key

        levels = tuple(sorted({_level_str(v) for v in vals}, key=r_collation_key))
        return cls.categorical(name, levels, reference)

    def with_levels_from(self, values: Iterable[object]) -> Moderator:
        """This moderator with its levels inferred (sorted) if they are not set."""
        if self.kind == "continuous" or self.levels is not None:
            return self
        from alliance_meta.data.formula import r_collation_key

        levels = tuple(
            sorted({_level_str(_normalise_value(v)) for v in values}, key=r_collation_key)
        )
        return Moderator(self.name, "categorical", levels, self.reference)

    @property
    def coef_names(self) -> tuple[str, ...]:
        """Names of the design columns (R's coefficient names).

        Raises
        ------
        InvalidStudyError
            For a categorical moderator whose levels are not yet known.
        """
        if self.kind == "continuous":
            return (self.name,)
        if self.levels is None:
            raise InvalidStudyError(
                "levels are unknown; use with_levels_from(values)", field=self.name
            )
        return tuple(f"{self.name}{lv}" for lv in self.levels if lv != self.reference)

    def design_columns(
        self, values: Iterable[object], labels: Sequence[str] | None = None
    ) -> tuple[tuple[str, ...], FloatArray]:
        """Encode values as design-matrix columns (treatment coding for categories).

        Parameters
        ----------
        values : iterable
            One value per study.
        labels : sequence of str, optional
            Study labels, used in error messages.

        Returns
        -------
        names : tuple of str
            :attr:`coef_names`.
        columns : ndarray of float64, shape (k, len(names))

        Raises
        ------
        InvalidStudyError
            For a missing value, a value of the wrong kind (a string for a
            continuous moderator, a number for a categorical one) or an unknown
            level, naming the study and the moderator.
        """
        vals = [_normalise_value(v) for v in values]
        for i, v in enumerate(vals):
            if _is_missing(v):
                raise InvalidStudyError(
                    "missing moderator value", study=_study_name(labels, i), field=self.name
                )
            ok = isinstance(v, float) if self.kind == "continuous" else isinstance(v, (str, bool))
            if not ok:
                raise InvalidStudyError(
                    f"value {v!r} ({type(v).__name__}) is of the wrong kind for a "
                    f"{self.kind} moderator",
                    study=_study_name(labels, i),
                    field=self.name,
                )
        if self.kind == "continuous":
            col = np.asarray(vals, dtype=np.float64).reshape(-1, 1)
            return (self.name,), col
        mod = self.with_levels_from(vals)
        assert mod.levels is not None
        strs = np.asarray([_level_str(v) for v in vals], dtype=object)
        known = np.isin(strs, np.asarray(mod.levels, dtype=object))
        if not np.all(known):
            i = int(np.flatnonzero(~known)[0])
            raise InvalidStudyError(
                f"unknown level {strs[i]!r}; expected one of {mod.levels}",
                study=_study_name(labels, i),
                field=self.name,
            )
        from alliance_meta.data.design import treatment_columns

        assert mod.reference is not None
        return mod.coef_names, treatment_columns(strs, mod.levels, mod.reference)


# ---------------------------------------------------------------------------- StudySet


def _readonly(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a.setflags(write=False)
    return a


_Family = Literal["correlation", "means", "counts", "generic"]

_DEFAULT_MEASURE: dict[str, Measure] = {
    "correlation": "ZCOR",
    "means": "SMD",
    "counts": "OR",
    "generic": "GEN",
}


@attrs.frozen
class StudySet:
    """An ordered collection of studies with unique labels and one common measure.

    Behaves like a read-only sequence: ``len(s)``, iteration, ``s[0]`` and
    ``s["label"]``. Columns are available as arrays (:attr:`yi`, :attr:`vi`,
    :meth:`moderator`).

    Parameters
    ----------
    studies : iterable of Study
        The studies, in order.
    dropped : tuple of str
        Labels of studies omitted under ``nan_policy="omit"``.

    Raises
    ------
    InvalidStudyError
        For a duplicate label (naming it) or a mixture of measures.

    Examples
    --------
    >>> s = StudySet.from_arrays(yi=[0.1, 0.3], vi=[0.01, 0.02], labels=["a", "b"])
    >>> s["b"].effect.value
    0.3
    """

    studies: tuple[Study, ...] = attrs.field(converter=_to_studies)
    dropped: tuple[str, ...] = attrs.field(default=(), converter=_to_labels)
    _index: dict[str, int] = attrs.field(init=False, eq=False, repr=False, hash=False)
    _yi: FloatArray = attrs.field(init=False, eq=False, repr=False, hash=False)
    _vi: FloatArray = attrs.field(init=False, eq=False, repr=False, hash=False)

    def __attrs_post_init__(self) -> None:
        index: dict[str, int] = {}
        for i, s in enumerate(self.studies):
            if not isinstance(s, Study):
                raise InvalidStudyError(
                    f"expected a Study, got {type(s).__name__}", study=f"row {i}"
                )
            if s.label in index:
                raise InvalidStudyError(
                    f"duplicate study label (rows {index[s.label]} and {i})",
                    study=s.label,
                    field="label",
                )
            index[s.label] = i
            if s.effect.measure != self.studies[0].effect.measure:
                raise InvalidStudyError(
                    f"mixed measures: {s.effect.measure!r} here but "
                    f"{self.studies[0].effect.measure!r} in {self.studies[0].label!r}",
                    study=s.label,
                    field="measure",
                )
        k = len(self.studies)
        object.__setattr__(self, "_index", index)
        yi = np.fromiter((s.effect.value for s in self.studies), dtype=np.float64, count=k)
        vi = np.fromiter((s.effect.variance for s in self.studies), dtype=np.float64, count=k)
        object.__setattr__(self, "_yi", _readonly(yi))
        object.__setattr__(self, "_vi", _readonly(vi))

    # -- sequence protocol
    def __repr__(self) -> str:
        """A short repr (k, measure, labels, moderators); ``to_dataframe()`` shows all."""
        dropped = f", dropped={brief_repr(self.dropped)}" if self.dropped else ""
        return (
            f"StudySet(k={len(self.studies)}, measure={self.measure!r}, "
            f"labels={brief_repr(self.labels)}, moderators={self.moderator_names!r}{dropped})"
        )

    def __len__(self) -> int:
        return len(self.studies)

    def __iter__(self) -> Iterator[Study]:
        return iter(self.studies)

    @overload
    def __getitem__(self, key: int | str) -> Study: ...

    @overload
    def __getitem__(self, key: slice) -> StudySet: ...

    def __getitem__(self, key: int | str | slice) -> Study | StudySet:
        if isinstance(key, str):
            try:
                return self.studies[self._index[key]]
            except KeyError:
                raise KeyError(f"no study labelled {key!r}") from None
        if isinstance(key, slice):
            return StudySet(self.studies[key])
        return self.studies[key]

    def __contains__(self, label: object) -> bool:
        return isinstance(label, str) and label in self._index

    # -- columns
    @property
    def k(self) -> int:
        """Number of studies."""
        return len(self.studies)

    @property
    def labels(self) -> tuple[str, ...]:
        """Effect labels (one per row), in order."""
        return tuple(s.label for s in self.studies)

    @property
    def study_labels(self) -> tuple[str, ...]:
        """The study of each effect (row), in order: the grouping of dependent effects."""
        return tuple(s.study_label for s in self.studies)

    @property
    def n_studies(self) -> int:
        """Number of distinct studies (``k`` counts effects)."""
        return len(set(self.study_labels))

    @property
    def shared_studies(self) -> dict[str, tuple[str, ...]]:
        """The studies that give more than one effect: study label -> effect labels."""
        groups: dict[str, list[str]] = {}
        for s in self.studies:
            groups.setdefault(s.study_label, []).append(s.label)
        return {st: tuple(labs) for st, labs in groups.items() if len(labs) > 1}

    def column(self, name: str) -> npt.NDArray[Any]:
        """A column by name: ``"study"`` (the study of each effect, unless a moderator
        has that name), ``"label"`` (the effect labels), else :meth:`moderator`."""
        if name not in self.moderator_names:
            if name == "study":
                return np.asarray(self.study_labels, dtype=object)
            if name == "label":
                return np.asarray(self.labels, dtype=object)
        return self.moderator(name)

    @property
    def yi(self) -> FloatArray:
        """Effect sizes (read-only float64 array)."""
        return self._yi

    @property
    def vi(self) -> FloatArray:
        """Sampling variances (read-only float64 array)."""
        return self._vi

    @property
    def se(self) -> FloatArray:
        """Standard errors, ``sqrt(vi)``."""
        return np.sqrt(self._vi)

    @property
    def n(self) -> FloatArray:
        """Sample sizes as float64, NaN where unknown."""
        return np.array(
            [np.nan if s.n is None else float(s.n) for s in self.studies], dtype=np.float64
        )

    @property
    def corrected(self) -> npt.NDArray[np.bool_]:
        """Whether the 1/2 continuity correction was applied, per study."""
        return np.array([s.effect.corrected for s in self.studies], dtype=np.bool_)

    @property
    def measure(self) -> Measure:
        """The common effect-size measure (``"GEN"`` for an empty set)."""
        return self.studies[0].effect.measure if self.studies else "GEN"

    @property
    def moderator_names(self) -> tuple[str, ...]:
        """Names of all moderators, in order of first appearance."""
        seen: dict[str, None] = {}
        for s in self.studies:
            for name in s.moderators:
                seen.setdefault(name, None)
        return tuple(seen)

    def _moderator_values(self, name: str) -> list[ModeratorValue]:
        out: list[ModeratorValue] = []
        for s in self.studies:
            if name not in s.moderators:
                if name not in self.moderator_names:
                    known = ", ".join(repr(n) for n in self.moderator_names) or "none"
                    raise InvalidStudyError(
                        f"no study has a moderator of this name (moderators: {known})",
                        field=name,
                    )
                raise InvalidStudyError("missing moderator value", study=s.label, field=name)
            out.append(s.moderators[name])
        return out

    def moderator(self, name: str) -> npt.NDArray[Any]:
        """The values of one moderator.

        Returns
        -------
        ndarray
            float64 for a numeric moderator, bool for a logical one, object (str)
            otherwise.

        Raises
        ------
        InvalidStudyError
            If no study has the moderator (naming it and the known ones), or if a
            study lacks it or its values mix kinds (naming the study).
        """
        vals = self._moderator_values(name)
        spec = Moderator.infer(name, vals, labels=self.labels)  # checks kinds are uniform
        if spec.kind == "continuous":
            return np.asarray(vals, dtype=np.float64)
        if all(isinstance(v, bool) for v in vals):
            return np.asarray(vals, dtype=np.bool_)
        if any(isinstance(v, bool) for v in vals):
            i = next(i for i, v in enumerate(vals) if not isinstance(v, type(vals[0])))
            raise InvalidStudyError(
                "moderator mixes logical and text values", study=self.labels[i], field=name
            )
        return np.asarray(vals, dtype=object)

    def moderator_spec(self, name: str, reference: str | None = None) -> Moderator:
        """The :class:`Moderator` inferred from this set's values (R's defaults)."""
        return Moderator.infer(
            name, self._moderator_values(name), labels=self.labels, reference=reference
        )

    # -- subsets
    def subset(self, **conditions: object) -> StudySet:
        """Studies whose moderators equal the given values (all conditions hold).

        A list, tuple or set value selects any of its members, e.g.
        ``s.subset(rater="patient", setting=["inpatient", "outpatient"])``.
        """
        keep = np.ones(len(self.studies), dtype=np.bool_)
        for name, value in conditions.items():
            vals = self._moderator_values(name)
            if isinstance(value, (list, tuple, set, frozenset)):
                allowed = [_normalise_value(v) for v in value]
                keep &= np.array([v in allowed for v in vals], dtype=np.bool_)
            else:
                target = _normalise_value(value)
                keep &= np.array([v == target for v in vals], dtype=np.bool_)
        return StudySet(tuple(s for s, ok in zip(self.studies, keep, strict=True) if ok))

    def where(self, name: str, value: object) -> StudySet:
        """Studies whose moderator ``name`` equals ``value``; see :meth:`subset`."""
        return self.subset(**{name: value})

    def groupby(self, name: str) -> dict[ModeratorValue, StudySet]:
        """Split by the values of a moderator, in sorted order (R's level order)."""
        vals = self._moderator_values(name)
        Moderator.infer(name, vals, labels=self.labels)  # uniform kind, no missing values
        groups: dict[ModeratorValue, list[Study]] = {}
        for v in sorted(set(vals), key=_sort_key):
            groups[v] = []
        for s, v in zip(self.studies, vals, strict=True):
            groups[v].append(s)
        return {v: StudySet(tuple(ss)) for v, ss in groups.items()}

    # -- builders
    @classmethod
    def from_arrays(
        cls,
        yi: npt.ArrayLike,
        vi: npt.ArrayLike,
        labels: Sequence[str] | None = None,
        measure: Measure = "GEN",
        moderators: Mapping[str, Sequence[ModeratorValue] | npt.ArrayLike] | None = None,
        *,
        n: npt.ArrayLike | None = None,
        study: Sequence[object] | npt.ArrayLike | None = None,
    ) -> StudySet:
        """Build a set from effect sizes and sampling variances.

        Parameters
        ----------
        yi, vi : array_like
            Effect sizes and their sampling variances (> 0).
        labels : sequence of str, optional
            Effect labels. Default: with ``study``, the study's label for a study with
            one effect and ``"<study> #1"``, ``"<study> #2"``, ... for a study with
            several; otherwise ``"1"``, ``"2"``, ... (R's default labels).
        study : sequence, optional
            The study of each effect, when studies give several effects.
        measure : str
            The measure of ``yi``.
        moderators : mapping of str to array_like, optional
            One column of values per moderator.
        n : array_like, optional
            Sample sizes.

        Raises
        ------
        InvalidStudyError
            For a non-finite ``yi`` or a ``vi`` that is ≤ 0, NaN or infinite,
            naming the study and the field (``"value"`` or ``"variance"``).
        """
        y = np.atleast_1d(_numeric(yi, "yi"))
        v = np.atleast_1d(_numeric(vi, "vi"))
        if y.ndim != 1 or y.shape != v.shape:
            raise InvalidStudyError(
                f"yi and vi must be 1-D of equal length, got {y.shape}, {v.shape}"
            )
        k = y.size
        studies = _study_column(study, k)
        labs = _effect_labels(labels, studies, k)
        _check_measure(measure, MEASURES)
        _measures.raise_problems(_generic_problems(y, v), labs)
        return cls._build(
            y, v, np.zeros(k, dtype=np.bool_), labs, measure, n, moderators, study=studies
        )

    @classmethod
    def _build(
        cls,
        yi: FloatArray,
        vi: FloatArray,
        corrected: npt.NDArray[np.bool_],
        labels: Sequence[str],
        measure: Measure,
        n: npt.ArrayLike | None,
        moderators: Mapping[str, Sequence[ModeratorValue] | npt.ArrayLike] | None,
        dropped: tuple[str, ...] = (),
        optional: Mapping[str, list[ModeratorValue | None]] | None = None,
        *,
        study: Sequence[str] | None = None,
    ) -> StudySet:
        k = yi.size
        _check_unique(labels)
        mods: dict[str, list[Any]] = {}
        for name, col in (moderators or {}).items():
            if isinstance(col, (str, bytes)) or (
                not isinstance(col, (np.ndarray, Sequence))
                and not pandas_instance(col, "Series", "Index")
                and not hasattr(col, "__len__")
            ):
                raise InvalidStudyError(
                    f"moderator needs one value per study (a list or array), got {col!r}",
                    field=name,
                )
            values = (
                col.tolist()  # type: ignore[union-attr]
                if isinstance(col, np.ndarray) or pandas_instance(col, "Series")
                else list(col)  # type: ignore[arg-type]
            )
            if len(values) != k:
                raise InvalidStudyError(
                    f"moderator has {len(values)} values for {k} studies", field=name
                )
            mods[name] = values
        ns: list[int | None]
        if n is None:
            ns = [None] * k
        else:
            na = np.atleast_1d(_numeric(n, "n"))
            if na.ndim != 1 or na.size != k:
                raise InvalidStudyError(
                    f"n has {na.size} values for {k} studies (one per study)", field="n"
                )
            too_big = np.isfinite(na) & (na > _MAX_N)
            if too_big.any():
                i = int(np.flatnonzero(too_big)[0])
                raise InvalidStudyError(
                    f"a sample size must be at most 2**53 = {_MAX_N:.0f}, got {na[i]:g}",
                    study=labels[i],
                    field="n",
                )
            # a missing (NaN) sample size is unknown; any other must be a whole number > 0
            bad = ~np.isnan(na) & ~(np.isfinite(na) & (na > 0) & (na == np.round(na)))
            if bad.any():
                i = int(np.argmax(bad))
                raise InvalidStudyError(
                    f"sample size must be a whole number > 0, got {float(na[i])!r}",
                    study=labels[i],
                    field="n",
                )
            ns = [None if np.isnan(x) else int(x) for x in na.tolist()]
        studies = tuple(
            Study(
                label=labels[i],
                effect=EffectSize(float(yi[i]), float(vi[i]), measure, bool(corrected[i])),
                n=ns[i],
                moderators={
                    **{name: vals[i] for name, vals in mods.items()},
                    **{name: v for name, vals in (optional or {}).items()
                       if (v := vals[i]) is not None},
                },
                study=None if study is None or study[i] == labels[i] else study[i],
            )
            for i in range(k)
        )
        return cls(studies, dropped)

    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame | Mapping[str, Sequence[Any]],
        *,
        label: str | None = None,
        study: str | None = None,
        r: str | None = None,
        n: str | None = None,
        m1: str | None = None,
        sd1: str | None = None,
        n1: str | None = None,
        m2: str | None = None,
        sd2: str | None = None,
        n2: str | None = None,
        a: str | None = None,
        b: str | None = None,
        c: str | None = None,
        d: str | None = None,
        yi: str | None = None,
        vi: str | None = None,
        se: str | None = None,
        measure: Measure | None = None,
        moderators: Sequence[str] | str | None = None,
        nan_policy: NanPolicy = "raise",
    ) -> StudySet:
        """Build a set from the columns of a data frame.

        Give the column names of exactly one kind of input:

        - correlations: ``r`` and ``n`` (measure ``"ZCOR"`` by default, or ``"COR"``,
          ``"UCOR"``);
        - two-group means: ``m1, sd1, n1, m2, sd2, n2`` (``"SMD"`` by default, or
          ``"MD"``, ``"SMDH"``, ``"ROM"``);
        - 2×2 tables: ``a, b, c, d`` (``"OR"`` by default, or ``"RR"``, ``"RD"``);
        - precomputed effect sizes: ``yi`` with ``vi`` or ``se`` (``"GEN"`` by
          default, or any measure naming the scale of ``yi``); ``n`` optional.

        Parameters
        ----------
        df : pandas.DataFrame or mapping of column name to values
            One row per study (a mapping is converted by ``pandas.DataFrame``).
        label : str, optional
            Column of effect labels (unique); by default made from ``study`` (see
            :meth:`from_arrays`), else ``"1"``, ``"2"``, ... by row.
        study : str, optional
            Column naming the study of each row, when studies give several effects
            (one row per effect size).
        measure : str, optional
            Effect-size measure; see above.
        moderators : str or sequence of str, optional
            Columns to keep as moderators. Numeric columns become continuous
            (float), text and logical columns categorical.  By default every other
            column (not an input or the label) is kept, so that models can name
            any of them (``meta_regression(s, moderators="~ ablat + year")``); a
            study's missing value there is simply absent (a model using the column
            then names the study), and columns of other types are left out.
        nan_policy : {"raise", "omit"}
            ``"raise"`` (default): a missing value raises, naming the study and the
            column. ``"omit"``: rows with a missing value in a used column are
            dropped, a :class:`~alliance_meta.exceptions.DataOmittedWarning` lists
            their labels, and :attr:`dropped` records them.

        Returns
        -------
        StudySet

        Raises
        ------
        InvalidStudyError
            For invalid or missing data, naming the study label and the column.

        Notes
        -----
        Each column is converted once by the vectorised functions of
        the measure registry, as :func:`alliance_meta.escalc` (metafor's ``escalc``
        defaults); ``measure`` may be any measure computed from the given columns.
        """
        import pandas as pd
        if nan_policy not in ("raise", "omit"):
            raise AllianceMetaError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
        frame: pd.DataFrame = df if isinstance(df, pd.DataFrame) else pd.DataFrame(df)
        if len(frame) == 0:
            raise InvalidStudyError("the data frame has no rows (no studies)", field="df")
        given = {
            "r": r, "n": n, "m1": m1, "sd1": sd1, "n1": n1, "m2": m2, "sd2": sd2, "n2": n2,
            "a": a, "b": b, "c": c, "d": d, "yi": yi, "vi": vi, "se": se,
        }  # fmt: skip
        family, fields = _input_family(given)
        meas: Measure = measure if measure is not None else _DEFAULT_MEASURE[family]
        allowed = MEASURES if family == "generic" else _measures_of(tuple(fields))
        _check_measure(meas, allowed)
        declared = moderators is not None
        mod_cols = (
            [] if moderators is None
            else [moderators] if isinstance(moderators, str) else list(moderators)
        )
        for col in [*fields.values(), *mod_cols, *([label] if label else []),
                    *([study] if study else [])]:
            if col not in frame.columns:
                raise InvalidStudyError(f"no column {col!r} in the data frame", field=col)

        k = len(frame)
        studies: list[str] | None = None
        if study is not None:
            st_col = frame[study]
            if bool(st_col.isna().any()):
                i = int(np.flatnonzero(st_col.isna().to_numpy())[0])
                raise InvalidStudyError("missing study", study=f"row {i}", field=study)
            studies = [str(x) for x in st_col.tolist()]
        if label is not None:
            lab_col = frame[label]
            if bool(lab_col.isna().any()):
                i = int(np.flatnonzero(lab_col.isna().to_numpy())[0])
                raise InvalidStudyError("missing study label", study=f"row {i}", field=label)
            labels = [str(x) for x in lab_col.tolist()]
        else:
            labels = _effect_labels(None, studies, k)
        _check_unique(labels)

        # numeric input columns, and missing values in used columns
        numeric: dict[str, FloatArray] = {}
        missing: list[_measures.Problem] = []
        for role, col in fields.items():
            raw = frame[col]
            isna = raw.isna().to_numpy(dtype=np.bool_)
            num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            not_number = ~isna & np.isnan(num)
            _measures.raise_problems(
                [_measures.Problem(role, "not a number", not_number)], labels, {role: col}
            )
            numeric[role] = num
            missing.append(_measures.Problem(role, "missing value", isna))
        for col in mod_cols:
            missing.append(
                _measures.Problem(
                    col, "missing moderator value", frame[col].isna().to_numpy(np.bool_)
                )
            )
        role_to_col = {**fields, **{c: c for c in mod_cols}}
        drop = _measures.bad_rows(missing, k)
        dropped: tuple[str, ...] = ()
        if nan_policy == "raise":
            _measures.raise_problems(missing, labels, role_to_col)
        elif np.any(drop):
            dropped = tuple(lab for lab, dr in zip(labels, drop.tolist(), strict=True) if dr)
            warnings.warn(
                f"omitted {len(dropped)} of {k} studies with missing values: "
                + ", ".join(repr(x) for x in dropped),
                DataOmittedWarning,
                stacklevel=2,
            )
        keep = ~drop
        labels = [lab for lab, kp in zip(labels, keep.tolist(), strict=True) if kp]
        if studies is not None:
            studies = [st for st, kp in zip(studies, keep.tolist(), strict=True) if kp]
        numeric = {role: arr[keep] for role, arr in numeric.items()}
        mod_values = {col: frame[col].to_numpy()[keep] for col in mod_cols}
        extra = {} if declared else _undeclared_moderators(
            frame, {*fields.values(), *([label] if label else []), *([study] if study else [])},
            keep,
        )

        study_n: npt.ArrayLike | None
        if family != "generic":
            res = _measures.evaluate(
                meas,
                {_METAFOR_NAME[role]: arr for role, arr in numeric.items()},
                labels=labels,
                fields={_METAFOR_NAME[role]: col for role, col in fields.items()},
            ).computed
            study_n = res.ni
        else:
            y = numeric["yi"]
            if "se" in numeric:
                s = numeric["se"]
                _measures.raise_problems(
                    [_measures.Problem("se", "a standard error must be > 0", ~(s > 0))],
                    labels,
                    fields,
                )
                v = s**2
            else:
                v = numeric["vi"]
            _measures.raise_problems(
                _generic_problems(y, v),
                labels,
                {"value": fields["yi"], "variance": fields.get("vi", fields.get("se", "vi"))},
            )
            res = _measures.Computed(y, v, np.zeros(y.size, dtype=np.bool_))
            study_n = numeric.get("n")
        corrected = (
            res.corrected if res.corrected is not None else np.zeros(res.yi.size, np.bool_)
        )
        return cls._build(
            res.yi, res.vi, corrected, labels, meas, study_n, mod_values, dropped, extra,
            study=studies,
        )

    @classmethod
    def from_csv(
        cls, path: str | os.PathLike[str], **columns: Unpack[FrameColumns]
    ) -> StudySet:
        """Read a CSV file with :func:`pandas.read_csv` and call :meth:`from_dataframe`.

        The keyword arguments are those of :meth:`from_dataframe`.  The label and
        study columns, if given, are read as text.
        """
        import pandas as pd
        text_cols = {c: str for c in (columns.get("label"), columns.get("study")) if c}
        df = pd.read_csv(path, dtype=text_cols or None)
        return cls.from_dataframe(df, **columns)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per effect: ``label, yi, vi, se, measure, n, corrected`` and the
        moderators, with a ``study`` column after ``label`` when any effect names its
        study."""
        import pandas as pd
        data: dict[str, Any] = {
            "label": list(self.labels),
            **({"study": list(self.study_labels)}
               if any(s.study is not None for s in self.studies) else {}),
            "yi": np.array(self._yi),
            "vi": np.array(self._vi),
            "se": self.se,
            "measure": [s.effect.measure for s in self.studies],
            "n": pd.array([s.n for s in self.studies], dtype="Int64"),
            "corrected": self.corrected,
        }
        for name in self.moderator_names:
            data[name] = [s.moderators.get(name) for s in self.studies]
        frame: pd.DataFrame = pd.DataFrame(data)
        return frame


# -------------------------------------------------------------------------------- helpers


def _sort_key(v: ModeratorValue) -> tuple[float, tuple[Any, ...]]:
    """Numbers sort numerically, text and logicals by R's spelling in R's collation."""
    from alliance_meta.data.formula import r_collation_key

    return (v, ()) if isinstance(v, float) else (0.0, r_collation_key(_level_str(v)))


#: dtype kinds that are not numbers to compute with, though numpy converts them to
#: float: booleans, complex numbers (the imaginary part would be dropped), dates and
#: durations.
_NOT_NUMERIC_KINDS = {"b": "a boolean", "c": "a complex number", "M": "a date",
                      "m": "a duration"}


def _numeric(values: object, field: str) -> FloatArray:
    """``values`` as float64, or an error naming the field and the first bad entry.

    Booleans, complex numbers, dates and durations are refused rather than
    converted (``True`` is not an effect size, and ``1+2j`` would lose its
    imaginary part).
    """
    try:
        raw = np.asarray(values)
    except (TypeError, ValueError):
        raw = np.asarray(values, dtype=object)
    kind = raw.dtype.kind
    if kind in "fiu":
        return raw.astype(np.float64, copy=False)
    if kind in _NOT_NUMERIC_KINDS:
        flat = raw.reshape(-1)
        x = flat[0] if flat.size else raw
        raise InvalidStudyError(
            f"values must be real numbers, got {_NOT_NUMERIC_KINDS[kind]} ({x!r})",
            study="row 0" if flat.size else None,
            field=field,
        )
    if kind == "O":
        for i, x in enumerate(raw.reshape(-1).tolist()):
            if isinstance(x, (bool, np.bool_, complex, np.complexfloating, np.datetime64,
                              np.timedelta64, datetime.date, datetime.timedelta)):
                raise InvalidStudyError(
                    f"value {x!r} is not a real number", study=f"row {i}", field=field
                )
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        pass
    for i, x in enumerate(np.atleast_1d(np.asarray(values, dtype=object))):
        try:
            float(x)
        except (TypeError, ValueError):
            raise InvalidStudyError(
                f"value {x!r} is not numeric", study=f"row {i}", field=field
            ) from None
    raise InvalidStudyError("values must be numeric", field=field)


def _study_column(study: Sequence[object] | npt.ArrayLike | None, k: int) -> list[str] | None:
    """The study of each effect as text, or None; an error names a missing one."""
    if study is None:
        return None
    vals = list(np.asarray(study, dtype=object).reshape(-1))
    if len(vals) != k:
        raise InvalidStudyError(f"{len(vals)} study labels for {k} effects", field="study")
    for i, v in enumerate(vals):
        if _is_missing(_normalise_value(v)) or (isinstance(v, str) and not v):
            raise InvalidStudyError("missing study", study=f"row {i}", field="study")
    return [_level_str(_normalise_value(v)) for v in vals]


def _effect_labels(
    labels: Sequence[str] | None, studies: Sequence[str] | None, k: int
) -> list[str]:
    """Effect labels: as given; else the study label for a study with one effect and
    ``"<study> #j"`` for the j-th effect of a study with several; else 1..k."""
    if labels is not None or studies is None:
        return _default_labels(labels, k)
    counts: dict[str, int] = {}
    for st in studies:
        counts[st] = counts.get(st, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for st in studies:
        seen[st] = seen.get(st, 0) + 1
        out.append(st if counts[st] == 1 else f"{st} #{seen[st]}")
    return out


def _default_labels(labels: Sequence[str] | None, k: int) -> list[str]:
    if labels is None:
        return [str(i + 1) for i in range(k)]
    labs = [str(x) for x in labels]
    if len(labs) != k:
        raise InvalidStudyError(f"{len(labs)} labels for {k} studies", field="label")
    return labs


def _check_unique(labels: Sequence[Hashable]) -> None:
    seen: dict[Hashable, int] = {}
    for i, lab in enumerate(labels):
        if lab in seen:
            raise InvalidStudyError(
                f"duplicate study label (rows {seen[lab]} and {i})", study=str(lab), field="label"
            )
        seen[lab] = i


def _generic_problems(y: FloatArray, v: FloatArray) -> list[_measures.Problem]:
    return [
        _measures.Problem("value", "the effect size is missing or infinite", ~np.isfinite(y)),
        _measures.Problem(
            "variance",
            "the sampling variance must be finite and > 0",
            ~(np.isfinite(v) & (v > 0)),
        ),
    ]


def _input_family(given: Mapping[str, str | None]) -> tuple[_Family, dict[str, str]]:
    sets: dict[_Family, tuple[str, ...]] = {
        "correlation": ("r", "n"),
        "means": ("m1", "sd1", "n1", "m2", "sd2", "n2"),
        "counts": ("a", "b", "c", "d"),
    }
    present = {k for k, v in given.items() if v is not None}
    for family, roles in sets.items():
        if present & (set(roles) - {"n"}):
            missing = [x for x in roles if x not in present]
            if missing:
                raise AllianceMetaError(
                    f"{family} input needs columns for {roles}; missing {missing}"
                )
            extra = present - set(roles)
            if extra:
                raise AllianceMetaError(
                    f"give one kind of input; {sorted(extra)} do not belong with {family} input"
                )
            return family, {x: str(given[x]) for x in roles}
    if "yi" in present:
        if ("vi" in present) == ("se" in present):
            raise AllianceMetaError("give yi with exactly one of vi or se")
        extra = present - {"yi", "vi", "se", "n"}
        if extra:
            raise AllianceMetaError(
                f"give one kind of input; {sorted(extra)} do not belong with yi"
            )
        return "generic", {x: str(given[x]) for x in ("yi", "vi", "se", "n") if x in present}
    raise AllianceMetaError(
        "no effect-size input: give r and n; m1, sd1, n1, m2, sd2, n2; a, b, c, d; "
        "or yi with vi or se"
    )


def _undeclared_moderators(
    frame: pd.DataFrame, used: set[str], keep: npt.NDArray[np.bool_]
) -> dict[str, list[ModeratorValue | None]]:
    """The columns not declared as inputs, kept as moderators (missing values as
    ``None``): numbers, text and logicals; columns of other types are left out."""
    import pandas as pd
    out: dict[str, list[ModeratorValue | None]] = {}
    for col in frame.columns:
        if not isinstance(col, str) or col in used:
            continue
        series = frame[col][keep]
        dtype = series.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            series = series.astype(object)
        elif not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
                  or pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)):
            continue
        values: list[ModeratorValue | None] = []
        for v in series.tolist():
            v = _normalise_value(v)
            if _is_missing(v) or v is pd.NA:
                values.append(None)
            elif isinstance(v, (str, float, bool)) and not (
                isinstance(v, float) and not math.isfinite(v)
            ):
                values.append(v)
            else:
                break  # another type (a date, a list): not a moderator
        else:
            out[col] = values
    return out
