"""Helpers shared by the benchmark scripts (``gpu_cycle.py``, ``camvid_curves.py``).

Importing this module puts the repository and ``plugins/`` on ``sys.path`` (at
the end, so an installed copy wins), so the scripts run from a checkout that is not
pip-installed (a GPU machine with ``PYTHONPATH=$PWD:$PWD/plugins``): there no
``segal`` entry point exists, so :func:`load_builtin_plugins` registers the
built-in plugins the benchmarks need by import name. Where the entry points do
exist they win (``load_plugins`` skips an extra whose name is already loaded).
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "BUILTIN_PLUGINS",
    "REPO",
    "add_repo_to_path",
    "load_builtin_plugins",
    "machine_name",
    "run_header",
    "sync",
]

#: The repository root (the folder above ``benchmarks/``).
REPO = Path(__file__).resolve().parents[1]
#: Built-in plugins the benchmarks use: CamVid data, smp models, the strategies, the oracle.
BUILTIN_PLUGINS = ("segal_camvid", "segal_smp", "segal_uncertainty", "segal_oracle")


def add_repo_to_path() -> None:
    """Put the repository and ``plugins/`` on ``sys.path`` (no-op when installed)."""
    for folder in (REPO / "plugins", REPO):
        if str(folder) not in sys.path:
            sys.path.append(str(folder))


# importing this module makes the repository importable (before any segal import)
add_repo_to_path()

from segal_core import Plugins, load_plugins


def load_builtin_plugins(extra: Sequence[tuple[str, object]] = ()) -> Plugins:
    """Installed plugins plus the built-ins of :data:`BUILTIN_PLUGINS`, imported by
    name when no entry point provides them, plus ``extra`` ``(name, plugin)`` pairs."""
    builtins = [(name, importlib.import_module(name)) for name in BUILTIN_PLUGINS]
    return load_plugins(extra=[*builtins, *extra])


def machine_name(device: torch.device) -> str:
    """The CUDA card's name, or the CPU model with its logical CPU count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs)"


def run_header(device: torch.device, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Card, versions, date and the exact command: what every figure is printed with."""
    versions: dict[str, str] = {"python": platform.python_version(), "torch": torch.__version__}
    for module in ("segmentation_models_pytorch", "timm", "torchvision"):
        try:
            versions[module] = importlib.import_module(module).__version__
        except (ImportError, AttributeError):  # reported as absent, never fatal
            versions[module] = "absent"
    args = list(sys.argv if argv is None else argv)
    header: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_name(device),
        "device": str(device),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "versions": versions,
        "command": "python " + " ".join(shlex.quote(a) for a in args),
    }
    if device.type == "cuda":
        header["cuda"] = torch.version.cuda
        header["cudnn"] = torch.backends.cudnn.version()
        header["bf16_supported"] = torch.cuda.is_bf16_supported()
    return header


def sync(device: torch.device) -> None:
    """Wait for the device (a no-op on the CPU), before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
