"""segal_units: the built-in query units (``--query-unit``).

``image`` (whole images, the default), ``patch`` (a square grid, ``--unit-opt
size=32``) and ``superpixel`` (SLIC from scikit-image, ``--unit-opt segments=100
--unit-opt compactness=10``). A third-party package registers its own unit the same
way, through ``segal_register_units``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from segal_core import hookimpl
from segal_core.lazy import lazy_exports

_EXPORTS = {"ImageUnit": "units", "PatchUnit": "units", "SuperpixelUnit": "units"}
__all__ = sorted([*_EXPORTS, "segal_register_units"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


@hookimpl
def segal_register_units() -> Sequence[type]:
    """The whole image, square patches and SLIC superpixels."""
    from .units import ImageUnit, PatchUnit, SuperpixelUnit

    return [ImageUnit, PatchUnit, SuperpixelUnit]


if TYPE_CHECKING:
    from .units import ImageUnit, PatchUnit, SuperpixelUnit
