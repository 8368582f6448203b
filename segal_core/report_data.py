"""What the HTML report reads from a run folder: only committed rounds (``state.json``'s
``completed_rounds``), the settings, and what the ``segal_thumbnails`` plugin kept
(``thumbnails/``, format in ``docs/run-directory.md``)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .rundir import RunDir

__all__ = ["RoundThumbnails", "RunView", "class_makeup", "curve_points", "load_view", "mismatch_line"]

THUMBNAILS = "thumbnails"
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass
class RoundThumbnails:
    """One round's ``thumbnails/round-NNN/index.json`` and its folder."""

    folder: Path
    index: dict[str, Any]

    @property
    def samples(self) -> list[dict[str, Any]]:
        return [s for s in self.index.get("samples", []) if isinstance(s, dict)]

    def data_uri(self, name: str) -> str | None:
        """A file of this round as a ``data:`` URI (``None`` when missing or odd)."""
        path = self.folder / name
        mime = _MIME.get(path.suffix.lower())
        if mime is None or path.parent != self.folder or not path.is_file():
            return None
        return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


@dataclass
class RunView:
    """One run folder as the HTML report shows it."""

    path: Path
    label: str
    full: bool
    config: dict[str, Any]
    history: list[dict[str, Any]]
    completed_rounds: int
    finished: bool
    thumbnails: dict[int, RoundThumbnails] = field(default_factory=dict)
    seed_pixels: dict[str, int] | None = None

    @property
    def classes(self) -> list[str]:
        resolved = self.config.get("resolved") or {}
        classes = resolved.get("classes")
        if isinstance(classes, list):
            return [str(c) for c in classes]
        for record in self.history:  # older folders: the IoU table's keys
            if isinstance(record.get("per_class_iou"), dict):
                return list(record["per_class_iou"])
        return []

    @property
    def region_level(self) -> bool:
        """Whether labelled pixels tell more than labelled samples: a region query unit,
        or records whose pixel fraction differs from the sample fraction."""
        unit = self.config.get("query_unit") or (self.config.get("resolved") or {}).get("query_unit")
        if unit not in (None, "image") and any("labeled_pixel_fraction" in r for r in self.history):
            return True
        return any(
            isinstance(r.get("labeled_pixel_fraction"), (int, float))
            and abs(r["labeled_pixel_fraction"] - r.get("labeled_fraction", 0.0)) > 1e-3
            for r in self.history
        )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_view(path: Path, label: str, full: bool, history: Sequence[dict[str, Any]]) -> RunView:
    """The run at ``path``, limited to the committed rounds in ``history`` (thumbnails
    of a round in progress are left out)."""
    rundir = RunDir.open_existing(Path(path))
    state = rundir.state()
    view = RunView(
        path=Path(path),
        label=label,
        full=full,
        config=rundir.config(),
        history=list(history),
        completed_rounds=state.completed_rounds,
        finished=state.finished,
    )
    base = Path(path) / THUMBNAILS
    for record in view.history:
        r = int(record["round"])
        index = _read_json(base / f"round-{r:03d}" / "index.json")
        if index is not None:
            view.thumbnails[r] = RoundThumbnails(base / f"round-{r:03d}", index)
    seed = _read_json(base / "seed.json")
    if seed is not None and isinstance(seed.get("class_pixels"), dict):
        view.seed_pixels = {str(k): int(v) for k, v in seed["class_pixels"].items()}
    return view


def curve_points(history: Sequence[dict[str, Any]], metric: str, x_key: str = "labeled_fraction") -> list[tuple[float, float]]:
    """``(x, metric)`` per committed round, skipping missing or non-finite values."""
    out = []
    for record in history:
        x, y = record.get(x_key), record.get(metric)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isfinite(x) and math.isfinite(y):
            out.append((float(x), float(y)))
    return out


def class_makeup(view: RunView) -> list[dict[str, int]] | None:
    """Labelled pixels per class that each committed round trained on: the seed set's,
    plus every earlier round's queried samples. ``None`` when the run kept no counts
    (thumbnails off); the list stops at the first round whose counts are missing."""
    if view.seed_pixels is None:
        return None
    classes = view.classes or list(view.seed_pixels)
    running = {c: int(view.seed_pixels.get(c, 0)) for c in classes}
    out: list[dict[str, int]] = []
    for record in view.history:
        out.append(dict(running))
        if not record.get("queried"):
            continue
        thumbs = view.thumbnails.get(int(record["round"]))
        if thumbs is None:
            break
        for sample in thumbs.samples:
            counts = sample.get("class_pixels")
            if not isinstance(counts, dict):
                return out
            for name, n in counts.items():
                running[name] = running.get(name, 0) + int(n)
    return out


def mismatch_line(views: Sequence[RunView]) -> str | None:
    """One line when the runs do not share a dataset and class set (their curves do not
    compare), else ``None``."""
    kinds = {}
    for view in views:
        key = (str(view.config.get("dataset")), tuple(view.classes))
        kinds.setdefault(key, []).append(view)
    if len(kinds) < 2:
        return None
    parts = [
        f"{dataset} with {len(classes)} classes ({', '.join(v.path.name for v in vs)})"
        for (dataset, classes), vs in kinds.items()
    ]
    return "these runs use different datasets or class sets, so their curves do not compare: " + "; ".join(parts)
