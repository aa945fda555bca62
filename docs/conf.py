"""Sphinx configuration for the alliance_meta documentation.

Build with ``python -m sphinx -b html -W --keep-going docs docs/_build/html``
(``.ci/run`` does exactly this).  The build needs no network: intersphinx is off
and maths is rendered by MathJax in the reader's browser.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Document the checkout being built, not whatever copy happens to be installed.
sys.path.insert(0, str(ROOT))

import alliance_meta  # noqa: E402

project = "alliance_meta"
author = "alliance_meta developers"
copyright = "alliance_meta developers"
version = alliance_meta.__version__
release = alliance_meta.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
]

# No network at build time: no intersphinx, no remote images.
templates_path: list[str] = []
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
language = "en"

html_theme = "alabaster"
html_title = f"alliance_meta {release}"
html_static_path: list[str] = []

# -- autodoc ---------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = False
autodoc_default_options: dict[str, Any] = {}

# -- numpydoc --------------------------------------------------------------
# Members are listed by autodoc itself (``:members:``), so numpydoc must not add
# autosummary tables of its own (they would need generated stub pages).
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

nitpicky = False


# -- completeness of the API page ------------------------------------------
# ``api.rst`` groups the public names by topic.  Any name in
# ``alliance_meta.__all__`` that the page does not mention yet (for instance a
# function added after the page was last edited) is appended to an "Other public
# names" section at build time, so the reference is always complete.


def _undocumented_public_names(text: str) -> list[str]:
    return [
        name
        for name in alliance_meta.__all__
        if not name.startswith("__")
        and not inspect.ismodule(getattr(alliance_meta, name))
        and re.search(rf"alliance_meta\.{re.escape(name)}\b", text) is None
    ]


def _undocumented_modules(text: str) -> list[str]:
    wanted = ["alliance_meta.datasets", "alliance_meta.exceptions", "alliance_meta.plot"]
    return [
        mod
        for mod in wanted
        if f"automodule:: {mod}\n" not in text and importlib.util.find_spec(mod) is not None
    ]


def _complete_api_page(app: Any, docname: str, source: list[str]) -> None:
    if docname != "api":
        return
    text = source[0]
    names = _undocumented_public_names(text)
    modules = _undocumented_modules(text)
    if not names and not modules:
        return
    lines = ["", "", "Other public names", "------------------", ""]
    for name in names:
        obj = getattr(alliance_meta, name)
        if inspect.isclass(obj):
            lines += [f".. autoclass:: alliance_meta.{name}", "   :members:", ""]
        elif callable(obj):
            lines += [f".. autofunction:: alliance_meta.{name}", ""]
        else:
            lines += [f".. autodata:: alliance_meta.{name}", ""]
    for mod in modules:
        lines += [f".. automodule:: {mod}", "   :members:", ""]
    source[0] = text + "\n".join(lines)


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _complete_api_page)
    return {"parallel_read_safe": True}
