"""``--tracker`` and ``--tracker-opt``: which trackers a run feeds and their settings,
checked with one clear line per mistake. Imports no tracker package (only asks
whether it is installed)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from segal_core import SegalError

__all__ = ["KEYS", "PACKAGES", "TRACKERS", "TrackerSettings", "check_installed", "settings_from"]

#: Built-in trackers.
TRACKERS = ("tensorboard", "mlflow")
#: tracker -> (the module it imports, the extra that installs it).
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
#: ``--tracker-opt`` key -> (the tracker it belongs to, what it means).
KEYS = {
    "logdir": ("tensorboard", "folder of the event files (default: DIR/tensorboard)"),
    "uri": ("mlflow", "tracking URI (default: $MLFLOW_TRACKING_URI, else a local store in DIR/mlruns)"),
    "experiment": ("mlflow", "experiment name (default: segal)"),
    "run_name": ("mlflow", "run name (default: the run folder's name)"),
}


@dataclass(frozen=True)
class TrackerSettings:
    """The trackers of a run, in the order given, and their options."""

    trackers: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)


def _names(values: Iterable[Any]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        name = str(value).strip().lower()
        if name not in TRACKERS:
            raise SegalError(f"--tracker {value}: unknown tracker; built in: {', '.join(TRACKERS)} "
                             "(another tracker comes as a plugin with its own options)")
        if name not in out:
            out.append(name)
    return tuple(out)


def _pairs(values: Iterable[Any], trackers: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, text = str(value).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise SegalError(f"--tracker-opt {value}: expected KEY=VALUE, e.g. uri=http://localhost:5000")
        if key not in KEYS:
            raise SegalError(f"--tracker-opt {value}: unknown key {key!r}; keys: {', '.join(KEYS)}")
        owner = KEYS[key][0]
        if owner not in trackers:
            raise SegalError(f"--tracker-opt {value}: a setting of --tracker {owner}, which this run does not use")
        if not text.strip():
            raise SegalError(f"--tracker-opt {value}: give a value ({KEYS[key][1]})")
        out[key] = text.strip()
    return out


def settings_from(plugin_options: Mapping[str, Any]) -> TrackerSettings:
    """The checked settings from ``RunConfig.plugin_options`` (``tracker``,
    ``tracker_opt``: lists of strings).

    :raises SegalError: an unknown tracker or key, a malformed pair.
    """
    raw = plugin_options.get("tracker") or ()
    trackers = _names([raw] if isinstance(raw, str) else raw)
    raw_pairs = plugin_options.get("tracker_opt") or ()
    return TrackerSettings(trackers, _pairs([raw_pairs] if isinstance(raw_pairs, str) else raw_pairs, trackers))


def check_installed(trackers: Iterable[str]) -> None:
    """Each tracker's package must be importable: otherwise one line naming the extra."""
    for name in trackers:
        module, extra = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise SegalError(
                f"--tracker {name}: the {module} package is not installed; install it with: "
                f"pip install 'segal[{extra}]'"
            )
