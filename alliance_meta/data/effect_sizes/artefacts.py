"""Artefact corrections of correlations (Hunter & Schmidt, 2015; psychmeta).

:func:`correct_r` disattenuates a correlation for unreliability of x (``rxx``) and
y (``ryy``) and corrects it for direct range restriction of x (``ux``, Thorndike's
Case II), in the order of Hunter & Schmidt (2015, ch. 3) and psychmeta's
``correct_r(correction = "uvdrr_x")``: y's unreliability in the restricted sample,
then range restriction, then x's unreliability in the unrestricted population.  The
sampling variance is corrected consistently, multiplied by the squared correction
factor :math:`(r_c/r)^2 a^2` with the range-restriction refinement :math:`a` of
Hunter & Schmidt (2015, ch. 3), as psychmeta's ``.refine_var_rr``.

References
----------
Hunter, J. E., & Schmidt, F. L. (2015). *Methods of Meta-Analysis: Correcting Error
and Bias in Research Findings* (3rd ed., Schmidt & Hunter). Sage, ch. 3.

Dahlke, J. A., & Wiernik, B. M. (2019). psychmeta: An R package for psychometric
meta-analysis. *Applied Psychological Measurement*, 43(5), 415-416.
"""

from __future__ import annotations

import numpy as np

from alliance_meta.data.measures import FloatArray

__all__ = ["correct_r"]


def correct_r(
    r: FloatArray,
    rxx: FloatArray | None = None,
    ryy: FloatArray | None = None,
    ux: FloatArray | None = None,
    *,
    rxx_restricted: bool = True,
) -> tuple[FloatArray, FloatArray]:
    """Correct correlations for unreliability and direct range restriction.

    Parameters
    ----------
    r : ndarray
        Observed correlations.
    rxx, ryy : ndarray, optional
        Reliabilities of x and y (1 when not given).  ``ryy`` is the reliability in
        the study (restricted) sample; ``rxx`` too unless ``rxx_restricted=False``
        says it is the unrestricted population's.
    ux : ndarray, optional
        Ratio of the restricted (study) SD of x to its unrestricted SD (1 when not
        given: no range restriction).
    rxx_restricted : bool
        Whether ``rxx`` was observed in the restricted sample; it is then carried to
        the unrestricted population as :math:`\\rho_{xx_a} = 1 - u_x^2(1 - \\rho_{xx_i})`.

    Returns
    -------
    r_c : ndarray
        Corrected correlations.
    factor : ndarray
        :math:`(r_c / r)\\,a`, the factor of the standard error; the variance of
        :math:`r_c` is ``factor**2`` times that of ``r``.

    Notes
    -----
    With :math:`U = 1/u_x`,

    .. math::
        r_1 = \\frac{r}{\\sqrt{\\rho_{yy}}}, \\qquad
        r_2 = \\frac{U r_1}{\\sqrt{(U^2 - 1) r_1^2 + 1}}, \\qquad
        r_c = \\frac{r_2}{\\sqrt{\\rho_{xx_a}}}, \\qquad
        a = \\frac{1}{(U^2 - 1) r^2 + 1}

    Without range restriction this is :math:`r_c = r/\\sqrt{\\rho_{xx}\\rho_{yy}}` with
    variance :math:`v/(\\rho_{xx}\\rho_{yy})` (Hunter & Schmidt, 2015, ch. 3).
    """
    k = r.shape[0]
    one = np.ones(k)
    rx = one if rxx is None else np.broadcast_to(rxx, (k,)).astype(np.float64)
    ry = one if ryy is None else np.broadcast_to(ryy, (k,)).astype(np.float64)
    u = one if ux is None else np.broadcast_to(ux, (k,)).astype(np.float64)
    rxxa = 1.0 - u**2 * (1.0 - rx) if rxx_restricted else rx
    big_u = 1.0 / u
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = r / np.sqrt(ry)
        r2 = big_u * r1 / np.sqrt((big_u**2 - 1.0) * r1**2 + 1.0)
        rc = r2 / np.sqrt(rxxa)
        a = 1.0 / ((big_u**2 - 1.0) * r**2 + 1.0)
        # (r_c / r) at r = 0 is its limit U / sqrt(ryy rxxa)
        ratio = np.where(r == 0, big_u / np.sqrt(ry * rxxa), rc / r)
    return rc, ratio * a
