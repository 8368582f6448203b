"""Test models with the optional capabilities: embeddings and stochastic passes."""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence

import torch

from segal_core import ModelConfig
from segal_core.seeds import pass_seed
from segal_core.testing import TinyModel


class CapableModel(TinyModel):
    """:class:`TinyModel` plus :meth:`embeddings` (the per-image mean of its inputs
    and logits: ``3 + C`` numbers) and :meth:`stochastic_logits` (dropout with
    probability ``p`` on the inputs, masks seeded per row and pass; ``p = 0`` gives
    identical passes).

    ``alive`` counts, at each pass, how many earlier passes are still referenced (a
    strategy that keeps passes shows here); ``max_alive`` is its largest value.
    """

    def __init__(self, num_classes: int = 4, *, p: float = 0.5, seed: int = 3, scale: float = 1.0) -> None:
        super().__init__(ModelConfig(num_classes=num_classes, device="cpu", seed=seed, options={"scale": scale}))
        self.p = p
        self.max_alive = 0
        self.passes_made = 0

    def embeddings(self, images: torch.Tensor) -> torch.Tensor:
        x = self._inputs(images)
        with torch.inference_mode():
            return torch.cat([x.mean(dim=(2, 3)), self.net(x).mean(dim=(2, 3))], dim=1)

    def logits_and_embeddings(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logits(images), self.embeddings(images)

    def stochastic_logits(self, images: torch.Tensor, passes: int, seeds: Sequence[int]) -> Iterator[torch.Tensor]:
        x = self._inputs(images)
        made: list[weakref.ref[torch.Tensor]] = []
        gen = torch.Generator()
        for step in range(passes):
            alive = sum(ref() is not None for ref in made)
            self.max_alive = max(self.max_alive, alive)
            keep = torch.empty(x.shape, dtype=torch.bool)
            for row, seed in enumerate(seeds):
                gen.manual_seed(pass_seed(seed, step))
                keep[row] = torch.rand(x.shape[1:], generator=gen) >= self.p
            with torch.inference_mode():
                out = self.net(x * keep / (1.0 - self.p))
            made.append(weakref.ref(out))
            self.passes_made += 1
            yield out
            del out


class EmbeddingsOnly(TinyModel):
    """Embeddings that are the images' mean colour (3 numbers) and nothing else."""

    def embeddings(self, images: torch.Tensor) -> torch.Tensor:
        return self._inputs(images).mean(dim=(2, 3))
