"""segal_oracle: who labels the queried samples (``--oracle``).

``ground_truth`` (aliases ``ground-truth``, ``gt``; the default) answers with the
dataset's own masks, which simulates a perfect annotator. ``folder`` waits for a
person: it writes the queried frames under ``RUN/queries/round-NNN/`` and collects the
PNG masks saved beside them on ``segal run --resume`` (see ``docs/annotation.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from segal_core import hookimpl
from segal_core.lazy import lazy_exports

__all__ = ["FolderOracle", "GroundTruthOracle", "segal_register_oracles"]
__getattr__, __dir__ = lazy_exports(__name__, {"FolderOracle": "folder", "GroundTruthOracle": "ground_truth"})


@hookimpl
def segal_register_oracles() -> Sequence[type]:
    """The ground-truth oracle and the folder oracle."""
    from .folder import FolderOracle
    from .ground_truth import GroundTruthOracle

    return [GroundTruthOracle, FolderOracle]


if TYPE_CHECKING:
    from .folder import FolderOracle
    from .ground_truth import GroundTruthOracle
