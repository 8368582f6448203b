"""``class_balanced_entropy``: entropy weighted by the rarity of the predicted class.

Segmentation data is long-tailed (road and sky fill most CamVid pixels, a sign a few
hundred). Plain uncertainty keeps asking for the classes the model already
confuses; weighting each pixel's entropy by the inverse frequency of its predicted
class in the labelled set asks for the rare ones.

The class frequencies come from the labels themselves (:class:`ClassPixelTally`),
counted once per labelled image and again only when the image gains labels (a
region query), never by decoding every mask every round.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from segal_core import Dataset, SegalError, UncertaintyStrategy
from segal_core.regions import RegionPick
from segal_core.strategy import PoolContext, RegionContext

from . import functional

__all__ = ["ClassBalancedEntropy", "ClassPixelTally", "class_weights"]


class ClassPixelTally:
    """Labelled pixels per class, kept up to date incrementally.

    Each labelled image's per-class counts are kept with the labelled-pixel count
    they were made at (the ledger's); :meth:`counts` decodes an image's labels only
    when it is new or its count changed. Memory: ``C`` integers per labelled image.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, torch.Tensor]] = {}
        self.decoded = 0  # masks read so far (tests check the tally is incremental)

    def counts(self, labelled: Dataset, pixels: Sequence[int], num_classes: int) -> torch.Tensor:
        """int64 ``[num_classes]``: labelled pixels per class over ``labelled`` (its
        masks; ``ignore_index`` and values outside the classes do not count).
        ``pixels[i]`` stamps item ``i`` (``-1`` when not given: read once)."""
        total = torch.zeros(num_classes, dtype=torch.int64)
        for index, sample_id in enumerate(labelled.ids):
            stamp = int(pixels[index]) if index < len(pixels) else -1
            known = self._seen.get(sample_id)
            if known is None or known[0] != stamp or known[1].numel() != num_classes:
                mask = labelled.mask(index).reshape(-1).to("cpu", torch.int64)
                keep = (mask >= 0) & (mask < num_classes) & (mask != labelled.ignore_index)
                known = (stamp, torch.bincount(mask[keep], minlength=num_classes))
                self._seen[sample_id] = known
                self.decoded += 1
            total += known[1]
        return total


def class_weights(counts: torch.Tensor, alpha: float = 1.0, max_weight: float = 1000.0) -> torch.Tensor:
    """float32 weight per class from labelled pixel counts ``[C]``:
    ``min(max_weight, (1 / (C f_c)) ** alpha)`` with the smoothed frequency
    ``f_c = (n_c + 1) / (N + C)``. Equal frequencies weigh 1; a class ten times
    rarer than average weighs about ``10 ** alpha``; an unseen class gets the largest
    weight, capped at ``max_weight``."""
    counts = counts.double()
    classes = counts.numel()
    freq = (counts + 1.0) / (counts.sum() + classes)
    return (1.0 / (classes * freq)).pow(alpha).clamp(max=max_weight).float()


class ClassBalancedEntropy(UncertaintyStrategy):
    """Per-pixel entropy times the weight of the pixel's predicted class
    (:func:`class_weights` of the labelled pixels per class), reduced per image or
    region. Rare classes in the labelled set raise a pixel's score; with no labels
    given (outside a run) it is plain entropy.

    :param alpha: how strongly rarity counts (``weight = (1 / (C f)) ** alpha``;
        0 = plain entropy).
    :param max_weight: the largest weight (an unseen class's would be about the
        number of labelled pixels over ``C``).
    :param reduction: ``mean``, ``max`` or ``top_q``; :param q: for ``top_q``.
    """

    name = "class_balanced_entropy"
    aliases = ("cb_entropy", "ClassBalancedEntropy")
    description = "entropy weighted by the inverse labelled frequency of the predicted class"
    #: Per item, given the weights, which every rank computes alike from the labelled set.
    shardable = True

    def __init__(self, alpha: float = 1.0, max_weight: float = 1000.0, reduction: str = "mean", q: float = 0.1) -> None:
        super().__init__(reduction=reduction, q=q)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 10:
            raise SegalError(f"--strategy-opt alpha={alpha}: must be a number in [0, 10]")
        if isinstance(max_weight, bool) or not isinstance(max_weight, (int, float)) or not max_weight >= 1:
            raise SegalError(f"--strategy-opt max_weight={max_weight}: must be a number >= 1")
        self.alpha = float(alpha)
        self.max_weight = float(max_weight)
        #: The class weights of this round (``None``: all 1), set by :meth:`score`.
        self.weights: torch.Tensor | None = None
        self.tally = ClassPixelTally()

    def pixel_scores(self, logits: torch.Tensor) -> torch.Tensor:
        entropy = functional.entropy(logits)
        if self.weights is None:
            return entropy
        if self.weights.numel() != logits.shape[1]:
            raise ValueError(f"{self.weights.numel()} class weights for logits of {logits.shape[1]} classes")
        winner = logits.argmax(dim=1)
        return entropy * self.weights.to(logits.device)[winner]

    def _set_weights(self, ctx: PoolContext) -> None:
        self.weights = None
        if ctx.labelled_data is None or ctx.model is None:
            return
        classes = len(ctx.labelled_data.classes)
        counts = self.tally.counts(ctx.labelled_data, ctx.labelled_pixels, classes)
        self.weights = class_weights(counts, self.alpha, self.max_weight).to(ctx.model.device)

    def score(self, ctx: PoolContext) -> torch.Tensor:
        """Entropy weighted by the labelled set's class frequencies, per image."""
        self._set_weights(ctx)
        return super().score(ctx)

    def score_regions(self, ctx: RegionContext) -> list[RegionPick]:
        """The same per pixel, reduced per region."""
        self._set_weights(ctx)
        return super().score_regions(ctx)
