"""``import alliance_meta`` is cheap: which modules it and a core fit load (issue 19).

Structural checks, never timed: each runs a fresh interpreter and reads
``sys.modules``.  The import itself loads none of the package's submodules (the
public names are imported on first access, PEP 562); a single fit and
``pool_many`` on arrays load the numerical core and scipy.special, but no pandas,
statsmodels, scipy.stats, matplotlib, dask or formulaic, which are imported where
they are first needed (``to_frame``/``summary``, ``data=`` frames, plots, dask).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import alliance_meta as am

#: Modules that neither the import nor a core fit may load.
HEAVY = ("pandas", "statsmodels", "scipy.stats", "matplotlib", "dask", "formulaic")


def _loaded_after(code: str) -> dict[str, bool]:
    """Which of HEAVY (and numpy, scipy) a fresh interpreter has loaded after ``code``."""
    probe = (
        "import json, sys\n" + code + "\n"
        f"print(json.dumps({{m: m in sys.modules for m in {(*HEAVY, 'numpy', 'scipy')!r}}}))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, bool] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_import_loads_no_heavy_module() -> None:
    loaded = _loaded_after("import alliance_meta")
    assert [m for m in HEAVY if loaded[m]] == []
    # nothing numerical either: the submodules are imported on first access
    assert not loaded["numpy"] and not loaded["scipy"]


@pytest.mark.parametrize(
    "code",
    [
        "am.random_effects(yi=[0.1, 0.3, 0.35, 0.2], vi=[0.01, 0.02, 0.015, 0.01])",
        "am.random_effects(yi=[0.1, 0.3, 0.35], vi=[0.01, 0.02, 0.015], method='DL')"
        ".heterogeneity_ci()",
        "am.fixed_effect(yi=[0.1, 0.3], vi=[0.01, 0.02]).predict()",
        "import numpy as np; am.pool_many(np.ones((3, 4)) * [0, 1, 2, 3], np.ones((3, 4)))"
        ".heterogeneity_ci()",
        "import numpy as np; am.pool_many(np.arange(6.0), np.ones(6), "
        "np.array([0, 0, 1, 1, 2, 2]), method='REML').I2",
    ],
)
def test_core_fit_loads_no_heavy_module(code: str) -> None:
    loaded = _loaded_after("import alliance_meta as am\n" + code)
    assert [m for m in HEAVY if loaded[m]] == []
    assert loaded["numpy"]  # the probe did run a fit


def test_pandas_loaded_where_first_needed() -> None:
    # to_frame() needs pandas and imports it itself (a probe that the check above
    # can fail: the same fit, one call further, loads it)
    loaded = _loaded_after(
        "import alliance_meta as am\n"
        "am.random_effects(yi=[0.1, 0.3, 0.35], vi=[0.01, 0.02, 0.015]).to_frame()"
    )
    assert loaded["pandas"]


def test_every_public_name_resolves() -> None:
    listed = set(dir(am))
    for name in am.__all__:
        assert name in listed
        assert getattr(am, name) is not None
    assert am.random_effects.__module__ == "alliance_meta.models.pooling"
    assert am.Prediction.__module__ == "alliance_meta.results.prediction"
    assert am.exceptions.InvalidStudyError.__name__ == "InvalidStudyError"
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        am.no_such_name  # noqa: B018


def test_all_is_the_lazy_table_and_the_type_checking_imports() -> None:
    # __all__, the table __getattr__ reads and the names static type checkers see
    # (the imports under TYPE_CHECKING) are one list: a name added to one of them
    # and not the others fails here
    import ast
    from pathlib import Path

    tree = ast.parse(Path(am.__file__).read_text())
    typed: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                typed |= {a.asname or a.name for a in imp.names}
    lazy = set(am._LAZY) | set(am._MODULES)
    assert set(am.__all__) - {"__version__"} == lazy == typed
    assert len(am.__all__) == len(set(am.__all__))
    # each lazy name is defined by the module the table names, not re-exported
    for name, module in am._LAZY.items():
        assert getattr(am, name).__module__ == module, name
