"""Small pictures of one sample: frame, per-pixel score map, class masks (bytes of a
JPEG or PNG, a few KB each)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from segal_core.colors import IGNORE_RGB, class_colors, colormap

__all__ = [
    "MAX_SIDE",
    "class_pixels",
    "frame_jpeg",
    "mask_png",
    "regions_jpeg",
    "score_map_jpeg",
    "shrink_scores",
    "thumb_size",
]

#: The longest side of a thumbnail, in pixels.
MAX_SIDE = 96
JPEG_QUALITY = 85


def thumb_size(height: int, width: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """``(height, width)`` scaled so that the longer side is at most ``max_side``."""
    scale = min(1.0, max_side / max(height, width, 1))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _rgb(image: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` uint8 or float in 0..1 -> ``[H, W, 3]`` uint8."""
    image = image.detach().cpu()
    if image.is_floating_point():
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return image.permute(1, 2, 0).contiguous().numpy()


def _encode(picture: Image.Image, kind: str) -> bytes:
    buf = io.BytesIO()
    if kind == "jpeg":
        picture.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        picture.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def frame_jpeg(image: torch.Tensor, size: tuple[int, int]) -> bytes:
    """The frame, shrunk to ``size`` (height, width), as a JPEG."""
    picture = Image.fromarray(_rgb(image)).resize((size[1], size[0]), Image.Resampling.BOX)
    return _encode(picture, "jpeg")


def _nearest(mask: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``mask`` ``[H, W]`` sampled at the centres of a ``size`` grid (no blending of
    class ids)."""
    height, width = mask.shape[-2:]
    rows = ((torch.arange(size[0]) + 0.5) * height / size[0]).long().clamp(max=height - 1)
    cols = ((torch.arange(size[1]) + 0.5) * width / size[1]).long().clamp(max=width - 1)
    return mask.detach().cpu()[rows][:, cols].numpy()


def mask_png(mask: torch.Tensor, size: tuple[int, int], num_classes: int, ignore_index: int) -> bytes:
    """A class mask (prediction or label) in the class colours, ``ignore_index`` (and
    anything outside the classes) black, shrunk to ``size`` without blending."""
    small = _nearest(mask, size).astype(np.int64)
    lut = np.array([*class_colors(num_classes), IGNORE_RGB], dtype=np.uint8)
    index = np.where((small >= 0) & (small < num_classes) & (small != ignore_index), small, num_classes)
    return _encode(Image.fromarray(lut[index]), "png")


def shrink_scores(pixels: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Per-pixel scores ``[H, W]`` averaged down to ``size`` (float32; non-finite
    pixels count as the lowest finite score)."""
    values = pixels.detach().float()
    finite = torch.isfinite(values)
    floor = values[finite].min() if bool(finite.any()) else values.new_zeros(())
    values = torch.where(finite, values, floor)
    small = torch.nn.functional.interpolate(values[None, None], size=size, mode="area")[0, 0]
    return small.cpu().numpy().astype(np.float32)


def score_map_jpeg(small: np.ndarray, low: float, high: float) -> bytes:
    """A shrunk score map in the ``inferno`` colours, ``low`` black to ``high``
    yellow-white (one scale for a whole round, so maps compare), as a JPEG (a PNG of
    a noisy map is several times larger)."""
    span = high - low if math.isfinite(high - low) and high > low else 1.0
    levels = np.clip(np.round((small - low) / span * 255), 0, 255).astype(np.int64)
    lut = np.array(colormap("inferno"), dtype=np.uint8)
    return _encode(Image.fromarray(lut[levels]), "jpeg")


def regions_jpeg(image: torch.Tensor, labelled: torch.Tensor, size: tuple[int, int]) -> bytes:
    """The frame with the labelled area kept and the rest darkened, its outline in
    white: what a region query asked the annotator for."""
    rgb = _rgb(image).astype(np.float32)
    inside = labelled.detach().cpu().numpy().astype(bool)
    rgb[~inside] *= 0.3
    picture = Image.fromarray(rgb.round().astype(np.uint8)).resize((size[1], size[0]), Image.Resampling.BOX)
    small = _nearest(labelled.to(torch.uint8), size).astype(bool)
    edge = np.zeros_like(small)
    edge[:-1] |= small[:-1] != small[1:]
    edge[1:] |= small[:-1] != small[1:]
    edge[:, :-1] |= small[:, :-1] != small[:, 1:]
    edge[:, 1:] |= small[:, :-1] != small[:, 1:]
    out = np.array(picture)
    out[edge & small] = 255
    return _encode(Image.fromarray(out), "jpeg")


def class_pixels(mask: torch.Tensor, classes: Sequence[str], ignore_index: int) -> dict[str, int]:
    """Labelled pixels per class name (full resolution; ``ignore_index`` and values
    outside the classes not counted)."""
    flat = mask.detach().reshape(-1).to(torch.int64)
    keep = (flat >= 0) & (flat < len(classes)) & (flat != ignore_index)
    counts = torch.bincount(flat[keep], minlength=len(classes)).cpu().tolist()
    return {name: int(n) for name, n in zip(classes, counts)}
