"""segal_oracle: who labels the queried samples (``--oracle``).

``ground_truth`` (aliases ``ground-truth``, ``gt``; the default) answers with the
dataset's own masks, which simulates a perfect annotator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from segal_core import hookimpl
from segal_core.lazy import lazy_exports

__all__ = ["GroundTruthOracle", "segal_register_oracles"]
__getattr__, __dir__ = lazy_exports(__name__, {"GroundTruthOracle": "ground_truth"})


@hookimpl
def segal_register_oracles() -> Sequence[type]:
    """The ground-truth oracle."""
    from .ground_truth import GroundTruthOracle

    return [GroundTruthOracle]


if TYPE_CHECKING:
    from .ground_truth import GroundTruthOracle
