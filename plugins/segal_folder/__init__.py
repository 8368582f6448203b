"""``--dataset folder`` (alias ``custom``): your own images and masks.

See :mod:`segal_folder.dataset` for the layouts and :mod:`segal_folder.classes` for
the class file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from segal_core import hookimpl
from segal_core.lazy import lazy_exports

_EXPORTS = {
    "ClassSpec": "classes",
    "read_classes": "classes",
    "Folder": "dataset",
    "FolderOptions": "dataset",
}
__all__ = ["ClassSpec", "Folder", "FolderOptions", "read_classes", "segal_register_datasets"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


@hookimpl
def segal_register_datasets() -> Sequence[type]:
    from .dataset import Folder

    return [Folder]


if TYPE_CHECKING:
    from .classes import ClassSpec, read_classes
    from .dataset import Folder, FolderOptions
