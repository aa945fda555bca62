"""alliance_meta: typed, vectorised meta-analysis that reproduces R's metafor."""

from __future__ import annotations

from alliance_meta import exceptions

__version__ = "0.1.0"

__all__ = ["__version__", "exceptions"]
