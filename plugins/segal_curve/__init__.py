"""segal_curve: draws ``curve.png`` (mIoU against labelled fraction) in the run folder
after every round. A built-in plugin like any other: ``segal -p no:segal_curve run``
turns it off."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from segal_core import hookimpl

if TYPE_CHECKING:
    from segal_core import Run

__all__ = ["segal_round_end"]


@hookimpl
def segal_round_end(run: Run, record: dict[str, Any]) -> None:
    """Redraw the run's learning curve with the round just committed."""
    from segal_core.report import plot_runs

    x = "pixels" if run.regional else "images"  # region runs: the labelled pixel fraction
    plot_runs([(run.config.strategy, run.history)], run.out / "curve.png", title=str(run.out.name), x=x)
