"""SegAL core: interfaces, hook specs, the plugin manager and the active-learning cycle.

Everything public is re-exported here; the work sits in small modules named by
what they hold. The names are imported when first used, so ``import segal_core``
(and ``segal --help``) does not import torch.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

from .errors import SegalError
from .lazy import lazy_exports
from .markers import hookimpl, hookspec

try:
    #: The installed distribution's version: ``pyproject.toml`` is the one source.
    __version__ = metadata.version("segal")
except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"

#: Public name -> the module that defines it.
_EXPORTS = {
    "DEFAULT_IGNORE_INDEX": "dataset",
    "DataConfig": "dataset",
    "Dataset": "dataset",
    "DatasetView": "dataset",
    "Splits": "dataset",
    "EvalResult": "model",
    "Model": "model",
    "ModelConfig": "model",
    "TrainResult": "model",
    "Annotation": "oracle",
    "Oracle": "oracle",
    "Query": "oracle",
    "Handoff": "oracle",
    "Collected": "oracle",
    "WaitingOracle": "oracle",
    "LabelsPending": "errors",
    "WAITING_EXIT": "errors",
    "LabelStatus": "waiting",
    "label_status": "waiting",
    "DISABLE_ENV": "plugins",
    "ENTRY_POINT_GROUP": "plugins",
    "PluginError": "plugins",
    "PluginInfo": "plugins",
    "Plugins": "plugins",
    "load_plugins": "plugins",
    "registry": "plugins",
    "Registry": "registration",
    "REDUCTIONS": "strategy",
    "PoolContext": "strategy",
    "Strategy": "strategy",
    "UncertaintyStrategy": "strategy",
    "reduce_pixels": "strategy",
    "RunConfig": "config",
    "Run": "run",
    "run_cycle": "cycle",
    "resume_run": "cycle",
    "RunOption": "cliopts",
    "QueryUnit": "units",
    "RegionContext": "strategy",
    "MonteCarloStrategy": "strategy",
}

__all__ = sorted([*_EXPORTS, "SegalError", "__version__", "hookimpl", "hookspec"])


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .cliopts import RunOption
    from .config import RunConfig
    from .cycle import resume_run, run_cycle
    from .dataset import DEFAULT_IGNORE_INDEX, DataConfig, Dataset, DatasetView, Splits
    from .model import EvalResult, Model, ModelConfig, TrainResult
    from .errors import WAITING_EXIT, LabelsPending
    from .oracle import Annotation, Collected, Handoff, Oracle, Query, WaitingOracle
    from .plugins import DISABLE_ENV, ENTRY_POINT_GROUP, PluginError, PluginInfo, Plugins, load_plugins, registry
    from .registration import Registry
    from .run import Run
    from .waiting import LabelStatus, label_status
    from .strategy import (
        REDUCTIONS,
        MonteCarloStrategy,
        PoolContext,
        RegionContext,
        Strategy,
        UncertaintyStrategy,
        reduce_pixels,
    )
    from .units import QueryUnit
