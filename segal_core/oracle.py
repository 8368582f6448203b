"""The ``Oracle`` interface: who labels the queried samples."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from .dataset import Dataset

__all__ = ["Annotation", "Oracle"]


@dataclass
class Annotation:
    """The label an oracle returned for one sample.

    :param sample_id: the queried id.
    :param labeled_pixels: how many pixels now carry a label (not ``ignore_index``).
    :param mask: ``None`` when the label is the dataset's own ground truth (simulation);
        otherwise a ``[H, W]`` int64 mask, ``ignore_index`` where nothing was labelled
        (region or pixel queries, human annotators).
    """

    sample_id: str
    labeled_pixels: int
    mask: torch.Tensor | None = None


class Oracle(abc.ABC):
    """Returns labels for queried sample ids.

    A registered oracle class carries ``name`` (and optional ``aliases``,
    ``description``); it is built as ``cls(**options)`` from ``--oracle-opt``.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    @abc.abstractmethod
    def label(self, ids: Sequence[str], pool: Dataset) -> list[Annotation]:
        """One :class:`Annotation` per id, in the order given."""
