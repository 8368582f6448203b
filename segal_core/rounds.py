"""One round of the cycle, phase by phase.

train (and evaluate) -> score the unlabelled pool -> select -> label, each phase
timed and wrapped by the ``segal_phase`` hook; :func:`one_round` returns the
round's record (one line of ``history.jsonl``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from . import sharding
from .dataset import Dataset, DatasetView
from .errors import ContractError, SegalError
from .regions import RegionMaps
from .model import EvalResult, Model, Progress, TrainResult
from .oracle import Annotation, Oracle, Query
from .run import Run
from .rundir import LedgerEntry
from .sharding import on_writer_labels
from .strategy import PoolContext, RegionContext
from .waiting import submit

__all__ = ["label", "label_regions", "next_query_size", "one_round", "seed_ledger", "summary_line"]

log = logging.getLogger("segal")


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _iou_table(result: EvalResult, classes: Sequence[str]) -> dict[str, float | None]:
    return {c: _finite(v) for c, v in zip(classes, result.per_class_iou)}


def _phase(run: Run, round: int, name: str, seconds: dict[str, float], action: Callable[[], Any]) -> Any:
    """Run ``action`` through the ``segal_phase`` hook, adding its time to ``seconds``."""
    start = time.perf_counter()
    result = run.call("segal_phase", round=round, phase=name, action=action)
    model = run.model
    if model is not None and model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
    return result


# -- labels ------------------------------------------------------------------------


@on_writer_labels  # under torchrun rank 0 labels; the others get the ledger
def label(run: Run, round: int, ids: Sequence[str], scores: Sequence[float] | None = None,
          oracle: Oracle | None = None) -> list[Annotation]:
    """Ask the oracle (``oracle``, else the run's) for ``ids`` and enter the answers
    in the ledger (partial masks are written to ``labels/`` and kept in memory). A
    waiting oracle is handed the queries instead (:func:`segal_core.waiting.submit`):
    nothing is labelled yet and the answer is empty."""
    oracle = oracle or run.oracle
    if oracle.waits:
        points = list(scores) if scores is not None else [None] * len(ids)
        submit(run, round, [Query(sample_id=sid, score=s) for sid, s in zip(ids, points)])
        return []
    annotations = oracle.label(ids, run.pool)
    if [a.sample_id for a in annotations] != list(ids):
        raise SegalError(f"--oracle {run.config.oracle}: returned labels for other ids than queried")
    for ann in annotations:
        mask_file = None
        if ann.mask is not None:
            mask_file = run.rundir.write_mask(
                ann.sample_id, ann.mask, who=f"--oracle {run.config.oracle}", round=round
            )
            run.keep_mask(ann.sample_id, ann.mask)
        run.state.ledger[ann.sample_id] = LedgerEntry(round=round, pixels=int(ann.labeled_pixels), mask_file=mask_file)
    return annotations


class _DatasetMasks(Oracle):
    """The pool's own masks, for a seed set drawn from frames that have one (a run
    whose later rounds a waiting oracle labels)."""

    name = "the dataset's masks"

    def label(self, ids: Sequence[str], pool: Dataset) -> list[Annotation]:
        out = []
        for sid in ids:
            labelled = int((pool.mask(pool.index_of(sid)) != pool.ignore_index).sum())
            out.append(Annotation(sample_id=sid, labeled_pixels=labelled))
        return out


def seed_ledger(run: Run) -> None:
    """Label the seed set, drawn with ``--seed``: ``seed_size`` pool samples, or with a
    region unit random regions (whole images with ``--seed-unit image``) worth
    ``seed_size`` pixels.

    A pool whose frames have masks only in part (``Dataset.has_mask``) seeds with
    exactly those frames; a pool without any asks the (waiting) oracle for the random
    draw. A waiting oracle's run on a pool with every mask seeds from those masks."""
    pool = run.pool
    gen = torch.Generator().manual_seed(run.config.seed)
    have = run.pool_masked
    seeder: Oracle | None = None
    if have is not None and any(have):
        chosen = [pool.ids[i] for i, ok in enumerate(have) if ok]
        log.info(f"seed set: the {len(chosen)} pool frames that have a mask ({len(have) - len(chosen)} without)")
        label(run, -1, chosen, oracle=_DatasetMasks())
        return
    if have is None and run.oracle.waits:
        seeder = _DatasetMasks()
    if not run.regional or run.config.full:
        count = len(pool) if run.config.full else run.seed_size
        order = torch.randperm(len(pool), generator=gen)[:count].tolist()
        label(run, -1, [pool.ids[i] for i in sorted(order)], oracle=seeder)
    elif run.config.seed_unit == "image":
        chosen, pixels = [], 0
        for i in torch.randperm(len(pool), generator=gen).tolist():
            if pixels >= run.seed_size:
                break
            chosen.append(i)
            pixels += run.pool_areas[i]
        label(run, -1, [pool.ids[i] for i in sorted(chosen)], oracle=seeder)
    else:
        from .regions import random_regions

        assert run.maps is not None
        picks = random_regions(pool, run.maps, budget=run.seed_size, labelled={}, generator=gen)
        label_regions(run, -1, [(pool.ids[p.index], p.region) for p in picks], oracle=seeder)


@on_writer_labels
def label_regions(
    run: Run, round: int, picks: Sequence[tuple[str, int]], scores: Sequence[float] | None = None,
    oracle: Oracle | None = None,
) -> list[Annotation]:
    """Ask the oracle (``oracle``, else the run's) for the picked ``(id, region)``
    pairs, one request per image (the union of its regions), and merge the answers
    into the ledger: an image gains regions round after round; its mask accumulates.
    A waiting oracle is handed one query per image instead (its score: the best of
    its regions'); the answer is empty."""
    assert run.maps is not None
    oracle = oracle or run.oracle
    pool = run.pool
    wanted: dict[str, list[int]] = {}
    for sid, region in picks:
        wanted.setdefault(sid, []).append(region)
    requests = []
    for sid, regions in wanted.items():
        region_map = run.maps(pool.index_of(sid))
        requests.append((sid, torch.isin(region_map, torch.tensor(regions))))
    if oracle.waits:
        best: dict[str, float] = {}
        for (sid, _), score in zip(picks, scores if scores is not None else [None] * len(picks)):
            if score is not None:
                best[sid] = max(best.get(sid, score), score)
        submit(run, round, [
            Query(sample_id=sid, score=best.get(sid), area=area, regions=sorted(wanted[sid])) for sid, area in requests
        ])
        return []
    annotations = oracle.label_regions(requests, pool)
    if [a.sample_id for a in annotations] != list(wanted):
        raise SegalError(f"--oracle {run.config.oracle}: returned labels for other ids than queried")
    for (sid, area), ann in zip(requests, annotations):
        if ann.mask is None or ann.mask.shape != area.shape:
            raise ContractError(f"--oracle {run.config.oracle}: label_regions must return a partial mask "
                                f"of the image's size for {sid!r}")
        new = ann.mask.detach().to("cpu", torch.int64)
        old = run.partial_masks.get(sid)
        merged = new if old is None else torch.where(area, new, old.to(torch.int64))
        before = run.state.ledger.get(sid)
        regions = sorted({*(before.regions or [] if before else []), *wanted[sid]})
        mask_file = run.rundir.write_mask(sid, merged, who=f"--oracle {run.config.oracle}", round=round)
        run.keep_mask(sid, merged)
        run.state.ledger[sid] = LedgerEntry(
            round=before.round if before else round,
            pixels=(before.pixels if before else 0) + int(ann.labeled_pixels),
            mask_file=mask_file,
            regions=regions,
        )
    return annotations


def next_query_size(run: Run, round: int) -> int:
    """How many samples (pixels, with a region unit) this round queries; 0: the
    last round."""
    if run.config.full or (run.config.rounds is not None and round + 1 >= run.config.rounds):
        return 0
    if run.regional:
        total, done = run.pool_pixels, run.labelled_area()
    else:
        total, done = len(run.pool), len(run.state.ledger)
    if done >= total:
        return 0
    k = min(run.query_size, total - done)
    if run.config.budget is not None:
        k = min(k, math.floor(run.config.budget * total + 1e-9) - done)
    return max(k, 0)


# -- the phases ----------------------------------------------------------------------


def _round_model(run: Run, round: int) -> Model:
    """A fresh network seeded for this round; ``finetune`` starts from the last
    round's checkpoint."""
    if round == 0 and run.model is not None:
        model = run.model  # built (and seeded with config.seed) by prepare_run
    else:
        model = run.model_cls(replace(run.model_config, seed=run.config.seed + 1000 * round))
    if run.config.retrain == "finetune" and run.state.checkpoint and run.world.is_writer:
        # under torchrun rank 0 loads; DistributedDataParallel hands its weights to the others
        model.load(run.out / run.state.checkpoint)
    return model


def _train_and_evaluate(
    run: Run, round: int, seconds: dict[str, float], bars: Progress
) -> tuple[TrainResult, EvalResult, EvalResult]:
    pool = run.pool
    train_view = DatasetView(pool, [pool.index_of(i) for i in run.state.ledger], masks=run.partial_masks)
    model = _round_model(run, round)
    run.model = model
    trained: TrainResult = _phase(
        run, round, "train", seconds, lambda: model.fit(train_view, run.splits.val, progress=bars)
    )
    _, split = run.eval_split

    def evaluate() -> tuple[EvalResult, EvalResult]:
        # fit already measured val on the weights it kept, when it validated
        val = trained.val_result or model.evaluate(run.splits.val, progress=bars)
        test = val if run.splits.test is None else model.evaluate(split, progress=bars)
        return val, test

    val, test = _phase(run, round, "evaluate", seconds, evaluate)
    return trained, val, test


def _labelled(run: Run) -> dict[str, Any]:
    """What a strategy may read about the labelled set (``PoolContext.labelled_data``
    and ``labelled_pixels``): a view, nothing is decoded here."""
    pool, ledger = run.pool, run.state.ledger
    ids = list(ledger)
    return {
        "labelled_data": DatasetView(pool, [pool.index_of(i) for i in ids], masks=run.partial_masks),
        "labelled_pixels": [ledger[i].pixels for i in ids],
    }


def _context(run: Run, model: Model, round: int, bars: Progress) -> dict[str, Any]:
    """What every scoring context holds: the model (when the strategy uses it), the
    round's seeded generator, batch size, workers and the progress callback."""
    return {
        "model": model if run.strategy.uses_model else None,
        "generator": torch.Generator().manual_seed(run.config.seed * 7919 + round + 1),
        "batch_size": model.inference_batch_size(),
        "num_workers": model.loader_workers(),
        "progress": bars,
    }


def _query_regions(
    run: Run, round: int, budget: int, seconds: dict[str, float], bars: Progress
) -> tuple[list[str], list[float], list[int]]:
    """Score the regions of every image not labelled whole, select regions worth
    ``budget`` pixels, label them."""
    model = run.model
    assert model is not None and run.maps is not None and run.unit is not None
    pool, ledger = run.pool, run.state.ledger
    positions = [i for i, sid in enumerate(pool.ids) if sid not in ledger or ledger[sid].regions is not None]
    view = DatasetView(pool, positions)
    labelled = {n: ledger[sid].regions or [] for n, sid in enumerate(view.ids) if sid in ledger}
    ctx = RegionContext(
        pool=view,
        **_context(run, model, round, bars),
        unit=run.unit,
        maps=RegionMaps(run.unit, view, run.maps.cache),
        budget=budget,
        labelled=labelled,
        **_labelled(run),
    )
    picks = _phase(run, round, "score", seconds, lambda: run.strategy.score_regions(ctx))
    return label_picked_regions(run, round, [view.ids[p.index] for p in picks], picks, seconds)


def label_picked_regions(
    run: Run, round: int, ids: list[str], picks: Sequence[Any], seconds: dict[str, float]
) -> tuple[list[str], list[float], list[int]]:
    """The selected regions (``ids[i]`` the image of ``picks[i]``) through the scoring
    and query hooks, then labelled; returns the ids, scores and region ids."""
    scores = [p.score for p in picks]
    regions = [p.region for p in picks]
    run.call("segal_after_scoring", round=round, ids=ids, scores=torch.tensor(scores), regions=regions)
    run.call("segal_after_query", round=round, queried=ids, scores=scores, regions=regions)
    annotations = _phase(
        run, round, "label", seconds, lambda: label_regions(run, round, list(zip(ids, regions)), scores)
    )
    if annotations:  # a waiting oracle's labels come with the resume that collects them
        run.call("segal_after_label", round=round, annotations=annotations)
    return ids, scores, regions


def _query(run: Run, round: int, k: int, seconds: dict[str, float], bars: Progress) -> tuple[list[str], list[float]]:
    """Score the unlabelled pool, select ``k``, label them."""
    model = run.model
    assert model is not None
    view = DatasetView(run.pool, run.unlabelled_indices())
    ctx = PoolContext(
        pool=view,
        **_context(run, model, round, bars),
        query_size=k,
        **_labelled(run),
    )
    scores = _phase(run, round, "score", seconds, lambda: run.strategy.score(ctx))
    run.call("segal_after_scoring", round=round, ids=view.ids, scores=scores, regions=None)

    def select() -> tuple[list[str], list[float]]:
        chosen = run.call("segal_select", round=round, ids=view.ids, scores=scores, k=k)
        if chosen is not None:
            position = {sid: n for n, sid in enumerate(view.ids)}
            ids = _checked_selection(run, chosen, position, k)
            picked = torch.tensor([position[sid] for sid in ids], device=scores.device)
        else:
            # top-k (or the strategy's seeded draw) on the scores' device
            picked = run.strategy.select(scores, k, generator=ctx.generator)
        # only the k chosen positions and scores come to the host
        positions = picked.cpu().tolist()
        return [view.ids[i] for i in positions], scores[picked].detach().float().cpu().tolist()

    queried, picked_scores = _phase(run, round, "select", seconds, select)
    run.call("segal_after_query", round=round, queried=queried, scores=picked_scores, regions=None)
    annotations = _phase(run, round, "label", seconds, lambda: label(run, round, queried, picked_scores))
    if annotations:  # a waiting oracle's labels come with the resume that collects them
        run.call("segal_after_label", round=round, annotations=annotations)
    return queried, picked_scores


def _checked_selection(run: Run, chosen: Any, position: dict[str, int], k: int) -> list[str]:
    """A ``segal_select`` result must be ``k`` distinct unlabelled ids."""
    plugins = ", ".join(repr(i.plugin_name) for i in run.plugins.manager.hook.segal_select.get_hookimpls())
    if isinstance(chosen, (str, bytes)) or not isinstance(chosen, Sequence):
        raise ContractError(
            f"plugin {plugins} returned a {type(chosen).__name__} from segal_select, not a list of ids"
        )
    ids = list(chosen)
    bad = [sid for sid in ids if sid not in position]
    if len(ids) != k or len(set(ids)) != k or bad:
        extra = f" ({bad[0]!r} is not an unlabelled id)" if bad else ""
        raise ContractError(
            f"plugin {plugins} returned {len(ids)} ids from segal_select, not {k} distinct unlabelled ids{extra}"
        )
    return ids


# -- the round -------------------------------------------------------------------------


def one_round(run: Run, round: int, bars: Progress) -> dict[str, Any]:
    """Train, evaluate, query and label; returns the round's record."""
    seconds: dict[str, float] = {}
    run.call("segal_round_start", round=round)
    started = time.perf_counter()
    trained, val, test = _train_and_evaluate(run, round, seconds, bars)
    train_summary = {
        "loss": _finite(trained.final_loss),
        "epochs": trained.epochs,
        "steps": trained.steps,
        "best_epoch": trained.best_epoch,
    }
    metrics = {
        "train": {**train_summary, "history": list(trained.history)},  # per epoch: loss, lr, val_miou
        "val": val.as_dict(run.classes),
        "test": test.as_dict(run.classes),
    }
    run.call("segal_after_train", round=round, metrics=metrics)

    labelled_before = len(run.state.ledger)
    labelled_pixels = sum(e.pixels for e in run.state.ledger.values())
    labelled_area = run.labelled_area()
    k = next_query_size(run, round)
    regions: list[int] = []
    query, query_regions = (sharding.query_images, sharding.query_regions) if run.world.distributed else (
        _query, _query_regions)
    if k <= 0:
        queried, scores = [], []
    elif run.regional:
        queried, scores, regions = query_regions(run, round, k, seconds, bars)
    else:
        queried, scores = query(run, round, k, seconds, bars)
    seconds["total"] = time.perf_counter() - started
    pool_size = len(run.pool)
    extra: dict[str, Any] = {"queried_regions": regions} if run.regional else {}
    if queried and run.state.pending is not None:
        extra["labels"] = {"oracle": run.config.oracle, "waiting": True}
    return {
        "round": round,
        "labeled": labelled_before,
        "labeled_fraction": labelled_before / pool_size,
        "labeled_pixels": labelled_pixels,
        "labeled_pixel_fraction": labelled_area / max(1, run.pool_pixels),
        "pool_size": pool_size,
        "val_miou": _finite(val.miou),
        "test_miou": _finite(test.miou),
        "test_split": run.eval_split[0],
        "val_pixel_accuracy": _finite(val.pixel_accuracy),
        "test_pixel_accuracy": _finite(test.pixel_accuracy),
        "per_class_iou": _iou_table(test, run.classes),
        "val_per_class_iou": _iou_table(val, run.classes),
        "train": train_summary,
        "queried": queried,
        "query_scores": [_finite(s) for s in scores],
        **extra,
        "seconds": {phase: float(f"{spent:.4f}") for phase, spent in seconds.items()},
        "world_size": run.world.world_size,
    }


def summary_line(record: dict[str, Any]) -> str:
    """One line per round: labelled count and fraction, mIoU, seconds per phase."""
    sec = record["seconds"]
    phases = " ".join(f"{k} {v:.1f}s" for k, v in sec.items() if k != "total")
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    return (
        f"round {record['round']:>2} | labelled {record['labeled']}/{record['pool_size']} "
        f"({100 * record['labeled_fraction']:.1f}%, {100 * record.get('labeled_pixel_fraction', 0):.1f}% px) | "
        f"val mIoU {fmt(record['val_miou'])} | "
        f"{record['test_split']} mIoU {fmt(record['test_miou'])} | {phases} | queried {len(record['queried'])}"
    )
