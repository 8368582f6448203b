"""``--oracle folder``: a person labels the queried frames as PNG files in the run folder.

:meth:`FolderOracle.submit` writes, under ``RUN/queries/round-NNN/`` (``round-seed``
for the seed set)::

    images/<name>.png            the frames to label, as the model reads them
    regions/<name>.png           with region queries: the area to label (255 inside)
    regions/<name>-preview.png   the frame, darkened outside that area
    prelabels/<name>.png         the current model's prediction, class ids (a palette
                                 PNG: it shows in colour, its values are the ids)
    prelabels/<name>-preview.png the prediction in class colours over the frame
    masks/                       empty: the annotator saves <name>.png here
    tasks.csv                    id, file, score, regions, pixels, status per frame
    README.txt                   what to do, the class ids

``<name>`` is the sample id made safe as a file name (``/`` and other characters
replaced; a short hash added when the id changed or two names would clash);
``tasks.csv`` maps ids to names.

:meth:`FolderOracle.collect` reads ``masks/<name>.png`` for every query: a PNG of one
channel (8-bit grey, 16-bit grey or palette indices), the frame's size, each value a
class id or the ignore index. Each problem is one line naming the file (relative to
the run folder) and what to do; nothing the annotator wrote is ever changed or
removed. See ``docs/annotation.md``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from segal_core import SegalError
from segal_core.oracle import Annotation, Collected, Handoff, Query, WaitingOracle
from segal_core.rundir import atomic_write

__all__ = ["FolderOracle", "file_names"]

#: Characters kept in a file name; any other becomes ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
#: Longest name kept from an id before the hash is added.
_MAX_NAME = 80
#: PIL modes of a mask holding one class id per pixel.
_ID_MODES = frozenset({"1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N"})
#: The ``tasks.csv`` columns.
TASK_COLUMNS = ("id", "file", "score", "regions", "pixels", "status")


def file_names(ids: Sequence[str]) -> dict[str, str]:
    """A safe, unique file name (no extension) for each id, the same for the same ids.

    An id made of letters, digits, ``_`` and ``-`` is its own name; any other id (its
    other characters, ``.`` and ``/`` among them, become ``_``), a long one, or two names
    equal but for case (one file on some file systems) get a hash of the id appended.
    """
    def hashed(sid: str, base: str) -> str:
        return f"{base[:_MAX_NAME]}-{hashlib.sha1(sid.encode('utf-8')).hexdigest()[:8]}"

    names: dict[str, str] = {}
    for sid in ids:
        base = _UNSAFE.sub("_", sid) or "frame"
        names[sid] = base if base == sid and len(base) <= _MAX_NAME else hashed(sid, base)
    folded: dict[str, list[str]] = {}
    for sid, name in names.items():
        folded.setdefault(name.lower(), []).append(sid)
    for clash in (sids for sids in folded.values() if len(sids) > 1):
        for sid in clash:
            names[sid] = hashed(sid, names[sid])
    return names


def _png(array: np.ndarray) -> bytes:
    """An array as PNG bytes: ``[H, W, 3]`` uint8 RGB, ``[H, W]`` uint8 grey or uint16."""
    return _save(Image.fromarray(array))


def _save(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _rgb(image: torch.Tensor) -> np.ndarray:
    """A ``[3, H, W]`` frame (uint8, or float in 0..1) as ``[H, W, 3]`` uint8."""
    if image.is_floating_point():
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return image.detach().to("cpu", torch.uint8).permute(1, 2, 0).contiguous().numpy()


class FolderOracle(WaitingOracle):
    """Queries go to a folder as PNG frames; a person saves class-id masks beside them.

    :param accept_partial: go on with the labels that arrived (the rest return to the
        pool) instead of waiting for every query.
    :param prelabels: write the current model's prediction of each frame as a
        starting point (``prelabels/``), when there is a trained model.
    """

    name: ClassVar[str] = "folder"
    description: ClassVar[str] = "a person labels the queried frames as PNG masks in RUN/queries/round-NNN/"

    def __init__(self, accept_partial: bool = False, prelabels: bool = True) -> None:
        super().__init__(accept_partial=accept_partial)
        self.prelabels = bool(prelabels)

    # -- submit ---------------------------------------------------------------------

    def submit(self, handoff: Handoff) -> str:
        """Write the frames, areas, pre-labels, ``tasks.csv`` and ``README.txt`` under
        ``handoff.folder`` (atomically, file by file); never touches ``masks/``."""
        folder = handoff.folder
        names = file_names(handoff.ids)
        regions = any(q.area is not None for q in handoff.queries)
        predict = handoff.predict if self.prelabels else None
        subfolders = ["images", "masks"] + (["regions"] if regions else []) + (["prelabels"] if predict else [])
        try:
            for sub in subfolders:
                (folder / sub).mkdir(parents=True, exist_ok=True)
            for query in handoff.queries:
                self._write_query(handoff, query, names[query.sample_id], predict)
            self._write_tasks(handoff, names, {})
            atomic_write(folder / "README.txt", _readme(handoff, regions, predict is not None).encode("utf-8"))
        except OSError as exc:
            raise SegalError(
                f"{exc.filename or folder}: cannot write the frames to label ({exc.strerror or exc}); "
                f"free space or fix the permissions, then run: segal run --resume {folder.parent.parent}"
            ) from None
        where = " (only the areas shown in regions/)" if regions else ""
        # the core adds what to run next (segal run --resume RUN)
        return (
            f"{len(handoff.queries)} frame{'' if len(handoff.queries) == 1 else 's'} to label{where} in {folder}: save class-id masks as masks/<name>.png, "
            "see README.txt there"
        )

    def _write_query(
        self, handoff: Handoff, query: Query, name: str, predict: Callable[[str], torch.Tensor] | None
    ) -> None:
        folder = handoff.folder
        rgb = _rgb(handoff.pool.image(handoff.pool.index_of(query.sample_id)))
        atomic_write(folder / "images" / f"{name}.png", _png(rgb))
        if query.area is not None:
            area = query.area.detach().to("cpu", torch.bool).numpy()
            atomic_write(folder / "regions" / f"{name}.png", _png(area.astype(np.uint8) * 255))
            dimmed = np.where(area[..., None], rgb, rgb // 4).astype(np.uint8)
            atomic_write(folder / "regions" / f"{name}-preview.png", _png(dimmed))
        if predict is not None:
            ids = predict(query.sample_id).detach().to("cpu", torch.int64).numpy()
            atomic_write(folder / "prelabels" / f"{name}.png", _id_png(ids, handoff))
            colours = _colour(ids, handoff)
            blend = ((rgb.astype(np.uint16) + colours.astype(np.uint16)) // 2).astype(np.uint8)
            atomic_write(folder / "prelabels" / f"{name}-preview.png", _png(blend))

    def _write_tasks(self, handoff: Handoff, names: dict[str, str], status: dict[str, str]) -> None:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(TASK_COLUMNS)
        for q in handoff.queries:
            writer.writerow([
                q.sample_id, f"{names[q.sample_id]}.png", "" if q.score is None else f"{q.score:.6g}",
                " ".join(str(r) for r in q.regions or ()), "" if q.area is None else int(q.area.sum()),
                status.get(q.sample_id, "waiting"),
            ])  # fmt: skip
        path = handoff.folder / "tasks.csv"
        data = out.getvalue().encode("utf-8")
        with contextlib.suppress(FileNotFoundError):
            if path.read_bytes() == data:
                return
        atomic_write(path, data)

    # -- collect --------------------------------------------------------------------

    def collect(self, handoff: Handoff) -> Collected:
        """Every ``masks/<name>.png`` of a query, checked; one rejected line per file at
        fault (and per file matching no query). A file of another type is named only
        when its frame has no ``.png`` beside it. Repeatable: reads, never changes, the
        annotator's files; only ``tasks.csv``'s status column is updated."""
        names = file_names(handoff.ids)
        by_name = {name: sid for sid, name in names.items()}
        masks = handoff.folder / "masks"
        run = handoff.folder.parent.parent
        found = Collected()
        status: dict[str, str] = {}
        files: dict[str, list[Path]] = {}
        if masks.is_dir():  # hidden files (an editor's lock, a temporary file) and folders are skipped
            for path in sorted(masks.iterdir()):
                if not path.name.startswith(".") and path.is_file():
                    files.setdefault(path.stem, []).append(path)
        for stem, paths in files.items():
            sid = by_name.get(stem)
            if sid is None:
                found.rejected.extend(
                    f"{_relative(path, run)}: no frame {stem!r} was queried in this round (see tasks.csv); "
                    "name the mask after its frame in images/ or move it out of masks/"
                    for path in paths
                )
                continue
            pngs = [p for p in paths if p.suffix.lower() == ".png"]
            for path in pngs[1:]:
                found.rejected.append(
                    f"{_relative(path, run)}: a second mask for {sid!r} beside {pngs[0].name}; keep one"
                )
            if not pngs:
                kind = paths[0].suffix.lstrip(".").upper() or "file without extension"
                found.rejected.append(f"{_relative(paths[0], run)}: {_not_png(kind, stem)}")
                status[sid] = "rejected"
                continue
            where = _relative(pngs[0], run)
            try:
                mask = self._read(pngs[0], handoff, sid)
            except SegalError as exc:
                found.rejected.append(f"{where}: {exc}")
                status[sid] = "rejected"
                continue
            labelled = int((mask != handoff.ignore_index).sum())
            found.annotations.append(Annotation(sid, labelled, torch.from_numpy(mask), source=where))
            status[sid] = "labelled"
        order = {sid: i for i, sid in enumerate(handoff.ids)}
        found.annotations.sort(key=lambda a: order[a.sample_id])
        with contextlib.suppress(OSError):  # the status column is a convenience; never fail a collection on it
            self._write_tasks(handoff, names, status)
        return found

    def _read(self, path: Path, handoff: Handoff, sample_id: str) -> np.ndarray:
        """The class ids of one mask file as ``[H, W]`` int64, or a :class:`SegalError`
        saying what is wrong and what to do (without the file name)."""
        try:
            with Image.open(path) as img:
                if img.format != "PNG":
                    raise SegalError(_not_png(f"{img.format or 'unknown'} file named .png", path.stem))
                mode = img.mode
                if mode not in _ID_MODES:
                    raise SegalError(_mode_problem(mode))
                img.load()
                values = np.array(img).astype(np.int64, copy=False)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SegalError(f"cannot be read as an image ({reason}); save it again as a PNG of class ids") from None
        height, width = handoff.pool.image_size(handoff.pool.index_of(sample_id))
        if values.shape != (height, width):
            raise SegalError(
                f"mask is {values.shape[1]}x{values.shape[0]} (WxH) but the frame images/{path.name} is "
                f"{width}x{height}; label the frame as written there, at its size"
            )
        classes = len(handoff.classes)
        bad = ((values < 0) | (values >= classes)) & (values != handoff.ignore_index)
        if bad.any():
            wrong = np.unique(values[bad])
            shown = ", ".join(str(int(v)) for v in wrong[:5]) + (" ..." if len(wrong) > 5 else "")
            count = int(bad.sum())
            raise SegalError(
                f"holds value{'s' if len(wrong) > 1 else ''} {shown} in {count} pixel{'s' if count > 1 else ''}; "
                "class ids are "
                f"0..{classes - 1} and {handoff.ignore_index} means not labelled (see README.txt)"
            )
        if not (values != handoff.ignore_index).any():
            raise SegalError(
                f"holds no label (every pixel is {handoff.ignore_index}, not labelled); label the frame, or remove "
                "the file until it is done"
            )
        return values


def _relative(path: Path, run: Path) -> str:
    try:
        return path.relative_to(run).as_posix()
    except ValueError:
        return str(path)


def _not_png(kind: str, name: str) -> str:
    return (
        f"a {kind}, not a PNG; lossy compression (JPEG) changes class ids at edges and other formats "
        f"are not read: save it as PNG, masks/{name}.png, from the original labels"
    )


def _mode_problem(mode: str) -> str:
    if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr"):
        what = f"a colour ({mode}) image"
    elif mode in ("LA", "La", "PA"):
        what = f"an image with transparency ({mode})"
    else:
        what = f"an image of mode {mode}"
    return (
        f"{what}, not one channel of class ids; save an 8-bit grey or palette PNG whose values are the "
        "class ids (as prelabels/ are written)"
    )


def _id_png(ids: np.ndarray, handoff: Handoff) -> bytes:
    """Class ids as a palette PNG (values = ids, shown in class colours) when they fit
    in 8 bits, else a 16-bit grey PNG."""
    if max(len(handoff.classes) - 1, handoff.ignore_index, int(ids.max(initial=0))) >= 256:
        return _png(ids.astype(np.uint16))
    height, width = ids.shape
    img = Image.frombytes("P", (width, height), ids.astype(np.uint8).tobytes())
    palette = np.zeros((256, 3), np.uint8)
    colours = np.asarray(handoff.colors, np.uint8).reshape(-1, 3)[:256]
    palette[: len(colours)] = colours
    img.putpalette(palette.reshape(-1).tolist())
    return _save(img)


def _colour(ids: np.ndarray, handoff: Handoff) -> np.ndarray:
    """``[H, W, 3]`` class colours of an id map (black for ids without a colour, the
    ignore index among them)."""
    table = np.zeros((max(int(ids.max(initial=0)) + 1, len(handoff.colors)), 3), np.uint8)
    table[: len(handoff.colors)] = np.asarray(handoff.colors, np.uint8).reshape(-1, 3)
    return table[ids]


def _readme(handoff: Handoff, regions: bool, prelabels: bool) -> str:
    run = handoff.folder.parent.parent.absolute()
    colours = list(handoff.colors)
    width = max(len(name) for name in handoff.classes)
    classes = "\n".join(
        f"  {i:>3}  {name:<{width}}" + ("  colour {} {} {}".format(*colours[i]) if i < len(colours) else "")
        for i, name in enumerate(handoff.classes)
    )
    lines = [
        f"Frames to label for round {handoff.round if handoff.round >= 0 else 'seed'} of the SegAL run {run}",
        "",
        "1. Open each frame in images/ (tasks.csv lists them: id, file, score, ...).",
    ]
    if regions:
        lines.append("   Label the area shown in regions/<name>.png (white = to label; regions/<name>-preview.png")
        lines.append("   shows it on the frame); pixels outside it are not used.")
    if prelabels:
        lines.append("   prelabels/<name>.png is the current model's guess (class ids, shown in colour):")
        lines.append("   copy it to masks/<name>.png and correct it, or start from scratch.")
    lines += [
        "2. Save the mask as masks/<name>.png, the same name as the frame:",
        "   a PNG (never JPEG), one channel (8-bit grey or palette), the frame's size,",
        f"   each pixel a class id below, or {handoff.ignore_index} where you did not label.",
        "3. To check what you saved so far (trains nothing):",
        f"     segal status {run}",
        "   When every frame is done, go on:",
        f"     segal run --resume {run}",
        "   Each mask at fault is named with what to fix; masks already saved are never changed.",
        "",
        "Class ids:",
        classes,
        f"  {handoff.ignore_index:>3}  (not labelled)",
        "",
    ]
    return "\n".join(lines)
