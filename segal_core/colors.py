"""Colours shared by the thumbnails and the HTML report: one colour per class, and
256-entry colour maps for scores (uncertainty maps, IoU heat maps)."""

from __future__ import annotations

import colorsys
from functools import lru_cache

__all__ = ["IGNORE_RGB", "class_colors", "colormap", "hex_color", "lut_color"]

#: Pixels with the ignore index (unlabelled): black.
IGNORE_RGB = (0, 0, 0)

# Twelve well-separated colours for the first classes; more classes get hues spread
# by the golden angle.
_FIRST = (
    (78, 121, 167), (242, 142, 43), (225, 87, 89), (118, 183, 178), (89, 161, 79), (237, 201, 72),
    (176, 122, 161), (255, 157, 167), (156, 117, 95), (186, 176, 172), (31, 119, 180), (188, 189, 34),
)


def class_colors(count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct RGB colours, the same for the same class index everywhere."""
    colours = list(_FIRST[:count])
    for n in range(len(colours), count):
        hue = (n * 0.618034) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.55 + 0.3 * (n % 2), 0.9 - 0.25 * (n % 3 == 0))
        colours.append((round(255 * r), round(255 * g), round(255 * b)))
    return colours


def hex_color(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


@lru_cache(maxsize=4)
def colormap(name: str = "inferno") -> tuple[tuple[int, int, int], ...]:
    """A matplotlib colour map as 256 RGB triples (low -> high)."""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return tuple(tuple(round(255 * c) for c in cmap(i / 255)[:3]) for i in range(256))  # type: ignore[misc]


def lut_color(value: float, name: str = "viridis") -> tuple[int, int, int]:
    """The colour of ``value`` in 0..1 (clipped) on colour map ``name``."""
    return colormap(name)[min(255, max(0, round(255 * value)))]
