"""The ``folder`` dataset: bring your own images and masks.

Three layouts, tried in this order (``images``/``masks`` are the option names)::

    root/images/train/*.jpg  root/masks/train/*.png   (also val/, test/)
    root/train/images/*.jpg  root/train/masks/*.png   (also val/, test/)
    root/images/*.jpg        root/masks/*.png         + train.txt val.txt [test.txt]
                                                        (at root/ or root/splits/)
    root/images/*.jpg        root/masks/*.png         (no lists: a seeded random split)

plus ``classes.txt`` or ``classes.json`` at the root (see :mod:`segal_folder.classes`).

Train images may lack a mask (unless ``require_masks=true``): they form the pool a
waiting oracle (``--oracle folder``) labels; a notice counts them. Val and test images
always need masks (they measure the model); a random split draws them from the images
that have one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from segal_core import DataConfig, SegalError, Splits
from segal_core.dataset import DEFAULT_IGNORE_INDEX
from segal_files import (
    IMAGE_EXTENSIONS,
    MASK_EXTENSIONS,
    OPTION_FLAG,
    ClassTable,
    ColorMap,
    FileDataset,
    LabelMap,
    Layout,
    Sample,
    SplitFiles,
    find_files,
    list_lines,
    load_file_splits,
    pair_by_id,
)

from .classes import CLASS_FILES, ClassSpec, read_classes

__all__ = ["Folder", "FolderOptions"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class FolderOptions:
    """``--dataset-opt`` keys of ``folder``.

    :param images: name of the image folder.
    :param masks: name of the mask folder.
    :param mask_suffix: what mask stems add to the image stem (``x.jpg`` <-> ``x_mask.png``
        with ``mask_suffix=_mask``).
    :param val_fraction: share of the images drawn for val when there is no val split.
    :param test_fraction: share drawn for test in a random split (0: no test split).
    :param split_seed: seed of the random split (fixed, so every run sees the same split).
    :param ignore_index: stored mask value of ignored pixels (default: the class file's,
        else 255); it must not be a class id.
    :param verify: ``auto``, ``full`` or ``header`` (see ``docs/datasets.md``).
    :param size: read images at ``HxW`` (images bilinear, masks nearest).
    :param scale: read images at this fraction of their size.
    :param require_masks: refuse train images without a mask (by default they form the
        unlabelled pool, for a waiting oracle such as ``--oracle folder``).
    """

    name: ClassVar[str] = "folder"

    images: str = "images"
    masks: str = "masks"
    mask_suffix: str = ""
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0
    ignore_index: int | None = None
    verify: str = "auto"
    size: str | None = None
    scale: float | None = None
    require_masks: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.split_seed < 2**63:
            raise SegalError(f"{OPTION_FLAG} split_seed={self.split_seed}: expected 0 to 2**63 - 1")
        if self.ignore_index is not None and not 0 <= self.ignore_index <= 65535:
            raise SegalError(
                f"{OPTION_FLAG} ignore_index={self.ignore_index}: expected 0 to 65535 (a value masks can store), "
                "at least the number of classes, e.g. 255"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise SegalError(f"{OPTION_FLAG} val_fraction={self.val_fraction}: expected a share in (0, 1)")
        if not 0.0 <= self.test_fraction < 1.0 or self.val_fraction + self.test_fraction >= 1.0:
            raise SegalError(
                f"{OPTION_FLAG} test_fraction={self.test_fraction}: expected a share in [0, 1) leaving "
                f"images for training beside val_fraction={self.val_fraction}"
            )


def _classes(root: Path, config: DataConfig, options: FolderOptions) -> ClassTable:
    """The class table from the class file at ``root`` (or ``--num-classes``)."""
    spec = read_classes(root)
    if spec is None:
        if config.num_classes is None:
            raise SegalError(
                f"--data-path {root}: no {' or '.join(CLASS_FILES)}; add one (one class name per line, "
                "id = position) or pass --num-classes"
            )
        spec = ClassSpec(names=[f"class_{i}" for i in range(config.num_classes)])
    elif config.num_classes not in (None, len(spec.names)):
        raise SegalError(
            f"--num-classes {config.num_classes}: {spec.source} lists {len(spec.names)} classes; "
            "leave --num-classes out or fix the class file"
        )
    n = len(spec.names)
    ignore = options.ignore_index if options.ignore_index is not None else spec.ignore_index
    ignore = DEFAULT_IGNORE_INDEX if ignore is None else ignore
    if ignore < n:
        where = f"{OPTION_FLAG} ignore_index={ignore}" if options.ignore_index is not None else str(spec.source)
        raise SegalError(
            f"{where}: ignore id {ignore} is also a class id (classes are 0..{n - 1}); "
            "use a value of at least the number of classes, e.g. 255"
        )
    labels = LabelMap.identity(n, ignore_values=[ignore])
    colors = None
    if spec.colors:
        table = {rgb: i for i, rgb in enumerate(spec.colors)}
        if spec.ignore_color is not None:
            if spec.ignore_color in table:
                raise SegalError(f"{spec.source}: ignore_color {spec.ignore_color} is also a class colour")
            table[spec.ignore_color] = DEFAULT_IGNORE_INDEX
        colors = ColorMap(table)
    elif spec.ignore_color is not None:
        raise SegalError(f"{spec.source}: ignore_color given without class colours; add a colour per class")
    return ClassTable(spec.names, labels, colors)


#: Why val and test images need masks, for messages.
NEEDS_MASKS = "val and test images need masks (they measure the model)"


def _pair(image_dir: Path, mask_dir: Path, options: FolderOptions, *, pool: bool = False) -> list[Sample]:
    """The images of ``image_dir`` with their masks in ``mask_dir``, in id order.

    :param pool: the train split: images without a mask are kept (``mask=None``) unless
        ``require_masks`` is set.
    """
    pool = pool and not options.require_masks
    if not mask_dir.is_dir():
        if pool:
            return [Sample(sid, path, None) for sid, path in find_files(image_dir, IMAGE_EXTENSIONS).items()]
        raise SegalError(
            f"{image_dir}: has no mask folder {mask_dir}; add it (masks with the image stems)"
            + ("" if options.require_masks else f"; {NEEDS_MASKS}")
        )
    images = find_files(image_dir, IMAGE_EXTENSIONS)
    masks = find_files(mask_dir, MASK_EXTENSIONS, suffix=options.mask_suffix)
    unpaired = next((i for i in images if i not in masks), None)
    # In a pool, images without masks are expected: hint at a suffix only when no mask
    # pairs with its image (``a1`` unlabelled beside a labelled ``a10`` is no suffix).
    if unpaired is not None and not (pool and any(i in masks for i in images)):
        longer = next((m for m in masks if m.startswith(unpaired) and m != unpaired), None)
        if longer is not None:
            suffix = options.mask_suffix + longer[len(unpaired) :]
            raise SegalError(
                f"{images[unpaired]}: image has no mask {unpaired}{options.mask_suffix}.png in {mask_dir}, "
                f"but {masks[longer].name} is there; pass {OPTION_FLAG} mask_suffix={suffix}"
            )
    mask_name = "{id}" + options.mask_suffix + ".png"
    if pool:
        labelled = {sid: path for sid, path in images.items() if sid in masks}
        samples = pair_by_id(labelled, masks, image_dir=image_dir, mask_dir=mask_dir, mask_name=mask_name)
        samples += [Sample(sid, path, None) for sid, path in images.items() if sid not in masks]
        return sorted(samples, key=lambda s: s.id)
    if unpaired is not None and not options.require_masks:
        raise SegalError(
            f"{images[unpaired]}: image has no mask {mask_name.format(id=unpaired)} in {mask_dir}; "
            f"{NEEDS_MASKS}: add the mask, or move the image to the train split (the pool)"
        )
    return pair_by_id(images, masks, image_dir=image_dir, mask_dir=mask_dir, mask_name=mask_name)


def _labelled(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.mask is not None]


def _list_files(root: Path) -> dict[str, Path]:
    for folder in (root, root / "splits"):
        found = {s: folder / f"{s}.txt" for s in SPLITS if (folder / f"{s}.txt").is_file()}
        if found:
            if "train" not in found:
                raise SegalError(f"{folder}: split lists found but no train.txt; add it (one id per line)")
            return found
    return {}


def _from_lists(
    lists: dict[str, Path], everything: list[Sample], image_dir: Path, mask_dir: Path
) -> dict[str, list[Sample]]:
    by_id = {s.id: s for s in everything}
    splits: dict[str, list[Sample]] = {}
    owner: dict[str, str] = {}
    for split, list_file in lists.items():
        chosen: list[Sample] = []
        for line in list_lines(list_file, comments=True):
            name = line.fields[0].replace("\\", "/").rsplit("/", 1)[-1]
            stem, dot, ext = name.rpartition(".")
            sample_id = stem if dot and f".{ext.lower()}" in IMAGE_EXTENSIONS else name
            if sample_id not in by_id:
                raise SegalError(f"{line.where}: {sample_id!r} has no image and mask in {image_dir}; fix the list")
            if split != "train" and by_id[sample_id].mask is None:
                raise SegalError(
                    f"{line.where}: {sample_id!r} has no mask in {mask_dir}; {NEEDS_MASKS}: add it, "
                    "or list the image in train.txt (the pool)"
                )
            if sample_id in owner:
                raise SegalError(
                    f"{line.where}: {sample_id!r} is already in the {owner[sample_id]} split; "
                    "each image may be in one split only"
                )
            owner[sample_id] = split
            chosen.append(by_id[sample_id])
        splits[split] = chosen
    return splits


def _random_split(
    everything: list[Sample], fractions: dict[str, float], seed: int, where: Path
) -> tuple[dict[str, list[Sample]], str]:
    """Draw ``fractions`` of the images that have a mask (val and test need them);
    train keeps the rest and every image without a mask."""
    samples = _labelled(everything)
    unlabelled = [s for s in everything if s.mask is None]
    order = np.random.default_rng(seed).permutation(len(samples))
    counts = {s: max(1, round(f * len(samples))) for s, f in fractions.items() if f > 0}
    if len(samples) - sum(counts.values()) < 1 and not (unlabelled and len(samples) >= sum(counts.values())):
        what = "images" if not unlabelled else f"images with a mask (of {len(everything)}; {NEEDS_MASKS})"
        raise SegalError(
            f"{where}: {len(samples)} {what} are too few to split off "
            + ", ".join(f"{s} ({f:g})" for s, f in fractions.items())
            + "; add "
            + ("images" if not unlabelled else "masks")
            + " or lower the fractions"
        )
    out: dict[str, list[Sample]] = {}
    start = 0
    for split, count in counts.items():
        out[split] = sorted((samples[i] for i in order[start : start + count]), key=lambda s: s.id)
        start += count
    out["train"] = sorted([*(samples[i] for i in order[start:]), *unlabelled], key=lambda s: s.id)
    text = ", ".join(f"{len(v)} {k}" for k, v in out.items())
    return out, text


def _splits(root: Path, options: FolderOptions) -> tuple[dict[str, list[Sample]], list[str]]:
    """Each split's samples, from the first layout found, and notices of the fallbacks taken."""
    images, masks = root / options.images, root / options.masks
    notices: list[str] = []
    parts: dict[str, list[Sample]]
    if (images / "train").is_dir():
        parts = {
            s: _pair(images / s, masks / s, options, pool=s == "train") for s in SPLITS if (images / s).is_dir()
        }
    elif (root / "train" / options.images).is_dir():
        parts = {
            s: _pair(root / s / options.images, root / s / options.masks, options, pool=s == "train")
            for s in SPLITS
            if (root / s / options.images).is_dir()
        }
    elif images.is_dir():
        everything = _pair(images, masks, options, pool=True)
        lists = _list_files(root)
        if lists:
            parts = _from_lists(lists, everything, images, masks)
        else:
            if not everything:
                raise SegalError(f"{images}: no images ({', '.join(IMAGE_EXTENSIONS)}); add some")
            fractions = {"val": options.val_fraction, "test": options.test_fraction}
            parts, text = _random_split(everything, fractions, options.split_seed, images)
            notices.append(
                f"folder: no split folders or lists in {root}; random split "
                f"(split_seed={options.split_seed}): {text}"
            )
            return parts, notices + _pool_notice(parts["train"])
    else:
        raise SegalError(
            f"--data-path {root}: no {options.images}/ folder; expected {options.images}/ and "
            f"{options.masks}/ (optionally with train/ val/ test/ inside, or train/{options.images}/ ...), "
            "see docs/datasets.md"
        )
    if "train" not in parts:
        raise SegalError(f"{root}: no train split found; add train/ (or train.txt)")
    if "val" not in parts:
        if not parts["train"]:
            raise SegalError(f"{root}: the train split is empty; add images to it")
        carved, text = _random_split(parts["train"], {"val": options.val_fraction}, options.split_seed, root)
        parts.update(carved)
        notices.append(
            f"folder: no val split in {root}; val drawn from train (split_seed={options.split_seed}): {text}"
        )
    return parts, notices + _pool_notice(parts["train"])


def _pool_notice(train: list[Sample]) -> list[str]:
    """A notice counting the train images without a mask (none when all have one), so
    that a misnamed mask folder or suffix does not pass unseen."""
    missing = len(train) - len(_labelled(train))
    if not missing:
        return []
    notice = (
        f"folder: the train split (the pool) holds {len(train)} images, {len(train) - missing} with a mask and "
        f"{missing} without (to be labelled, e.g. by --oracle folder); pass --dataset-opt require_masks=true "
        "to refuse images without masks"
    )
    return [notice]


def _find(root: Path, options: FolderOptions, config: DataConfig) -> Layout:
    """The layout under ``root`` (see the module docstring), then the class file."""
    parts, notices = _splits(root, options)
    classes = _classes(root, config, options)
    splits = {split: SplitFiles(samples, root, "add images to it") for split, samples in parts.items()}
    no_test = f"folder: {root} has no test split; the val split is used for testing"
    return Layout(classes, splits, no_test, notices)


class Folder(FileDataset):
    """Your own data: images and single-channel (or colour) masks with matching stems."""

    name: ClassVar[str] = "folder"
    aliases: ClassVar[tuple[str, ...]] = ("custom",)
    description: ClassVar[str] = "your own images/ and masks/ (split folders, list files or a seeded split)"
    requires_path: ClassVar[bool] = True

    @classmethod
    def load(cls, config: DataConfig) -> Splits:
        """Find the layout (see the module docstring), read the class file, check the files."""
        return load_file_splits(cls, config, FolderOptions, _find)
