"""The ``cityscapes`` dataset: the official Cityscapes layout, 19 training classes.

```
cityscapes/
  leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
```
Masks store label ids (0..33), mapped to the 19 training ids with the rest ignored
(255). The official test masks are withheld (all void), so the val split is used for
testing unless ``use_test=true``. Full frames are 1024x2048: ``scale=0.5`` or
``size=512x1024`` reads them smaller (images bilinear, masks nearest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from segal_core import DataConfig, SegalError, Splits
from segal_files import (
    OPTION_FLAG,
    ClassTable,
    FileDataset,
    LabelMap,
    Layout,
    Sample,
    SplitFiles,
    find_files,
    load_file_splits,
    pair_by_id,
)

from .labels import IGNORE, LABEL_TO_TRAIN, TRAIN_CLASSES

__all__ = ["Cityscapes", "CityscapesOptions"]

IMAGE_SUFFIX = "_leftImg8bit"
MASK_SUFFIXES = {"labelIds": "_gtFine_labelIds", "trainIds": "_gtFine_labelTrainIds"}


@dataclass(frozen=True)
class CityscapesOptions:
    """``--dataset-opt`` keys of ``cityscapes``.

    :param scale: read frames at this fraction of their size (e.g. ``0.5``: 512x1024).
    :param size: read frames at ``HxW`` pixels.
    :param masks: ``labelIds`` (``*_gtFine_labelIds.png``, mapped to train ids) or
        ``trainIds`` (``*_gtFine_labelTrainIds.png`` from cityscapesscripts, used as is).
    :param use_test: use ``gtFine/test`` as the test split (its public masks are void).
    :param verify: ``auto`` (header checks only at this size; values are checked as
        each mask is read), ``full`` (decode every mask at load) or ``header``.
    """

    name: ClassVar[str] = "cityscapes"

    scale: float | None = None
    size: str | None = None
    masks: str = "labelIds"
    use_test: bool = False
    verify: str = "auto"


def _check_layout(root: Path) -> None:
    missing = [d for d in ("leftImg8bit", "gtFine") if not (root / d).is_dir()]
    if not missing:
        return
    hint = ""
    if root.name in ("leftImg8bit", "gtFine") and (root.parent / "leftImg8bit").is_dir():
        hint = f"; did you mean --data-path {root.parent}?"
    raise SegalError(
        f"--data-path {root}: not a Cityscapes folder, {'/ and '.join(missing)}/ missing; expected "
        f"leftImg8bit/{{train,val}}/<city>/*{IMAGE_SUFFIX}.png and "
        f"gtFine/{{train,val}}/<city>/*_gtFine_labelIds.png{hint}"
    )


def _split(root: Path, split: str, mask_suffix: str) -> list[Sample]:
    image_dir, mask_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    if not image_dir.is_dir() or not mask_dir.is_dir():
        absent = image_dir if not image_dir.is_dir() else mask_dir
        raise SegalError(f"{absent}: missing; Cityscapes needs the {split} split in leftImg8bit/ and gtFine/")
    images = find_files(image_dir, (".png",), suffix=IMAGE_SUFFIX, recursive=True)
    masks = find_files(mask_dir, (".png",), suffix=mask_suffix, recursive=True)
    if images and not masks:
        colour = find_files(mask_dir, (".png",), suffix="_gtFine_color", recursive=True)
        what = "only colour masks (*_gtFine_color.png)" if colour else "no masks"
        raise SegalError(
            f"{mask_dir}: {what}, no *{mask_suffix}.png; Cityscapes needs the id masks of "
            "gtFine_trainvaltest.zip (or cityscapesscripts' createTrainIdLabelImgs with masks=trainIds)"
        )
    return pair_by_id(
        images, masks, image_dir=image_dir, mask_dir=mask_dir,
        image_name="{id}" + IMAGE_SUFFIX + ".png", mask_name="{id}" + mask_suffix + ".png",
    )  # fmt: skip


def _classes(options: CityscapesOptions, num_classes: int | None) -> ClassTable:
    if options.masks not in MASK_SUFFIXES:
        raise SegalError(f"{OPTION_FLAG} masks={options.masks}: expected one of {', '.join(MASK_SUFFIXES)}")
    if num_classes not in (None, len(TRAIN_CLASSES)):
        raise SegalError(
            f"--num-classes {num_classes}: Cityscapes is evaluated on {len(TRAIN_CLASSES)} "
            "classes; leave --num-classes out"
        )
    n = len(TRAIN_CLASSES)
    if options.masks == "labelIds":
        return ClassTable(TRAIN_CLASSES, LabelMap(LABEL_TO_TRAIN, num_classes=n, ignore_index=IGNORE))
    return ClassTable(TRAIN_CLASSES, LabelMap.identity(n, ignore_index=IGNORE))


def _find(root: Path, options: CityscapesOptions, config: DataConfig) -> Layout:
    """The classes and the train, val (and with ``use_test``, test) splits under ``root``."""
    classes = _classes(options, config.num_classes)
    _check_layout(root)
    wanted = ["train", "val", "test"] if options.use_test else ["train", "val"]
    hint = f"expected <city>/*{IMAGE_SUFFIX}.png files"
    splits = {
        split: SplitFiles(_split(root, split, MASK_SUFFIXES[options.masks]), root / "leftImg8bit" / split, hint)
        for split in wanted
    }
    no_test = (
        "cityscapes: the official test masks are withheld, so the val split is used for "
        f"testing ({OPTION_FLAG} use_test=true to read gtFine/test anyway)"
    )
    return Layout(classes, splits, no_test)


class Cityscapes(FileDataset):
    """Cityscapes fine annotations, 19 training classes, other labels ignored.
    Ids are ``<city>_<seq>_<frame>``."""

    name: ClassVar[str] = "cityscapes"
    aliases: ClassVar[tuple[str, ...]] = ("Cityscapes",)
    description: ClassVar[str] = "Cityscapes (gtFine, 19 classes); scale=0.5 to work at half resolution"
    requires_path: ClassVar[bool] = True

    @classmethod
    def load(cls, config: DataConfig) -> Splits:
        """Read the splits of ``config.path``; see the module docstring for the layout."""
        return load_file_splits(cls, config, CityscapesOptions, _find)
