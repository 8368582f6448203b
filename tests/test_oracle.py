"""The ground-truth oracle."""

from __future__ import annotations

import pytest
import torch

from segal_core import Annotation, DatasetView, SegalError, load_plugins
from segal_core.testing import RandomImages
from segal_oracle import GroundTruthOracle


class HalfIgnored(RandomImages):
    """RandomImages whose odd items have their top half ignored."""

    def mask(self, index: int) -> torch.Tensor:
        mask = super().mask(index).clone()
        if index % 2:
            mask[: mask.shape[0] // 2] = self.ignore_index
        return mask


def test_registered_under_name_and_aliases() -> None:
    registry = load_plugins().registry
    for name in ("ground_truth", "ground-truth", "gt", "GT"):
        assert registry.oracle(name) is GroundTruthOracle


def test_labels_count_non_ignored_pixels_in_order() -> None:
    pool = HalfIgnored(4, sizes=[(6, 10), (8, 4)])
    ids = [pool.ids[3], pool.ids[0], pool.ids[1]]
    annotations = GroundTruthOracle().label(ids, pool)
    assert [a.sample_id for a in annotations] == ids
    assert all(isinstance(a, Annotation) and a.mask is None for a in annotations)
    # item 3: 8x4 with the top half ignored; item 0: 6x10 whole; item 1: 8x4 half
    assert [a.labeled_pixels for a in annotations] == [16, 60, 16]


def test_view_of_the_pool() -> None:
    base = HalfIgnored(5, sizes=[(4, 4)])
    view = DatasetView(base, [4, 1], masks={base.ids[4]: torch.full((4, 4), base.ignore_index)})
    annotations = GroundTruthOracle().label([base.ids[1], base.ids[4]], view)
    assert [a.labeled_pixels for a in annotations] == [8, 0]


def test_unknown_id_is_an_error() -> None:
    pool = RandomImages(2)
    with pytest.raises(SegalError, match="'nope' is not in the pool of 2 samples"):
        GroundTruthOracle().label([pool.ids[0], "nope"], pool)


def test_empty_query() -> None:
    assert GroundTruthOracle().label([], RandomImages(2)) == []
