"""Gauss's hypergeometric function :math:`{}_2F_1(a, a; c; x)` for UCOR, vectorised.

UCOR (Olkin & Pratt, 1958) needs :math:`{}_2F_1(\\tfrac12, \\tfrac12; \\tfrac{n-2}{2};
1 - r^2)` and its ``vtype="UB"`` variance :math:`{}_2F_1(1, 1; \\tfrac n2; 1 - r^2)`,
on :math:`0 \\le x \\le 1` with :math:`c > 2a` (metafor 3.8.1 calls GSL's
``hyperg_2F1`` row by row and gives NA otherwise).  :func:`scipy.special.hyp2f1` is
slow for large ``c`` near :math:`x = 1`, returns NaN for large ``c``, and loses
seven digits for :math:`c = 3/2` near :math:`x = 1`; this module sums series that
converge fast in every region, to full double precision:

* the Gauss series in :math:`x` where :math:`x \\le 1/2` or :math:`c \\ge 25` (its
  terms shrink like :math:`k!/c^k` at first, so 40 terms suffice at :math:`x = 1`
  for :math:`c = 25`);
* otherwise the analytic continuation to :math:`1 - x` (Abramowitz & Stegun,
  1964, 15.3.6, and 15.3.11 when :math:`c - 2a` is a whole number), whose series
  in :math:`y = 1 - x < 1/2` converge geometrically.

References
----------
Abramowitz, M., & Stegun, I. A. (1964). *Handbook of Mathematical Functions*.
National Bureau of Standards, eqs. 15.1.1, 15.3.6 and 15.3.11.

Olkin, I., & Pratt, J. W. (1958). Unbiased estimation of certain correlation
coefficients. *Annals of Mathematical Statistics*, 29(1), 201-211.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from alliance_meta.data.measures import FloatArray

__all__ = ["hyp2f1_aa"]

#: Relative size of the neglected tail.
_TOL = 1e-17
#: Where the Gauss series in x is used regardless of x.
_LARGE_C = 25.0
#: Distance from a whole number below which c - 2a is treated as whole.
_WHOLE = 1e-8
_MAX_TERMS = 5000
#: Terms added between convergence checks.
_BLOCK = 4
#: Rows evaluated together (a few hundred kB of arrays stay in cache).
_CHUNK = 16384
#: Up to this many distinct small c are evaluated one polynomial each.
_MAX_GROUPS = 64


def hyp2f1_aa(a: float, c: FloatArray, x: FloatArray) -> FloatArray:
    """:math:`{}_2F_1(a, a; c; x)` for :math:`0 \\le x \\le 1` and :math:`c > 2a`.

    Rows outside that domain (or with NaN input) give NaN, as metafor's ``.Fcalc``
    gives NA.

    Parameters
    ----------
    a : float
        The two equal numerator parameters (1/2 and 1 for UCOR).
    c, x : ndarray of float64
        Denominator parameter and argument, broadcast together.

    Returns
    -------
    ndarray of float64
    """
    cc, xx = (np.array(v, dtype=np.float64) for v in np.broadcast_arrays(c, x))
    out = np.full(cc.shape, np.nan)
    ok = np.isfinite(cc) & np.isfinite(xx) & (cc > 2.0 * a) & (xx >= 0.0) & (xx <= 1.0)
    large = ok & (cc >= _LARGE_C)
    if np.any(large):
        out[large] = _gauss_series(a, cc[large], xx[large])
    small = ok & ~large
    if not np.any(small):
        return out
    idx = np.flatnonzero(small)
    order = np.argsort(cc[idx], kind="stable")
    idx = idx[order]
    c_small, starts = np.unique(cc[idx], return_index=True)
    if c_small.size <= _MAX_GROUPS:
        # whole-number n gives few distinct c: one polynomial per c, scalar coefficients
        bounds = [*starts.tolist(), idx.size]
        for g, cv in enumerate(c_small.tolist()):
            rows = idx[bounds[g] : bounds[g + 1]]
            xg = xx[rows]
            near = xg > 0.5
            if not np.all(near):
                xf = xg[~near]
                out[rows[~near]] = _poly(_gauss_coefs(a, cv, float(np.max(xf))), xf)
            if np.any(near):
                out[rows[near]] = _continued_poly(a, cv, 1.0 - xg[near])
        return out
    direct = small & (xx <= 0.5)
    if np.any(direct):
        out[direct] = _gauss_series(a, cc[direct], xx[direct])
    near_one = small & ~direct
    if np.any(near_one):
        out[near_one] = _continued(a, cc[near_one], 1.0 - xx[near_one])
    return out


def _poly(coefs: list[float], y: FloatArray) -> FloatArray:
    """:math:`\\sum_k` ``coefs[k]`` :math:`y^k` by Horner's rule."""
    acc = np.full_like(y, coefs[-1])
    for cf in reversed(coefs[:-1]):
        acc *= y
        acc += cf
    return acc


def _coefs(p: float, q: float, y_max: float, scale: float = 1.0, first: int = 0) -> list[float]:
    """Coefficients of :math:`\\sum_k (p)_k^2 y^k / ((q)_k k!)` up to the term after
    which the tail at ``y_max`` is below ``_TOL / scale`` (checked from term
    ``first`` on, and only where the term ratio is below 1)."""
    coefs = [1.0]
    t = 1.0
    for k in range(_MAX_TERMS):
        ratio = (p + k) ** 2 / ((q + k) * (k + 1.0))
        t *= ratio
        coefs.append(t)
        r = abs(ratio) * y_max
        if k + 1 > first and r < 0.95 and abs(t) * y_max ** (k + 1) * scale <= _TOL * (1 - r):
            break
    return coefs


def _gauss_coefs(a: float, c: float, x_max: float) -> list[float]:
    """Gauss series coefficients for :math:`x \\le` ``x_max`` (F >= 1, so an
    absolute tail bound is a relative one)."""
    return _coefs(a, c, x_max)


def _continued_poly(a: float, c: float, y: FloatArray) -> FloatArray:
    """:func:`_continued` for one value of ``c``, with scalar coefficients."""
    s = c - 2.0 * a
    y_max = float(np.max(y))
    if abs(s - round(s)) >= _WHOLE:
        first = math.gamma(c) * math.gamma(s) / math.gamma(c - a) ** 2
        second = math.gamma(c) * math.gamma(-s) / math.gamma(a) ** 2
        s1 = _poly(_coefs(a, 1.0 - s, y_max, abs(first), math.ceil(s)), y)
        head = first * s1
        if a == 1.0:
            s2 = (1.0 - y) ** (1.0 - c)
        else:
            s2 = (1.0 - y) ** (1.0 - c) * _poly(_coefs(1.0 - a, 1.0 + s, y_max, abs(second)), y)
        with np.errstate(invalid="ignore", divide="ignore"):
            tail = np.where(y > 0, y**s * second * s2, 0.0)
        result: FloatArray = head + tail
        return result
    m = round(s)
    g_c = math.gamma(c)
    fin_coefs = [1.0]
    for k in range(1, m):
        fin_coefs.append(fin_coefs[-1] * (a + k - 1.0) ** 2 / (k * (k - m)))
    fin = _poly(fin_coefs, y) * (math.gamma(m) * g_c / math.gamma(a + m) ** 2)
    scale = g_c / math.gamma(a) ** 2
    # log series: sum_k cf_k y^k (ln y + psi_k), cf_k = (a+m)_k^2 / (k! (k+m)!)
    cfs = [1.0 / math.gamma(m + 1.0)]
    psis = [float(-special.digamma(1.0) - special.digamma(m + 1.0)
                  + 2.0 * special.digamma(a + m))]
    log_max = abs(math.log(y_max)) if y_max > 0 else 0.0
    for k in range(1, _MAX_TERMS):
        cf = cfs[-1] * (a + m + k - 1.0) ** 2 / (k * (k + m))
        cfs.append(cf)
        psis.append(float(-special.digamma(k + 1.0) - special.digamma(k + m + 1.0)
                          + 2.0 * special.digamma(a + k + m)))
        r = (a + m + k) ** 2 / ((k + 1.0) * (k + 1.0 + m)) * y_max
        size = cf * y_max ** (k + m) * (log_max + abs(psis[-1]) + 1.0) * scale
        if r < 0.95 and 2.0 * size <= _TOL * (1 - r):
            break
    pos = y > 0
    out: FloatArray = fin.copy()
    if np.any(pos):
        yp = y[pos]
        p_part = _poly(cfs, yp)
        q_part = _poly([cf * ps for cf, ps in zip(cfs, psis, strict=True)], yp)
        out[pos] = fin[pos] - (-yp) ** m * scale * (np.log(yp) * p_part + q_part)
    return out


def _gauss_series(a: float, c: FloatArray, x: FloatArray) -> FloatArray:
    """:math:`\\sum_k (a)_k^2 x^k / ((c)_k k!)`, summed on a shrinking active set.

    Terms are added in blocks of :data:`_BLOCK` between convergence checks; the
    tail after a term is below ``term * ratio / (1 - ratio)`` once the ratio, which
    grows towards ``x``, is below 0.95.
    """
    # rows sorted by c, so that each cache-sized chunk holds rows that need about
    # as many terms (few for large c, about 40 at c = 25 and x = 1)
    order = np.argsort(c)
    c_sorted, x_sorted = c[order], x[order]
    out_sorted = np.empty_like(c)
    for i in range(0, c.size, _CHUNK):
        cs, xs = c_sorted[i : i + _CHUNK], x_sorted[i : i + _CHUNK]
        out_sorted[i : i + _CHUNK] = _block_sum(np.full_like(cs, a), cs, xs, np.zeros_like(cs))
    out = np.empty_like(c)
    out[order] = out_sorted
    return out


def _block_sum(p: FloatArray, q: FloatArray, y: FloatArray, start: FloatArray) -> FloatArray:
    """:math:`\\sum_k (p)_k^2 y^k / ((q)_k k!)` per row (``p``, ``q``, ``y`` arrays),
    checked for convergence every :data:`_BLOCK` terms from term ``start`` on."""
    total = np.ones_like(y)
    active = np.arange(y.size)
    ps, qs, ys, st = p, q, y, start
    ts = np.ones_like(y)
    tot = np.ones_like(y)
    ratio = np.empty_like(y)
    tmp = np.empty_like(y)
    k = 0
    while active.size and k < _MAX_TERMS:
        for _ in range(_BLOCK):
            # ratio = (p + k)^2 / ((q + k)(k + 1)) * y, in place
            np.add(ps, k, out=ratio)
            np.multiply(ratio, ratio, out=ratio)
            np.multiply(ratio, ys, out=ratio)
            np.add(qs, k, out=tmp)
            tmp *= k + 1.0
            ratio /= tmp
            ts *= ratio
            tot += ts
            k += 1
        mag = np.abs(ratio)
        done = (k > st) & (mag < 0.95) & (np.abs(ts) <= _TOL * np.abs(tot) * (1.0 - mag))
        if np.any(done):
            total[active[done]] = tot[done]
            keep = ~done
            active = active[keep]
            ps, qs, ys, st, ts, tot = ps[keep], qs[keep], ys[keep], st[keep], ts[keep], tot[keep]
            ratio, tmp = ratio[keep], tmp[keep]
    if active.size:
        total[active] = tot
    return total


def _continued(a: float, c: FloatArray, y: FloatArray) -> FloatArray:
    """:math:`{}_2F_1(a, a; c; 1 - y)` by the continuation to :math:`1 - x`, for
    :math:`0 \\le y < 1/2` and :math:`2a < c < 25`."""
    s = c - 2.0 * a
    whole = np.abs(s - np.round(s)) < _WHOLE
    out = np.empty_like(c)
    if np.any(~whole):
        out[~whole] = _continued_fractional(a, c[~whole], s[~whole], y[~whole])
    if np.any(whole):
        out[whole] = _continued_whole(a, c[whole], np.round(s[whole]), y[whole])
    return out


def _continued_fractional(a: float, c: FloatArray, s: FloatArray, y: FloatArray) -> FloatArray:
    """A&S 15.3.6 with :math:`b = a`, :math:`s = c - 2a` not whole:

    .. math::
        F = \\frac{\\Gamma(c)\\Gamma(s)}{\\Gamma(c-a)^2}\\,{}_2F_1(a, a; 1-s; y)
          + y^s \\frac{\\Gamma(c)\\Gamma(-s)}{\\Gamma(a)^2}\\,{}_2F_1(c-a, c-a; 1+s; y)

    with the last function by Euler's transformation (A&S 15.3.3).
    """
    g_c = special.gamma(c)
    first = g_c * special.gamma(s) / special.gamma(c - a) ** 2
    second = g_c * special.gamma(-s) / special.gamma(a) ** 2
    aa = np.full_like(c, a)
    s1 = _block_sum(aa, 1.0 - s, y, np.ceil(s))
    # Euler's transformation (A&S 15.3.3) turns the second series into one that
    # converges like the first: F(c-a, c-a; 1+s; y) = (1-y)^(1-c) F(1-a, 1-a; 1+s; y)
    if a == 1.0:
        s2 = (1.0 - y) ** (1.0 - c)
    else:
        s2 = (1.0 - y) ** (1.0 - c) * _block_sum(np.full_like(c, 1.0 - a), 1.0 + s, y,
                                                 np.zeros_like(s))
    with np.errstate(invalid="ignore"):
        tail = np.where(y > 0, y**s * second * s2, 0.0)
    out: FloatArray = first * s1 + tail
    return out


def _continued_whole(a: float, c: FloatArray, m: FloatArray, y: FloatArray) -> FloatArray:
    """A&S 15.3.11 with :math:`b = a` and :math:`c = 2a + m`, :math:`m \\ge 1`:

    .. math::
        F = \\frac{\\Gamma(m)\\Gamma(c)}{\\Gamma(a+m)^2}\\sum_{k=0}^{m-1}
            \\frac{(a)_k^2}{k!\\,(1-m)_k} y^k
          - (-y)^m \\frac{\\Gamma(c)}{\\Gamma(a)^2}\\sum_{k=0}^\\infty
            \\frac{(a+m)_k^2}{k!\\,(k+m)!} y^k
            \\left[\\ln y - \\psi(k+1) - \\psi(k+m+1) + 2\\psi(a+k+m)\\right]
    """
    out = np.empty_like(c)
    for mv in np.unique(m):
        rows = m == mv
        mi = int(mv)
        cr, yr = c[rows], y[rows]
        g_c = special.gamma(cr)
        # finite sum
        fin = np.zeros_like(yr)
        term = np.ones_like(yr)
        for k in range(mi):
            if k > 0:
                term = term * (a + k - 1.0) ** 2 / (k * (k - mi)) * yr
            fin = fin + term
        fin = fin * special.gamma(mi) * g_c / special.gamma(a + mi) ** 2
        # logarithmic series; y = 0 leaves only the finite sum (Gauss's theorem)
        pos = yr > 0
        res = fin.copy()
        if np.any(pos):
            yp = yr[pos]
            log_y = np.log(yp)
            coef = np.full_like(yp, 1.0 / special.gamma(mi + 1.0))
            psi_sum = -special.digamma(1.0) - special.digamma(mi + 1.0) + 2.0 * special.digamma(
                a + mi
            )
            total = coef * (log_y + psi_sum)
            active = np.arange(yp.size)
            cf, yy, ly, tot = coef, yp, log_y, total
            for k in range(1, _MAX_TERMS):
                cf = cf * (a + mi + k - 1.0) ** 2 / (k * (k + mi)) * yy
                psi_k = (
                    -special.digamma(k + 1.0)
                    - special.digamma(k + mi + 1.0)
                    + 2.0 * special.digamma(a + k + mi)
                )
                t = cf * (ly + psi_k)
                tot = tot + t
                ratio = (a + mi + k) ** 2 / ((k + 1.0) * (k + 1.0 + mi)) * yy
                done = (ratio < 1.0) & (np.abs(t) <= _TOL * np.abs(tot) * (1.0 - ratio))
                if np.any(done):
                    total[active[done]] = tot[done]
                    keep = ~done
                    active, cf, yy, ly, tot = active[keep], cf[keep], yy[keep], ly[keep], tot[keep]
                    if active.size == 0:
                        break
            if active.size:
                total[active] = tot
            log_part = -((-yp) ** mi) * g_c[pos] / special.gamma(a) ** 2 * total
            res[pos] = fin[pos] + log_part
        out[rows] = res
    return out
