"""Procedural scenes: a textured, noisy image and its mask, from one random generator.

Five classes of very different sizes and frequencies, so that a small model has
something to learn and uncertainty sampling something to find:

====  ==========  =======================================  ==========================
id    name        shape                                     texture
====  ==========  =======================================  ==========================
0     background  everything else (about half the pixels)  smooth colour blotches
1     field       one or two large blobs (~30%)             horizontal stripes
2     block       1-3 rectangles, 1/8 to 1/4 of the side    fine checkerboard
3     pole        0-3 thin vertical bars                    dark, vertical gradient
4     gem         small discs in ~1 image of 4 (~0.3%)      smooth, block-like colour
====  ==========  =======================================  ==========================

Class mean colours overlap (field ~ background, gem ~ block) and each image gets a
random colour cast, gain and Gaussian noise, so a pixel's colour alone does not give
its class: the texture around it does.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLASSES", "make_scene", "smooth_noise"]

#: Class names, index = class id.
CLASSES: tuple[str, ...] = ("background", "field", "block", "pole", "gem")

_BASE = {  # mean RGB colour of each class before the per-image cast
    0: (105.0, 112.0, 100.0),
    1: (118.0, 122.0, 92.0),
    2: (150.0, 102.0, 92.0),
    3: (78.0, 82.0, 104.0),
    4: (158.0, 100.0, 100.0),
}


def smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth noise ``[channels, size, size]`` of unit scale: a ``cells x cells``
    random grid, interpolated bilinearly with a smoothstep."""
    grid = rng.standard_normal((channels, cells + 1, cells + 1))
    pos = np.linspace(0.0, cells, size, endpoint=False)
    i0 = pos.astype(np.int64)
    f = pos - i0
    f = f * f * (3.0 - 2.0 * f)
    rows = grid[:, i0, :] * (1.0 - f)[None, :, None] + grid[:, i0 + 1, :] * f[None, :, None]
    return rows[:, :, i0] * (1.0 - f)[None, None, :] + rows[:, :, i0 + 1] * f[None, None, :]


def _layout(rng: np.random.Generator, size: int, rare_rate: float) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.int64)
    yy, xx = np.mgrid[0:size, 0:size]

    # field: large blobs thresholded from low-frequency noise
    blobs = smooth_noise(rng, size, cells=3)[0]
    cover = rng.uniform(0.15, 0.45)
    mask[blobs > np.quantile(blobs, 1.0 - cover)] = 1

    # blocks: medium rectangles
    for _ in range(int(rng.integers(1, 4))):
        h, w = rng.integers(max(2, size // 8), max(3, size // 4) + 1, size=2)
        y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        mask[y : y + h, x : x + w] = 2

    # poles: thin vertical bars
    for _ in range(int(rng.integers(0, 4))):
        w = int(rng.integers(1, max(2, size // 24) + 1))
        h = int(rng.integers(size // 4, size // 2 + 1))
        y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        mask[y : y + h, x : x + w] = 3

    # gems: rare small discs
    if rng.random() < rare_rate:
        for _ in range(int(rng.integers(1, 3))):
            r = rng.uniform(max(1.5, size / 32), max(2.0, size / 16))
            cy, cx = rng.uniform(r, size - r, size=2)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 4
    return mask


def _texture(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    size = mask.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = np.zeros((3, size, size), dtype=np.float64)
    for cls, rgb in _BASE.items():
        image[:, mask == cls] = np.asarray(rgb)[:, None]

    blotches = smooth_noise(rng, size, cells=max(2, size // 12), channels=3) * 22.0
    image += np.where(mask == 0, 1.0, 0.35)[None] * blotches
    phase = rng.uniform(0, 2 * np.pi)
    stripes = 26.0 * np.sin(2 * np.pi * yy / 5.0 + phase)
    image += np.where(mask == 1, stripes, 0.0)[None]
    checker = 24.0 * (((yy.astype(np.int64) // 2 + xx.astype(np.int64) // 2) % 2) * 2 - 1)
    image += np.where(mask == 2, checker, 0.0)[None]
    gradient = 18.0 * (yy / size - 0.5)
    image += np.where(mask == 3, gradient, 0.0)[None]
    return image


def make_scene(
    rng: np.random.Generator, size: int, *, noise: float = 14.0, rare_rate: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(image uint8 [3, size, size], mask int64 [size, size])``.

    :param rng: the only source of randomness; the same state gives the same scene.
    :param size: image side in pixels.
    :param noise: standard deviation of the per-pixel Gaussian noise (0..255 scale).
    :param rare_rate: chance that an image holds the rare class ``gem``.
    """
    mask = _layout(rng, size, rare_rate)
    image = _texture(rng, mask)
    cast = rng.normal(0.0, 12.0, size=3)[:, None, None]
    gain = rng.uniform(0.85, 1.15)
    image = (image - 115.0) * gain + 115.0 + cast
    image += rng.normal(0.0, noise, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask
