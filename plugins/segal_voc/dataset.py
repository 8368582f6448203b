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
from pathlib import Path
from typing import ClassVar

from segal_core import DataConfig, SegalError, Splits
from segal_core.imageio import (
    IMAGE_EXTENSIONS,
    FileDataset,
    LabelMap,
    Sample,
    check_headers,
    data_root,
    resize_options,
    verify_masks,
)
from segal_core.options import coerce_options

__all__ = ["VOC", "VOCOptions", "VOC_CLASSES", "voc_palette"]

#: The 21 VOC classes, index = class id.
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
LISTS = Path("ImageSets") / "Segmentation"
_FLAG = "--dataset-opt"


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


def _from_list(root: Path, list_file: Path, masks: str, *, strict: bool = True) -> list[Sample] | None:
    """The samples listed in ``list_file``; ``None`` when not ``strict`` and a mask is
    missing (a test list without public masks)."""
    samples: list[Sample] = []
    seen: set[str] = set()
    for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        sample_id = line.strip().split()[0] if line.strip() else ""
        if not sample_id:
            continue
        where = f"{list_file}:{number}"
        image = _image(root / "JPEGImages", sample_id)
        mask = root / masks / f"{sample_id}.png"
        if not mask.is_file():
            if not strict:
                return None
            raise SegalError(f"{where}: {sample_id} has no mask {mask}; add it or remove the line")
        if image is None:
            raise SegalError(
                f"{where}: {sample_id} has no image {root / 'JPEGImages' / sample_id}.jpg; add it or remove the line"
            )
        if sample_id in seen:
            raise SegalError(f"{where}: {sample_id} is listed twice; remove one line")
        seen.add(sample_id)
        samples.append(Sample(sample_id, image, mask))
    return samples


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
        options = VOCOptions(**coerce_options(VOCOptions, config.options, _FLAG))
        resize, scale = resize_options(options.size, options.scale)
        if config.num_classes not in (None, len(VOC_CLASSES)):
            raise SegalError(
                f"--num-classes {config.num_classes}: VOC has {len(VOC_CLASSES)} classes "
                "(background included); leave --num-classes out"
            )
        labels = LabelMap.identity(len(VOC_CLASSES))
        root = data_root(config.path, cls.name)
        _check_layout(root, options.masks)

        parts: dict[str, list[Sample]] = {}
        for split in ("train", "val"):
            list_file = root / LISTS / f"{split}.txt"
            if not list_file.is_file():
                raise SegalError(f"{list_file}: missing; VOC needs {LISTS}/train.txt and val.txt")
            samples = _from_list(root, list_file, options.masks)
            assert samples is not None  # strict
            if not samples:
                raise SegalError(f"{list_file}: the {split} split is empty; list one image id per line")
            parts[split] = samples
        notices: list[str] = []
        test_list = root / LISTS / "test.txt"
        test = _from_list(root, test_list, options.masks, strict=False) if test_list.is_file() else None
        if test:
            parts["test"] = test
        else:
            why = "has ids without masks" if test_list.is_file() else "is missing"
            notices.append(f"voc: {test_list} {why} (no public test masks); the val split is used for testing")

        datasets: dict[str, VOC] = {}
        for split, samples in parts.items():
            sizes = check_headers(samples)
            dataset = cls(
                samples, VOC_CLASSES, split=split, labels=labels, resize=resize, scale=scale, sizes=sizes
            )
            verify_masks(dataset, options.verify, sizes, f"{_FLAG} verify")
            datasets[split] = dataset
        return Splits(datasets["train"], datasets["val"], datasets.get("test"), notices)
