"""Hook specifications: the whole plugin contract of SegAL.

Every hook is a typed signature plus a docstring; the reference in
``docs/plugins.md`` is checked against these docstrings by the tests. An
implementation may take fewer arguments than the spec, so hooks can grow
arguments without breaking plugins. Implement hooks in a module named by an
entry point in the ``segal`` group, marked with :data:`segal_core.hookimpl`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .markers import hookspec

if TYPE_CHECKING:
    import click
    import torch

    from .config import RunConfig
    from .dataset import Splits
    from .oracle import Annotation
    from .run import Run

# -- registration --------------------------------------------------------------


@hookspec
def segal_register_datasets() -> Sequence[type]:
    """Register dataset classes (subclasses of :class:`segal_core.Dataset`).

    :returns: a list of classes, each with a unique ``name`` (and optional ``aliases``).

    Called once when the plugins are loaded; a name claimed by two plugins is an error
    that names both.
    """


@hookspec
def segal_register_models() -> Sequence[type]:
    """Register model classes (subclasses of :class:`segal_core.Model`).

    :returns: a list of classes, each with a unique ``name`` (and optional ``aliases``).

    Called once when the plugins are loaded; a name claimed by two plugins is an error
    that names both.
    """


@hookspec
def segal_register_strategies() -> Sequence[type]:
    """Register query strategy classes (subclasses of :class:`segal_core.Strategy`).

    :returns: a list of classes, each with a unique ``name`` (and optional ``aliases``).

    Called once when the plugins are loaded; a name claimed by two plugins is an error
    that names both.
    """


@hookspec
def segal_register_oracles() -> Sequence[type]:
    """Register oracle classes (subclasses of :class:`segal_core.Oracle`).

    :returns: a list of classes, each with a unique ``name`` (and optional ``aliases``).

    Called once when the plugins are loaded; a name claimed by two plugins is an error
    that names both.
    """


@hookspec
def segal_register_units() -> Sequence[type]:
    """Register query units (subclasses of :class:`segal_core.QueryUnit`): what a
    strategy scores and an oracle labels, e.g. regions from an external segmenter.

    :returns: a list of classes, each with a unique ``name`` (and optional ``aliases``).

    Called once when the plugins are loaded; a name claimed by two plugins is an error
    that names both.
    """


# -- command line --------------------------------------------------------------


@hookspec
def segal_cli_options() -> Sequence[click.Option]:
    """Add options to ``segal run``.

    :returns: a list of :class:`click.Option`; their values reach the run as
        ``run.config.plugin_options[<option name>]``. A :class:`segal_core.RunOption`
        instead sets one key of a plugin's settings (``--encoder`` for
        ``model_options["encoder"]``), and only when the user gives it.

    Called when the CLI is built, also for ``--help``: import nothing heavy (torch)
    in the module that implements it. Name options after your plugin to avoid clashes.
    """


@hookspec
def segal_cli_commands(cli: click.Group) -> None:
    """Add sub-commands to ``segal``.

    :param cli: the top-level ``segal`` group; call ``cli.add_command(...)``.

    Called when the CLI is built.
    """


# -- set-up ------------------------------------------------------------------------


@hookspec(firstresult=True)
def segal_train_augmentation(config: RunConfig, splits: Splits) -> object | None:
    """Give the model a training augmentation of your own.

    :param config: the run's settings.
    :param splits: the dataset's splits (classes, ignore index, sizes).
    :returns: the augmentation, or ``None`` to leave the model's own. It reaches the
        model as ``ModelConfig.augmentation``; what it must be is the model plugin's
        rule (the smp models take an albumentations transform called as
        ``t(image=HWC array, mask=HW array)``: uint8 images, or float32 in 0..1 when
        the dataset gives floats; int32 masks).

    Called once per run (and per resume), before the model is built. Stops at the
    first non-None result.
    """


# -- lifecycle -----------------------------------------------------------------


@hookspec
def segal_run_start(run: Run) -> None:
    """The run is set up (data validated, model built, run directory written) and the
    first round is about to start (or the first resumed round).

    :param run: the run; ``run.config``, ``run.out``, ``run.splits``, ``run.model``.
    """


@hookspec
def segal_run_end(run: Run, history: list[dict[str, Any]]) -> None:
    """The run finished (budget, rounds or pool exhausted).

    :param run: the run.
    :param history: every round's record, as in ``history.jsonl``.
    """


@hookspec
def segal_round_start(run: Run, round: int) -> None:
    """A round starts, before training.

    :param run: the run.
    :param round: the round number (0 = trained on the seed set).
    """


@hookspec
def segal_round_end(run: Run, record: dict[str, Any]) -> None:
    """A round is complete and its record is written to ``history.jsonl``.

    :param run: the run.
    :param record: the round's record, exactly as written (JSON-compatible).
    """


@hookspec
def segal_after_train(run: Run, round: int, metrics: dict[str, Any]) -> None:
    """The model was trained and evaluated for this round.

    :param run: the run.
    :param round: the round number.
    :param metrics: ``train`` (loss, epochs, steps, best epoch, and ``history``: one
        dict per epoch with ``epoch``, ``loss``, ``lr`` and, where evaluated,
        ``val_miou``), ``val`` and ``test`` (mIoU, per-class IoU, pixel accuracy).
        Plugins may read, not change, these.
    """


@hookspec
def segal_after_scoring(
    run: Run, round: int, ids: Sequence[str], scores: torch.Tensor, regions: Sequence[int] | None
) -> None:
    """The unlabelled pool was scored, before selection.

    :param run: the run.
    :param round: the round number.
    :param ids: the unlabelled sample ids, in pool order; ``scores[i]`` belongs to ``ids[i]``.
    :param scores: one float per id (higher = queried first), on the model's device.
        Read-only: to change the query, implement :func:`segal_select`.
    :param regions: ``None`` when whole images are queried. With a region unit the
        pool's regions are selected while they are scored (streaming), so ``ids``,
        ``scores`` and ``regions`` are the selected regions, best first: region
        ``regions[i]`` of image ``ids[i]`` (an id repeats when several of its regions
        are chosen); :func:`segal_select` is not called.
    """


@hookspec(firstresult=True)
def segal_select(
    run: Run, round: int, ids: Sequence[str], scores: torch.Tensor, k: int
) -> Sequence[str] | None:
    """Replace the strategy's selection (e.g. veto samples, enforce diversity).

    :param run: the run.
    :param round: the round number.
    :param ids: the unlabelled sample ids.
    :param scores: their scores, as passed to :func:`segal_after_scoring`.
    :param k: how many samples the round queries.
    :returns: exactly ``k`` distinct ids from ``ids``, or ``None`` to keep the
        strategy's own top-``k``.

    Stops at the first non-None result.
    """


@hookspec
def segal_after_query(
    run: Run, round: int, queried: Sequence[str], scores: Sequence[float], regions: Sequence[int] | None
) -> None:
    """The round's query is decided, before the oracle labels it.

    :param run: the run.
    :param round: the round number.
    :param queried: the queried ids, highest score first.
    :param scores: their scores.
    :param regions: ``None`` for whole images; with a region unit, the region id of
        each entry of ``queried`` (``run.maps(pool_index)`` gives the region map).
    """


@hookspec
def segal_after_label(run: Run, round: int, annotations: Sequence[Annotation]) -> None:
    """The oracle labelled the query; the ledger is updated. With a waiting oracle
    it is called on the resume that collects the round's labels (after that round's
    ``segal_round_end``), with the labels that arrived.

    :param run: the run.
    :param round: the round number.
    :param annotations: one :class:`segal_core.Annotation` per labelled id.
    """


@hookspec(firstresult=True)
def segal_phase(run: Run, round: int, phase: str, action: Callable[[], Any]) -> Any:
    """Runs one phase of a round; wrap it for timing, logging or profiling.

    :param run: the run.
    :param round: the round number.
    :param phase: ``"train"``, ``"evaluate"``, ``"score"``, ``"select"`` or ``"label"``.
    :param action: the phase itself; the core's own implementation calls it.
    :returns: the phase's result.

    Implement with ``@hookimpl(wrapper=True)`` as a generator: code before ``yield``
    runs before the phase, code after it when the phase is done; return the value of
    the ``yield`` (the phase's result) unchanged. Stops at the first non-None result.
    """
