"""``--dataset folder`` (alias ``custom``): your own images and masks.

See :mod:`segal_folder.dataset` for the layouts and :mod:`segal_folder.classes` for
the class file.
"""

from __future__ import annotations

from collections.abc import Sequence

from segal_core import hookimpl

from .classes import ClassSpec, read_classes
from .dataset import Folder, FolderOptions

__all__ = ["ClassSpec", "Folder", "FolderOptions", "read_classes", "segal_register_datasets"]


@hookimpl
def segal_register_datasets() -> Sequence[type]:
    return [Folder]
