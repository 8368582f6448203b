"""``--dataset synthetic``: procedural scenes generated in memory (the default dataset).

Needs no files and no network; deterministic per seed. Options (``--dataset-opt``):
see :class:`SyntheticOptions`.
"""

from __future__ import annotations

from collections.abc import Sequence

from segal_core import hookimpl

from .dataset import Synthetic, SyntheticOptions
from .scenes import CLASSES, make_scene

__all__ = ["CLASSES", "Synthetic", "SyntheticOptions", "make_scene", "segal_register_datasets"]


@hookimpl
def segal_register_datasets() -> Sequence[type]:
    return [Synthetic]
