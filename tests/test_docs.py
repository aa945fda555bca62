"""The documentation's examples run, and print what the pages say they print."""

from __future__ import annotations

import contextlib
import doctest
import io
import re
import warnings
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize(
    "page",
    ["getting_started.rst", "worked_example.rst", "coming_from_metafor.rst",
     "dependent_effects.rst"],
)
def test_page_examples(page: str) -> None:
    # NORMALIZE_WHITESPACE: statsmodels' tables pad cells with trailing spaces, which
    # the pages do not keep; ELLIPSIS lets a page elide long output with "...".
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an example that warns must say so on the page
        result = doctest.testfile(
            str(DOCS / page),
            module_relative=False,
            optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
            raise_on_error=False,
            verbose=False,
        )
    assert result.attempted > 0
    assert result.failed == 0


def test_readme_example_prints_what_it_says() -> None:
    text = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    expected = code.split("# Prints:\n", 1)[1]
    expected_lines = [line.removeprefix("# ") for line in expected.splitlines()]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().splitlines() == expected_lines


def test_readme_has_two_setup_commands_and_ci_runs_both() -> None:
    """The README's set-up is exactly two commands: the demo (which must install what
    draws its forest plot) and the tests; ``.ci/run`` runs both, the demo first on an
    environment without the test extras."""
    root = DOCS.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```bash\n")[1:]]
    assert blocks == [
        'pip install ".[plot]" && python -m alliance_meta demo',
        'pip install ".[test]" && pytest',
    ]
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^plot = \[[^]]*"matplotlib', pyproject, re.MULTILINE)
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    demo_at = ci.index(
        """step demo bash -c 'pip install ".[plot]" && python -m alliance_meta demo"""
    )
    test_at = ci.index("""step test bash -c 'pip install ".[test]" && pytest'""")
    assert demo_at < test_at  # the demo runs before the test extras are installed
