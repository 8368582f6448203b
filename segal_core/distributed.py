"""Several processes, one run: the :class:`World` a run is part of (``torchrun``).

Under ``torchrun`` (or ``segal run --nproc-per-node N``) every process runs the same
cycle. :meth:`World.from_env` reads torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``PORT``) and
joins the process group: gloo on the CPU, NCCL on CUDA (one device per local rank),
plus a gloo group for the small control messages (barriers, settings, the ledger),
whatever the device. Without ``WORLD_SIZE`` (or with 1) it is :data:`SINGLE`: no
``torch.distributed`` at all, every helper a no-op, the run exactly as before.

The world is carried on :class:`~segal_core.run.Run` (``run.world``); the model
plugin sees rank and size in :class:`~segal_core.model.ModelConfig`. Nothing here is
global: the process group is made by :meth:`World.from_env` and destroyed by
:meth:`World.close`. See ``docs/distributed.md``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import SegalError

__all__ = [
    "SINGLE", "PeerStopped", "World", "agree", "check_same_settings", "is_peer_failure", "joined", "writer_lock",
]

T = TypeVar("T")

#: Settings that may differ between ranks (each process's own threads and workers).
LOCAL_SETTINGS = frozenset({"threads", "num_workers", "progress", "out"})

#: The environment variable giving how long (seconds) a rank waits for the others in
#: one control message; the default is a week, so a phase rank 0 runs alone (scoring a
#: whole pool for a strategy that does not shard, a slow oracle, a big commit) never
#: times the others out.
TIMEOUT_ENV = "SEGAL_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 7 * 24 * 3600.0


def control_timeout(env: Mapping[str, str]) -> float:
    """Seconds a rank waits in one control message (:data:`TIMEOUT_ENV`, default a week)."""
    text = env.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise _together(SegalError(  # the same on every rank: rank 0 says it
            f"{TIMEOUT_ENV}={text}: expected a number of seconds above 0 (default {DEFAULT_TIMEOUT_S:.0f}, a week); "
            "unset it for the default"
        ))
    return seconds


class PeerStopped(SegalError):
    """Another rank stopped (a mistake, a failure): this rank stops too, silently;
    rank 0 prints the one line that says why."""

    def __init__(self, message: str = "another rank stopped", exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class World:
    """This process's place among the processes of one run.

    :param rank: global rank, 0 .. ``world_size - 1``; rank 0 alone writes the run folder.
    :param local_rank: rank on this machine (the CUDA device it uses).
    :param world_size: processes in the run; 1 = no ``torch.distributed``.
    :param local_world_size: processes on this machine.
    :param backend: the default group's backend (``gloo``, or ``cpu:gloo,cuda:nccl``
        where CUDA is available), ``None`` alone.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    backend: str | None = None
    _control: Any = field(default=None, repr=False)
    _owned: bool = field(default=False, repr=False)

    # -- building ------------------------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, timeout_s: float | None = None) -> World:
        """The world torchrun describes in ``env`` (default ``os.environ``), its process
        group joined; :data:`SINGLE` without ``WORLD_SIZE`` or with 1.

        ``timeout_s``: how long a rank waits for the others in one control message
        (default: ``SEGAL_DIST_TIMEOUT`` in ``env``, else a week); the group that
        trains (NCCL on CUDA) keeps torch's own timeout.

        The default group is ``gloo`` for CPU tensors and, where CUDA is available,
        ``nccl`` for CUDA tensors (``cpu:gloo,cuda:nccl``), so the backend never
        depends on settings that rank 0 may still have to read; each rank then uses
        the CUDA device of its local rank. Control messages go through a gloo group.
        """
        env = os.environ if env is None else env
        try:
            size = int(env.get("WORLD_SIZE", "1") or 1)
            rank = int(env.get("RANK", "0") or 0)
            local = int(env.get("LOCAL_RANK", str(rank)) or 0)
            local_size = int(env.get("LOCAL_WORLD_SIZE", str(size)) or size)
        except ValueError:
            raise SegalError(
                "WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers; start several processes with "
                "torchrun or segal run --nproc-per-node N"
            ) from None
        if size <= 1:
            return SINGLE
        if not 0 <= rank < size:
            raise SegalError(f"RANK={rank} is outside 0..{size - 1} (WORLD_SIZE={size}); start with torchrun")
        if "MASTER_ADDR" not in env or "MASTER_PORT" not in env:
            raise SegalError("WORLD_SIZE is set but MASTER_ADDR/MASTER_PORT are not; start several processes "
                             "with torchrun or segal run --nproc-per-node N")
        timeout = datetime.timedelta(seconds=control_timeout(env) if timeout_s is None else timeout_s)
        import torch
        import torch.distributed as dist

        cuda = torch.cuda.is_available()
        backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
        if cuda and local < torch.cuda.device_count():
            # whether this rank uses its GPU is known once the settings are read
            # (World.device); a rank past the GPUs may still run on the CPU
            torch.cuda.set_device(local)
        owned = not dist.is_initialized()
        if owned:
            if cuda:  # the default group trains: NCCL keeps torch's timeout, gloo the long one
                dist.init_process_group(backend=backend, rank=rank, world_size=size)
            else:  # gloo for everything: the control messages' timeout
                dist.init_process_group(backend=backend, rank=rank, world_size=size, timeout=timeout)
        control = dist.new_group(backend="gloo", timeout=timeout) if cuda else dist.group.WORLD
        return cls(rank, local, size, local_size, backend, control, owned)

    def close(self, *, together: bool = True) -> None:
        """Leave the process group (when :meth:`from_env` joined it). Every rank first
        waits for the others (at most a minute; not at all for a peer already gone):
        a gloo process that exits while a peer still holds its connections aborts
        ("terminate called without an active exception"), so the ranks tear down
        together. ``together=False`` (every rank stopped on one mistake) waits 10 s
        at most. A rank that stops alone (a signal, a lost peer) does not call this."""
        if self._owned:
            import torch.distributed as dist

            if dist.is_initialized():
                with contextlib.suppress(Exception):  # a peer gone, or stuck elsewhere
                    wait = datetime.timedelta(seconds=60 if together else 10)
                    dist.monitored_barrier(group=self._control, timeout=wait, wait_all_ranks=True)
                dist.destroy_process_group()
            self._owned = False

    # -- who ---------------------------------------------------------------------------

    @property
    def distributed(self) -> bool:
        """Whether there are other processes."""
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Rank 0: the one process that writes the run folder and calls the oracle."""
        return self.rank == 0

    def device(self, wanted: str) -> str:
        """The device this rank uses for ``--device wanted``: ``cuda:LOCAL_RANK`` for
        ``cuda`` or ``auto`` where CUDA is there; ``wanted`` otherwise."""
        cuda = self.distributed and self.backend is not None and "nccl" in self.backend
        if cuda and wanted in ("auto", "cuda"):
            import torch

            count = torch.cuda.device_count()
            if self.local_rank >= count:
                raise SegalError(
                    f"--device {wanted}: LOCAL_RANK={self.local_rank} but this machine has {count} CUDA devices; "
                    "start at most that many processes per machine (--nproc-per-node), or give --device cpu"
                )
            return f"cuda:{self.local_rank}"
        if self.distributed and wanted.startswith("cuda:"):
            raise SegalError(
                f"--device {wanted}: under torchrun each process uses the GPU of its local rank; give --device cuda "
                "(choose the GPUs with CUDA_VISIBLE_DEVICES)"
            )
        return wanted

    def shard(self, count: int) -> tuple[int, int]:
        """This rank's contiguous share ``[start, stop)`` of ``count`` items: the
        first ``count % world_size`` ranks take one more."""
        base, extra = divmod(count, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    # -- messages (the gloo control group; small objects only) --------------------------

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier(group=self._control)

    def broadcast(self, obj: T | None) -> T:
        """Rank 0's ``obj`` on every rank (pickled; for small objects)."""
        if not self.distributed:
            return obj  # type: ignore[return-value]
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self._control)
        return box[0]  # type: ignore[return-value]

    def gather(self, obj: T) -> list[T] | None:
        """Every rank's ``obj``, in rank order, on rank 0 (``None`` elsewhere)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.is_writer else None
        dist.gather_object(obj, out, dst=0, group=self._control)
        return out

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self._control)
        return out

    def on_writer(self, action: Callable[[], T]) -> T:
        """Run ``action`` on rank 0 only and hand its result to every rank; a failure
        there stops every rank (rank 0 raises it, the others :class:`PeerStopped`)."""
        if not self.distributed:
            return action()
        if not self.is_writer:
            return self.receive()
        try:
            result = action()
        except BaseException as exc:
            self.send_failure(exc)
            raise _together(exc)
        self.broadcast(("ok", 0, result))
        return result

    def receive(self) -> Any:
        """On a rank other than 0: the next result rank 0 sends with :meth:`on_writer`;
        :class:`PeerStopped` when it sent a failure instead."""
        status, code, payload = self.broadcast(None)
        if status != "ok":
            raise _together(PeerStopped(f"rank 0 stopped ({payload})", code))
        return payload

    def send_failure(self, exc: BaseException) -> None:
        """On rank 0: tell the other ranks, waiting in :meth:`receive`, that it stopped
        (once per exception, however many ``on_writer`` blocks it passes through)."""
        if not (self.distributed and self.is_writer) or getattr(exc, "_segal_sent", False):
            return
        with contextlib.suppress(AttributeError):
            exc._segal_sent = True  # type: ignore[attr-defined]
        # best effort: the others may be gone already (a launcher stopping every rank);
        # the exception being raised is what matters
        with contextlib.suppress(Exception):
            self.broadcast(("failed", _exit_code(exc), f"{type(exc).__name__}: {exc}"))


E = TypeVar("E", bound=BaseException)


def _together(exc: E) -> E:
    """Mark ``exc`` as raised on every rank at one point (see :func:`joined`)."""
    with contextlib.suppress(AttributeError):
        exc._segal_together = True  # type: ignore[attr-defined]
    return exc


#: The world of a run in one process: no ``torch.distributed``, every helper a no-op.
SINGLE = World()


def _exit_code(exc: BaseException) -> int:
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int) and not isinstance(code, bool):  # SegalError, LabelsPending (75)
        return code
    if isinstance(exc, SegalError):
        return int(getattr(exc, "exit_code", 2))
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1


def agree(world: World, action: Callable[[], T]) -> T:
    """Run ``action`` on every rank; when it fails on any, every rank stops: rank 0
    raises the one line of the first rank that failed (``rank N: ...``), the others
    :class:`PeerStopped`. Used where each rank checks its own settings and data."""
    if not world.distributed:
        return action()
    failure: BaseException | None = None
    result: Any = None
    try:
        result = action()
    except (SegalError, OSError, ValueError) as exc:
        failure = exc
    status = None if failure is None else (_exit_code(failure), str(failure), type(failure).__name__)
    statuses = world.all_gather(status)
    failed = [(r, s) for r, s in enumerate(statuses) if s is not None]
    if not failed:
        return result  # type: ignore[no-any-return]
    rank, (code, message, _kind) = failed[0]
    if world.is_writer:
        if rank == 0 and failure is not None:
            raise _together(failure)
        error = SegalError(f"rank {rank}: {message}")
        error.exit_code = code  # type: ignore[attr-defined]
        raise _together(error)
    raise _together(PeerStopped(f"rank {rank} stopped", code))


def check_same_settings(world: World, settings: Mapping[str, Any]) -> None:
    """Every rank must run the same settings (but its own threads and workers): a
    difference is one line naming the option and both values."""
    if not world.distributed:
        return
    mine = {k: v for k, v in settings.items() if k not in LOCAL_SETTINGS}
    every = world.all_gather(mine)
    first = every[0]
    for rank, theirs in enumerate(every[1:], start=1):
        keys = sorted(k for k in set(first) | set(theirs) if first.get(k) != theirs.get(k))
        if keys:
            key = keys[0]
            from .config import _flag

            flag = "plugin options" if key == "plugin_options" else _flag(key)
            if world.is_writer:
                raise _together(SegalError(
                    f"{flag}: rank {rank} was given {theirs.get(key)!r}, rank 0 {first.get(key)!r}; "
                    "start every process with the same options"
                ))
            raise _together(PeerStopped(f"settings differ on rank {rank}"))


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is ``torch.distributed`` noticing that another process went
    away (a collective that lost its peer, a closed connection)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return False
    kinds = tuple(k for k in (getattr(dist, "DistError", None),) if k is not None)
    if kinds and isinstance(exc, kinds):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "[Gloo]", "NCCL", "Broken pipe")
    )


@contextlib.contextmanager
def joined(env: Mapping[str, str] | None = None) -> Iterator[World]:
    """:meth:`World.from_env` for the length of the block, the group left after it."""
    world = World.from_env(env)
    try:
        yield world
    except BaseException as exc:
        # every rank stopped at one point (a mistake they agreed on): leave together;
        # anything else (a signal, a lost peer): just go, the others may be anywhere
        if getattr(exc, "_segal_together", False):
            world.close(together=False)
        raise
    world.close()


@contextlib.contextmanager
def writer_lock(world: World, path: Any, **kwargs: Any) -> Iterator[None]:
    """The run folder's :class:`~segal_core.lock.FolderLock`, taken by rank 0 only;
    a folder in use stops every rank (rank 0 says by whom)."""
    from .lock import FolderLock

    if not world.distributed:
        with FolderLock(path, **kwargs):
            yield
        return
    lock = FolderLock(path, **kwargs) if world.is_writer else None
    world.on_writer(lambda: None if lock is None else (lock.__enter__(), None)[1])
    try:
        yield
    finally:
        if lock is not None:
            lock.__exit__(None, None, None)
