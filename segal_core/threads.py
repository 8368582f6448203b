"""How many CPU threads a run uses, and how it waits for them.

Two problems, two steps (see ``docs/threads.md`` for the measurements):

* **Waiting.** The OpenMP runtime that torch's CPU kernels use lets an idle worker
  thread *spin* (busy-wait) for a while after each parallel region, so that the next
  region starts without a wake-up. Alone on a machine that is a small win; with two
  runs (or anything else busy) on the same cores, each run's spinning threads take
  the cores the other run's working threads wait for, and both runs crawl (issue 20:
  two synthetic runs on two cores, 14 s alone, 340 s each together).
  :func:`prepare_environment` asks the runtime to sleep instead
  (``OMP_WAIT_POLICY=PASSIVE``). The runtime reads that once, when it is loaded, so
  the CLI calls it *before torch is first imported*.
* **Counting.** :func:`usable_cpus` counts the cores this process may really use
  (its CPU affinity, capped by a cgroup CPU quota: a container's ``--cpus``), which
  ``os.cpu_count()`` does not. :func:`plan_threads` splits a budget of that many
  threads between torch's compute threads and the DataLoader's worker processes,
  and :func:`apply_threads` applies it at run start.

This module does not import torch at import time (the CLI must not).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from .errors import SegalError

__all__ = [
    "ENV_VAR",
    "WAIT_ENVIRONMENT",
    "ThreadBudget",
    "apply_threads",
    "plan_threads",
    "prepare_environment",
    "torch_loaded",
    "usable_cpus",
]

#: The environment variable that sets the thread budget when ``--threads`` is absent.
ENV_VAR = "SEGAL_THREADS"

#: Set (unless already set) by :func:`prepare_environment`: idle OpenMP threads sleep
#: instead of spinning. ``OMP_WAIT_POLICY`` is the standard name, read by GNU libgomp
#: (what pip's torch wheels link) and by Intel's libiomp5 (conda builds).
WAIT_ENVIRONMENT: Mapping[str, str] = MappingProxyType({"OMP_WAIT_POLICY": "PASSIVE"})

#: cgroup v1 folder names that may hold the ``cpu`` controller's files.
_V1_CPU_FOLDERS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")

#: Most DataLoader workers the automatic plan starts (on CUDA).
_MAX_AUTO_WORKERS = 8


@dataclass(frozen=True)
class ThreadBudget:
    """The threads one run uses.

    :param intra_op: torch's compute threads (``torch.set_num_threads``).
    :param interop: torch's inter-op pool (``torch.set_num_interop_threads``); SegAL
        starts no inter-op work, so one thread is enough.
    :param loader_workers: DataLoader worker processes (one thread each: torch sets
        that in every worker).
    :param source: where the total came from: ``"--threads"``, ``"SEGAL_THREADS"``,
        ``"OMP_NUM_THREADS"`` or ``"auto"``.
    """

    intra_op: int
    interop: int
    loader_workers: int
    source: str = "auto"

    @property
    def total(self) -> int:
        """Compute threads plus workers: the cores the run keeps busy."""
        return self.intra_op + self.loader_workers


# -- counting cores ------------------------------------------------------------------


def _affinity_cpus() -> int:
    """The CPUs this process may be scheduled on (all of them where that is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except (OSError, ValueError):
        return None


def _quota_cpus(quota: str | None, period: str | None) -> int | None:
    """``ceil(quota / period)`` cores, or ``None`` for no limit or unreadable values
    (``max``, ``-1``, empty, not numbers, zero or negative period)."""
    if quota is None or period is None:
        return None
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:
        return None
    return max(1, math.ceil(q / p))


def _own_cgroup_paths(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """This process's cgroup path: (v2 unified path, v1 ``cpu`` controller path)."""
    v2: str | None = None
    v1: str | None = None
    text = _read(proc_cgroup)
    for line in (text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _folders(base: Path, own: str | None) -> list[Path]:
    """``base/own`` and each of its parents up to ``base`` (those that exist): a
    limit set on any ancestor cgroup applies too. Just ``base`` when ``own`` is not
    below it (a container sees its own cgroup mounted as the root)."""
    folders: list[Path] = []
    if own:
        relative = Path(own.lstrip("/"))
        if relative.parts and ".." not in relative.parts:
            folder = base / relative
            while folder != base:
                if folder.is_dir():
                    folders.append(folder)
                folder = folder.parent
    folders.append(base)
    return folders


def _cgroup_cpus(root: Path, proc_cgroup: Path) -> int | None:
    """The tightest CPU quota (whole cores, rounded up) of the cgroups this process
    is in, v2 or v1; ``None`` when there is none or nothing can be read."""
    v2_path, v1_path = _own_cgroup_paths(proc_cgroup)
    limits: list[int] = []
    for folder in _folders(root, v2_path):
        text = _read(folder / "cpu.max")
        if text:
            fields = text.split()
            limit = _quota_cpus(fields[0], fields[1] if len(fields) > 1 else "100000")
            if limit is not None:
                limits.append(limit)
    for name in _V1_CPU_FOLDERS:
        base = root / name
        if not base.is_dir():
            continue
        for folder in _folders(base, v1_path):
            limit = _quota_cpus(_read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us"))
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def usable_cpus(
    cgroup_root: Path | str = "/sys/fs/cgroup", *, proc_cgroup: Path | str = "/proc/self/cgroup"
) -> int:
    """The cores this process may use: its CPU affinity (``os.sched_getaffinity``,
    else ``os.cpu_count()``), capped by a cgroup CPU quota (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; ``ceil(quota / period)``).
    Always at least 1; unreadable or malformed cgroup files count as no quota.

    :param cgroup_root: where the cgroup file system is mounted (tests point it at
        a folder of fake files).
    :param proc_cgroup: the file naming this process's cgroups.
    """
    cpus = _affinity_cpus()
    quota = _cgroup_cpus(Path(cgroup_root), Path(proc_cgroup))
    if quota is not None:
        cpus = min(cpus, quota)
    return max(1, cpus)


# -- planning ------------------------------------------------------------------------


def _parse_env_threads(value: str) -> int:
    """``SEGAL_THREADS``'s value as a positive count, or a :class:`SegalError`."""
    try:
        count = int(value.strip())
    except ValueError:
        count = 0
    if count < 1:
        raise SegalError(
            f"{ENV_VAR}={value!r}: must be a whole number of threads, 1 or more "
            f"(unset it for the automatic choice)"
        )
    return count


def _omp_threads(value: str | None) -> int | None:
    """``OMP_NUM_THREADS``'s first level (``"4"`` or ``"4,2"``), or ``None`` when
    unset or unreadable (the OpenMP runtime, not SegAL, judges that variable)."""
    if not value:
        return None
    try:
        count = int(value.split(",")[0].strip())
    except ValueError:
        return None
    return count if count >= 1 else None


def _auto_workers(total: int, device_type: str) -> int:
    """DataLoader workers when ``--num-workers`` is not given.

    On the CPU: none. The cores are the bottleneck, a worker process only moves
    decoding from the main process to another process on the same cores, and it
    costs a process start and inter-process copies. On an accelerator the cores are
    otherwise idle: all but one (for the main process), at most 8. An unresolved
    ``"auto"`` device is planned like the CPU (the cautious choice: resolve it first).
    """
    if device_type in ("cpu", "auto"):
        return 0
    return max(0, min(_MAX_AUTO_WORKERS, total - 1))


def plan_threads(
    requested: int | None,
    *,
    device_type: str,
    env: Mapping[str, str],
    cpus: int,
    workers: int | None = None,
) -> ThreadBudget:
    """The thread budget of a run.

    The total is, first found: ``requested`` (``--threads N``), ``SEGAL_THREADS``,
    ``OMP_NUM_THREADS`` (the long-standing way to say it), else ``cpus`` (see
    :func:`usable_cpus`). DataLoader workers are part of that total: ``workers``
    (``--num-workers``) when given, else none on the CPU and all but one core on an
    accelerator (at most 8); the compute threads get the rest, at least one.

    :param requested: ``--threads``, or ``None`` when not given.
    :param device_type: ``"cpu"``, ``"cuda"``, ... (``torch.device.type`` of the
        resolved device; an unresolved ``"auto"`` is planned like ``"cpu"``).
    :param env: the environment (``os.environ``).
    :param cpus: the usable cores, from :func:`usable_cpus`.
    :param workers: ``--num-workers``, or ``None`` for the automatic choice.
    :raises SegalError: ``requested`` below 1, ``SEGAL_THREADS`` not a whole number
        of at least 1, or ``workers`` negative.
    """
    if requested is not None:
        if requested < 1:
            raise SegalError(f"--threads {requested}: must be 1 or more")
        total, source = requested, "--threads"
    elif env.get(ENV_VAR, "").strip():
        total, source = _parse_env_threads(env[ENV_VAR]), ENV_VAR
    elif (omp := _omp_threads(env.get("OMP_NUM_THREADS"))) is not None:
        total, source = omp, "OMP_NUM_THREADS"
    else:
        total, source = max(1, cpus), "auto"
    if workers is not None and workers < 0:
        raise SegalError(f"--num-workers {workers}: must be 0 or more")
    loader = _auto_workers(total, device_type) if workers is None else workers
    return ThreadBudget(intra_op=max(1, total - loader), interop=1, loader_workers=loader, source=source)


# -- applying ------------------------------------------------------------------------


def prepare_environment(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Make idle OpenMP threads sleep rather than spin (:data:`WAIT_ENVIRONMENT`),
    unless the user set those variables. Call it first thing, before torch is
    imported: the OpenMP runtime reads them once, when torch loads it.

    :param env: the environment to change (``os.environ`` when ``None``).
    :returns: the variables set (empty when the user had set them all).
    """
    target: MutableMapping[str, str] = os.environ if env is None else env
    applied: dict[str, str] = {}
    for name, value in WAIT_ENVIRONMENT.items():
        if name not in target:
            target[name] = value
            applied[name] = value
    return applied


def torch_loaded() -> bool:
    """Whether torch (and with it the OpenMP runtime) is already imported, so that
    :func:`prepare_environment` comes too late for this process."""
    return "torch" in sys.modules


def apply_threads(budget: ThreadBudget) -> ThreadBudget:
    """Give torch ``budget``'s compute and inter-op threads.

    The inter-op pool can be sized once per process, before any inter-op work: when
    that moment has passed (an earlier run in the same process, a library that used
    it) the pool is left as it is. DataLoader workers are the caller's to start
    (:attr:`ThreadBudget.loader_workers`); torch gives each one thread.

    :returns: the budget in effect (``interop`` as torch reports it).
    """
    import torch

    if torch.get_num_threads() != budget.intra_op:
        torch.set_num_threads(budget.intra_op)
    interop = torch.get_num_interop_threads()
    if interop != budget.interop:
        try:
            torch.set_num_interop_threads(budget.interop)
            interop = budget.interop
        except RuntimeError:  # already set, or inter-op work has started: keep it
            pass
    return ThreadBudget(
        intra_op=torch.get_num_threads(), interop=interop, loader_workers=budget.loader_workers, source=budget.source
    )
