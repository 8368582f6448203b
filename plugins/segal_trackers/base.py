"""What every tracker receives, and the numbers it logs: built from the run and the
round's record, the same for TensorBoard and MLflow."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from segal_core import Run

    from .options import TrackerSettings

__all__ = ["STATE_FILE", "Tracker", "build", "read_state", "write_state", "epoch_offset", "epoch_scalars", "queried_grid", "round_scalars", "safe_key"]


#: What the trackers keep in the run folder between hooks: tracker name -> its state
#: (``rounds_logged``, and MLflow's ids).
STATE_FILE = "trackers.json"


def read_state(out: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(out) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(out: Path, name: str, state: dict[str, Any]) -> None:
    from segal_core.rundir import atomic_write

    data = read_state(out)
    data[name] = state
    atomic_write(Path(out) / STATE_FILE, (json.dumps(data, indent=2) + "\n").encode())


class Tracker:
    """One tracker for one hook call: built from the run and the settings, holding
    nothing between hooks (what must last, such as MLflow's run id and how many
    rounds were logged, is in ``DIR/trackers.json``). Subclasses implement
    :meth:`begin`, :meth:`log_epochs`, :meth:`log_round` and :meth:`finish`.

    A round committed but not logged (the run stopped in between, e.g. because the
    tracking server was down) is logged when the run resumes."""

    name = ""

    def __init__(self, run: Run, settings: TrackerSettings) -> None:
        self.run = run
        self.settings = settings

    @property
    def state(self) -> dict[str, Any] | None:
        """This tracker's saved state for this run, ``None`` when it has not begun."""
        state = read_state(self.run.out).get(self.name)
        return state if isinstance(state, dict) and self.same_target(state) else None

    def same_target(self, state: dict[str, Any]) -> bool:
        """Whether ``state`` was written for where this tracker logs now."""
        return True

    def save(self, **changes: Any) -> None:
        write_state(self.run.out, self.name, {**(self.state or {}), **changes})

    # -- the hooks -------------------------------------------------------------------------

    def run_start(self) -> None:
        """The run starts, or resumes: begin (or reopen), then log committed rounds
        that were never logged."""
        state = self.state
        if state is None:
            self.save(**self.begin(), rounds_logged=0)
            state = self.state or {}
        else:
            self.reopen(state)
        for record in self.run.history:
            if int(record["round"]) >= int(state.get("rounds_logged", 0)):
                self.round_end(record)

    def after_train(self, round: int, metrics: dict[str, Any]) -> None:  # noqa: A002
        """A round trained: its per-epoch history."""
        self.log_epochs(list(epoch_scalars(self.run, metrics)))

    def round_end(self, record: dict[str, Any]) -> None:
        """A round is committed."""
        self.log_round(record)
        self.save(rounds_logged=int(record["round"]) + 1)

    def run_end(self, history: list[dict[str, Any]]) -> None:
        """The run finished."""
        self.finish(history)

    # -- what a tracker does ---------------------------------------------------------------

    def begin(self) -> dict[str, Any]:
        """First start of the run; returns what to keep in the state."""
        return {}

    def reopen(self, state: dict[str, Any]) -> None:
        """A resumed run."""

    def log_epochs(self, values: list[tuple[str, float, int]]) -> None:
        """``(tag, value, global epoch)`` of one round's training."""

    def log_round(self, record: dict[str, Any]) -> None:
        """One committed round."""

    def finish(self, history: list[dict[str, Any]]) -> None:
        """The end of the run."""


def build(name: str, run: Run, settings: TrackerSettings) -> Tracker:
    """The tracker called ``name`` (a name :mod:`.options` accepted)."""
    if name == "tensorboard":
        from .tensorboard_tracker import TensorBoardTracker

        return TensorBoardTracker(run, settings)
    from .mlflow_tracker import MlflowTracker

    return MlflowTracker(run, settings)


_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. /]")


def safe_key(text: str) -> str:
    """A metric or tag name made of characters every tracker accepts."""
    return _UNSAFE.sub("_", str(text)) or "_"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def epoch_offset(run: Run) -> int:
    """Epochs trained by the committed rounds: this round's first epoch gets this
    global step, so per-epoch curves continue across rounds (and across a resume)."""
    return sum(int((r.get("train") or {}).get("epochs") or 0) for r in run.history)


def epoch_scalars(run: Run, metrics: dict[str, Any]) -> Iterator[tuple[str, float, int]]:
    """``(tag, value, global epoch)`` for each epoch of this round's training: loss,
    learning rate and, where evaluated, val mIoU."""
    offset = epoch_offset(run)
    history = (metrics.get("train") or {}).get("history") or []
    for n, epoch in enumerate(history):
        step = offset + int(epoch.get("epoch", n))
        for key, tag in (("loss", "train/loss"), ("lr", "train/lr"), ("val_miou", "train/val_miou")):
            if _finite(epoch.get(key)):
                yield tag, float(epoch[key]), step


def round_scalars(record: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """``(tag, value)`` for one committed round."""
    for key, tag in (
        ("test_miou", "round/test_miou"), ("val_miou", "round/val_miou"),
        ("test_pixel_accuracy", "round/test_pixel_accuracy"), ("val_pixel_accuracy", "round/val_pixel_accuracy"),
        ("labeled", "round/labeled"), ("labeled_fraction", "round/labeled_fraction"),
        ("labeled_pixels", "round/labeled_pixels"), ("labeled_pixel_fraction", "round/labeled_pixel_fraction"),
    ):
        if _finite(record.get(key)):
            yield tag, float(record[key])
    for prefix, key in (("iou", "per_class_iou"), ("val_iou", "val_per_class_iou")):
        for name, value in (record.get(key) or {}).items():
            if _finite(value):
                yield f"{prefix}/{safe_key(name)}", float(value)
    for phase, seconds in (record.get("seconds") or {}).items():
        if _finite(seconds):
            yield f"seconds/{safe_key(phase)}", float(seconds)


def queried_grid(out: Path, round: int) -> np.ndarray | None:  # noqa: A002
    """The round's queried samples as one RGB picture (a row per sample: frame,
    uncertainty, prediction, label), from ``thumbnails/round-NNN``; ``None`` when
    the run kept no thumbnails for it."""
    import numpy as np
    from PIL import Image

    folder = Path(out) / "thumbnails" / f"round-{round:03d}"
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError):
        return None
    rows: list[list[np.ndarray]] = []
    for sample in index.get("samples", []):
        row = []
        for key in ("frame", "uncertainty", "prediction", "label"):
            name = (sample.get("files") or {}).get(key)
            if isinstance(name, str) and (folder / name).is_file():
                with Image.open(folder / name) as img:
                    row.append(np.asarray(img.convert("RGB")))
        if row:
            rows.append(row)
    if not rows:
        return None
    cell_h = max(p.shape[0] for row in rows for p in row)
    cell_w = max(p.shape[1] for row in rows for p in row)
    columns = max(len(row) for row in rows)
    gap = 2
    grid = np.full((len(rows) * (cell_h + gap) - gap, columns * (cell_w + gap) - gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            y, x = r * (cell_h + gap), c * (cell_w + gap)
            grid[y : y + picture.shape[0], x : x + picture.shape[1]] = picture
    return grid
