"""segal_label_studio: ``--oracle label-studio`` (alias ``label_studio``), annotators in
a Label Studio server.

Each round's queries become tasks of a Label Studio project whose labelling config
SegAL generates from the dataset's classes and colours (brush and polygon labels); the
model's prediction is imported as a pre-annotation, so annotators correct rather than
draw. ``segal run --resume`` exports the finished annotations and turns brushes and
polygons into class-id masks. Options (``--oracle-opt``): ``url``, ``token``,
``project``, ``prelabel``, ``timeout``, ``accept_partial``; see
:class:`LabelStudioOracle` and docs/annotation.md.

Talks to the server over its REST API with the standard library only, so nothing
beyond SegAL needs installing; importing this module imports neither torch nor numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from segal_core import hookimpl
from segal_core.lazy import lazy_exports

__all__ = ["LabelStudioOracle", "segal_register_oracles"]
__getattr__, __dir__ = lazy_exports(__name__, {"LabelStudioOracle": "oracle"})


@hookimpl
def segal_register_oracles() -> Sequence[type]:
    """The Label Studio oracle."""
    from .oracle import LabelStudioOracle

    return [LabelStudioOracle]


if TYPE_CHECKING:
    from .oracle import LabelStudioOracle
