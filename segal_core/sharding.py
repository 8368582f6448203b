"""A round's query under ``torchrun``: each rank scores its shard, rank 0 merges.

Every rank holds the same unlabelled view of the pool. With a
:attr:`~segal_core.strategy.Strategy.shardable` strategy, rank ``r`` scores the
contiguous shard ``World.shard(len(view))`` (``PoolContext.offset`` = where it
starts) and keeps only its own best ``k`` candidates, ranked by
:func:`~segal_core.selection.selection_keys` with the candidate's *global* view
position as its item; rank 0 gathers ``k`` candidates per rank (never the pool's
scores) and ranks them again. A candidate of the one-process top ``k`` is in its
shard's top ``k`` (the shard's order is the pool's order restricted to it), and the
ranking's tie rule (tier, key, then position) is applied to candidates sorted by
position, so the merged query is exactly the one-process query: the same ids in the
same order. Region units merge the same way, by pixels (:func:`merge_region_picks`).

Only rank 0 labels (the oracle is called once, by one process); the ledger entries
and partial masks it made are broadcast (:func:`labels_from_writer`).

A strategy that is not shardable (``random``, ``coreset``, a third party's that
needs the whole pool at once), a strategy with its own ``select``, or a
``segal_select`` hook: rank 0 scores and selects alone, exactly as one process does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from .dataset import Dataset, DatasetView
from .distributed import World
from .errors import ContractError
from .regions import RegionMaps, RegionPick
from .selection import Selection, ranking, round_seed, selection_keys
from .strategy import PoolContext, RegionContext, Strategy

if TYPE_CHECKING:
    from .model import Progress
    from .run import Run

__all__ = [
    "Candidates",
    "labels_from_writer",
    "local_candidates",
    "merge_candidates",
    "merge_region_picks",
    "query_images",
    "query_regions",
    "select_images",
    "select_regions",
    "sharded",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: ``(positions, scores, tiers, keys)`` lists: a rank's best candidates.
Candidates = tuple[list[int], list[float], list[int], list[float]]


def sharded(run: Run) -> bool:
    """Whether this round's scoring is split across ranks (see the module docstring)."""
    strategy = run.strategy
    return (
        run.world.distributed
        and type(strategy).shardable
        and type(strategy).select is Strategy.select
        and not run.plugins.manager.hook.segal_select.get_hookimpls()
    )


# -- images ----------------------------------------------------------------------------


def local_candidates(scores: torch.Tensor, start: int, k: int, rule: Selection, seed: int) -> Candidates:
    """A shard's best ``min(k, len(scores))`` candidates, best first: global positions
    (``start + i``), scores, tiers and keys (on the host: ``4 x k`` numbers)."""
    flat = scores.detach().float()
    positions = torch.arange(start, start + flat.numel(), device=flat.device)
    tier, key = selection_keys(flat, positions, None, rule, seed)
    best = ranking(tier, key)[: min(k, flat.numel())]
    return (
        positions[best].cpu().tolist(),
        flat[best].cpu().tolist(),
        tier[best].cpu().tolist(),
        key[best].cpu().tolist(),
    )


def merge_candidates(shards: Sequence[Candidates], k: int) -> tuple[list[int], list[float]]:
    """The best ``k`` of every shard's candidates: positions and scores, best first,
    ranked by tier, key, then position (the one-process tie rule)."""
    rows = sorted(
        (p, s, t, key) for positions, scores, tiers, keys in shards
        for p, s, t, key in zip(positions, scores, tiers, keys)
    )
    if not rows:
        return [], []
    tier = torch.tensor([r[2] for r in rows], dtype=torch.int8)
    key = torch.tensor([r[3] for r in rows], dtype=torch.float32)
    order = ranking(tier, key)[:k].tolist()
    return [rows[i][0] for i in order], [rows[i][1] for i in order]


def select_images(
    world: World,
    strategy: Strategy,
    view: Dataset,
    k: int,
    make_ctx: Callable[[DatasetView, int], PoolContext],
    *,
    phase: Callable[[str, Callable[[], Any]], Any] = lambda name, action: action(),
) -> tuple[list[int], list[float]]:
    """Each rank scores its shard of ``view`` (``make_ctx(shard, offset)`` builds its
    context; ``phase(name, action)`` runs the ``score`` and ``select`` steps) and
    keeps its best ``k``; on rank 0: the merged query, positions in ``view`` and
    their scores, best first (``[], []`` on the other ranks)."""
    start, stop = world.shard(len(view))
    ctx = make_ctx(DatasetView(view, range(start, stop)), start)
    scores = phase("score", lambda: strategy.score(ctx))
    if tuple(scores.shape) != (stop - start,):
        raise ContractError(
            f"strategy {strategy.name!r}: score() returned shape {tuple(scores.shape)} for {stop - start} items"
        )
    rule = strategy.selection

    def select() -> tuple[list[int], list[float]]:
        seed = round_seed(ctx.generator) if rule.stochastic else 0
        every = world.gather(local_candidates(scores, start, k, rule, seed))  # k per rank, never the pool's
        return ([], []) if every is None else merge_candidates(every, k)

    return phase("select", select)  # type: ignore[no-any-return]


def select_regions(
    world: World,
    strategy: Strategy,
    view: Dataset,
    budget: int,
    make_ctx: Callable[[DatasetView, int], RegionContext],
    *,
    phase: Callable[[str, Callable[[], Any]], Any] = lambda name, action: action(),
) -> list[RegionPick]:
    """:func:`select_images` for regions: each rank selects its shard's regions worth
    ``budget`` pixels; on rank 0 the merged picks (``index``: the position in
    ``view``), best first; ``[]`` on the other ranks."""
    start, stop = world.shard(len(view))
    ctx = make_ctx(DatasetView(view, range(start, stop)), start)
    mine = phase("score", lambda: strategy.score_regions(ctx))

    def select() -> list[RegionPick]:
        every = world.gather(list(mine))  # each rank's picks: its budget's worth, never the pool's
        return [] if every is None else merge_region_picks(every, budget)

    return phase("select", select)  # type: ignore[no-any-return]


def query_images(run: Run, round: int, k: int, seconds: dict[str, float], bars: Progress) -> tuple[list[str], list[float]]:
    """:func:`segal_core.rounds._query` under ``torchrun``: score (sharded when the
    strategy allows), select ``k`` on rank 0, label on rank 0; every rank returns
    the query."""
    from .rounds import _context, _labelled, _phase, _query, label

    world = run.world
    if not sharded(run):  # rank 0 scores the whole pool and selects as one process does
        return _alone(run, lambda: _query(run, round, k, seconds, bars))
    model = run.model
    assert model is not None
    positions = run.unlabelled_indices()
    view = DatasetView(run.pool, positions)
    context = _context(run, model, round, bars)
    labelled = _labelled(run)

    def make_ctx(shard: DatasetView, offset: int) -> PoolContext:
        return PoolContext(pool=shard, **context, query_size=k, offset=offset, **labelled)

    picked, picked_scores = select_images(
        world, run.strategy, view, k, make_ctx,
        phase=lambda name, action: _phase(run, round, name, seconds, action),
    )
    queried = [view.ids[p] for p in picked]
    run.call("segal_after_scoring", round=round, ids=queried, scores=torch.tensor(picked_scores), regions=None)
    run.call("segal_after_query", round=round, queried=queried, scores=picked_scores, regions=None)
    annotations = _phase(run, round, "label", seconds, lambda: label(run, round, queried, picked_scores))
    if annotations:  # a waiting oracle's labels come with the resume that collects them (as rounds.py)
        run.call("segal_after_label", round=round, annotations=annotations)
    return world.on_writer(lambda: (queried, picked_scores))  # every rank knows the query


# -- regions ---------------------------------------------------------------------------


def merge_region_picks(shards: Sequence[Sequence[RegionPick]], budget: int) -> list[RegionPick]:
    """The shortest prefix of every shard's picks, ranked by tier, key, then (item,
    region), whose pixels reach ``budget``: the one-process region selection."""
    rows = sorted((p for picks in shards for p in picks), key=lambda p: (p.index, p.region))
    if not rows:
        return []
    tier = torch.tensor([p.tier for p in rows], dtype=torch.int8)
    key = torch.tensor([p.score if p.key is None else p.key for p in rows], dtype=torch.float32)
    order = ranking(tier, key)
    pixels = torch.tensor([rows[i].pixels for i in order.tolist()], dtype=torch.int64)
    before = torch.cumsum(pixels, 0) - pixels
    return [rows[i] for i, b in zip(order.tolist(), before.tolist()) if b < budget]


def query_regions(
    run: Run, round: int, budget: int, seconds: dict[str, float], bars: Progress
) -> tuple[list[str], list[float], list[int]]:
    """:func:`segal_core.rounds._query_regions` under ``torchrun``: each rank scores the
    regions of its shard, rank 0 merges the picks and labels them."""
    from .rounds import _context, _labelled, _phase, _query_regions, label_picked_regions

    world = run.world
    if not sharded(run):
        return _alone(run, lambda: _query_regions(run, round, budget, seconds, bars))
    model = run.model
    assert model is not None and run.maps is not None and run.unit is not None
    pool, ledger = run.pool, run.state.ledger
    positions = [i for i, sid in enumerate(pool.ids) if sid not in ledger or ledger[sid].regions is not None]
    view = DatasetView(pool, positions)
    context = _context(run, model, round, bars)
    labelled = _labelled(run)
    unit, cache = run.unit, run.maps.cache

    def make_ctx(shard: DatasetView, offset: int) -> RegionContext:
        return RegionContext(
            pool=shard,
            **context,
            unit=unit,
            maps=RegionMaps(unit, shard, cache, write=world.is_writer),
            budget=budget,
            labelled={n: ledger[sid].regions or [] for n, sid in enumerate(shard.ids) if sid in ledger},
            offset=offset,
            **labelled,
        )

    picks = select_regions(
        world, run.strategy, view, budget, make_ctx,
        phase=lambda name, action: _phase(run, round, name, seconds, action),
    )
    done = label_picked_regions(run, round, [pool.ids[positions[p.index]] for p in picks], picks, seconds)
    return world.on_writer(lambda: done)


def _alone(run: Run, query: Callable[[], T]) -> T:
    """Rank 0 runs ``query`` (score, select, label) as one process would; the other
    ranks receive its labels, then its result."""
    world = run.world
    if not world.is_writer:
        labels_from_writer(run)
        return world.receive()  # type: ignore[no-any-return]
    try:
        result = query()
    except BaseException as exc:
        world.send_failure(exc)
        raise
    return world.on_writer(lambda: result)


# -- labels ----------------------------------------------------------------------------


def on_writer_labels(fn: F) -> F:
    """``fn(run, ...)`` (a labelling function: :func:`segal_core.rounds.label`,
    ``label_regions``, :func:`segal_core.waiting.collect`) on rank 0 only under
    ``torchrun``: the oracle is asked (or a waiting oracle handed the queries, or its
    labels collected) once; the ledger entries and partial masks that made, and the
    run's pending round (``run.state.pending``), are broadcast to the other ranks,
    which return no annotations. One process: ``fn`` itself."""

    @functools.wraps(fn)
    def wrapper(run: Run, *args: Any, **kwargs: Any) -> Any:
        if not run.world.distributed:
            return fn(run, *args, **kwargs)
        if not run.world.is_writer:
            labels_from_writer(run)
            return []
        before = dict(run.state.ledger)
        kept: list[Any] = []

        def act() -> tuple[dict[str, Any], dict[str, torch.Tensor], Any]:
            kept.append(fn(run, *args, **kwargs))
            changed = {sid: e for sid, e in run.state.ledger.items() if before.get(sid) is not e}
            masks = {sid: run.partial_masks[sid] for sid in changed if sid in run.partial_masks}
            return changed, masks, getattr(run.state, "pending", None)

        run.world.on_writer(act)
        return kept[0]

    return wrapper  # type: ignore[return-value]


def labels_from_writer(run: Run) -> None:
    """On a rank other than 0: receive the ledger entries, partial masks and pending
    round rank 0's labelling made (the other half of :func:`on_writer_labels`)."""
    changed, masks, pending = run.world.receive()
    run.state.ledger.update(changed)
    for sid, mask in masks.items():
        run.keep_mask(sid, mask)
    if hasattr(run.state, "pending"):
        run.state.pending = pending
