"""The ``Strategy`` interface and the ``UncertaintyStrategy`` base class."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch

from .dataset import Dataset
from .errors import SegalError

if TYPE_CHECKING:
    from .model import Model, Progress

__all__ = ["PoolContext", "Strategy", "UncertaintyStrategy", "REDUCTIONS"]

#: Ways to reduce per-pixel scores to one score per image.
REDUCTIONS = ("mean", "max", "top_q")


@dataclass
class PoolContext:
    """What a strategy sees when it scores the unlabelled pool.

    :param pool: the unlabelled samples only (a :class:`~segal_core.dataset.Dataset`,
        usually a :class:`~segal_core.dataset.DatasetView` of the train split).
    :param model: the model trained this round; ``None`` is never passed to a strategy
        with ``uses_model = True``.
    :param generator: a CPU ``torch.Generator`` seeded for this round (random choices).
    :param batch_size: inference batch size; ``num_workers``: DataLoader workers.
    :param progress: optional ``progress(phase, done, total)`` callback.
    """

    pool: Dataset
    model: Model | None
    generator: torch.Generator
    batch_size: int = 8
    num_workers: int = 0
    progress: Progress | None = field(default=None, repr=False)


class Strategy(abc.ABC):
    """Scores the unlabelled pool; higher score = queried first.

    A registered strategy class carries ``name`` (and optional ``aliases``,
    ``description``). Its options are keyword arguments of ``__init__`` with type
    hints; ``--strategy-opt key=value`` reaches them, coerced to the hinted type.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    #: ``False`` for strategies that never run the model (``random``).
    uses_model: ClassVar[bool] = True

    @abc.abstractmethod
    def score(self, ctx: PoolContext) -> torch.Tensor:
        """One float per pool item (``[len(ctx.pool)]``), on any device."""

    def select(self, scores: torch.Tensor, k: int) -> torch.Tensor:
        """Positions of the ``k`` highest scores, on the scores' device.

        Ties go to the lower position (a stable sort), so the same scores always give
        the same query. Non-finite scores rank last.
        """
        if k < 0 or k > scores.numel():
            raise SegalError(f"cannot select {k} samples from a pool of {scores.numel()}")
        clean = torch.nan_to_num(scores.float(), nan=-torch.inf, posinf=torch.finfo(torch.float32).max)
        order = torch.sort(clean, descending=True, stable=True).indices
        return order[:k]


class UncertaintyStrategy(Strategy):
    """Base for per-pixel uncertainty scores computed from logits, in torch.

    A subclass implements only :meth:`pixel_scores`. This class reduces them to one
    score per image over valid pixels (``reduction``: ``mean``, ``max`` or ``top_q``,
    the mean of the highest ``q`` fraction), guards against non-finite values, and
    streams the pool through the model (:func:`segal_core.scoring.score_pool`).
    """

    def __init__(self, reduction: str = "mean", q: float = 0.1) -> None:
        if reduction not in REDUCTIONS:
            raise SegalError(
                f"strategy option reduction={reduction!r} is not one of: {', '.join(REDUCTIONS)}"
            )
        if not 0.0 < q <= 1.0:
            raise SegalError(f"strategy option q={q} must be in (0, 1]")
        self.reduction = reduction
        self.q = q

    @abc.abstractmethod
    def pixel_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-pixel scores ``[B, H, W]`` from logits ``[B, C, H, W]``; higher = more
        informative. Stay on the logits' device; no host synchronisation."""

    def image_scores(self, logits: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """One score per image ``[B]`` (float32) from logits ``[B, C, H, W]``.

        ``valid`` (``[B, H, W]`` bool) excludes pixels (padding, ignored regions).
        Non-finite pixel scores count as invalid; an image with no valid pixel
        scores ``-inf`` (queried last).
        """
        pixels = self.pixel_scores(logits.float()).float()
        finite = torch.isfinite(pixels)
        keep = finite if valid is None else finite & valid.to(finite.device, torch.bool)
        flat = torch.where(keep, pixels, torch.zeros((), device=pixels.device)).flatten(1)
        keep = keep.flatten(1)
        count = keep.sum(dim=1)
        if self.reduction == "mean":
            out = flat.sum(dim=1) / count.clamp(min=1)
        elif self.reduction == "max":
            out = torch.where(keep, flat, -torch.inf).amax(dim=1)
        else:
            n = flat.shape[1]
            k = max(1, int(round(self.q * n)))
            ranked = torch.where(keep, flat, -torch.inf).topk(k, dim=1).values
            taken = torch.clamp(torch.ceil(count.float() * self.q), min=1).clamp(max=k)
            ranked = torch.where(torch.isfinite(ranked), ranked, torch.zeros((), device=ranked.device))
            cols = torch.arange(k, device=ranked.device)
            ranked = torch.where(cols[None, :] < taken[:, None], ranked, 0.0)
            out = ranked.sum(dim=1) / taken
        return torch.where(count > 0, out, torch.full_like(out, -torch.inf))

    def score(self, ctx: PoolContext) -> torch.Tensor:
        from .scoring import score_pool

        if ctx.model is None:
            raise SegalError(f"strategy {self.name!r} needs a trained model")
        return score_pool(ctx.model, ctx.pool, self.image_scores, batch_size=ctx.batch_size,
                          num_workers=ctx.num_workers, progress=ctx.progress)
