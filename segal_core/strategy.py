"""The ``Strategy`` interface and the ``UncertaintyStrategy`` base class."""

from __future__ import annotations

import abc
import functools
import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from .dataset import Dataset
from .errors import ContractError, SegalError
from .selection import TOPK, Selection, ranking, round_seed, selection_keys

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .model import Model, Progress
    from .regions import RegionMaps, RegionPick
    from .units import QueryUnit

__all__ = [
    "REDUCTIONS",
    "MonteCarloStrategy",
    "PoolContext",
    "RegionContext",
    "Strategy",
    "UncertaintyStrategy",
    "reduce_pixels",
    "select_positions",
]

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
    :param generator: a CPU ``torch.Generator`` seeded for this round (random choices;
        a resumed run gets the same one, so it makes the same query).
    :param batch_size: inference batch size; ``num_workers``: DataLoader workers.
    :param progress: optional ``progress(phase, done, total)`` callback.
    :param query_size: how many images the round will query (``k``), when known;
        ``None`` outside a run. (With a region unit see ``RegionContext.budget``.)
    :param labelled_data: the samples labelled so far, images and their labels
        (partial masks where only regions are labelled, ``ignore_index`` elsewhere),
        or ``None`` outside a run. Read it only when the strategy needs it: ``coreset``
        embeds its images (the initial centres), ``class_balanced_entropy`` counts
        its labels per class.
    :param labelled_pixels: labelled pixels of each item of ``labelled_data`` (the
        ledger's counts, in the same order); an item whose count changed gained labels.
    :param offset: the position of ``pool``'s first item in the whole pool being
        scored: 0 in one process; under ``torchrun`` each rank scores a contiguous
        shard and ``offset`` is where it starts. What is keyed by an item's position
        (per-item Monte-Carlo seeds, the Gumbel keys of a stochastic selection, a
        ``RegionPick.index``) uses ``offset + position``, so every world size gives
        the same keys (see ``docs/distributed.md``).
    """

    pool: Dataset
    model: Model | None
    generator: torch.Generator
    batch_size: int = 8
    num_workers: int = 0
    progress: Progress | None = field(default=None, repr=False)
    query_size: int | None = None
    labelled_data: Dataset | None = field(default=None, repr=False)
    labelled_pixels: Sequence[int] = field(default=(), repr=False)
    offset: int = 0


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


def _check_reduction(reduction: str, q: float) -> None:
    if reduction not in REDUCTIONS:
        raise SegalError(f"--strategy-opt reduction={reduction}: not one of {', '.join(REDUCTIONS)}")
    if isinstance(q, bool) or not (isinstance(q, (int, float)) and 0.0 < q <= 1.0):
        raise SegalError(f"--strategy-opt q={q}: must be a fraction in (0, 1]")


#: The options every strategy takes, whatever its own ``__init__`` says.
_SELECTION_PARAMETERS = (
    inspect.Parameter("selection", inspect.Parameter.KEYWORD_ONLY, default="topk", annotation=str),
    inspect.Parameter("beta", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=float | None),
)


def _with_selection_options(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` plus the keyword options ``selection`` and ``beta``, applied after it
    ran (so the outermost class's call, the user's, is the one that stays). The
    signature and type hints say so, which is what ``--strategy-opt`` checks."""

    @functools.wraps(init)
    def __init__(self: Strategy, *args: Any, selection: str = "topk", beta: float | None = None, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.configure_selection(selection, beta)

    signature = inspect.signature(init)
    params = list(signature.parameters.values())
    at = next((n for n, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
    params[at:at] = _SELECTION_PARAMETERS
    __init__.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    __init__.__annotations__ = {
        **getattr(init, "__annotations__", {}), "selection": str, "beta": float | None,
    }
    return __init__


class Strategy(abc.ABC):
    """Scores the unlabelled pool; higher score = queried first.

    A registered strategy class carries ``name`` (and optional ``aliases``,
    ``description``). Its options are keyword arguments of ``__init__`` with type
    hints; ``--strategy-opt key=value`` reaches them, coerced to the hinted type.

    Every strategy also takes ``selection`` (``topk``, the default, ``power`` or
    ``softmax``) and ``beta``: how :meth:`select` turns scores into a query (see
    :mod:`segal_core.selection`). A subclass's ``__init__`` need not mention them: the
    class adds them to its signature, so ``MyStrategy(temperature=2,
    selection="power", beta=2)`` and ``--strategy-opt selection=power`` both work.
    The rule is :attr:`selection`.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    #: ``False`` for strategies that never run the model (``random``).
    uses_model: ClassVar[bool] = True
    #: Model capabilities the strategy needs (``segal_core.model.EMBEDDINGS``,
    #: ``STOCHASTIC_LOGITS``); checked before any training (:meth:`check_model`).
    requires: ClassVar[tuple[str, ...]] = ()
    #: For a strategy that can only select whole images: why, as a phrase
    #: (``"picks whole images by k-center over image embeddings"``). A region unit
    #: then stops the run before training with that reason.
    whole_images_only: ClassVar[str] = ""
    #: Whether each rank may score its own shard of the pool under ``torchrun``: a
    #: score per item that depends on the item alone (and on ``ctx.offset`` for
    #: per-item randomness), and the base :meth:`select`. ``False`` (the default):
    #: rank 0 scores the whole pool alone. Not inherited past an override: a subclass
    #: that overrides :meth:`score`, :meth:`score_regions` or :meth:`select` without
    #: saying ``shardable`` itself is scored by rank 0 alone (it may look at the whole
    #: pool), so a base's promise never covers code it has not seen.
    shardable: ClassVar[bool] = False

    #: How :meth:`select` picks (class default; ``__init__`` sets the instance's).
    selection: Selection = TOPK

    def __init__(self, selection: str = "topk", beta: float | None = None) -> None:
        self.configure_selection(selection, beta)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        overrides = any(name in cls.__dict__ for name in ("score", "score_regions", "select"))
        if overrides and "shardable" not in cls.__dict__:
            cls.shardable = False  # pool-level logic the base's promise does not cover
        init = cls.__dict__.get("__init__")
        if init is not None and "selection" not in inspect.signature(init).parameters:
            cls.__init__ = _with_selection_options(init)  # type: ignore[method-assign]

    def configure_selection(self, selection: str = "topk", beta: float | None = None) -> None:
        """Set :attr:`selection` from the options (``beta`` ``None`` = 1); a one-line
        :class:`SegalError` for a value that does not fit. Override to restrict."""
        self.selection = Selection.checked(selection, beta)

    def check_model(self, model: Model) -> None:
        """Raise a one-line :class:`SegalError` when ``model`` lacks a capability in
        :attr:`requires` (the run calls this before any training)."""
        for capability in self.requires:
            problem = model.capability_problem(capability)
            if problem is not None:
                raise SegalError(f"--strategy {self.name} needs {capability}: {problem}")

    @abc.abstractmethod
    def score(self, ctx: PoolContext) -> torch.Tensor:
        """One float per pool item (``[len(ctx.pool)]``), on any device."""

    def score_regions(self, ctx: RegionContext) -> list[RegionPick]:
        """The regions to query this round, best first, worth ``ctx.budget`` pixels.

        A strategy that scores whole images only keeps this default, which says what
        to implement (or why not, from :attr:`whole_images_only`).
        :class:`UncertaintyStrategy` implements it from
        :meth:`~UncertaintyStrategy.pixel_scores`; see :mod:`segal_core.regions` for
        the streaming selection to build on.
        """
        unit = ctx.unit.name if ctx.unit is not None else "a region unit"
        if self.whole_images_only:
            raise SegalError(
                f"--strategy {self.name} {self.whole_images_only}, so it cannot query regions; "
                f"drop --query-unit {unit} (or use --query-unit image)"
            )
        raise SegalError(
            f"--strategy {self.name} scores whole images only; to query with --query-unit {unit} it must "
            "implement score_regions(ctx) (or derive from UncertaintyStrategy and give pixel_scores)"
        )

    def select(self, scores: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Positions (int64, on the scores' device) of the ``k`` samples to query, in
        rank order, by :attr:`selection` (see :func:`select_positions`).

        ``topk``: the ``k`` highest scores, highest first; ties go to the lower
        position (a stable sort), NaN and ``-inf`` rank last, ``+inf`` first.
        ``power``/``softmax``: a random draw seeded from ``generator`` (the round's
        ``ctx.generator``, which they need).
        """
        return select_positions(scores, k, self.selection, generator)


def select_positions(
    scores: torch.Tensor, k: int, rule: Selection = TOPK, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The ``k`` positions of ``scores`` (1-D) that ``rule`` queries, in rank order,
    on the scores' device, without host synchronisation.

    A stochastic rule draws its seed from ``generator`` (one 32-bit number) and ranks
    by :func:`segal_core.selection.selection_keys` with the candidate's position as
    its item: the same seed and scores give the same query, and the region selection
    with one region per image picks exactly the same.
    """
    if scores.dim() != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {tuple(scores.shape)}")
    if k < 0 or k > scores.numel():
        raise SegalError(f"cannot select {k} samples from a pool of {scores.numel()}")
    flat = scores.float()
    if not rule.stochastic:
        clean = torch.where(torch.isnan(flat), -torch.inf, flat)
        return torch.sort(clean, descending=True, stable=True).indices[:k]
    if generator is None:
        raise ValueError(f"selection={rule.kind} draws at random: pass the round's generator to select()")
    seed = round_seed(generator)
    positions = torch.arange(flat.numel(), device=flat.device)
    tier, key = selection_keys(flat, positions, None, rule, seed)
    return ranking(tier, key)[:k]


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

    shardable: ClassVar[bool] = True

    def __init__(self, reduction: str = "mean", q: float = 0.1) -> None:
        _check_reduction(reduction, q)
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
        ``ctx.budget`` pixels by :attr:`selection`; labelled regions are skipped."""
        if ctx.model is None or ctx.maps is None:
            raise SegalError(f"strategy {self.name!r} needs a trained model and region maps")
        return _stream_regions(self, ctx, ctx.model, self.pixel_scores)


class MonteCarloStrategy(Strategy):
    """Base for per-pixel scores from several stochastic forward passes (MC dropout).

    A subclass implements only :meth:`pass_scores`: it consumes the passes' logits
    one at a time (never all at once) and returns one score per pixel. This class
    runs the passes through the model capability
    :meth:`~segal_core.model.Model.stochastic_logits`, seeds them per pool item from
    the round's generator (the same seed gives the same query, whatever the batch
    size), reduces pixels to one score per image or region like
    :class:`UncertaintyStrategy`, and streams the pool: memory is one batch of
    running sums, flat in the number of passes and in the pool size.

    :param passes: ``--strategy-opt passes=T``: stochastic forward passes per image.
    :param reduction: ``mean``, ``max`` or ``top_q``; :param q: for ``top_q``.
    """

    requires: ClassVar[tuple[str, ...]] = ("stochastic_logits",)
    shardable: ClassVar[bool] = True

    def __init__(self, passes: int = 8, reduction: str = "mean", q: float = 0.1) -> None:
        if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
            raise SegalError(f"--strategy-opt passes={passes}: must be a whole number of at least 1")
        _check_reduction(reduction, q)
        self.passes = passes
        self.reduction = reduction
        self.q = float(q)

    @abc.abstractmethod
    def pass_scores(self, passes: Iterable[torch.Tensor]) -> torch.Tensor:
        """Per-pixel scores ``[B, H, W]`` from the passes' logits (each ``[B, C, H, W]``),
        higher = more informative. Fold each pass into running sums before asking for
        the next; stay on the logits' device; no host synchronisation. A pixel with a
        non-finite logit may score non-finite (the reduction ignores it)."""

    def _pixels(self, model: Model, base: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        from .seeds import item_seed

        def pixels(images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            seeds = [item_seed(base, p) for p in positions.tolist()]  # positions are on the CPU
            out = self.pass_scores(model.stochastic_logits(images, self.passes, seeds))
            if out.shape != (images.shape[0], *images.shape[-2:]):
                raise ContractError(
                    f"{type(self).__name__}.pass_scores returned shape {tuple(out.shape)} for images "
                    f"{tuple(images.shape)}; expected [B, H, W]"
                )
            return out

        return pixels

    def _model(self, ctx: PoolContext) -> Model:
        if ctx.model is None:
            raise SegalError(f"strategy {self.name!r} needs a trained model")
        self.check_model(ctx.model)
        return ctx.model

    def score(self, ctx: PoolContext) -> torch.Tensor:
        """One float32 per pool item on the model's device."""
        from .scoring import stream_pool

        model = self._model(ctx)
        pixels = self._pixels(model, round_seed(ctx.generator))
        return stream_pool(
            model,
            ctx.pool,
            lambda images, positions: reduce_pixels(pixels(images, positions), None, self.reduction, self.q),
            batch_size=ctx.batch_size,
            num_workers=ctx.num_workers,
            progress=ctx.progress,
            start=ctx.offset,
        )

    def score_regions(self, ctx: RegionContext) -> list[RegionPick]:
        """Per-pixel scores of the passes reduced per region, streamed into a
        selection worth ``ctx.budget`` pixels (see :meth:`UncertaintyStrategy.score_regions`)."""
        model = self._model(ctx)
        if ctx.maps is None:
            raise SegalError(f"strategy {self.name!r} needs region maps")
        return _stream_regions(self, ctx, model, None, batch_pixels=self._pixels(model, round_seed(ctx.generator)))


def _stream_regions(
    strategy: UncertaintyStrategy | MonteCarloStrategy,
    ctx: RegionContext,
    model: Model,
    pixel_scores: Callable[[torch.Tensor], torch.Tensor] | None,
    **extra: Any,
) -> list[RegionPick]:
    """:func:`segal_core.regions.score_regions` with what every region-scoring
    strategy passes: its reduction, its selection and the round's seed."""
    from .regions import score_regions

    assert ctx.maps is not None
    return score_regions(
        model,
        ctx.pool,
        ctx.maps,
        pixel_scores,
        budget=ctx.budget,
        labelled=ctx.labelled,
        reduction=strategy.reduction,
        q=strategy.q,
        batch_size=ctx.batch_size,
        num_workers=ctx.num_workers,
        progress=ctx.progress,
        selection=strategy.selection,
        seed=round_seed(ctx.generator) if strategy.selection.stochastic else 0,
        start=ctx.offset,
        **extra,
    )
