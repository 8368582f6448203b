"""segal_uncertainty: the built-in query strategies (random, least confidence,
margin, entropy), registered like any third-party plugin."""

from __future__ import annotations

from collections.abc import Sequence

from segal_core import hookimpl

from . import functional
from .strategies import EntropySampling, LeastConfidence, MarginSampling, RandomSampling

__all__ = [
    "EntropySampling",
    "LeastConfidence",
    "MarginSampling",
    "RandomSampling",
    "functional",
    "segal_register_strategies",
]


@hookimpl
def segal_register_strategies() -> Sequence[type]:
    """The four built-in strategies."""
    return [RandomSampling, LeastConfidence, MarginSampling, EntropySampling]
