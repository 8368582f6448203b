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

    def label_regions(self, requests: Sequence[tuple[str, torch.Tensor]], pool: Dataset) -> list[Annotation]:
        """Label regions: one :class:`Annotation` per ``(id, area)`` request, ``area``
        a bool ``[H, W]`` mask of the pixels to label (the union of the image's
        queried regions). The mask holds the labels inside ``area`` and
        ``ignore_index`` elsewhere; ``labeled_pixels`` is the area's size (what the
        annotator looked at, void pixels included).

        The default asks :meth:`label` for the whole images and cuts each to its
        area, which is right for the ground truth; an oracle that labels regions
        itself (a person drawing only inside them) overrides it.
        """
        answers = self.label([sid for sid, _ in requests], pool)
        out: list[Annotation] = []
        for (sid, area), answer in zip(requests, answers):
            full = answer.mask if answer.mask is not None else pool.mask(pool.index_of(sid))
            part = torch.where(area.to(full.device), full, torch.full_like(full, pool.ignore_index))
            out.append(Annotation(sample_id=sid, labeled_pixels=int(area.sum()), mask=part))
        return out
