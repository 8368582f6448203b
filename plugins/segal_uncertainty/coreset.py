"""``coreset``: greedy k-center over image embeddings (Sener & Savarese, ICLR 2018).

The query is spread over the embedding space instead of piled on one confusing
scene: each pick is the pool image farthest from every centre so far (the labelled
images, then the earlier picks). With ``base=entropy`` (or ``margin``,
``least_confidence``) the k-center runs among the ``m x k`` most uncertain images
only: diverse *and* uncertain, the hybrid most users want.

Cost: the embeddings come from the same single pass over the pool as the base
scores (the smp models: the encoder's deepest feature map, averaged over height and
width) and stay on the device as float16: ``2 x D`` bytes per pool image, 1.0 GB per
million images for ``D = 512`` (resnet18/34), 4.1 GB for ``D = 2048`` (resnet50). The
labelled images, the initial centres, cost one more pass (through the encoder only).
The greedy loop is ``k`` distance sweeps over the candidates, on the device, without
a host synchronisation.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from segal_core import PoolContext, SegalError, Strategy
from segal_core.model import EMBEDDINGS
from segal_core.scoring import embed_pool
from segal_core.selection import TOPK
from segal_core.strategy import REDUCTIONS, reduce_pixels, select_positions

from . import functional

__all__ = ["BASES", "CoreSet", "k_center", "nearest_distances"]

#: Values of ``--strategy-opt base`` (``none``: k-center over the whole pool).
BASES = ("none", "entropy", "margin", "least_confidence")
#: Pool rows per distance chunk, and centres per block: the float32 temporaries stay
#: at ``CHUNK x D`` and ``CHUNK x CENTRES`` (64 MiB).
CHUNK = 16384
CENTRES = 1024


def nearest_distances(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """float32 ``[N]``: each point's Euclidean distance to its nearest centre
    (``points`` ``[N, D]``, ``centres`` ``[M, D]``, any float dtype; computed in
    float32, chunked over both so temporaries stay at ``CHUNK x CENTRES``). No centre:
    ``+inf``."""
    out = torch.full((points.shape[0],), torch.inf, device=points.device)
    for start in range(0, centres.shape[0], CENTRES):
        block = centres[start : start + CENTRES].to(points.device, torch.float32)
        for row in range(0, points.shape[0], CHUNK):
            near = torch.cdist(points[row : row + CHUNK].float(), block).amin(dim=1)
            torch.minimum(out[row : row + CHUNK], near, out=out[row : row + CHUNK])
    return out


def _distance_to(points: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """float32 ``[N]``: distance of every point to one centre ``[1, D]`` (a device
    tensor picked by index: no host synchronisation)."""
    c = centre.float()
    parts = [(chunk.float() - c).square_().sum(dim=1) for chunk in points.split(CHUNK)]
    return torch.cat(parts).sqrt_() if parts else torch.empty(0, device=points.device)


def k_center(points: torch.Tensor, nearest: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy k-center: ``k`` times, pick the point farthest from its nearest centre
    (ties: the lowest position) and make it a centre.

    :param points: ``[N, D]`` embeddings (float16 is fine; distances in float32).
    :param nearest: ``[N]`` float32 distance of each point to the initial centres
        (``+inf`` without any).
    :returns: ``picks`` (int64 ``[k]``, in pick order), ``radius`` (float32 ``[k]``:
        each pick's distance to the centres before it, non-increasing: the covering
        radius of the centres so far) and ``nearest`` after the picks (a picked
        point's own entry is ``-inf``).
    """
    if not 0 <= k <= points.shape[0]:
        raise ValueError(f"cannot pick {k} of {points.shape[0]} points")
    nearest = nearest.clone()
    picks = torch.empty(k, dtype=torch.int64, device=points.device)
    radius = torch.empty(k, dtype=torch.float32, device=points.device)
    for step in range(k):
        best = torch.argmax(nearest).view(1)  # the first maximum: the lowest position
        picks[step : step + 1] = best
        radius[step : step + 1] = nearest.index_select(0, best)
        torch.minimum(nearest, _distance_to(points, points.index_select(0, best)), out=nearest)
        nearest.index_fill_(0, best, -torch.inf)
    return picks, radius, nearest


class CoreSet(Strategy):
    """Greedy k-center over image embeddings (Sener & Savarese 2018), optionally
    among the most uncertain images only (``base``).

    The labelled images are the initial centres (without any, the pool's mean
    embedding is). The score of an image is its distance to the nearest centre *at
    the time it was picked* for the round's ``k`` picks (the covering radius, which
    only shrinks), and its distance to the nearest centre after them for the rest,
    so the top-``k`` of the scores is the greedy k-center (what ``select`` and any
    ``segal_select`` hook see). With ``base``, the images outside the ``m x k``
    candidates score ``-inf``.

    :param base: ``none`` (k-center over the whole pool), or ``entropy``,
        ``margin``, ``least_confidence``: keep the ``m x k`` best by that score
        (``selection=power|softmax`` draws them instead), then k-center among them.
    :param m: how many candidates per queried image the base keeps (>= 1).
    :param reduction: ``mean``, ``max`` or ``top_q`` for the base score; :param q:
        for ``top_q``.
    """

    name = "coreset"
    aliases = ("CoreSet", "k_center")
    description = "greedy k-center over image embeddings (base=entropy: among the most uncertain)"
    requires: ClassVar[tuple[str, ...]] = (EMBEDDINGS,)
    whole_images_only = "picks whole images by k-center over image embeddings"

    def __init__(self, base: str = "none", m: float = 10.0, reduction: str = "mean", q: float = 0.1) -> None:
        if base not in BASES:
            raise SegalError(f"--strategy-opt base={base}: not one of {', '.join(BASES)}")
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 1 <= m <= 1e6:
            raise SegalError(f"--strategy-opt m={m}: must be a number of candidates per query, at least 1")
        if reduction not in REDUCTIONS:
            raise SegalError(f"--strategy-opt reduction={reduction}: not one of {', '.join(REDUCTIONS)}")
        if isinstance(q, bool) or not (isinstance(q, (int, float)) and 0.0 < q <= 1.0):
            raise SegalError(f"--strategy-opt q={q}: must be a fraction in (0, 1]")
        self.base = base
        self.m = float(m)
        self.reduction = reduction
        self.q = float(q)

    def configure_selection(self, selection: str = "topk", beta: float | None = None) -> None:
        """``selection`` draws the base's candidates; without a base there are none
        to draw, so only ``topk`` fits."""
        super().configure_selection(selection, beta)
        if self.selection.stochastic and getattr(self, "base", "none") == "none":
            raise SegalError(
                f"--strategy-opt selection={selection}: coreset picks by k-center; the selection draws "
                "the candidates of a base score, so add --strategy-opt base=entropy"
            )

    def select(self, scores: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The top ``k`` of the scores: the greedy k-center picks of :meth:`score`
        (any stochastic draw already happened there, among the candidates)."""
        return select_positions(scores, k, TOPK, generator)

    def _image_scores(self, logits: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        pixels = getattr(functional, self.base)(logits.float())
        return reduce_pixels(pixels, valid, self.reduction, self.q)

    def score(self, ctx: PoolContext) -> torch.Tensor:
        """Embed the pool (and score it by ``base``) in one pass, embed the labelled
        images, run the greedy k-center for ``ctx.query_size`` picks (the whole
        pool when it is not given); float32 ``[len(pool)]`` on the model's device."""
        model = ctx.model
        if model is None:
            raise SegalError(f"strategy {self.name!r} needs a trained model")
        self.check_model(model)
        total = len(ctx.pool)
        common = {"batch_size": ctx.batch_size, "num_workers": ctx.num_workers}
        base_scores, points = embed_pool(
            model, ctx.pool, None if self.base == "none" else self._image_scores, progress=ctx.progress, **common
        )
        if total == 0:
            return torch.empty(0, device=model.device)
        k = total if ctx.query_size is None else max(0, min(int(ctx.query_size), total))
        if base_scores is None:
            candidates = torch.arange(total, device=points.device)
        else:
            wanted = min(total, max(k, math.ceil(self.m * k - 1e-9)))
            candidates = select_positions(base_scores, wanted, self.selection, ctx.generator)
        chosen = points.index_select(0, candidates)
        nearest = self._initial(ctx, chosen, points)
        picks, radius, after = k_center(chosen, nearest, k)
        kept = after.clone()
        kept[picks] = radius
        scores = torch.full((total,), -torch.inf, device=points.device)
        scores[candidates] = kept
        return scores

    def _initial(self, ctx: PoolContext, chosen: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Distance of each candidate to the labelled images (one pass through the
        model's embeddings), or to the pool's mean embedding when none is given."""
        labelled = ctx.labelled_data
        if labelled is not None and len(labelled) > 0:
            assert ctx.model is not None
            _, centres = embed_pool(ctx.model, labelled, None, batch_size=ctx.batch_size, num_workers=ctx.num_workers)
            return nearest_distances(chosen, centres)
        total = torch.zeros((1, points.shape[1]), device=points.device)
        for chunk in points.split(CHUNK):  # float32 one chunk at a time
            total += chunk.float().sum(dim=0, keepdim=True)
        return nearest_distances(chosen, total / max(1, points.shape[0]))
