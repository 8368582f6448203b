"""``segal run --nproc-per-node N``: the same run on N processes of this machine,
started through torch's own launcher (:mod:`torch.distributed.launcher.api`, what
``torchrun --standalone`` uses), never a scheme of ours.

Each process runs ``python -m segal_core`` with the command line less
``--nproc-per-node``, in the environment torchrun gives (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``, ...); :class:`segal_core.distributed.World`
reads it. Several machines: run ``torchrun`` on each (see ``docs/distributed.md``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from collections.abc import Iterator, Sequence

from .errors import SegalError

__all__ = ["FLAG", "launch", "split_nproc"]

FLAG = "--nproc-per-node"


def split_nproc(args: Sequence[str]) -> tuple[int | None, list[str]]:
    """``(N, the other arguments)`` for a ``segal run`` command line holding
    ``--nproc-per-node N`` (or ``--nproc-per-node=N``); ``(None, args)`` without."""
    out: list[str] = []
    value: str | None = None
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg == FLAG:
            if i + 1 >= len(items):
                raise SegalError(f"{FLAG}: give a number of processes (e.g. {FLAG} 2)")
            value, i = items[i + 1], i + 2
            continue
        if arg.startswith(FLAG + "="):
            value, i = arg.split("=", 1)[1], i + 1
            continue
        out.append(arg)
        i += 1
    if value is None or "run" not in out:
        return None, list(args)
    try:
        count = int(value)
    except ValueError:
        raise SegalError(f"{FLAG} {value}: expected a whole number of processes") from None
    if count < 1:
        raise SegalError(f"{FLAG} {count}: expected at least 1 process")
    return count, out


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """The launcher's own log lines (its config, a box per failed worker, "Received 15
    death signal") stay out of the way: a failed run already said why, in one line, on
    rank 0. torch gives several of its loggers a level of their own (``LOGLEVEL``), so
    each ``torch.distributed`` logger is quieted, not only their parent."""
    names = ["torch.distributed", "torch.distributed.elastic"] + [
        name for name in logging.root.manager.loggerDict if name.startswith("torch.distributed.")
    ]
    loggers = [logging.getLogger(name) for name in dict.fromkeys(names)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _starts_nothing(args: Sequence[str]) -> bool:
    """Whether the command line only shows something (``--help``, ``--resume DIR
    --dry-run``): it runs once, in this process, not on every rank."""
    return any(a in ("-h", "--help", "--dry-run") for a in args)


def launch(nproc: int, args: Sequence[str]) -> int:
    """Start ``python -m segal_core ARGS`` on ``nproc`` processes of this machine and
    wait for them; returns rank 0's exit status (or the first failed rank's)."""
    if "WORLD_SIZE" in os.environ and os.environ["WORLD_SIZE"] not in ("", "1"):
        raise SegalError(f"{FLAG}: this process was already started by torchrun; drop {FLAG}")
    if nproc == 1 or _starts_nothing(args):
        from .cli import run_main

        return run_main(list(args))
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"segal-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        with _quiet_launcher():
            elastic_launch(config, sys.executable)("-m", "segal_core", *args)
    except ChildFailedError as exc:
        # the rank that stopped on its own (a mistake: 2, a failed write: 1) says why the
        # run ended; the launcher then stops the others with SIGTERM
        failures = sorted(exc.failures.items(), key=lambda item: (item[1].exitcode <= 0, item[1].timestamp, item[0]))
        code = failures[0][1].exitcode if failures else 1
        return code if code > 0 else 128 - code  # a signal -N: 128 + N, as a shell says
    except SignalException as exc:
        # Ctrl-C or SIGTERM to the launcher: torch has passed it on to every rank and
        # waited for them; rank 0 said where the run stands (interrupted:/terminated:)
        return 128 + int(exc.sigval)
    return 0
