"""``--dataset cityscapes``: Cityscapes in its official layout (gtFine, 19 classes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from segal_core import hookimpl
from segal_core.lazy import lazy_exports

_EXPORTS = {
    "Cityscapes": "dataset",
    "CityscapesOptions": "dataset",
    "LABEL_NAMES": "labels",
    "LABEL_TO_TRAIN": "labels",
    "TRAIN_CLASSES": "labels",
}
__all__ = [
    "LABEL_NAMES",
    "LABEL_TO_TRAIN",
    "TRAIN_CLASSES",
    "Cityscapes",
    "CityscapesOptions",
    "segal_register_datasets",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


@hookimpl
def segal_register_datasets() -> Sequence[type]:
    from .dataset import Cityscapes

    return [Cityscapes]


if TYPE_CHECKING:
    from .dataset import Cityscapes, CityscapesOptions
    from .labels import LABEL_NAMES, LABEL_TO_TRAIN, TRAIN_CLASSES
