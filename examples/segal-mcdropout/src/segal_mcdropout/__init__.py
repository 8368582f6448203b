"""segal-mcdropout: a SegAL plugin adding the ``bald`` query strategy (MC dropout,
BALD mutual information per pixel) and a ``bald-rounds.csv`` in the run folder.

Installed, it is found through its entry point in the ``segal`` group::

    pip install segal-mcdropout
    segal run --strategy bald --strategy-opt passes=16 --strategy-opt p=0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from segal_core import hookimpl

from .bald import PassAccumulator, bald
from .rounds_csv import FILE_NAME, write_rounds_csv
from .strategy import BALD

if TYPE_CHECKING:
    from segal_core import Run

__all__ = ["BALD", "FILE_NAME", "PassAccumulator", "bald", "segal_register_strategies", "segal_round_end"]

__version__ = "0.1.0"


@hookimpl
def segal_register_strategies() -> Sequence[type]:
    """The ``bald`` strategy."""
    return [BALD]


@hookimpl
def segal_round_end(run: Run, record: dict[str, Any]) -> None:
    """In runs that query with ``bald``: rewrite ``bald-rounds.csv`` in the run folder
    with one row per completed round."""
    if not isinstance(run.strategy, BALD):
        return
    earlier = [r for r in run.history if r["round"] < record["round"]]
    write_rounds_csv(run.out / FILE_NAME, [*earlier, record])
