"""``--dataset synthetic``: procedural scenes generated in memory (the default dataset).

Needs no files and no network; deterministic per seed. Options (``--dataset-opt``):
see :class:`SyntheticOptions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from segal_core import hookimpl
from segal_core.lazy import lazy_exports

_EXPORTS = {"Synthetic": "dataset", "SyntheticOptions": "dataset", "CLASSES": "scenes", "make_scene": "scenes"}
__all__ = sorted([*_EXPORTS, "segal_register_datasets"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


@hookimpl
def segal_register_datasets() -> Sequence[type]:
    from .dataset import Synthetic

    return [Synthetic]


if TYPE_CHECKING:
    from .dataset import Synthetic, SyntheticOptions
    from .scenes import CLASSES, make_scene
