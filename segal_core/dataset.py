"""The ``Dataset`` interface: one split of labelled images."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

__all__ = ["DataConfig", "Dataset", "Splits", "DEFAULT_IGNORE_INDEX"]

#: Mask value that marks a pixel as not labelled / not scored.
DEFAULT_IGNORE_INDEX = 255


@dataclass(frozen=True)
class DataConfig:
    """What the user said about the data (``--data-path``, ``--num-classes``, ...).

    :param path: the data folder, or ``None`` for datasets that need none.
    :param num_classes: classes asked for, or ``None`` for the dataset's default.
    :param seed: the run's seed, for datasets that generate or split at random.
    :param options: ``--dataset-opt key=value`` pairs as typed (strings); a dataset
        checks and coerces them with :func:`segal_core.options.coerce_options`.
    """

    path: Path | None = None
    num_classes: int | None = None
    seed: int = 0
    options: Mapping[str, object] = field(default_factory=dict)


class Dataset(abc.ABC):
    """One split: sized, indexable to ``(image, mask)``, with stable string ids.

    ``image`` is a ``[3, H, W]`` tensor, either ``uint8`` in 0..255 (preferred: four
    times less to copy to a GPU) or floating point in 0..1; models accept both.
    ``mask`` is a ``[H, W]`` ``int64`` tensor of class ids, ``ignore_index`` where a
    pixel is unlabelled or ignored.

    A registered dataset class carries ``name`` (and optional ``aliases`` and
    ``description``) and builds its splits in the class method :meth:`load`.
    """

    #: Registry name (``--dataset NAME``).
    name: ClassVar[str] = ""
    #: Other names accepted for ``--dataset``.
    aliases: ClassVar[tuple[str, ...]] = ()
    #: One line shown by ``segal plugins``.
    description: ClassVar[str] = ""
    #: Whether ``--data-path`` is required.
    requires_path: ClassVar[bool] = True

    #: Class names, index = class id.
    classes: Sequence[str]
    #: Mask value ignored by training, metrics and scoring.
    ignore_index: int = DEFAULT_IGNORE_INDEX
    #: Stable sample ids, one per item, in item order.
    ids: Sequence[str]
    #: ``"train"``, ``"val"`` or ``"test"``.
    split: str = ""

    @classmethod
    @abc.abstractmethod
    def load(cls, config: DataConfig) -> Splits:
        """Open the splits; validate cheaply (layout, pairing, sizes) and raise
        :class:`~segal_core.SegalError` naming the file and what to do."""

    def __len__(self) -> int:
        return len(self.ids)

    @abc.abstractmethod
    def image(self, index: int) -> torch.Tensor:
        """The image ``[3, H, W]`` (uint8 or float in 0..1) of item ``index``."""

    @abc.abstractmethod
    def mask(self, index: int) -> torch.Tensor:
        """The ground-truth mask ``[H, W]`` (int64) of item ``index``."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(index), self.mask(index)

    def has_mask(self, index: int) -> bool:
        """Whether item ``index`` has a ground-truth mask. A pool (the train split)
        may hold frames without one (the real case: few or none are labelled); those
        with a mask form the seed set and the rest are labelled by a waiting oracle.
        Val and test items always have one. The default: every item has one."""
        return True

    def image_size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of item ``index``. The default decodes the image; a
        dataset that knows sizes cheaply (from file headers) overrides it. Region
        queries use it once per pool image to count the pool's pixels."""
        height, width = self.image(index).shape[-2:]
        return int(height), int(width)

    def index_of(self, sample_id: str) -> int:
        """Position of ``sample_id`` in this split."""
        lookup = self.__dict__.get("_segal_index")
        if lookup is None:
            lookup = {sid: i for i, sid in enumerate(self.ids)}
            self.__dict__["_segal_index"] = lookup
        return lookup[sample_id]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class Splits:
    """The splits a dataset provides. ``train`` is the active-learning pool.

    ``test`` may be ``None``: the cycle then evaluates on ``val`` and says so.
    ``notices`` are one-line messages for the user (e.g. a fallback taken).
    """

    train: Dataset
    val: Dataset
    test: Dataset | None = None
    notices: list[str] = field(default_factory=list)

    @property
    def classes(self) -> Sequence[str]:
        return self.train.classes

    @property
    def ignore_index(self) -> int:
        return self.train.ignore_index


class DatasetView(Dataset):
    """The items of ``base`` at ``indices``, in that order (e.g. the unlabelled pool).

    ``masks`` optionally replaces the ground truth of some ids (partial labels from an
    oracle); ids not in it read the base dataset's mask.
    """

    def __init__(
        self,
        base: Dataset,
        indices: Sequence[int],
        masks: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        self.base = base
        self.indices = list(indices)
        self.classes = base.classes
        self.ignore_index = base.ignore_index
        self.split = base.split
        self.ids = [base.ids[i] for i in self.indices]
        self._masks = dict(masks or {})

    @classmethod
    def load(cls, config: DataConfig) -> Splits:  # pragma: no cover - views are built, not loaded
        raise TypeError("DatasetView is built from another dataset, not loaded")

    def image(self, index: int) -> torch.Tensor:
        return self.base.image(self.indices[index])

    def image_size(self, index: int) -> tuple[int, int]:
        return self.base.image_size(self.indices[index])

    def mask(self, index: int) -> torch.Tensor:
        override = self._masks.get(self.ids[index])
        if override is not None:
            return override.to(torch.int64)  # kept compact (uint8) by the cycle
        return self.base.mask(self.indices[index])

    def has_mask(self, index: int) -> bool:
        return self.ids[index] in self._masks or self.base.has_mask(self.indices[index])


class CachedDataset(Dataset):
    """``base`` decoded once into memory (``--cache``): images as uint8, masks as uint8
    when the class ids fit, int64 otherwise. Reading an item is then a tensor copy."""

    def __init__(self, base: Dataset) -> None:
        self.base = base
        self.classes = base.classes
        self.ignore_index = base.ignore_index
        self.split = base.split
        self.ids = list(base.ids)
        small = max(len(base.classes), base.ignore_index) < 256
        self._images: list[torch.Tensor] = []
        self._masks: list[torch.Tensor | None] = []
        for i in range(len(base)):
            image = base.image(i)
            if image.is_floating_point():
                image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
            self._images.append(image.contiguous())
            if not base.has_mask(i):  # a pool frame nobody labelled yet
                self._masks.append(None)
                continue
            mask = base.mask(i)
            self._masks.append(mask.to(torch.uint8) if small else mask.to(torch.int64))

    @classmethod
    def load(cls, config: DataConfig) -> Splits:  # pragma: no cover - built, not loaded
        raise TypeError("CachedDataset wraps another dataset")

    def image(self, index: int) -> torch.Tensor:
        return self._images[index]

    def image_size(self, index: int) -> tuple[int, int]:
        height, width = self._images[index].shape[-2:]
        return int(height), int(width)

    def mask(self, index: int) -> torch.Tensor:
        mask = self._masks[index]
        if mask is None:
            return self.base.mask(index)  # the base dataset's own error for a frame without one
        return mask.to(torch.int64)

    def has_mask(self, index: int) -> bool:
        return self._masks[index] is not None
