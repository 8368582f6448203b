"""The training loop of the smp models.

AdamW; the learning rate warms up linearly over the first ``warmup`` fraction of
all steps (``epochs x batches per epoch``), then follows a cosine decay towards 1%
of ``lr``. Cross-entropy ignores ``ignore_index`` (optionally plus Dice). With a
validation split the best evaluated epoch's weights are kept as a real copy and
restored at the end.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from segal_core import Dataset, EvalResult, SegalError, TrainResult

from .checkpoint import clone_state, restore_state
from .data import (
    AugmentedDataset,
    DistributedEpochBatchSampler,
    EpochBatchSampler,
    PadCollate,
    network_inputs,
    pad_masks_to_multiple,
)
from .distributed import distributed_forward

if TYPE_CHECKING:
    from segal_core.model import Progress

    from .model import SmpModel
    from .options import SmpOptions

__all__ = ["LossFn", "lr_factor", "make_loss", "train"]

#: ``loss(logits [B, C, H, W] float32, masks [B, H, W] int64) -> scalar``.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

log = logging.getLogger("segal.smp")

#: The cosine decay ends at this fraction of the peak learning rate.
MIN_LR_FACTOR = 0.01


def make_loss(kind: str, ignore_index: int) -> LossFn:
    """``ce``: cross-entropy averaged over the labelled pixels (0 when a batch has
    none, instead of NaN); ``ce+dice``: plus smp's multiclass Dice loss."""

    def cross_entropy(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        total = F.cross_entropy(logits, masks, ignore_index=ignore_index, reduction="sum")
        return total / (masks != ignore_index).sum().clamp(min=1)

    if kind == "ce":
        return cross_entropy
    dice = smp.losses.DiceLoss(mode="multiclass", ignore_index=ignore_index, from_logits=True)

    def ce_dice(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, masks) + torch.as_tensor(dice(logits, masks))

    return ce_dice


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based) of ``total``."""
    warm = int(round(warmup * total))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return MIN_LR_FACTOR + (1.0 - MIN_LR_FACTOR) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _clean_masks(masks: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """Mask values outside ``0..C-1`` count as ignored (a device-side assert on CUDA
    otherwise; the dataset plugins reject such masks up front)."""
    valid = (masks >= 0) & (masks < num_classes)
    return torch.where(valid, masks, torch.full_like(masks, ignore_index))


@dataclass
class _Best:
    """The best evaluated epoch so far, with a real copy of its weights."""

    score: float = -math.inf
    epoch: int | None = None
    result: EvalResult | None = None
    state: dict[str, torch.Tensor] | None = None

    @property
    def miou(self) -> float | None:
        return None if self.result is None else self.result.miou

    def offer(self, epoch: int, result: EvalResult, network: torch.nn.Module) -> None:
        """Keep ``network``'s weights if ``result.miou`` beats the best (NaN counts as
        the worst; the earlier epoch wins a tie)."""
        score = result.miou if math.isfinite(result.miou) else -math.inf
        if self.epoch is None or score > self.score:
            self.score, self.epoch, self.result, self.state = score, epoch, result, clone_state(network)


def schedule_line(options: SmpOptions, images: int, steps_per_epoch: int, epochs: int, world_size: int = 1) -> str:
    """Why this round trains as many steps as it does, in the flags' words (steps
    are global: under ``torchrun`` one step takes a batch on every rank)."""
    wanted = options.min_steps + options.steps_per_image * images
    reason = (
        f"--epochs {options.epochs}"
        if epochs == options.epochs
        else f"--min-steps {options.min_steps} + --steps-per-image {options.steps_per_image:g} x {images} images "
        f"= {math.ceil(wanted)} steps, more than --epochs {options.epochs}"
    )
    ranks = f" on each of {world_size} processes" if world_size > 1 else ""
    return (
        f"training {epochs * steps_per_epoch} steps: {epochs} epochs of {steps_per_epoch} batches "
        f"(batch size {options.batch_size}{ranks}, {images} labelled images), from {reason}"
    )


def _forward(model: SmpModel, images: torch.Tensor, forward: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    try:
        with model.runtime.autocast():
            return forward(images)
    except ValueError as exc:
        if "more than 1 value per channel" not in str(exc):
            raise
        raise SegalError(
            f"--batch-size {model.options.batch_size}: {model.name} cannot batch-normalise a batch of one "
            f"{images.shape[-2]}x{images.shape[-1]} image; use --batch-size 2 or more, or a larger --crop-size"
        ) from exc


def train(model: SmpModel, data: Dataset, val: Dataset | None, progress: Progress | None) -> TrainResult:
    """Train ``model.network`` in place on ``data``; see the module docstring.

    Whatever goes wrong inside (non-finite loss, a batch too small, an interrupt),
    the weights are put back to what they were when training started.
    """
    if len(data) == 0:
        raise SegalError("cannot train on an empty training set; label some samples first")
    start_state = clone_state(model.network)
    try:
        return _train(model, data, val, progress)
    except BaseException:
        restore_state(model.network, start_state)
        raise


def _train(model: SmpModel, data: Dataset, val: Dataset | None, progress: Progress | None) -> TrainResult:
    config, options, runtime = model.config, model.options, model.runtime
    network, ignore = model.network, config.ignore_index
    generator = torch.Generator().manual_seed(config.seed)
    sampler: EpochBatchSampler = (
        EpochBatchSampler(len(data), options.batch_size, generator) if config.world_size <= 1
        else DistributedEpochBatchSampler(len(data), options.batch_size, generator, config.rank, config.world_size)
    )
    workers = model.loader_workers()
    loader = DataLoader(
        AugmentedDataset.for_model(data, model),
        batch_sampler=sampler,
        collate_fn=PadCollate(ignore),
        num_workers=workers,
        pin_memory=runtime.cuda,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(config.seed + 1),
    )
    steps_per_epoch = len(sampler)
    epochs = options.epochs_for(len(data), steps_per_epoch)
    total = epochs * steps_per_epoch
    log.info(schedule_line(options, len(data), steps_per_epoch, epochs, config.world_size))
    forward = distributed_forward(model) if config.world_size > 1 else model.forward
    optimizer = torch.optim.AdamW(network.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, options.warmup))
    scaler = runtime.grad_scaler()
    loss_fn = make_loss(options.loss, ignore)

    best = _Best()
    history: list[dict[str, float]] = []
    step = images_seen = 0
    epoch_loss = math.nan
    evaluate_every = options.eval_every if options.eval_every is not None else math.ceil(epochs / 4)
    if val is None:
        evaluate_every = 0
    for epoch in range(1, epochs + 1):
        network.train()
        running = torch.zeros((), device=runtime.device)
        for batch_step, (images, masks) in enumerate(loader, start=1):
            x = network_inputs(images, model.stats, model.stride, runtime.memory_format)
            y = masks.to(runtime.device, non_blocking=True)
            y = pad_masks_to_multiple(_clean_masks(y, config.num_classes, ignore), model.stride, ignore)
            loss = loss_fn(_forward(model, x, forward).float(), y)
            if not bool(torch.isfinite(loss)):  # one host sync per step, before any update
                raise SegalError(
                    f"training loss became non-finite at epoch {epoch} step {batch_step}; "
                    f"lower --lr or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            running += loss.detach()
            step += 1
            images_seen += int(images.shape[0])
            if progress is not None:
                progress("train", step, total)
        epoch_loss = float(running) / max(1, steps_per_epoch)
        record = {"epoch": float(epoch), "loss": epoch_loss, "lr": float(optimizer.param_groups[0]["lr"])}
        if evaluate_every and val is not None and (epoch % evaluate_every == 0 or epoch == epochs):
            result = model.evaluate(val)
            record["val_miou"] = result.miou
            best.offer(epoch, result, network)
        history.append(record)
    if best.state is not None:
        restore_state(network, best.state)
    network.eval()
    return TrainResult(
        epochs=epochs,
        steps=step,
        images=images_seen,
        final_loss=epoch_loss,
        best_epoch=best.epoch,
        best_val_miou=best.miou,
        val_result=best.result,
        history=history,
    )
