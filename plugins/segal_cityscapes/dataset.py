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
from segal_core.imageio import (
    FileDataset,
    LabelMap,
    Sample,
    check_headers,
    data_root,
    find_files,
    pair_by_id,
    resize_options,
    verify_masks,
)
from segal_core.options import coerce_options

from .labels import IGNORE, LABEL_TO_TRAIN, TRAIN_CLASSES

__all__ = ["Cityscapes", "CityscapesOptions"]

IMAGE_SUFFIX = "_leftImg8bit"
MASK_SUFFIXES = {"labelIds": "_gtFine_labelIds", "trainIds": "_gtFine_labelTrainIds"}
_FLAG = "--dataset-opt"


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
        options = CityscapesOptions(**coerce_options(CityscapesOptions, config.options, _FLAG))
        resize, scale = resize_options(options.size, options.scale)
        if options.masks not in MASK_SUFFIXES:
            raise SegalError(f"{_FLAG} masks={options.masks}: expected one of {', '.join(MASK_SUFFIXES)}")
        if config.num_classes not in (None, len(TRAIN_CLASSES)):
            raise SegalError(
                f"--num-classes {config.num_classes}: Cityscapes is evaluated on {len(TRAIN_CLASSES)} "
                "classes; leave --num-classes out"
            )
        n = len(TRAIN_CLASSES)
        if options.masks == "labelIds":
            labels = LabelMap(LABEL_TO_TRAIN, num_classes=n, ignore_index=IGNORE)
        else:
            labels = LabelMap.identity(n, ignore_index=IGNORE)
        root = data_root(config.path, cls.name)
        _check_layout(root)

        wanted = ["train", "val", "test"] if options.use_test else ["train", "val"]
        datasets: dict[str, Cityscapes] = {}
        for split in wanted:
            samples = _split(root, split, MASK_SUFFIXES[options.masks])
            if not samples:
                raise SegalError(
                    f"{root / 'leftImg8bit' / split}: the {split} split is empty; expected "
                    f"<city>/*{IMAGE_SUFFIX}.png files"
                )
            sizes = check_headers(samples)
            dataset = cls(
                samples, TRAIN_CLASSES, split=split, labels=labels, resize=resize, scale=scale, sizes=sizes
            )
            verify_masks(dataset, options.verify, sizes, f"{_FLAG} verify")
            datasets[split] = dataset
        notices = []
        if not options.use_test:
            notices.append(
                "cityscapes: the official test masks are withheld, so the val split is used for "
                f"testing ({_FLAG} use_test=true to read gtFine/test anyway)"
            )
        return Splits(datasets["train"], datasets["val"], datasets.get("test"), notices)
