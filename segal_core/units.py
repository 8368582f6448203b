"""``QueryUnit``: what a strategy scores and an oracle labels — a whole image, or the
regions of a partition of it (patches, superpixels, a plugin's own)."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch

__all__ = ["QueryUnit"]


class QueryUnit(abc.ABC):
    """Cuts an image into regions that are queried and labelled one at a time.

    A registered unit class carries ``name`` (and optional ``aliases``,
    ``description``); it is built as ``cls(**options)`` from ``--unit-opt``, whose keys
    are the keyword arguments of ``__init__`` with type hints, like every plugin
    option.

    :meth:`regions` must be deterministic (the same image gives the same map, in any
    process and after a resume) and must cover every pixel exactly once.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    #: ``True`` for the whole-image unit: the cycle then queries images as it always
    #: did (no region maps, no pixel budget).
    whole_image: ClassVar[bool] = False
    #: ``True`` when :meth:`regions` is costly (superpixels): the cycle keeps each map
    #: on disk under the run folder after computing it once, never all in memory.
    cacheable: ClassVar[bool] = False

    @abc.abstractmethod
    def regions(self, image: torch.Tensor) -> torch.Tensor:
        """The region map of ``image`` (``[3, H, W]``, uint8 or float in 0..1): an
        int64 ``[H, W]`` tensor of region ids ``0 .. R-1`` (each id used), on the CPU."""

    def describe(self) -> str:
        """One line for logs and records (the unit and its options)."""
        options = ", ".join(f"{k}={v}" for k, v in sorted(vars(self).items()) if not k.startswith("_"))
        return f"{self.name}({options})" if options else self.name
