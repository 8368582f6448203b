"""How a strategy turns scores into a query: top-k, or a seeded stochastic batch.

``--strategy-opt selection=topk|power|softmax`` (with ``beta``) is an option of every
strategy. ``topk`` takes the highest scores. ``power`` and ``softmax`` draw the query
at random, without replacement, with probability proportional to ``score ** beta``
or ``exp(beta * score)`` (stochastic batch acquisition, Kirsch et al., TMLR 2023).

Both draws use the Gumbel-top-k trick: a candidate's *key* is its log-weight plus
Gumbel noise, and the query is the candidates with the highest keys. Ranking by
those keys samples without replacement exactly as drawing one candidate at a time
proportionally to its weight would, and it needs nothing but one key per candidate,
so the streaming region selection (:class:`segal_core.regions.RunningSelection`)
keeps it as it keeps plain scores.

The noise of a candidate is a hash of the round's seed, the candidate's pool position
and its region id (0 for a whole image): it does not depend on the batch the
candidate was scored in nor on the device, so streamed and one-shot selections
agree, and a resumed run (the same round seed) draws the same query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import SegalError

__all__ = [
    "SELECTIONS",
    "TOPK",
    "Selection",
    "gumbel_noise",
    "ranking",
    "round_seed",
    "selection_keys",
    "uniform_hash",
]

#: The values of ``--strategy-opt selection``.
SELECTIONS = ("topk", "power", "softmax")

_M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Selection:
    """A selection rule: ``kind`` in :data:`SELECTIONS` and its ``beta``."""

    kind: str = "topk"
    beta: float = 1.0

    @staticmethod
    def checked(kind: str, beta: float | None) -> Selection:
        """The rule for ``--strategy-opt selection=kind beta=beta``; a one-line
        :class:`SegalError` for a value that does not fit."""
        if kind not in SELECTIONS:
            raise SegalError(f"--strategy-opt selection={kind}: not one of {', '.join(SELECTIONS)}")
        if beta is not None:
            if kind == "topk":
                raise SegalError(
                    f"--strategy-opt beta={beta}: only used by selection=power or selection=softmax; "
                    "add one or drop beta"
                )
            if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
                raise SegalError(f"--strategy-opt beta={beta}: must be a finite number >= 0")
        return Selection(kind, 1.0 if beta is None else float(beta))

    @property
    def stochastic(self) -> bool:
        return self.kind != "topk"


#: The default rule.
TOPK = Selection()


def round_seed(generator: torch.Generator | None) -> int:
    """A 32-bit seed drawn from ``generator`` (the round's CPU generator; host only,
    no device synchronisation). ``None`` gives 0."""
    if generator is None:
        return 0
    return int(torch.randint(0, 2**32, (1,), generator=generator, dtype=torch.int64))


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for ``x`` in ``[0, 2**32)``, without int64 overflow: the
    16-bit halves of ``x`` times a 32-bit constant stay below ``2**48``."""
    low, high = x & 0xFFFF, x >> 16
    return (low * c + (((high * c) & 0xFFFF) << 16)) & _M32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer mixer (xorshift-multiply, constants from
    C. Wellons' hash prospector), on int64 tensors holding 32-bit values."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniform_hash(seed: int, items: torch.Tensor, regions: torch.Tensor | None = None) -> torch.Tensor:
    """float32 numbers in ``(0, 1)``, one per ``(items[i], regions[i])`` pair (int64
    tensors of one shape; ``regions`` ``None`` = 0), a function of ``seed`` and the
    pair only. Computed on the tensors' device; 24 random bits each."""
    device = items.device
    h = _mix32(torch.full_like(items, seed & _M32, device=device))
    h = _mix32(h ^ (items & _M32))
    h = _mix32(h ^ ((items >> 32) & _M32))
    h = _mix32(h if regions is None else h ^ (regions.to(device) & _M32))  # a whole image is region 0
    return ((h >> 8).to(torch.float32) + 0.5) * (1.0 / 2**24)


def gumbel_noise(seed: int, items: torch.Tensor, regions: torch.Tensor | None = None) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log(u))`` from :func:`uniform_hash`."""
    return -torch.log(-torch.log(uniform_hash(seed, items, regions)))


def selection_keys(
    scores: torch.Tensor,
    items: torch.Tensor,
    regions: torch.Tensor | None,
    rule: Selection,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(tier, key)`` of each candidate: the query is ranked by ``tier``
    ascending, then ``key`` descending, then by the order candidates were offered.

    * ``topk``: key = score.
    * ``softmax``: key = ``beta * score + G``.
    * ``power``: key = ``beta * log(score) + G`` for a positive score. A score of 0
      or below has weight 0: it comes after every positive one (tier 1), in random
      order among themselves (key = ``G``).

    NaN and ``-inf`` scores get tier 2 (ranked last; the region selection drops
    them). ``G`` is :func:`gumbel_noise` of ``(seed, item, region)``.
    """
    s = scores.float()
    bad = torch.isnan(s) | torch.isneginf(s)
    tier = bad.to(torch.int8) * 2
    if not rule.stochastic:
        return tier, torch.where(bad, -torch.inf, s)
    noise = gumbel_noise(seed, items.to(s.device), None if regions is None else regions.to(s.device))
    beta = rule.beta
    if rule.kind == "softmax":
        key = noise if beta == 0 else beta * s + noise
    else:  # power
        positive = s > 0
        tier = torch.where(positive | bad, tier, torch.ones_like(tier))
        logw = torch.log(torch.where(positive, s, 1.0))
        key = torch.where(positive, noise if beta == 0 else beta * logw + noise, noise)
    return tier, torch.where(bad, -torch.inf, key)


def ranking(tier: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Positions ranked by ``tier`` ascending, ``key`` descending, then position
    (two stable sorts, on the tensors' device)."""
    by_key = torch.sort(key, descending=True, stable=True).indices
    by_tier = torch.sort(tier[by_key], stable=True).indices
    return by_key[by_tier]
