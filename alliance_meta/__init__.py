"""alliance_meta: typed, vectorised meta-analysis that reproduces R's metafor.

The public API is what this module exports (see ``__all__``); modules whose names
start with an underscore are private and may change without notice.
"""

from __future__ import annotations

from alliance_meta import datasets, exceptions
from alliance_meta._data import EffectSize, Moderator, Study, StudySet
from alliance_meta._metareg import (
    MetaRegressionResult,
    PermutationTestResult,
    Prediction,
    meta_regression,
)
from alliance_meta._pooling import (
    BackTransformed,
    HeterogeneityCI,
    IntervalArray,
    ManyHeterogeneityCI,
    ManyPoolResult,
    PoolResult,
    fixed_effect,
    pool_many,
    random_effects,
)
from alliance_meta._results_base import ConfidenceInterval
from alliance_meta._subgroup import SubgroupResult, subgroup_analysis

__version__ = "0.1.0"

__all__ = [
    "BackTransformed",
    "ConfidenceInterval",
    "EffectSize",
    "HeterogeneityCI",
    "IntervalArray",
    "ManyHeterogeneityCI",
    "ManyPoolResult",
    "MetaRegressionResult",
    "Moderator",
    "PermutationTestResult",
    "PoolResult",
    "Prediction",
    "Study",
    "StudySet",
    "SubgroupResult",
    "__version__",
    "datasets",
    "exceptions",
    "fixed_effect",
    "meta_regression",
    "pool_many",
    "random_effects",
    "subgroup_analysis",
]
