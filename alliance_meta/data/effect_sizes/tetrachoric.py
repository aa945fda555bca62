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
import sys
from collections.abc import Callable

import numpy as np
from scipy import special

from alliance_meta.data.measures import FloatArray

__all__ = ["bvn_upper", "tetrachoric"]

IntArray = np.ndarray[tuple[int, ...], np.dtype[np.intp]]
BoolArray = np.ndarray[tuple[int, ...], np.dtype[np.bool_]]
# objective over points: (rows of the chunk's tables, rho, cut_row, cut_col) -> values
Objective = Callable[[IntArray, FloatArray, FloatArray, FloatArray], FloatArray]

_MAXCOR = 0.9999
_TWOPI = 2.0 * math.pi
_SQRT_TWOPI = math.sqrt(_TWOPI)
_SQRT2 = math.sqrt(2.0)
_DBL_MAX = sys.float_info.max
_BIG = 1.0e35  # nmmin's stand-in for a non-finite function value
# rows per chunk (the whole fit runs chunk by chunk, for the cache) and points per
# objective block (bounds the (nodes, points) temporaries)
_CHUNK = 4096
_BLOCK = 16384


def _gauss_legendre(n: int) -> tuple[FloatArray, FloatArray]:
    """Half of the n-point rule, interleaved as the scalar loops visit it: for each
    node x < 0, the arguments ``x + 1`` and ``-x + 1`` of Drezner's integrand (the
    high-correlation rule uses ``x`` and ``-x``) and the weight twice."""
    x, w = np.polynomial.legendre.leggauss(n)
    half = n // 2
    return x[:half].copy(), w[:half].copy()


# Genz's rules: 6, 12 and 20 points for |r| < 0.3, < 0.75 and beyond
_RULES = (_gauss_legendre(6), _gauss_legendre(12), _gauss_legendre(20))
# per rule: node arguments (x + 1, -x + 1, ...) and weights (w, w, ...) as columns
_LOW = tuple(
    (np.column_stack([x + 1.0, -x + 1.0]).ravel()[:, None],
     np.column_stack([w, w]).ravel()[:, None])
    for x, w in _RULES
)
_HIGH_X = np.column_stack([_RULES[2][0], -_RULES[2][0]]).ravel()[:, None]
_HIGH_W = np.column_stack([_RULES[2][1], _RULES[2][1]]).ravel()[:, None]


def _phi(x: FloatArray) -> FloatArray:
    """Standard normal CDF."""
    out: FloatArray = 0.5 * special.erfc(-x / _SQRT2)
    return out


def _rule(ar: FloatArray) -> IntArray:
    """Genz's rule index for |r|: 0 below 0.3, 1 below 0.75, else 2."""
    out: IntArray = (ar >= 0.3).astype(np.intp) + (ar >= 0.75)
    return out


def _dw_total(h: FloatArray, k: FloatArray, asr: FloatArray, rule: int) -> FloatArray:
    """Drezner and Wesolowsky's quadrature sum :math:`\\sum w \\exp((s hk - (h^2 +
    k^2)/2) / (1 - s^2))`, :math:`s = \\sin(\\arcsin(r) (x + 1) / 2)`, summed node by
    node in order (``np.add.reduce`` sums pairwise, in another order, for one row)."""
    u, w = _LOW[rule]
    hk = h * k
    hs = (h * h + k * k) / 2.0
    sn = np.sin(asr * u / 2.0)
    terms = w * np.exp((sn * hk - hs) / (1.0 - sn * sn))
    total: FloatArray = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _bvn_high(h: FloatArray, k: FloatArray, r: FloatArray) -> FloatArray:
    """Genz's :math:`P(X > h, Y > k)` for :math:`|r| \\ge 0.925` (20-point rule)."""
    hk = h * k
    neg = r < 0
    k = np.where(neg, -k, k)
    hk = np.where(neg, -hk, hk)
    as_ = (1.0 - r) * (1.0 + r)
    a = np.sqrt(as_)
    bs = (h - k) ** 2
    c = (4.0 - hk) / 8.0
    d = (12.0 - hk) / 16.0
    bvn = a * np.exp(-(bs / as_ + hk) / 2.0) * (
        1.0 - c * (bs - as_) * (1.0 - d * bs / 5.0) / 3.0 + c * d * as_ * as_ / 5.0
    )
    b = np.sqrt(bs)
    sub = (
        np.exp(-hk / 2.0) * _SQRT_TWOPI * _phi(-b / a) * b
        * (1.0 - c * bs * (1.0 - d * bs / 5.0) / 3.0)
    )
    bvn = np.where(hk > -160.0, bvn - sub, bvn)
    a = a / 2.0
    xs2 = (a * (_HIGH_X + 1.0)) ** 2
    rs = np.sqrt(1.0 - xs2)
    terms = a * _HIGH_W * (
        np.exp(-bs / (2.0 * xs2) - hk / (1.0 + rs)) / rs
        - np.exp(-(bs / xs2 + hk) / 2.0) * (1.0 + c * xs2 * (1.0 + d * xs2))
    )
    for term in terms:  # bvn += term, node after node
        bvn = bvn + term
    bvn = np.where(np.abs(r) < 1, -bvn / _TWOPI, 0.0)
    out: FloatArray = np.where(
        r > 0, bvn + _phi(-np.maximum(h, k)), -bvn + np.maximum(0.0, _phi(-h) - _phi(-k))
    )
    return out


def bvn_upper(h: FloatArray | float, k: FloatArray | float, r: FloatArray | float) -> FloatArray:
    """:math:`P(X > h, Y > k)` for standard bivariate normal X, Y with correlation r.

    Genz's (2004) method (the ``MVBVU`` routine that ``mvtnorm`` uses): Drezner and
    Wesolowsky's integral in :math:`\\arcsin r` for :math:`|r| < 0.925`, and the
    integral of the difference from the :math:`|r| = 1` limit beyond, with 6-, 12-
    or 20-point Gauss-Legendre rules; about 15 significant digits.  Elementwise over
    broadcast arrays.
    """
    hh, kk, rr = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(h, k, r))
    shape = hh.shape
    hh, kk, rr = hh.ravel(), kk.ravel(), rr.ravel()
    out = np.empty(hh.shape)
    ar = np.abs(rr)
    with np.errstate(all="ignore"):
        high = ar >= 0.925
        if high.any():
            out[high] = _bvn_high(hh[high], kk[high], rr[high])
        rule = np.where(high, -1, _rule(ar))
        for g in range(3):
            sel = rule == g
            if sel.any():
                h_, k_, r_ = hh[sel], kk[sel], rr[sel]
                asr = np.arcsin(r_)
                total = _dw_total(h_, k_, asr, g)
                out[sel] = total * asr / (2.0 * _TWOPI) + _phi(-h_) * _phi(-k_)
    return out.reshape(shape)


def _quadrants(
    cut_row: FloatArray, cut_col: FloatArray, rho: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """The four cell probabilities, as pmvnorm's limits map to Genz's MVBVN:
    ``bvn_upper(-c, -r, rho)``, ``(c, -r, -rho)``, ``(-c, r, -rho)``, ``(c, r, rho)``.

    For :math:`|\\rho| < 0.925` the four share their quadrature sum bit for bit
    (sin is odd and the products of h, k and sin change sign together), so it is
    summed once: the results are those of the four calls, four times faster.
    """
    ar = np.abs(rho)
    rule = _rule(ar)
    rule[ar >= 0.925] = -1
    pa = np.empty(rho.shape)
    pb, pc, pd = np.empty_like(pa), np.empty_like(pa), np.empty_like(pa)
    high = rule == -1
    if high.any():
        cr, cc, rh = cut_row[high], cut_col[high], rho[high]
        pa[high] = _bvn_high(-cc, -cr, rh)
        pb[high] = _bvn_high(cc, -cr, -rh)
        pc[high] = _bvn_high(-cc, cr, -rh)
        pd[high] = _bvn_high(cc, cr, rh)
    lo_c, hi_c = _phi(cut_col), _phi(-cut_col)
    lo_r, hi_r = _phi(cut_row), _phi(-cut_row)
    for g in range(3):
        mask = rule == g
        count = int(np.count_nonzero(mask))
        if count == 0:
            continue
        sel: BoolArray | slice = slice(None) if count == rho.size else mask
        asr = np.arcsin(rho[sel])
        total = _dw_total(-cut_col[sel], -cut_row[sel], asr, g)
        plus = total * asr / (2.0 * _TWOPI)
        minus = total * -asr / (2.0 * _TWOPI)
        pa[sel] = plus + lo_c[sel] * lo_r[sel]
        pb[sel] = minus + hi_c[sel] * lo_r[sel]
        pc[sel] = minus + lo_c[sel] * hi_r[sel]
        pd[sel] = plus + hi_c[sel] * hi_r[sel]
    return pa, pb, pc, pd


def _negloglik(
    rho: FloatArray, cut_row: FloatArray, cut_col: FloatArray,
    a: FloatArray, b: FloatArray, c: FloatArray, d: FloatArray,
) -> FloatArray:
    """metafor's ``fn``: minus the log-likelihood of each table at its point (inf
    where a cell probability is not positive)."""
    rho = np.where(np.abs(rho) > _MAXCOR, np.copysign(_MAXCOR, rho), rho)
    p_a, p_b, p_c, p_d = _quadrants(cut_row, cut_col, rho)
    bad = (p_a <= 0) | (p_b <= 0) | (p_c <= 0) | (p_d <= 0)
    val = -(a * np.log(p_a) + b * np.log(p_b) + c * np.log(p_c) + d * np.log(p_d))
    out: FloatArray = np.where(bad, np.inf, val)
    return out


def _objective(cells: FloatArray) -> Objective:
    """The negative log-likelihood of the tables ``cells`` (rows a, b, c, d) at
    points of chosen tables, in blocks of at most ``_BLOCK`` points."""

    def f(rows: IntArray, rho: FloatArray, cut_row: FloatArray, cut_col: FloatArray) -> FloatArray:
        out = np.empty(rows.shape[0])
        for s in range(0, rows.shape[0], _BLOCK):
            e = s + _BLOCK
            a, b, c, d = cells[:, rows[s:e]]
            out[s:e] = _negloglik(rho[s:e], cut_row[s:e], cut_col[s:e], a, b, c, d)
        return out

    return f


def _ndtri(p: FloatArray) -> FloatArray:
    """The standard normal quantile, Wichura's (1988) AS 241 (``PPND16``), as R's
    ``qnorm``, for p in (0, 1)."""
    q = p - 0.5
    out = np.empty(p.shape)
    central = np.abs(q) <= 0.425
    if central.any():
        qc = q[central]
        r = 0.180625 - qc * qc
        num = (((((((2.5090809287301226727e3 * r + 3.3430575583588128105e4) * r
                    + 6.7265770927008700853e4) * r + 4.5921953931549871457e4) * r
                  + 1.3731693765509461125e4) * r + 1.9715909503065514427e3) * r
                + 1.3314166789178437745e2) * r + 3.3871328727963666080e0)
        den = (((((((5.2264952788528545610e3 * r + 2.8729085735721942674e4) * r
                    + 3.9307895800092710610e4) * r + 2.1213794301586595867e4) * r
                  + 5.3941960214247511077e3) * r + 6.8718700749205790830e2) * r
                + 4.2313330701600911252e1) * r + 1.0)
        out[central] = qc * num / den
    tail = ~central
    if tail.any():
        qt = q[tail]
        r = np.where(qt <= 0.0, p[tail], 1.0 - p[tail])
        r = np.sqrt(-np.log(r))
        near = r <= 5.0
        rn = r - 1.6
        num_n = (((((((7.74545014278341407640e-4 * rn + 2.27238449892691845833e-2) * rn
                      + 2.41780725177450611770e-1) * rn + 1.27045825245236838258e0) * rn
                    + 3.64784832476320460504e0) * rn + 5.76949722146069140550e0) * rn
                  + 4.63033784615654529590e0) * rn + 1.42343711074968357734e0)
        den_n = (((((((1.05075007164441684324e-9 * rn + 5.47593808499534494600e-4) * rn
                      + 1.51986665636164571966e-2) * rn + 1.48103976427480074590e-1) * rn
                    + 6.89767334985100004550e-1) * rn + 1.67638483018380384940e0) * rn
                  + 2.05319162663775882187e0) * rn + 1.0)
        rf = r - 5.0
        num_f = (((((((2.01033439929228813265e-7 * rf + 2.71155556874348757815e-5) * rf
                      + 1.24266094738807843860e-3) * rf + 2.65321895265761230930e-2) * rf
                    + 2.96560571828504891230e-1) * rf + 1.78482653991729133580e0) * rf
                  + 5.46378491116411436990e0) * rf + 6.65790464350110377720e0)
        den_f = (((((((2.04426310338993978564e-15 * rf + 1.42151175831644588870e-7) * rf
                      + 1.84631831751005468180e-5) * rf + 7.86869131145613259100e-4) * rf
                    + 1.48753612908506148525e-2) * rf + 1.36929880922735805310e-1) * rf
                  + 5.99832206555887937690e-1) * rf + 1.0)
        x = np.where(near, num_n / den_n, num_f / den_f)
        out[tail] = np.where(qt < 0.0, -x, x)
    return out


def _brent_fmin(
    f: Callable[[IntArray, FloatArray], FloatArray], m: int, ax: float, bx: float, tol: float
) -> FloatArray:
    """R's ``optimize`` (Brent's ``localmin``, as R's ``Brent_fmin``) for m functions
    in lockstep: each row keeps its own bracket and steps, and leaves when its
    bracket is small enough; ``f(rows, x)`` evaluates the functions of ``rows``."""
    golden = (3.0 - math.sqrt(5.0)) * 0.5
    eps = math.sqrt(sys.float_info.epsilon)
    result = np.empty(m)
    rows: IntArray = np.arange(m)
    a = np.full(m, ax)
    b = np.full(m, bx)
    v = a + golden * (b - a)
    w = v.copy()
    x = v.copy()
    d = np.zeros(m)
    e = np.zeros(m)
    fx = f(rows, x)
    fv = fx.copy()
    fw = fx.copy()
    tol3 = tol / 3.0
    while True:
        xm = (a + b) * 0.5
        tol1 = eps * np.abs(x) + tol3
        t2 = tol1 * 2.0
        done = np.abs(x - xm) <= t2 - (b - a) * 0.5
        if done.any():
            result[rows[done]] = x[done]
            keep = ~done
            if not keep.any():
                return result
            rows, a, b, v, w, x, d, e, fx, fv, fw, xm, tol1, t2 = (
                z[keep] for z in (rows, a, b, v, w, x, d, e, fx, fv, fw, xm, tol1, t2)
            )
        # parabolic fit where the step before last was large enough
        use = np.abs(e) > tol1
        r = (x - w) * (fx - fv)
        q = (x - v) * (fx - fw)
        p = (x - v) * q - (x - w) * r
        q = (q - r) * 2.0
        qpos = q > 0.0
        p = np.where(use, np.where(qpos, -p, p), 0.0)
        q = np.where(use, np.where(qpos, q, -q), 0.0)
        r = np.where(use, e, 0.0)
        e = np.where(use, d, e)
        golden_step = (np.abs(p) >= np.abs(q * 0.5 * r)) | (p <= q * (a - x)) | (p >= q * (b - x))
        left = x < xm
        e_gold = np.where(left, b - x, a - x)
        d_par = p / q
        u = x + d_par
        d_par = np.where((u - a < t2) | (b - u < t2), np.where(left, tol1, -tol1), d_par)
        e = np.where(golden_step, e_gold, e)
        d = np.where(golden_step, golden * e_gold, d_par)
        u = np.where(np.abs(d) >= tol1, x + d, np.where(d > 0.0, x + tol1, x - tol1))
        fu = f(rows, u)
        better = fu <= fx
        below = u < x
        # fu <= fx: the bracket shrinks to the side of u, u is the new x
        a_new = np.where(better, np.where(below, a, x), np.where(below, u, a))
        b_new = np.where(better, np.where(below, x, b), np.where(below, b, u))
        second = ~better & ((fu <= fw) | (w == x))
        third = ~better & ~second & ((fu <= fv) | (v == x) | (v == w))
        v_new = np.where(better | second, w, np.where(third, u, v))
        fv_new = np.where(better | second, fw, np.where(third, fu, fv))
        w_new = np.where(better, x, np.where(second, u, w))
        fw_new = np.where(better, fx, np.where(second, fu, fw))
        x = np.where(better, u, x)
        fx = np.where(better, fu, fx)
        a, b, v, fv, w, fw = a_new, b_new, v_new, fv_new, w_new, fw_new


def _nelder_mead(
    f: Objective, start: FloatArray, reltol: float, maxit: int = 500
) -> tuple[FloatArray, BoolArray]:
    """R's ``optim(method = "Nelder-Mead")`` (``nmmin``), default settings
    (reflection 1, contraction 0.5, expansion 2, ``abstol = -Inf``), for the m rows
    of ``start`` (m, 3) in lockstep: each row takes its own branch (reflection,
    expansion, contraction, shrink) and stops on its own; each step evaluates the
    objective once for all rows that need a value.  Returns the minimisers and
    whether the function was finite at each start (nmmin's error otherwise)."""
    m, n = start.shape
    alpha, beta, gamma = 1.0, 0.5, 2.0
    n1 = n + 1
    ci = n + 1  # the centroid's column
    result = np.full((m, n), np.nan)
    all_rows: IntArray = np.arange(m)
    fval = f(all_rows, start[:, 0], start[:, 1], start[:, 2])
    ok: BoolArray = np.isfinite(fval)
    rows = all_rows[ok]
    start = start[ok]
    fval = fval[ok]
    m = rows.shape[0]
    convtol = reltol * (np.abs(fval) + reltol)
    # p[:, i, j]: i < n coordinates, i = n the value; columns 0..n vertices, n+1 centroid
    p = np.zeros((m, n1, n + 2))
    p[:, n, 0] = fval
    p[:, :n, 0] = start
    big_l = np.zeros(m, dtype=np.intp)
    size = np.zeros(m)
    step = np.zeros(m)
    for i in range(n):
        cand = 0.1 * np.abs(start[:, i])
        step = np.where(cand > step, cand, step)
    step = np.where(step == 0.0, 0.1, step)
    for j in range(1, n1):
        p[:, :n, j] = start
        trystep = step.copy()
        same = p[:, j - 1, j] == start[:, j - 1]
        while same.any():
            p[same, j - 1, j] = start[same, j - 1] + trystep[same]
            trystep[same] *= 10.0
            same = p[:, j - 1, j] == start[:, j - 1]
        size += trystep
    oldsize = size
    calcvert = np.ones(m, dtype=bool)
    funcount = np.ones(m, dtype=np.intp)

    def evaluate(sel: IntArray, pts: FloatArray) -> FloatArray:
        val = f(rows[sel], pts[:, 0], pts[:, 1], pts[:, 2])
        return np.where(np.isfinite(val), val, _BIG)

    while m > 0:
        idx: IntArray = np.arange(m)
        cv = idx[calcvert]
        if cv.size:
            vr_rows = np.repeat(cv, n1)
            vr_cols = np.tile(np.arange(n1), cv.size)
            other = vr_cols != big_l[vr_rows]
            vr_rows, vr_cols = vr_rows[other], vr_cols[other]
            p[vr_rows, n, vr_cols] = evaluate(vr_rows, p[vr_rows, :n, vr_cols])
            funcount[cv] += n
            calcvert[cv] = False
        vl = p[idx, n, big_l]
        vh = vl.copy()
        big_h = big_l.copy()
        for j in range(n1):
            other = big_l != j
            val = p[:, n, j]
            lower = other & (val < vl)
            big_l = np.where(lower, j, big_l)
            vl = np.where(lower, val, vl)
            higher = other & (val > vh)
            big_h = np.where(higher, j, big_h)
            vh = np.where(higher, val, vh)
        stop = vh <= vl + convtol
        # centroid of all vertices but the highest, and the reflection through it
        temp = -p[idx, :n, big_h]
        for j in range(n1):
            temp = temp + p[:, :n, j]
        p[:, :n, ci] = temp / n
        bvec = (1.0 + alpha) * p[:, :n, ci] - alpha * p[idx, :n, big_h]
        go = idx[~stop]
        vr = np.zeros(m)
        vr[go] = evaluate(go, bvec[go])
        funcount[go] += 1
        expand = ~stop & (vr < vl)
        contract = ~stop & ~expand
        # expansion: remember the reflected point in the centroid's column
        ex = idx[expand]
        p[ex, n, ci] = vr[ex]
        new = gamma * bvec[ex] + (1 - gamma) * p[ex, :n, ci]
        p[ex, :n, ci] = bvec[ex]
        bvec[ex] = new
        # contraction: the reflected point replaces the highest if it is lower
        co = idx[contract & (vr < vh)]
        p[co, :n, big_h[co]] = bvec[co]
        p[co, n, big_h[co]] = vr[co]
        co = idx[contract]
        bvec[co] = (1 - beta) * p[co, :n, big_h[co]] + beta * p[co, :n, ci]
        f2 = np.zeros(m)
        f2[go] = evaluate(go, bvec[go])
        funcount[go] += 1
        h_cur = p[idx, n, big_h]
        took = expand & (f2 < vr)
        put = expand | (contract & (f2 < h_cur))
        new_pt = np.where(took[:, None] | contract[:, None], bvec, p[:, :n, ci])
        new_val = np.where(took | contract, f2, vr)
        pu = idx[put]
        p[pu, :n, big_h[pu]] = new_pt[pu]
        p[pu, n, big_h[pu]] = new_val[pu]
        shrink = contract & ~put & (vr >= vh)
        sh = idx[shrink]
        if sh.size:
            low = big_l[sh]
            s_size = np.zeros(sh.size)
            for j in range(n1):
                other = low != j
                for i in range(n):
                    base = p[sh, i, low]
                    moved = np.where(other, beta * (p[sh, i, j] - base) + base, p[sh, i, j])
                    p[sh, i, j] = moved
                    s_size = np.where(other, s_size + np.abs(moved - base), s_size)
            calcvert[sh] = True
            smaller = s_size < oldsize[sh]
            oldsize[sh[smaller]] = s_size[smaller]
            stop[sh[~smaller]] = True
        stop |= funcount > maxit
        if stop.any():
            fin = idx[stop]
            result[rows[fin]] = p[fin, :n, big_l[fin]]
            keep = ~stop
            rows, p, big_l, calcvert, funcount, oldsize, convtol = (
                z[keep] for z in (rows, p, big_l, calcvert, funcount, oldsize, convtol)
            )
            m = rows.shape[0]
    return result, ok


def _optim_hessian(f: Objective, par: FloatArray, ndeps: float = 1e-3) -> FloatArray:
    """R's ``optimHess`` without a gradient, for the m rows of ``par`` (m, 3):
    central differences of the central-difference gradient, symmetrised (NaN rows
    where a gradient component is not finite, R's error).  All 36 points of every
    row are evaluated at once; ``dpar`` drifts by rounding exactly as in R."""
    m, n = par.shape
    pts = np.empty((m, n, 2, n, 2, n))  # (row, i, ±, j, ±, coordinate)
    dpar = par.copy()
    for i in range(n):
        for s, shift in enumerate((ndeps, -2.0 * ndeps)):
            dpar[:, i] = dpar[:, i] + shift
            for j in range(n):
                pts[:, i, s, j, :, :] = dpar[:, None, :]
                pts[:, i, s, j, 0, j] = dpar[:, j] + ndeps
                pts[:, i, s, j, 1, j] = dpar[:, j] - ndeps
        dpar[:, i] = dpar[:, i] + ndeps
    flat = pts.reshape(-1, n)
    rows: IntArray = np.repeat(np.arange(m), 4 * n * n)
    val = f(rows, flat[:, 0], flat[:, 1], flat[:, 2]).reshape(m, n, 2, n, 2)
    df = (val[..., 0] - val[..., 1]) / (2.0 * ndeps)  # (row, i, ±, j)
    bad = ~np.isfinite(df).all(axis=(1, 2, 3))
    hess = (df[:, :, 0, :] - df[:, :, 1, :]) / (2.0 * ndeps)
    for i in range(n):
        for j in range(i):
            tmp = 0.5 * (hess[:, i, j] + hess[:, j, i])
            hess[:, i, j] = tmp
            hess[:, j, i] = tmp
    hess[bad] = np.nan
    return hess


def _inverse_00(hess: FloatArray) -> FloatArray:
    """``chol2inv(chol(H))[1, 1]`` of each 3×3 H (NaN where H is not positive
    definite): the squared norm of the first column of :math:`L^{-1}`."""
    h = hess
    l00 = np.sqrt(h[:, 0, 0])
    l10 = h[:, 1, 0] / l00
    l20 = h[:, 2, 0] / l00
    d11 = h[:, 1, 1] - l10 * l10
    l11 = np.sqrt(d11)
    l21 = (h[:, 2, 1] - l20 * l10) / l11
    d22 = h[:, 2, 2] - l20 * l20 - l21 * l21
    l22 = np.sqrt(d22)
    y0 = 1.0 / l00
    y1 = -(l10 * y0) / l11
    y2 = -(l20 * y0 + l21 * y1) / l22
    vi = y0 * y0 + y1 * y1 + y2 * y2
    pd = (h[:, 0, 0] > 0) & (d11 > 0) & (d22 > 0)
    out: FloatArray = np.where(pd, vi, np.nan)
    return out


def _fit(cells: FloatArray) -> tuple[FloatArray, FloatArray]:
    """metafor's two-stage fit of the tables ``cells`` (4, m), none with an empty
    margin or two empty cells on a diagonal: ``(rho, vi)``."""
    a, b, c, d = cells
    ni = a + b + c + d
    row0 = _ndtri((a + b) / ni)
    col0 = _ndtri((a + c) / ni)
    f = _objective(cells)

    def fixed(rows: IntArray, rho: FloatArray) -> FloatArray:
        val = f(rows, rho, row0[rows], col0[rows])
        # R's optimize replaces NA/Inf by the largest double
        return np.where(np.isfinite(val), val, _DBL_MAX)

    rho0 = _brent_fmin(fixed, cells.shape[1], -1.0, 1.0, sys.float_info.epsilon**0.25)
    start = np.column_stack([rho0, row0, col0])
    par, ok = _nelder_mead(f, start, math.sqrt(sys.float_info.epsilon))
    rho = par[:, 0].copy()
    vi = np.full(cells.shape[1], np.nan)
    if ok.any():
        hess = _optim_hessian(_objective(cells[:, ok]), par[ok])
        vi[ok] = _inverse_00(hess)
        # a non-finite gradient is an error in R: no estimate either
        rho[np.flatnonzero(ok)[np.isnan(hess).any(axis=(1, 2))]] = np.nan
    return rho, vi


def tetrachoric(
    a: FloatArray, b: FloatArray, c: FloatArray, d: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Tetrachoric correlations and their variances (NaN rows stay NaN).

    Every table runs metafor's two-stage maximum likelihood fit, all tables in
    lockstep (see the module notes).  Tables with an empty margin give ``(0, inf)``
    and tables with two empty off-diagonal (diagonal) cells ``(1, 0)``
    (``(-1, 0)``), as in metafor; a table whose fit fails (a non-finite likelihood
    at the start or a non-finite gradient in the Hessian) gives NaN, where metafor
    stops with an error.
    """
    cells = np.stack([np.asarray(z, dtype=np.float64) for z in (a, b, c, d)])
    k = cells.shape[1]
    yi = np.full(k, np.nan)
    vi = np.full(k, np.nan)
    finite = np.isfinite(cells).all(axis=0)
    a, b, c, d = cells
    empty = finite & ((a + b == 0) | (c + d == 0) | (a + c == 0) | (b + d == 0))
    pos = finite & ~empty & (b == 0) & (c == 0)
    neg = finite & ~empty & ~pos & (a == 0) & (d == 0)
    yi[empty], vi[empty] = 0.0, np.inf
    yi[pos], vi[pos] = 1.0, 0.0
    yi[neg], vi[neg] = -1.0, 0.0
    todo = np.flatnonzero(finite & ~empty & ~pos & ~neg)
    with np.errstate(all="ignore"):
        for s in range(0, todo.size, _CHUNK):
            rows = todo[s:s + _CHUNK]
            yi[rows], vi[rows] = _fit(cells[:, rows])
    fitted = np.zeros(k, dtype=bool)
    fitted[todo] = True
    yi[fitted & np.isfinite(yi) & ((b == 0) | (c == 0))] = 1.0
    yi[fitted & np.isfinite(yi) & ((a == 0) | (d == 0))] = -1.0
    return yi, vi
