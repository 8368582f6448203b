"""The ``voc`` dataset: PASCAL VOC 2012 segmentation, 21 classes.

```
VOC2012/
  JPEGImages/<id>.jpg
  SegmentationClass/<id>.png          palette PNGs: index = class id, 255 = border
  ImageSets/Segmentation/train.txt    one id per line (also val.txt, [test.txt])
```
The border (255) is ignored. There are no public test masks: the val split is used
for testing unless ``test.txt`` lists ids whose masks are all present.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

from segal_core import DataConfig, SegalError, Splits
from segal_files import (
    IMAGE_EXTENSIONS,
    ClassTable,
    FileDataset,
    LabelMap,
    Layout,
    ListLine,
    Sample,
    SplitFiles,
    list_lines,
    load_file_splits,
    read_list,
)

__all__ = ["VOC", "VOCOptions", "VOC_CLASSES", "voc_palette"]

#: The 21 VOC classes, index = class id.
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
LISTS = Path("ImageSets") / "Segmentation"


def voc_palette() -> list[int]:
    """The VOC colour palette (768 values, for ``PIL.Image.putpalette``): class ``i``
    gets the colour whose bits are spread from the bits of ``i``; 255 is the border."""
    palette: list[int] = []
    for index in range(256):
        rgb = [0, 0, 0]
        value = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette.extend(rgb)
    return palette


@dataclass(frozen=True)
class VOCOptions:
    """``--dataset-opt`` keys of ``voc``.

    :param masks: the mask folder (``SegmentationClassAug`` for the augmented set).
    :param verify: ``auto``, ``full`` or ``header`` (see ``docs/datasets.md``).
    :param size: read every image at ``HxW`` (VOC images differ in size; without
        ``size`` or a crop size, batches of more than one image cannot be stacked).
    :param scale: read images at this fraction of their size.
    """

    name: ClassVar[str] = "voc"

    masks: str = "SegmentationClass"
    verify: str = "auto"
    size: str | None = None
    scale: float | None = None


def _check_layout(root: Path, masks: str) -> None:
    missing = [d for d in ("JPEGImages", masks, str(LISTS)) if not (root / d).is_dir()]
    if not missing:
        return
    hint = ""
    for candidate in (root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            hint = f"; did you mean --data-path {candidate}?"
    raise SegalError(
        f"--data-path {root}: not a VOC folder, {' and '.join(d + '/' for d in missing)} missing; "
        f"expected JPEGImages/, {masks}/ and {LISTS}/{{train,val}}.txt{hint}"
    )


def _image(folder: Path, sample_id: str) -> Path | None:
    for ext in (".jpg", *IMAGE_EXTENSIONS):
        path = folder / f"{sample_id}{ext}"
        if path.is_file():
            return path
    return None


def _listed(root: Path, masks: str, line: ListLine) -> Sample:
    """One line of a list file: an image id (further fields are ignored)."""
    sample_id = line.fields[0]
    image = _image(root / "JPEGImages", sample_id)
    mask = root / masks / f"{sample_id}.png"
    if not mask.is_file():
        raise SegalError(f"{line.where}: {sample_id} has no mask {mask}; add it or remove the line")
    if image is None:
        raise SegalError(
            f"{line.where}: {sample_id} has no image {root / 'JPEGImages' / sample_id}.jpg; add it or remove the line"
        )
    return Sample(sample_id, image, mask)


def _all_masked(root: Path, list_file: Path, masks: str) -> bool:
    """Whether every id of ``list_file`` has a mask (the public test list has none)."""
    return all((root / masks / f"{line.fields[0]}.png").is_file() for line in list_lines(list_file))


def _find(root: Path, options: VOCOptions, config: DataConfig) -> Layout:
    """The classes and the splits of the list files under ``root``."""
    if config.num_classes not in (None, len(VOC_CLASSES)):
        raise SegalError(
            f"--num-classes {config.num_classes}: VOC has {len(VOC_CLASSES)} classes "
            "(background included); leave --num-classes out"
        )
    _check_layout(root, options.masks)
    sample = partial(_listed, root, options.masks)
    splits: dict[str, SplitFiles] = {}
    for split in ("train", "val"):
        list_file = root / LISTS / f"{split}.txt"
        if not list_file.is_file():
            raise SegalError(f"{list_file}: missing; VOC needs {LISTS}/train.txt and val.txt")
        splits[split] = SplitFiles(read_list(list_file, sample), list_file, "list one image id per line")
    test_list = root / LISTS / "test.txt"
    if test_list.is_file() and _all_masked(root, test_list, options.masks):
        test = read_list(test_list, sample)
        if test:
            splits["test"] = SplitFiles(test, test_list, "list one image id per line")
    why = "has ids without masks" if test_list.is_file() else "is missing"
    no_test = f"voc: {test_list} {why} (no public test masks); the val split is used for testing"
    return Layout(ClassTable(VOC_CLASSES, LabelMap.identity(len(VOC_CLASSES))), splits, no_test)


class VOC(FileDataset):
    """PASCAL VOC 2012 segmentation: 21 classes, border (255) ignored. Ids are the
    image ids of the list files (``2007_000032``)."""

    name: ClassVar[str] = "voc"
    aliases: ClassVar[tuple[str, ...]] = ("pascal_voc", "VOC2012")
    description: ClassVar[str] = "PASCAL VOC 2012 segmentation (21 classes, border ignored)"
    requires_path: ClassVar[bool] = True

    @classmethod
    def load(cls, config: DataConfig) -> Splits:
        """Read the splits of ``config.path``; see the module docstring for the layout."""
        return load_file_splits(cls, config, VOCOptions, _find)
