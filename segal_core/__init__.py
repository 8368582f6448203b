"""SegAL core: interfaces, hook specs, the plugin manager and the active-learning cycle.

Everything public is re-exported here; the work sits in small modules named by
what they hold.
"""

from __future__ import annotations

from .dataset import DEFAULT_IGNORE_INDEX, DataConfig, Dataset, DatasetView, Splits
from .errors import SegalError
from .markers import hookimpl, hookspec
from .model import EvalResult, Model, ModelConfig, TrainResult
from .oracle import Annotation, Oracle
from .plugins import (
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    PluginError,
    PluginInfo,
    Plugins,
    load_plugins,
    registry,
)
from .registry import Registry
from .strategy import REDUCTIONS, PoolContext, Strategy, UncertaintyStrategy, reduce_pixels

__version__ = "0.2.0"

__all__ = [
    "DEFAULT_IGNORE_INDEX",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "Annotation",
    "DataConfig",
    "Dataset",
    "DatasetView",
    "EvalResult",
    "Model",
    "ModelConfig",
    "Oracle",
    "PluginError",
    "PluginInfo",
    "Plugins",
    "PoolContext",
    "REDUCTIONS",
    "Registry",
    "SegalError",
    "Splits",
    "Strategy",
    "TrainResult",
    "UncertaintyStrategy",
    "__version__",
    "hookimpl",
    "hookspec",
    "load_plugins",
    "reduce_pixels",
    "registry",
]
