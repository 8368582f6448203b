"""``RunConfig``: every setting of one active-learning run."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SegalError

__all__ = ["RunConfig", "RESUME_KEYS_FREE"]

#: Settings that may differ between a run and its ``--resume`` (they do not change
#: what is computed).
RESUME_KEYS_FREE = frozenset({"out", "resume", "num_workers", "progress", "blocked", "data_path", "cache"})


@dataclass
class RunConfig:
    """The settings of ``segal run``; the CLI builds one, notebooks may too.

    Ratios are fractions of the pool (the train split). ``query_size`` overrides
    ``query_ratio``. ``rounds`` counts recorded rounds (round 0 trains on the seed
    set); ``None`` = until the pool is exhausted. ``retrain`` is ``"scratch"``
    (a fresh network each round, seeded per round) or ``"finetune"`` (start from the
    last round's weights). ``cache`` decodes every split once into memory.
    """

    dataset: str = "synthetic"
    data_path: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    model: str = "unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    strategy: str = "entropy"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    oracle: str = "ground_truth"
    oracle_options: dict[str, Any] = field(default_factory=dict)
    seed_ratio: float = 0.1
    query_ratio: float = 0.1
    query_size: int | None = None
    rounds: int | None = None
    budget: float | None = None
    epochs: int = 4
    min_steps: int = 40
    steps_per_image: float = 1.0
    batch_size: int = 8
    crop_size: int | None = None
    lr: float = 1e-3
    device: str = "auto"
    precision: str = "auto"
    num_workers: int | None = None
    seed: int = 0
    retrain: str = "scratch"
    cache: bool = False
    full: bool = False
    out: str | None = None
    progress: bool = True
    blocked: list[str] = field(default_factory=list)
    plugin_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Check what can be checked without data; raises :class:`SegalError`."""
        for flag, value in (("--seed-ratio", self.seed_ratio), ("--query-ratio", self.query_ratio)):
            if not 0.0 < value <= 1.0:
                raise SegalError(f"{flag} {value}: must be in (0, 1]")
        if self.budget is not None and not 0.0 < self.budget <= 1.0:
            raise SegalError(f"--budget {self.budget}: must be in (0, 1]")
        for flag, value in (
            ("--query-size", self.query_size),
            ("--rounds", self.rounds),
            ("--num-classes", self.num_classes),
        ):
            if value is not None and value < 1:
                raise SegalError(f"{flag} {value}: must be at least 1")
        for flag, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size)):
            if value < 1:
                raise SegalError(f"{flag} {value}: must be at least 1")
        for flag, value in (("--min-steps", self.min_steps), ("--steps-per-image", self.steps_per_image)):
            if value < 0:
                raise SegalError(f"{flag} {value}: must be 0 or more")
        if self.crop_size is not None and self.crop_size < 8:
            raise SegalError(f"--crop-size {self.crop_size}: must be at least 8")
        if not self.lr > 0:
            raise SegalError(f"--lr {self.lr}: must be positive")
        if self.retrain not in ("scratch", "finetune"):
            raise SegalError(f"--retrain {self.retrain}: must be 'scratch' or 'finetune'")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise SegalError(f"--precision {self.precision}: must be auto, fp32, bf16 or fp16")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def differences(self, other: RunConfig) -> list[str]:
        """Settings (other than :data:`RESUME_KEYS_FREE`) whose values differ."""
        mine = json.loads(json.dumps(self.to_json()))  # tuples and lists compare equal
        theirs = json.loads(json.dumps(other.to_json()))
        return sorted(k for k in mine if k not in RESUME_KEYS_FREE and mine[k] != theirs.get(k))

    def out_path(self) -> Path | None:
        return Path(self.out) if self.out else None
