"""segal_uncertainty: the built-in query strategies (random, least confidence,
margin, entropy), registered like any third-party plugin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from segal_core import hookimpl
from segal_core.lazy import lazy_exports

_EXPORTS = {
    "EntropySampling": "strategies",
    "LeastConfidence": "strategies",
    "MarginSampling": "strategies",
    "RandomSampling": "strategies",
}
__all__ = sorted([*_EXPORTS, "functional", "segal_register_strategies"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


@hookimpl
def segal_register_strategies() -> Sequence[type]:
    """The four built-in strategies."""
    from .strategies import EntropySampling, LeastConfidence, MarginSampling, RandomSampling

    return [RandomSampling, LeastConfidence, MarginSampling, EntropySampling]


if TYPE_CHECKING:
    from . import functional
    from .strategies import EntropySampling, LeastConfidence, MarginSampling, RandomSampling
