"""segal_smp: every segmentation_models_pytorch architecture as a SegAL model.

``--model unet`` (or ``Unet``), ``fpn``, ``deeplabv3plus``, ... with any smp encoder
(``--encoder resnet34``, ``--encoder tu-<timm model>``). See ``docs/models.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

from segal_core import hookimpl

from .architectures import ARCHITECTURES, build_network, pad_multiple
from .metrics import ConfusionMatrix, confusion_matrix, scores_from_confusion
from .model import SmpModel
from .options import SmpOptions
from .registration import MODELS, model_class

__all__ = [
    "ARCHITECTURES",
    "MODELS",
    "ConfusionMatrix",
    "SmpModel",
    "SmpOptions",
    "build_network",
    "confusion_matrix",
    "model_class",
    "pad_multiple",
    "scores_from_confusion",
    "segal_register_models",
]


@hookimpl
def segal_register_models() -> Sequence[type]:
    """One model class per smp architecture."""
    return list(MODELS.values())
