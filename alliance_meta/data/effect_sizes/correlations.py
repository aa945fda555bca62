"""Correlations: COR, UCOR, ZCOR, and partial and semi-partial correlations.

The formulas are metafor 3.8.1's ``escalc`` (Viechtbauer, 2010).  As in metafor
4 and later, a correlation may also be given as a t statistic ``ti``, a signed
two-sided p-value ``pi`` or an F(1, df) statistic ``fi`` with its sample size
(:math:`r = t/\\sqrt{t^2 + df}`, Lipsey & Wilson, 2001, Appendix B).

These measures take the artefact corrections of :func:`alliance_meta.escalc`
(``rxx``, ``ryy``, ``ux``; Hunter & Schmidt, 2015).
"""

from __future__ import annotations

import numpy as np

from alliance_meta.data.effect_sizes import transforms as tf
from alliance_meta.data.effect_sizes._common import (
    by_vtype,
    correlation_range,
    finite_or,
    replmiss,
    statistic_t,
    wmean,
)
from alliance_meta.data.effect_sizes.hypergeometric import hyp2f1_aa
from alliance_meta.data.measures import (
    CheckFn,
    Computed,
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

_FAMILY = "correlations"
_REF_METAFOR = "Viechtbauer (2010), metafor's escalc"


def _prepare_r(given: Inputs) -> tuple[dict[str, FloatArray], list[Problem]]:
    ni = given.get("ni")
    t, problems = statistic_t(given, None if ni is None else ni - 2.0, "ni", "df = ni - 2")
    ri = given.get("ri")
    if t is not None and ni is not None:
        with np.errstate(all="ignore"):
            ri = replmiss(ri, t / np.sqrt(t**2 + ni - 2.0))
    if ri is None or ni is None:
        raise AllianceMetaError(
            "correlations need ri (or ti, pi, fi) and ni; missing "
            + ", ".join(x for x, v in (("ri", ri), ("ni", ni)) if v is None)
        )
    return {"ri": ri, "ni": ni}, problems


def _check_r(measure: str, min_n: int) -> CheckFn:
    def check(inputs: Inputs, options: EscalcOptions) -> list[Problem]:
        r, n = inputs["ri"], inputs["ni"]
        rf, nf = finite_or(r, 0.0), finite_or(n, 1e9)
        if measure == "ZCOR":
            at_one = "r = ±1 has an infinite Fisher z (ZCOR)"
        else:
            at_one = f"r = ±1 has a zero sampling variance ({measure})"
        reason = {
            "ZCOR": "its variance is 1/(n − 3)",
            "COR": "metafor gives no variance for n <= 3",
            "UCOR": "the bias correction needs n > 4",
        }[measure]
        return [
            correlation_range("ri", r),
            Problem("ri", at_one, np.abs(rf) == 1.0),
            Problem("ni", f"{measure} needs n > {min_n} ({reason})", nf <= min_n),
        ]

    return check


def _cor(inputs: Inputs, options: EscalcOptions) -> Computed:
    ri, ni = inputs["ri"], inputs["ni"]
    yi = np.array(ri, dtype=np.float64)
    return Computed(yi, _cor_variance(yi, ri, ni, options), ni=ni)


def _ucor(inputs: Inputs, options: EscalcOptions) -> Computed:
    ri, ni = inputs["ri"], inputs["ni"]
    yi = ri * hyp2f1_aa(0.5, (ni - 2.0) / 2.0, 1.0 - ri**2)
    return Computed(yi, _cor_variance(yi, ri, ni, options), ni=ni)


def _cor_variance(
    yi: FloatArray, ri: FloatArray, ni: FloatArray, options: EscalcOptions
) -> FloatArray:
    k = yi.shape[0]

    def ub() -> FloatArray:
        # Olkin & Pratt (1958): unbiased estimate of the variance of UCOR
        return yi**2 - (
            1.0 - (ni - 3.0) / (ni - 2.0) * (1.0 - ri**2) * hyp2f1_aa(1.0, ni / 2.0, 1.0 - ri**2)
        )

    vi = by_vtype(
        options,
        k,
        {
            "UB": ub,
            "LS": lambda: (1.0 - yi**2) ** 2 / (ni - 1.0),
            "AV": lambda: np.broadcast_to((1.0 - wmean(yi, ni) ** 2) ** 2 / (ni - 1.0), (k,)),
        },
    )
    return np.where(ni <= 3, np.nan, vi)


def _zcor(inputs: Inputs, options: EscalcOptions) -> Computed:
    ri, ni = inputs["ri"], inputs["ni"]
    yi = 0.5 * np.log((1.0 + ri) / (1.0 - ri))
    vi = 1.0 / (ni - 3.0)
    return Computed(yi, np.where(ni <= 3, np.nan, vi), ni=ni)



register(
    MeasureSpec(
        name="COR",
        description="raw (Pearson product-moment) correlation",
        compute=_cor,
        check=_check_r("COR", 3),
        vtypes=("LS", "AV"),
        natural_name="r",
        analysis_name="r",
        axis_label="Correlation (r)",
        analysis_label="Correlation (r)",
        formula=":math:`r_i`",
        variance=":math:`(1 - r_i^2)^2/(n_i - 1)`",
        reference="Pearson (1896); " + _REF_METAFOR,
        family=_FAMILY,
        inputs=("ri", "ni"),
        alternatives=("ti", "pi", "fi"),
        prepare=_prepare_r,
        bounded=True,
        correction="r",
    )
)
register(
    MeasureSpec(
        name="UCOR",
        description="unbiased estimate of the correlation (Olkin & Pratt)",
        compute=_ucor,
        check=_check_r("UCOR", 4),
        vtypes=("LS", "UB", "AV"),
        natural_name="r",
        analysis_name="r",
        axis_label="Correlation (r)",
        analysis_label="Correlation (r)",
        formula=r":math:`r_i\,{}_2F_1(\tfrac12, \tfrac12; \tfrac{n_i-2}{2}; 1 - r_i^2)`",
        variance=":math:`(1 - y_i^2)^2/(n_i - 1)`",
        reference="Olkin & Pratt (1958)",
        family=_FAMILY,
        inputs=("ri", "ni"),
        alternatives=("ti", "pi", "fi"),
        prepare=_prepare_r,
        bounded=True,
        correction="r",
    )
)
register(
    MeasureSpec(
        name="ZCOR",
        description="Fisher's r-to-z transformed correlation",
        compute=_zcor,
        check=_check_r("ZCOR", 3),
        back_transform=tf.ztor,
        transform=tf.rtoz,
        natural_name="r",
        analysis_name="z",
        axis_label="Correlation (r)",
        analysis_label="Fisher's z",
        axis="function",
        formula=r":math:`\tfrac12 \log\frac{1 + r_i}{1 - r_i}`",
        variance=":math:`1/(n_i - 3)`",
        reference="Fisher (1921)",
        back_transform_label=r":math:`\tanh z` (metafor's ``transf.ztor``)",
        family=_FAMILY,
        inputs=("ri", "ni"),
        alternatives=("ti", "pi", "fi"),
        prepare=_prepare_r,
        bounded=True,
        correction="z",
    )
)


# ------------------------------------------------------------ partial correlations


def _prepare_partial(semi: bool) -> PrepareFn:
    def prepare(given: Inputs) -> tuple[dict[str, FloatArray], list[Problem]]:
        ni, mi, r2i = given.get("ni"), given.get("mi"), given.get("r2i")
        df = None if ni is None or mi is None else ni - mi - 1.0
        t, problems = statistic_t(given, df, "mi", "df = ni - mi - 1")
        if semi and r2i is not None:
            r2 = finite_or(r2i, 0.5)
            problems.insert(0, Problem("r2i", "R^2 must lie in [0, 1]", (r2 < 0) | (r2 > 1)))
        ri = given.get("ri")
        if t is not None and df is not None:
            with np.errstate(all="ignore"):
                if semi:
                    if r2i is not None:
                        ri = replmiss(ri, t * np.sqrt(1.0 - r2i) / np.sqrt(df))
                else:
                    ri = replmiss(ri, t / np.sqrt(t**2 + df))
        needed = {"ri": ri, "ni": ni, "mi": mi}
        if semi:
            needed["r2i"] = r2i
        absent = [k for k, v in needed.items() if v is None]
        if absent:
            what = "semi-partial" if semi else "partial"
            args = "ti (or ri, pi), ni, mi" + (", r2i" if semi else "")
            raise AllianceMetaError(
                f"{what} correlations need {args}; missing {', '.join(absent)}"
            )
        return {k: v for k, v in needed.items() if v is not None}, problems

    return prepare


def _check_partial(measure: str) -> CheckFn:
    def check(inputs: Inputs, options: EscalcOptions) -> list[Problem]:
        ri, ni, mi = inputs["ri"], inputs["ni"], inputs["mi"]
        nf, mf = finite_or(ni, 1e9), finite_or(mi, 0.0)
        what = "a semi-partial correlation" if measure == "SPCOR" else "a partial correlation"
        problems = [
            correlation_range("ri", ri, what),
            Problem("ni", "a sample size must be > 0", nf <= 0),
            Problem("mi", "the number of predictors mi must not be negative", mf < 0),
            Problem(
                "mi",
                "mi must be < ni - 1: the residual df ni - mi - 1 must be > 0",
                (nf > 0) & (mf >= 0) & (nf - mf - 1.0 <= 0),
            ),
        ]
        if measure in ("PCOR", "ZPCOR"):
            rf = finite_or(ri, 0.0)
            problems.append(
                Problem("ri", f"r = ±1 has an infinite z ({measure})"
                        if measure == "ZPCOR" else "r = ±1 has a zero sampling variance (PCOR)",
                        np.abs(rf) == 1.0)
            )
        if measure == "SPCOR":
            r2 = finite_or(inputs["r2i"], 0.5)
            problems.append(Problem("r2i", "R^2 must lie in [0, 1]", (r2 < 0) | (r2 > 1)))
            rf = finite_or(ri, 0.0)
            problems.append(
                Problem("r2i", "the squared semi-partial correlation cannot exceed the "
                        "model's R^2", rf**2 > r2)
            )
        return problems

    return check


def _pcor(inputs: Inputs, options: EscalcOptions) -> Computed:
    ri, ni, mi = inputs["ri"], inputs["ni"], inputs["mi"]
    yi = np.array(ri, dtype=np.float64)
    k = yi.shape[0]
    vi = by_vtype(
        options,
        k,
        {
            "LS": lambda: (1.0 - yi**2) ** 2 / (ni - mi - 1.0),
            "AV": lambda: (1.0 - wmean(yi, ni) ** 2) ** 2 / (ni - mi - 1.0),
        },
    )
    return Computed(yi, vi, ni=ni)


def _zpcor(inputs: Inputs, options: EscalcOptions) -> Computed:
    ri, ni, mi = inputs["ri"], inputs["ni"], inputs["mi"]
    yi = 0.5 * np.log((1.0 + ri) / (1.0 - ri))
    return Computed(yi, 1.0 / (ni - mi - 1.0), ni=ni)


def _spcor(inputs: Inputs, options: EscalcOptions) -> Computed:
    ri, ni, r2i = inputs["ri"], inputs["ni"], inputs["r2i"]
    yi = np.array(ri, dtype=np.float64)
    k = yi.shape[0]

    def var(y: FloatArray | float) -> FloatArray:
        out: FloatArray = (r2i**2 - 2.0 * r2i + (r2i - y**2) + 1.0 - (r2i - y**2) ** 2) / ni
        return out

    vi = by_vtype(options, k, {"LS": lambda: var(yi), "AV": lambda: var(wmean(yi, ni))})
    return Computed(yi, vi, ni=ni)



register(
    MeasureSpec(
        name="PCOR",
        description="partial correlation (from a regression t statistic)",
        inputs=("ri", "ni", "mi"),
        prepare=_prepare_partial(False),
        check=_check_partial("PCOR"),
        compute=_pcor,
        vtypes=("LS", "AV"),
        natural_name="r",
        analysis_name="r",
        axis_label="Partial correlation",
        analysis_label="Partial correlation",
        correction="r",
        formula=r":math:`t_i/\sqrt{t_i^2 + n_i - m_i - 1}`",
        variance=":math:`(1 - y_i^2)^2/(n_i - m_i - 1)`",
        reference="Olkin & Siotani (1976); Aloe & Thompson (2013)",
        family=_FAMILY,
        alternatives=("ti", "pi"),
        bounded=True,
    )
)
register(
    MeasureSpec(
        name="ZPCOR",
        description="Fisher's r-to-z transformed partial correlation",
        inputs=("ri", "ni", "mi"),
        prepare=_prepare_partial(False),
        check=_check_partial("ZPCOR"),
        compute=_zpcor,
        back_transform=tf.ztor,
        transform=tf.rtoz,
        natural_name="r",
        analysis_name="z",
        axis_label="Partial correlation",
        analysis_label="Fisher's z of the partial correlation",
        axis="function",
        correction="z",
        formula=r":math:`\tfrac12 \log\frac{1 + r_i}{1 - r_i}` of PCOR",
        variance=":math:`1/(n_i - m_i - 1)`",
        reference="Fisher (1921); Aloe & Thompson (2013)",
        back_transform_label=r":math:`\tanh z`",
        family=_FAMILY,
        alternatives=("ti", "pi"),
        bounded=True,
    )
)
register(
    MeasureSpec(
        name="SPCOR",
        description="semi-partial correlation (from a regression t statistic and R²)",
        inputs=("ri", "ni", "mi", "r2i"),
        prepare=_prepare_partial(True),
        check=_check_partial("SPCOR"),
        compute=_spcor,
        vtypes=("LS", "AV"),
        natural_name="sr",
        analysis_name="sr",
        axis_label="Semi-partial correlation",
        analysis_label="Semi-partial correlation",
        correction="r",
        formula=r":math:`t_i\sqrt{1 - R^2_i}/\sqrt{n_i - m_i - 1}`",
        variance=r":math:`\{R_i^4 - 2R_i^2 + (R_i^2 - y_i^2) + 1 - (R_i^2 - y_i^2)^2\}/n_i`",
        reference="Aloe & Becker (2012)",
        family=_FAMILY,
        alternatives=("ti", "pi"),
        bounded=True,
    )
)
