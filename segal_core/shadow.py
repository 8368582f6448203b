"""The run folder as ranks other than 0 see it under ``torchrun``: never touched.

Rank 0 alone writes (and reads) the run folder; the other ranks hold a
:class:`ShadowRunDir`: what rank 0 read (``config.json``, ``state.json``, the
history, the partial masks) handed over by broadcast, and writes that do nothing.
So the cycle's code is the same on every rank, and several machines need no shared
folder (see ``docs/distributed.md``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .rundir import RunDir, RunState

__all__ = ["ShadowRunDir", "read_snapshot"]


class ShadowRunDir(RunDir):
    """A run folder that is only a copy in memory of what rank 0 read; writes are
    no-ops (a checkpoint's name is still given, as rank 0 names it)."""

    def __init__(
        self,
        path: Path,
        config: Mapping[str, Any] | None = None,
        state: RunState | None = None,
        history: list[dict[str, Any]] | None = None,
        masks: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(path)
        self._config = dict(config or {})
        self._state = state or RunState()
        self._history = list(history or [])
        self._masks = dict(masks or {})

    def create(self, config: Mapping[str, Any]) -> None:
        self._config = dict(config)

    def clear(self) -> None:
        pass

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def state(self, *, resume: bool = False) -> RunState:
        return dataclasses.replace(self._state, ledger=dict(self._state.ledger))

    def history(self, state: RunState | None = None) -> list[dict[str, Any]]:
        return list(self._history)

    def read_masks(self, ledger: Mapping[str, Any], pool: Any = None) -> dict[str, Any]:
        return {sid: self._masks[sid] for sid in ledger if sid in self._masks}

    def write_mask(self, sample_id: str, mask: Any, *, who: str, round: int = -1) -> str:
        raise AssertionError("only rank 0 labels and writes masks; the other ranks receive the ledger")

    def clean_temporaries(self) -> None:
        pass

    def save_checkpoint(self, model: Any, round: int) -> str:
        return self.checkpoint_name(round)

    def commit(self, state: RunState, history: list[dict[str, Any]]) -> None:
        pass

    def drop_unnamed_masks(self, state: RunState) -> None:
        pass


def read_snapshot(rundir: RunDir) -> tuple[dict[str, Any], RunState, list[dict[str, Any]], dict[str, Any]]:
    """What a resumed run's other ranks need from the folder (rank 0 reads it, checked):
    ``config.json``, ``state.json``, the committed history and the partial masks."""
    state = rundir.state(resume=True)
    return rundir.config(), state, rundir.history(state), rundir.read_masks(state.ledger)
