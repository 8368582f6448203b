"""``--dataset voc``: PASCAL VOC 2012 segmentation (21 classes, border ignored)."""

from __future__ import annotations

from collections.abc import Sequence

from segal_core import hookimpl

from .dataset import VOC, VOC_CLASSES, VOCOptions, voc_palette

__all__ = ["VOC", "VOC_CLASSES", "VOCOptions", "segal_register_datasets", "voc_palette"]


@hookimpl
def segal_register_datasets() -> Sequence[type]:
    return [VOC]
