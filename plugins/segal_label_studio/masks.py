"""Label Studio annotations to class-id masks, and predictions to pre-annotations.

The rules (also in docs/annotation.md):

- A result is a brush (``brushlabels``, an RLE of an RGBA image of the original size:
  a pixel is labelled where its alpha is 128 or more) or a polygon (``polygonlabels``,
  filled by :mod:`segal_label_studio.raster`'s pixel-centre rule).
- Results are painted in the order the annotation lists them; where two overlap, the
  later one wins. Pixels no result covers are ``ignore_index``.
- A result of another type (a rectangle, a keypoint), a label that is not a class,
  several labels on one region or a result drawn on an image of another size makes
  the whole annotation unusable (one rejected line), rather than a silently partial
  mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .raster import fill_polygon, percent_to_pixels
from .rle import RLEError, decode_alpha, encode_mask

__all__ = ["LabelError", "annotation_mask", "latest_annotation", "prediction_results"]

#: Result types that carry no pixels and are skipped (links between regions, text).
_NO_PIXELS = {"relation", "textarea", "choices", "rating", "number", "datetime", "taxonomy"}
#: A brush pixel counts where its alpha is at least this.
ALPHA_THRESHOLD = 128


class LabelError(ValueError):
    """An annotation that cannot become a mask (the reason, in words)."""


def latest_annotation(annotations: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recently updated annotation that was not cancelled (skipped), or
    ``None``; ties go to the higher id."""
    done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not done:
        return None
    return max(done, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), int(a.get("id") or 0)))


def annotation_mask(
    results: Sequence[dict[str, Any]], classes: Sequence[str], height: int, width: int, ignore_index: int
) -> np.ndarray:
    """The int64 ``[height, width]`` class-id mask of an annotation's ``result`` list.

    :raises LabelError: a result SegAL cannot read (see the module's rules).
    """
    index = {str(name): i for i, name in enumerate(classes)}
    mask = np.full((height, width), ignore_index, dtype=np.int64)
    for n, result in enumerate(results):
        if not isinstance(result, dict):
            raise LabelError(f"result {n} is not an object")
        kind = str(result.get("type", "")).lower()
        if kind in _NO_PIXELS:
            continue
        if kind not in ("brushlabels", "polygonlabels"):
            raise LabelError(f"a {kind or 'untyped'} result; SegAL reads brush and polygon labels only: "
                             "redraw it with the brush or as a polygon")
        value = result.get("value") or {}
        labels = value.get(kind)
        if not isinstance(labels, list) or len(labels) != 1:
            raise LabelError(f"a {kind} region with {len(labels) if isinstance(labels, list) else 'no'} labels; "
                             "give each region exactly one class")
        label = str(labels[0])
        if label not in index:
            raise LabelError(f"the label {label!r} is not one of the classes ({', '.join(map(str, classes))})")
        size = (result.get("original_width"), result.get("original_height"))
        if None not in size and (int(size[0]), int(size[1])) != (width, height):
            raise LabelError(f"drawn on a {size[0]}x{size[1]} image (WxH), the frame is {width}x{height}")
        if kind == "brushlabels":
            if str(value.get("format", "rle")) != "rle" or "rle" not in value:
                raise LabelError("a brush region without an rle")
            try:
                pixels = decode_alpha(value["rle"], height, width) >= ALPHA_THRESHOLD
            except RLEError as exc:
                raise LabelError(f"a brush region's rle cannot be read: {exc}") from None
        else:
            points = value.get("points")
            try:
                xy = percent_to_pixels(points, height, width)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise LabelError("a polygon whose points are not [x%, y%] pairs") from None
            pixels = fill_polygon(xy, height, width)
        mask[pixels] = index[label]
    return mask


def prediction_results(
    prediction: np.ndarray, classes: Sequence[str], brush: str, image: str
) -> list[dict[str, Any]]:
    """Brush results (one per class present) drawing the class-id ``prediction``
    ``[H, W]``, for a task's pre-annotation."""
    height, width = prediction.shape
    out: list[dict[str, Any]] = []
    for cls in np.unique(prediction).tolist():
        if not 0 <= cls < len(classes):
            continue
        out.append({
            "id": f"segal{cls}", "from_name": brush, "to_name": image, "type": "brushlabels",
            "original_width": int(width), "original_height": int(height), "image_rotation": 0,
            "value": {"format": "rle", "rle": encode_mask(prediction == cls), "brushlabels": [str(classes[cls])]},
        })
    return out
