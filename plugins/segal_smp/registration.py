"""One registered model class per smp architecture, made from smp's own list."""

from __future__ import annotations

from collections.abc import Mapping

from .architectures import ARCHITECTURES, summary
from .model import SmpModel

__all__ = ["MODELS", "model_class"]


def model_class(arch: str) -> type[SmpModel]:
    """The :class:`SmpModel` subclass for ``arch``: ``name`` = the lower-case smp key
    (``deeplabv3plus``), alias = smp's class name (``DeepLabV3Plus``)."""
    smp_name = ARCHITECTURES[arch].__name__
    return type(
        smp_name,
        (SmpModel,),
        {
            "name": arch,
            "aliases": (smp_name,),
            "architecture": arch,
            "description": f"{summary(arch)} (segmentation_models_pytorch {smp_name})",
            "__module__": __name__,
            "__qualname__": smp_name,
            "__doc__": f"smp ``{smp_name}`` with any smp encoder (``--model {arch}``).",
        },
    )


#: ``name`` -> model class, one per smp architecture.
MODELS: Mapping[str, type[SmpModel]] = {arch: model_class(arch) for arch in ARCHITECTURES}
# module attributes named like smp's classes, so the classes pickle by reference
globals().update({cls.__qualname__: cls for cls in MODELS.values()})
