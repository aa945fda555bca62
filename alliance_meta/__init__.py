"""alliance_meta: typed, vectorised meta-analysis that reproduces R's metafor.

The public API is what this module exports (see ``__all__``); modules whose names
start with an underscore are private and may change without notice.
"""

from __future__ import annotations

from alliance_meta import datasets, exceptions
from alliance_meta._bias import (
    EggerTest,
    FailSafeN,
    RankCorrelationTest,
    TrimAndFillResult,
    egger_test,
    fail_safe_n,
    rank_correlation_test,
    trim_and_fill,
)
from alliance_meta._data import EffectSize, Moderator, Study, StudySet
from alliance_meta._influence import (
    CumulativeResult,
    InfluenceResult,
    LeaveOneOutResult,
    cumulative,
    influence,
    leave_one_out,
)
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
from alliance_meta._subgroup import SubgroupResult, subgroup_analysis
from alliance_meta.diagnostics.selection import (
    SelectionMetaRegressionResult,
    SelectionModelResult,
    selection_model,
)
from alliance_meta.results.base import ConfidenceInterval

__version__ = "0.1.0"

__all__ = [
    "BackTransformed",
    "ConfidenceInterval",
    "CumulativeResult",
    "EffectSize",
    "EggerTest",
    "FailSafeN",
    "HeterogeneityCI",
    "InfluenceResult",
    "IntervalArray",
    "LeaveOneOutResult",
    "ManyHeterogeneityCI",
    "ManyPoolResult",
    "MetaRegressionResult",
    "Moderator",
    "PermutationTestResult",
    "PoolResult",
    "Prediction",
    "RankCorrelationTest",
    "SelectionMetaRegressionResult",
    "SelectionModelResult",
    "Study",
    "StudySet",
    "SubgroupResult",
    "TrimAndFillResult",
    "__version__",
    "cumulative",
    "datasets",
    "egger_test",
    "exceptions",
    "fail_safe_n",
    "fixed_effect",
    "influence",
    "leave_one_out",
    "meta_regression",
    "pool_many",
    "random_effects",
    "rank_correlation_test",
    "selection_model",
    "subgroup_analysis",
    "trim_and_fill",
]
