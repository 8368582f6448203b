"""The dataset over files: :class:`FileDataset` (one split of ``(id, image, mask)``
files) and the load-time checks :func:`check_headers` (headers only) and
:func:`verify_masks` (every mask decoded once).

Decoding costs about 4 ns per pixel (about 1.5 s for all of CamVid); ``verify="auto"``
decodes at load when a split holds at most :data:`AUTO_VERIFY_PIXELS` mask pixels;
otherwise values are checked as each mask is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from segal_core import DEFAULT_IGNORE_INDEX, Dataset, SegalError

from .images import check_image_mode, check_mask_mode, output_size, read_header, read_image, read_mask
from .labels import ColorMap, LabelMap
from .layout import Sample

__all__ = ["AUTO_VERIFY_PIXELS", "VERIFY_MODES", "FileDataset", "check_headers", "verify_masks"]

#: ``verify="auto"`` decodes every mask at load up to this many pixels per split.
AUTO_VERIFY_PIXELS = 600_000_000
#: Accepted values of the ``verify`` dataset option.
VERIFY_MODES = ("auto", "full", "header")


def check_headers(samples: Sequence[Sample], *, colour_masks: bool = False) -> list[tuple[int, int]]:
    """Cheap check of every pair from the file headers (no pixel is decoded): both
    files are images of modes that can be read, the mask is stored losslessly, has its
    image's size and (unless ``colour_masks``) one channel. A sample without a mask
    (``mask=None``, a pool frame) has its image checked only.

    :returns: each image's ``(height, width)``, in sample order.
    :raises SegalError: naming the first file at fault.
    """
    sizes: list[tuple[int, int]] = []
    for sample in samples:
        image_mode, image_size = read_header(sample.image, "image")
        check_image_mode(image_mode, sample.image)
        sizes.append(image_size)
        if sample.mask is None:
            continue
        mode, mask_size = read_header(sample.mask, "mask")
        if mask_size != image_size:
            raise SegalError(
                f"{sample.mask}: mask is {mask_size[1]}x{mask_size[0]} (WxH) but its image "
                f"{sample.image.name} is {image_size[1]}x{image_size[0]}; masks must match their images"
            )
        check_mask_mode(mode, sample.mask, colour_masks)
    return sizes


class FileDataset(Dataset):
    """One split of ``(id, image file, mask file)`` samples.

    Subclasses give ``name`` and implement :meth:`~segal_core.Dataset.load`, usually
    by calling :func:`~segal_files.load_file_splits` with their layout.

    :param samples: the split's samples, in item order; ``ids`` are their ids.
    :param classes: class names, index = class id.
    :param split: ``"train"``, ``"val"`` or ``"test"``.
    :param labels: stored mask value -> class id; default: ids stored as themselves,
        ``ignore_index`` ignored.
    :param colors: colour -> class id, for colour masks.
    :param ignore_index: the ignore value of the returned masks.
    :param resize: read every item at this ``(height, width)``.
    :param scale: read every item at its size times ``scale`` (ignored with ``resize``).
    :param sizes: each sample's stored ``(height, width)`` (from :func:`check_headers`),
        so that ``scale`` needs no header read per item.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str],
        *,
        split: str,
        labels: LabelMap | None = None,
        colors: ColorMap | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        resize: tuple[int, int] | None = None,
        scale: float | None = None,
        sizes: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        if sizes is not None and len(sizes) != len(samples):
            raise ValueError(f"{len(sizes)} sizes for {len(samples)} samples")
        self.samples = list(samples)
        self.sizes = list(sizes) if sizes is not None else None
        self.ids = [s.id for s in self.samples]
        self.classes = list(classes)
        self.split = split
        self.ignore_index = ignore_index
        self.labels = labels or LabelMap.identity(len(self.classes), ignore_index=ignore_index)
        self.colors = colors
        self.resize = resize
        self.scale = scale

    def _size(self, index: int) -> tuple[int, int] | None:
        if self.resize is not None:
            return self.resize
        if self.scale is None or self.scale == 1.0:
            return None
        if self.sizes is not None:
            size = self.sizes[index]
        else:
            _, size = read_header(self.samples[index].image)
        return output_size(size, scale=self.scale)

    def image(self, index: int) -> torch.Tensor:
        return read_image(self.samples[index].image, self._size(index))

    def image_size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` as read: from the header (or the resize), no decoding."""
        size = self._size(index)
        if size is not None:
            return size
        if self.sizes is not None:
            return self.sizes[index]
        return read_header(self.samples[index].image)[1]

    def has_mask(self, index: int) -> bool:
        """Whether item ``index`` has a mask file (a pool frame may have none)."""
        return self.samples[index].mask is not None

    def _mask_path(self, index: int) -> Path:
        path = self.samples[index].mask
        if path is None:
            raise SegalError(
                f"{self.samples[index].image}: this {self.split} image has no mask; label it "
                "(--oracle folder) or add its mask"
            )
        return path

    def raw_mask(self, index: int) -> np.ndarray:
        """The stored values of item ``index``'s mask (colours already mapped).

        :raises SegalError: the item has no mask, naming its image.
        """
        return read_mask(self._mask_path(index), self._size(index), self.colors)

    def mask(self, index: int) -> torch.Tensor:
        return self.labels.apply(self.raw_mask(index), self._mask_path(index))


def verify_masks(dataset: FileDataset, mode: str, sizes: Sequence[tuple[int, int]], flag: str) -> bool:
    """Check every mask's values at load according to ``mode`` (see
    :data:`VERIFY_MODES`): ``"full"`` always, ``"auto"`` when the split holds at most
    :data:`AUTO_VERIFY_PIXELS` pixels, ``"header"`` never (values are still checked as
    each mask is read).

    :param sizes: the stored ``(height, width)`` of each sample, from :func:`check_headers`.
    :param flag: the option that chose ``mode``, for the error message.
    :returns: whether the masks were decoded and checked.
    :raises SegalError: an unknown mode, or a mask value outside the classes.
    """
    if mode not in VERIFY_MODES:
        raise SegalError(f"{flag}={mode!r}: expected one of {', '.join(VERIFY_MODES)}")
    pixels = sum(h * w for h, w in sizes)
    if mode == "header" or (mode == "auto" and pixels > AUTO_VERIFY_PIXELS):
        return False
    for sample in dataset.samples:
        if sample.mask is None:
            continue
        raw = read_mask(sample.mask, None, dataset.colors)
        dataset.labels.check(raw, sample.mask)
    return True
