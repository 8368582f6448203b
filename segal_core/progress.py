"""Progress bars (tqdm) behind the ``progress(phase, done, total)`` callback."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["UNITS", "Bars"]

#: What each phase's ``done`` counts (the :data:`segal_core.model.Progress` contract):
#: training counts optimiser steps, evaluation batches, pool scoring images.
UNITS = {"train": "step", "evaluate": "batch", "score": "img"}


class Bars:
    """One tqdm bar per phase; a bar closes when ``done == total``.

    Bars go to stderr and are shown only on a terminal (or when ``force``), so logs
    and CI output stay clean.
    """

    def __init__(self, enabled: bool = True, force: bool = False) -> None:
        self.enabled = enabled and (force or sys.stderr.isatty())
        self._bars: dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        bar = self._bars.get(phase)
        if bar is None:
            bar = tqdm(total=total, desc=phase, leave=False, unit=UNITS.get(phase, "it"), dynamic_ncols=True)
            self._bars[phase] = bar
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            del self._bars[phase]

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
