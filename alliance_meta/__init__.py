"""alliance_meta: typed, vectorised meta-analysis that reproduces R's metafor.

The public API is what this module exports (see ``__all__``); modules whose names
start with an underscore are private and may change without notice.
"""

from __future__ import annotations

from alliance_meta import datasets, exceptions
from alliance_meta.data import conversions
from alliance_meta.data.effect_sizes.artefacts import correct_r
from alliance_meta.data.escalc import EscalcResult, escalc
from alliance_meta.data.study import EffectSize, Moderator, Study, StudySet
from alliance_meta.diagnostics.bias import (
    EggerTest,
    FailSafeN,
    RankCorrelationTest,
    TrimAndFillResult,
    egger_test,
    fail_safe_n,
    rank_correlation_test,
    trim_and_fill,
)
from alliance_meta.diagnostics.influence import (
    CumulativeResult,
    InfluenceResult,
    LeaveOneOutResult,
    cumulative,
    influence,
    leave_one_out,
)
from alliance_meta.diagnostics.multilevel import (
    MultilevelInfluenceResult,
    MultilevelLeaveOneOutResult,
)
from alliance_meta.diagnostics.pet_peese import PetPeeseResult, pet_peese
from alliance_meta.diagnostics.selection import (
    SelectionMetaRegressionResult,
    SelectionModelResult,
    selection_model,
)
from alliance_meta.models.che import CHEResult, CHESensitivity, che, che_sensitivity
from alliance_meta.models.control import Control
from alliance_meta.models.many import ManyHeterogeneityCI, ManyPoolResult, pool_many
from alliance_meta.models.metareg import (
    MetaRegressionResult,
    PermutationTestResult,
    Prediction,
    meta_regression,
)
from alliance_meta.models.multilevel import (
    AggregateResult,
    LikelihoodRatioTest,
    MultilevelResult,
    VarianceComponentCI,
    aggregate,
    covariance_matrix,
    likelihood_ratio_test,
    multilevel,
    multivariate,
)
from alliance_meta.models.pooling import (
    BackTransformed,
    HeterogeneityCI,
    PoolResult,
    fixed_effect,
    random_effects,
)
from alliance_meta.models.robust import RobustResult, RobustWaldTest, robust
from alliance_meta.models.subgroup import SubgroupResult, subgroup_analysis
from alliance_meta.results.base import ConfidenceInterval, IntervalArray

__version__ = "0.1.0"

__all__ = [
    "AggregateResult",
    "BackTransformed",
    "CHEResult",
    "CHESensitivity",
    "ConfidenceInterval",
    "Control",
    "CumulativeResult",
    "EffectSize",
    "EggerTest",
    "EscalcResult",
    "FailSafeN",
    "HeterogeneityCI",
    "InfluenceResult",
    "IntervalArray",
    "LeaveOneOutResult",
    "LikelihoodRatioTest",
    "ManyHeterogeneityCI",
    "ManyPoolResult",
    "MetaRegressionResult",
    "Moderator",
    "MultilevelInfluenceResult",
    "MultilevelLeaveOneOutResult",
    "MultilevelResult",
    "PermutationTestResult",
    "PetPeeseResult",
    "PoolResult",
    "Prediction",
    "RankCorrelationTest",
    "RobustResult",
    "RobustWaldTest",
    "SelectionMetaRegressionResult",
    "SelectionModelResult",
    "Study",
    "StudySet",
    "SubgroupResult",
    "TrimAndFillResult",
    "VarianceComponentCI",
    "__version__",
    "aggregate",
    "che",
    "che_sensitivity",
    "conversions",
    "correct_r",
    "covariance_matrix",
    "cumulative",
    "datasets",
    "egger_test",
    "escalc",
    "exceptions",
    "fail_safe_n",
    "fixed_effect",
    "influence",
    "leave_one_out",
    "likelihood_ratio_test",
    "meta_regression",
    "multilevel",
    "multivariate",
    "pet_peese",
    "pool_many",
    "random_effects",
    "rank_correlation_test",
    "robust",
    "selection_model",
    "subgroup_analysis",
    "trim_and_fill",
]
