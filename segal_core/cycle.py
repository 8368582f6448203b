"""The pool-based active-learning cycle (``segal run``) as a Python API.

seed labels -> train -> evaluate -> score the unlabelled pool -> select -> the
oracle labels -> repeat, until the rounds, the budget or the pool run out.

Read top to bottom: :mod:`segal_core.prepare` sets a run up, :mod:`segal_core.rounds`
runs one round, this module loops over rounds and commits each one to the run
directory (:mod:`segal_core.rundir`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from .config import OPTION_MAPS, RunConfig
from .distributed import World, agree, check_same_settings, joined, writer_lock
from .errors import SegalError
from .plugins import Plugins, load_plugins
from .prepare import check_settings, default_out, prepare_run, resume_free_oracle_options
from .progress import Bars
from .rounds import one_round, seed_ledger, summary_line
from .run import Echo, Run, _quiet
from .rundir import RunDir, RunState
from .shadow import ShadowRunDir, read_snapshot
from .waiting import collect, pending_error

__all__ = ["default_out", "prepare_run", "resume_run", "run_cycle", "summary_line"]

log = logging.getLogger("segal")

IfExists = Literal["error", "resume", "replace"]


def _loop(run: Run) -> list[dict[str, Any]]:
    bars = Bars(enabled=run.config.progress and run.world.is_writer)
    try:
        if run.state.pending is not None:  # a round waits for labels: collect them
            collect(run)  # raises LabelsPending while some are missing
            run.world.on_writer(lambda: run.rundir.commit(run.state, run.history))
        if run.state.completed_rounds == 0 and not run.state.ledger:
            seed_ledger(run)
            if run.state.pending is not None:  # the seed set went to annotators
                run.world.on_writer(lambda: run.rundir.commit(run.state, run.history))
                raise pending_error(run, first=True)
        run.call("segal_run_start")
        while not run.state.finished:
            round = run.state.completed_rounds
            record = one_round(run, round, bars)
            model = run.model
            assert model is not None
            # rank 0 alone writes; the other ranks wait for it (a failure stops them all)
            checkpoint = run.world.on_writer(lambda: run.rundir.save_checkpoint(model, round))
            run.history.append(record)
            run.state = RunState(
                completed_rounds=round + 1,
                ledger=run.state.ledger,
                checkpoint=checkpoint,
                finished=not record["queried"],
                pending=run.state.pending,
            )
            run.world.on_writer(lambda: run.rundir.commit(run.state, run.history))
            run.echo(summary_line(record))
            run.call("segal_round_end", record=record)
            if run.state.pending is not None:
                raise pending_error(run, first=True)
        run.call("segal_run_end", history=run.history)
    except BaseException as exc:  # a signal, labels pending, a peer lost: the CLI names the folder
        with contextlib.suppress(AttributeError):
            exc.run_dir = run.out  # type: ignore[attr-defined]
        raise
    finally:
        bars.close()
    return run.history


def run_cycle(
    config: RunConfig,
    *,
    plugins: Plugins | None = None,
    echo: Echo = _quiet,
    if_exists: IfExists = "error",
    world: World | None = None,
) -> list[dict[str, Any]]:
    """Run the whole cycle into ``config.out`` and return the history: one record
    per round, as in ``history.jsonl``.

    :param world: the processes of the run; ``None``: joined from torchrun's
        environment (one process without it), left at the end.

    :param if_exists: what to do when ``config.out`` is a run folder already:
        ``"error"`` (refuse, the default), ``"resume"`` (continue it, as
        :func:`resume_run`) or ``"replace"`` (delete that run folder and start
        again; only a folder holding a SegAL run is ever deleted).
    """
    if if_exists not in ("error", "resume", "replace"):
        raise SegalError(f"if_exists={if_exists!r}: expected 'error', 'resume' or 'replace'")
    if world is None:
        with joined() as world:
            return run_cycle(config, plugins=plugins, echo=echo, if_exists=if_exists, world=world)
    check_same_settings(world, config.to_json())
    out = Path(config.out) if config.out else None
    if out is not None and if_exists == "resume" and world.broadcast(RunDir.is_run(out)):
        # the settings given must be the run's own (as resume_run checks them)
        given = {k: v for k, v in config.to_json().items() if k not in ("out", "blocked")}
        return resume_run(out, given, plugins=plugins, echo=echo, world=world)
    out = world.broadcast(out or default_out(config))  # one folder, named by rank 0
    with writer_lock(world, out, what="a run"):  # one writer per run folder (segal_core.lock)
        if if_exists == "replace" and world.is_writer and RunDir.is_run(out):
            plugins = plugins or load_plugins(blocked=config.blocked)
            check_settings(config, plugins)  # a typo must not cost the old run
            RunDir(out).clear()
        world.barrier()
        return _start(replace(config, out=str(out)), plugins=plugins, echo=echo, world=world)


def _start(config: RunConfig, *, plugins: Plugins | None, echo: Echo, world: World) -> list[dict[str, Any]]:
    made: list[Run] = []

    def prepare() -> Run:
        made.append(prepare_run(config, plugins=plugins, echo=echo, world=world))
        return made[-1]

    try:
        run = agree(world, prepare)
    except BaseException:
        # another rank's set-up failed after rank 0 wrote the new run's config.json and
        # state.json: take them away again (the lock then removes the folder it made)
        if made and world.distributed and world.is_writer:
            with contextlib.suppress(OSError):  # the mistake is what to show, not a failed clean-up
                RunDir(made[0].out).clear()
        raise
    assert run.model is not None
    log.info(
        f"run {run.out}: {config.dataset} pool {len(run.pool)}, strategy {config.strategy}, "
        f"model {config.model} on {run.model.device}, seed set {run.seed_size}, {run.query_size} per query"
    )
    return _loop(run)


def resume_run(
    out: Path | str,
    overrides: dict[str, Any] | None = None,
    *,
    plugins: Plugins | None = None,
    echo: Echo = _quiet,
    world: World | None = None,
) -> list[dict[str, Any]]:
    """Continue the run in ``out`` from its last completed round.

    ``overrides`` are settings given again (``RunConfig`` field names); any that
    differs from the run's own (other than output, thread and worker settings) is an
    error naming it. Option maps given again add to the run's own. A run may resume
    on another number of processes than it started on (``world``, as for
    :func:`run_cycle`).
    """
    if world is None:
        with joined() as world:
            return resume_run(out, overrides, plugins=plugins, echo=echo, world=world)
    check_same_settings(world, overrides or {})
    # a run folder, before the lock file is made in it (rank 0 reads it; the others wait)
    world.on_writer(lambda: (RunDir.open_existing(Path(out)), None)[1])
    with writer_lock(world, Path(out), what="a resumed run", create=False):  # one writer (segal_core.lock)
        return _resume(out, overrides, plugins=plugins, echo=echo, world=world)


def _resume(
    out: Path | str, overrides: dict[str, Any] | None, *, plugins: Plugins | None, echo: Echo, world: World
) -> list[dict[str, Any]]:
    rundir: RunDir
    if world.is_writer:
        rundir = RunDir.open_existing(Path(out))
    if world.distributed:  # the other ranks get what rank 0 read (no shared folder needed)
        snapshot = world.on_writer(lambda: read_snapshot(rundir))
        if not world.is_writer:
            rundir = ShadowRunDir(Path(out), *snapshot)
    saved = RunConfig.from_json(rundir.config())
    if overrides:
        merged = dict(overrides)
        for key in OPTION_MAPS:
            if key in merged:  # options given again add to the run's own
                merged[key] = {**getattr(saved, key), **merged[key]}
        wanted = replace(saved, **merged)
        # the oracle's connection options (and accept_partial) may change from run to resume
        plugins = plugins or load_plugins(blocked=saved.blocked)
        free = resume_free_oracle_options(plugins, saved.oracle)
        strip = lambda c: replace(  # noqa: E731
            c, oracle_options={k: v for k, v in c.oracle_options.items() if k not in free}
        )
        diff = strip(saved).differences(strip(wanted))
        if diff:
            shown = ", ".join(f"{k} (run: {getattr(saved, k)!r}, given: {getattr(wanted, k)!r})" for k in diff)
            raise SegalError(f"--resume {out}: options differ from the run's config.json: {shown}; drop them to resume")
        saved = wanted
    saved = replace(saved, out=str(out))
    run = agree(world, lambda: prepare_run(saved, plugins=plugins, echo=echo, existing=rundir, world=world))
    if run.state.finished:
        log.info(f"run {out} is already complete ({run.state.completed_rounds} rounds)")
        return run.history
    if run.state.pending is not None:
        what = "the seed set" if run.state.pending.round < 0 else f"round {run.state.pending.round}"
        log.info(f"resuming {out}: collecting the labels of {what} from --oracle {saved.oracle}")
    elif saved.full:
        log.info(f"resuming the full-data run {out}: training on the whole pool ({len(run.pool)} samples)")
    else:
        log.info(f"resuming {out} at round {run.state.completed_rounds} ({len(run.state.ledger)} labelled)")
    return _loop(run)
