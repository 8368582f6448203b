"""``bald`` and ``variance``: disagreement between stochastic forward passes (MC dropout).

Both take the passes one at a time from the model capability
:meth:`segal_core.Model.stochastic_logits` and fold each into running sums of one
batch (:class:`BaldSums`, :class:`VarianceSums`), so memory is flat in the number of
passes; :class:`segal_core.MonteCarloStrategy` streams the pool, reduces the pixels
per image or per region and selects.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from segal_core.strategy import MonteCarloStrategy

__all__ = ["BALD", "BaldSums", "MCVariance", "VarianceSums", "bald", "variance"]


def _probs(logits: torch.Tensor) -> torch.Tensor:
    if logits.dim() != 4:
        raise ValueError(f"logits must be [B, C, H, W], got shape {tuple(logits.shape)}")
    return torch.softmax(logits.float(), dim=1)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    """``-sum_c p_c log p_c`` over dim 1 (nats); ``0 log 0 = 0``."""
    return -torch.special.xlogy(probs, probs).sum(dim=1)


class BaldSums:
    """Running sums of one batch's passes for BALD: ``sum_t p_t`` ``[B, C, H, W]``
    and ``sum_t H[p_t]`` ``[B, H, W]``.

    ``BALD = H[mean_t p_t] - mean_t H[p_t]``, the mutual information between the
    prediction and the weights: 0 where every pass agrees, at most ``log C``. Both
    entropies use the same formula, so identical passes score exactly 0.
    """

    def __init__(self) -> None:
        self.passes = 0
        self._probs: torch.Tensor | None = None
        self._entropy: torch.Tensor | None = None

    def add(self, logits: torch.Tensor) -> None:
        """Fold one pass's logits ``[B, C, H, W]`` into the sums."""
        probs = _probs(logits)
        entropy = _entropy(probs)
        if self._probs is None or self._entropy is None:
            self._probs, self._entropy = probs, entropy
        else:
            if probs.shape != self._probs.shape:
                raise ValueError(f"pass {self.passes + 1} has shape {tuple(probs.shape)}, the first {tuple(self._probs.shape)}")
            self._probs += probs
            self._entropy += entropy
        self.passes += 1

    def scores(self) -> torch.Tensor:
        """Per-pixel BALD ``[B, H, W]`` (float32), clamped at 0 against rounding;
        NaN where a pass had a non-finite logit."""
        if self._probs is None or self._entropy is None:
            raise ValueError("no pass was added")
        mutual = _entropy(self._probs / self.passes) - self._entropy / self.passes
        return mutual.clamp(min=0.0)


class VarianceSums:
    """Running sums of one batch's passes for the variance of the class
    probabilities across passes, shifted by the first pass for precision:
    ``d_t = p_t - p_1``, ``sum_t d_t`` and ``sum_t d_t ** 2`` (``[B, C, H, W]`` each).

    Score per pixel: the mean over classes of ``Var_t[p_t,c] = mean(d**2) -
    mean(d)**2``, in ``[0, 1/4]``; 0 where every pass agrees.
    """

    def __init__(self) -> None:
        self.passes = 0
        self._first: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None
        self._squares: torch.Tensor | None = None

    def add(self, logits: torch.Tensor) -> None:
        probs = _probs(logits)
        if self._first is None:
            self._first = probs
            self._sum = torch.zeros_like(probs)
            self._squares = torch.zeros_like(probs)
        else:
            assert self._sum is not None and self._squares is not None
            if probs.shape != self._first.shape:
                raise ValueError(f"pass {self.passes + 1} has shape {tuple(probs.shape)}, the first {tuple(self._first.shape)}")
            delta = probs.sub_(self._first)
            self._sum += delta
            self._squares += delta.square_()
        self.passes += 1

    def scores(self) -> torch.Tensor:
        """Per-pixel variance ``[B, H, W]`` (float32), clamped at 0."""
        if self._sum is None or self._squares is None:
            raise ValueError("no pass was added")
        mean = self._sum / self.passes
        var = self._squares / self.passes - mean.square()
        # a pass with a non-finite logit makes its pixel NaN (then ignored), not a
        # NaN first pass silently cancelled by the shift
        var = torch.where(torch.isfinite(self._first).all(dim=1, keepdim=True), var, torch.nan)  # type: ignore[arg-type]
        return var.clamp(min=0.0).mean(dim=1)


def bald(passes: Iterable[torch.Tensor]) -> torch.Tensor:
    """Per-pixel BALD ``[B, H, W]`` from passes (each ``[B, C, H, W]``), folded one at a
    time; a ``[T, B, C, H, W]`` tensor works too."""
    sums = BaldSums()
    for logits in passes:
        sums.add(logits)
    return sums.scores()


def variance(passes: Iterable[torch.Tensor]) -> torch.Tensor:
    """Per-pixel variance of the class probabilities across passes ``[B, H, W]``."""
    sums = VarianceSums()
    for logits in passes:
        sums.add(logits)
    return sums.scores()


class BALD(MonteCarloStrategy):
    """BALD (Houlsby et al. 2011) from MC dropout (Gal, Islam & Ghahramani 2017), per
    pixel: the mutual information between the prediction and the network's weights,
    ``H[mean_t p_t] - mean_t H[p_t]`` over ``passes`` stochastic passes, reduced per
    image (or region). High where the passes disagree, not merely where each is
    unsure. Needs a model with stochastic passes (smp: ``--model-opt dropout=0.2``).

    :param passes: stochastic forward passes per image (``--strategy-opt passes=16``).
    :param reduction: ``mean``, ``max`` or ``top_q``; :param q: for ``top_q``.
    """

    name = "bald"
    aliases = ("BALD", "mc_dropout")
    description = "BALD mutual information over MC-dropout passes, reduced per image"

    def pass_scores(self, passes: Iterable[torch.Tensor]) -> torch.Tensor:
        return bald(passes)


class MCVariance(MonteCarloStrategy):
    """The variance of the class probabilities across MC-dropout passes, averaged
    over classes, per pixel, reduced per image (or region).

    :param passes: stochastic forward passes per image (``--strategy-opt passes=16``).
    :param reduction: ``mean``, ``max`` or ``top_q``; :param q: for ``top_q``.
    """

    name = "variance"
    aliases = ("mc_variance", "MCVariance")
    description = "variance of the softmax across MC-dropout passes, reduced per image"

    def pass_scores(self, passes: Iterable[torch.Tensor]) -> torch.Tensor:
        return variance(passes)
