"""Dropout on the input of an smp network's segmentation head (``--model-opt dropout=p``).

The smp architectures have no dropout before their head. With ``dropout > 0`` the
model adds one, as a forward pre-hook on ``segmentation_head`` (no module is
inserted, so checkpoints keep their keys and load with or without it):

* in training, each activation is zeroed with probability ``p`` and the rest scaled
  by ``1 / (1 - p)``, from a generator seeded with the model's seed (training stays
  reproducible);
* in evaluation, nothing is dropped (plain ``logits``), unless the model *arms* the
  hook for stochastic passes (MC dropout): then row ``i`` of the batch is masked from
  ``seeds[i]`` alone, so an image's passes do not depend on its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from segal_core import SegalError

__all__ = ["HeadDropout"]


class HeadDropout:
    """The pre-hook's state: probability, training generator, armed row seeds."""

    def __init__(self, p: float, seed: int) -> None:
        self.p = p
        self.seed = seed
        self._train: dict[torch.device, torch.Generator] = {}
        self._rows: torch.Generator | None = None
        self._seeds: list[int] | None = None
        self.rows_seen = 0

    @classmethod
    def attach(cls, network: nn.Module, p: float, seed: int) -> HeadDropout:
        """Register on ``network.segmentation_head``; a one-line error for an
        architecture without one."""
        head = getattr(network, "segmentation_head", None)
        if not isinstance(head, nn.Module):
            raise SegalError(
                f"--model-opt dropout={p}: {type(network).__name__} has no segmentation_head to put dropout before"
            )
        hook = cls(p, seed)
        head.register_forward_pre_hook(hook)
        return hook

    def arm(self, seeds: Sequence[int]) -> None:
        """Mask the rows of the next forward call(s) from ``seeds`` (one per row)."""
        self._seeds = list(seeds)
        self.rows_seen = 0

    def disarm(self) -> None:
        self._seeds = None

    def _generator(self, device: torch.device, seed: int) -> torch.Generator:
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        return gen

    def _keep(self, shape: torch.Size, device: torch.device, gen: torch.Generator) -> torch.Tensor:
        return torch.rand(shape, generator=gen, device=device) >= self.p

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        x = args[0]
        if module.training:
            gen = self._train.get(x.device)
            if gen is None:
                gen = self._train[x.device] = self._generator(x.device, self.seed)
            keep = self._keep(x.shape, x.device, gen)
        elif self._seeds is not None:
            rows = x.shape[0]
            seeds = self._seeds[self.rows_seen : self.rows_seen + rows]
            if len(seeds) != rows:
                raise RuntimeError(f"MC dropout: a forward pass of {rows} rows with {len(seeds)} seeds armed")
            self.rows_seen += rows
            if self._rows is None or self._rows.device != x.device:
                self._rows = torch.Generator(device=x.device)
            keep = torch.empty(x.shape, dtype=torch.bool, device=x.device)
            for row, seed in enumerate(seeds):
                self._rows.manual_seed(seed)
                keep[row] = self._keep(x.shape[1:], x.device, self._rows)
        else:
            return None
        return (x * keep.to(x.dtype) * (1.0 / (1.0 - self.p)), *args[1:])
