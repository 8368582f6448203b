"""segal_thumbnails: small pictures of each round's queried samples, kept in the run
folder for ``segal report`` (and the trackers).

After selection, for the ``k`` queried samples only (never the pool): the frame, the
strategy's own per-pixel uncertainty map (for an ``UncertaintyStrategy``), the
model's prediction and, once the oracle answered, the label, each a few KB, under
``DIR/thumbnails/round-NNN/`` with an ``index.json`` (ids, scores, per-class pixel
counts of the labels). ``DIR/thumbnails/seed.json`` holds the seed set's per-class
pixel counts. Format: ``docs/run-directory.md``.

``segal run --no-thumbnails`` or ``segal -p no:segal_thumbnails`` turns it off. This
module imports no torch (``segal --help`` stays fast); the work is in
:mod:`segal_thumbnails.store`, imported inside the hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from segal_core import hookimpl

if TYPE_CHECKING:
    from segal_core import Annotation, Run

__all__ = ["OPTION", "enabled", "segal_after_label", "segal_after_query", "segal_cli_options", "segal_run_start"]

#: The key of ``--no-thumbnails`` in ``RunConfig.plugin_options``.
OPTION = "no_thumbnails"


def enabled(run: Run) -> bool:
    """Whether this run keeps thumbnails (``plugin_options["no_thumbnails"]`` unset)."""
    return not run.config.plugin_options.get(OPTION, False)


@hookimpl
def segal_cli_options() -> Sequence[click.Option]:
    """``--no-thumbnails``."""
    return [
        click.Option(
            ["--no-thumbnails", OPTION],
            is_flag=True,
            default=False,
            help="Keep no thumbnails of the queried samples (DIR/thumbnails/; used by segal report). [segal_thumbnails]",
        )
    ]


@hookimpl
def segal_run_start(run: Run) -> None:
    """Count the seed set's labelled pixels per class (once; a resumed run keeps it)."""
    if enabled(run):
        from .store import write_seed

        write_seed(run)


@hookimpl
def segal_after_query(run: Run, round: int, queried: Sequence[str], scores: Sequence[float]) -> None:  # noqa: A002
    """Frame, uncertainty map and prediction of each queried sample."""
    if enabled(run) and queried:
        from .store import write_round

        write_round(run, round, queried, scores)


@hookimpl
def segal_after_label(run: Run, round: int, annotations: Sequence[Annotation]) -> None:  # noqa: A002
    """The label each queried sample received, and its pixels per class."""
    if enabled(run) and annotations:
        from .store import write_labels

        write_labels(run, round, annotations)
