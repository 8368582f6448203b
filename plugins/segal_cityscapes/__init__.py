"""``--dataset cityscapes``: Cityscapes in its official layout (gtFine, 19 classes)."""

from __future__ import annotations

from collections.abc import Sequence

from segal_core import hookimpl

from .dataset import Cityscapes, CityscapesOptions
from .labels import LABEL_NAMES, LABEL_TO_TRAIN, TRAIN_CLASSES

__all__ = [
    "LABEL_NAMES",
    "LABEL_TO_TRAIN",
    "TRAIN_CLASSES",
    "Cityscapes",
    "CityscapesOptions",
    "segal_register_datasets",
]


@hookimpl
def segal_register_datasets() -> Sequence[type]:
    return [Cityscapes]
