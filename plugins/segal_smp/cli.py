"""The flags the smp models add to ``segal run`` (``--encoder``, ``--lr``, ...).

Each flag sets one of :class:`~segal_smp.options.SmpOptions`' settings, as
``--model-opt key=value`` does; the defaults shown are that class's. This module
imports no torch, so ``segal run --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import fields

import click

from segal_core.cliopts import RunOption

from .options import FLAGS, PRECISIONS, SmpOptions

__all__ = ["run_options"]

_HELP = {
    "encoder": "Encoder (backbone) of the smp model: any smp encoder, or tu-<timm name>.",
    "encoder_weights": "'imagenet' or 'none' (from scratch; needs no download).",
    "epochs": "Training epochs per round, at least (see --min-steps).",
    "min_steps": "Train at least this many steps per round, plus --steps-per-image x labelled images "
    "(rounded up to whole epochs).",
    "steps_per_image": "Extra training steps per labelled image, each round.",
    "batch_size": "Training batch size (inference uses 2x on the CPU, 4x on CUDA).",
    "crop_size": "Random square training crops of this side (default: whole images).",
    "lr": "Peak learning rate (AdamW, linear warm-up then cosine decay).",
    "precision": "auto: bf16 (fp16 on older cards) on CUDA, fp32 on the CPU.",
    "augment": "An albumentations pipeline file (YAML or JSON, albumentations' own format) "
    "used instead of the built-in crop and flip.",
}


def _click_type(key: str) -> object:
    if key == "precision":
        return click.Choice(PRECISIONS)
    hint = {f.name: str(f.type) for f in fields(SmpOptions)}[key]
    if hint.startswith("int"):
        return int
    if hint.startswith("float"):
        return float
    return str


def run_options() -> list[click.Option]:
    """One :class:`~segal_core.cliopts.RunOption` per entry of :data:`FLAGS`."""
    defaults = SmpOptions()
    out: list[click.Option] = []
    for key, spellings in FLAGS.items():
        default = getattr(defaults, key)
        out.append(
            RunOption(
                [*spellings, key],
                target="model_options",
                key=key,
                type=_click_type(key),
                default=default if default is not None else None,
                show_default=default is not None,
                help=f"{_HELP[key]} [smp models]",
            )
        )
    return out
