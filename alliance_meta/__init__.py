"""alliance_meta: typed, vectorised meta-analysis that reproduces R's metafor.

The public API is what this module exports (see ``__all__``); modules whose names
start with an underscore are private and may change without notice.

Importing the package loads none of its submodules (nor numpy, scipy, pandas or
statsmodels): each public name is imported from its module on first access
(:pep:`562`), so ``import alliance_meta`` is cheap and a fit loads only what it
needs.  ``dir()``, ``from alliance_meta import *`` and static type checkers see
every name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from alliance_meta.results.prediction import Prediction
    from alliance_meta.results.wald import ModelWaldTest

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
    "ModelWaldTest",
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

#: Public name -> the module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    "correct_r": "alliance_meta.data.effect_sizes.artefacts",
    "EscalcResult": "alliance_meta.data.escalc",
    "escalc": "alliance_meta.data.escalc",
    "EffectSize": "alliance_meta.data.study",
    "Moderator": "alliance_meta.data.study",
    "Study": "alliance_meta.data.study",
    "StudySet": "alliance_meta.data.study",
    "EggerTest": "alliance_meta.diagnostics.bias",
    "FailSafeN": "alliance_meta.diagnostics.bias",
    "RankCorrelationTest": "alliance_meta.diagnostics.bias",
    "TrimAndFillResult": "alliance_meta.diagnostics.bias",
    "egger_test": "alliance_meta.diagnostics.bias",
    "fail_safe_n": "alliance_meta.diagnostics.bias",
    "rank_correlation_test": "alliance_meta.diagnostics.bias",
    "trim_and_fill": "alliance_meta.diagnostics.bias",
    "CumulativeResult": "alliance_meta.diagnostics.influence",
    "InfluenceResult": "alliance_meta.diagnostics.influence",
    "LeaveOneOutResult": "alliance_meta.diagnostics.influence",
    "cumulative": "alliance_meta.diagnostics.influence",
    "influence": "alliance_meta.diagnostics.influence",
    "leave_one_out": "alliance_meta.diagnostics.influence",
    "MultilevelInfluenceResult": "alliance_meta.diagnostics.multilevel",
    "MultilevelLeaveOneOutResult": "alliance_meta.diagnostics.multilevel",
    "PetPeeseResult": "alliance_meta.diagnostics.pet_peese",
    "pet_peese": "alliance_meta.diagnostics.pet_peese",
    "SelectionMetaRegressionResult": "alliance_meta.diagnostics.selection",
    "SelectionModelResult": "alliance_meta.diagnostics.selection",
    "selection_model": "alliance_meta.diagnostics.selection",
    "CHEResult": "alliance_meta.models.che",
    "CHESensitivity": "alliance_meta.models.che",
    "che": "alliance_meta.models.che",
    "che_sensitivity": "alliance_meta.models.che",
    "Control": "alliance_meta.models.control",
    "ManyHeterogeneityCI": "alliance_meta.models.many",
    "ManyPoolResult": "alliance_meta.models.many",
    "pool_many": "alliance_meta.models.many",
    "MetaRegressionResult": "alliance_meta.models.metareg",
    "PermutationTestResult": "alliance_meta.models.metareg",
    "meta_regression": "alliance_meta.models.metareg",
    "AggregateResult": "alliance_meta.models.multilevel",
    "LikelihoodRatioTest": "alliance_meta.models.multilevel",
    "MultilevelResult": "alliance_meta.models.multilevel",
    "VarianceComponentCI": "alliance_meta.models.multilevel",
    "aggregate": "alliance_meta.models.multilevel",
    "covariance_matrix": "alliance_meta.models.multilevel",
    "likelihood_ratio_test": "alliance_meta.models.multilevel",
    "multilevel": "alliance_meta.models.multilevel",
    "multivariate": "alliance_meta.models.multilevel",
    "BackTransformed": "alliance_meta.models.pooling",
    "HeterogeneityCI": "alliance_meta.models.pooling",
    "PoolResult": "alliance_meta.models.pooling",
    "fixed_effect": "alliance_meta.models.pooling",
    "random_effects": "alliance_meta.models.pooling",
    "RobustResult": "alliance_meta.models.robust",
    "RobustWaldTest": "alliance_meta.models.robust",
    "robust": "alliance_meta.models.robust",
    "SubgroupResult": "alliance_meta.models.subgroup",
    "subgroup_analysis": "alliance_meta.models.subgroup",
    "ConfidenceInterval": "alliance_meta.results.base",
    "IntervalArray": "alliance_meta.results.base",
    "Prediction": "alliance_meta.results.prediction",
    "ModelWaldTest": "alliance_meta.results.wald",
}
#: Public submodules, imported on first access.
_MODULES: dict[str, str] = {
    "datasets": "alliance_meta.datasets",
    "exceptions": "alliance_meta.exceptions",
    "conversions": "alliance_meta.data.conversions",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access (:pep:`562`)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later accesses are ordinary attribute lookups
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
