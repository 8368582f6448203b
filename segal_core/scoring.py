"""Streaming pool scoring: one float per image, computed on the model's device.

The pool goes through a DataLoader batch by batch; each batch's logits become one
score per image right away (``image_scores``) and only those scores are kept, in a
tensor of ``len(pool)`` floats allocated up front. Nothing else grows with the pool,
and nothing inside the loop waits for the device.

:func:`stream_pool` is the loop itself, for strategies that turn a batch of images
into scores their own way (several stochastic passes); :func:`embed_pool` keeps one
float16 embedding per image as well (``coreset``), in the same single pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from .dataset import Dataset
from .errors import ContractError, SegalError
from .model import Model, Progress

__all__ = [
    "BatchScores",
    "ImageScores",
    "PoolImages",
    "embed_pool",
    "pad_collate",
    "pool_loader",
    "score_pool",
    "stream_pool",
]

#: ``image_scores(logits[B, C, H, W], valid[B, H, W] | None) -> scores[B]``.
ImageScores = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
#: ``batch_scores(images[B, 3, H, W] on the device, positions[B] int64 on the CPU)
#: -> scores[B]`` on the device: the images of one size group, unpadded, and their
#: positions in the pool.
BatchScores = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class PoolImages(TorchDataset[torch.Tensor]):
    """The images of a SegAL dataset (``pool.image(i)``), never its masks."""

    def __init__(self, pool: Dataset) -> None:
        self.pool = pool

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.pool.image(index)
        if image.dim() != 3:
            sample = self.pool.ids[index] if index < len(self.pool.ids) else index
            raise ContractError(
                f"sample {sample!r}: image has shape {tuple(image.shape)}, expected [3, H, W]; "
                "fix the dataset plugin"
            )
        return image


def pad_collate(images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Stack images ``[C, H, W]`` into a batch ``[B, C, H, W]``.

    Images of one size are stacked as they are and ``valid`` is ``None``. Images of
    different sizes are zero-padded at the bottom and right to the largest height
    and width, and ``valid`` (``[B, H, W]`` bool) marks each image's own pixels.
    A batch mixing uint8 and float images is converted to float in 0..1.
    """
    if any(im.dtype != images[0].dtype for im in images):
        images = [im.float() / 255.0 if not im.is_floating_point() else im.float() for im in images]
    first = images[0]
    if all(im.shape == first.shape for im in images):
        return torch.stack(list(images)), None
    channels = first.shape[0]
    if any(im.shape[0] != channels for im in images):
        raise ContractError(
            f"pool images have different channel counts ({sorted({im.shape[0] for im in images})}); "
            "fix the dataset plugin"
        )
    height = max(im.shape[1] for im in images)
    width = max(im.shape[2] for im in images)
    batch = first.new_zeros((len(images), channels, height, width))
    valid = torch.zeros((len(images), height, width), dtype=torch.bool)
    for j, im in enumerate(images):
        batch[j, :, : im.shape[1], : im.shape[2]] = im
        valid[j, : im.shape[1], : im.shape[2]] = True
    return batch, valid


def _size_groups(valid: torch.Tensor | None, count: int) -> list[tuple[torch.Tensor | None, int, int]]:
    """The rows of a batch grouped by image size, from the CPU ``valid`` mask of
    :func:`pad_collate` (no device synchronisation). Each group runs through the
    model at its own size, so an image's score never depends on the padding its
    batch neighbours forced on it."""
    if valid is None:
        return [(None, 10**9, 10**9)]
    heights = valid.any(dim=2).sum(dim=1).tolist()
    widths = valid.any(dim=1).sum(dim=1).tolist()
    groups: dict[tuple[int, int], list[int]] = {}
    for row in range(count):
        groups.setdefault((heights[row], widths[row]), []).append(row)
    return [(torch.tensor(rows), h, w) for (h, w), rows in groups.items()]


def pool_loader(
    pool: Dataset, *, batch_size: int, num_workers: int, pin_memory: bool
) -> DataLoader[torch.Tensor]:
    """The DataLoader :func:`score_pool` iterates: pool order, :func:`pad_collate`,
    pinned memory when asked, persistent workers when there are any."""
    if batch_size < 1:
        raise SegalError(f"scoring batch size {batch_size}: must be at least 1")
    if num_workers < 0:
        raise SegalError(f"--num-workers {num_workers}: must be 0 or more")
    return DataLoader(
        PoolImages(pool),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=pad_collate,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        drop_last=False,
    )


def _checked_logits(model: Model, group: torch.Tensor) -> torch.Tensor:
    logits = model.logits(group)
    if logits.dim() != 4 or logits.shape[0] != group.shape[0] or logits.shape[-2:] != group.shape[-2:]:
        raise ContractError(
            f"{type(model).__name__}.logits returned shape {tuple(logits.shape)} for "
            f"images {tuple(group.shape)}; expected [B, C, H, W] of the same B, H, W"
        )
    return logits


def stream_pool(
    model: Model,
    pool: Dataset,
    batch_scores: BatchScores,
    *,
    batch_size: int,
    num_workers: int,
    progress: Progress | None = None,
    start: int = 0,
) -> torch.Tensor:
    """``float32[len(pool)]`` on ``model.device``: ``batch_scores(images, positions)``
    of every batch, written at the batch's positions.

    ``positions`` handed to ``batch_scores`` count from ``start`` (a shard's
    ``PoolContext.offset``: the item's position in the whole pool); the result is
    indexed from 0.

    Per batch, the uint8 (or float) images are copied to the device without
    blocking; a batch that mixes image sizes is handed over one size at a time
    (:func:`_size_groups`), each image unpadded, with the pool positions of its rows
    (a CPU tensor, for per-item seeds). Runs under ``torch.inference_mode()`` and
    never synchronises with the host inside the loop; ``progress("score", done,
    total)`` receives counts only.
    """
    total = len(pool)
    device = model.device
    scores = torch.empty(total, dtype=torch.float32, device=device)
    if total == 0:
        return scores
    loader = pool_loader(
        pool, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    done = 0
    with torch.inference_mode():
        for images, valid in loader:
            count = images.shape[0]
            images = images.to(device, non_blocking=True)
            for rows, height, width in _size_groups(valid, count):
                group = images if rows is None else images[rows.to(device, non_blocking=True)]
                group = group[..., :height, :width]
                positions = (torch.arange(count) if rows is None else rows) + done
                group_scores = batch_scores(group, positions + start)
                if group_scores.shape != (group.shape[0],):
                    raise ContractError(
                        f"image_scores returned shape {tuple(group_scores.shape)}, expected ({group.shape[0]},)"
                    )
                if rows is None:
                    scores[done : done + count] = group_scores
                else:
                    scores[positions.to(device, non_blocking=True)] = group_scores
                del group_scores
            done += count
            if progress is not None:
                progress("score", done, total)
    del loader  # persistent workers end here, not at garbage collection
    return scores


def score_pool(
    model: Model,
    pool: Dataset,
    image_scores: ImageScores,
    *,
    batch_size: int,
    num_workers: int,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Score every image of ``pool``: ``float32[len(pool)]`` on ``model.device``.

    Per batch: the uint8 (or float) images are copied to the device without
    blocking, ``model.logits`` gives ``[B, C, H, W]``, and ``image_scores(logits,
    valid)`` turns them into ``[B]`` on the device, written into the result at the
    batch's positions. A batch that mixes image sizes runs through the model one size
    at a time (:func:`_size_groups`), each image unpadded.
    Runs under ``torch.inference_mode()``; never synchronises with the host inside
    the loop, so the device runs ahead of Python. ``progress("score", done, total)``
    receives counts only.
    """

    def batch_scores(group: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        logits = _checked_logits(model, group)
        return image_scores(logits, None)

    return stream_pool(
        model, pool, batch_scores, batch_size=batch_size, num_workers=num_workers, progress=progress
    )


def embed_pool(
    model: Model,
    pool: Dataset,
    image_scores: ImageScores | None,
    *,
    batch_size: int,
    num_workers: int,
    progress: Progress | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One pass over ``pool`` that keeps an embedding per image and, with
    ``image_scores``, a score per image from the same forward.

    :returns: ``scores`` (``float32[len(pool)]``, or ``None`` without
        ``image_scores``) and ``embeddings`` (``float16[len(pool), D]``), both on
        ``model.device``. Without ``image_scores`` only
        :meth:`~segal_core.model.Model.embeddings` runs (for the smp models: the
        encoder alone); with it, :meth:`~segal_core.model.Model.logits_and_embeddings`
        (one forward for both). The embeddings are allocated at the first batch
        (``D`` comes from the model); memory is ``2 x D`` bytes per pool image plus
        one batch.
    """
    device = model.device
    holder: list[torch.Tensor] = []
    total = len(pool)

    def keep(embeddings: torch.Tensor, positions: torch.Tensor) -> None:
        if embeddings.dim() != 2 or embeddings.shape[0] != positions.shape[0]:
            raise ContractError(
                f"{type(model).__name__}.embeddings returned shape {tuple(embeddings.shape)} for "
                f"{positions.shape[0]} images; expected [B, D]"
            )
        if not holder:
            holder.append(torch.empty((total, embeddings.shape[1]), dtype=torch.float16, device=device))
        half = embeddings.to(device).clamp(-65504.0, 65504.0).to(torch.float16)  # float16's range
        holder[0][positions.to(device, non_blocking=True)] = half

    def batch_scores(group: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if image_scores is None:
            keep(model.embeddings(group), positions)
            return torch.zeros(group.shape[0], device=device)
        logits, embeddings = model.logits_and_embeddings(group)
        if logits.dim() != 4 or logits.shape[0] != group.shape[0] or logits.shape[-2:] != group.shape[-2:]:
            raise ContractError(
                f"{type(model).__name__}.logits_and_embeddings returned logits of shape {tuple(logits.shape)} "
                f"for images {tuple(group.shape)}; expected [B, C, H, W] of the same B, H, W"
            )
        keep(embeddings, positions)
        return image_scores(logits, None)

    scores = stream_pool(
        model, pool, batch_scores, batch_size=batch_size, num_workers=num_workers, progress=progress
    )
    embeddings = holder[0] if holder else torch.empty((0, 0), dtype=torch.float16, device=device)
    return (scores if image_scores is not None else None), embeddings
