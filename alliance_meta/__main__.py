"""Command-line entry point: ``python -m alliance_meta demo`` and ``... analyze FILE.csv``.

``demo`` runs the whole pipeline on the bundled example, which is SIMULATED for
illustration (not published data): effect sizes (r → Fisher's z), random-effects
pooling, heterogeneity with Q-profile intervals, the subgroup test by rater, Egger's
regression test and a forest plot; then, on the companion example with four effects
per study, the naive pooling beside the three-level model and the CHE + CR2 robust
analysis.  ``analyze`` does the same for a CSV file of any
measure of the measure registry: it finds conventionally named columns (``r``,
``n``, ``yi``, ``vi``, ``m1``/``sd1``/``n1``, ``ai``/``bi``/``ci``/``di``, ...) by
itself, and adds a subgroup analysis (``--by``) and a meta-regression
(``--moderators``).  Both print a report that ends with the pooled estimate and
its CI, and can write the results as JSON (``--json``) and CSV (``--csv``).

Errors in the user's data are printed as one line naming the study and the field,
with exit status 2 (no traceback).  Warnings are printed as one line each and
follow Python's warning filters: ``python -W error -m alliance_meta ...`` turns
them into errors (exit status 2).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO, cast, get_args

import numpy as np
import pandas as pd

from alliance_meta import __version__
from alliance_meta._types import Measure, Test
from alliance_meta.core.estimators import ESTIMATORS
from alliance_meta.data import measures
from alliance_meta.data.study import StudySet
from alliance_meta.datasets import (
    ALLIANCE_DEPENDENT_RHO,
    ALLIANCE_EXAMPLE_SEED,
    load_alliance_dependent,
    load_alliance_example,
)
from alliance_meta.diagnostics.bias import EggerTest, egger_test
from alliance_meta.exceptions import AllianceMetaError, DependentEffectsWarning
from alliance_meta.models.che import che
from alliance_meta.models.metareg import MetaRegressionResult, meta_regression
from alliance_meta.models.multilevel import multilevel
from alliance_meta.models.pooling import PoolResult, random_effects
from alliance_meta.models.subgroup import SubgroupResult, subgroup_analysis

__all__ = ["main"]

_METHODS = tuple(ESTIMATORS)  # the τ² estimator registry
_DEFAULT_PNG = "alliance_forest.png"
_RULE = "=" * 78

#: metafor's ``escalc`` data arguments, each with the column names the CLI looks
#: for when it is not given (compared without regard to case), in that order.
_CONVENTIONAL: dict[str, tuple[str, ...]] = {
    "ri": ("ri", "r", "cor", "correlation"),
    "ni": ("ni", "n", "total"),
    "m1i": ("m1i", "m1", "mean1"),
    "sd1i": ("sd1i", "sd1"),
    "n1i": ("n1i", "n1"),
    "m2i": ("m2i", "m2", "mean2"),
    "sd2i": ("sd2i", "sd2"),
    "n2i": ("n2i", "n2"),
    "ai": ("ai", "a"),
    "bi": ("bi", "b"),
    "ci": ("ci", "c"),
    "di": ("di", "d"),
    "x1i": ("x1i", "x1"),
    "x2i": ("x2i", "x2"),
    "t1i": ("t1i", "t1"),
    "t2i": ("t2i", "t2"),
    "xi": ("xi", "x"),
    "mi": ("mi", "m"),
    "ti": ("ti", "t"),
    "fi": ("fi", "f"),
    "pi": ("pi", "p"),
    "sdi": ("sdi", "sd"),
    "r2i": ("r2i", "r2"),
    "yi": ("yi", "y", "es", "effect"),
    "vi": ("vi", "v", "var", "variance"),
    "sei": ("sei", "se"),
}

#: The inputs of the measures the data model knows, for when the measure registry
#: is empty (its family modules not installed): metafor's argument names.
_BUILTIN_INPUTS: dict[str, tuple[str, ...]] = {
    **{m: ("ri", "ni") for m in ("ZCOR", "COR", "UCOR")},
    **{m: ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i") for m in ("SMD", "MD", "SMDH", "ROM")},
    **{m: ("ai", "bi", "ci", "di") for m in ("OR", "RR", "RD")},
    "GEN": ("yi", "vi"),
}

#: The measure ``analyze`` computes when none is given: the first whose columns are
#: all in the file.
_DEFAULT_MEASURES = ("ZCOR", "SMD", "OR", "GEN")

#: Names of ``StudySet.from_dataframe``'s column arguments that differ from metafor's.
_DATA_MODEL_NAMES = {
    "ri": "r", "ni": "n", "m1i": "m1", "sd1i": "sd1", "n1i": "n1", "m2i": "m2",
    "sd2i": "sd2", "n2i": "n2", "ai": "a", "bi": "b", "ci": "c", "di": "d", "sei": "se",
}  # fmt: skip

#: Conventional names of a column of study labels.
_LABEL_COLUMNS = ("study", "label", "studlab", "slab", "author", "authors", "name", "id")


class _UsageError(Exception):
    """A problem with the user's input that ends the run with exit status 2."""


# ---------------------------------------------------------------------------
# the measure registry
# ---------------------------------------------------------------------------


def _measure_names() -> tuple[str, ...]:
    """Every measure ``analyze`` accepts: the registry's, else the data model's."""
    names = measures.names()
    return names if names else tuple(get_args(Measure))


def _measure_inputs(name: str) -> tuple[str, ...]:
    """The metafor arguments measure ``name`` is computed from."""
    if name in measures.names():
        return tuple(measures.get(name).inputs)
    if name in _BUILTIN_INPUTS:
        return _BUILTIN_INPUTS[name]
    raise _UsageError(
        f"unknown measure {name!r}; expected one of {', '.join(_measure_names())}"
    )


def _canonical_measure(name: str) -> str:
    known = _measure_names()
    if name in known:
        return name
    close = [m for m in known if m.lower() == name.lower()]
    if close:
        return close[0]  # metafor's names differ only in case from no other name
    raise _UsageError(f"unknown measure {name!r}; expected one of {', '.join(known)}")


# ---------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alliance_meta",
        description=(
            "Random-effects meta-analysis reproducing R's metafor. 'demo' analyses the "
            "bundled SIMULATED example; 'analyze' a CSV file of any effect-size measure."
        ),
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"alliance_meta {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,analyze}")

    def add_common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--method", default="REML", choices=_METHODS,
            help="tau^2 estimator, as in metafor's rma (default: REML)",
        )  # fmt: skip
        p.add_argument(
            "--test", default="z", choices=get_args(Test),
            help="test and CIs of the estimates, as in metafor's rma: z (normal), t "
                 "(t on k - p df), knha (Knapp-Hartung), adhoc (Knapp-Hartung, never "
                 "narrower than z) (default: z)",
        )  # fmt: skip
        p.add_argument(
            "--level", type=float, default=0.95, help="confidence level (default: 0.95)"
        )
        p.add_argument(
            "--out", default=_DEFAULT_PNG, metavar="IMAGE",
            help=f"where to write the forest plot: a file (its extension gives the format: "
                 f"png, pdf, svg, ...) or a directory (default: ./{_DEFAULT_PNG})",
        )  # fmt: skip
        p.add_argument("--no-plot", action="store_true", help="do not draw any plot")
        p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
        p.add_argument(
            "--csv", metavar="FILE",
            help="also write the estimates (pooled, subgroups, coefficients) as CSV",
        )  # fmt: skip

    demo = sub.add_parser(
        "demo",
        help="run the whole pipeline on the bundled SIMULATED alliance example",
        description=(
            "Run the whole pipeline on the bundled alliance example: 12 studies "
            f"SIMULATED for illustration (seed {ALLIANCE_EXAMPLE_SEED}), not published data; "
            "then its companion with four effects per study, pooled naively beside the "
            "three-level model and CHE + CR2 (the sampling correlation and the method of "
            "that section are fixed: rho = 0.5, REML)."
        ),
        allow_abbrev=False,
    )
    add_common(demo)

    analyze = sub.add_parser(
        "analyze",
        help="analyse the effect sizes of a CSV file",
        description=(
            "Pool the studies of a CSV file (one row per study). The effect size is "
            "computed as metafor's escalc does for --measure (by default the first of "
            f"{', '.join(_DEFAULT_MEASURES)} whose columns the file has). Columns with "
            "conventional names (r, n, yi, vi, m1, sd1, n1, ai, bi, ...; metafor's names "
            "with or without the trailing i) are found by themselves; give others with "
            "the options below."
        ),
        allow_abbrev=False,
    )
    analyze.add_argument("file", metavar="FILE.csv", help="CSV file, one row per study")
    analyze.add_argument(
        "--measure", metavar="NAME",
        help="effect-size measure, as metafor's escalc names it (ZCOR, SMD, OR, GEN, ...)",
    )  # fmt: skip
    analyze.add_argument("--label", metavar="COL", help="column of study labels")
    analyze.add_argument(
        "--unique-labels", action="store_true",
        help="number repeated study labels as metafor does ('Smith (1990).1', 'Smith "
             "(1990).2') instead of stopping; for different studies that share a label",
    )  # fmt: skip
    analyze.add_argument("--by", metavar="COL", help="categorical moderator for a subgroup test")
    analyze.add_argument(
        "--moderators", metavar="SPEC",
        help='moderators of a meta-regression: an R formula ("~ x1 * x2") or column '
             "names separated by commas",
    )  # fmt: skip
    cols = analyze.add_argument_group(
        "input columns", "the column holding each of metafor's escalc arguments"
    )
    for arg in _CONVENTIONAL:
        flags = [f"--{arg}"]
        short = arg[:-1]
        if arg.endswith("i") and len(short) > 1 and short not in ("p", "f", "m", "t", "x"):
            flags.append(f"--{short}")
        elif arg in ("ri", "ni"):
            flags.append(f"--{short}")
        cols.add_argument(*flags, dest=f"col_{arg}", metavar="COL",
                          help=f"column of {arg} (else: {', '.join(_CONVENTIONAL[arg])})")
    add_common(analyze)
    return parser


# ---------------------------------------------------------------------------
# reading the data
# ---------------------------------------------------------------------------


def _find_column(columns: Sequence[str], arg: str) -> str | None:
    lower = {c.lower(): c for c in reversed(columns)}
    for cand in _CONVENTIONAL.get(arg, (arg,)):
        if cand.lower() in lower:
            return lower[cand.lower()]
    return None


def _columns_for(
    name: str, inputs: Sequence[str], columns: Sequence[str], given: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Columns of the inputs of measure ``name``: given ones, else conventional ones;
    and the inputs without a column."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for arg in inputs:
        col = given.get(arg) or _find_column(columns, arg)
        if col is None and arg == "vi" and name == "GEN":  # a standard error will do
            col = given.get("sei") or _find_column(columns, "sei")
            if col is not None:
                found["sei"] = col
                continue
        if col is None:
            missing.append(arg)
        else:
            found[arg] = col
    return found, missing


def _choose_measure(
    requested: str | None, columns: Sequence[str], given: Mapping[str, str], file: str
) -> tuple[str, dict[str, str]]:
    file_cols = ", ".join(columns)
    if requested is not None:
        name = _canonical_measure(requested)
        inputs = _measure_inputs(name)
        found, missing = _columns_for(name, inputs, columns, given)
        if missing:
            looked = "; ".join(
                f"{arg} (looked for {', '.join(_CONVENTIONAL.get(arg, (arg,)))}; give "
                f"--{arg} COLUMN)"
                for arg in missing
            )
            have = ", ".join(f"{a} = {c!r}" for a, c in found.items()) or "none"
            raise _UsageError(
                f"measure {name} needs columns for {', '.join(inputs)}; found {have}; no "
                f"column for {looked}. The columns of {file} are: {file_cols}"
            )
        return name, found
    known = _measure_names()
    for name in _DEFAULT_MEASURES:
        if name not in known:
            continue
        inputs = _measure_inputs(name)
        if given and not set(given) <= {*inputs, "ni", "sei"}:
            continue
        found, missing = _columns_for(name, inputs, columns, given)
        if not missing:
            return name, found
    raise _UsageError(
        f"cannot tell which effect size to compute from the columns of {file} "
        f"({file_cols}): give --measure (one of {', '.join(known)}) and the columns it "
        "needs, e.g. --measure ZCOR --ri COLUMN --ni COLUMN"
    )


def _moderator_columns(spec: str, columns: Sequence[str]) -> list[str]:
    """The columns a moderator spec names: every column whose name appears in a
    formula as a variable, or the comma-separated names."""
    if spec.lstrip().startswith("~"):
        return [
            c for c in columns
            if re.search(rf"(?<![\w.]){re.escape(c)}(?![\w.])", spec) is not None
        ]  # fmt: skip
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in columns]
    if unknown:
        raise _UsageError(
            f"--moderators names {', '.join(map(repr, unknown))}, not columns of the file "
            f"({', '.join(columns)})"
        )
    return names


def _moderators_arg(spec: str) -> str | list[str]:
    if spec.lstrip().startswith("~"):
        return spec.strip()
    return [s.strip() for s in spec.split(",") if s.strip()]


def _read_studies(args: argparse.Namespace) -> tuple[StudySet, dict[str, Any]]:
    path = Path(args.file)
    if not path.is_file():
        raise _UsageError(f"no such file: {args.file}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise _UsageError(f"cannot read {args.file}: {exc}") from None
    columns = [str(c) for c in frame.columns]
    given = {
        arg: str(getattr(args, f"col_{arg}"))
        for arg in _CONVENTIONAL
        if getattr(args, f"col_{arg}", None) is not None
    }
    for arg, col in given.items():
        if col not in columns:
            raise _UsageError(
                f"no column {col!r} (given for {arg}) in {args.file}; its columns are: "
                f"{', '.join(columns)}"
            )
    name, found = _choose_measure(args.measure, columns, given, args.file)
    label = args.label
    if label is None:
        label = next((c for c in columns for want in _LABEL_COLUMNS if c.lower() == want), None)
    elif label not in columns:
        raise _UsageError(f"no column {label!r} (--label) in {args.file}")
    if label is not None:
        frame[label] = frame[label].astype("string")
        frame[label] = _unique_labels(frame, label, args, found)
    if name == "GEN" or "ni" not in found:
        n_col = given.get("ni") or _find_column(columns, "ni")
        if n_col is not None and n_col not in found.values() and name == "GEN":
            found["ni"] = n_col  # sample sizes for the table and the plot
    mods: list[str] = []
    if args.by is not None:
        if args.by not in columns:
            raise _UsageError(f"no column {args.by!r} (--by) in {args.file}")
        mods.append(args.by)
    if args.moderators:
        mods += [c for c in _moderator_columns(args.moderators, columns) if c not in mods]
    params = inspect.signature(StudySet.from_dataframe).parameters
    kwargs: dict[str, Any] = {}
    for arg, col in found.items():
        key = _DATA_MODEL_NAMES.get(arg, arg)
        if key not in params:
            key = arg if arg in params else ""
        if not key:
            raise _UsageError(
                f"measure {name} needs {arg}, which this version's StudySet.from_dataframe "
                "does not take yet"
            )
        kwargs[key] = col
    studies = StudySet.from_dataframe(
        frame, label=label, measure=cast(Measure, name), moderators=mods, **kwargs
    )
    info = {"file": str(path), "measure": name, "columns": found, "label": label}
    return studies, info


def _unique_labels(
    frame: pd.DataFrame, label: str, args: argparse.Namespace, found: Mapping[str, str]
) -> pd.Series[Any]:
    """The label column, checked for repeated labels: numbered as metafor numbers
    them (``.make.unique``: ``"x.1"``, ``"x.2"``) with ``--unique-labels``, else an
    error that says which rows repeat which label and what to pass."""
    col: pd.Series[Any] = frame[label]
    dup = col.duplicated(keep=False) & col.notna()
    if not bool(dup.any()):
        return col
    if args.unique_labels:
        counts = col.groupby(col, dropna=True).cumcount() + 1
        out: pd.Series[Any] = col.copy()
        out[dup] = col[dup] + "." + counts[dup].astype(str)
        if out.duplicated().any():  # "x.1" was already a label of another row
            raise _UsageError(
                f"--unique-labels cannot make the labels of column {label!r} unique: "
                "numbering them gives a label that another row already has; give --label "
                "COL naming a column with a distinct value per row"
            )
        return out
    first = str(col[dup].iloc[0])
    rows = [int(i) + 1 for i in np.flatnonzero((col == first).to_numpy(dtype=bool))]
    how = "given with --label" if args.label is not None else "found by its name"
    others = [
        str(c) for c in frame.columns
        if c != label and c not in found.values() and frame[c].notna().all()
        and frame[c].is_unique and not pd.api.types.is_float_dtype(frame[c])
    ][:5]  # fmt: skip
    alt = f" (columns with a distinct value per row: {', '.join(others)})" if others else ""
    n_rep = int(col[dup].nunique())
    shown = ", ".join(map(str, rows[:-1][:9])) + (", ..." if len(rows) > 10 else "")
    more = f" ({n_rep - 1} more label(s) repeat too)" if n_rep > 1 else ""
    raise _UsageError(
        f"the study labels in column {label!r} ({how}) repeat: {first!r} is in data rows "
        f"{shown} and {rows[-1]}{more}"
        + ". If these are different studies, pass --unique-labels to number the repeats "
        f"as metafor does ({first + '.1'!r}, {first + '.2'!r}), or --label COL naming a "
        f"column with a distinct value per row{alt}. If they are several effect sizes of "
        "one study, they are not independent: aggregate them per study first, or fit "
        "alliance_meta.multilevel in Python"
    )


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------


def _section(out: TextIO, title: str) -> None:
    print(f"\n{title}\n{'-' * len(title)}", file=out)


def _fmt(x: float, digits: int = 2) -> str:
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s


def _has_n(studies: StudySet) -> bool:
    return bool(np.any(np.isfinite(np.asarray(studies.n, dtype=np.float64))))


def _effect_table(studies: StudySet, by: str | None) -> str:
    table = pd.DataFrame({"study": list(studies.labels)})
    if studies.measure == "ZCOR":
        table["r"] = np.tanh(studies.yi).round(3)
    if _has_n(studies):
        n = np.asarray(studies.n, dtype=np.float64)
        table["n"] = ["" if not math.isfinite(v) else f"{v:.0f}" for v in n]
    table[studies.measure] = studies.yi.round(4)
    table["variance"] = studies.vi.round(5)
    if by is not None:
        table[by] = studies.moderator(by)
    text: str = table.to_string(index=False)
    return text


def _report(
    studies: StudySet,
    *,
    by: str | None,
    moderators: str | None,
    method: str,
    level: float,
    out_png: Path | None,
    test: str = "z",
    out: TextIO,
    json_path: Path | None = None,
    csv_path: Path | None = None,
    info: Mapping[str, Any] | None = None,
    plot_title: str | None = None,
    favours: tuple[str, str] | None = None,
    extra: Callable[[TextIO], None] | None = None,
) -> int:
    """Run the pipeline on ``studies`` and print the report to ``out`` (``extra``
    prints sections of its own before the plots and the result)."""
    _section(out, f"Effect sizes ({studies.measure}), k = {studies.k}")
    print(_effect_table(studies, by), file=out)

    res: PoolResult = random_effects(studies, method=method, level=level, test=test)  # type: ignore[arg-type]
    _section(out, "Pooled estimate")
    print(res.summary(), file=out)

    _section(out, "Heterogeneity")
    pct = f"{100 * level:g}%"
    print(f"Q({res.Q_df}) = {res.Q:.2f}, p = {res.Q_pvalue:.4g}", file=out)
    het = None
    if res.k < 2:
        print("tau^2, I^2 and H^2 need at least 2 studies (no Q-profile CIs)", file=out)
    else:
        het = res.heterogeneity_ci()
        print(
            f"tau^2 = {res.tau2:.4f}, {pct} CI [{het.tau2.low:.4f}, {het.tau2.high:.4f}] "
            "(Q-profile)",
            file=out,
        )
        print(f"I^2 = {res.I2:.1f}%, {pct} CI [{het.I2.low:.1f}%, {het.I2.high:.1f}%]",
              file=out)  # fmt: skip
        print(f"H^2 = {res.H2:.2f}, {pct} CI [{het.H2.low:.2f}, {het.H2.high:.2f}]", file=out)

    sg: SubgroupResult | None = None
    if by is not None:
        _section(out, f"Subgroup analysis by {by}")
        sg = subgroup_analysis(studies, by=by, method=method, level=level, test=test)  # type: ignore[arg-type]
        print(sg.summary(), file=out)

    mr: MetaRegressionResult | None = None
    if moderators is not None:
        _section(out, f"Meta-regression ({moderators.strip()})")
        mr = meta_regression(
            studies, moderators=_moderators_arg(moderators), method=method, level=level,  # type: ignore[arg-type]
            test=test,  # type: ignore[arg-type]
        )  # fmt: skip
        print(mr.summary(), file=out)

    _section(out, "Small-study effects (Egger's regression test)")
    eg: EggerTest | None = None
    if res.k >= 3:
        eg = egger_test(res, model="lm")
        print(
            f"t({eg.df:g}) = {eg.statistic:.3f}, p = {eg.pvalue:.4g}, limit estimate "
            f"{eg.intercept:.4f} (classical weighted regression of the effects on their "
            "standard errors; metafor's regtest(model = \"lm\"))",
            file=out,
        )
    else:
        print("not computed: Egger's test needs at least 3 studies", file=out)

    if extra is not None:
        extra(out)

    if out_png is not None:
        _section(out, "Plots")
        for line in _write_plots(sg if sg is not None else res, mr, studies, out_png,
                                 plot_title, favours):  # fmt: skip
            print(line, file=out)

    if json_path is not None or csv_path is not None:
        _section(out, "Results files")
        if json_path is not None:
            doc = _results_json(studies, res, het, sg, mr, eg, info or {}, method, level, test)
            _write_text(json_path, json.dumps(doc, indent=2, allow_nan=False) + "\n", "JSON")
            print(f"JSON written to {json_path.resolve()}", file=out)
        if csv_path is not None:
            table = _results_frame(res, sg, mr)
            _write_text(csv_path, table.to_csv(index=False), "CSV")
            print(f"CSV written to {csv_path.resolve()}", file=out)

    bt = res.back_transformed()
    _section(out, "Result")
    name = {"ZCOR": "r", "COR": "r", "UCOR": "r"}.get(studies.measure, bt.scale)
    print(
        f"Pooled {name} = {_fmt(bt.estimate)}, {pct} CI [{_fmt(bt.ci.low)}, {_fmt(bt.ci.high)}]",
        file=out,
    )
    return 0


# ---------------------------------------------------------------------------
# results files
# ---------------------------------------------------------------------------


def _jsonable(x: Any) -> Any:
    """``x`` with numpy and pandas values as Python ones, NaN and infinities as null."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray):
        return [_jsonable(v) for v in x]
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        f = float(x)
        return f if math.isfinite(f) else None
    if x is None or x is pd.NA:
        return None
    return str(x)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in rec.items()} for rec in frame.to_dict(orient="records")]


def _study_records(studies: StudySet, res: PoolResult) -> list[dict[str, Any]]:
    se = np.sqrt(studies.vi)
    from alliance_meta.core.inference import z_critical

    z = z_critical(res.level)
    n = np.asarray(studies.n, dtype=np.float64)
    frame = pd.DataFrame({
        "label": list(studies.labels), "yi": studies.yi, "vi": studies.vi,
        "ci_low": studies.yi - z * se, "ci_high": studies.yi + z * se,
        "weight": res.weights, "n": n,
    })  # fmt: skip
    for name in studies.moderator_names:
        frame[name] = studies.moderator(name)
    return _records(frame)


def _results_json(
    studies: StudySet,
    res: PoolResult,
    het: Any,
    sg: SubgroupResult | None,
    mr: MetaRegressionResult | None,
    eg: EggerTest | None,
    info: Mapping[str, Any],
    method: str,
    level: float,
    test: str = "z",
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "alliance_meta": __version__,
        "input": {**info, "k": studies.k, "measure": studies.measure},
        "settings": {"method": method, "level": level, "test": test},
        "studies": _study_records(studies, res),
        "pooled": _records(res.to_frame())[0],
        "pooled_natural_scale": _records(res.back_transformed().to_frame())[0],
    }
    if het is not None:
        doc["heterogeneity_ci"] = {
            name: [getattr(het, name).low, getattr(het, name).high]
            for name in ("tau2", "I2", "H2")
        }
    if sg is not None:
        doc["subgroups"] = {
            "by": sg.by,
            "groups": _records(sg.to_frame().reset_index()),
            "groups_natural_scale": {
                str(name): _records(g.back_transformed().to_frame())[0]
                for name, g in sg.groups.items()
            },
            "test": {
                "Q_between": sg.Q_between,
                "df": sg.Q_between_df,
                "df2": sg.Q_between_df2,
                "pvalue": sg.Q_between_pvalue,
            },
        }
    if mr is not None:
        doc["meta_regression"] = {
            "coefficients": _records(mr.to_frame().reset_index()),
            "tau2": mr.tau2, "tau2_se": mr.tau2_se, "I2": mr.I2, "H2": mr.H2, "R2": mr.R2,
            "QE": mr.QE, "QE_df": mr.QE_df, "QE_pvalue": mr.QE_pvalue,
            "QM": mr.QM, "QM_df": list(mr.QM_df), "QM_pvalue": mr.QM_pvalue,
            "dropped": list(mr.dropped),
        }  # fmt: skip
    if eg is not None:
        doc["egger"] = {"model": eg.model, "statistic": eg.statistic, "df": eg.df,
                        "pvalue": eg.pvalue, "intercept": eg.intercept,
                        "intercept_se": eg.intercept_se}  # fmt: skip
    out: dict[str, Any] = _jsonable(doc)
    return out


def _results_frame(
    res: PoolResult, sg: SubgroupResult | None, mr: MetaRegressionResult | None
) -> pd.DataFrame:
    """One row per estimate: the pooled one, each subgroup's, each coefficient."""

    def pooled_row(section: str, term: str, fit: PoolResult) -> dict[str, Any]:
        row: dict[str, Any] = {"section": section, "term": term}
        row.update(_records(fit.to_frame())[0])
        bt = fit.back_transformed()
        if fit.measure in ("ZCOR", "OR", "RR", "ROM"):
            row.update({"estimate_natural": bt.estimate, "ci_low_natural": bt.ci.low,
                        "ci_high_natural": bt.ci.high, "pi_low_natural": bt.pi.low,
                        "pi_high_natural": bt.pi.high})  # fmt: skip
        return row

    rows = [pooled_row("pooled", "overall", res)]
    if sg is not None:
        rows += [pooled_row(f"subgroup {sg.by}", str(name), g) for name, g in sg.groups.items()]
        rows.append({"section": f"subgroup {sg.by}", "term": "test of differences",
                     "statistic": sg.Q_between, "df": sg.Q_between_df,
                     "pvalue": sg.Q_between_pvalue})  # fmt: skip
    if mr is not None:
        coefs = mr.to_frame().reset_index()
        for rec in _records(coefs):
            term = rec.pop(coefs.columns[0])
            rec["estimate"] = rec.pop("coef", rec.get("estimate"))
            rows.append({"section": "meta-regression", "term": term, "k": mr.k, **rec,
                         "tau2": mr.tau2, "method": mr.method, "test": mr.test,
                         "level": mr.level, "measure": mr.measure})  # fmt: skip
    table: pd.DataFrame = pd.DataFrame(rows)
    for col in ("k", "Q_df", "QE_df"):
        if col in table.columns:
            table[col] = table[col].astype("Int64")
    return table


def _write_text(path: Path, text: str, what: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _UsageError(f"cannot write the {what} file {str(path)!r}: {exc}") from None


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------


def _image_formats() -> dict[str, str] | None:
    """The image formats matplotlib writes, or None without matplotlib."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        return None
    formats: dict[str, str] = FigureCanvasBase.get_supported_filetypes()
    return formats


def _plot_target(out: str) -> Path:
    """Where the forest plot goes: ``out``, or ``out/alliance_forest.png`` for a
    directory, or ``out.png`` when ``out`` has no extension (what matplotlib would
    write, said out loud); its format must be one matplotlib writes."""
    path = Path(out)
    if path.is_dir():
        path = path / _DEFAULT_PNG
    elif path.suffix == "":
        path = path.with_name(path.name + ".png")
    parent = path.parent
    if not parent.is_dir():
        raise _UsageError(f"cannot write the forest plot: no directory {str(parent)!r}")
    formats = _image_formats()
    fmt = path.suffix[1:].lower()
    if formats is not None and fmt not in formats:
        raise _UsageError(
            f"cannot write the forest plot to {out!r}: unknown image format {fmt!r}; "
            f"use one of {', '.join(sorted(formats))}"
        )
    return path


def _output_file(path: str | None, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise _UsageError(f"--{what} {path!r} is a directory; give a file name")
    if not p.parent.is_dir():
        raise _UsageError(f"cannot write the {what.upper()} file: no directory "
                          f"{str(p.parent)!r}")  # fmt: skip
    return p


def _write_plots(
    result: PoolResult | SubgroupResult,
    mr: MetaRegressionResult | None,
    studies: StudySet,
    target: Path,
    title: str | None,
    favours: tuple[str, str] | None,
) -> list[str]:
    """Draw and save the forest plot (and a bubble plot of a meta-regression on one
    continuous moderator); the lines to print."""
    try:
        import matplotlib
    except ImportError:
        return [
            "matplotlib is not installed, so no plot was drawn: install the plot extra, "
            "pip install 'alliance_meta[plot]'"
        ]
    matplotlib.use("Agg")  # file output only; never open a window
    import matplotlib.pyplot as plt

    from alliance_meta.plot import bubble, forest

    lines = []
    columns = {"N": "n"} if _has_n(studies) else None
    fig = forest(result, title=title, columns=columns, data=studies if columns else None,
                 favours=favours)  # fmt: skip
    _save(fig, target, "forest plot")
    plt.close(fig)
    lines.append(f"Forest plot written to {target.resolve()}")
    if mr is not None and mr.p == 2 and len(np.unique(mr.X[:, 1])) > 2:
        bubble_path = target.with_name(f"{target.stem}-bubble{target.suffix}")
        fig = bubble(mr)
        _save(fig, bubble_path, "bubble plot")
        plt.close(fig)
        lines.append(f"Bubble plot of the meta-regression written to {bubble_path.resolve()}")
    return lines


def _save(fig: Any, path: Path, what: str) -> None:
    try:
        fig.savefig(path, dpi=200)
    except (OSError, ValueError) as exc:
        raise _UsageError(f"cannot write the {what} to {str(path)!r}: {exc}") from None


# ---------------------------------------------------------------------------
# the commands
# ---------------------------------------------------------------------------


def _demo(args: argparse.Namespace, out: TextIO, files: Mapping[str, Path | None]) -> int:
    ds = load_alliance_example()
    print(_RULE, file=out)
    print("alliance_meta demo: therapist attachment anxiety and the working alliance", file=out)
    print(
        f"DATA ARE SIMULATED FOR ILLUSTRATION (numpy seed {ALLIANCE_EXAMPLE_SEED}); "
        "they are not published results.",
        file=out,
    )
    print(_RULE, file=out)
    print(ds.description, file=out)
    studies = ds.studies("ZCOR")
    return _report(
        studies,
        by="rater",
        moderators=None,
        method=args.method,
        level=args.level,
        test=args.test,
        out_png=files["plot"],
        out=out,
        json_path=files["json"],
        csv_path=files["csv"],
        info={"dataset": "alliance_example (SIMULATED)", "measure": "ZCOR"},
        plot_title=(
            "Therapist attachment anxiety and the working alliance "
            f"(SIMULATED data, seed {ALLIANCE_EXAMPLE_SEED})"
        ),
        favours=("Weaker alliance", "Stronger alliance"),
        extra=lambda o: _dependent_section(o, args.level),
    )


def _dependent_section(out: TextIO, level: float) -> None:
    """The demo's dependent-effects section: the naive pooling of 48 effects beside
    the three-level model and CHE + CR2, on the companion SIMULATED example."""
    studies = load_alliance_dependent().studies("ZCOR")
    rho = ALLIANCE_DEPENDENT_RHO
    _section(out, "Dependent effects: four per study")
    print(
        f"A companion example, also SIMULATED (seed {ALLIANCE_EXAMPLE_SEED + 1}), gives each "
        "study four correlations\n(anxiety and avoidance, each with the therapist- and the "
        f"patient-rated alliance):\n{studies.k} effects in {studies.n_studies} studies, their "
        f"sampling errors correlated at rho = {rho:g} within a study.",
        file=out,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DependentEffectsWarning)
        naive = random_effects(studies, level=level)
    for w in caught:
        if issubclass(w.category, DependentEffectsWarning):
            first = str(w.message).split(":", 1)[0]
            print(f"random_effects warns ({w.category.__name__}): {first}", file=out)
    ml = multilevel(studies, levels=("study", "label"), level=level)
    rob = che(studies, rho=rho, level=level)
    pct = f"{100 * level:g}% CI"
    rows = [
        ("naive: 48 effects as if independent", naive.estimate, naive.ci.low,
         naive.ci.high, naive.se),
        ("three-level: effects within studies", float(ml.coef[0]), float(ml.ci.low[0]),
         float(ml.ci.high[0]), float(ml.se[0])),
        (f"CHE (rho = {rho:g}) + CR2, t on {rob.df[0]:.1f} df", float(rob.coef[0]),
         float(rob.ci.low[0]), float(rob.ci.high[0]), float(rob.se[0])),
    ]  # fmt: skip
    print(f"{'model (REML)':<38} {'r':>6}  {pct:<15} {'SE (z)':>7}", file=out)
    for name, est, lo, hi, se in rows:
        ci = f"[{_fmt(float(np.tanh(lo)))}, {_fmt(float(np.tanh(hi)))}]"
        print(f"{name:<38} {_fmt(float(np.tanh(est))):>6}  {ci:<15} {se:7.4f}", file=out)
    print(
        f"The naive SE is {100 * (1 - naive.se / float(ml.se[0])):.0f}% too small; "
        f"three-level sigma^2: study {ml.sigma2[0]:.4f}, effect {ml.sigma2[1]:.4f}\n"
        f"(I^2 {ml.I2_levels[0]:.0f}% + {ml.I2_levels[1]:.0f}%).  In full: "
        "docs/dependent_effects.rst.\nThe Result below is the first (12-study) example's.",
        file=out,
    )


def _analyze(args: argparse.Namespace, out: TextIO, files: Mapping[str, Path | None]) -> int:
    studies, info = _read_studies(args)
    print(_RULE, file=out)
    print(f"alliance_meta analyze: {args.file}", file=out)
    used = ", ".join(f"{arg} = {col!r}" for arg, col in info["columns"].items())
    print(f"measure {info['measure']} from columns {used}"
          + (f"; labels from {info['label']!r}" if info["label"] else ""), file=out)  # fmt: skip
    print(_RULE, file=out)
    return _report(
        studies,
        by=args.by,
        moderators=args.moderators,
        method=args.method,
        level=args.level,
        test=args.test,
        out_png=files["plot"],
        out=out,
        json_path=files["json"],
        csv_path=files["csv"],
        info=info,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit status: 0 on success, 2 for invalid input (bad data, missing file or
        column, bad options) or a warning that the warning filters turn into an
        error, printed as one line on standard error.

    Notes
    -----
    Warnings are printed as one line each ("warning: ...") and obey the warning
    filters in force (``python -W error`` or ``PYTHONWARNINGS``); the filters are
    left as they are.

    Examples
    --------
    >>> main(["demo", "--no-plot"])  # doctest: +SKIP
    """
    parser = _build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not 0.0 < args.level < 1.0:
        print(f"error: --level must lie strictly between 0 and 1, got {args.level}",
              file=sys.stderr)  # fmt: skip
        return 2
    with warnings.catch_warnings():
        # only how warnings are shown changes here, never which are shown or raised
        warnings.showwarning = _show_warning
        try:
            files = {
                "plot": None if args.no_plot else _plot_target(args.out),
                "json": _output_file(args.json, "json"),
                "csv": _output_file(args.csv, "csv"),
            }
            if args.command == "demo":
                return _demo(args, sys.stdout, files)
            return _analyze(args, sys.stdout, files)
        except (AllianceMetaError, _UsageError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Warning as exc:  # a warning the filters (-W error) made an error
            print(f"error: {exc} ({type(exc).__name__}, raised as an error by the warning "
                  "filters)", file=sys.stderr)  # fmt: skip
            return 2


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Print a warning as one line on standard error (no source line)."""
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
