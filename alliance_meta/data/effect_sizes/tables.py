"""2×2 tables: RR, OR, RD, PETO, AS, PHI, YUQ, YUY, RTET, PBIT, OR2D, OR2DN, OR2DL;
paired tables (matched pairs, pre-post): MPRD, MPRR, MPOR, MPORC, MPPETO, MPORM;
and genotype counts: REH.

Inputs are the cells ``ai``, ``bi`` (group 1: events, non-events), ``ci``, ``di``
(group 2), or ``ai``, ``n1i``, ``ci``, ``n2i`` (metafor's ``bi = n1i - ai``).  Zero
cells get ``add`` as in metafor 3.8.1: ``add = 1/2`` to all four cells of a table
with a zero cell (``to = "only0"``), ``add = 0`` for AS, PHI and RTET; ``drop00``
sets aside tables without events (or non-events) in both groups.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from alliance_meta.data.effect_sizes import transforms as tf
from alliance_meta.data.effect_sizes._common import (
    add_to_cells,
    by_vtype,
    correlation_range,
    counts_problems,
    drop_double_zero,
    finite_or,
    replmiss,
    wmean,
)
from alliance_meta.data.effect_sizes.tetrachoric import tetrachoric
from alliance_meta.data.measures import (
    CheckFn,
    Computed,
    ComputeFn,
    EscalcOptions,
    FloatArray,
    Inputs,
    MeasureSpec,
    PrepareFn,
    Problem,
    register,
)
from alliance_meta.exceptions import AllianceMetaError

__all__: list[str] = []

_CELLS = ("ai", "bi", "ci", "di")


def _prepare(extra: tuple[str, ...] = ()) -> PrepareFn:
    def prepare(given: Inputs) -> tuple[dict[str, FloatArray], list[Problem]]:
        problems: list[Problem] = []
        out: dict[str, FloatArray] = {}
        for event, other, size in (("ai", "bi", "n1i"), ("ci", "di", "n2i")):
            x, y, n = given.get(event), given.get(other), given.get(size)
            if x is None:
                raise AllianceMetaError(f"2x2 tables need {event}")
            if n is not None:
                nf = finite_or(n, np.inf)
                problems.append(
                    Problem(event, f"the event count {event} exceeds the group size {size}",
                            finite_or(x, 0.0) > nf)
                )
                if y is not None:
                    problems.append(
                        Problem(size, f"{size} is not {event} + {other}",
                                np.isfinite(x) & np.isfinite(y) & np.isfinite(n) & (n != x + y))
                    )
                y = replmiss(y, n - x)
            if y is None:
                raise AllianceMetaError(f"2x2 tables need {other} (or {size})")
            out[event], out[other] = x, y
        for name in extra:
            if name not in given:
                raise AllianceMetaError(f"this measure also needs {name}")
            out[name] = given[name]
        return {k: out[k] for k in (*_CELLS, *extra)}, problems

    return prepare


def _check(measure: str, paired: bool) -> CheckFn:
    def check(inputs: Inputs, options: EscalcOptions) -> list[Problem]:
        cells = {name: inputs[name] for name in _CELLS}
        problems = counts_problems(cells)
        af, bf, cf, df = (finite_or(inputs[name], 1.0) for name in _CELLS)
        if paired:
            problems.append(Problem("ai", "the table is empty (ai + bi + ci + di = 0)",
                                    af + bf + cf + df == 0))
        else:
            problems.append(Problem("ai", "group 1 is empty (ai + bi = 0)", (af + bf) == 0))
            problems.append(Problem("ci", "group 2 is empty (ci + di = 0)", (cf + df) == 0))
        if measure == "RTET":
            # on the cells after add/to, as metafor fits them
            (aa, bb, cc, dd), _ = add_to_cells([af, bf, cf, df], options, 0.0)
            problems.append(
                Problem("ai", "RTET needs both outcomes observed (ai + ci > 0 and bi + di > 0)",
                        ((aa + cc) == 0) | ((bb + dd) == 0))
            )
            # metafor sets r = ±1 for a zero cell and takes the variance from the
            # Hessian of a likelihood that is flat there: numerical noise of 1e6 and
            # more.  Such a table needs add/to.
            zero = (aa == 0) | (bb == 0) | (cc == 0) | (dd == 0)
            problems.append(
                Problem("ai", "RTET of a table with a zero cell is ±1, on the boundary, and "
                        "has no estimable variance; give add (e.g. add=0.5) to correct zero "
                        "cells", zero)
            )
        if measure == "MPORM":
            problems.append(correlation_range("ri", inputs["ri"]))
        return problems

    return check


class _Table:
    """The cells after ``drop00`` and ``add``, and the derived quantities."""

    def __init__(self, inputs: Inputs, options: EscalcOptions, default_add: float) -> None:
        au, bu, cu, du = (inputs[name] for name in _CELLS)
        self.excluded = drop_double_zero(options, [(au, cu), (bu, du)])
        if np.any(self.excluded):
            au, bu, cu, du = (np.where(self.excluded, np.nan, x) for x in (au, bu, cu, du))
        self.n_unadjusted = inputs["ai"] + inputs["bi"] + inputs["ci"] + inputs["di"]
        (a, b, c, d), corrected = add_to_cells([au, bu, cu, du], options, default_add)
        self.corrected = corrected & ~self.excluded
        self.a, self.b, self.c, self.d = a, b, c, d
        self.n1 = a + b
        self.n2 = c + d
        self.ni = self.n1 + self.n2
        self.p1 = a / self.n1
        self.p2 = c / self.n2

    def done(self, yi: FloatArray, vi: FloatArray, ni: FloatArray | None = None) -> Computed:
        return Computed(
            np.asarray(yi, dtype=np.float64),
            np.asarray(vi, dtype=np.float64),
            corrected=self.corrected,
            excluded=self.excluded,
            ni=self.n_unadjusted if ni is None else ni,
        )


def _log_or(t: _Table) -> tuple[FloatArray, FloatArray]:
    yi = np.log(t.p1 / (1.0 - t.p1)) - np.log(t.p2 / (1.0 - t.p2))
    return yi, 1.0 / t.a + 1.0 / t.b + 1.0 / t.c + 1.0 / t.d


def _compute(name: str, default_add: float) -> ComputeFn:
    def compute(inputs: Inputs, options: EscalcOptions) -> Computed:
        t = _Table(inputs, options, default_add)
        a, b, c, d, n1, n2, ni, p1, p2 = t.a, t.b, t.c, t.d, t.n1, t.n2, t.ni, t.p1, t.p2
        k = a.shape[0]
        if name == "RR":
            return t.done(np.log(p1) - np.log(p2), 1.0 / a - 1.0 / n1 + 1.0 / c - 1.0 / n2)
        if name in ("OR", "OR2D", "OR2DL", "OR2DN"):
            yi, vi = _log_or(t)
            if name in ("OR2D", "OR2DL"):
                return t.done(math.sqrt(3.0) / math.pi * yi, 3.0 / math.pi**2 * vi)
            if name == "OR2DN":
                return t.done(yi / 1.65, vi / 1.65**2)
            return t.done(yi, vi)
        if name == "RD":
            vi = by_vtype(
                options,
                k,
                {
                    "UB": lambda: p1 * (1.0 - p1) / (n1 - 1.0) + p2 * (1.0 - p2) / (n2 - 1.0),
                    "LS": lambda: p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2,
                    "AV": lambda: (lambda q1, q2: q1 * (1.0 - q1) / n1 + q2 * (1.0 - q2) / n2)(
                        wmean(p1, n1), wmean(p2, n2)
                    ),
                },
            )
            return t.done(p1 - p2, vi)
        if name == "PETO":
            xt, yt = a + c, b + d
            ei = xt * n1 / ni
            v = xt * yt * (n1 / ni) * (n2 / ni) / (ni - 1.0)
            return t.done((a - ei) / v, 1.0 / v)
        if name == "AS":
            return t.done(np.arcsin(np.sqrt(p1)) - np.arcsin(np.sqrt(p2)),
                          1.0 / (4.0 * n1) + 1.0 / (4.0 * n2))
        if name == "PHI":
            return _phi(t, options)
        if name in ("YUQ", "YUY"):
            odds = (a / b) / (c / d)
            if name == "YUQ":
                yi = (odds - 1.0) / (odds + 1.0)
                inv = 1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d
                return t.done(yi, 0.25 * (1.0 - yi**2) ** 2 * inv)
            yi = (np.sqrt(odds) - 1.0) / (np.sqrt(odds) + 1.0)
            return t.done(yi, (1.0 - yi**2) ** 2 / 16.0 * (1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d))
        if name == "RTET":
            yi, vi = tetrachoric(a, b, c, d)
            return t.done(yi, vi)
        if name == "PBIT":
            z1, z2 = special.ndtri(p1), special.ndtri(p2)
            vi = (2.0 * math.pi * p1 * (1.0 - p1) * np.exp(z1**2) / n1
                  + 2.0 * math.pi * p2 * (1.0 - p2) * np.exp(z2**2) / n2)
            return t.done(z1 - z2, vi)
        # paired tables
        if name == "MPORM":
            yi, vi = _log_or(t)
            nm = np.round(ni / 2.0)
            ri = inputs["ri"]
            si = (ri * np.sqrt(a * b * c * d) + a * b) / nm
            delta = nm**2 * (nm * si - a * b) / (a * b * c * d)
            return t.done(yi, vi - 2.0 * delta / nm, ni=np.round(t.n_unadjusted / 2.0))
        pi12, pi21 = b / ni, c / ni
        pi1_, pi_1 = (a + b) / ni, (a + c) / ni
        if name == "MPRD":
            vi = pi12 * (1.0 - pi12) / ni + 2.0 * pi12 * pi21 / ni + pi21 * (1.0 - pi21) / ni
            return t.done(pi1_ - pi_1, vi)
        if name == "MPRR":
            return t.done(np.log(pi1_) - np.log(pi_1), (pi12 + pi21) / (ni * pi1_ * pi_1))
        if name == "MPOR":
            yi = np.log(pi1_ / (1.0 - pi1_)) - np.log(pi_1 / (1.0 - pi_1))
            vi = (pi12 * (1.0 - pi12) + pi21 * (1.0 - pi21) + 2.0 * pi12 * pi21) / (
                ni * pi1_ * (1.0 - pi1_) * pi_1 * (1.0 - pi_1)
            )
            return t.done(yi, vi)
        if name == "MPORC":
            return t.done(np.log(b) - np.log(c), 1.0 / b + 1.0 / c)
        if name == "MPPETO":
            ei = (b + c) / 2.0
            v = (b + c) / 4.0
            return t.done((b - ei) / v, 1.0 / v)
        raise AssertionError(name)  # pragma: no cover

    return compute


def _phi(t: _Table, options: EscalcOptions) -> Computed:
    a, b, c, d, n1, n2, ni, p1, p2 = t.a, t.b, t.c, t.d, t.n1, t.n2, t.ni, t.p1, t.p2
    yi = (a * d - b * c) / np.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    q1, q2 = 1.0 - p1, 1.0 - p2
    pi1_, pi2_ = (a + b) / ni, (c + d) / ni
    pi_1, pi_2 = (a + c) / ni, (b + d) / ni

    def st() -> FloatArray:
        out: FloatArray = (
            (n1 + n2) ** 2
            * (
                4.0 * n1**3 * p1**2 * p2 * q1**2 * q2
                + 4.0 * n2**3 * p1 * p2**2 * q1 * q2**2
                + n1 * n2**2 * p2 * q2 * (p2 * q1 + p1 * q2) * (p2 * q1 + p1 * (4.0 * q1 + q2))
                + n1**2 * n2 * p1 * q1 * (p2 * q1 + p1 * q2) * (p1 * q2 + p2 * (q1 + 4.0 * q2))
            )
        ) / (4.0 * (a + c) ** 3 * (b + d) ** 3)
        return out

    def ls() -> FloatArray:
        out: FloatArray = (
            1.0 / ni
            * (
                1.0
                - yi**2
                + yi * (1.0 + 0.5 * yi**2) * (pi1_ - pi2_) * (pi_1 - pi_2)
                / np.sqrt(pi1_ * pi2_ * pi_1 * pi_2)
                - 0.75
                * yi**2
                * ((pi1_ - pi2_) ** 2 / (pi1_ * pi2_) + (pi_1 - pi_2) ** 2 / (pi_1 * pi_2))
            )
        )
        return out

    return t.done(yi, by_vtype(options, yi.shape[0], {"ST": st, "LS": ls, "CS": ls}))


def _spec(
    name: str,
    description: str,
    *,
    paired: bool = False,
    default_add: float = 0.5,
    vtypes: tuple[str, ...] = ("LS",),
    log_ratio: str = "",
    natural: str = "",
    axis_label: str,
    bounded: bool = False,
    extra: tuple[str, ...] = (),
    formula: str,
    variance: str,
    reference: str,
) -> None:
    family = "paired 2x2 tables" if paired else "2x2 tables"
    base = dict(
        name=name, family=family, description=description, inputs=(*_CELLS, *extra),
        alternatives=("n1i", "n2i"), compute=_compute(name, default_add),
        check=_check(name, paired), prepare=_prepare(extra), vtypes=vtypes,
        default_add=default_add, formula=formula, variance=variance, reference=reference,
        bounded=bounded,
    )
    if log_ratio:
        spec = MeasureSpec(
            back_transform=tf.exp, transform=tf.log, natural_name=log_ratio,
            analysis_name=f"log {log_ratio}", axis_label=f"{axis_label} (log scale)",
            analysis_label=f"Log {axis_label[0].lower()}{axis_label[1:]}", axis="log",
            back_transform_label=":math:`e^y`", **base,  # type: ignore[arg-type]
        )
    else:
        spec = MeasureSpec(
            natural_name=natural or name, analysis_name=natural or name,
            axis_label=axis_label, analysis_label=axis_label, **base,  # type: ignore[arg-type]
        )
    register(spec)


_P = r"p_{1i} = a_i/(a_i+b_i)"
_spec("RR", "log risk ratio", log_ratio="RR", axis_label="Risk ratio",
      formula=rf":math:`\log(p_{{1i}}/p_{{2i}})`, :math:`{_P}`",
      variance=r":math:`1/a_i - 1/n_{1i} + 1/c_i - 1/n_{2i}`",
      reference="Katz et al. (1978)")
_spec("OR", "log odds ratio", log_ratio="OR", axis_label="Odds ratio",
      formula=r":math:`\log\frac{a_id_i}{b_ic_i}`",
      variance=r":math:`1/a_i + 1/b_i + 1/c_i + 1/d_i`", reference="Woolf (1955)")
_spec("RD", "risk difference", vtypes=("LS", "UB", "AV"), axis_label="Risk difference",
      formula=r":math:`p_{1i} - p_{2i}`",
      variance=r":math:`p_{1i}(1-p_{1i})/n_{1i} + p_{2i}(1-p_{2i})/n_{2i}`",
      reference="Fleiss & Berlin (2009)")
_spec("PETO", "log odds ratio by Peto's method", log_ratio="OR", axis_label="Odds ratio",
      formula=r":math:`(a_i - E_i)/V_i`, :math:`E_i = (a_i+c_i)n_{1i}/n_i`, "
      r":math:`V_i = \frac{(a_i+c_i)(b_i+d_i)n_{1i}n_{2i}}{n_i^2(n_i-1)}`",
      variance=r":math:`1/V_i`", reference="Yusuf et al. (1985)")
_spec("AS", "arcsine square root risk difference", default_add=0.0,
      axis_label="Arcsine square root risk difference",
      formula=r":math:`\arcsin\sqrt{p_{1i}} - \arcsin\sqrt{p_{2i}}`",
      variance=r":math:`1/(4n_{1i}) + 1/(4n_{2i})`", reference="Rücker et al. (2009)")
_spec("PHI", "phi coefficient", default_add=0.0, vtypes=("LS", "ST", "CS"), natural="phi",
      axis_label="Phi coefficient", bounded=True,
      formula=r":math:`\frac{a_id_i - b_ic_i}{\sqrt{(a_i+b_i)(c_i+d_i)(a_i+c_i)(b_i+d_i)}}`",
      variance="Yule (1912, p. 603) (``ST``: stratified sampling, Bonett, 2007)",
      reference="Yule (1912); Bonett (2007)")
_spec("YUQ", "Yule's Q", natural="Q", axis_label="Yule's Q", bounded=True,
      formula=r":math:`(\mathrm{OR}_i - 1)/(\mathrm{OR}_i + 1)`",
      variance=r":math:`\tfrac14(1-y_i^2)^2(1/a_i + 1/b_i + 1/c_i + 1/d_i)`",
      reference="Yule (1900)")
_spec("YUY", "Yule's Y", natural="Y", axis_label="Yule's Y", bounded=True,
      formula=r":math:`(\sqrt{\mathrm{OR}_i} - 1)/(\sqrt{\mathrm{OR}_i} + 1)`",
      variance=r":math:`\tfrac1{16}(1-y_i^2)^2(1/a_i + 1/b_i + 1/c_i + 1/d_i)`",
      reference="Yule (1912)")
_spec("RTET", "tetrachoric correlation", default_add=0.0, natural="r",
      axis_label="Tetrachoric correlation", bounded=True,
      formula="maximum likelihood under a bivariate normal with thresholds (metafor's "
      "``optimize`` then Nelder-Mead, replicated step by step)",
      variance="inverse of the numerical Hessian of the likelihood (``optimHess``)",
      reference="Pearson (1900); Kirk (1973)")
_spec("PBIT", "standardised mean difference by the probit transformation",
      natural="d", axis_label="Standardized mean difference (probit)",
      formula=r":math:`\Phi^{-1}(p_{1i}) - \Phi^{-1}(p_{2i})`",
      variance=r":math:`\sum_g 2\pi p_{gi}(1-p_{gi})e^{z_{gi}^2}/n_{gi}`",
      reference="Sánchez-Meca et al. (2003)")
for _name in ("OR2D", "OR2DL"):
    _spec(_name, "standardised mean difference from the log odds ratio (logistic)",
          natural="d", axis_label="Standardized mean difference (from the odds ratio)",
          formula=r":math:`\frac{\sqrt 3}{\pi}\log\mathrm{OR}_i`",
          variance=r":math:`\frac{3}{\pi^2}(1/a_i + 1/b_i + 1/c_i + 1/d_i)`",
          reference="Hasselblad & Hedges (1995); Borenstein et al. (2009, ch. 7)")
_spec("OR2DN", "standardised mean difference from the log odds ratio (normal, Cox)",
      natural="d", axis_label="Standardized mean difference (from the odds ratio)",
      formula=r":math:`\log\mathrm{OR}_i/1.65`",
      variance=r":math:`(1/a_i + 1/b_i + 1/c_i + 1/d_i)/1.65^2`",
      reference="Cox (1970); Sánchez-Meca et al. (2003)")
_spec("MPRD", "risk difference of matched pairs", paired=True,
      axis_label="Risk difference (paired)",
      formula=r":math:`(b_i - c_i)/n_i`",
      variance=r":math:`[\pi_{12}(1-\pi_{12}) + 2\pi_{12}\pi_{21} + \pi_{21}(1-\pi_{21})]/n_i`",
      reference="Newcombe (1998); Zou (2007)")
_spec("MPRR", "log risk ratio of matched pairs", paired=True, log_ratio="RR",
      axis_label="Risk ratio (paired)",
      formula=r":math:`\log\frac{a_i+b_i}{a_i+c_i}`",
      variance=r":math:`(\pi_{12}+\pi_{21})/(n_i\pi_{1\cdot}\pi_{\cdot1})`",
      reference="Zou (2007)")
_spec("MPOR", "log odds ratio of the marginals of matched pairs", paired=True,
      log_ratio="OR", axis_label="Odds ratio (paired, marginal)",
      formula=r":math:`\mathrm{logit}\,\pi_{1\cdot} - \mathrm{logit}\,\pi_{\cdot1}`",
      variance="Zou (2007)", reference="Zou (2007)")
_spec("MPORC", "conditional log odds ratio of matched pairs", paired=True, log_ratio="OR",
      axis_label="Odds ratio (paired, conditional)",
      formula=r":math:`\log(b_i/c_i)`", variance=r":math:`1/b_i + 1/c_i`",
      reference="Breslow & Day (1980)")
_spec("MPPETO", "conditional log odds ratio of matched pairs by Peto's method", paired=True,
      log_ratio="OR", axis_label="Odds ratio (paired, Peto)",
      formula=r":math:`(b_i - (b_i+c_i)/2)/((b_i+c_i)/4)`", variance=r":math:`4/(b_i+c_i)`",
      reference="Yusuf et al. (1985)")
_spec("MPORM", "marginal log odds ratio of pre-post data given their correlation",
      paired=True, log_ratio="OR", axis_label="Odds ratio (paired, marginal)", extra=("ri",),
      formula=r":math:`\log\frac{a_id_i}{b_ic_i}`",
      variance=r":math:`1/a_i + 1/b_i + 1/c_i + 1/d_i - 2\delta_i/n_i` (Elbourne et al., 2002)",
      reference="Elbourne et al. (2002)")


# ----------------------------------------------------------------------- REH


def _reh(inputs: Inputs, options: EscalcOptions) -> Computed:
    a, b, c = inputs["ai"], inputs["bi"], inputs["ci"]
    ni = a + b + c
    p0, p1, p2 = a / ni, b / ni, c / ni
    yi = np.log(p1) - np.log(2.0 * np.sqrt(p0 * p2))
    vi = ((1.0 - p1) / (4.0 * p0 * p2) + 1.0 / p1) / ni
    return Computed(yi, vi, ni=ni)


def _check_reh(inputs: Inputs, options: EscalcOptions) -> list[Problem]:
    return counts_problems({name: inputs[name] for name in ("ai", "bi", "ci")})


register(
    MeasureSpec(
        name="REH", family="genotype counts",
        description="log relative excess heterozygosity (Hardy-Weinberg)",
        inputs=("ai", "bi", "ci"), compute=_reh, check=_check_reh,
        back_transform=tf.exp, transform=tf.log, natural_name="REH",
        analysis_name="log REH", axis_label="Relative excess heterozygosity (log scale)",
        analysis_label="Log relative excess heterozygosity", axis="log", symmetric=False,
        formula=r":math:`\log\frac{p_{1i}}{2\sqrt{p_{0i}p_{2i}}}`",
        variance=r":math:`\left[\frac{1-p_{1i}}{4p_{0i}p_{2i}} + \frac1{p_{1i}}\right]/n_i`",
        reference="Ziegler et al. (2011)", back_transform_label=":math:`e^y`",
    )
)
