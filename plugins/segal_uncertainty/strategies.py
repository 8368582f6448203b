"""The built-in query strategies: random, least confidence, margin and entropy."""

from __future__ import annotations

import torch

from segal_core import PoolContext, Strategy, UncertaintyStrategy
from segal_core.regions import RegionPick
from segal_core.strategy import RegionContext

from . import functional

__all__ = ["EntropySampling", "LeastConfidence", "MarginSampling", "RandomSampling"]


class RandomSampling(Strategy):
    """Uniform random scores: the top-k is a uniform random subset of the pool.

    Never runs the model; the scores come from the round's seeded generator, so the
    same seed gives the same query.
    """

    name = "random"
    aliases = ("RandomSampling",)
    description = "a uniformly random subset of the pool (never runs the model)"
    uses_model = False

    def __init__(self) -> None:
        pass

    def score(self, ctx: PoolContext) -> torch.Tensor:
        return torch.rand(len(ctx.pool), generator=ctx.generator, dtype=torch.float32)

    def score_regions(self, ctx: RegionContext) -> list[RegionPick]:
        """Unlabelled regions drawn uniformly with the round's generator."""
        from segal_core.regions import random_regions

        assert ctx.maps is not None
        return random_regions(
            ctx.pool, ctx.maps, budget=ctx.budget, labelled=ctx.labelled, generator=ctx.generator,
            progress=ctx.progress,
        )


class LeastConfidence(UncertaintyStrategy):
    """``1 - max_c p_c``: pixels whose best class is least probable."""

    name = "least_confidence"
    aliases = ("LeastConfidence",)
    description = "1 - max softmax probability, reduced per image"

    def pixel_scores(self, logits: torch.Tensor) -> torch.Tensor:
        return functional.least_confidence(logits)


class MarginSampling(UncertaintyStrategy):
    """``1 - (p_1 - p_2)``: pixels whose two best classes are closest."""

    name = "margin"
    aliases = ("MarginSampling",)
    description = "1 - (best - second best softmax probability), reduced per image"

    def pixel_scores(self, logits: torch.Tensor) -> torch.Tensor:
        return functional.margin(logits)


class EntropySampling(UncertaintyStrategy):
    """``-sum_c p_c log p_c``: pixels with the flattest class distribution."""

    name = "entropy"
    aliases = ("EntropySampling",)
    description = "Shannon entropy of the softmax, reduced per image"

    def pixel_scores(self, logits: torch.Tensor) -> torch.Tensor:
        return functional.entropy(logits)
