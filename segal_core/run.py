"""``Run``: one run in progress, as the cycle and every lifecycle hook see it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig
from .distributed import SINGLE, World

if TYPE_CHECKING:
    import torch

    from .dataset import Dataset, Splits
    from .model import Model, ModelConfig
    from .oracle import Oracle
    from .plugins import Plugins
    from .rundir import RunDir, RunState
    from .regions import RegionMaps
    from .strategy import Strategy
    from .units import QueryUnit

__all__ = ["WRITER_HOOKS", "Echo", "Run"]

#: Lifecycle hooks called on rank 0 only under ``torchrun`` (they report or write
#: files); ``segal_phase`` wraps every rank's work and runs on every rank.
WRITER_HOOKS = frozenset({
    "segal_run_start", "segal_run_end", "segal_round_start", "segal_round_end", "segal_after_train",
    "segal_after_scoring", "segal_select", "segal_after_query", "segal_after_label",
})

#: Where the cycle prints its one line per round (``print``, ``click.echo``, ...).
Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class Run:
    """One run in progress; what lifecycle hooks receive as ``run``.

    :ivar config: the resolved settings.
    :ivar out: the run directory.
    :ivar splits: the dataset's splits (``splits.train`` is the pool).
    :ivar model: the model of the current round (``None`` before round 0 trains).
    :ivar strategy: the query strategy; :ivar oracle: the oracle.
    :ivar state: the committed state (ledger, completed rounds).
    :ivar history: the records of the completed rounds.
    :ivar world: the processes of the run (:data:`~segal_core.distributed.SINGLE`
        alone; see ``docs/distributed.md``).
    """

    config: RunConfig
    out: Path
    plugins: Plugins
    splits: Splits
    model_cls: type[Model]
    model_config: ModelConfig
    strategy: Strategy
    oracle: Oracle
    rundir: RunDir
    state: RunState
    history: list[dict[str, Any]] = field(default_factory=list)
    model: Model | None = None
    seed_size: int = 0
    query_size: int = 0
    echo: Echo = field(default=_quiet, repr=False)
    #: Partial masks returned by the oracle (id -> int64 mask), kept in memory so a
    #: round does not decode ``labels/`` again; read from disk once on resume.
    partial_masks: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    #: The query unit (``None``: whole images) and the pool's region maps.
    unit: QueryUnit | None = None
    maps: RegionMaps | None = field(default=None, repr=False)
    #: Each pool image's pixel count (height x width), in pool order.
    pool_areas: list[int] = field(default_factory=list, repr=False)
    #: Which pool frames have a ground-truth mask (``Dataset.has_mask``), in pool
    #: order; ``None`` when every frame has one.
    pool_masked: list[bool] | None = field(default=None, repr=False)
    world: World = field(default_factory=lambda: SINGLE, repr=False)

    @property
    def regional(self) -> bool:
        """Whether regions, not whole images, are queried."""
        return self.unit is not None and not self.unit.whole_image

    @property
    def pool_pixels(self) -> int:
        return sum(self.pool_areas)

    def labelled_area(self) -> int:
        """Pixels labelled so far: a whole image counts its area, a region entry the
        area of its regions."""
        total = 0
        for sid, entry in self.state.ledger.items():
            total += self.pool_areas[self.pool.index_of(sid)] if entry.regions is None else entry.pixels
        return total

    @property
    def pool(self) -> Dataset:
        return self.splits.train

    @property
    def classes(self) -> Sequence[str]:
        return self.splits.classes

    @property
    def eval_split(self) -> tuple[str, Dataset]:
        """The split reported as ``test_*``: test, or val when there is none."""
        if self.splits.test is not None:
            return "test", self.splits.test
        return "val", self.splits.val

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call lifecycle hook ``hook`` with ``run=self`` (under ``torchrun`` the
        hooks in :data:`WRITER_HOOKS` on rank 0 only)."""
        if hook in WRITER_HOOKS and not self.world.is_writer:
            return None
        return self.plugins.call(hook, run=self, **kwargs)

    def keep_mask(self, sample_id: str, mask: torch.Tensor) -> None:
        """Keep a partial mask in memory, compactly: uint8 when the class ids and the
        ignore index fit (a region run holds one per labelled image), int32 otherwise.
        :class:`~segal_core.dataset.DatasetView` hands it back as int64."""
        import torch

        small = max(len(self.classes), self.splits.ignore_index) < 256
        self.partial_masks[sample_id] = mask.detach().to("cpu", torch.uint8 if small else torch.int32)

    def unlabelled_indices(self) -> list[int]:
        """Pool positions of the samples not in the ledger."""
        done = self.state.ledger
        return [i for i, sid in enumerate(self.pool.ids) if sid not in done]
