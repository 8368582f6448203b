"""``--dataset voc``: PASCAL VOC 2012 segmentation (21 classes, border ignored)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from segal_core import hookimpl
from segal_core.lazy import lazy_exports

_EXPORTS = {
    "VOC": "dataset",
    "VOC_CLASSES": "dataset",
    "VOCOptions": "dataset",
    "voc_palette": "dataset",
}
__all__ = ["VOC", "VOC_CLASSES", "VOCOptions", "segal_register_datasets", "voc_palette"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


@hookimpl
def segal_register_datasets() -> Sequence[type]:
    from .dataset import VOC

    return [VOC]


if TYPE_CHECKING:
    from .dataset import VOC, VOC_CLASSES, VOCOptions, voc_palette
