"""The input every model function shares: options, effects, variances, and where
they come from (studies, arrays, or the columns of ``data=``), resolved in one place.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast, get_args

import numpy as np
import numpy.typing as npt

from alliance_meta._optional import pandas_instance
from alliance_meta._types import FloatArray, Measure
from alliance_meta.core.estimators import METHOD_ALIASES, CoreMethod
from alliance_meta.core.inference import check_level
from alliance_meta.core.kernel import in_unit_range
from alliance_meta.core.vcov import TESTS, CoreTest
from alliance_meta.data.study import _check_unique, _numeric
from alliance_meta.exceptions import (
    DependentEffectsWarning,
    InvalidStudyError,
    ModelSpecificationError,
)

if TYPE_CHECKING:
    import pandas as pd

    from alliance_meta.data.study import Study, StudySet

__all__ = [
    "ZERO_VI_METHODS",
    "ModelInput",
    "as_float_array",
    "as_frame",
    "check_level",
    "check_measure",
    "check_method",
    "check_test",
    "check_zero_variances",
    "frame_column",
    "is_frame",
    "long_columns",
    "resolve_input",
    "resolve_model_input",
    "validate_studies",
]

#: Estimators that need the weights ``1/v_i`` (at τ² = 0) and so refuse ``v_i = 0``,
#: as metafor's ``rma.uni`` refuses them ("... cannot be used when there are
#: non-positive sampling variances") or fails (EE: "Division by zero").
ZERO_VI_METHODS: frozenset[str] = frozenset({"EE", "DL", "HS", "HSk", "PM", "PMM"})


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


#: The outcome measures of metafor 3.8.1's ``escalc`` (its measure argument), which a
#: ``measure=`` may name besides the :data:`~alliance_meta._types.Measure` literal.
METAFOR_MEASURES = frozenset("""
    ABT AHW ARAW AS COR CVLN CVR CVRC D2OR D2ORL D2ORN GEN IR IRD IRFT IRLN IRR IRS
    IRSD MC MD MN MNLN MPOR MPORC MPORM MPPETO MPRD MPRR OR OR2D OR2DL OR2DN PAS PBIT
    PCOR PETO PFT PHI PLN PLO PR PRZ R2 RBIS RD REH ROM ROMC RPB RR RTET SDLN SMCC
    SMCR SMCRH SMCRP SMCRPH SMD SMD1 SMD1H SMDH SMN SPCOR UCOR VR VRC YUQ YUY ZCOR
    ZPCOR ZPHI ZR2 ZSPCOR ZTET
""".split())


#: Every accepted measure name: the Measure literal, then metafor's other measures.
_KNOWN_MEASURES = (*get_args(Measure), *sorted(METAFOR_MEASURES - set(get_args(Measure))))
_KNOWN_SET = frozenset(_KNOWN_MEASURES)


def check_measure(measure: object) -> Measure:
    """``measure`` if it names an outcome measure (the
    :data:`~alliance_meta._types.Measure` literal, or one of metafor's ``escalc``
    measures), or a clear error, with the spelling to use where only the case
    differs: ``"zcor"`` is not silently left without its back-transformation."""
    if isinstance(measure, str) and measure in _KNOWN_SET:
        return cast(Measure, measure)
    known = _KNOWN_MEASURES
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
    yi: FloatArray,
    vi: FloatArray,
    labels: Sequence[str] | None = None,
    *,
    allow_zero: bool = False,
) -> bool:
    """Check 1-D effect/variance vectors, naming the first offending study and field.

    Variances must be > 0, or >= 0 with ``allow_zero`` (the univariate models, where
    :func:`check_zero_variances` then checks the estimator).  Returns whether the
    data lie in the core's unit range (:func:`~alliance_meta.core.kernel.in_unit_range`,
    with every variance > 0), read off the extremes the check takes anyway: the
    kernel then need not scan them again.
    """
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

    # min and max propagate NaN and expose ±inf: valid input is settled by four
    # reductions, and only invalid input is scanned to name the offending study
    vlo, vhi = float(vi.min()), float(vi.max())
    ylo, yhi = float(yi.min()), float(yi.max())
    if math.isfinite(ylo + yhi + vlo + vhi) and (vlo >= 0.0 if allow_zero else vlo > 0.0):
        return vlo > 0.0 and in_unit_range(vlo, vhi, max(yhi, -ylo))

    def name(i: int) -> str:
        return labels[i] if labels is not None else f"#{i}"

    for field, arr in (("yi", yi), ("vi", vi)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidStudyError(
                f"value is {arr[i]!r} (must be finite)", study=name(i), field=field
            )
    bad = vi < 0 if allow_zero else vi <= 0
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidStudyError(
            f"sampling variance must be {'>=' if allow_zero else '>'} 0, got {vi[i]!r}",
            study=name(i), field="vi",
        )
    return False  # not reached: some value above was invalid


#: How many shared studies a DependentEffectsWarning names before summarising.
_SHOWN = 5


def warn_dependent(studies: Sequence[Study], stacklevel: int = 4) -> None:
    """Warn that a univariate model treats effects of one study as independent."""
    groups: dict[str, int] = {}
    for s in studies:
        groups[s.study_label] = groups.get(s.study_label, 0) + 1
    shared = [(st, c) for st, c in groups.items() if c > 1]
    if not shared:
        return
    names = ", ".join(f"{st!r} ({c} effects)" for st, c in shared[:_SHOWN])
    more = f" and {len(shared) - _SHOWN} more" if len(shared) > _SHOWN else ""
    warnings.warn(
        f"{len(shared)} {'study gives' if len(shared) == 1 else 'studies give'} several "
        f"effect sizes: {names}{more}. This model "
        "treats them as independent, which understates the standard errors; fit "
        "multilevel(studies, levels=('study', 'label')) or take robust(fit, "
        "cluster=studies.study_labels)",
        DependentEffectsWarning,
        stacklevel=stacklevel,
    )


def check_zero_variances(vi: FloatArray, labels: Sequence[str], method: str) -> None:
    """Refuse ``v_i = 0`` under an estimator whose weights ``1/v_i`` it makes infinite.

    A study with ``v_i = 0`` has the finite weight ``1/(v_i + τ²)`` when τ² > 0, so
    REML, ML, HE, SJ and EB accept it (metafor's ``rma(yi, vi = 0, ...)``, its
    "regression with rma" example); the equal-effects model and the estimators built
    on the weights ``1/v_i`` (DL, HS, HSk, PM, PMM) do not.
    """
    zero = vi == 0
    if zero.any() and method in ZERO_VI_METHODS:
        i = int(np.argmax(zero))
        what = (
            "the equal-effects model has no tau^2 to make the weight 1/vi finite"
            if method == "EE"
            else f"the {method} estimator needs the weights 1/vi (metafor refuses it too)"
        )
        raise InvalidStudyError(
            f"sampling variance is 0: {what}; with vi = 0 use method='REML', 'ML', 'HE', "
            "'SJ' or 'EB', whose weights 1/(vi + tau^2) are finite when tau^2 > 0",
            study=labels[i], field="vi",
        )


def is_frame(x: object) -> bool:
    """A pandas DataFrame, or an object with the DataFrame interchange protocol."""
    return pandas_instance(x, "DataFrame") or (
        hasattr(x, "__dataframe__") and not isinstance(x, (np.ndarray, Sequence))
    )


def as_frame(data: object) -> pd.DataFrame:
    """``data=`` as a pandas DataFrame: a DataFrame as it is, or any object with the
    DataFrame interchange protocol (polars, pyarrow, ...) converted by pandas."""
    import pandas as pd
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "__dataframe__"):
        with warnings.catch_warnings():  # pandas 3 deprecates the protocol it still reads
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            frame: pd.DataFrame = pd.api.interchange.from_dataframe(data)
        return frame
    raise ModelSpecificationError(
        "data must be a pandas DataFrame or an object with the DataFrame interchange "
        f"protocol (__dataframe__), not {type(data).__name__}"
    )


def _columns_list(frame: pd.DataFrame) -> str:
    return ", ".join(repr(str(c)) for c in frame.columns) or "none"


def frame_column(frame: pd.DataFrame, name: object, field: str) -> pd.Series[Any]:
    """The column ``name`` of ``data=``, or an error naming the field and the columns."""
    if not isinstance(name, str):
        raise ModelSpecificationError(
            f"with data=, {field} must be a column name (str), got {type(name).__name__}"
        )
    if name not in frame.columns:
        raise InvalidStudyError(
            f"the data have no column {name!r} (columns: {_columns_list(frame)})", field=field
        )
    col: pd.Series[Any] = frame[name]
    return col


def long_columns(
    data: object, yi: object, vi: object, groups: object
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
    """``(yi, vi, groups)`` of long-format ``data=``: columns named by the arguments
    (``yi`` and ``vi`` by default; ``groups`` must be given)."""
    frame = as_frame(data)
    if groups is None:
        raise ModelSpecificationError(
            f"with data=, give groups= (the column naming each row's analysis; columns: "
            f"{_columns_list(frame)})"
        )
    out = []
    for given, default, field in ((yi, "yi", "yi"), (vi, "vi", "vi"), (groups, None, "groups")):
        name = default if given is None else given
        if isinstance(name, str):
            out.append(frame_column(frame, name, field).to_numpy())
        else:
            arr = np.asarray(name)
            if arr.shape[:1] != (len(frame),):
                raise InvalidStudyError(
                    f"has shape {arr.shape} but the data have {len(frame)} rows", field=field
                )
            out.append(arr)
    return out[0], out[1], out[2]


@dataclass(frozen=True)
class ModelInput:
    """A model's validated input: effects, variances, labels and measure, and where
    moderators are looked up (the studies, or the data frame of ``data=``)."""

    yi: FloatArray
    vi: FloatArray
    labels: tuple[str, ...]
    measure: Measure
    studies: StudySet | None = None
    data: pd.DataFrame | None = None
    #: the data lie in the core's unit range (see :func:`validate_studies`)
    unit: bool = False


def _data_values(frame: pd.DataFrame, given: object, default: str, field: str) -> FloatArray:
    """``yi``/``vi`` with ``data=``: a column name (by default metafor's ``yi``/``vi``,
    the columns ``escalc`` writes) or the values themselves."""
    if given is None:
        if default not in frame.columns:
            raise ModelSpecificationError(
                f"with data=, give {field}= (the column of "
                f"{'effect sizes' if field == 'yi' else 'sampling variances'}); the data have "
                f"no column {default!r} (columns: {_columns_list(frame)})"
            )
        given = default
    if isinstance(given, str):
        col = frame_column(frame, given, field)
        na = col.isna().to_numpy()
        if na.any():
            raise InvalidStudyError(
                f"missing value in column {given!r} (nan_policy='omit' drops such studies, "
                "as metafor does)", study=f"Study {int(np.argmax(na)) + 1}", field=field,
            )
        out: FloatArray = as_float_array(col.to_numpy(), field).copy()
        return out
    arr: FloatArray = as_float_array(given, field).copy()
    if arr.ndim == 1 and arr.size != len(frame):
        raise InvalidStudyError(
            f"has {arr.size} values but the data have {len(frame)} rows", field=field
        )
    return arr


def _omit_missing(
    frame: pd.DataFrame, yi: object, vi: object, needed: Sequence[str]
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """metafor's ``na.action = "na.omit"``: the rows of ``data=`` without a missing
    value in the columns the model uses, with the labels of every row ("Study i",
    numbered as in the data), warning with the labels of those dropped."""
    from alliance_meta.exceptions import DataOmittedWarning

    labels = tuple(f"Study {i + 1}" for i in range(len(frame)))
    cols = [c for c in (yi if yi is not None else "yi", vi if vi is not None else "vi",
                        *needed) if isinstance(c, str) and c in frame.columns]
    missing = frame[list(dict.fromkeys(cols))].isna().any(axis=1).to_numpy()
    if not missing.any():
        return frame, labels
    dropped = [lab for lab, m in zip(labels, missing, strict=True) if m]
    warnings.warn(
        f"omitted {len(dropped)} of {len(frame)} studies with missing values: "
        + ", ".join(dropped) + " (metafor: 'Studies with NAs omitted from model fitting.')",
        DataOmittedWarning,
        stacklevel=4,
    )
    keep = ~missing
    return frame[keep], tuple(lab for lab, k in zip(labels, keep, strict=True) if k)


def split_source(studies: object, data: object) -> tuple[Any, pd.DataFrame | None]:
    """``(studies, frame)`` of a call: the ``data=`` frame (a data frame passed as
    ``studies`` is taken as ``data=``), or ``None`` and the studies as given."""
    if studies is not None and is_frame(studies):
        if data is not None:
            raise ModelSpecificationError(
                "a data frame was given twice (as studies and as data=); pass it once, as "
                "data=df"
            )
        data, studies = studies, None
    if data is None:
        return studies, None
    if studies is not None:
        raise ModelSpecificationError("give either studies or data=, not both")
    frame = as_frame(data)
    if len(frame) == 0:
        raise InvalidStudyError("the data have no rows (no studies)", field="data")
    return None, frame


def resolve_model_input(
    studies: object,
    yi: object,
    vi: object,
    measure: Measure,
    data: object = None,
    *,
    nan_policy: str = "raise",
    needed: Sequence[str] = (),
) -> ModelInput:
    """Effects, variances, labels and measure from studies, arrays or ``data=``.

    Exactly one source: ``studies`` (a :class:`StudySet` or sequence of
    :class:`Study`), ``yi``/``vi`` arrays, or ``data=`` (a data frame, or anything
    with the DataFrame interchange protocol) with ``yi``/``vi`` naming its columns
    (``"yi"`` and ``"vi"`` by default, the columns of metafor's ``escalc``).  A data
    frame passed where studies are expected is taken as ``data=``.  Variances may be
    0 (see :func:`check_zero_variances`); negative ones are refused.  With
    ``nan_policy="omit"``, rows of ``data`` with a missing value in ``yi``, ``vi``
    or the columns ``needed`` (the model's moderators) are dropped with a warning,
    as metafor's ``na.omit``; by default they raise, naming the study.
    """
    measure = check_measure(measure)
    if nan_policy not in ("raise", "omit"):
        raise ModelSpecificationError(
            f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}"
        )
    studies, given = split_source(studies, data)
    if given is not None:
        frame = given
        if nan_policy == "omit":
            if not (yi is None or isinstance(yi, str)) or not (vi is None or isinstance(vi, str)):
                raise ModelSpecificationError(
                    "nan_policy='omit' with data= needs yi and vi as column names"
                )
            frame, labels = _omit_missing(frame, yi, vi, needed)
            if len(frame) == 0:
                raise InvalidStudyError("every study has a missing value", field="data")
        else:
            labels = tuple(f"Study {i + 1}" for i in range(len(frame)))
        y = _data_values(frame, yi, "yi", "yi")
        v = _data_values(frame, vi, "vi", "vi")
        unit = validate_studies(y, v, labels, allow_zero=True)
        return ModelInput(y, v, labels, measure, None, frame, unit)
    if studies is not None:
        from alliance_meta.data.study import Study, StudySet

        if yi is not None or vi is not None:
            raise ModelSpecificationError("give either studies or yi/vi, not both")
        if isinstance(studies, (str, bytes)) or not isinstance(studies, (StudySet, Sequence)):
            raise ModelSpecificationError(
                f"studies must be a StudySet or a sequence of Study objects, not "
                f"{type(studies).__name__}; for a data frame pass data=df with yi= and vi= "
                "naming its columns, and for arrays yi= and vi="
            )
        study_list = list(studies)
        if not study_list:
            raise InvalidStudyError("no studies given (empty input)", field="studies")
        for s in study_list:
            if not isinstance(s, Study):
                raise ModelSpecificationError(
                    f"studies must be Study objects, got {type(s).__name__} ({s!r:.40}); "
                    "for a data frame pass data=df with yi= and vi= naming its columns, or "
                    "build a StudySet with StudySet.from_dataframe"
                )
        labels = tuple(str(s.label) for s in study_list)
        _check_unique(labels)  # as a StudySet does
        warn_dependent(study_list)
        y = np.array([s.effect.value for s in study_list], dtype=np.float64)
        v = np.array([s.effect.variance for s in study_list], dtype=np.float64)
        measures: set[Measure] = {s.effect.measure for s in study_list}
        if measure == "GEN" and len(measures) == 1:
            measure = measures.pop()
        elif len(measures) > 1:
            raise ModelSpecificationError(
                f"studies mix effect-size measures {sorted(measures)}; pool one measure at a time"
            )
        unit = validate_studies(y, v, labels, allow_zero=True)
        sset = studies if isinstance(studies, StudySet) else StudySet(tuple(study_list))
        return ModelInput(y, v, labels, measure, sset, None, unit)
    if yi is None or vi is None:
        raise ModelSpecificationError(
            "give studies, yi and vi arrays, or data= with yi= and vi= naming its columns"
        )
    if isinstance(yi, str) or isinstance(vi, str):
        raise ModelSpecificationError(
            "yi and vi name columns only with data=: pass data=df as well"
        )
    # copies: the result keeps them, and must not change if the caller's arrays do
    y = as_float_array(yi, "yi").copy()
    v = as_float_array(vi, "vi").copy()
    labels = default_labels(y.size)
    unit = validate_studies(y, v, labels, allow_zero=True)
    return ModelInput(y, v, labels, measure, None, None, unit)


@functools.lru_cache(maxsize=256)
def default_labels(k: int) -> tuple[str, ...]:
    """``("Study 1", ..., "Study k")``, metafor's labels of unnamed studies (cached)."""
    return tuple(f"Study {i + 1}" for i in range(k))


def resolve_input(
    studies: StudySet | Sequence[Study] | None,
    yi: npt.ArrayLike | None,
    vi: npt.ArrayLike | None,
    measure: Measure,
    data: object = None,
) -> tuple[FloatArray, FloatArray, tuple[str, ...], Measure]:
    """``(yi, vi, labels, measure)`` from studies, arrays or ``data=``, validated
    (see :func:`resolve_model_input`)."""
    mi = resolve_model_input(studies, yi, vi, measure, data)
    return mi.yi, mi.vi, mi.labels, mi.measure
