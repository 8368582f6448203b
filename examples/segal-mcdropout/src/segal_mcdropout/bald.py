"""BALD per pixel from stochastic passes, accumulated one pass at a time.

For ``T`` stochastic forward passes with softmax ``p_t`` at a pixel, the BALD score is
the mutual information between the prediction and the network weights:

    ``BALD = H[mean_t p_t] - mean_t H[p_t]``

(the entropy of the mean prediction minus the mean entropy of the predictions). It is
``0`` when every pass agrees and at most ``log C``. :class:`PassAccumulator` keeps two
running sums per batch (probabilities ``[B, C, H, W]`` and entropies ``[B, H, W]``), so
memory does not grow with ``T``.
"""

from __future__ import annotations

import torch

__all__ = ["PassAccumulator", "bald", "entropy_from_probs"]


def entropy_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """``-sum_c p_c log p_c`` over dim 1 (nats); ``0 log 0 = 0``, NaN stays NaN."""
    return -torch.special.xlogy(probs, probs).sum(dim=1)


class PassAccumulator:
    """Running sums of one batch's stochastic passes.

    Call :meth:`add` with each pass's logits ``[B, C, H, W]``, then :meth:`scores`
    for the per-pixel BALD ``[B, H, W]`` (float32, on the logits' device). A pixel
    with a non-finite logit in any pass gets a non-finite score (which the
    reduction to one score per image then ignores).
    """

    def __init__(self) -> None:
        self.passes = 0
        self._probs: torch.Tensor | None = None
        self._entropy: torch.Tensor | None = None

    def add(self, logits: torch.Tensor) -> None:
        """Fold one pass's logits ``[B, C, H, W]`` into the sums."""
        if logits.dim() != 4:
            raise ValueError(f"logits must be [B, C, H, W], got shape {tuple(logits.shape)}")
        probs = torch.softmax(logits.float(), dim=1)
        # the same formula as for the mean below, so one pass scores exactly 0
        entropy = entropy_from_probs(probs)
        if self._probs is None or self._entropy is None:
            self._probs, self._entropy = probs, entropy
        else:
            if probs.shape != self._probs.shape:
                raise ValueError(
                    f"pass {self.passes + 1} gave logits of shape {tuple(logits.shape)}, "
                    f"the first pass {tuple(self._probs.shape)}"
                )
            self._probs += probs
            self._entropy += entropy
        self.passes += 1

    def scores(self) -> torch.Tensor:
        """Per-pixel BALD ``[B, H, W]``, clamped at 0 against rounding."""
        if self._probs is None or self._entropy is None:
            raise ValueError("no pass was added")
        mean_probs = self._probs / self.passes
        mutual = entropy_from_probs(mean_probs) - self._entropy / self.passes
        return mutual.clamp(min=0.0)


def bald(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel BALD ``[B, H, W]`` from stacked passes ``[T, B, C, H, W]``.

    The reference form of :class:`PassAccumulator` (which never holds all passes).
    """
    if logits.dim() != 5:
        raise ValueError(f"logits must be [T, B, C, H, W], got shape {tuple(logits.shape)}")
    acc = PassAccumulator()
    for one in logits:
        acc.add(one)
    return acc.scores()
