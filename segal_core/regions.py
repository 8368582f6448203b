"""Region queries: region maps, per-region scores and a streaming selection by pixels.

With a region unit (``--query-unit patch|superpixel|...``) a round queries regions
until a budget of pixels is spent. Per batch, on the model's device: logits ->
per-pixel scores -> one score per region (mean, max or top-q over the region's
pixels) -> merged into a running selection that keeps only the best regions whose
pixels fill the budget. Memory is O(selection + one batch), never O(pool x regions).

The ranking is the strategy's ``selection`` (:mod:`segal_core.selection`): ``topk``
ranks by score; ``power`` and ``softmax`` rank by a Gumbel-perturbed log-weight per
region, keyed by the round's seed, the item and the region id, which samples
regions without replacement with probability proportional to their weight and
streams exactly like the plain scores.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from .dataset import Dataset
from .errors import ContractError, SegalError
from .model import Model, Progress
from .rundir import atomic_write
from .scoring import _checked_logits, _size_groups, pad_collate
from .selection import TOPK, Selection, ranking, selection_keys
from .units import QueryUnit

__all__ = [
    "RegionMaps",
    "RegionPick",
    "RunningSelection",
    "pixel_budget",
    "random_regions",
    "reduce_regions",
    "score_regions",
]

#: ``pixel_scores(logits [B, C, H, W]) -> [B, H, W]``.
PixelScores = Callable[[torch.Tensor], torch.Tensor]
#: ``batch_pixels(images [B, 3, H, W] on the device, positions [B] int64 on the CPU)
#: -> [B, H, W]``: per-pixel scores of a batch straight from its images (strategies
#: that run the model their own way, e.g. several stochastic passes).
BatchPixels = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RegionPick:
    """One selected region: the pool item (its position in the scored view, counted
    from ``PoolContext.offset``), the region id, its pixel count and its score;
    ``tier`` and ``key`` rank it (:func:`segal_core.selection.selection_keys`), so
    shards' selections merge into exactly the one-process selection."""

    index: int
    region: int
    pixels: int
    score: float
    tier: int = 0
    key: float | None = None


class RegionMaps:
    """The region map of each item of a dataset, from ``unit``.

    A :attr:`~segal_core.units.QueryUnit.cacheable` unit's maps are written once to
    ``cache`` (16-bit PNGs named by the sample id) and read back afterwards: computed
    once per image, reused across rounds and resumes, never all held in memory.
    """

    def __init__(self, unit: QueryUnit, data: Dataset, cache: Path | None = None, *, write: bool = True) -> None:
        self.unit = unit
        self.data = data
        self.cache = cache if unit.cacheable else None
        #: ``False``: read cached maps but never write one (ranks other than 0 under
        #: ``torchrun`` do not write the run folder).
        self.write = write

    def _file(self, sample_id: str) -> Path:
        assert self.cache is not None
        digest = hashlib.sha1(sample_id.encode()).hexdigest()[:16]
        return self.cache / f"{digest}.png"

    def __call__(self, index: int, image: torch.Tensor | None = None) -> torch.Tensor:
        """The int64 ``[H, W]`` map of item ``index`` (``image``: already decoded)."""
        sample_id = self.data.ids[index]
        if self.cache is not None:
            file = self._file(sample_id)
            if file.is_file():
                return _read_map(file)
        if image is None:
            image = self.data.image(index)
        regions = self.unit.regions(image)
        _check_map(regions, image, self.unit, sample_id, cached=self.cache is not None)
        if self.cache is not None and self.write:
            self.cache.mkdir(parents=True, exist_ok=True)
            atomic_write(self._file(sample_id), _png16(regions))
        return regions


def _check_map(regions: torch.Tensor, image: torch.Tensor, unit: QueryUnit, sample_id: str, cached: bool) -> None:
    if regions.shape != image.shape[-2:] or regions.dtype != torch.int64:
        raise ContractError(
            f"--query-unit {unit.name}: regions() returned {tuple(regions.shape)} {regions.dtype} for "
            f"{sample_id!r}, expected int64 {tuple(image.shape[-2:])}; fix the unit plugin"
        )
    if regions.numel() and int(regions.min()) < 0:
        raise ContractError(f"--query-unit {unit.name}: region ids of {sample_id!r} must be 0 or more")
    if cached and regions.numel() and int(regions.max()) > 65535:  # the cache is 16-bit PNG
        raise SegalError(f"--query-unit {unit.name}: {sample_id!r} has more than 65536 regions; "
                         "ask for fewer (--unit-opt)")


def _png16(regions: torch.Tensor) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(regions.numpy().astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def _read_map(file: Path) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    with Image.open(file) as img:
        return torch.from_numpy(np.array(img).astype(np.int64))


# -- per-region reduction --------------------------------------------------------------


def reduce_regions(
    pixels: torch.Tensor, regions: torch.Tensor, reduction: str = "mean", q: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-region scores of one batch: ``pixels`` ``[B, H, W]`` scores and
    ``regions`` ``[B, H, W]`` ids (``-1`` = padding, not part of any region).

    :returns: ``scores`` and ``areas``, both ``[B, R]`` with ``R`` the batch's largest
        region id + 1: the region's reduced score over its finite pixels (``-inf`` when
        it has none or does not exist) and its pixel count (0 = no such region).
        ``mean``, ``max`` and ``top_q`` (the mean of the highest ``ceil(q x n)``
        pixels) as for whole images. Stays on the device, no host synchronisation
        beyond the region count.
    """
    batch = pixels.shape[0]
    width = int(regions.max()) + 1 if regions.numel() else 0
    width = max(width, 1)
    flat_scores = pixels.float().reshape(-1)
    flat_regions = regions.reshape(-1)
    inside = flat_regions >= 0
    rows = torch.arange(batch, device=pixels.device).repeat_interleave(pixels[0].numel())
    keys = torch.where(inside, rows * width + flat_regions, 0)
    bins = batch * width
    areas = torch.zeros(bins, dtype=torch.int64, device=pixels.device).index_add_(
        0, keys[inside], torch.ones_like(keys[inside])
    )
    finite = inside & torch.isfinite(flat_scores)
    k, v = keys[finite], flat_scores[finite]
    counts = torch.zeros(bins, dtype=torch.int64, device=pixels.device).index_add_(0, k, torch.ones_like(k))
    if reduction == "mean":
        sums = torch.zeros(bins, device=pixels.device).index_add_(0, k, v)
        out = sums / counts.clamp(min=1)
    elif reduction == "max":
        out = torch.full((bins,), -torch.inf, device=pixels.device).scatter_reduce_(0, k, v, "amax")
    elif reduction == "top_q":
        by_score = torch.sort(v, descending=True, stable=True).indices
        by_region = torch.sort(k[by_score], stable=True).indices
        order = by_score[by_region]
        ks, vs = k[order], v[order]
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(ks.numel(), device=pixels.device) - starts[ks]
        taken = torch.ceil(counts.double() * q - 1e-9).clamp(min=1)
        chosen = rank < taken[ks]
        sums = torch.zeros(bins, device=pixels.device).index_add_(0, ks[chosen], vs[chosen])
        out = sums / taken.float()
    else:
        raise ValueError(f"unknown reduction {reduction!r}")
    out = torch.where(counts > 0, out, -torch.inf)
    return out.view(batch, width), areas.view(batch, width)


# -- the streaming selection --------------------------------------------------------------


class RunningSelection:
    """The best regions seen so far whose pixels fill ``budget``, merged batch by
    batch on ``device``.

    Regions are ranked by ``selection`` (default ``topk``: by score, highest first;
    ``power``/``softmax``: by their Gumbel keys under ``seed``, see
    :func:`segal_core.selection.selection_keys`); a tie goes to the region offered
    first (items in pool order, regions in id order), exactly as one stable sort of
    every region of the pool would. The selection is the shortest prefix of that
    ranking whose pixels reach ``budget`` (the last region may pass it). Anything
    ranked below that prefix can never enter it again, so it is dropped at once:
    memory is the selection plus one batch. Dropping it compacts the buffers, which
    costs a host synchronisation per merge (a few per batch, none per pixel).
    """

    def __init__(
        self, budget: int, device: torch.device | str = "cpu", *, selection: Selection = TOPK, seed: int = 0
    ) -> None:
        if budget < 1:
            raise SegalError(f"a region query needs a budget of at least one pixel, not {budget}")
        self.budget = int(budget)
        self.device = torch.device(device)
        self.selection = selection
        self.seed = int(seed)
        self.scores = torch.empty(0, device=self.device)
        self.items = torch.empty(0, dtype=torch.int64, device=self.device)
        self.regions = torch.empty(0, dtype=torch.int64, device=self.device)
        self.pixels = torch.empty(0, dtype=torch.int64, device=self.device)
        self.tiers = torch.empty(0, dtype=torch.int8, device=self.device)
        self.keys = torch.empty(0, device=self.device)

    def offer(self, scores: torch.Tensor, items: torch.Tensor, regions: torch.Tensor, pixels: torch.Tensor) -> None:
        """Candidates (1-D, in pool order then region order); NaN and ``-inf``
        scores (nothing to score, or already labelled) never enter."""
        scores = scores.to(self.device).float()
        keep = torch.isfinite(scores) | (scores == torch.inf)
        scores = scores[keep]
        items, regions = items.to(self.device)[keep], regions.to(self.device)[keep]
        tiers, keys = selection_keys(scores, items, regions, self.selection, self.seed)
        cat_scores = torch.cat([self.scores, scores])
        cat_items = torch.cat([self.items, items])
        cat_regions = torch.cat([self.regions, regions])
        cat_pixels = torch.cat([self.pixels, pixels.to(self.device)[keep]])
        cat_tiers = torch.cat([self.tiers, tiers])
        cat_keys = torch.cat([self.keys, keys])
        order = ranking(cat_tiers, cat_keys)
        before = torch.cumsum(cat_pixels[order], 0) - cat_pixels[order]  # pixels ranked above each
        prefix = order[before < self.budget]
        self.scores, self.items = cat_scores[prefix], cat_items[prefix]
        self.regions, self.pixels = cat_regions[prefix], cat_pixels[prefix]
        self.tiers, self.keys = cat_tiers[prefix], cat_keys[prefix]

    def picks(self) -> list[RegionPick]:
        """The selection, best first (only here does it come to the host)."""
        rows = zip(
            self.items.tolist(), self.regions.tolist(), self.pixels.tolist(), self.scores.tolist(),
            self.tiers.tolist(), self.keys.tolist(),
        )
        return [RegionPick(int(i), int(r), int(p), float(s), int(t), float(k)) for i, r, p, s, t, k in rows]


# -- scoring the pool's regions -------------------------------------------------------------


class _ImagesAndRegions(TorchDataset[tuple[torch.Tensor, torch.Tensor]]):
    def __init__(self, data: Dataset, maps: RegionMaps) -> None:
        self.data, self.maps = data, maps

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.data.image(index)
        return image, self.maps(index, image)


def _collate(items: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    images, valid = pad_collate([image for image, _ in items])
    height, width = images.shape[-2:]
    regions = torch.full((len(items), height, width), -1, dtype=torch.int64)
    for row, (_, region_map) in enumerate(items):
        regions[row, : region_map.shape[0], : region_map.shape[1]] = region_map
    return images, valid, regions


def score_regions(
    model: Model,
    pool: Dataset,
    maps: RegionMaps,
    pixel_scores: PixelScores | None,
    *,
    budget: int,
    labelled: Mapping[int, Sequence[int]],
    reduction: str = "mean",
    q: float = 0.1,
    batch_size: int,
    num_workers: int,
    progress: Progress | None = None,
    selection: Selection = TOPK,
    seed: int = 0,
    batch_pixels: BatchPixels | None = None,
    start: int = 0,
) -> list[RegionPick]:
    """Stream ``pool`` through ``model`` and select the best regions worth ``budget``
    pixels by ``selection`` (stochastic rules seeded by ``seed``); ``labelled`` maps a
    pool position to its regions already labelled (never selected again).

    Per-pixel scores come from ``pixel_scores(model.logits(images))``, or from
    ``batch_pixels(images, positions)`` when given (then ``pixel_scores`` may be
    ``None``). Items are keyed (and :attr:`RegionPick.index` counted) from ``start``:
    a shard's position in the whole pool; ``labelled`` is keyed by ``pool`` position."""
    if pixel_scores is None and batch_pixels is None:
        raise ValueError("score_regions needs pixel_scores or batch_pixels")
    device = model.device
    loader = DataLoader(
        _ImagesAndRegions(pool, maps),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )
    chosen = RunningSelection(budget, device, selection=selection, seed=seed)
    done, total = 0, len(pool)
    with torch.inference_mode():
        for images, valid, regions in loader:
            count = images.shape[0]
            images = images.to(device, non_blocking=True)
            regions = regions.to(device, non_blocking=True)
            for rows, height, width in _size_groups(valid, count):
                picked = torch.arange(count) if rows is None else rows
                group = images if rows is None else images[rows.to(device)]
                group = group[..., :height, :width]
                group_regions = (regions if rows is None else regions[rows.to(device)])[..., :height, :width]
                if batch_pixels is not None:
                    pixels = batch_pixels(group, picked + done + start)
                else:
                    assert pixel_scores is not None
                    logits = _checked_logits(model, group)
                    pixels = pixel_scores(logits.float())
                    del logits
                scores, areas = reduce_regions(pixels, group_regions, reduction, q)
                items = (picked + done + start).to(device)
                _offer(chosen, scores, areas, items, labelled, done, picked)
                del pixels
            done += count
            if progress is not None:
                progress("score", done, total)
    del loader
    return chosen.picks()


def _offer(
    selection: RunningSelection,
    scores: torch.Tensor,
    areas: torch.Tensor,
    items: torch.Tensor,
    labelled: Mapping[int, Sequence[int]],
    done: int,
    rows: torch.Tensor,
) -> None:
    count, width = scores.shape
    taken = [(n, r) for n, row in enumerate(rows.tolist()) for r in labelled.get(done + row, ()) if r < width]
    if taken:
        mask = torch.zeros((count, width), dtype=torch.bool)
        mask[[n for n, _ in taken], [r for _, r in taken]] = True
        scores = scores.masked_fill(mask.to(scores.device), -torch.inf)
    scores = scores.masked_fill(areas == 0, -torch.inf)
    region_ids = torch.arange(width, device=scores.device).expand(count, width)
    selection.offer(
        scores.reshape(-1), items[:, None].expand(count, width).reshape(-1), region_ids.reshape(-1), areas.reshape(-1)
    )


def random_regions(
    pool: Dataset,
    maps: RegionMaps,
    *,
    budget: int,
    labelled: Mapping[int, Sequence[int]],
    generator: torch.Generator,
    progress: Progress | None = None,
) -> list[RegionPick]:
    """Unlabelled regions drawn uniformly (a seeded random key per region, the
    highest keys worth ``budget`` pixels); the model never runs."""
    selection = RunningSelection(budget)
    total = len(pool)
    for index in range(total):
        region_map = maps(index)
        areas = torch.bincount(region_map.reshape(-1))
        keys = torch.rand(areas.numel(), generator=generator)
        _offer(selection, keys[None], areas[None], torch.tensor([index]), labelled, index, torch.tensor([0]))
        if progress is not None:
            progress("score", index + 1, total)
    return selection.picks()


def pixel_budget(fraction: float | None, absolute: int | None, pool_pixels: int) -> int:
    """Pixels of a query: ``absolute`` (``--query-pixels``), else ``fraction`` of the
    pool's pixels, at least one."""
    if absolute is not None:
        return int(absolute)
    assert fraction is not None
    return max(1, math.floor(fraction * pool_pixels + 1e-9))
