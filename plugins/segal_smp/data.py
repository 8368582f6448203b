"""Batches for training and evaluation: augmentation, padding, normalisation.

Randomness is seeded without the global RNG: the batch sampler draws the order
and one seed per sample from a ``torch.Generator``; a sample's augmentation (crop,
flip, ...: an albumentations transform, see :mod:`segal_smp.augment`) is seeded from
its own seed, so it does not depend on which DataLoader worker loads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Sampler

from segal_core import Dataset

from .augment import Augmentation, model_augmentation

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentedDataset",
    "DistributedEpochBatchSampler",
    "EpochBatchSampler",
    "PadCollate",
    "IndexedDataset",
    "imagenet_stats",
    "network_inputs",
    "normalise",
    "pad_masks_to_multiple",
    "pad_to_multiple",
]

#: ImageNet statistics, used for every encoder (pretrained or not).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: A batch: images ``[B, 3, H, W]`` (uint8 or float) and masks ``[B, H, W]`` (int64).
Batch = tuple[torch.Tensor, torch.Tensor]


def imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std as ``[1, 3, 1, 1]`` float32 tensors on ``device`` (made
    once per model, so no small host-to-device copy happens per batch)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1).to(device)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1).to(device)
    return mean, std


def normalise(images: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """uint8 (0..255) or float (0..1) images -> normalised float32 on the device of
    ``stats`` (from :func:`imagenet_stats`).

    The copy is non-blocking (the batch is pinned on CUDA) and the conversion runs
    on the device, so only uint8 crosses the bus.
    """
    mean, std = stats
    x = images.to(mean.device, non_blocking=True)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return (x - mean) / std


def network_inputs(
    images: torch.Tensor,
    stats: tuple[torch.Tensor, torch.Tensor],
    multiple: int,
    memory_format: torch.memory_format,
) -> torch.Tensor:
    """What the network eats: normalised (:func:`normalise`), padded to ``multiple``
    (:func:`pad_to_multiple`), in ``memory_format`` (channels-last on CUDA)."""
    x = pad_to_multiple(normalise(images, stats), multiple)
    return x.contiguous(memory_format=memory_format)


def _padding(height: int, width: int, multiple: int) -> tuple[int, int]:
    return (-height) % multiple, (-width) % multiple


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``[B, C, H, W]`` at the bottom and right so H and W are multiples of
    ``multiple``: reflected where the image is large enough, zeros (the mean colour,
    once normalised) otherwise."""
    ph, pw = _padding(images.shape[-2], images.shape[-1], multiple)
    if ph == 0 and pw == 0:
        return images
    mode = "reflect" if ph < images.shape[-2] and pw < images.shape[-1] else "constant"
    return F.pad(images, (0, pw, 0, ph), mode=mode)


def pad_masks_to_multiple(masks: torch.Tensor, multiple: int, ignore_index: int) -> torch.Tensor:
    """Pad ``[B, H, W]`` masks like :func:`pad_to_multiple`, with ``ignore_index``."""
    ph, pw = _padding(masks.shape[-2], masks.shape[-1], multiple)
    if ph == 0 and pw == 0:
        return masks
    return F.pad(masks, (0, pw, 0, ph), value=ignore_index)


class AugmentedDataset(torch.utils.data.Dataset[Batch]):
    """Training items: indexed by ``(position, seed)`` pairs from
    :class:`EpochBatchSampler`, each augmented by ``augmentation`` with its own seed.

    A user's transform (a pipeline file or the hook's) is tried once on the first
    sample when the dataset is made, so a broken one fails in this process as one
    clear line instead of inside a DataLoader worker.
    """

    def __init__(self, data: Dataset, augmentation: Augmentation) -> None:
        self.data = data
        self.augmentation = augmentation
        if augmentation.user and len(data) > 0:
            augmentation.probe(*data[0])  # a user's transform: fail here, not in a worker

    @classmethod
    def for_model(cls, data: Dataset, model: Any) -> AugmentedDataset:
        """``data`` augmented as ``model`` trains (:func:`~segal_smp.augment.model_augmentation`)."""
        return cls(data, model_augmentation(model))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> Batch:
        index, seed = key
        image, mask = self.data[index]
        return self.augmentation(image, mask, seed)


class IndexedDataset(torch.utils.data.Dataset[Batch]):
    """Evaluation items: the dataset's own ``(image, mask)`` pairs, by position."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Batch:
        return self.data[index]


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Shuffled batches of ``(position, sample seed)`` for one epoch after another.

    Unless ``batch_size`` is 1, a batch never holds a single sample (the pooling
    branches of PSPNet and DeepLabV3 cannot batch-normalise one): a lone last sample
    joins the batch before it, and a one-sample dataset is drawn twice (two crops).
    """

    def __init__(self, size: int, batch_size: int, generator: torch.Generator) -> None:
        self.size = size
        self.batch_size = max(1, batch_size)
        self.generator = generator

    def _count(self) -> int:
        return 2 if self.size == 1 and self.batch_size > 1 else self.size

    def _bounds(self) -> list[tuple[int, int]]:
        n, step = self._count(), self.batch_size
        bounds = [(start, min(start + step, n)) for start in range(0, n, step)]
        if step > 1 and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
            bounds[-2:] = [(bounds[-2][0], n)]
        return bounds

    def __len__(self) -> int:
        return len(self._bounds())

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = torch.randperm(self.size, generator=self.generator).tolist()
        order = (order * 2)[: self._count()]
        seeds = torch.randint(2**62, (len(order),), generator=self.generator).tolist()
        pairs = list(zip(order, seeds, strict=True))
        for start, end in self._bounds():
            yield pairs[start:end]


class DistributedEpochBatchSampler(EpochBatchSampler):
    """:class:`EpochBatchSampler` for one rank of ``world_size`` (``torchrun``).

    Every rank draws the same shuffled order (the same seeded generator), cut into
    *global* batches of ``batch_size x world_size``; rank ``r`` takes every
    ``world_size``-th item of each from its ``r``-th. An epoch is a pass over the
    labelled set and its length (``len``) counts global batches, i.e. optimiser
    steps, so the schedule (``epochs``, ``min_steps``) counts global steps. The order
    is padded by repeating its start to a multiple of ``world_size`` (every rank gets
    the same number of items in every step; at least two with ``batch_size`` > 1).
    """

    def __init__(self, size: int, batch_size: int, generator: torch.Generator, rank: int, world_size: int) -> None:
        super().__init__(size, batch_size, generator)
        self.rank = rank
        self.world_size = max(1, world_size)

    def _count(self) -> int:
        per_rank = -(-self.size // self.world_size)
        return self.world_size * max(per_rank, 2 if self.batch_size > 1 else 1)

    def _bounds(self) -> list[tuple[int, int]]:
        n, step, w = self._count(), self.batch_size * self.world_size, self.world_size
        bounds = [(start, min(start + step, n)) for start in range(0, n, step)]
        if self.batch_size > 1 and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == w:
            bounds[-2:] = [(bounds[-2][0], n)]  # one item per rank would be a batch of one
        return bounds

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = torch.randperm(self.size, generator=self.generator).tolist()
        count = self._count()
        order = (order * (count // max(1, self.size) + 1))[:count]
        seeds = torch.randint(2**62, (len(order),), generator=self.generator).tolist()
        pairs = list(zip(order, seeds, strict=True))
        for start, end in self._bounds():
            yield pairs[start + self.rank : end : self.world_size]


def _as_unit_float(image: torch.Tensor) -> torch.Tensor:
    return image.float() / 255.0 if image.dtype == torch.uint8 else image.float()


class PadCollate:
    """Stack items of possibly different sizes, padding each to the batch's largest
    height and width: images with 0, masks with ``ignore_index``. A batch mixing
    uint8 and float images is converted to float in 0..1."""

    def __init__(self, ignore_index: int) -> None:
        self.ignore_index = ignore_index

    def __call__(self, items: Sequence[Batch]) -> Batch:
        if any(image.dtype != items[0][0].dtype for image, _ in items):
            # a batch mixing uint8 and float images: all float in 0..1
            items = [(_as_unit_float(image), mask) for image, mask in items]
        height = max(int(m.shape[-2]) for _, m in items)
        width = max(int(m.shape[-1]) for _, m in items)
        images, masks = [], []
        for image, mask in items:
            ph, pw = height - mask.shape[-2], width - mask.shape[-1]
            if ph or pw:
                image = F.pad(image, (0, pw, 0, ph), value=0)
                mask = F.pad(mask, (0, pw, 0, ph), value=self.ignore_index)
            images.append(image)
            masks.append(mask.long())
        return torch.stack(images), torch.stack(masks)
