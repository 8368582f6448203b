"""Model options (``--model-opt key=value``) of the smp models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from segal_core import SegalError
from segal_core.options import coerce_options

__all__ = ["LOSSES", "SmpOptions", "parse_options"]

#: Values of the ``loss`` option.
LOSSES = ("ce", "ce+dice")


@dataclass(frozen=True)
class SmpOptions:
    """Options of every smp model.

    :param loss: ``ce`` (cross-entropy) or ``ce+dice`` (cross-entropy plus smp's
        multiclass Dice loss); both ignore ``ignore_index``.
    :param eval_every: with a validation split, evaluate every this many epochs (and
        always after the last one); the best evaluated epoch's weights are kept.
        ``0``: never evaluate while training, the last weights are kept; unset: about
        four evaluations per training run (every ``ceil(epochs / 4)`` epochs).
    :param weight_decay: AdamW weight decay.
    :param warmup: fraction of the training steps spent warming the learning rate up
        linearly before the cosine decay.
    :param compile: ``torch.compile`` the network (CUDA only; ignored on the CPU).
    """

    #: Name shown in option errors.
    name: ClassVar[str] = "smp models"

    loss: str = "ce"
    eval_every: int | None = None
    weight_decay: float = 1e-4
    warmup: float = 0.05
    compile: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise SegalError(f"--model-opt loss={self.loss}: expected one of {', '.join(LOSSES)}")
        if self.eval_every is not None and self.eval_every < 0:
            raise SegalError(f"--model-opt eval_every={self.eval_every}: must be 0 (never) or more")
        if self.weight_decay < 0:
            raise SegalError(f"--model-opt weight_decay={self.weight_decay}: must be >= 0")
        if not 0.0 <= self.warmup < 1.0:
            raise SegalError(f"--model-opt warmup={self.warmup}: must be in [0, 1)")


def parse_options(options: Mapping[str, object]) -> SmpOptions:
    """Validate and coerce ``--model-opt`` pairs; unknown keys are an error listing
    the accepted ones."""
    return SmpOptions(**coerce_options(SmpOptions, dict(options), "--model-opt"))
