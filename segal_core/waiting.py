"""Rounds that wait for labels: handing queries to a :class:`~segal_core.WaitingOracle`
and collecting what the annotators sent back.

A round that queries through a waiting oracle ends in :func:`submit`: the oracle
hands the queries out, the cycle commits the round with ``state.json``'s
``pending`` and stops with :class:`~segal_core.LabelsPending` (exit status 75).
``--resume`` calls :func:`collect`: every label that came back is checked here
(the oracle's own checks come first), entered in the ledger and committed, and the
cycle goes on; with labels missing it stops again with the same status, unless the
oracle accepts a partial answer. :func:`label_status` tells where a run stands
without training (``segal status``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from .colors import class_colors
from .dataset import Dataset
from .errors import ContractError, LabelsPending, SegalError
from .oracle import Annotation, Collected, Handoff, Query, WaitingOracle
from .rundir import LedgerEntry, Pending
from .sharding import on_writer_labels

if TYPE_CHECKING:
    from .plugins import Plugins
    from .regions import RegionMaps
    from .run import Run

__all__ = ["LabelStatus", "checked_labels", "collect", "label_status", "submit"]

log = logging.getLogger("segal")


def query_folder(round: int) -> str:
    """Where round ``round``'s queries go, relative to the run folder."""
    return f"queries/round-{'seed' if round < 0 else f'{round:03d}'}"


def _predictor(run: Run, round: int) -> Callable[[str], torch.Tensor] | None:
    """The current model's class-id prediction for a sample id (pre-labels); none
    for the seed set (nothing is trained yet)."""
    model = run.model
    if round < 0 or model is None:
        return None
    pool = run.pool

    def predict(sample_id: str) -> torch.Tensor:
        image = pool.image(pool.index_of(sample_id))
        logits = model.logits(image.unsqueeze(0))
        return logits[0].argmax(0).to("cpu", torch.int64)

    return predict


def _handoff(
    round: int, queries: list[Query], pool: Dataset, folder: Path, predict: Callable[[str], torch.Tensor] | None
) -> Handoff:
    return Handoff(
        round=round,
        queries=queries,
        pool=pool,
        folder=folder,
        classes=list(pool.classes),
        colors=class_colors(len(pool.classes)),
        ignore_index=pool.ignore_index,
        predict=predict,
    )


def submit(run: Run, round: int, queries: list[Query]) -> None:
    """Hand ``queries`` to the run's waiting oracle and note them as the run's
    pending round (``run.state.pending``); the cycle commits and stops after it."""
    folder = query_folder(round)
    (run.out / folder).mkdir(parents=True, exist_ok=True)
    handoff = _handoff(round, queries, run.pool, run.out / folder, _predictor(run, round))
    where = run.oracle.submit(handoff)
    if not isinstance(where, str):
        raise ContractError(f"--oracle {run.config.oracle}: submit() returned {type(where).__name__}, not a line")
    run.state.pending = Pending(
        round=round,
        queries=[{"id": q.sample_id, "score": q.score, "regions": q.regions} for q in queries],
        folder=folder,
        where=" ".join(where.split()),
    )


def _pending_queries(pending: Pending, pool: Dataset, maps: RegionMaps | None) -> list[Query]:
    """The pending round's queries, with each region query's area rebuilt from its
    region ids."""
    out = []
    for q in pending.queries:
        area = None
        if q.get("regions") is not None:
            if maps is None:
                raise SegalError(f"state.json: round {pending.round} queried regions, but the run has no region unit")
            area = torch.isin(maps(pool.index_of(q["id"])), torch.tensor(q["regions"]))
        out.append(Query(sample_id=q["id"], score=q.get("score"), area=area, regions=q.get("regions")))
    return out


def checked_labels(handoff: Handoff, collected: Collected, oracle: str) -> tuple[dict[str, Annotation], list[str]]:
    """The usable labels of ``collected`` (id -> annotation, the mask as int64 on the
    CPU) and one line per label that cannot be used: not a queried id, a second label
    for an id, no mask, not the frame's size, values outside the classes."""
    if not isinstance(collected, Collected):
        raise ContractError(f"--oracle {oracle}: collect() returned {type(collected).__name__}, not Collected")
    wanted = {q.sample_id: q for q in handoff.queries}
    pool, classes, ignore = handoff.pool, len(handoff.classes), handoff.ignore_index
    good: dict[str, Annotation] = {}
    rejected = [" ".join(str(line).split()) for line in collected.rejected]
    for ann in collected.annotations:
        where = ann.source or f"the label for {ann.sample_id!r}"
        if ann.sample_id not in wanted:
            rejected.append(f"{where}: {ann.sample_id!r} was not queried in this round; remove it")
            continue
        if ann.sample_id in good:
            rejected.append(f"{where}: a second label for {ann.sample_id!r}; keep one")
            continue
        mask = ann.mask
        if mask is None or not isinstance(mask, torch.Tensor) or mask.dim() != 2:
            rejected.append(f"{where}: not a [H, W] mask of class ids")
            continue
        if mask.is_floating_point() or mask.is_complex() or mask.dtype == torch.bool:
            rejected.append(f"{where}: a {mask.dtype} mask, expected whole class ids")
            continue
        height, width = pool.image_size(pool.index_of(ann.sample_id))
        if tuple(mask.shape) != (height, width):
            rejected.append(
                f"{where}: {mask.shape[1]}x{mask.shape[0]} pixels (WxH), the frame is {width}x{height}; "
                "draw the mask on the frame itself"
            )
            continue
        mask = mask.detach().to("cpu", torch.int64)
        bad = (mask != ignore) & ((mask < 0) | (mask >= classes))
        if bool(bad.any()):
            value = int(mask[bad][0])
            rejected.append(
                f"{where}: holds the value {value}; class ids are 0..{classes - 1} ({ignore} for unlabelled pixels)"
            )
            continue
        area = wanted[ann.sample_id].area
        if area is not None and not bool((mask[area.to(mask.device)] != ignore).any()):
            rejected.append(
                f"{where}: labels no pixel of the area queried (only what lies inside the area shown for "
                f"{ann.sample_id!r} is used); label inside it"
            )
            continue
        good[ann.sample_id] = Annotation(ann.sample_id, int((mask != ignore).sum()), mask, ann.source)
    return good, rejected


def _waiting_message(run_dir: Path, pending: Pending, arrived: int, rejected: int, oracle: str, first: bool) -> str:
    what = "the seed set" if pending.round < 0 else f"round {pending.round}"
    total = len(pending.queries)
    if first:
        head = f"{what} waits for labels: {total} {'query' if total == 1 else 'queries'} handed to --oracle {oracle}"
    else:
        head = (
            f"{what} still waits for labels: {arrived} of {total} in"
            + (f", {rejected} rejected" if rejected else "")
            + f", {total - arrived} missing"
        )
    where = f" ({pending.where})" if pending.where else ""
    return f"{head}{where}; when they are labelled: segal run --resume {run_dir}"


def pending_error(run: Run, *, arrived: int = 0, rejected: Sequence[str] = (), first: bool = False) -> LabelsPending:
    """The :class:`LabelsPending` the cycle stops with."""
    pending = run.state.pending
    assert pending is not None
    return LabelsPending(
        _waiting_message(run.out, pending, arrived, len(rejected), run.config.oracle, first),
        run_dir=run.out, round=pending.round, total=len(pending.queries), arrived=arrived,
        rejected=list(rejected), where=pending.where,
    )


@on_writer_labels  # under torchrun rank 0 collects; the others get the ledger
def collect(run: Run) -> None:
    """Collect the pending round's labels into the ledger (the caller commits);
    raises :class:`LabelsPending` while some are missing, unless the oracle accepts
    a partial answer and at least one arrived. The unlabelled queries then go back
    to the pool, and the waiting round's record says which."""
    pending = run.state.pending
    assert pending is not None
    oracle = run.oracle
    if not oracle.waits:
        raise SegalError(
            f"--resume {run.out}: round {pending.round} waits for labels, but --oracle {run.config.oracle} "
            "does not wait; resume with the oracle the run started with"
        )
    folder = run.out / pending.folder
    folder.mkdir(parents=True, exist_ok=True)
    handoff = _handoff(pending.round, _pending_queries(pending, run.pool, run.maps), run.pool, folder, None)
    good, rejected = checked_labels(handoff, cast(WaitingOracle, oracle).collect(handoff), run.config.oracle)
    missing = [sid for sid in pending.ids if sid not in good]
    partial = bool(getattr(oracle, "accept_partial", False))
    if missing and not (partial and good):
        raise pending_error(run, arrived=len(good), rejected=rejected)  # carries the rejected lines
    for line in rejected:
        log.warning(f"rejected: {line}")
    entered = _enter(run, pending, handoff, good)
    if pending.round >= 0:
        record = run.history[pending.round]
        record["labels"] = {"oracle": run.config.oracle, "labelled": len(good), "returned": missing}
    if missing:
        log.info(
            f"accept_partial: training on the {len(good)} labels that arrived; {len(missing)} queries go back "
            "to the pool"
        )
    if pending.round >= 0:  # as a round that labels at once calls it (not for the seed set)
        run.call("segal_after_label", round=pending.round, annotations=entered)
    run.state.pending = None


def _enter(run: Run, pending: Pending, handoff: Handoff, good: dict[str, Annotation]) -> list[Annotation]:
    """Write the arrived masks under ``labels/`` and enter them in the ledger: a
    whole-image query keeps its mask as drawn; a region query keeps its area only,
    merged with what the image had. Returns the labels as entered, in query order."""
    ignore = run.pool.ignore_index
    entered: list[Annotation] = []
    who = f"--oracle {run.config.oracle}"
    for query in handoff.queries:
        ann = good.get(query.sample_id)
        if ann is None:
            continue
        sid, mask = query.sample_id, ann.mask
        assert mask is not None
        before = run.state.ledger.get(sid)
        if query.area is None:
            entry = LedgerEntry(round=pending.round, pixels=int((mask != ignore).sum()))
        else:
            cut = torch.where(query.area, mask, torch.full_like(mask, ignore))
            old = run.partial_masks.get(sid)
            mask = cut if old is None else torch.where(query.area, cut, old.to(torch.int64))
            regions = sorted({*(before.regions or [] if before else []), *(query.regions or [])})
            pixels = (before.pixels if before else 0) + int(query.area.sum())
            entry = LedgerEntry(round=before.round if before else pending.round, pixels=pixels, regions=regions)
        entry.mask_file = run.rundir.write_mask(sid, mask, who=who, round=pending.round)
        run.keep_mask(sid, mask)
        run.state.ledger[sid] = entry
        added = entry.pixels - (before.pixels if before and query.area is not None else 0)
        entered.append(Annotation(sid, added, mask, ann.source))
    return entered


# -- segal status ---------------------------------------------------------------------


@dataclass
class LabelStatus:
    """Where a run stands (``segal status``): its rounds, and for a round waiting
    for labels how many have arrived."""

    run_dir: Path
    completed_rounds: int
    finished: bool
    labelled: int
    pool_size: int | None
    waiting_round: int | None = None
    queried: int = 0
    arrived: int = 0
    rejected: list[str] = field(default_factory=list)
    where: str = ""
    oracle: str = ""

    @property
    def missing(self) -> int:
        return self.queried - self.arrived

    @property
    def waiting(self) -> bool:
        """Whether the run waits for labels that have not all arrived."""
        return self.waiting_round is not None and self.missing > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir), "completed_rounds": self.completed_rounds, "finished": self.finished,
            "labelled": self.labelled, "pool_size": self.pool_size, "waiting_round": self.waiting_round,
            "queried": self.queried, "arrived": self.arrived, "missing": self.missing,
            "rejected": self.rejected, "where": self.where, "oracle": self.oracle,
        }

    def lines(self) -> list[str]:
        """What ``segal status`` prints."""
        pool = f" of {self.pool_size}" if self.pool_size is not None else ""
        state = "finished" if self.finished else "in progress"
        out = [f"{self.run_dir}: {state}, {self.completed_rounds} rounds committed, {self.labelled}{pool} labelled"]
        if self.waiting_round is not None:
            what = "the seed set" if self.waiting_round < 0 else f"round {self.waiting_round}"
            out.append(
                f"{what} waits for labels from --oracle {self.oracle}: {self.arrived} of {self.queried} in, "
                f"{len(self.rejected)} rejected, {self.missing} missing" + (f" ({self.where})" if self.where else "")
            )
            out.extend(f"rejected: {line}" for line in self.rejected)
            if self.missing:
                out.append(f"when they are labelled: segal run --resume {self.run_dir}")
            else:
                out.append(f"every label is in: segal run --resume {self.run_dir} goes on")
        return out


def label_status(
    out: Path | str,
    *,
    plugins: Plugins | None = None,
    oracle_options: dict[str, Any] | None = None,
    data_path: str | None = None,
) -> LabelStatus:
    """Where the run in ``out`` stands, without training and without changing the
    run's state: for a round waiting for labels, the oracle's :meth:`collect` is
    asked what arrived (an oracle may refresh its own status files, such as the
    folder oracle's ``tasks.csv``; a region unit may fill its map cache) and every
    label is checked as ``--resume`` would.

    :param oracle_options: ``--oracle-opt`` settings to add to the run's own (a
        secret token that ``config.json`` does not keep, a server that moved); only
        the keys the oracle lets change on resume are taken.
    :param data_path: the data folder, when it is not where the run found it.
    """
    from .config import RunConfig
    from .plugins import load_plugins
    from .prepare import _load_splits, cache_name, check_settings, resume_free_oracle_options
    from .regions import RegionMaps
    from .rundir import RunDir

    rundir = RunDir.open_existing(Path(out))
    data = rundir.config()
    state = rundir.state()
    status = LabelStatus(
        run_dir=Path(out), completed_rounds=state.completed_rounds, finished=state.finished,
        labelled=len(state.ledger), pool_size=(data.get("resolved") or {}).get("pool_size"),
    )
    pending = state.pending
    if pending is None:
        return status
    config = RunConfig.from_json(data)
    plugins = plugins or load_plugins(blocked=config.blocked)
    if oracle_options:
        free = resume_free_oracle_options(plugins, config.oracle)
        wrong = sorted(set(oracle_options) - free)
        if wrong:
            raise SegalError(
                f"--oracle-opt {wrong[0]}: not an option --oracle {config.oracle} lets change after the start "
                f"({', '.join(sorted(free)) or 'none'} can)"
            )
        config = replace(config, oracle_options={**config.oracle_options, **oracle_options})
    if data_path:
        config = replace(config, data_path=data_path)
    _, _, _, oracle, unit = check_settings(config, plugins)
    if not getattr(oracle, "waits", False):
        raise SegalError(f"{out}: round {pending.round} waits for labels, but --oracle {config.oracle} does not wait")
    pool = _load_splits(config, plugins.registry.dataset(config.dataset)).train
    maps = None if unit.whole_image else RegionMaps(unit, pool, Path(out) / "regions" / cache_name(unit))
    handoff = _handoff(pending.round, _pending_queries(pending, pool, maps), pool, Path(out) / pending.folder, None)
    good, rejected = checked_labels(handoff, oracle.collect(handoff), config.oracle)
    status.waiting_round = pending.round
    status.queried = len(pending.queries)
    status.arrived = len(good)
    status.rejected = rejected
    status.where = pending.where
    status.oracle = config.oracle
    return status
