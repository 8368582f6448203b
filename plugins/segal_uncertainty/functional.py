"""Per-pixel uncertainty kernels on logits ``[B, C, H, W]`` -> ``[B, H, W]``.

All three work from the logits shifted by their per-pixel maximum, ``z = l - max l``
(so ``z <= 0`` and the winning class has ``z = 0``), ``e = exp(z)``, and
``s = sum of e over every class but the winner``. Then, exactly,

* ``1 - p_max = s / (1 + s)``
* ``1 - (p_1 - p_2) = (s + e_2) / (1 + s)`` with ``e_2`` the runner-up's ``e``
* ``-sum p log p = log1p(s) + sum(e * -z) / (1 + s)``

Every term is non-negative, so nothing cancels: the scores keep full float32
relative precision even for confident pixels (where ``1 - p`` or ``log(sum exp)``
computed naively round to zero). This is the log-softmax with its normaliser
``log(1 + s)`` taken by ``log1p``; no epsilon is added anywhere. Adding a constant
to a pixel's logits does not change ``z``, hence any score. Non-finite logits give
non-finite scores, which the reduction then ignores.
"""

from __future__ import annotations

import torch

__all__ = ["entropy", "least_confidence", "margin"]


def _shifted(logits: torch.Tensor, *, keep_z: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``z``, ``e`` with the winner's entry zeroed, and ``s`` (see the module doc).

    Works in place on its own buffers: without ``keep_z``, ``z`` is overwritten by
    ``e`` and must not be used."""
    if logits.dim() != 4:
        raise ValueError(f"logits must be [B, C, H, W], got shape {tuple(logits.shape)}")
    top, winner = logits.max(dim=1, keepdim=True)
    z = logits - top
    if keep_z:
        # a class with logit -inf has probability 0: a finite z makes its e * z exactly 0
        z.clamp_(min=torch.finfo(z.dtype).min)
        e = torch.exp(z)
    else:
        e = z.exp_()
    e.scatter_(1, winner, 0.0)  # exactly one winner per pixel, even on ties
    return z, e, e.sum(dim=1)


def least_confidence(logits: torch.Tensor) -> torch.Tensor:
    """``1 - max_c p_c`` per pixel, in ``[0, 1 - 1/C]``."""
    _, _, s = _shifted(logits, keep_z=False)
    return s / (1.0 + s)


def margin(logits: torch.Tensor) -> torch.Tensor:
    """``1 - (p_1 - p_2)`` per pixel (best minus runner-up probability), in ``[0, 1]``;
    ``0`` when there is a single class."""
    _, e, s = _shifted(logits, keep_z=False)
    runner_up = e.amax(dim=1)
    return (s + runner_up) / (1.0 + s)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy ``-sum_c p_c log p_c`` per pixel (nats), in ``[0, log C]``."""
    z, e, s = _shifted(logits, keep_z=True)
    weighted = z.mul_(e).sum(dim=1)  # sum of e * z, <= 0
    return torch.log1p(s) - weighted / (1.0 + s)
