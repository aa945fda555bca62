"""Heavy optional modules (pandas, ...) only where they are already in use.

``import alliance_meta`` and a core fit load no pandas; input that could be a
pandas object is recognised through :func:`pandas_instance`, which imports
nothing: an object can only be a DataFrame if pandas has been imported already.
"""

from __future__ import annotations

import sys

__all__ = ["pandas_instance"]


def pandas_instance(obj: object, *names: str) -> bool:
    """Whether ``obj`` is an instance of one of the pandas classes ``names``
    (``"DataFrame"``, ``"Series"``, ...), without importing pandas."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, tuple(getattr(pd, n) for n in names))
