"""The measure registry: what each effect-size measure is, in one table.

Each :class:`MeasureSpec` says, for one metafor ``escalc`` measure: its family, the
metafor arguments it needs, the function computing ``(yi, vi)``, the checks of its
input, its back-transformation to the natural scale, and the names and axis of that
scale.  Everything that needs to know about a measure (``escalc``, the data model,
``back_transformed()``, the plots, the CLI, the docs table) reads this table; adding
a measure means registering one spec with :func:`register` in the module of its
family under :mod:`alliance_meta.data.effect_sizes`.

:func:`evaluate` is the one path from raw input to ``(yi, vi)``: it resolves
metafor's alternative arguments (``n1i`` for ``bi``, ``ti`` for ``ri``, ...), finds
missing values, checks the input (raising :class:`InvalidStudyError` naming the row
and the field), computes, and checks the output.  :func:`alliance_meta.escalc`,
``EffectSize.from_*`` and ``StudySet.from_dataframe`` all call it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from alliance_meta.exceptions import AllianceMetaError, AllianceMetaWarning, InvalidStudyError

__all__ = [
    "ARGUMENTS",
    "VTYPES",
    "Computed",
    "EscalcOptions",
    "MeasureSpec",
    "Problem",
    "Transform",
    "back_transform",
    "bad_rows",
    "evaluate",
    "get",
    "names",
    "natural_scale_name",
    "raise_problems",
    "register",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: metafor's ``to``: which studies get ``add`` added to their cells.
AddTo = Literal["only0", "all", "if0all", "none"]

#: What to do with rows that miss a needed value: raise an error naming the row and
#: field, omit the row, or give it NaN effect size and variance (metafor's NA).
MissingPolicy = Literal["raise", "omit", "propagate"]

#: metafor's ``escalc`` data arguments (3.8.1, with ``fi`` and ``pi`` of later
#: versions): each measure reads some of them and ignores the rest, as metafor does.
ARGUMENTS: tuple[str, ...] = (
    "ai", "bi", "ci", "di", "n1i", "n2i", "x1i", "x2i", "t1i", "t2i", "m1i", "m2i",
    "sd1i", "sd2i", "xi", "mi", "ri", "ti", "fi", "pi", "sdi", "r2i", "ni", "yi", "vi",
    "sei",
)  # fmt: skip

#: Every ``vtype`` metafor 3.8.1 knows; each measure accepts a subset.
VTYPES: tuple[str, ...] = ("LS", "UB", "LS2", "HO", "ST", "CS", "AV", "AVHO")

#: How many offending rows an error message lists before summarising.
_MAX_LABELS_SHOWN = 5


@dataclass(frozen=True)
class EscalcOptions:
    """metafor's ``escalc`` options: ``add``, ``to``, ``drop00`` and ``vtype``.

    The defaults are metafor 3.8.1's: ``add = 1/2`` (``add = 0`` for AS, PHI, RTET,
    IRSD, PAS, PFT, IRS and IRFT unless ``add`` is given) added to the cells of
    tables with a zero cell (``to = "only0"``), tables with two empty cells kept
    (``drop00 = False``), and the large-sample variance (``vtype = "LS"``).
    ``vtype`` is one string or one per row.
    """

    add: float | None = None
    to: AddTo = "only0"
    drop00: bool = False
    vtype: str | tuple[str, ...] = "LS"

    def add_for(self, spec: MeasureSpec) -> float:
        """The value to add: ``add`` if given, else the measure's default."""
        return spec.default_add if self.add is None else float(self.add)


class Problem(NamedTuple):
    """One kind of invalid input: the field, what is wrong, and the rows affected."""

    field: str
    message: str
    mask: BoolArray


class Computed(NamedTuple):
    """What a measure's function returns.

    ``yi`` and ``vi`` are the effect sizes and sampling variances; ``corrected``
    marks the rows whose counts got ``add`` (None: no counts); ``excluded`` marks
    the rows that ``drop00`` set aside (their yi and vi are NaN); ``ni`` is the
    total sample size metafor records with the effect (its ``attr(yi, "ni")``;
    person-time for the incidence-rate measures).
    """

    yi: FloatArray
    vi: FloatArray
    corrected: BoolArray | None = None
    excluded: BoolArray | None = None
    ni: FloatArray | None = None


Inputs = Mapping[str, FloatArray]
#: ``compute(inputs, options)``: inputs are float64 arrays keyed by metafor's names.
ComputeFn = Callable[[Inputs, EscalcOptions], Computed]
#: ``check(inputs, options)``: the problems of the input, in the order to report them.
CheckFn = Callable[[Inputs, EscalcOptions], list[Problem]]
#: ``prepare(given)``: the measure's canonical inputs from what the caller gave (e.g.
#: ``bi = n1i - ai``), and the problems of the alternatives (e.g. ``n1i != ai + bi``).
PrepareFn = Callable[[Inputs], tuple[dict[str, FloatArray], list[Problem]]]


class Transform(Protocol):
    """A map between the analysis and the natural scale of a measure.

    ``n`` are the studies' sample sizes (person-times for IRFT), needed only by the
    measures whose spec has ``needs_n`` (PFT and IRFT: metafor's ``transf.ipft.hm``
    uses their harmonic mean); the others ignore it.
    """

    def __call__(self, x: FloatArray, /, n: FloatArray | None = None) -> FloatArray: ...


#: How a plot axis shows the natural scale: values as they are (``linear``), ratios
#: on a log axis (``log``), or a function scale whose forward map is ``transform``
#: (``function``: e.g. r through Fisher's z, proportions through the logit).
AxisKind = Literal["linear", "log", "function"]

#: The scale on which an artefact correction (``rxx``, ``ryy``, ``ux``) acts:
#: the correlation itself (``"r"``) or Fisher's z of it (``"z"``).
CorrectionScale = Literal["r", "z"]


@dataclass(frozen=True)
class MeasureSpec:
    """One effect-size measure.

    Attributes
    ----------
    name : str
        metafor's name (``"ZCOR"``, ``"SMD"``, ...).
    family : str
        The kind of data it is computed from (``"correlations"``, ``"two-group
        means"``, ``"2x2 tables"``, ...).
    description : str
        One line for tables and errors.
    inputs : tuple of str
        The metafor ``escalc`` arguments it needs, after alternatives are resolved
        (``ri``, ``ni``, ``m1i`` ...).
    alternatives : tuple of str
        Further arguments it accepts in place of, or to derive, ``inputs``
        (``n1i`` for ``bi``, ``ti`` or ``pi`` for ``ri``, ``sei`` for ``vi``).
    compute : callable or None
        ``compute(inputs, options) -> Computed``.
    check : callable or None
        ``check(inputs, options) -> list[Problem]`` of invalid input.
    prepare : callable or None
        ``prepare(given) -> (inputs, problems)``; None takes ``inputs`` as given.
    vtypes : tuple of str
        The ``vtype`` values it accepts; the first is metafor's default.
    default_add : float
        metafor's default ``add`` (1/2, or 0 for AS, PHI, RTET, IRSD, PAS, PFT, IRS,
        IRFT).
    back_transform : Transform or None
        Analysis scale to natural scale (``tanh`` for ZCOR, ``exp`` for log
        ratios); None when the analysis scale is the natural scale.
    transform : Transform or None
        The inverse of ``back_transform`` (natural to analysis scale).
    needs_n : bool
        Whether the transforms need the sample sizes (PFT, IRFT).
    natural_name, analysis_name : str
        Short names of the value on each scale (``"r"`` and ``"z"``).
    axis_label, analysis_label : str
        Plot axis labels on each scale.
    axis : {"linear", "log", "function"}
        How plots show the natural scale.
    bounded : bool
        Whether the natural scale is bounded (correlations, proportions), which
        changes the choice of axis ticks.
    symmetric : bool
        Whether reversing the direction of one variable negates the effect (so
        ``flip`` is meaningful): differences, log ratios and correlations.
    correction : {"r", "z"} or None
        For correlations: the scale on which the artefact corrections (``rxx``,
        ``ryy``, ``ux``) act; None when they do not apply.
    formula, variance, reference : str
        The effect size and variance formulas (reStructuredText math) and their
        source, for the docs table.
    """

    name: str
    family: str
    description: str
    inputs: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()
    compute: ComputeFn | None = field(default=None, compare=False)
    check: CheckFn | None = field(default=None, compare=False)
    prepare: PrepareFn | None = field(default=None, compare=False)
    vtypes: tuple[str, ...] = ("LS",)
    default_add: float = 0.5
    back_transform: Transform | None = field(default=None, compare=False)
    transform: Transform | None = field(default=None, compare=False)
    needs_n: bool = False
    natural_name: str = ""
    analysis_name: str = ""
    axis_label: str = ""
    analysis_label: str = ""
    axis: AxisKind = "linear"
    bounded: bool = False
    symmetric: bool = True
    correction: CorrectionScale | None = None
    formula: str = ""
    variance: str = ""
    reference: str = ""
    back_transform_label: str = ""

    @property
    def transformed(self) -> bool:
        """Whether the analysis scale differs from the natural scale."""
        return self.back_transform is not None

    @property
    def arguments(self) -> tuple[str, ...]:
        """Every metafor argument the measure reads: inputs, then alternatives."""
        return self.inputs + tuple(a for a in self.alternatives if a not in self.inputs)

    def to_natural(self, x: npt.ArrayLike, n: npt.ArrayLike | None = None) -> FloatArray:
        """``x`` on the natural scale (unchanged for untransformed measures)."""
        arr = np.asarray(x, dtype=np.float64)
        if self.back_transform is None:
            return arr
        return self.back_transform(arr, n=_n_array(n))

    def to_analysis(self, x: npt.ArrayLike, n: npt.ArrayLike | None = None) -> FloatArray:
        """``x`` from the natural scale to the analysis scale."""
        arr = np.asarray(x, dtype=np.float64)
        if self.transform is None:
            return arr
        return self.transform(arr, n=_n_array(n))


def _n_array(n: npt.ArrayLike | None) -> FloatArray | None:
    return None if n is None else np.atleast_1d(np.asarray(n, dtype=np.float64))


_REGISTRY: dict[str, MeasureSpec] = {}


def register(spec: MeasureSpec) -> MeasureSpec:
    """Add ``spec`` to the registry (each name once) and return it."""
    if spec.name in _REGISTRY:
        raise ValueError(f"measure {spec.name!r} is registered twice")
    if spec.vtypes and any(v not in VTYPES for v in spec.vtypes):
        raise ValueError(f"measure {spec.name!r} has an unknown vtype in {spec.vtypes}")
    _REGISTRY[spec.name] = spec
    return spec


def _load() -> None:
    """Import the family modules, which register their measures."""
    from alliance_meta.data import effect_sizes  # noqa: F401


def get(name: str, *, field: str = "measure") -> MeasureSpec:
    """The spec of measure ``name``, or an error listing the known measures.

    A name that differs only in case from a known one raises with the spelling to
    use (metafor's names are case-sensitive, and ``"zcor"`` is not silently read
    as ``"ZCOR"``).
    """
    _load()
    spec = _REGISTRY.get(name) if isinstance(name, str) else None
    if spec is not None:
        return spec
    if isinstance(name, str):
        close = [n for n in _REGISTRY if n.lower() == name.lower()]
        if close:
            raise InvalidStudyError(
                f"unknown measure {name!r}; measure names are case-sensitive, did you mean "
                f"{close[0]!r}?",
                field=field,
            )
    raise InvalidStudyError(
        f"unknown measure {name!r}; expected one of {', '.join(names())}", field=field
    )


def names(family: str | None = None) -> tuple[str, ...]:
    """Registered measure names (of one family), in registration order."""
    _load()
    return tuple(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def specs() -> tuple[MeasureSpec, ...]:
    """Every registered spec, in registration order."""
    _load()
    return tuple(_REGISTRY.values())


# ------------------------------------------------------------------ back-transforms

_T = TypeVar("_T", float, FloatArray)


def back_transform(value: _T, measure: str, n: npt.ArrayLike | None = None) -> _T:
    """Map ``value`` from the analysis scale of ``measure`` to its natural scale.

    ZCOR → r by ``tanh``; log ratios → ratios by ``exp``; PLO → proportion by the
    inverse logit; ...: each measure's ``back_transform`` in the registry.  Measures
    already on their natural scale are returned unchanged.  PFT and IRFT need the
    studies' sample sizes (person-times) ``n``.
    """
    out = get(measure).to_natural(value, n)
    if isinstance(value, float | int):
        return float(np.asarray(out).reshape(-1)[0])
    return out


def natural_scale_name(measure: str) -> str:
    """Name of the natural scale: ``"r"`` for ZCOR, the ratio for log ratios, the
    measure's own name for measures without a back-transformation."""
    spec = get(measure)
    return (spec.natural_name or spec.name) if spec.transformed else spec.name


# ------------------------------------------------------------------- problems


def _row_labels(labels: Sequence[str | None] | None, idx: npt.NDArray[np.intp]) -> list[str | None]:
    if labels is None:
        return [f"row {int(i)}" for i in idx]
    return [None if labels[int(i)] is None else str(labels[int(i)]) for i in idx]


def raise_problems(
    problems: Sequence[Problem],
    labels: Sequence[str | None] | None = None,
    fields: Mapping[str, str] | None = None,
) -> None:
    """Raise for the first problem that affects any row.

    Parameters
    ----------
    problems : sequence of Problem
        Checked in order; the first with a true mask raises.
    labels : sequence of str or None, optional
        Study labels, one per row. Without them rows are named ``"row <i>"`` (0-based);
        a ``None`` label leaves the study unnamed.
    fields : mapping of str to str, optional
        Names to report instead of the internal field names (e.g. the column
        ``"r_col"`` of a data frame for the field ``"ri"``).

    Raises
    ------
    InvalidStudyError
        Naming the first offending study and the field, and listing up to five
        further offending studies in the message.
    """
    for prob in problems:
        idx = np.flatnonzero(prob.mask)
        if idx.size == 0:
            continue
        shown = _row_labels(labels, idx[:_MAX_LABELS_SHOWN])
        message = prob.message
        if idx.size > 1:
            others = ", ".join(repr(s) for s in shown[1:])
            more = idx.size - len(shown)
            extra = f" and {more} more" if more > 0 else ""
            message = f"{message} (also in {others}{extra})"
        name = prob.field
        if fields is not None and fields.get(name, name) != name:
            name = fields[name]
        raise InvalidStudyError(message, study=shown[0], field=name)


def bad_rows(problems: Sequence[Problem], k: int) -> BoolArray:
    """Rows flagged by any problem (a boolean mask of length ``k``)."""
    mask = np.zeros(k, dtype=np.bool_)
    for prob in problems:
        mask |= prob.mask
    return mask


# -------------------------------------------------------------------- evaluate


class Evaluated(NamedTuple):
    """What :func:`evaluate` returns: the computed effects of the kept rows, which
    rows those are, and which rows missed a needed value."""

    computed: Computed
    kept: npt.NDArray[np.intp]
    missing: BoolArray


def as_inputs(given: Mapping[str, npt.ArrayLike]) -> dict[str, FloatArray]:
    """Float64 1-D arrays of one length, broadcast (a scalar goes with every row)."""
    arrays: dict[str, FloatArray] = {}
    for key, value in given.items():
        try:
            arrays[key] = np.atleast_1d(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            _raise_not_numeric(key, value)
    if not arrays:
        return arrays
    try:
        shaped = np.broadcast_arrays(*arrays.values())
    except ValueError as exc:
        shapes = ", ".join(f"{k} {a.shape}" for k, a in arrays.items())
        raise InvalidStudyError(f"input arrays have incompatible shapes: {shapes}") from exc
    out: dict[str, FloatArray] = {}
    for key, arr in zip(arrays, shaped, strict=True):
        if arr.ndim != 1:
            raise InvalidStudyError(
                f"inputs must be one-dimensional, got shape {arr.shape}", field=key
            )
        out[key] = np.array(arr, dtype=np.float64)
    return out


def _raise_not_numeric(key: str, value: object) -> None:
    for i, x in enumerate(np.atleast_1d(np.asarray(value, dtype=object))):
        if x is None:
            continue
        try:
            float(x)
        except (TypeError, ValueError):
            raise InvalidStudyError(
                f"value {x!r} is not numeric", study=f"row {i}", field=key
            ) from None
    raise InvalidStudyError("values must be numeric", field=key)


def _check_vtype(spec: MeasureSpec, options: EscalcOptions, k: int) -> None:
    vt = options.vtype
    given = (vt,) if isinstance(vt, str) else tuple(vt)
    if not isinstance(vt, str) and len(given) != k:
        raise AllianceMetaError(
            f"vtype has {len(given)} entries for {k} rows; give one string or one per row"
        )
    unknown = [v for v in given if v not in VTYPES]
    if unknown:
        raise AllianceMetaError(
            f"unknown vtype {unknown[0]!r}; metafor's vtypes are {', '.join(VTYPES)}"
        )
    bad = [v for v in given if v not in spec.vtypes]
    if not bad:
        return
    if spec.vtypes == ("LS",) and not (spec.name == "ZCOR" and "UB" in bad):
        # metafor ignores vtype for a measure with one variance estimator (and
        # refuses only vtype = "UB" for ZCOR); say so instead of staying silent
        warnings.warn(
            f"measure {spec.name!r} has one sampling variance estimator; vtype "
            f"{bad[0]!r} is ignored, as in metafor",
            AllianceMetaWarning,
            stacklevel=4,
        )
        return
    allowed = ", ".join(repr(v) for v in spec.vtypes)
    raise AllianceMetaError(
        f"vtype {bad[0]!r} is not available for measure {spec.name!r}; "
        f"it must be one of {allowed}"
    )


def evaluate(
    measure: str | MeasureSpec,
    given: Mapping[str, npt.ArrayLike],
    options: EscalcOptions | None = None,
    *,
    labels: Sequence[str | None] | None = None,
    fields: Mapping[str, str] | None = None,
    nan_policy: MissingPolicy = "raise",
) -> Evaluated:
    """Effect sizes of ``measure`` from metafor-named inputs, validated.

    Parameters
    ----------
    measure : str or MeasureSpec
        A registered measure.
    given : mapping of str to array_like
        Inputs keyed by metafor's argument names; scalars broadcast.
    options : EscalcOptions, optional
        ``add``, ``to``, ``drop00``, ``vtype`` (metafor's defaults).
    labels : sequence of str, optional
        Study labels for error messages (default ``"row <i>"``).
    fields : mapping of str to str, optional
        Names to report for the inputs in errors (e.g. data frame columns).
    nan_policy : {"raise", "omit", "propagate"}
        Rows missing a needed value raise (naming row and field), are left out, or
        get NaN ``yi`` and ``vi``.

    Returns
    -------
    Evaluated
        ``computed`` (for the kept rows), ``kept`` (their row indices) and
        ``missing`` (a mask over all rows).

    Raises
    ------
    InvalidStudyError
        For invalid input, naming the first offending row and its field.
    """
    spec = measure if isinstance(measure, MeasureSpec) else get(measure)
    opts = options if options is not None else EscalcOptions()
    if spec.compute is None:
        raise AllianceMetaError(f"measure {spec.name!r} is not computed from raw data")
    unknown = sorted(set(given) - set(spec.arguments) - set(ARGUMENTS))
    if unknown:
        raise AllianceMetaError(
            f"{', '.join(repr(u) for u in unknown)} is not an argument of metafor's escalc; "
            f"measure {spec.name!r} takes {', '.join(spec.arguments)}"
        )
    # metafor's other arguments are ignored by a measure that does not use them
    arrays = as_inputs({k: v for k, v in given.items() if k in spec.arguments})
    with np.errstate(all="ignore"):
        if spec.prepare is not None:
            inputs, problems = spec.prepare(arrays)
        else:
            absent = [a for a in spec.inputs if a not in arrays]
            if absent:
                raise AllianceMetaError(
                    f"measure {spec.name!r} needs {', '.join(spec.inputs)}; "
                    f"missing {', '.join(absent)}"
                )
            inputs, problems = {a: arrays[a] for a in spec.inputs}, []
    k = _length(inputs, arrays)
    _check_vtype(spec, opts, k)
    miss = [
        Problem(name, "missing or infinite value", ~np.isfinite(arr))
        for name, arr in inputs.items()
    ]
    missing = bad_rows(miss, k)
    if nan_policy == "raise":
        # the alternatives' problems first: "a t statistic needs ni" says more than
        # "ni is missing"
        raise_problems([*problems, *miss], labels, fields)
    else:
        problems = [Problem(p.field, p.message, p.mask & ~missing) for p in problems]
    keep = np.flatnonzero(~missing) if nan_policy == "omit" else np.arange(k)
    if nan_policy == "omit" and keep.size < k:
        inputs = {name: arr[keep] for name, arr in inputs.items()}
        problems = [Problem(p.field, p.message, p.mask[keep]) for p in problems]
        # keep naming the rows by their input position once some are left out
        labels = [f"row {int(i)}" if labels is None else labels[int(i)] for i in keep]
        if not isinstance(opts.vtype, str):
            opts = EscalcOptions(opts.add, opts.to, opts.drop00,
                                 tuple(opts.vtype[int(i)] for i in keep))
    with np.errstate(all="ignore"):
        if spec.check is not None:
            problems = problems + spec.check(inputs, opts)
        raise_problems(problems, labels, fields)
        computed = spec.compute(inputs, opts)
    size = keep.size
    corrected = (
        computed.corrected if computed.corrected is not None else np.zeros(size, np.bool_)
    )
    excluded = (
        computed.excluded if computed.excluded is not None else np.zeros(size, np.bool_)
    )
    exempt = excluded | (missing[keep] if nan_policy == "propagate" else False)
    raise_problems(
        [
            Problem(
                "value",
                f"the effect size ({spec.name}) is not finite for this input",
                ~np.isfinite(computed.yi) & ~exempt,
            ),
            Problem(
                "variance",
                f"the sampling variance ({spec.name}) is not a finite positive number "
                "for this input",
                ~(np.isfinite(computed.vi) & (computed.vi > 0)) & ~exempt,
            ),
        ],
        labels,
    )
    yi, vi = computed.yi, computed.vi
    if np.any(exempt):
        yi = np.where(exempt, np.nan, yi)
        vi = np.where(exempt, np.nan, vi)
    return Evaluated(
        Computed(yi, vi, corrected, excluded, computed.ni), keep, missing
    )


def _length(inputs: Mapping[str, FloatArray], given: Mapping[str, FloatArray]) -> int:
    for arr in (*inputs.values(), *given.values()):
        return int(arr.shape[0])
    return 0


def harmonic_mean(n: FloatArray) -> float:
    """metafor's ``1/mean(1/n, na.rm = TRUE)``."""
    inv = 1.0 / n[np.isfinite(n)]
    return math.nan if inv.size == 0 else float(1.0 / np.mean(inv))


# ------------------------------------------------------------------ docs table


def docs_table() -> str:
    """The reStructuredText table of every measure (``docs/effect_sizes_table.rst``):
    measure, inputs, formula and source, variance, back-transform."""
    lines = [
        ".. This file is generated from the measure registry by",
        "   ``python -c 'from alliance_meta.data.measures import docs_table; "
        "print(docs_table(), end=\"\")' > docs/effect_sizes_table.rst``;",
        "   tests/test_escalc_measures.py checks that it is up to date.",
        "",
    ]
    for family in dict.fromkeys(s.family for s in specs()):
        members = [s for s in specs() if s.family == family]
        lines += [
            family[0].upper() + family[1:],
            "~" * len(family),
            "",
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 8 14 34 26 18",
            "",
            "   * - Measure",
            "     - Inputs",
            "     - Effect size and source",
            "     - Variance (default ``vtype``)",
            "     - Back-transform",
        ]
        for s in members:
            inputs = ", ".join(f"``{a}``" for a in s.inputs)
            if s.alternatives:
                inputs += " (or " + ", ".join(f"``{a}``" for a in s.alternatives) + ")"
            vt = "" if s.vtypes == ("LS",) else "; vtype " + ", ".join(s.vtypes)
            back = s.back_transform_label or "none (natural scale)"
            lines += [
                f"   * - ``{s.name}``",
                f"     - {inputs}",
                f"     - {s.description}: {s.formula}. {s.reference}",
                f"     - {s.variance}{vt}",
                f"     - {back}",
            ]
        lines.append("")
    return "\n".join(lines)
