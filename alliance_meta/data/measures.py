"""The measure registry: what each effect-size measure is, in one table.

Each :class:`MeasureSpec` says, for one metafor ``escalc`` measure: its family, the
metafor arguments it needs, the function computing ``(yi, vi)``, the checks of its
input, its back-transformation to the natural scale, and the names and axis of that
scale.  Everything that needs to know about a measure (``escalc``, the data model,
``back_transformed()``, the plots, the CLI) reads this table; adding a measure means
registering one spec with :func:`register` in the module of its family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from alliance_meta.exceptions import InvalidStudyError

__all__ = [
    "Computed",
    "EscalcOptions",
    "MeasureSpec",
    "Problem",
    "get",
    "names",
    "register",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: metafor's ``to``: which studies get ``add`` added to their cells.
AddTo = Literal["only0", "all", "if0all", "none"]


@dataclass(frozen=True)
class EscalcOptions:
    """metafor's ``escalc`` options: ``add``, ``to``, ``drop00`` and ``vtype``.

    The defaults are metafor 3.8.1's: ``add = 1/2`` to the cells of tables with a
    zero cell (``to = "only0"``), tables with two empty cells kept
    (``drop00 = FALSE``), and the large-sample variance (``vtype = "LS"``).
    """

    add: float = 0.5
    to: AddTo = "only0"
    drop00: bool = False
    vtype: str = "LS"


class Problem(NamedTuple):
    """One kind of invalid input: the field, what is wrong, and the rows affected."""

    field: str
    message: str
    mask: BoolArray


class Computed(NamedTuple):
    """What a measure's function returns: effects, variances and, for measures of
    tables, whether ``add`` was added to the study's cells (None otherwise)."""

    yi: FloatArray
    vi: FloatArray
    corrected: BoolArray | None = None


#: ``compute(inputs, options)``: inputs are float64 arrays keyed by metafor's names.
ComputeFn = Callable[[Mapping[str, FloatArray], EscalcOptions], Computed]
#: ``check(inputs, options)``: the problems of the input, in the order to report them.
CheckFn = Callable[[Mapping[str, FloatArray], EscalcOptions], list[Problem]]
Transform = Callable[[FloatArray], FloatArray]

#: How a plot axis shows the natural scale: values as they are (``linear``), ratios
#: on a log axis (``log``), or a function scale whose forward map is ``transform``
#: (``function``: e.g. r through Fisher's z, proportions through the logit).
AxisKind = Literal["linear", "log", "function"]


@dataclass(frozen=True)
class MeasureSpec:
    """One effect-size measure.

    Attributes
    ----------
    name : str
        metafor's name (``"ZCOR"``, ``"SMD"``, ...).
    family : str
        The kind of data it is computed from (``"correlation"``, ``"two-group
        means"``, ``"2x2 table"``, ...).
    description : str
        One line for tables and errors.
    inputs : tuple of str
        The metafor ``escalc`` arguments it needs (``ri``, ``ni``, ``m1i`` ...).
    compute : callable or None
        ``compute(inputs, options) -> Computed``; None for ``GEN`` (given yi, vi).
    check : callable or None
        ``check(inputs, options) -> list[Problem]`` of invalid input.
    back_transform : callable or None
        Analysis scale to natural scale (``tanh`` for ZCOR, ``exp`` for log
        ratios); None when the analysis scale is the natural scale.
    transform : callable or None
        The inverse of ``back_transform`` (natural to analysis scale).
    natural_name, analysis_name : str
        Short names of the value on each scale (``"r"`` and ``"z"``).
    axis_label, analysis_label : str
        Plot axis labels on each scale.
    axis : {"linear", "log", "function"}
        How plots show the natural scale.
    bounded : bool
        Whether the natural scale is bounded (correlations, proportions), which
        changes the choice of axis ticks.
    """

    name: str
    family: str
    description: str
    inputs: tuple[str, ...] = ()
    compute: ComputeFn | None = field(default=None, compare=False)
    check: CheckFn | None = field(default=None, compare=False)
    back_transform: Transform | None = field(default=None, compare=False)
    transform: Transform | None = field(default=None, compare=False)
    natural_name: str = ""
    analysis_name: str = ""
    axis_label: str = ""
    analysis_label: str = ""
    axis: AxisKind = "linear"
    bounded: bool = False

    @property
    def transformed(self) -> bool:
        """Whether the analysis scale differs from the natural scale."""
        return self.back_transform is not None


_REGISTRY: dict[str, MeasureSpec] = {}


def register(spec: MeasureSpec) -> MeasureSpec:
    """Add ``spec`` to the registry (each name once) and return it."""
    if spec.name in _REGISTRY:
        raise ValueError(f"measure {spec.name!r} is registered twice")
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
