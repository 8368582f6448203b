"""``--tracker tensorboard``: event files under ``DIR/tensorboard/`` (or
``--tracker-opt logdir=PATH``), written with ``torch.utils.tensorboard``.

Tags: ``train/loss``, ``train/lr`` (and ``train/val_miou``) per epoch, the step
counting epochs over the whole run; ``round/test_miou``, ``round/val_miou``,
``round/labeled_fraction``, ``round/labeled_pixel_fraction``, ``round/labeled``,
``iou/<class>``, ``val_iou/<class>``, ``seconds/<phase>`` per round (step = round);
the image ``queried`` (the round's thumbnails) and the text ``config`` (round 0).
Each hook writes its own event file and closes it (TensorBoard reads them all).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segal_core import SegalError

from .base import Tracker, queried_grid, round_scalars

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["TensorBoardTracker"]


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    @property
    def logdir(self) -> Path:
        given = self.settings.get("logdir")
        return Path(given).expanduser() if given else Path(self.run.out) / "tensorboard"

    def _writer(self) -> SummaryWriter:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # tensorboard missing or too old for torch
            raise SegalError(f"--tracker tensorboard: {exc}; install it with: pip install 'segal[tensorboard]'") from None
        try:
            self.logdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SegalError(f"--tracker-opt logdir={self.logdir}: cannot create it ({exc.strerror})") from None
        return SummaryWriter(log_dir=str(self.logdir))

    def same_target(self, state: dict[str, Any]) -> bool:
        return state.get("logdir") == str(self.logdir)

    def begin(self) -> dict[str, Any]:
        writer = self._writer()
        try:
            text = json.dumps(self.run.config.to_json(), indent=2, default=str)
            writer.add_text("config", f"```\n{text}\n```", global_step=0)
        finally:
            writer.close()
        return {"logdir": str(self.logdir)}

    def log_epochs(self, values: list[tuple[str, float, int]]) -> None:
        writer = self._writer()
        try:
            for tag, value, step in values:
                writer.add_scalar(tag, value, global_step=step)
        finally:
            writer.close()

    def log_round(self, record: dict[str, Any]) -> None:
        writer = self._writer()
        round = int(record["round"])  # noqa: A001
        try:
            for tag, value in round_scalars(record):
                writer.add_scalar(tag, value, global_step=round)
            grid = queried_grid(self.run.out, round) if record.get("queried") else None
            if grid is not None:
                writer.add_image("queried", grid, global_step=round, dataformats="HWC")
        finally:
            writer.close()
