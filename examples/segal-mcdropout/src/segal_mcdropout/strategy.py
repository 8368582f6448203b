"""The ``bald`` query strategy: MC dropout, BALD mutual information per pixel."""

from __future__ import annotations

from typing import ClassVar

import torch

from segal_core import PoolContext, SegalError, Strategy
from segal_core.scoring import pool_loader
from segal_core.strategy import REDUCTIONS, reduce_pixels

from .bald import PassAccumulator
from .dropout import find_network, mask_seed, mc_dropout

__all__ = ["BALD"]


class BALD(Strategy):
    """BALD (Houlsby et al. 2011) with MC dropout (Gal et al. 2017), per pixel.

    Each batch of the pool goes ``passes`` times through the trained network with
    dropout on the input of its segmentation head; the per-pixel mutual information
    ``H[mean p] - mean H[p]`` is reduced to one score per image on the device, and
    only that score is kept. Dropout masks are seeded from the round's generator and
    the item's position, so the same seed gives the same query.

    :param passes: stochastic forward passes per image (``--strategy-opt passes=16``).
    :param p: dropout probability (``--strategy-opt p=0.5``), in (0, 1).
    :param reduction: pixels to one score per image: ``mean``, ``max`` or ``top_q``.
    :param q: the fraction of the highest pixels ``top_q`` averages, in (0, 1].
    :param layer: the submodule whose input gets dropout (dotted name); default: the
        network's ``segmentation_head``, else its last layer with weights.
    """

    name: ClassVar[str] = "bald"
    aliases: ClassVar[tuple[str, ...]] = ("mc_dropout",)
    description: ClassVar[str] = "BALD mutual information from MC-dropout passes (segal-mcdropout)"

    def __init__(
        self, passes: int = 8, p: float = 0.3, reduction: str = "mean", q: float = 0.1, layer: str = ""
    ) -> None:
        if not isinstance(passes, int) or passes < 1:
            raise SegalError(f"--strategy-opt passes={passes}: must be a whole number of at least 1")
        if not (isinstance(p, (int, float)) and 0.0 < p < 1.0):
            raise SegalError(f"--strategy-opt p={p}: must be a dropout probability in (0, 1)")
        if reduction not in REDUCTIONS:
            raise SegalError(f"--strategy-opt reduction={reduction}: not one of {', '.join(REDUCTIONS)}")
        if not (isinstance(q, (int, float)) and 0.0 < q <= 1.0):
            raise SegalError(f"--strategy-opt q={q}: must be a fraction in (0, 1]")
        self.passes = passes
        self.p = float(p)
        self.reduction = reduction
        self.q = float(q)
        self.layer = layer

    def score(self, ctx: PoolContext) -> torch.Tensor:
        """One float32 per pool item on the model's device; higher = more disagreement
        between the dropout passes."""
        model = ctx.model
        if model is None:
            raise SegalError(f"strategy {self.name!r} needs a trained model")
        network = find_network(model)
        device = model.device
        total = len(ctx.pool)
        scores = torch.empty(total, dtype=torch.float32, device=device)
        if total == 0:
            return scores
        base = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
        loader = pool_loader(
            ctx.pool, batch_size=ctx.batch_size, num_workers=ctx.num_workers, pin_memory=device.type == "cuda"
        )
        done = 0
        with torch.inference_mode(), mc_dropout(network, self.p, self.layer) as dropout:
            for images, valid in loader:
                count = images.shape[0]
                images = images.to(device, non_blocking=True)
                if valid is not None:
                    valid = valid.to(device, non_blocking=True)
                acc = PassAccumulator()
                for pass_ in range(self.passes):
                    dropout.arm([mask_seed(base, done + row, pass_) for row in range(count)])
                    logits = model.logits(images)
                    dropout.check_consumed()
                    if logits.dim() != 4 or logits.shape[0] != count or logits.shape[-2:] != images.shape[-2:]:
                        raise ValueError(
                            f"{type(model).__name__}.logits returned shape {tuple(logits.shape)} for "
                            f"images {tuple(images.shape)}; expected [B, C, H, W] of the same B, H, W"
                        )
                    acc.add(logits)
                    del logits
                scores[done : done + count] = reduce_pixels(acc.scores(), valid, self.reduction, self.q)
                done += count
                del acc
                if ctx.progress is not None:
                    ctx.progress("score", done, total)
        del loader
        return scores
