"""The tetrachoric correlation of 2×2 tables, as metafor 3.8.1's ``escalc("RTET")``.

metafor's ``.rtet`` maximises the bivariate-normal likelihood of the table in two
stages: R's ``optimize`` (Brent's golden-section and parabolic search, tolerance
:math:`\\epsilon^{1/4}`) over the correlation with the thresholds fixed at the
margins, then R's ``optim`` (Nelder-Mead, relative tolerance
:math:`\\sqrt\\epsilon`) over correlation and thresholds, and takes the variance from
the inverse of ``optimHess``'s finite-difference Hessian (step :math:`10^{-3}`).
Nelder-Mead stops about :math:`10^{-4}` away from the exact maximum, so matching
metafor to more digits than that needs the same steps: this module implements
those three algorithms step for step (Brent, 1973; Nelder & Mead, 1965, in
Nash's 1990 formulation that R uses; central differences of central-difference
gradients), with the bivariate normal probabilities of Genz (2004), which
metafor obtains from ``mvtnorm::pmvnorm`` for two dimensions.

References
----------
Brent, R. (1973). *Algorithms for Minimization without Derivatives*. Prentice-Hall.

Genz, A. (2004). Numerical computation of rectangular bivariate and trivariate
normal and t probabilities. *Statistics and Computing*, 14, 251-260.

Nash, J. C. (1990). *Compact Numerical Methods for Computers* (2nd ed.). Adam
Hilger.

Nelder, J. A., & Mead, R. (1965). A simplex method for function minimization.
*The Computer Journal*, 7(4), 308-313.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Callable

import numpy as np

from alliance_meta.data.measures import FloatArray

__all__ = ["bvn_upper", "tetrachoric"]

_MAXCOR = 0.9999
_TWOPI = 2.0 * math.pi
_NORMAL = statistics.NormalDist()


def _gauss_legendre(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x, w = np.polynomial.legendre.leggauss(n)
    half = n // 2
    return tuple(float(v) for v in x[:half]), tuple(float(v) for v in w[:half])


# Genz's rules: 6, 12 and 20 points for |r| < 0.3, < 0.75 and beyond (half of each
# symmetric rule; the other half is used through the sign of x)
_RULES = (_gauss_legendre(6), _gauss_legendre(12), _gauss_legendre(20))


def _phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def bvn_upper(h: float, k: float, r: float) -> float:
    """:math:`P(X > h, Y > k)` for standard bivariate normal X, Y with correlation r.

    Genz's (2004) method (the ``MVBVU`` routine that ``mvtnorm`` uses): Drezner and
    Wesolowsky's integral in :math:`\\arcsin r` for :math:`|r| < 0.925`, and the
    integral of the difference from the :math:`|r| = 1` limit beyond, with 6-, 12-
    or 20-point Gauss-Legendre rules; about 15 significant digits.
    """
    ar = abs(r)
    xs, ws = _RULES[0] if ar < 0.3 else _RULES[1] if ar < 0.75 else _RULES[2]
    hk = h * k
    bvn = 0.0
    if ar < 0.925:
        hs = (h * h + k * k) / 2.0
        asr = math.asin(r)
        for x, w in zip(xs, ws, strict=True):
            sn = math.sin(asr * (x + 1.0) / 2.0)
            bvn += w * math.exp((sn * hk - hs) / (1.0 - sn * sn))
            sn = math.sin(asr * (-x + 1.0) / 2.0)
            bvn += w * math.exp((sn * hk - hs) / (1.0 - sn * sn))
        return bvn * asr / (2.0 * _TWOPI) + _phi(-h) * _phi(-k)
    if r < 0:
        k = -k
        hk = -hk
    if ar < 1:
        as_ = (1.0 - r) * (1.0 + r)
        a = math.sqrt(as_)
        bs = (h - k) ** 2
        c = (4.0 - hk) / 8.0
        d = (12.0 - hk) / 16.0
        bvn = a * math.exp(-(bs / as_ + hk) / 2.0) * (
            1.0 - c * (bs - as_) * (1.0 - d * bs / 5.0) / 3.0 + c * d * as_ * as_ / 5.0
        )
        if hk > -160.0:
            b = math.sqrt(bs)
            bvn -= (
                math.exp(-hk / 2.0) * math.sqrt(_TWOPI) * _phi(-b / a) * b
                * (1.0 - c * bs * (1.0 - d * bs / 5.0) / 3.0)
            )
        a /= 2.0
        for x, w in zip(xs, ws, strict=True):
            for sx in (x, -x):
                xs2 = (a * (sx + 1.0)) ** 2
                rs = math.sqrt(1.0 - xs2)
                bvn += a * w * (
                    math.exp(-bs / (2.0 * xs2) - hk / (1.0 + rs)) / rs
                    - math.exp(-(bs / xs2 + hk) / 2.0) * (1.0 + c * xs2 * (1.0 + d * xs2))
                )
        bvn = -bvn / _TWOPI
    if r > 0:
        return bvn + _phi(-max(h, k))
    return -bvn + max(0.0, _phi(-h) - _phi(-k))


def _quadrants(cut_row: float, cut_col: float, rho: float) -> tuple[float, float, float, float]:
    """The four cell probabilities, as pmvnorm's limits map to Genz's MVBVN:
    ``bvn_upper(-c, -r, rho)``, ``(c, -r, -rho)``, ``(-c, r, -rho)``, ``(c, r, rho)``.

    For :math:`|\rho| < 0.925` the four share their quadrature sum bit for bit
    (sin is odd and the products of h, k and sin change sign together), so it is
    summed once: the results are those of the four calls, four times faster.
    """
    if abs(rho) >= 0.925:
        return (
            bvn_upper(-cut_col, -cut_row, rho),
            bvn_upper(cut_col, -cut_row, -rho),
            bvn_upper(-cut_col, cut_row, -rho),
            bvn_upper(cut_col, cut_row, rho),
        )
    ar = abs(rho)
    xs, ws = _RULES[0] if ar < 0.3 else _RULES[1] if ar < 0.75 else _RULES[2]
    h, k = -cut_col, -cut_row
    hk = h * k
    hs = (h * h + k * k) / 2.0
    asr = math.asin(rho)
    total = 0.0
    for x, w in zip(xs, ws, strict=True):
        sn = math.sin(asr * (x + 1.0) / 2.0)
        total += w * math.exp((sn * hk - hs) / (1.0 - sn * sn))
        sn = math.sin(asr * (-x + 1.0) / 2.0)
        total += w * math.exp((sn * hk - hs) / (1.0 - sn * sn))
    plus = total * asr / (2.0 * _TWOPI)
    minus = total * -asr / (2.0 * _TWOPI)
    lo_c, hi_c = _phi(cut_col), _phi(-cut_col)
    lo_r, hi_r = _phi(cut_row), _phi(-cut_row)
    return plus + lo_c * lo_r, minus + hi_c * lo_r, minus + lo_c * hi_r, plus + hi_c * hi_r


def _negloglik(
    rho: float, cut_row: float, cut_col: float, a: float, b: float, c: float, d: float
) -> float:
    """metafor's ``fn``: minus the log-likelihood of the table (inf where a cell
    probability is not positive)."""
    if abs(rho) > _MAXCOR:
        rho = math.copysign(_MAXCOR, rho)
    p_a, p_b, p_c, p_d = _quadrants(cut_row, cut_col, rho)
    if p_a <= 0 or p_b <= 0 or p_c <= 0 or p_d <= 0:
        return math.inf
    return -(a * math.log(p_a) + b * math.log(p_b) + c * math.log(p_c) + d * math.log(p_d))


def _brent_fmin(f: Callable[[float], float], ax: float, bx: float, tol: float) -> float:
    """R's ``optimize`` (Brent's ``localmin``, as R's ``Brent_fmin``)."""
    golden = (3.0 - math.sqrt(5.0)) * 0.5
    eps = math.sqrt(sys.float_info.epsilon)
    a, b = ax, bx
    v = a + golden * (b - a)
    w = x = v
    d = e = 0.0
    fx = f(x)
    fv = fw = fx
    tol3 = tol / 3.0
    while True:
        xm = (a + b) * 0.5
        tol1 = eps * abs(x) + tol3
        t2 = tol1 * 2.0
        if abs(x - xm) <= t2 - (b - a) * 0.5:
            break
        p = q = r = 0.0
        if abs(e) > tol1:
            r = (x - w) * (fx - fv)
            q = (x - v) * (fx - fw)
            p = (x - v) * q - (x - w) * r
            q = (q - r) * 2.0
            if q > 0.0:
                p = -p
            else:
                q = -q
            r = e
            e = d
        if abs(p) >= abs(q * 0.5 * r) or p <= q * (a - x) or p >= q * (b - x):
            e = (b - x) if x < xm else (a - x)
            d = golden * e
        else:
            d = p / q
            u = x + d
            if u - a < t2 or b - u < t2:
                d = tol1 if x < xm else -tol1
        if abs(d) >= tol1:
            u = x + d
        elif d > 0.0:
            u = x + tol1
        else:
            u = x - tol1
        fu = f(u)
        if fu <= fx:
            if u < x:
                b = x
            else:
                a = x
            v, w, x = w, x, u
            fv, fw, fx = fw, fx, fu
        else:
            if u < x:
                a = u
            else:
                b = u
            if fu <= fw or w == x:
                v, fv = w, fw
                w, fw = u, fu
            elif fu <= fv or v == x or v == w:
                v, fv = u, fu
    return x


_BIG = 1.0e35


def _nelder_mead(
    f: Callable[[list[float]], float], start: list[float], reltol: float, maxit: int = 500
) -> list[float]:
    """R's ``optim(method = "Nelder-Mead")`` (``nmmin``), default settings:
    reflection 1, contraction 0.5, expansion 2, ``abstol = -Inf``."""
    n = len(start)
    alpha, beta, gamma = 1.0, 0.5, 2.0
    bvec = list(start)
    fval = f(bvec)
    if not math.isfinite(fval):
        raise ArithmeticError("function cannot be evaluated at initial parameters")
    funcount = 1
    convtol = reltol * (abs(fval) + reltol)
    n1 = n + 1
    c_idx = n + 2
    # P[i][j]: i < n coordinates, i = n the value; columns 0..n vertices, n+1 centroid
    p = [[0.0] * (n + 2) for _ in range(n + 1)]
    p[n1 - 1][0] = fval
    for i in range(n):
        p[i][0] = bvec[i]
    big_l = 1
    size = 0.0
    step = 0.0
    for i in range(n):
        if 0.1 * abs(bvec[i]) > step:
            step = 0.1 * abs(bvec[i])
    if step == 0.0:
        step = 0.1
    for j in range(2, n1 + 1):
        for i in range(n):
            p[i][j - 1] = bvec[i]
        trystep = step
        while p[j - 2][j - 1] == bvec[j - 2]:
            p[j - 2][j - 1] = bvec[j - 2] + trystep
            trystep *= 10.0
        size += trystep
    oldsize = size
    calcvert = True
    while True:
        if calcvert:
            for j in range(n1):
                if j + 1 != big_l:
                    for i in range(n):
                        bvec[i] = p[i][j]
                    fval = f(bvec)
                    if not math.isfinite(fval):
                        fval = _BIG
                    funcount += 1
                    p[n1 - 1][j] = fval
            calcvert = False
        vl = p[n1 - 1][big_l - 1]
        vh = vl
        big_h = big_l
        for j in range(1, n1 + 1):
            if j != big_l:
                fval = p[n1 - 1][j - 1]
                if fval < vl:
                    big_l = j
                    vl = fval
                if fval > vh:
                    big_h = j
                    vh = fval
        if vh <= vl + convtol:
            break
        for i in range(n):
            temp = -p[i][big_h - 1]
            for j in range(n1):
                temp += p[i][j]
            p[i][c_idx - 1] = temp / n
        for i in range(n):
            bvec[i] = (1.0 + alpha) * p[i][c_idx - 1] - alpha * p[i][big_h - 1]
        fval = f(bvec)
        if not math.isfinite(fval):
            fval = _BIG
        funcount += 1
        vr = fval
        if vr < vl:
            p[n1 - 1][c_idx - 1] = fval
            for i in range(n):
                fval = gamma * bvec[i] + (1 - gamma) * p[i][c_idx - 1]
                p[i][c_idx - 1] = bvec[i]
                bvec[i] = fval
            fval = f(bvec)
            if not math.isfinite(fval):
                fval = _BIG
            funcount += 1
            if fval < vr:
                for i in range(n):
                    p[i][big_h - 1] = bvec[i]
                p[n1 - 1][big_h - 1] = fval
            else:
                for i in range(n):
                    p[i][big_h - 1] = p[i][c_idx - 1]
                p[n1 - 1][big_h - 1] = vr
        else:
            if vr < vh:
                for i in range(n):
                    p[i][big_h - 1] = bvec[i]
                p[n1 - 1][big_h - 1] = vr
            for i in range(n):
                bvec[i] = (1 - beta) * p[i][big_h - 1] + beta * p[i][c_idx - 1]
            fval = f(bvec)
            if not math.isfinite(fval):
                fval = _BIG
            funcount += 1
            if fval < p[n1 - 1][big_h - 1]:
                for i in range(n):
                    p[i][big_h - 1] = bvec[i]
                p[n1 - 1][big_h - 1] = fval
            elif vr >= vh:
                calcvert = True
                size = 0.0
                for j in range(n1):
                    if j + 1 != big_l:
                        for i in range(n):
                            p[i][j] = beta * (p[i][j] - p[i][big_l - 1]) + p[i][big_l - 1]
                            size += abs(p[i][j] - p[i][big_l - 1])
                if size < oldsize:
                    oldsize = size
                else:
                    break
        if funcount > maxit:
            break
    return [p[i][big_l - 1] for i in range(n)]


def _optim_hessian(
    f: Callable[[list[float]], float], par: list[float], ndeps: float = 1e-3
) -> list[list[float]]:
    """R's ``optimHess`` without a gradient: central differences of the
    central-difference gradient, symmetrised."""
    n = len(par)

    def grad(p: list[float]) -> list[float]:
        x = list(p)
        df = [0.0] * n
        for i in range(n):
            x[i] = p[i] + ndeps
            val1 = f(x)
            x[i] = p[i] - ndeps
            val2 = f(x)
            df[i] = (val1 - val2) / (2.0 * ndeps)
            if not math.isfinite(df[i]):
                raise ArithmeticError(f"non-finite finite-difference value [{i + 1}]")
            x[i] = p[i]
        return df

    dpar = list(par)
    hess = [[0.0] * n for _ in range(n)]
    for i in range(n):
        dpar[i] = dpar[i] + ndeps
        df1 = grad(dpar)
        dpar[i] = dpar[i] - 2.0 * ndeps
        df2 = grad(dpar)
        for j in range(n):
            hess[i][j] = (df1[j] - df2[j]) / (2.0 * ndeps)
        dpar[i] = dpar[i] + ndeps
    for i in range(n):
        for j in range(i):
            tmp = 0.5 * (hess[i][j] + hess[j][i])
            hess[i][j] = hess[j][i] = tmp
    return hess


def _one(a: float, b: float, c: float, d: float) -> tuple[float, float]:
    """metafor's ``.rtet`` for one table: ``(yi, vi)``."""
    ni = a + b + c + d
    if a + b == 0 or c + d == 0 or a + c == 0 or b + d == 0:
        return 0.0, math.inf
    if b == 0 and c == 0:
        return 1.0, 0.0
    if a == 0 and d == 0:
        return -1.0, 0.0
    row0 = _NORMAL.inv_cdf((a + b) / ni) if 0 < (a + b) / ni < 1 else math.nan
    col0 = _NORMAL.inv_cdf((a + c) / ni) if 0 < (a + c) / ni < 1 else math.nan

    def fixed(rho: float) -> float:
        val = _negloglik(rho, row0, col0, a, b, c, d)
        # R's optimize replaces NA/Inf by the largest double
        return val if math.isfinite(val) else sys.float_info.max

    try:
        rho0 = _brent_fmin(fixed, -1.0, 1.0, sys.float_info.epsilon**0.25)

        def free(par: list[float]) -> float:
            return _negloglik(par[0], par[1], par[2], a, b, c, d)

        par = _nelder_mead(free, [rho0, row0, col0], math.sqrt(sys.float_info.epsilon))
        hess = _optim_hessian(free, par)
    except (ArithmeticError, ValueError):
        return math.nan, math.nan
    try:
        inv = np.linalg.inv(np.linalg.cholesky(np.asarray(hess)))  # R's chol2inv(chol(H))
        vi = float((inv.T @ inv)[0, 0])
    except np.linalg.LinAlgError:
        vi = math.nan
    yi = par[0]
    if b == 0 or c == 0:
        yi = 1.0
    if a == 0 or d == 0:
        yi = -1.0
    return yi, vi


def tetrachoric(
    a: FloatArray, b: FloatArray, c: FloatArray, d: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Tetrachoric correlations and their variances, row by row (NaN rows stay NaN).

    Each row runs metafor's two-stage maximum likelihood fit; see the module notes.
    Tables with an empty margin give ``(0, inf)`` and tables with two empty
    off-diagonal (diagonal) cells ``(1, 0)`` (``(-1, 0)``), as in metafor.
    """
    k = a.shape[0]
    yi = np.full(k, np.nan)
    vi = np.full(k, np.nan)
    for i in range(k):
        cells = (float(a[i]), float(b[i]), float(c[i]), float(d[i]))
        if all(math.isfinite(x) for x in cells):
            yi[i], vi[i] = _one(*cells)
    return yi, vi
