"""segal_trackers: feed a run to TensorBoard or MLflow (``--tracker tensorboard``,
``--tracker mlflow``, repeatable; settings with ``--tracker-opt KEY=VALUE``).

Built on the lifecycle hooks only, like any third-party plugin: per-epoch loss and
learning rate after each training, per-round mIoU, per-class IoU, labelled fraction
and time per phase when a round is committed, the queried samples' thumbnails (kept
by ``segal_thumbnails``) as images, and for MLflow the run's settings as parameters
and the HTML report as an artifact at the end. Each hook opens what it writes to and
closes it again, so the plugin holds no state between hooks; what must last (MLflow's
run id, the rounds logged) is in ``DIR/trackers.json``, so a resumed run goes on in
the same MLflow run and logs any committed round that was not logged yet.

This module imports neither torch nor a tracker package; a tracker whose package is
missing is one line naming the extra to install (``pip install 'segal[mlflow]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from segal_core import hookimpl

from .options import KEYS, TRACKERS, TrackerSettings, check_installed, settings_from

if TYPE_CHECKING:
    from segal_core import Run

    from .base import Tracker

__all__ = ["segal_after_train", "segal_cli_options", "segal_round_end", "segal_run_end", "segal_run_start"]


def _check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """``--tracker`` and ``--tracker-opt``, checked while the command line is read
    (before any work): known names whose package is installed, known keys of the
    trackers given. Whichever of the two click reads second checks them together."""
    given = {**ctx.params, param.name or "": value}
    if "tracker" in given:
        settings = settings_from({"tracker": given["tracker"], "tracker_opt": given.get("tracker_opt", ())})
        if param.name == "tracker":
            check_installed(settings.trackers)
    return value


@hookimpl
def segal_cli_options() -> Sequence[click.Option]:
    """``--tracker NAME`` (repeatable) and ``--tracker-opt KEY=VALUE`` (repeatable)."""
    keys = "; ".join(f"{k}: {what}" for k, (_, what) in KEYS.items())
    return [
        click.Option(["--tracker", "tracker"], multiple=True, metavar="NAME", callback=_check,
                     help=f"Log the run to a tracker: {' or '.join(TRACKERS)} (repeatable). [segal_trackers]"),
        click.Option(["--tracker-opt", "tracker_opt"], multiple=True, metavar="KEY=VALUE", callback=_check,
                     help=f"Tracker setting (repeatable); {keys}. [segal_trackers]"),
    ]


def _trackers(run: Run) -> tuple[TrackerSettings, list[Tracker]]:
    settings = settings_from(run.config.plugin_options)
    if not settings.trackers:
        return settings, []
    check_installed(settings.trackers)
    from .base import build

    return settings, [build(name, run, settings) for name in settings.trackers]


@hookimpl
def segal_run_start(run: Run) -> None:
    """Check the settings and packages; MLflow: create (or find again) the run."""
    for tracker in _trackers(run)[1]:
        tracker.run_start()


@hookimpl
def segal_after_train(run: Run, round: int, metrics: dict[str, Any]) -> None:  # noqa: A002
    """Per-epoch loss and learning rate of this round's training."""
    for tracker in _trackers(run)[1]:
        tracker.after_train(round, metrics)


@hookimpl
def segal_round_end(run: Run, record: dict[str, Any]) -> None:
    """The committed round: mIoU, per-class IoU, labelled fraction, seconds, thumbnails."""
    for tracker in _trackers(run)[1]:
        tracker.round_end(record)


@hookimpl
def segal_run_end(run: Run, history: list[dict[str, Any]]) -> None:
    """MLflow: the HTML report as an artifact, the run marked finished."""
    for tracker in _trackers(run)[1]:
        tracker.run_end(history)
