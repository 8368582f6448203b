"""segal_smp: every segmentation_models_pytorch architecture as a SegAL model.

``--model unet`` (or ``Unet``), ``fpn``, ``deeplabv3plus``, ... with any smp encoder
(``--encoder resnet34``, ``--encoder tu-<timm model>``). See ``docs/models.md``.

The plugin module itself imports neither torch nor smp: the model classes are
imported when the models are registered, so ``segal --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from segal_core import hookimpl
from segal_core.lazy import lazy_exports

_EXPORTS = {
    "ARCHITECTURES": "architectures",
    "build_network": "architectures",
    "pad_multiple": "architectures",
    "ConfusionMatrix": "metrics",
    "confusion_matrix": "metrics",
    "scores_from_confusion": "metrics",
    "SmpModel": "model",
    "SmpOptions": "options",
    "MODELS": "registration",
    "model_class": "registration",
}

__all__ = sorted([*_EXPORTS, "segal_cli_options", "segal_register_models"])


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


@hookimpl
def segal_register_models() -> Sequence[type]:
    """One model class per smp architecture."""
    from .registration import MODELS

    return list(MODELS.values())


@hookimpl
def segal_cli_options() -> Sequence[click.Option]:
    """``--encoder``, ``--epochs``, ``--lr``, ... (settings of the smp models)."""
    from .cli import run_options

    return run_options()


if TYPE_CHECKING:
    from .architectures import ARCHITECTURES, build_network, pad_multiple
    from .metrics import ConfusionMatrix, confusion_matrix, scores_from_confusion
    from .model import SmpModel
    from .options import SmpOptions
    from .registration import MODELS, model_class
