"""segal-mcdropout: a SegAL plugin adding the ``mc_entropy`` query strategy (the
entropy of the mean prediction over MC-dropout passes) and an ``mc-rounds.csv`` in the
run folder.

Installed, it is found through its entry point in the ``segal`` group::

    pip install segal-mcdropout
    segal run --strategy mc_entropy --strategy-opt passes=16 --model-opt dropout=0.2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from segal_core import hookimpl

from .rounds_csv import FILE_NAME, write_rounds_csv
from .strategy import MCEntropy, MeanProbs, predictive_entropy

if TYPE_CHECKING:
    from segal_core import Run

__all__ = [
    "FILE_NAME",
    "MCEntropy",
    "MeanProbs",
    "predictive_entropy",
    "segal_register_strategies",
    "segal_round_end",
]

__version__ = "0.2.0"


@hookimpl
def segal_register_strategies() -> Sequence[type]:
    """The ``mc_entropy`` strategy."""
    return [MCEntropy]


@hookimpl
def segal_round_end(run: Run, record: dict[str, Any]) -> None:
    """In runs that query with ``mc_entropy``: rewrite ``mc-rounds.csv`` in the run
    folder with one row per completed round."""
    if not isinstance(run.strategy, MCEntropy):
        return
    earlier = [r for r in run.history if r["round"] < record["round"]]
    write_rounds_csv(run.out / FILE_NAME, [*earlier, record])
