"""``escalc``: effect sizes and sampling variances of many studies, as metafor's.

One vectorised entry point for every measure of the registry
(:mod:`alliance_meta.data.measures`), with metafor's argument names and options, and
the artefact corrections and sign alignment that psychotherapy syntheses need.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.iolib.summary import Summary

from alliance_meta._types import Measure
from alliance_meta.data import measures as M
from alliance_meta.data.effect_sizes.artefacts import correct_r
from alliance_meta.exceptions import (
    AllianceMetaError,
    DataOmittedWarning,
    InvalidStudyError,
)
from alliance_meta.results.base import freeze_arrays, readonly
from alliance_meta.results.display import ResultDisplay
from alliance_meta.results.summary import frame_summary

__all__ = ["EscalcResult", "escalc"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]

#: What to do with a row that misses a needed value: raise an error naming the row
#: and the field, omit the row (with a warning), or give it NaN yi and vi (metafor's NA).
NanPolicy = Literal["raise", "omit", "propagate"]

_Input = npt.ArrayLike | str


def _labels_tuple(x: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if x is None else tuple(str(v) for v in x)


@attrs.frozen(field_transformer=freeze_arrays, repr=False)
class EscalcResult(ResultDisplay):
    """Effect sizes computed by :func:`escalc`.

    Attributes
    ----------
    measure : str
        The measure (metafor's name).
    yi, vi : ndarray of float64
        Effect sizes and sampling variances, one per kept row (NaN where
        ``drop00`` set a table aside or a value is missing under
        ``nan_policy="propagate"``).
    rows : ndarray of int
        The input row of each result row (all rows unless ``nan_policy="omit"``).
    labels : tuple of str or None
        Study labels (``slab``), or None: then :attr:`study_labels` are ``"1"``,
        ``"2"``, ... by input row (R's default).
    ni : ndarray of float64
        metafor's total sample size of each study (person-time for the incidence
        rate measures); used by ``to_studyset`` and the PFT/IRFT back-transforms.
    corrected : ndarray of bool
        Rows whose counts got ``add``.
    flipped : ndarray of bool
        Rows whose sign was reversed by ``flip``/``direction``.
    omitted : ndarray of int
        Input rows left out under ``nan_policy="omit"``.
    artefacts : tuple of str
        The artefact corrections applied (``"rxx"``, ``"ryy"``, ``"ux"``).
    options : EscalcOptions
        ``add``, ``to``, ``drop00``, ``vtype``.
    """

    _repr_fields = ("measure", "k")


    measure: str
    yi: FloatArray
    vi: FloatArray
    rows: IntArray
    labels: tuple[str, ...] | None = attrs.field(converter=_labels_tuple)
    ni: FloatArray
    corrected: BoolArray
    flipped: BoolArray
    omitted: IntArray
    artefacts: tuple[str, ...]
    options: M.EscalcOptions
    _data: pd.DataFrame | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def k(self) -> int:
        """Number of result rows."""
        return int(self.yi.size)

    @property
    def study_labels(self) -> tuple[str, ...]:
        """The labels of the result rows: ``slab``, or the input row numbers from 1."""
        if self.labels is not None:
            return self.labels
        return tuple(str(i + 1) for i in self.rows.tolist())

    @property
    def sei(self) -> FloatArray:
        """Standard errors, ``sqrt(vi)``."""
        out: FloatArray = readonly(np.sqrt(self.vi))
        return out

    @property
    def spec(self) -> M.MeasureSpec:
        """The registry entry of the measure."""
        return M.get(self.measure)

    def to_frame(self) -> pd.DataFrame:
        """One row per study: ``yi, vi, sei, ni, corrected, flipped``, indexed by label."""
        frame: pd.DataFrame = pd.DataFrame(
            {
                "yi": np.array(self.yi),
                "vi": np.array(self.vi),
                "sei": self.sei,
                "ni": np.array(self.ni),
                "corrected": np.array(self.corrected),
                "flipped": np.array(self.flipped),
            },
            index=pd.Index(list(self.study_labels), name="label"),
        )
        return frame

    def to_studyset(
        self,
        labels: Sequence[str] | str | None = None,
        moderators: Mapping[str, npt.ArrayLike] | Sequence[str] | str | None = None,
    ) -> Any:
        """A :class:`~alliance_meta.StudySet` of these effects.

        Parameters
        ----------
        labels : sequence of str or str, optional
            Study labels, or a column of the ``data`` given to :func:`escalc`
            (default: :attr:`labels`).
        moderators : mapping or sequence of str, optional
            Moderator values by name (one per input row, or per result row), or
            columns of the ``data`` given to :func:`escalc`.

        Rows without an effect (``drop00``, or missing under
        ``nan_policy="propagate"``) are left out with a
        :class:`~alliance_meta.exceptions.DataOmittedWarning`.
        """
        from alliance_meta.data.study import StudySet

        keep = np.isfinite(self.yi) & np.isfinite(self.vi)
        labs = (
            self._row_values(labels, "labels") if labels is not None else list(self.study_labels)
        )
        mods: dict[str, Any] = {}
        if moderators is not None:
            if isinstance(moderators, str):
                moderators = [moderators]
            if isinstance(moderators, Mapping):
                items = list(moderators.items())
            else:
                items = [(str(name), name) for name in moderators]
            for name, values in items:
                mods[name] = self._row_values(values, name)
        if not np.all(keep):
            gone = [str(lab) for lab, kp in zip(labs, keep.tolist(), strict=True) if not kp]
            warnings.warn(
                f"omitted {len(gone)} of {len(labs)} studies without an effect size: "
                + ", ".join(repr(x) for x in gone),
                DataOmittedWarning,
                stacklevel=2,
            )
        idx = np.flatnonzero(keep)
        n = np.asarray(self.ni)[idx] if self.ni.size else None
        return StudySet.from_arrays(
            np.asarray(self.yi)[idx],
            np.asarray(self.vi)[idx],
            labels=[str(labs[i]) for i in idx],
            measure=self.measure,  # type: ignore[arg-type]
            moderators={name: [vals[i] for i in idx] for name, vals in mods.items()},
            n=n,
        )

    def _row_values(self, values: npt.ArrayLike | str, name: str) -> list[Any]:
        """Values per result row from a column of the data or a sequence of input
        or result length."""
        if isinstance(values, str):
            if self._data is None or values not in self._data.columns:
                raise InvalidStudyError(f"no column {values!r} in the data", field=name)
            column = self._data[values].tolist()
            return [column[i] for i in self.rows.tolist()]
        seq = list(np.asarray(values, dtype=object).tolist())
        n_input = int(self.rows.size + self.omitted.size)
        if len(seq) == n_input and n_input != self.k:
            return [seq[i] for i in self.rows.tolist()]
        if len(seq) != self.k:
            raise InvalidStudyError(
                f"{len(seq)} values for {self.k} studies ({n_input} input rows)", field=name
            )
        return seq

    def summary(self) -> Summary:
        """statsmodels Summary: the options, then one row per study."""
        info = [
            ("Measure:", self.measure),
            ("Studies:", str(self.k)),
            ("add / to:", f"{self.options.add_for(self.spec)} / {self.options.to}"),
            ("vtype:", str(self.options.vtype)),
            ("Flipped:", str(int(np.sum(self.flipped)))),
            ("Corrections:", ", ".join(self.artefacts) or "none"),
        ]
        notes = []
        if self.omitted.size:
            notes.append(f"{self.omitted.size} rows omitted (missing values).")
        if np.any(self.flipped):
            flipped = [
                lab for lab, f in zip(self.study_labels, self.flipped.tolist(), strict=True) if f
            ]
            notes.append("Sign reversed (flip): " + ", ".join(flipped))
        return frame_summary(
            f"Effect sizes ({self.spec.description})", info, self.to_frame(), notes
        )

    def __str__(self) -> str:
        return str(self.summary())

    def __len__(self) -> int:
        return self.k


def _column(data: pd.DataFrame | None, value: _Input, field: str) -> npt.ArrayLike:
    if isinstance(value, str):
        if data is None:
            raise AllianceMetaError(
                f"{field}={value!r} names a column, but no data was given (data=...)"
            )
        if value not in data.columns:
            raise InvalidStudyError(f"no column {value!r} in the data", field=field)
        col = data[value]
        num = pd.to_numeric(col, errors="coerce")
        bad = col.notna().to_numpy() & num.isna().to_numpy()
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise InvalidStudyError(
                f"value {col.iloc[i]!r} is not numeric", study=f"row {i}", field=field
            )
        return np.asarray(num.to_numpy(dtype=np.float64, na_value=np.nan))
    if isinstance(value, pd.Series):
        return np.asarray(pd.to_numeric(value, errors="raise").to_numpy(dtype=np.float64))
    return value


def escalc(
    measure: Measure | str,
    *,
    data: pd.DataFrame | Mapping[str, Any] | None = None,
    add: float | None = None,
    to: M.AddTo = "only0",
    drop00: bool = False,
    vtype: str | Sequence[str] = "LS",
    nan_policy: NanPolicy = "raise",
    slab: Sequence[str] | str | None = None,
    flip: npt.ArrayLike | str | None = None,
    direction: npt.ArrayLike | str | None = None,
    rxx: npt.ArrayLike | str | None = None,
    ryy: npt.ArrayLike | str | None = None,
    ux: npt.ArrayLike | str | None = None,
    rxx_restricted: bool = True,
    **inputs: _Input,
) -> EscalcResult:
    """Effect sizes and sampling variances, as metafor 3.8.1's ``escalc``.

    Parameters
    ----------
    measure : str
        One of metafor's measures (``"SMD"``, ``"ZCOR"``, ``"OR"``, ``"PLO"``, ...;
        see the effect sizes page of the docs for all of them and their inputs).
    data : pandas.DataFrame or mapping, optional
        Where the inputs given as column names are looked up.
    add, to, drop00 : optional
        metafor's zero-cell handling: ``add`` (default 1/2, and 0 for AS, PHI,
        RTET, IRSD, PAS, PFT, IRS, IRFT) is added to the counts of the studies
        ``to`` names (``"only0"``: those with a zero count; ``"all"``; ``"if0all"``:
        all if any has one; ``"none"``); ``drop00`` sets aside tables without
        events (or non-events) in both groups.
    vtype : str or sequence of str
        The sampling variance estimator (``"LS"``, ``"UB"``, ``"LS2"``, ``"HO"``,
        ``"ST"``, ``"CS"``, ``"AV"``, ``"AVHO"``, as the measure allows), one or one
        per row.
    nan_policy : {"raise", "omit", "propagate"}
        A row missing a needed value raises an error naming the row and the
        field, is omitted (with a warning; :attr:`EscalcResult.omitted`), or gets
        NaN yi and vi.
    slab : sequence of str or str, optional
        Study labels (or a column name), used in errors and the result.
    flip, direction : array_like or str, optional
        Sign alignment: ``flip`` is a boolean per study (True reverses the sign:
        yi → -yi) or, as metafor's ``flip``, a numeric multiplier (yi·f, vi·f²);
        ``direction`` is +1 or -1 per study.  For scales scored in opposite
        directions.  The result records which studies were flipped.
    rxx, ryy, ux : array_like or str, optional
        Artefact corrections of the correlation measures (COR, UCOR, ZCOR, PCOR,
        ZPCOR, SPCOR, RPB, RBIS): reliabilities of x and y and the ratio of the
        restricted to the unrestricted SD of x (direct range restriction), as
        Hunter & Schmidt (2015) and psychmeta; see :func:`correct_r`.
    rxx_restricted : bool
        Whether ``rxx`` is the reliability in the (range-restricted) study sample.
    **inputs : array_like or str
        metafor's arguments (``ai bi ci di n1i n2i x1i x2i t1i t2i m1i m2i sd1i
        sd2i xi mi ri ti fi pi sdi r2i ni yi vi sei``), each an array (scalars
        broadcast) or a column name of ``data``.  Arguments the measure does not
        use are ignored, as in metafor.

    Returns
    -------
    EscalcResult

    Raises
    ------
    InvalidStudyError
        For invalid input (a proportion outside [0, 1], counts above n, negative
        times, alpha >= 1, ``|r| > 1``, a t without its df, mi >= ni - 1 for a
        partial correlation, ...), naming the row and the field.

    Notes
    -----
    Every formula, its variance and its source are listed on the effect sizes page
    of the documentation; they are metafor 3.8.1's ``escalc`` (Viechtbauer, 2010),
    with its defaults.

    Examples
    --------
    >>> import alliance_meta as am
    >>> res = am.escalc("ZCOR", ri=[0.3, 0.5], ni=[103, 50])
    >>> [round(v, 6) for v in res.yi], [round(v, 6) for v in res.vi]
    ([0.30952, 0.549306], [0.01, 0.021277])
    """
    spec = M.get(measure)
    if nan_policy not in ("raise", "omit", "propagate"):
        raise AllianceMetaError(
            f"nan_policy must be 'raise', 'omit' or 'propagate', got {nan_policy!r}"
        )
    frame: pd.DataFrame | None
    if data is None:
        frame = None
    elif isinstance(data, pd.DataFrame):
        frame = data
    else:
        frame = pd.DataFrame(dict(data))
    unknown = sorted(set(inputs) - set(spec.arguments) - set(M.ARGUMENTS))
    if unknown:
        raise AllianceMetaError(
            f"{', '.join(repr(u) for u in unknown)} is not an argument of metafor's escalc; "
            f"measure {spec.name!r} takes {', '.join(spec.arguments)}"
        )
    # metafor's other arguments are ignored by a measure that does not use them
    arrays = M.as_inputs(
        {name: _column(frame, value, name) for name, value in inputs.items()
         if name in spec.arguments}
    )
    k = next((int(a.shape[0]) for a in arrays.values()), 0)
    if frame is not None and k == 1 and len(frame) > 1:
        arrays = {name: np.repeat(a, len(frame)) for name, a in arrays.items()}
        k = len(frame)
    # errors name a row by its label when labels were given, else by its 0-based
    # position ("row 3", as the data frame's iloc)
    where = None if slab is None else _labels(slab, frame, k)
    options = M.EscalcOptions(
        add=add, to=to, drop00=drop00, vtype=vtype if isinstance(vtype, str) else tuple(vtype)
    )

    # artefact corrections: their missing values follow nan_policy like the inputs
    artefacts: dict[str, FloatArray] = {}
    for name, value in (("rxx", rxx), ("ryy", ryy), ("ux", ux)):
        if value is not None:
            if spec.correction is None:
                raise AllianceMetaError(
                    f"{name} corrects correlations; measure {spec.name!r} is not one "
                    "(COR, UCOR, ZCOR, PCOR, ZPCOR, SPCOR, RPB, RBIS are)"
                )
            artefacts[name] = np.broadcast_to(
                np.asarray(_column(frame, value, name), dtype=np.float64), (k,)
            ).copy()
    pre = np.arange(k)
    art_missing = np.zeros(k, dtype=np.bool_)
    for arr in artefacts.values():
        art_missing |= ~np.isfinite(arr)
    if np.any(art_missing):
        miss = [M.Problem(n, "missing value", ~np.isfinite(a)) for n, a in artefacts.items()]
        if nan_policy == "raise":
            M.raise_problems(miss, where)
        if nan_policy == "omit":
            pre = np.flatnonzero(~art_missing)
            arrays = {n: np.broadcast_to(a, (k,))[pre] for n, a in arrays.items()}
            if not isinstance(options.vtype, str):
                options = attrs_evolve_vtype(options, pre)
    ev = M.evaluate(
        spec,
        arrays,
        options,
        labels=_take(where, pre, k),
        nan_policy=nan_policy,
    )
    rows = pre[ev.kept]
    yi, vi = np.array(ev.computed.yi), np.array(ev.computed.vi)
    if artefacts:
        yi, vi = _correct(spec, yi, vi, {n: a[rows] for n, a in artefacts.items()},
                          rxx_restricted, _take(where, rows, k))
    flipped = np.zeros(rows.size, dtype=np.bool_)
    if flip is not None or direction is not None:
        yi, vi, flipped = _flip(spec, yi, vi, frame, flip, direction, k, rows,
                                _take(where, rows, k))
    kept_mask = np.zeros(k, dtype=np.bool_)
    kept_mask[rows] = True
    omitted = np.flatnonzero(~kept_mask)
    if omitted.size:
        names = [f"row {i}" if where is None else where[i] for i in omitted.tolist()]
        warnings.warn(
            f"omitted {omitted.size} of {k} rows with missing values: "
            + ", ".join(repr(x) for x in names),
            DataOmittedWarning,
            stacklevel=2,
        )
    ni = ev.computed.ni if ev.computed.ni is not None else np.full(rows.size, np.nan)
    corrected = ev.computed.corrected
    assert corrected is not None
    return EscalcResult(
        measure=spec.name,
        yi=yi,
        vi=vi,
        rows=rows,
        labels=_take(where, rows, k),
        ni=np.asarray(ni, dtype=np.float64),
        corrected=corrected,
        flipped=flipped,
        omitted=omitted,
        artefacts=tuple(artefacts),
        options=options,
        data=frame,
    )


def attrs_evolve_vtype(options: M.EscalcOptions, rows: IntArray) -> M.EscalcOptions:
    """``options`` with a per-row vtype restricted to ``rows``."""
    assert not isinstance(options.vtype, str)
    return M.EscalcOptions(
        options.add, options.to, options.drop00, tuple(options.vtype[int(i)] for i in rows)
    )


def _take(labels: list[str] | None, rows: IntArray, k: int) -> list[str] | None:
    """``labels`` of ``rows`` (None stays None: rows are then named by position)."""
    if labels is None:
        return None
    if rows.size == k:
        return labels
    return [labels[i] for i in rows.tolist()]


def _labels(slab: Sequence[str] | str, frame: pd.DataFrame | None, k: int) -> list[str]:
    if isinstance(slab, str):
        if frame is None or slab not in frame.columns:
            raise InvalidStudyError(f"no column {slab!r} in the data", field="slab")
        values = frame[slab].tolist()
    else:
        values = list(slab)
    if len(values) != k:
        raise InvalidStudyError(f"{len(values)} labels for {k} rows", field="slab")
    return [str(v) for v in values]


def _correct(
    spec: M.MeasureSpec,
    yi: FloatArray,
    vi: FloatArray,
    artefacts: Mapping[str, FloatArray],
    rxx_restricted: bool,
    labels: Sequence[str] | None,
) -> tuple[FloatArray, FloatArray]:
    """Apply :func:`correct_r` on the measure's scale (r, or Fisher's z of r)."""
    problems = []
    for name in ("rxx", "ryy"):
        if name in artefacts:
            a = artefacts[name]
            problems.append(
                M.Problem(name, "a reliability must lie in (0, 1]",
                          np.isfinite(a) & ~((a > 0) & (a <= 1)))
            )
    if "ux" in artefacts:
        u = artefacts["ux"]
        problems.append(
            M.Problem("ux", "the SD ratio ux must be > 0", np.isfinite(u) & ~(u > 0))
        )
    M.raise_problems(problems, labels)
    r = np.tanh(yi) if spec.correction == "z" else yi
    rc, factor = correct_r(
        r, artefacts.get("rxx"), artefacts.get("ryy"), artefacts.get("ux"),
        rxx_restricted=rxx_restricted,
    )
    M.raise_problems(
        [M.Problem("ri", "the corrected correlation is not in (-1, 1): check the artefact "
                   "values", np.isfinite(rc) & ~(np.abs(rc) < 1))],
        labels,
    )
    if spec.correction == "z":
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = factor * (1.0 - r**2) / (1.0 - rc**2)
        return np.arctanh(rc), vi * factor**2
    return rc, vi * factor**2


def _flip(
    spec: M.MeasureSpec,
    yi: FloatArray,
    vi: FloatArray,
    frame: pd.DataFrame | None,
    flip: npt.ArrayLike | str | None,
    direction: npt.ArrayLike | str | None,
    k: int,
    rows: IntArray,
    labels: Sequence[str] | None,
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """metafor's ``flip``: yi·f and vi·f² per study (a logical flip is f = -1)."""
    if flip is not None and direction is not None:
        raise AllianceMetaError("give flip or direction, not both")
    name = "flip" if flip is not None else "direction"
    value = flip if flip is not None else direction
    if isinstance(value, str):
        if frame is None or value not in frame.columns:
            raise InvalidStudyError(f"no column {value!r} in the data", field=name)
        raw = frame[value].to_numpy()
    else:
        raw = np.asarray(value)
    raw = np.broadcast_to(raw, (k,))[rows]
    if raw.dtype == np.bool_ or (raw.dtype == object and all(
        isinstance(v, bool | np.bool_) or v is None for v in raw.tolist()
    )):
        if name == "direction":
            raise InvalidStudyError("direction must be +1 or -1 per study", field=name)
        # metafor: flip %in% TRUE, so a missing flip is no flip
        is_true = np.asarray([v is True for v in raw.tolist()], dtype=np.bool_)
        mult = np.where(is_true, -1.0, 1.0)
    else:
        mult = np.asarray(raw, dtype=np.float64)
        M.raise_problems(
            [M.Problem(name, f"{name} must be a finite non-zero multiplier (+1 or -1 "
                       "to align signs)", ~np.isfinite(mult) | (mult == 0))],
            labels,
        )
        if name == "direction":
            M.raise_problems(
                [M.Problem(name, "direction must be +1 or -1", ~np.isin(mult, (-1.0, 1.0)))],
                labels,
            )
    flipped = mult < 0
    if np.any(flipped) and not spec.symmetric:
        raise InvalidStudyError(
            f"reversing the sign of {spec.name} ({spec.description}) has no meaning; "
            "flip applies to differences, log ratios and correlations",
            field=name,
        )
    return yi * mult, vi * mult**2, flipped
