"""The smp models' settings: defined, defaulted and validated here, once.

Every setting is a ``--model-opt key=value``; the common ones also have their own
``segal run`` flag (``--encoder``, ``--crop-size``, ...), which this plugin adds to the
command line (:mod:`segal_smp.cli`). The core knows none of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import ClassVar

from segal_core.errors import SegalError
from segal_core.options import coerce_options

__all__ = ["FLAGS", "LOSSES", "PRECISIONS", "SmpOptions", "flag", "parse_options"]

#: Values of the ``loss`` option.
LOSSES = ("ce", "ce+dice")
#: Values of the ``precision`` option.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: Settings that have a ``segal run`` flag of their own: key -> the flag's spellings
#: (the original SegAL spelling second, where it had one).
FLAGS: Mapping[str, tuple[str, ...]] = {
    "encoder": ("--encoder",),
    "encoder_weights": ("--encoder-weights", "--encoder_weights"),
    "epochs": ("--epochs", "--n_epoch"),
    "min_steps": ("--min-steps",),
    "steps_per_image": ("--steps-per-image",),
    "batch_size": ("--batch-size", "--batch_size"),
    "crop_size": ("--crop-size", "--crop_size"),
    "lr": ("--lr", "--learning_rate"),
    "precision": ("--precision",),
    "augment": ("--augment",),
}


def flag(key: str) -> str:
    """How an error names setting ``key``: its flag, or ``--model-opt key``."""
    return FLAGS[key][0] if key in FLAGS else f"--model-opt {key}"


@dataclass(frozen=True)
class SmpOptions:
    """Settings of every smp model.

    :param encoder: backbone name (any smp encoder, ``tu-<timm name>`` included).
    :param encoder_weights: ``imagenet`` or ``None`` (from scratch, no download).
    :param precision: ``auto`` (bf16, or fp16 on older cards, on CUDA; fp32 on the
        CPU), ``fp32``, ``bf16`` or ``fp16``.
    :param epochs: training epochs per round, at least.
    :param min_steps: each round trains at least ``min_steps + steps_per_image x
        labelled images`` optimiser steps, rounded up to whole epochs, so that a small
        labelled set still gets a real schedule and a larger one a longer one.
    :param steps_per_image: see ``min_steps``.
    :param batch_size: training batch size (inference uses 2x on the CPU, 4x on CUDA).
    :param crop_size: side of the random square training crops; ``None`` = whole images.
    :param lr: peak learning rate (AdamW, linear warm-up then cosine decay).
    :param loss: ``ce`` (cross-entropy) or ``ce+dice`` (plus smp's multiclass Dice
        loss); both ignore ``ignore_index``.
    :param eval_every: with a validation split, evaluate every this many epochs (and
        always after the last one); the best evaluated epoch's weights are kept.
        ``0``: never evaluate while training, the last weights are kept; unset: about
        four evaluations per training run (every ``ceil(epochs / 4)`` epochs).
    :param weight_decay: AdamW weight decay.
    :param warmup: fraction of the training steps spent warming the learning rate up.
    :param compile: ``torch.compile`` the network (CUDA only; ignored on the CPU).
    :param augment: an albumentations pipeline in its own serialised format (a
        ``.yaml``/``.yml`` or ``.json`` file) used instead of the built-in crop and flip.
    :param flip: random horizontal flips (on by default).
    :param jitter: photometric jitter (brightness, contrast, saturation, hue); off by
        default.
    :param dropout: dropout probability on the input of the segmentation head, in
        training and in the stochastic passes of MC dropout (``--strategy bald`` or
        ``variance``); 0 (the default): no dropout, no stochastic passes.
    :param sync_bn: under ``torchrun`` with CUDA, batch-norm statistics over the
        global batch of every rank (``torch.nn.SyncBatchNorm``); ignored in one
        process; refused on the CPU (torch's SyncBatchNorm needs a GPU).
    """

    #: Name shown in option errors.
    name: ClassVar[str] = "smp models"

    encoder: str = "resnet18"
    encoder_weights: str | None = None
    precision: str = "auto"
    epochs: int = 4
    min_steps: int = 40
    steps_per_image: float = 1.0
    batch_size: int = 8
    crop_size: int | None = None
    lr: float = 1e-3
    loss: str = "ce"
    eval_every: int | None = None
    weight_decay: float = 1e-4
    warmup: float = 0.05
    compile: bool = False
    augment: str | None = None
    flip: bool = True
    jitter: bool = False
    dropout: float = 0.0
    sync_bn: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise SegalError(f"{flag(f.name)} {value}: must be a finite number")
        if not self.encoder:
            raise SegalError("--encoder: give an encoder name (see `segal plugins` and docs/models.md)")
        if self.encoder_weights is not None and self.encoder_weights.lower() in ("none", "null", ""):
            object.__setattr__(self, "encoder_weights", None)
        if self.precision not in PRECISIONS:
            raise SegalError(f"--precision {self.precision}: must be one of {', '.join(PRECISIONS)}")
        if not 1 <= self.epochs <= 100_000:
            raise SegalError(f"{flag('epochs')} {self.epochs}: must be between 1 and 100000")
        if not 0 <= self.min_steps <= 10_000_000:
            raise SegalError(f"{flag('min_steps')} {self.min_steps}: must be between 0 and 10000000")
        if not 0 <= self.steps_per_image <= 10_000:
            raise SegalError(f"{flag('steps_per_image')} {self.steps_per_image}: must be between 0 and 10000")
        if not 1 <= self.batch_size <= 65_536:
            raise SegalError(f"{flag('batch_size')} {self.batch_size}: must be between 1 and 65536")
        if self.crop_size is not None and not 8 <= self.crop_size <= 65_536:
            raise SegalError(f"{flag('crop_size')} {self.crop_size}: must be between 8 and 65536 pixels")
        if not self.lr > 0:
            raise SegalError(f"{flag('lr')} {self.lr}: must be a positive number")
        if self.loss not in LOSSES:
            raise SegalError(f"--model-opt loss={self.loss}: expected one of {', '.join(LOSSES)}")
        if self.eval_every is not None and self.eval_every < 0:
            raise SegalError(f"--model-opt eval_every={self.eval_every}: must be 0 (never) or more")
        if self.weight_decay < 0:
            raise SegalError(f"--model-opt weight_decay={self.weight_decay}: must be >= 0")
        if not 0.0 <= self.warmup < 1.0:
            raise SegalError(f"--model-opt warmup={self.warmup}: must be in [0, 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise SegalError(f"--model-opt dropout={self.dropout}: must be a probability in [0, 1)")

    def epochs_for(self, train_size: int, steps_per_epoch: int) -> int:
        """Epochs to run on ``train_size`` images: ``epochs``, or more to reach
        ``min_steps + steps_per_image x train_size`` steps."""
        wanted = self.min_steps + self.steps_per_image * train_size
        return max(self.epochs, math.ceil(wanted / max(1, steps_per_epoch)))


def parse_options(options: Mapping[str, object]) -> SmpOptions:
    """Validate and coerce the model's settings; an unknown key is an error listing
    the accepted ones."""
    return SmpOptions(**coerce_options(SmpOptions, dict(options), "--model-opt", names=flag))
