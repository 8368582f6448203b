"""segal_uncertainty: the built-in query strategies, registered like any third-party
plugin: random, least confidence, margin, entropy; class-balanced entropy; BALD and
the variance over MC-dropout passes; core-set (greedy k-center over embeddings).

Every one of them also takes ``--strategy-opt selection=topk|power|softmax`` (and
``beta``): see ``docs/strategies.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from segal_core import hookimpl
from segal_core.lazy import lazy_exports

_EXPORTS = {
    "EntropySampling": "strategies",
    "LeastConfidence": "strategies",
    "MarginSampling": "strategies",
    "RandomSampling": "strategies",
    "ClassBalancedEntropy": "balanced",
    "BALD": "montecarlo",
    "MCVariance": "montecarlo",
    "CoreSet": "coreset",
}
__all__ = sorted([*_EXPORTS, "functional", "segal_register_strategies"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


@hookimpl
def segal_register_strategies() -> Sequence[type]:
    """The built-in strategies."""
    from .balanced import ClassBalancedEntropy
    from .coreset import CoreSet
    from .montecarlo import BALD, MCVariance
    from .strategies import EntropySampling, LeastConfidence, MarginSampling, RandomSampling

    return [
        RandomSampling, LeastConfidence, MarginSampling, EntropySampling,
        ClassBalancedEntropy, BALD, MCVariance, CoreSet,
    ]


if TYPE_CHECKING:
    from . import functional
    from .balanced import ClassBalancedEntropy
    from .coreset import CoreSet
    from .montecarlo import BALD, MCVariance
    from .strategies import EntropySampling, LeastConfidence, MarginSampling, RandomSampling
