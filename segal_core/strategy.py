"""The ``Strategy`` interface and the ``UncertaintyStrategy`` base class."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch

from .dataset import Dataset
from .errors import SegalError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .model import Model, Progress
    from .regions import RegionMaps, RegionPick
    from .units import QueryUnit

__all__ = ["REDUCTIONS", "PoolContext", "RegionContext", "Strategy", "UncertaintyStrategy", "reduce_pixels"]

#: Ways to reduce per-pixel scores to one score per image.
REDUCTIONS = ("mean", "max", "top_q")


@dataclass
class PoolContext:
    """What a strategy sees when it scores the unlabelled pool.

    :param pool: the unlabelled samples only (a :class:`~segal_core.dataset.Dataset`,
        usually a :class:`~segal_core.dataset.DatasetView` of the train split).
        Strategies read images (``pool.image(i)``), never masks.
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


@dataclass
class RegionContext(PoolContext):
    """What a strategy sees when it scores the pool's regions (``--query-unit``).

    :param unit: the query unit; :param maps: ``maps(i)`` is item ``i``'s region map
        (int64 ``[H, W]``, ids ``0 .. R-1``), cached when the unit is costly.
    :param budget: pixels to select this round.
    :param labelled: pool position -> region ids already labelled (never select them).
    """

    unit: QueryUnit | None = None
    maps: RegionMaps | None = None
    budget: int = 0
    labelled: Mapping[int, Sequence[int]] = field(default_factory=dict)


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

    def score_regions(self, ctx: RegionContext) -> list[RegionPick]:
        """The regions to query this round, best first, worth ``ctx.budget`` pixels.

        A strategy that scores whole images only keeps this default, which says what
        to implement. :class:`UncertaintyStrategy` implements it from
        :meth:`~UncertaintyStrategy.pixel_scores`; see :mod:`segal_core.regions` for
        the streaming selection to build on.
        """
        unit = ctx.unit.name if ctx.unit is not None else "a region unit"
        raise SegalError(
            f"--strategy {self.name} scores whole images only; to query with --query-unit {unit} it must "
            "implement score_regions(ctx) (or derive from UncertaintyStrategy and give pixel_scores)"
        )

    def select(self, scores: torch.Tensor, k: int) -> torch.Tensor:
        """Positions (int64, on the scores' device) of the ``k`` highest scores,
        highest first.

        Ties go to the lower position (a stable sort), so the same scores always give
        the same query. NaN and ``-inf`` rank last; ``+inf`` ranks first.
        """
        if scores.dim() != 1:
            raise ValueError(f"scores must be one-dimensional, got shape {tuple(scores.shape)}")
        if k < 0 or k > scores.numel():
            raise SegalError(f"cannot select {k} samples from a pool of {scores.numel()}")
        flat = scores.float()
        clean = torch.where(torch.isnan(flat), -torch.inf, flat)
        order = torch.sort(clean, descending=True, stable=True).indices
        return order[:k]


def reduce_pixels(
    pixels: torch.Tensor,
    valid: torch.Tensor | None = None,
    reduction: str = "mean",
    q: float = 0.1,
) -> torch.Tensor:
    """One float32 score per image ``[B]`` from per-pixel scores ``[B, H, W]``.

    Only pixels that are ``valid`` (``[B, H, W]`` bool, ``None`` = all) and finite
    count. ``mean`` averages them, ``max`` takes the largest, ``top_q`` averages the
    highest ``ceil(q * n)`` of the ``n`` counted pixels. An image with no counted
    pixel scores ``-inf`` (queried last). Runs on the pixels' device without any
    host synchronisation.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    if pixels.dim() != 3:
        raise ValueError(f"pixel scores must be [B, H, W], got shape {tuple(pixels.shape)}")
    flat = pixels.float().flatten(1)
    keep = torch.isfinite(flat)
    if valid is not None:
        if valid.shape != pixels.shape:
            raise ValueError(
                f"valid mask has shape {tuple(valid.shape)}, pixel scores {tuple(pixels.shape)}"
            )
        keep &= valid.to(device=flat.device, dtype=torch.bool).flatten(1)
    count = keep.sum(dim=1)
    if reduction == "mean":
        out = torch.where(keep, flat, 0.0).sum(dim=1) / count.clamp(min=1)
    elif reduction == "max":
        out = torch.where(keep, flat, -torch.inf).amax(dim=1)
    else:
        n = flat.shape[1]
        # the most pixels any image can take; a tiny epsilon keeps q * n = 5.0000001 at 5
        widest = min(n, max(1, math.ceil(q * n - 1e-9)))
        ranked = torch.where(keep, flat, -torch.inf).topk(widest, dim=1, sorted=True).values
        taken = torch.ceil(count.double() * q - 1e-9).clamp(min=1, max=widest)
        cols = torch.arange(widest, device=flat.device)
        out = torch.where(cols[None, :] < taken[:, None], ranked, 0.0).sum(dim=1) / taken.float()
    return torch.where(count > 0, out, -torch.inf)


class UncertaintyStrategy(Strategy):
    """Base for per-pixel uncertainty scores computed from logits, in torch.

    A subclass implements only :meth:`pixel_scores`. This class reduces them to one
    score per image over valid pixels (``reduction``: ``mean``, ``max`` or ``top_q``,
    the mean of the highest ``q`` fraction), guards against non-finite values, and
    streams the pool through the model (:func:`segal_core.scoring.score_pool`).

    :param reduction: ``--strategy-opt reduction=mean|max|top_q``.
    :param q: ``--strategy-opt q=0.05``: the fraction of pixels ``top_q`` averages.
    """

    def __init__(self, reduction: str = "mean", q: float = 0.1) -> None:
        if reduction not in REDUCTIONS:
            raise SegalError(
                f"--strategy-opt reduction={reduction}: not one of {', '.join(REDUCTIONS)}"
            )
        if not (isinstance(q, (int, float)) and 0.0 < q <= 1.0):
            raise SegalError(f"--strategy-opt q={q}: must be a fraction in (0, 1]")
        self.reduction = reduction
        self.q = float(q)

    @abc.abstractmethod
    def pixel_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-pixel scores ``[B, H, W]`` from logits ``[B, C, H, W]``; higher = more
        informative. Stay on the logits' device; no host synchronisation. Must not
        change when a constant is added to the logits of a pixel."""

    def image_scores(self, logits: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """One score per image ``[B]`` (float32) from logits ``[B, C, H, W]``.

        ``valid`` (``[B, H, W]`` bool) excludes pixels (padding, ignored regions).
        Non-finite pixel scores count as invalid; an image with no valid pixel
        scores ``-inf`` (queried last).
        """
        if logits.dim() != 4:
            raise ValueError(f"logits must be [B, C, H, W], got shape {tuple(logits.shape)}")
        pixels = self.pixel_scores(logits.float())
        return reduce_pixels(pixels, valid, self.reduction, self.q)

    def score(self, ctx: PoolContext) -> torch.Tensor:
        """Stream the pool through ``ctx.model``; one float32 per item on its device."""
        from .scoring import score_pool

        if ctx.model is None:
            raise SegalError(f"strategy {self.name!r} needs a trained model")
        return score_pool(
            ctx.model,
            ctx.pool,
            self.image_scores,
            batch_size=ctx.batch_size,
            num_workers=ctx.num_workers,
            progress=ctx.progress,
        )

    def score_regions(self, ctx: RegionContext) -> list[RegionPick]:
        """Per-pixel scores reduced per region (``reduction``, over the region's
        pixels) on the model's device, streamed into a selection worth
        ``ctx.budget`` pixels; labelled regions are skipped."""
        from .regions import score_regions

        if ctx.model is None or ctx.maps is None:
            raise SegalError(f"strategy {self.name!r} needs a trained model and region maps")
        return score_regions(
            ctx.model,
            ctx.pool,
            ctx.maps,
            self.pixel_scores,
            budget=ctx.budget,
            labelled=ctx.labelled,
            reduction=self.reduction,
            q=self.q,
            batch_size=ctx.batch_size,
            num_workers=ctx.num_workers,
            progress=ctx.progress,
        )
