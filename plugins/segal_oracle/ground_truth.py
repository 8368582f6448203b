"""The ground-truth oracle: simulated labelling with the dataset's own masks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from segal_core import Annotation, Dataset, Oracle, SegalError

__all__ = ["GroundTruthOracle"]


class GroundTruthOracle(Oracle):
    """Labels each queried sample with its full ground-truth mask (``mask=None``:
    the dataset's own mask), counting the pixels that carry a label."""

    name: ClassVar[str] = "ground_truth"
    aliases: ClassVar[tuple[str, ...]] = ("ground-truth", "gt")
    description: ClassVar[str] = "simulation: the dataset's own masks label every queried sample (default)"

    def label(self, ids: Sequence[str], pool: Dataset) -> list[Annotation]:
        """One :class:`Annotation` per id, in order; ``labeled_pixels`` = pixels of the
        true mask that are not ``pool.ignore_index``. An id not in ``pool`` is a
        :class:`SegalError`."""
        out: list[Annotation] = []
        for sample_id in ids:
            labeled = int((pool.mask(self._index(sample_id, pool)) != pool.ignore_index).sum())
            out.append(Annotation(sample_id=sample_id, labeled_pixels=labeled, mask=None))
        return out

    def label_regions(self, requests: Sequence[tuple[str, torch.Tensor]], pool: Dataset) -> list[Annotation]:
        """The true labels inside each requested area, ``ignore_index`` elsewhere;
        ``labeled_pixels`` = the area (each mask decoded once)."""
        out: list[Annotation] = []
        for sample_id, area in requests:
            full = pool.mask(self._index(sample_id, pool))
            part = torch.where(area, full, torch.full_like(full, pool.ignore_index))
            out.append(Annotation(sample_id=sample_id, labeled_pixels=int(area.sum()), mask=part))
        return out

    def _index(self, sample_id: str, pool: Dataset) -> int:
        try:
            return pool.index_of(sample_id)
        except KeyError:
            raise SegalError(
                f"--oracle {self.name}: sample id {sample_id!r} is not in the pool of {len(pool)} samples"
            ) from None
