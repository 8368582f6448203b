"""The ``synthetic`` dataset: procedural scenes generated in memory, no files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from segal_core import DataConfig, Dataset, SegalError, Splits
from segal_core.options import coerce_options

from .scenes import CLASSES, make_scene

__all__ = ["Synthetic", "SyntheticOptions"]

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
#: Limits of the options: what can work, refused beyond with the limit named.
MAX_SIZE = 4096  # a 4096 x 4096 scene is ~200 MB as a float tensor, per image of a batch
MAX_IMAGES = 1_000_000  # per split
MAX_NOISE = 1000.0


@dataclass(frozen=True)
class SyntheticOptions:
    """``--dataset-opt`` keys of ``synthetic``.

    :param size: image side in pixels (square images), 16..4096.
    :param n_train: images in the train split (the active-learning pool), 1..10**6.
    :param n_val: images in the val split, 1..10**6.
    :param n_test: images in the test split (0: no test split, val is used), 0..10**6.
    :param noise: per-pixel Gaussian noise (standard deviation, 0..255 scale), 0..1000.
    :param rare_rate: chance that an image holds the rare class ``gem``.
    :param data_seed: seed of the scenes, 0..2**63-1; default: the run's ``--seed``.
    """

    name: ClassVar[str] = "synthetic"

    size: int = 64
    n_train: int = 120
    n_val: int = 30
    n_test: int = 30
    noise: float = 14.0
    rare_rate: float = 0.25
    data_seed: int | None = None

    def __post_init__(self) -> None:
        flag = "--dataset-opt"
        if self.size < 16:
            raise SegalError(f"{flag} size={self.size}: expected at least 16 (pixels)")
        if self.size > MAX_SIZE:
            raise SegalError(f"{flag} size={self.size}: expected at most {MAX_SIZE} (pixels; larger needs absurd memory)")
        for key, low in (("n_train", 1), ("n_val", 1), ("n_test", 0)):
            if not low <= getattr(self, key) <= MAX_IMAGES:
                raise SegalError(f"{flag} {key}={getattr(self, key)}: expected {low} to {MAX_IMAGES} images")
        if not 0 <= self.noise <= MAX_NOISE:  # NaN fails too
            raise SegalError(f"{flag} noise={self.noise}: expected 0 to {MAX_NOISE:g}")
        if not 0.0 <= self.rare_rate <= 1.0:
            raise SegalError(f"{flag} rare_rate={self.rare_rate}: expected a chance in 0..1")
        if self.data_seed is not None and not 0 <= self.data_seed < 2**63:
            raise SegalError(f"{flag} data_seed={self.data_seed}: expected 0 to 2**63 - 1")


class Synthetic(Dataset):
    """Procedural scenes with 5 classes of very different sizes and frequencies.

    Each item is generated on demand from ``(seed, split, index)`` alone, so the data
    are the same for the same seed on any machine and in any DataLoader worker, and
    memory does not grow with the number of images. Ids are ``"<split>-<index>"``.
    """

    name: ClassVar[str] = "synthetic"
    aliases: ClassVar[tuple[str, ...]] = ("toy",)
    description: ClassVar[str] = "procedural 5-class scenes generated in memory (offline, no files)"
    requires_path: ClassVar[bool] = False

    def __init__(self, split: str, count: int, options: SyntheticOptions, seed: int) -> None:
        self.split = split
        self.classes = list(CLASSES)
        self.ids = [f"{split}-{i:05d}" for i in range(count)]
        self.options = options
        self.seed = seed % 2**63
        self._last: tuple[int, tuple[torch.Tensor, torch.Tensor]] | None = None

    @classmethod
    def load(cls, config: DataConfig) -> Splits:
        """The train/val/test splits sized by the options (see :class:`SyntheticOptions`)."""
        if config.num_classes not in (None, len(CLASSES)):
            raise SegalError(
                f"--num-classes {config.num_classes}: the synthetic dataset has {len(CLASSES)} classes "
                f"({', '.join(CLASSES)}); leave --num-classes out"
            )
        options = SyntheticOptions(**coerce_options(SyntheticOptions, config.options, "--dataset-opt"))
        seed = config.seed if options.data_seed is None else options.data_seed
        test = cls("test", options.n_test, options, seed) if options.n_test else None
        notices = [] if test else ["synthetic: n_test=0, so there is no test split; val is used"]
        return Splits(
            train=cls("train", options.n_train, options, seed),
            val=cls("val", options.n_val, options, seed),
            test=test,
            notices=notices,
        )

    def item(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image uint8 [3, S, S], mask int64 [S, S])`` of item ``index``."""
        if not 0 <= index < len(self.ids):
            raise IndexError(f"{self.split} index {index} out of range ({len(self.ids)} items)")
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        rng = np.random.default_rng([self.seed, _SPLIT_CODES[self.split], index])
        image, mask = make_scene(
            rng, self.options.size, noise=self.options.noise, rare_rate=self.options.rare_rate
        )
        pair = torch.from_numpy(image), torch.from_numpy(mask)
        self._last = (index, pair)
        return pair

    def image_size(self, index: int) -> tuple[int, int]:
        """Every scene is ``size`` x ``size``: known without generating it."""
        return self.options.size, self.options.size

    def image(self, index: int) -> torch.Tensor:
        return self.item(index)[0].clone()

    def mask(self, index: int) -> torch.Tensor:
        return self.item(index)[1].clone()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.item(index)
        return image.clone(), mask.clone()
