"""A dataset given as lists of tensors, for model tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from segal_core import DEFAULT_IGNORE_INDEX, Dataset


class ListDataset(Dataset):
    """Given images and masks, held in lists; classes ``c0 .. c{n-1}``."""

    name = "list"

    def __init__(self, images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], classes: int = 2,
                 ignore_index: int = DEFAULT_IGNORE_INDEX) -> None:
        self.images, self.masks = list(images), list(masks)
        self.classes = [f"c{i}" for i in range(classes)]
        self.ids = [f"id{i}" for i in range(len(self.images))]
        self.ignore_index = ignore_index

    @classmethod
    def load(cls, config):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def image(self, index: int) -> torch.Tensor:
        return self.images[index]

    def mask(self, index: int) -> torch.Tensor:
        return self.masks[index]
