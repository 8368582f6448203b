"""The ``mc_entropy`` query strategy: the entropy of the mean prediction over
stochastic forward passes (MC dropout), per pixel."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import torch

from segal_core.strategy import MonteCarloStrategy

__all__ = ["MCEntropy", "MeanProbs", "predictive_entropy"]


class MeanProbs:
    """The running sum of one batch's softmax over the passes (``[B, C, H, W]``):
    memory does not grow with the number of passes."""

    def __init__(self) -> None:
        self.passes = 0
        self._sum: torch.Tensor | None = None

    def add(self, logits: torch.Tensor) -> None:
        """Fold one pass's logits ``[B, C, H, W]`` into the sum."""
        if logits.dim() != 4:
            raise ValueError(f"logits must be [B, C, H, W], got shape {tuple(logits.shape)}")
        probs = torch.softmax(logits.float(), dim=1)
        if self._sum is None:
            self._sum = probs
        elif probs.shape != self._sum.shape:
            raise ValueError(f"pass {self.passes + 1} has shape {tuple(probs.shape)}, the first {tuple(self._sum.shape)}")
        else:
            self._sum += probs
        self.passes += 1

    def mean(self) -> torch.Tensor:
        if self._sum is None:
            raise ValueError("no pass was added")
        return self._sum / self.passes


def predictive_entropy(passes: Iterable[torch.Tensor]) -> torch.Tensor:
    """``H[mean_t p_t]`` per pixel ``[B, H, W]`` (nats) from the passes' logits (each
    ``[B, C, H, W]``, folded one at a time; a ``[T, B, C, H, W]`` tensor works too)."""
    acc = MeanProbs()
    for logits in passes:
        acc.add(logits)
    mean = acc.mean()
    return -torch.special.xlogy(mean, mean).sum(dim=1)


class MCEntropy(MonteCarloStrategy):
    """Predictive entropy with MC dropout (the "max entropy" of Gal, Islam &
    Ghahramani, 2017): the entropy of the class probabilities averaged over
    ``passes`` stochastic forward passes, per pixel, reduced per image (or region).

    Everything but the per-pixel formula comes from SegAL's
    :class:`~segal_core.strategy.MonteCarloStrategy`: the passes from the model's
    ``stochastic_logits`` capability (the smp models with ``--model-opt dropout=0.2``),
    seeded per pool item from the round's generator; the streaming over the pool;
    the reduction (``--strategy-opt reduction=mean|max|top_q``, ``q``); region units;
    and ``--strategy-opt selection=topk|power|softmax``.

    :param passes: stochastic forward passes per image (``--strategy-opt passes=16``).
    """

    name: ClassVar[str] = "mc_entropy"
    aliases: ClassVar[tuple[str, ...]] = ("MCEntropy", "max_entropy")
    description: ClassVar[str] = "entropy of the mean softmax over MC-dropout passes (segal-mcdropout)"

    def pass_scores(self, passes: Iterable[torch.Tensor]) -> torch.Tensor:
        return predictive_entropy(passes)
