"""Dropout at inference, with masks seeded per sample, added through a forward pre-hook.

segmentation_models_pytorch networks have no dropout at inference, so MC dropout adds
one: a forward pre-hook on the segmentation head (or the layer the user names) zeroes
each input activation with probability ``p`` and scales the rest by ``1 / (1 - p)``.
The hook is removed when the ``with`` block ends, even on an error, so the model is
left exactly as it was.

Masks are drawn per sample from a seed the caller gives for each row of the batch
(see :func:`mask_seed`): the same image in the same pass gets the same mask whatever
batch it is scored in, so scores do not depend on the batch size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from segal_core import Model, SegalError

__all__ = ["SeededDropout", "find_head", "find_network", "mask_seed", "mc_dropout"]

#: Attributes under which model plugins expose their ``torch.nn.Module``.
NETWORK_ATTRIBUTES = ("network", "net")
_MASK = (1 << 63) - 1


def mask_seed(base: int, index: int, pass_: int) -> int:
    """A 63-bit seed for the dropout mask of pool item ``index`` in pass ``pass_``
    (splitmix64 of the three, so nearby inputs give unrelated seeds)."""
    x = (base * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + pass_ * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & _MASK


def find_network(model: Model) -> nn.Module:
    """The model's ``torch.nn.Module`` (``model.network`` or ``model.net``)."""
    for attribute in NETWORK_ATTRIBUTES:
        network = getattr(model, attribute, None)
        if isinstance(network, nn.Module):
            return network
    raise SegalError(
        f"--strategy bald: model {type(model).__name__!r} exposes no torch network as "
        f"{' or '.join('model.' + a for a in NETWORK_ATTRIBUTES)}; use a model plugin that does"
    )


def find_head(network: nn.Module, layer: str = "") -> nn.Module:
    """The module whose input gets dropout: ``layer`` (a dotted submodule name) when
    given, else ``segmentation_head`` (smp networks), else the last module with
    parameters and no children."""
    if layer:
        try:
            return network.get_submodule(layer)
        except AttributeError:
            names = [n for n, m in network.named_modules() if n and not any(m.children())]
            shown = ", ".join(names[-5:]) or "none"
            raise SegalError(
                f"--strategy-opt layer={layer}: no such submodule in {type(network).__name__} "
                f"(its last layers: {shown})"
            ) from None
    head = getattr(network, "segmentation_head", None)
    if isinstance(head, nn.Module):
        return head
    leaves = [m for m in network.modules() if not any(m.children()) and any(True for _ in m.parameters(recurse=False))]
    if not leaves:
        raise SegalError(f"--strategy bald: {type(network).__name__} has no layer with weights to apply dropout to")
    return leaves[-1]


class SeededDropout:
    """The pre-hook's state: the seeds of the rows of the next forward passes.

    :meth:`arm` sets one seed per row; each forward through the head consumes as many
    seeds as its batch has rows (a model may split a batch into chunks).
    """

    def __init__(self, p: float) -> None:
        self.p = p
        self._seeds: list[int] = []
        self._cursor = 0
        self._generators: dict[torch.device, torch.Generator] = {}

    def arm(self, seeds: Sequence[int]) -> None:
        """Seeds for the rows of the next forward call(s)."""
        self._seeds = list(seeds)
        self._cursor = 0

    def check_consumed(self) -> None:
        """Raise when the head did not see exactly the armed rows (a compiled network
        skips hooks added after compilation, so no dropout would happen)."""
        if self._cursor == 0 and self._seeds:
            raise SegalError(
                "--strategy bald: the dropout hook never ran (a compiled network? "
                "drop --model-opt compile=true)"
            )
        if self._cursor != len(self._seeds):
            raise RuntimeError(
                f"MC dropout: the head saw {self._cursor} rows, expected {len(self._seeds)}; "
                "the model's logits() did not run the network once on the whole batch"
            )

    def _generator(self, device: torch.device) -> torch.Generator:
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            self._generators[device] = gen
        return gen

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        rows = x.shape[0]
        seeds = self._seeds[self._cursor : self._cursor + rows]
        if len(seeds) != rows:
            raise RuntimeError(f"MC dropout: a forward pass of {rows} rows with {len(seeds)} seeds left")
        self._cursor += rows
        gen = self._generator(x.device)
        keep = torch.empty(x.shape, dtype=torch.bool, device=x.device)
        for row, seed in enumerate(seeds):
            gen.manual_seed(seed)
            keep[row] = torch.rand(x.shape[1:], generator=gen, device=x.device) >= self.p
        return (x * keep / (1.0 - self.p), *args[1:])


@contextmanager
def mc_dropout(network: nn.Module, p: float, layer: str = "") -> Iterator[SeededDropout]:
    """Dropout with probability ``p`` on the input of the network's head (see
    :func:`find_head`) inside the ``with`` block; ``arm`` the yielded object before
    each forward pass."""
    dropout = SeededDropout(p)
    handle = find_head(network, layer).register_forward_pre_hook(dropout)
    try:
        yield dropout
    finally:
        handle.remove()
