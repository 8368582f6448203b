"""The built-in query units: the whole image, square patches, SLIC superpixels."""

from __future__ import annotations

import torch

from segal_core import QueryUnit, SegalError

__all__ = ["ImageUnit", "PatchUnit", "SuperpixelUnit", "patch_grid"]


class ImageUnit(QueryUnit):
    """The whole image is one unit: whole images are queried and labelled."""

    name = "image"
    description = "whole images (the default)"
    whole_image = True

    def __init__(self) -> None:
        pass

    def regions(self, image: torch.Tensor) -> torch.Tensor:
        return torch.zeros(image.shape[-2:], dtype=torch.int64)


def patch_grid(height: int, width: int, size: int) -> torch.Tensor:
    """Region ids of a grid of ``size`` x ``size`` cells over ``height`` x ``width``,
    row by row; cells at the bottom and right border are smaller (no pixel left out)."""
    rows = torch.arange(height) // size
    cols = torch.arange(width) // size
    per_row = -(-width // size)
    return rows[:, None] * per_row + cols[None, :]


class PatchUnit(QueryUnit):
    """Square patches of ``size`` pixels on a grid from the top-left corner.

    :param size: ``--unit-opt size=32``: the side of a patch, in pixels of the image
        as read (after any ``--dataset-opt scale``).
    """

    name = "patch"
    aliases = ("patches",)
    description = "square patches of a grid (--unit-opt size=32)"

    def __init__(self, size: int = 32) -> None:
        if not 1 <= size <= 65536:
            raise SegalError(f"--unit-opt size={size}: must be between 1 and 65536 pixels")
        self.size = int(size)

    def regions(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        return patch_grid(int(height), int(width), self.size)


class SuperpixelUnit(QueryUnit):
    """SLIC superpixels (scikit-image): regions that follow the image's edges.

    Computed from the image alone, deterministically (SLIC has no random start), so
    a resumed run sees the same regions; the cycle caches each map on disk.

    :param segments: ``--unit-opt segments=100``: about how many superpixels per image.
    :param compactness: ``--unit-opt compactness=10``: higher = squarer regions, lower
        = regions that follow colour edges more closely.
    """

    name = "superpixel"
    aliases = ("superpixels", "slic")
    description = "SLIC superpixels from scikit-image (--unit-opt segments=100, compactness=10)"
    cacheable = True

    def __init__(self, segments: int = 100, compactness: float = 10.0) -> None:
        if not 1 <= segments <= 65535:
            raise SegalError(f"--unit-opt segments={segments}: must be between 1 and 65535")
        if not (compactness > 0 and compactness < float("inf")):
            raise SegalError(f"--unit-opt compactness={compactness}: must be a positive number")
        self.segments = int(segments)
        self.compactness = float(compactness)

    def regions(self, image: torch.Tensor) -> torch.Tensor:
        import numpy as np
        from skimage.segmentation import slic

        pixels = image.detach().cpu()
        if not pixels.is_floating_point():
            pixels = pixels.float() / 255.0
        hwc = pixels.clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float64)
        labels = slic(hwc, n_segments=self.segments, compactness=self.compactness, start_label=0,
                      enforce_connectivity=True, channel_axis=-1)
        _, dense = np.unique(labels, return_inverse=True)  # ids 0 .. R-1, each used
        return torch.from_numpy(dense.reshape(labels.shape).astype(np.int64))
