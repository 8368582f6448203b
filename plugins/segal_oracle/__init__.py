"""segal_oracle: who labels the queried samples (``--oracle``).

``ground_truth`` (aliases ``ground-truth``, ``gt``; the default) answers with the
dataset's own masks, which simulates a perfect annotator.
"""

from __future__ import annotations

from collections.abc import Sequence

from segal_core import hookimpl

from .ground_truth import GroundTruthOracle

__all__ = ["GroundTruthOracle", "segal_register_oracles"]


@hookimpl
def segal_register_oracles() -> Sequence[type]:
    """The ground-truth oracle."""
    return [GroundTruthOracle]
