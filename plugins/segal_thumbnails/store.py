"""The ``thumbnails/`` folder of a run: what each hook writes there.

``thumbnails/round-NNN/index.json`` (one per querying round)::

    {"format": 1, "round": 3, "strategy": "entropy", "classes": [...], "ignore_index": 255,
     "max_side": 96, "map": {"low": 0.01, "high": 1.2} | null,
     "samples": [{"id": ..., "rank": 0, "score": 0.83, "height": 360, "width": 480,
                  "files": {"frame": ..., "uncertainty": ..., "prediction": ..., "label": ...,
                            "regions": ...},
                  "label_source": "dataset" | "oracle", "labelled_pixels": N,
                  "class_pixels": {class: pixels}}]}

``thumbnails/seed.json``: ``{"format": 1, "classes": [...], "samples": S,
"class_pixels": {class: pixels}}`` for the seed set. Every file is written
atomically; the index is written last.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from segal_core.rundir import atomic_write
from segal_core.strategy import UncertaintyStrategy

from . import render

if TYPE_CHECKING:
    from segal_core import Annotation, Run

__all__ = ["FOLDER", "FORMAT", "INDEX", "SEED", "round_dir", "write_labels", "write_round", "write_seed"]

FOLDER = "thumbnails"
INDEX = "index.json"
SEED = "seed.json"
FORMAT = 1


def round_dir(out: Path, round: int) -> Path:  # noqa: A002
    return Path(out) / FOLDER / f"round-{round:03d}"


def _stem(sample_id: str) -> str:
    """A readable file name for ``sample_id``, distinct for distinct ids."""
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in sample_id)[:60]
    return f"{readable}-{hashlib.sha1(sample_id.encode()).hexdigest()[:8]}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(data, indent=1) + "\n").encode())


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _label_of(run: Run, sample_id: str) -> torch.Tensor:
    """The labels the run holds for ``sample_id``: the oracle's partial mask, else the
    dataset's ground truth."""
    partial = run.partial_masks.get(sample_id)
    return partial.to(torch.int64) if partial is not None else run.pool.mask(run.pool.index_of(sample_id))


def write_seed(run: Run) -> None:
    """``seed.json``: the seed set's labelled pixels per class (skipped when present)."""
    path = Path(run.out) / FOLDER / SEED
    if path.exists():
        return
    seed = [sid for sid, entry in run.state.ledger.items() if entry.round < 0]
    totals = dict.fromkeys(run.classes, 0)
    for sid in seed:
        for name, n in render.class_pixels(_label_of(run, sid), run.classes, run.pool.ignore_index).items():
            totals[name] += n
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, {"format": FORMAT, "classes": list(run.classes), "samples": len(seed), "class_pixels": totals})


def write_round(run: Run, round: int, queried: Sequence[str], scores: Sequence[float]) -> None:  # noqa: A002
    """Frame, score map and prediction of each queried sample, and the round's index
    (labels follow in :func:`write_labels`). One sample at a time through the model:
    ``k`` forward passes, whatever the pool's size."""
    model = run.model
    if model is None:
        return
    pool = run.pool
    strategy = run.strategy
    with_maps = isinstance(strategy, UncertaintyStrategy)
    folder = round_dir(run.out, round)
    folder.mkdir(parents=True, exist_ok=True)
    samples: list[dict[str, Any]] = []
    maps: list[Any] = []
    seen: set[str] = set()
    for sid, score in zip(queried, scores):
        if sid in seen:
            continue
        seen.add(sid)
        try:
            index = pool.index_of(sid)
        except KeyError:  # not a sample id (a unit of another kind): nothing to draw
            continue
        image = pool.image(index)
        height, width = int(image.shape[-2]), int(image.shape[-1])
        size = render.thumb_size(height, width)
        logits = model.logits(image.unsqueeze(0))
        stem = _stem(sid)
        files = {"frame": f"{stem}-frame.jpg", "prediction": f"{stem}-prediction.png"}
        atomic_write(folder / files["frame"], render.frame_jpeg(image, size))
        prediction = logits.argmax(dim=1)[0]
        atomic_write(folder / files["prediction"], render.mask_png(prediction, size, len(run.classes), pool.ignore_index))
        if with_maps:
            pixels = strategy.pixel_scores(logits.float())[0]  # type: ignore[attr-defined]
            maps.append((folder / f"{stem}-uncertainty.jpg", render.shrink_scores(pixels, size)))
            files["uncertainty"] = maps[-1][0].name
        samples.append({
            "id": sid,
            "rank": len(samples),
            "score": float(score) if score is not None and math.isfinite(score) else None,
            "height": height,
            "width": width,
            "files": files,
        })
    scale = None
    if maps:
        low = min(float(m.min()) for _, m in maps)
        high = max(float(m.max()) for _, m in maps)
        scale = {"low": low, "high": high}
        for path, small in maps:
            atomic_write(path, render.score_map_jpeg(small, low, high))
    index_data = {
        "format": FORMAT,
        "round": round,
        "strategy": run.config.strategy,
        "classes": list(run.classes),
        "ignore_index": pool.ignore_index,
        "max_side": render.MAX_SIDE,
        "map": scale,
        "samples": samples,
    }
    _write_json(folder / INDEX, index_data)
    _drop_stale(folder, samples)


def _drop_stale(folder: Path, samples: Sequence[dict[str, Any]]) -> None:
    """Files of an earlier, interrupted attempt at this round that name other samples."""
    stems = tuple(_stem(s["id"]) + "-" for s in samples)
    for path in folder.iterdir():
        if path.name != INDEX and not path.name.startswith(".") and not path.name.startswith(stems):
            path.unlink(missing_ok=True)


def write_labels(run: Run, round: int, annotations: Sequence[Annotation]) -> None:  # noqa: A002
    """The label of each queried sample (what the oracle returned, or the dataset's
    ground truth), its pixels per class, and for a partial label the frame with the
    labelled area outlined."""
    folder = round_dir(run.out, round)
    index_data = _read_json(folder / INDEX)
    if index_data is None:
        return
    pool = run.pool
    by_id = {s["id"]: s for s in index_data.get("samples", [])}
    for ann in annotations:
        sample = by_id.get(ann.sample_id)
        if sample is None:
            continue
        index = pool.index_of(ann.sample_id)
        mask = ann.mask if ann.mask is not None else pool.mask(index)
        size = render.thumb_size(sample["height"], sample["width"])
        stem = _stem(ann.sample_id)
        files = sample["files"]
        files["label"] = f"{stem}-label.png"
        atomic_write(folder / files["label"], render.mask_png(mask, size, len(run.classes), pool.ignore_index))
        counts = render.class_pixels(mask, run.classes, pool.ignore_index)
        if ann.mask is not None:
            labelled = ann.mask != pool.ignore_index
            if not bool(labelled.all()):
                files["regions"] = f"{stem}-regions.jpg"
                atomic_write(folder / files["regions"], render.regions_jpeg(pool.image(index), labelled, size))
        sample["label_source"] = "dataset" if ann.mask is None else "oracle"
        sample["labelled_pixels"] = int(ann.labeled_pixels)
        sample["class_pixels"] = {name: counts[name] + sample.get("class_pixels", {}).get(name, 0) for name in counts}
    _write_json(folder / INDEX, index_data)
