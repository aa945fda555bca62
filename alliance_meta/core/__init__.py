"""The vectorised numerical core: pure functions over float64 arrays.

Nothing here imports attrs, pandas or the public classes.  The modules, by layer:

* :mod:`~alliance_meta.core.arrays`: array types and row reductions;
* :mod:`~alliance_meta.core.kernel`: padded analyses and the weighted quantities
  of their projection (:class:`Kernel`, with :class:`Need` flags);
* :mod:`~alliance_meta.core.roots`: safeguarded, vectorised root finding;
* :mod:`~alliance_meta.core.estimators`: the τ² estimator registry;
* :mod:`~alliance_meta.core.vcov`: model-based coefficient covariances (``test``);
* :mod:`~alliance_meta.core.inference`: the one inference layer (tests, intervals);
* :mod:`~alliance_meta.core.heterogeneity`: Q, I², H² and Q-profile intervals;
* :mod:`~alliance_meta.core.univariate`: the fit of m univariate models;
* :mod:`~alliance_meta.core.layout`: padding, long format, chunks and threads.

The names below are the core's interface to the model layer.
"""

from alliance_meta.core.estimators import (
    ESTIMATORS,
    METHOD_ALIASES,
    MOMENT_METHODS,
    CoreMethod,
    Tau2Result,
    estimate_tau2,
    tau2_se,
)
from alliance_meta.core.heterogeneity import QProfile, qprofile
from alliance_meta.core.kernel import Kernel, Need, kernel_from_padded, wls_qr
from alliance_meta.core.stopping import StopRule
from alliance_meta.core.univariate import CoreFit, SlimFit, fit, fit_given_tau2
from alliance_meta.core.vcov import TESTS, CoreTest

__all__ = [
    "ESTIMATORS",
    "METHOD_ALIASES",
    "MOMENT_METHODS",
    "TESTS",
    "CoreFit",
    "CoreMethod",
    "CoreTest",
    "Kernel",
    "Need",
    "QProfile",
    "SlimFit",
    "StopRule",
    "Tau2Result",
    "estimate_tau2",
    "fit",
    "fit_given_tau2",
    "kernel_from_padded",
    "qprofile",
    "tau2_se",
    "wls_qr",
]
