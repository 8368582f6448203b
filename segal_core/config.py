"""``RunConfig``: every setting of one active-learning run."""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SegalError

__all__ = ["MODEL_KEYS_OF_FORMAT_1", "OPTION_MAPS", "RESUME_KEYS_FREE", "RunConfig", "load_config_file"]

#: Settings that may differ between a run and its ``--resume`` (they do not change
#: what is computed).
RESUME_KEYS_FREE = frozenset(
    {"out", "resume", "num_workers", "threads", "progress", "blocked", "data_path", "cache"}
)
#: The ``RunConfig`` fields that hold a plugin's ``key=value`` settings.
OPTION_MAPS = (
    "dataset_options", "model_options", "strategy_options", "oracle_options", "unit_options", "plugin_options",
)
#: Model settings that were top-level ``RunConfig`` fields in run-directory format 1
#: (segal 0.2.0 development); they now live in ``model_options``.
MODEL_KEYS_OF_FORMAT_1 = (
    "encoder", "encoder_weights", "precision", "epochs", "min_steps", "steps_per_image",
    "batch_size", "crop_size", "lr",
)
#: The most classes a run may have (``--num-classes``).
MAX_CLASSES = 4096
#: The most DataLoader worker processes a run may start (``--num-workers``).
MAX_WORKERS = 64
#: Keys of a run's ``config.json`` that are not settings.
_RUN_RECORD_KEYS = ("resolved", "versions", "format")


@dataclass
class RunConfig:
    """The settings of ``segal run``; the CLI builds one, notebooks may too.

    Ratios are fractions of the pool (the train split). ``query_size`` overrides
    ``query_ratio``. ``rounds`` counts recorded rounds (round 0 trains on the seed
    set); ``None`` = until the pool is exhausted. ``retrain`` is ``"scratch"``
    (a fresh network each round, seeded per round) or ``"finetune"`` (start from the
    last round's weights). ``cache`` decodes every split once into memory.
    ``threads`` caps the CPU threads (``None``: ``$SEGAL_THREADS``, else chosen from
    the cores this process may use).

    ``query_unit`` is what is queried: ``image`` (whole images), or a region unit
    (``patch``, ``superpixel``, a plugin's) with ``unit_options``; with a region unit,
    ``seed_ratio``, ``query_ratio`` and ``budget`` are fractions of the pool's pixels,
    ``query_pixels`` the absolute query size, and the seed set is random regions
    (``seed_unit="image"``: whole images).

    The model's own settings (encoder, epochs, learning rate, crops, ...) are not
    fields here: they are the model plugin's, in ``model_options`` (``segal run
    --encoder resnet34`` sets ``model_options["encoder"]``).
    """

    dataset: str = "synthetic"
    data_path: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    model: str = "unet"
    model_options: dict[str, Any] = field(default_factory=dict)
    strategy: str = "entropy"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    oracle: str = "ground_truth"
    oracle_options: dict[str, Any] = field(default_factory=dict)
    query_unit: str = "image"
    unit_options: dict[str, Any] = field(default_factory=dict)
    query_pixels: int | None = None
    seed_unit: str = "region"
    seed_ratio: float = 0.1
    query_ratio: float = 0.1
    query_size: int | None = None
    rounds: int | None = None
    budget: float | None = None
    device: str = "auto"
    num_workers: int | None = None
    threads: int | None = None
    seed: int = 0
    retrain: str = "scratch"
    cache: bool = False
    full: bool = False
    out: str | None = None
    progress: bool = True
    blocked: list[str] = field(default_factory=list)
    plugin_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Check what can be checked without data: every setting's type (a ``--config``
        file or a ``config.json`` may hold anything) and range; raises
        :class:`SegalError` naming the option and its limits."""
        from .options import expected

        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            wrong = expected(value, hints[f.name])
            if wrong is not None:
                shown = (
                    "none" if value is None else repr(value) if isinstance(value, str)
                    else str(value) if isinstance(value, (int, float)) else json.dumps(value, default=str)
                )[:60]
                raise SegalError(f"{_flag(f.name)} {shown}: expected {wrong}")
        for flag, value in (("--seed-ratio", self.seed_ratio), ("--query-ratio", self.query_ratio)):
            if not 0.0 < value <= 1.0:  # NaN fails too
                raise SegalError(f"{flag} {value}: must be in (0, 1]")
        if self.budget is not None and not 0.0 < self.budget <= 1.0:
            raise SegalError(f"--budget {self.budget}: must be in (0, 1]")
        for flag, value, top, why in (
            ("--query-size", self.query_size, 10**9, ""),
            ("--rounds", self.rounds, 10**6, ""),
            ("--num-classes", self.num_classes, MAX_CLASSES,
             " (every class costs memory in the network's output and the confusion matrix)"),
            ("--threads", self.threads, 4096, ""),
        ):
            if value is not None and not 1 <= value <= top:
                raise SegalError(f"{flag} {value}: must be between 1 and {top}{why}")
        if self.num_workers is not None and not 0 <= self.num_workers <= MAX_WORKERS:
            raise SegalError(
                f"--num-workers {self.num_workers}: must be between 0 and {MAX_WORKERS} "
                "(each DataLoader worker is a process of its own)"
            )
        if not 0 <= self.seed < 2**63:
            raise SegalError(f"--seed {self.seed}: must be between 0 and 2**63 - 1")
        if self.query_pixels is not None and not 1 <= self.query_pixels <= 10**13:
            raise SegalError(f"--query-pixels {self.query_pixels}: must be between 1 and 10**13")
        if self.seed_unit not in ("region", "image"):
            raise SegalError(f"--seed-unit {self.seed_unit}: must be 'region' or 'image'")
        if self.retrain not in ("scratch", "finetune"):
            raise SegalError(f"--retrain {self.retrain}: must be 'scratch' or 'finetune'")
        for name in OPTION_MAPS:
            if not isinstance(getattr(self, name), dict):
                raise SegalError(f"{name}: must be a mapping of option names to values")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunConfig:
        """A config from its JSON form (a run's ``config.json`` included; format-1
        model settings move into ``model_options``); unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in upgrade(data).items() if k in names}
        return cls(**values)

    def differences(self, other: RunConfig) -> list[str]:
        """Settings (other than :data:`RESUME_KEYS_FREE`) whose values differ."""
        mine = json.loads(json.dumps(self.to_json()))  # tuples and lists compare equal
        theirs = json.loads(json.dumps(other.to_json()))
        return sorted(k for k in mine if k not in RESUME_KEYS_FREE and mine[k] != theirs.get(k))

    def out_path(self) -> Path | None:
        return Path(self.out) if self.out else None


def upgrade(data: Mapping[str, Any]) -> dict[str, Any]:
    """Settings in today's shape: the model settings that format 1 kept at the top
    level (``encoder``, ``epochs``, ...) move into ``model_options``, where a value
    given there already wins. ``encoder_weights: null`` is dropped (the default)."""
    out = dict(data)
    moved = {k: out.pop(k) for k in MODEL_KEYS_OF_FORMAT_1 if k in out}
    if moved:
        moved = {k: v for k, v in moved.items() if not (k == "encoder_weights" and v is None)}
        out["model_options"] = {**moved, **dict(out.get("model_options") or {})}
    return out


def load_config_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML or JSON file (``segal run --config FILE``): keys of
    :class:`RunConfig`. A run's own ``config.json`` works: its record keys
    (``resolved``, ``versions``, ``format``) and its ``out`` and ``blocked`` are
    dropped, so the new run gets a folder of its own.

    :raises SegalError: a missing, unreadable or malformed file, or an unknown key
        (naming the closest valid ones).
    """
    from .names import closest

    flag = f"--config {path}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SegalError(f"{flag}: no such file") from None
    except IsADirectoryError:
        raise SegalError(f"{flag}: is a folder; give a .toml or .json file") from None
    except OSError as exc:
        raise SegalError(f"{flag}: cannot read it ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SegalError(f"{flag}: not UTF-8 text; save it as UTF-8") from None
    if path.suffix.lower() == ".toml":
        if sys.version_info < (3, 11):  # pragma: no cover - tomllib is new in 3.11
            raise SegalError(f"{flag}: reading TOML needs Python 3.11 or newer; give the settings as .json")
        import tomllib

        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SegalError(f"{flag}: not valid TOML ({exc})") from None
    else:
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except (json.JSONDecodeError, ValueError) as exc:
            raise SegalError(f"{flag}: not valid JSON ({exc}); use .toml for a TOML file") from None
    if not isinstance(data, dict):
        raise SegalError(f"{flag}: expected a table of settings (keys of RunConfig)")
    if any(k in data for k in _RUN_RECORD_KEYS):  # a run's own config.json
        data = {k: v for k, v in data.items() if k not in (*_RUN_RECORD_KEYS, "out", "blocked")}
    data = upgrade(data)
    names = [f.name for f in dataclasses.fields(RunConfig)]
    for key in data:
        if key not in names:
            near = ", ".join(closest(key, names)[:3])
            raise SegalError(f"{flag}: unknown setting {key!r} (closest: {near})")
    return data


def _flag(name: str) -> str:
    """How a message names setting ``name``: its ``segal run`` option."""
    flags = {"dataset_options": "--dataset-opt", "model_options": "--model-opt", "strategy_options": "--strategy-opt",
             "oracle_options": "--oracle-opt", "unit_options": "--unit-opt", "progress": "--no-progress",
             "blocked": "-p no:NAME", "plugin_options": "plugin_options"}
    return flags.get(name, "--" + name.replace("_", "-"))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a setting can take")
