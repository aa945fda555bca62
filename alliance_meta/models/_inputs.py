"""Validation of the input every model function shares: options, effects, variances."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast, get_args

import numpy as np
import numpy.typing as npt

from alliance_meta._types import FloatArray, Measure
from alliance_meta.core.estimators import METHOD_ALIASES, CoreMethod
from alliance_meta.core.vcov import TESTS, CoreTest
from alliance_meta.data.study import _check_unique, _numeric
from alliance_meta.exceptions import InvalidStudyError, ModelSpecificationError

if TYPE_CHECKING:
    from alliance_meta.data.study import Study, StudySet

__all__ = [
    "as_float_array",
    "check_level",
    "check_measure",
    "check_method",
    "check_test",
    "resolve_input",
    "validate_studies",
]


def check_method(method: str) -> CoreMethod:
    """Canonical core method name (``FE``/``CE`` → ``EE``) or a clear error."""
    try:
        return METHOD_ALIASES[method]
    except (KeyError, TypeError):
        raise ModelSpecificationError(
            f"unknown method {method!r}; expected one of {', '.join(METHOD_ALIASES)}"
        ) from None


def check_test(test: str) -> CoreTest:
    if test not in TESTS:
        raise ModelSpecificationError(
            f"unknown test {test!r}; expected one of {', '.join(TESTS)}"
        )
    return test


def check_level(level: float) -> float:
    """``level`` as a float strictly between 0 and 1, or a clear error."""
    if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)):
        raise ModelSpecificationError(
            f"level must be a number strictly between 0 and 1, got {level!r}"
        )
    lv = float(level)
    if not 0.0 < lv < 1.0:
        raise ModelSpecificationError(f"level must lie strictly between 0 and 1, got {level!r}")
    return lv


#: The outcome measures of metafor 3.8.1's ``escalc`` (its measure argument), which a
#: ``measure=`` may name besides the :data:`~alliance_meta._types.Measure` literal.
METAFOR_MEASURES = frozenset("""
    ABT AHW ARAW AS COR CVLN CVR CVRC D2OR D2ORL D2ORN GEN IR IRD IRFT IRLN IRR IRS
    IRSD MC MD MN MNLN MPOR MPORC MPORM MPPETO MPRD MPRR OR OR2D OR2DL OR2DN PAS PBIT
    PCOR PETO PFT PHI PLN PLO PR PRZ R2 RBIS RD REH ROM ROMC RPB RR RTET SDLN SMCC
    SMCR SMCRH SMCRP SMCRPH SMD SMD1 SMD1H SMDH SMN SPCOR UCOR VR VRC YUQ YUY ZCOR
    ZPCOR ZPHI ZR2 ZSPCOR ZTET
""".split())


def check_measure(measure: object) -> Measure:
    """``measure`` if it names an outcome measure (the
    :data:`~alliance_meta._types.Measure` literal, or one of metafor's ``escalc``
    measures), or a clear error, with the spelling to use where only the case
    differs: ``"zcor"`` is not silently left without its back-transformation."""
    known = (*get_args(Measure), *sorted(METAFOR_MEASURES - set(get_args(Measure))))
    if isinstance(measure, str) and measure in known:
        return cast(Measure, measure)
    if isinstance(measure, str):
        close = [n for n in known if n.lower() == measure.lower()]
        if close:
            raise InvalidStudyError(
                f"unknown measure {measure!r}; measure names are case-sensitive, did you "
                f"mean {close[0]!r}?",
                field="measure",
            )
    raise InvalidStudyError(
        f"unknown measure {measure!r}; expected one of {', '.join(get_args(Measure))} or "
        "another of metafor's escalc measures",
        field="measure",
    )


def as_float_array(values: object, field: str) -> FloatArray:
    """Convert array-like input to float64, with an error naming the field (and the
    first entry that is not a number)."""
    return _numeric(values, field)


def validate_studies(
    yi: FloatArray, vi: FloatArray, labels: Sequence[str] | None = None
) -> None:
    """Check 1-D effect/variance vectors, naming the first offending study and field."""
    if yi.ndim != 1 or vi.ndim != 1:
        raise InvalidStudyError(
            "expected 1-D arrays for a single analysis; use pool_many for 2-D input",
            field="yi" if yi.ndim != 1 else "vi",
        )
    if yi.shape != vi.shape:
        raise InvalidStudyError(
            f"yi has {yi.size} values but vi has {vi.size}", field="vi"
        )
    if yi.size == 0:
        raise InvalidStudyError("no studies given (empty input)", field="yi")

    def name(i: int) -> str:
        return labels[i] if labels is not None else f"#{i}"

    for field, arr in (("yi", yi), ("vi", vi)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidStudyError(
                f"value is {arr[i]!r} (must be finite)", study=name(i), field=field
            )
    bad = vi <= 0
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidStudyError(
            f"sampling variance must be > 0, got {vi[i]!r}", study=name(i), field="vi"
        )


def resolve_input(
    studies: StudySet | Sequence[Study] | None,
    yi: npt.ArrayLike | None,
    vi: npt.ArrayLike | None,
    measure: Measure,
) -> tuple[FloatArray, FloatArray, tuple[str, ...], Measure]:
    """``(yi, vi, labels, measure)`` from either studies or arrays, validated."""
    measure = check_measure(measure)
    if studies is not None:
        if yi is not None or vi is not None:
            raise ModelSpecificationError("give either studies or yi/vi, not both")
        study_list = list(studies)
        if not study_list:
            raise InvalidStudyError("no studies given (empty input)", field="studies")
        labels = tuple(str(s.label) for s in study_list)
        _check_unique(labels)  # as a StudySet does
        y = np.array([s.effect.value for s in study_list], dtype=np.float64)
        v = np.array([s.effect.variance for s in study_list], dtype=np.float64)
        measures: set[Measure] = {s.effect.measure for s in study_list}
        if measure == "GEN" and len(measures) == 1:
            measure = measures.pop()
        elif len(measures) > 1:
            raise ModelSpecificationError(
                f"studies mix effect-size measures {sorted(measures)}; pool one measure at a time"
            )
        validate_studies(y, v, labels)
        return y, v, labels, measure
    if yi is None or vi is None:
        raise ModelSpecificationError("give studies, or both yi and vi")
    # copies: the result keeps them, and must not change if the caller's arrays do
    y = as_float_array(yi, "yi").copy()
    v = as_float_array(vi, "vi").copy()
    validate_studies(y, v)
    return y, v, tuple(f"Study {i + 1}" for i in range(y.size)), measure
