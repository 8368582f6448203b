"""Finding a dataset's files: the data folder, files by id, image/mask pairs and
list files.

Ids are file stems (less an optional suffix). Every mistake is a
:class:`~segal_core.SegalError` naming the file (and the line of a list file).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from segal_core import SegalError

from .images import IMAGE_EXTENSIONS
from .text import read_text

__all__ = ["ListLine", "Sample", "data_root", "find_files", "list_lines", "pair_by_id", "read_list"]


@dataclass(frozen=True)
class Sample:
    """One image on disk: stable ``id``, ``image`` and ``mask`` paths; ``mask`` is
    ``None`` for a pool frame nobody labelled yet (a waiting oracle labels it)."""

    id: str
    image: Path
    mask: Path | None


@dataclass(frozen=True)
class ListLine:
    """One entry of a list file: its whitespace-separated ``fields`` and ``where`` it
    stands (``"path:line"``, for messages)."""

    where: str
    fields: tuple[str, ...]


def data_root(path: Path | None, dataset: str) -> Path:
    """The dataset folder given by ``--data-path``, checked to be a folder.

    :param dataset: the dataset's name, for messages.
    :raises SegalError: no path given, no such folder, or a file.
    """
    if path is None:
        raise SegalError(f"--dataset {dataset} needs --data-path (the dataset's folder)")
    path = Path(path).expanduser()
    if not path.is_dir():
        what = "is a file" if path.exists() else "no such folder"
        raise SegalError(f"--data-path {path}: {what}; give the {dataset} dataset's folder")
    return path


def find_files(
    folder: Path,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    *,
    suffix: str = "",
    recursive: bool = False,
) -> dict[str, Path]:
    """Files of ``folder`` ending in ``suffix`` + one of ``extensions``, by id (the
    file name less the extension and ``suffix``), sorted by id. Hidden files are
    skipped; other files are not listed.

    :param recursive: also look in sub-folders (ids stay file stems).
    :raises SegalError: no such folder, or two files with the same id (e.g. ``a.png``
        and ``a.jpg``).
    """
    if not folder.is_dir():
        raise SegalError(f"{folder}: no such folder; check the dataset's layout")
    exts = tuple(e.lower() for e in extensions)
    found: dict[str, Path] = {}
    paths = folder.rglob("*") if recursive else folder.iterdir()
    for path in sorted(paths):
        name = path.name
        if name.startswith(".") or not path.is_file():
            continue
        stem, ext = os.path.splitext(name)
        if ext.lower() not in exts or not stem.endswith(suffix):
            continue
        sample_id = stem[: len(stem) - len(suffix)] if suffix else stem
        if sample_id in found:
            raise SegalError(
                f"{path}: same id {sample_id!r} as {found[sample_id]}; keep one file per id"
            )
        found[sample_id] = path
    return dict(sorted(found.items()))


def pair_by_id(
    images: Mapping[str, Path],
    masks: Mapping[str, Path],
    *,
    image_dir: Path,
    mask_dir: Path,
    image_name: str = "{id}.*",
    mask_name: str = "{id}.*",
) -> list[Sample]:
    """Pair images with masks of the same id, in id order.

    :param image_name: how an image file is named, for messages (``{id}`` = the id).
    :param mask_name: how a mask file is named, for messages.
    :raises SegalError: an image without a mask, or a mask without an image, naming
        the first such file and the folder where its partner was expected.
    """
    for sample_id, path in images.items():
        if sample_id not in masks:
            raise SegalError(
                f"{path}: image has no mask {mask_name.format(id=sample_id)} in {mask_dir}; "
                "add the mask or remove the image"
            )
    for sample_id, path in masks.items():
        if sample_id not in images:
            raise SegalError(
                f"{path}: mask has no image {image_name.format(id=sample_id)} in {image_dir}; "
                "add the image or remove the mask"
            )
    return [Sample(sid, images[sid], masks[sid]) for sid in sorted(images)]


def list_lines(path: Path, *, comments: bool = False) -> list[ListLine]:
    """The entries of the list file ``path``: every line with at least one field,
    split on whitespace.

    :param comments: skip lines whose first field starts with ``#``.
    :raises SegalError: the file cannot be read or decoded (see
        :func:`~segal_files.read_text`), naming it.
    """
    entries = []
    for number, line in enumerate(read_text(path, "list").splitlines(), start=1):
        fields = tuple(line.split())
        if fields and not (comments and fields[0].startswith("#")):
            entries.append(ListLine(f"{path}:{number}", fields))
    return entries


def read_list(path: Path, sample: Callable[[ListLine], Sample]) -> list[Sample]:
    """The samples of the list file ``path``, in list order.

    :param sample: turns one entry into its sample, raising a
        :class:`~segal_core.SegalError` that names ``line.where`` for a bad entry.
    :raises SegalError: the file cannot be read, or an id is listed twice.
    """
    samples: dict[str, Sample] = {}
    for line in list_lines(path):
        found = sample(line)
        if found.id in samples:
            raise SegalError(f"{line.where}: {found.id} is listed twice; remove one line")
        samples[found.id] = found
    return list(samples.values())
