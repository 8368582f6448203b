"""Seeds derived on the host from a round seed: one per pool item, one per pass.

Randomness that belongs to a pool item (its dropout masks in stochastic forward
passes) is seeded from the item's position, never from the order in which batches
happen to reach the device, so an item's score does not depend on the batch size
or on its batch neighbours. Pure Python integers: no tensor, no device sync.
"""

from __future__ import annotations

__all__ = ["item_seed", "pass_seed", "splitmix64"]

_M64 = 0xFFFFFFFFFFFFFFFF


def splitmix64(x: int) -> int:
    """The splitmix64 finaliser: a bijection of 64-bit integers that spreads nearby
    inputs over the whole range."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def item_seed(base: int, index: int) -> int:
    """A 63-bit seed for pool item ``index`` under round seed ``base``."""
    return splitmix64(splitmix64(base & _M64) ^ (index & _M64)) >> 1


def pass_seed(seed: int, pass_: int) -> int:
    """A 63-bit seed for stochastic pass ``pass_`` of an item seeded ``seed`` (what a
    model gives ``torch.Generator.manual_seed``)."""
    return splitmix64(splitmix64(seed & _M64) ^ (pass_ & _M64)) >> 1
