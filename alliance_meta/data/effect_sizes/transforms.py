"""Transformations between the analysis and the natural scale of the measures.

Each back-transformation is metafor 3.8.1's ``transf.*`` function of the same name
(``transf.ztor``, ``transf.ilogit``, ``transf.iarcsin``, ``transf.ipft.hm``,
``transf.isqrt``, ``transf.iirft``, ``transf.iahw``, ``transf.iabt``), including its
clipping at the ends of the range.  All follow the
:class:`~alliance_meta.data.measures.Transform` protocol ``f(x, n=None)``; only the
Freeman-Tukey transforms use ``n``.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from alliance_meta.data.measures import FloatArray, harmonic_mean
from alliance_meta.exceptions import AllianceMetaError

__all__ = [
    "exp",
    "iabt",
    "iahw",
    "iarcsin",
    "iirft",
    "ilogit",
    "ipft_hm",
    "irft_hm",
    "isqrt",
    "log",
    "logit",
    "pft_hm",
    "rtoz",
    "ztor",
]


def _arr(x: FloatArray) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def ztor(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Fisher's z to r: :math:`\\tanh z` (metafor's ``transf.ztor``)."""
    return np.tanh(_arr(x))


def rtoz(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """r to Fisher's z: :math:`\\operatorname{atanh} r` (metafor's ``transf.rtoz``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.arctanh(_arr(x))


def exp(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Log ratio to ratio: :math:`e^x` (metafor's ``transf = exp``)."""
    return np.exp(_arr(x))


def log(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Ratio to log ratio."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(_arr(x))


def ilogit(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Logit to proportion: :math:`1/(1 + e^{-x})` (metafor's ``transf.ilogit``)."""
    return np.asarray(special.expit(_arr(x)), dtype=np.float64)


def logit(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Proportion to logit (metafor's ``transf.logit``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(special.logit(_arr(x)), dtype=np.float64)


def iarcsin(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Arcsine square root to proportion: :math:`\\sin^2 x`, 0 below 0 and 1 above
    :math:`\\pi/2` (metafor's ``transf.iarcsin``)."""
    xa = _arr(x)
    z = np.sin(xa) ** 2
    z = np.where(xa < 0, 0.0, z)
    return np.where(xa > np.arcsin(1.0), 1.0, z)


def arcsin(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Proportion to arcsine square root (metafor's ``transf.arcsin``)."""
    with np.errstate(invalid="ignore"):
        return np.arcsin(np.sqrt(_arr(x)))


def _need_n(n: FloatArray | None, what: str) -> float:
    if n is None:
        raise AllianceMetaError(
            f"the {what} back-transformation needs the studies' sample sizes n "
            "(metafor's transf.ipft.hm / transf.iirft use their harmonic mean)"
        )
    nhm = harmonic_mean(np.atleast_1d(np.asarray(n, dtype=np.float64)))
    if not np.isfinite(nhm) or nhm <= 0:
        raise AllianceMetaError(f"the {what} back-transformation needs positive sample sizes")
    return nhm


def _pft(p: FloatArray, ni: float) -> FloatArray:
    """metafor's ``transf.pft(p, ni)``."""
    x = p * ni
    with np.errstate(invalid="ignore"):
        first = np.arcsin(np.sqrt(x / (ni + 1.0)))
        return 0.5 * (first + np.arcsin(np.sqrt((x + 1.0) / (ni + 1.0))))


def ipft_hm(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Freeman-Tukey double arcsine to proportion, with the harmonic mean of ``n``.

    Notes
    -----
    Miller's (1978) inversion, as metafor's ``transf.ipft.hm``: with :math:`\\tilde
    n` the harmonic mean of the sample sizes,

    .. math::
        p = \\tfrac12\\left[1 - \\operatorname{sgn}(\\cos 2x)
        \\sqrt{1 - \\left(\\sin 2x + \\frac{\\sin 2x - 1/\\sin 2x}{\\tilde n}\\right)^2}
        \\right],

    set to 1 above the transform of 1 and to 0 below the transform of 0.

    Miller, J. J. (1978). The inverse of the Freeman-Tukey double arcsine
    transformation. *The American Statistician*, 32(4), 138.
    """
    nhm = _need_n(n, "PFT")
    xa = _arr(x)
    with np.errstate(all="ignore"):
        s = np.sin(2.0 * xa)
        z = 0.5 * (1.0 - np.sign(np.cos(2.0 * xa)) * np.sqrt(1.0 - (s + (s - 1.0 / s) / nhm) ** 2))
    z = np.where(np.isnan(z), np.nan, z)
    z = np.where(xa > _pft(np.array(1.0), nhm), 1.0, z)
    return np.where(xa < _pft(np.array(0.0), nhm), 0.0, z)


def pft_hm(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Proportion to Freeman-Tukey double arcsine at the harmonic mean of ``n``
    (metafor's ``transf.pft``)."""
    return _pft(_arr(x), _need_n(n, "PFT"))


def isqrt(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Square root to value: :math:`x^2`, 0 below 0 (metafor's ``transf.isqrt``)."""
    xa = _arr(x)
    return np.where(xa < 0, 0.0, xa * xa)


def sqrt(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Value to square root."""
    with np.errstate(invalid="ignore"):
        return np.sqrt(_arr(x))


def _irft(x: FloatArray, ti: float) -> FloatArray:
    with np.errstate(invalid="ignore"):
        return 0.5 * (np.sqrt(x) + np.sqrt(x + 1.0 / ti))


def iirft(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Freeman-Tukey rate transform to incidence rate (metafor's ``transf.iirft``).

    Notes
    -----
    With :math:`\\tilde t` the harmonic mean of the person-times (as
    ``transf.ipft.hm`` uses for proportions),

    .. math:: \\lambda = \\frac{1/\\tilde t - 8x^2 + 16\\tilde t x^4}{16 x^2 \\tilde t},

    0 below the transform of 0 and for values under machine epsilon.
    """
    ti = _need_n(n, "IRFT")
    xa = _arr(x)
    with np.errstate(all="ignore"):
        z = (1.0 / ti - 8.0 * xa**2 + 16.0 * ti * xa**4) / (16.0 * xa**2 * ti)
    z = np.where(xa < _irft(np.array(0.0), ti), 0.0, z)
    return np.where(z <= np.finfo(np.float64).eps, 0.0, z)


def irft_hm(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Incidence rate to Freeman-Tukey transform at the harmonic mean person-time
    (metafor's ``transf.irft``)."""
    return _irft(_arr(x), _need_n(n, "IRFT"))


def iahw(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Hakstian-Whalen transform to alpha: :math:`1 - (1 - x)^3`, clipped to [0, 1]
    (metafor's ``transf.iahw``)."""
    xa = _arr(x)
    z = 1.0 - (1.0 - xa) ** 3
    z = np.where(xa > 1, 1.0, z)
    return np.where(xa < 0, 0.0, z)


def ahw(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Alpha to Hakstian-Whalen transform: :math:`1 - (1 - \\alpha)^{1/3}`."""
    with np.errstate(invalid="ignore"):
        return 1.0 - (1.0 - _arr(x)) ** (1.0 / 3.0)


def iabt(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Bonett transform to alpha: :math:`1 - e^{-x}`, 0 below 0 (metafor's
    ``transf.iabt``)."""
    xa = _arr(x)
    return np.where(xa < 0, 0.0, 1.0 - np.exp(-xa))


def abt(x: FloatArray, n: FloatArray | None = None) -> FloatArray:
    """Alpha to Bonett transform: :math:`-\\log(1 - \\alpha)`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.log(1.0 - _arr(x))
