"""Command-line entry point: ``python -m alliance_meta demo`` and ``... analyze FILE.csv``.

``demo`` runs the whole pipeline on the bundled example, which is SIMULATED for
illustration (not published data): effect sizes (r → Fisher's z), random-effects
pooling, heterogeneity with Q-profile intervals, the subgroup test by rater, Egger's
regression test and a forest plot.  ``analyze`` does the same for a CSV file of
correlations.  Both print a report that ends with the pooled correlation and its CI.

Errors in the user's data are printed as one line naming the study and the field,
with exit status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from alliance_meta import __version__
from alliance_meta.core.estimators import ESTIMATORS
from alliance_meta.data.study import StudySet
from alliance_meta.datasets import ALLIANCE_EXAMPLE_SEED, load_alliance_example
from alliance_meta.diagnostics.bias import egger_test
from alliance_meta.exceptions import AllianceMetaError
from alliance_meta.models.pooling import PoolResult, random_effects
from alliance_meta.models.subgroup import SubgroupResult, subgroup_analysis

__all__ = ["main"]

_METHODS = tuple(ESTIMATORS)  # the τ² estimator registry
_DEFAULT_PNG = "alliance_forest.png"
_RULE = "=" * 78


class _UsageError(Exception):
    """A problem with the user's input that ends the run with exit status 2."""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alliance_meta",
        description=(
            "Random-effects meta-analysis of correlations, reproducing R's metafor. "
            "'demo' analyses the bundled SIMULATED example; 'analyze' a CSV file."
        ),
    )
    parser.add_argument("--version", action="version", version=f"alliance_meta {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,analyze}")

    def add_common(p: argparse.ArgumentParser, default_out: str | None) -> None:
        p.add_argument(
            "--method", default="REML", choices=_METHODS,
            help="tau^2 estimator, as in metafor's rma (default: REML)",
        )  # fmt: skip
        p.add_argument(
            "--level", type=float, default=0.95, help="confidence level (default: 0.95)"
        )
        p.add_argument(
            "--out", default=default_out, metavar="PNG",
            help=f"where to write the forest plot (default: ./{_DEFAULT_PNG})",
        )  # fmt: skip
        p.add_argument(
            "--no-plot", action="store_true", help="do not draw the forest plot"
        )

    demo = sub.add_parser(
        "demo",
        help="run the whole pipeline on the bundled SIMULATED alliance example",
        description=(
            "Run the whole pipeline on the bundled alliance example: 12 studies "
            f"SIMULATED for illustration (seed {ALLIANCE_EXAMPLE_SEED}), not published data."
        ),
    )
    add_common(demo, _DEFAULT_PNG)

    analyze = sub.add_parser(
        "analyze",
        help="analyse correlations from a CSV file",
        description="Pool the correlations of a CSV file (one row per study).",
    )
    analyze.add_argument("file", metavar="FILE.csv", help="CSV file, one row per study")
    analyze.add_argument("--r", required=True, metavar="COL", help="column of correlations")
    analyze.add_argument("--n", required=True, metavar="COL", help="column of sample sizes")
    analyze.add_argument("--by", metavar="COL", help="categorical moderator for a subgroup test")
    analyze.add_argument("--label", metavar="COL", help="column of study labels")
    analyze.add_argument(
        "--measure", default="ZCOR", choices=("ZCOR", "COR", "UCOR"),
        help="effect size: Fisher's z (ZCOR, default) or raw correlation (COR, UCOR)",
    )  # fmt: skip
    add_common(analyze, _DEFAULT_PNG)
    return parser


def _section(out: TextIO, title: str) -> None:
    print(f"\n{title}\n{'-' * len(title)}", file=out)


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def _effect_table(studies: StudySet, by: str | None) -> str:
    frame = studies.to_dataframe()
    table = pd.DataFrame({"study": list(studies.labels)})
    if studies.measure == "ZCOR":
        table["r"] = np.tanh(studies.yi).round(3)
    table["n"] = studies.n
    table[studies.measure] = studies.yi.round(4)
    table["variance"] = studies.vi.round(5)
    if by is not None:
        table[by] = frame[by].to_numpy()
    table["n"] = table["n"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    text: str = table.to_string(index=False)
    return text


def _report(
    studies: StudySet,
    *,
    by: str | None,
    method: str,
    level: float,
    out_png: str | None,
    out: TextIO,
    plot_title: str | None = None,
) -> int:
    """Run the pipeline on ``studies`` and print the report to ``out``."""
    _section(out, f"Effect sizes ({studies.measure}), k = {studies.k}")
    print(_effect_table(studies, by), file=out)

    res: PoolResult = random_effects(studies, method=method, level=level)  # type: ignore[arg-type]
    _section(out, "Pooled estimate")
    print(res.summary(), file=out)

    _section(out, "Heterogeneity")
    pct = f"{100 * level:g}%"
    print(f"Q({res.Q_df}) = {res.Q:.2f}, p = {res.Q_pvalue:.4g}", file=out)
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
              file=out)
        print(f"H^2 = {res.H2:.2f}, {pct} CI [{het.H2.low:.2f}, {het.H2.high:.2f}]", file=out)

    sg: SubgroupResult | None = None
    if by is not None:
        _section(out, f"Subgroup analysis by {by}")
        sg = subgroup_analysis(studies, by=by, method=method, level=level)  # type: ignore[arg-type]
        print(sg.summary(), file=out)

    _section(out, "Small-study effects (Egger's regression test)")
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

    if out_png is not None:
        _section(out, "Forest plot")
        print(_write_forest(sg if sg is not None else res, out_png, plot_title), file=out)

    bt = res.back_transformed()
    _section(out, "Result")
    scale = bt.scale if studies.measure == "ZCOR" else studies.measure
    name = "r" if scale in ("r", "COR", "UCOR") else scale
    print(
        f"Pooled {name} = {_fmt(bt.estimate)}, {pct} CI [{_fmt(bt.ci.low)}, {_fmt(bt.ci.high)}]",
        file=out,
    )
    return 0


def _write_forest(result: PoolResult | SubgroupResult, path: str, title: str | None) -> str:
    """Draw and save the forest plot; the message to print."""
    try:
        import matplotlib
    except ImportError:
        return (
            "matplotlib is not installed, so no forest plot was drawn "
            "(pip install 'alliance_meta[plot]')"
        )
    matplotlib.use("Agg")  # file output only; never open a window
    import matplotlib.pyplot as plt

    from alliance_meta.plot import forest

    target = Path(path)
    if isinstance(result, SubgroupResult):
        fig = forest(result, subgroup_title=result.by.capitalize(), title=title)
    else:
        fig = forest(result, title=title)
    try:
        fig.savefig(target, dpi=200)
    except OSError as exc:
        raise _UsageError(f"cannot write the forest plot to {path!r}: {exc}") from None
    finally:
        plt.close(fig)
    return f"Forest plot written to {target.resolve()}"


def _demo(args: argparse.Namespace, out: TextIO) -> int:
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
        method=args.method,
        level=args.level,
        out_png=None if args.no_plot else args.out,
        out=out,
        plot_title=(
            "Therapist attachment anxiety and the working alliance "
            f"(SIMULATED data, seed {ALLIANCE_EXAMPLE_SEED})"
        ),
    )


def _analyze(args: argparse.Namespace, out: TextIO) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise _UsageError(f"no such file: {args.file}")
    try:
        studies = StudySet.from_csv(
            path,
            r=args.r,
            n=args.n,
            label=args.label,
            measure=args.measure,
            moderators=(args.by,) if args.by else (),
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise _UsageError(f"cannot read {args.file}: {exc}") from None
    print(_RULE, file=out)
    print(f"alliance_meta analyze: {args.file}", file=out)
    print(_RULE, file=out)
    return _report(
        studies,
        by=args.by,
        method=args.method,
        level=args.level,
        out_png=None if args.no_plot else args.out,
        out=out,
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
        column, bad options), printed as one line on standard error.

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
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        try:
            if not args.no_plot and args.out is not None:
                _check_writable(args.out)
            if args.command == "demo":
                return _demo(args, sys.stdout)
            return _analyze(args, sys.stdout)
        except (AllianceMetaError, _UsageError) as exc:
            print(f"error: {exc}", file=sys.stderr)
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


def _check_writable(path: str) -> None:
    """Fail early (before the report) when the plot's directory does not exist."""
    parent = Path(path).parent
    if not parent.is_dir():
        raise _UsageError(f"cannot write the forest plot: no directory {str(parent)!r}")


if __name__ == "__main__":
    sys.exit(main())
