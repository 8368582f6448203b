"""Polygons to pixels: one documented rule, our own scanline implementation.

Label Studio stores a polygon's points in percent of the original image size. A point
``(px, py)`` is at ``(px / 100 * width, py / 100 * height)`` in pixel units, where the
image covers ``[0, width] x [0, height]`` and pixel ``(row j, column i)`` is the unit
square with its centre at ``(i + 0.5, j + 0.5)``.

**The rule:** a pixel belongs to the polygon when its centre is inside it by the
even-odd rule. A centre exactly on an edge counts as inside for a left or top edge and
outside for a right or bottom edge (half-open spans), so two polygons sharing an edge
never both claim a pixel and a rectangle from ``(x0, y0)`` to ``(x1, y1)`` on whole
pixel coordinates covers exactly columns ``x0..x1-1`` and rows ``y0..y1-1``. The
polygon is closed (last point back to the first) whether or not it was marked closed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["fill_polygon", "percent_to_pixels"]


def percent_to_pixels(points: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """``[[x%, y%], ...]`` -> ``[N, 2]`` float64 pixel coordinates ``(x, y)``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts * np.array([width / 100.0, height / 100.0])


def fill_polygon(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """The bool ``[height, width]`` mask of the pixels whose centres lie inside the
    polygon ``points`` (``[N, 2]`` pixel coordinates ``(x, y)``), by the rule above."""
    mask = np.zeros((height, width), dtype=bool)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3 or not np.isfinite(pts).all():
        return mask
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    keep = y0 != y1  # horizontal edges cross no row of centres
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    if x0.size == 0:
        return mask
    top, bottom = np.minimum(y0, y1), np.maximum(y0, y1)
    first = max(0, int(np.floor(top.min() - 0.5)))
    last = min(height - 1, int(np.ceil(bottom.max() - 0.5)))
    centres_x = np.arange(width, dtype=np.float64) + 0.5
    for row in range(first, last + 1):
        yc = row + 0.5
        # an edge crosses the row when the centre line is in [top, bottom): a vertex
        # on the line is counted once, by the edge that starts there going down
        hit = (top <= yc) & (yc < bottom)
        if not hit.any():
            continue
        t = (yc - y0[hit]) / (y1[hit] - y0[hit])
        xs = np.sort(x0[hit] + t * (x1[hit] - x0[hit]))
        for left, right in zip(xs[0::2], xs[1::2]):
            mask[row] |= (centres_x >= left) & (centres_x < right)
    return mask
