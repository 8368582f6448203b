"""``SmpModel``: a segmentation_models_pytorch network behind :class:`segal_core.Model`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from segal_core import Dataset, EvalResult, Model, ModelConfig, SegalError, TrainResult
from segal_core.dataset import DatasetView
from segal_core.model import EMBEDDINGS, STOCHASTIC_LOGITS
from segal_core.seeds import pass_seed

from .architectures import build_network, pad_multiple
from .checkpoint import load_checkpoint, save_checkpoint
from .data import IndexedDataset, PadCollate, imagenet_stats, network_inputs
from .device import resolve_runtime
from .dropout import HeadDropout
from .metrics import ConfusionMatrix
from .augment import model_augmentation
from .options import parse_options
from .training import train as run_training

if TYPE_CHECKING:
    from segal_core.model import Progress

__all__ = ["SmpModel"]


def _check_config(config: ModelConfig) -> None:
    if config.num_workers is not None and config.num_workers < 0:
        raise SegalError(f"--num-workers {config.num_workers}: must be 0 or more")


class SmpModel(Model):
    """An smp architecture (``architecture``) with any smp encoder.

    Subclasses only set ``name``, ``aliases`` and ``architecture``; see
    :mod:`segal_smp.registration`. Logits come back on :attr:`device`, in float32 on
    the CPU and in the autocast dtype (bf16/fp16) under mixed precision on CUDA;
    callers that need float32 call ``.float()``.
    """

    #: Key of ``smp.MODEL_ARCHITECTURES_MAPPING`` (``unet``, ``fpn``, ...).
    architecture: ClassVar[str] = ""

    network: nn.Module
    #: Inputs are padded to multiples of this (see :func:`~segal_smp.architectures.pad_multiple`).
    stride: int

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        _check_config(config)
        self.options = parse_options(config.options)
        model_augmentation(self)  # a bad --augment file or hook fails here, before any training
        self.runtime = resolve_runtime(config.device, self.options.precision)
        if self.options.sync_bn and config.world_size > 1 and not self.runtime.cuda:
            raise SegalError(
                "--model-opt sync_bn=true: torch's SyncBatchNorm needs CUDA devices; drop it on the CPU "
                "(each rank then normalises its own batch)"
            )
        #: ImageNet mean and std on the device (used for every encoder).
        self.stats = imagenet_stats(self.runtime.device)
        self.reset()

    # -- building -------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    def reset(self) -> None:
        """Re-build the network from ``config.seed``: the same weights every time."""
        cfg = self.config
        network = build_network(
            self.architecture or self.name,
            encoder=self.options.encoder,
            weights=self.options.encoder_weights,
            num_classes=cfg.num_classes,
            seed=cfg.seed,
        )
        self.runtime.prepare()
        self.network = network.to(self.device).to(memory_format=self.runtime.memory_format)
        self.stride = pad_multiple(self.architecture or self.name, self.network)
        #: Dropout before the head (``--model-opt dropout``), ``None`` without.
        self.dropout: HeadDropout | None = None
        if self.options.dropout > 0:
            self.dropout = HeadDropout.attach(self.network, self.options.dropout, cfg.seed)
        self._forward: nn.Module = self.network
        if self.options.compile and self.runtime.cuda:
            self._forward = torch.compile(self.network)  # type: ignore[assignment]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The network (compiled when asked) on normalised, padded images."""
        out: torch.Tensor = self._forward(images)
        return out

    # -- inference --------------------------------------------------------------

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C, H, W]`` on :attr:`device` (see the class docstring for the
        dtype). Images are padded to :attr:`stride` and the logits cropped back."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        self.network.eval()
        with torch.inference_mode():
            x = network_inputs(images, self.stats, self.stride, self.runtime.memory_format)
            with self.runtime.autocast():
                out = self.forward(x)
            return out[..., :height, :width]

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        self.network.eval()
        return network_inputs(images, self.stats, self.stride, self.runtime.memory_format)

    # -- capabilities -------------------------------------------------------------

    def capability_problem(self, capability: str) -> str | None:
        """Embeddings always; stochastic passes with ``--model-opt dropout`` > 0."""
        if capability == STOCHASTIC_LOGITS and self.dropout is None:
            return (
                f"model {self.name!r} has no dropout; add --model-opt dropout=0.2 "
                "(dropout before the segmentation head, in training and in the stochastic passes)"
            )
        if capability in (EMBEDDINGS, STOCHASTIC_LOGITS):
            return None
        return super().capability_problem(capability)

    def _pooled(self, features: object) -> torch.Tensor:
        deepest = features[-1] if isinstance(features, (list, tuple)) else features
        if not isinstance(deepest, torch.Tensor) or deepest.dim() != 4:
            raise SegalError(f"model {self.name!r}: its encoder gave no feature map to embed")
        return deepest.float().mean(dim=(2, 3))

    def embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's deepest feature map averaged over height and width,
        ``[B, D]`` float32 on :attr:`device` (``D``: 512 for resnet18/34, 2048 for
        resnet50); only the encoder runs. Padding to the stride is included in the
        average (the logits crop it away; a pooled vector cannot)."""
        x = self._inputs(images)
        with torch.inference_mode(), self.runtime.autocast():
            return self._pooled(self.network.encoder(x))

    def logits_and_embeddings(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`logits` and :meth:`embeddings` from one forward (a hook on the
        encoder keeps its pooled deepest features)."""
        height, width = images.shape[-2:]
        x = self._inputs(images)
        kept: list[torch.Tensor] = []
        handle = self.network.encoder.register_forward_hook(lambda _m, _a, out: kept.append(self._pooled(out)))
        try:
            with torch.inference_mode(), self.runtime.autocast():
                out = self.network(x)  # the uncompiled network: a compiled one skips the hook
        finally:
            handle.remove()
        if len(kept) != 1:
            raise SegalError(f"model {self.name!r}: its encoder ran {len(kept)} times in one forward")
        return out[..., :height, :width], kept[0]

    def stochastic_logits(self, images: torch.Tensor, passes: int, seeds: Sequence[int]) -> Iterator[torch.Tensor]:
        """``passes`` MC-dropout passes (dropout before the head, ``--model-opt
        dropout``), yielded one at a time; row ``i`` of pass ``t`` is masked from
        ``pass_seed(seeds[i], t)``. The encoder and decoder run once (the dropout
        sits before the head): only the head runs per pass."""
        problem = self.capability_problem(STOCHASTIC_LOGITS)
        if problem is not None:
            raise SegalError(problem)
        assert self.dropout is not None
        if len(seeds) != images.shape[0]:
            raise ValueError(f"{len(seeds)} seeds for a batch of {images.shape[0]} images")
        height, width = images.shape[-2:]
        x = self._inputs(images)
        head = self.network.segmentation_head
        inputs: list[torch.Tensor] = []  # the head's input, from one forward without dropout
        handle = head.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
        try:
            with torch.inference_mode(), self.runtime.autocast():
                self.network(x)
        finally:
            handle.remove()
        if len(inputs) != 1:
            raise SegalError(f"model {self.name!r}: its segmentation head ran {len(inputs)} times in one forward")
        decoded = inputs.pop()
        for step in range(passes):
            self.dropout.arm([pass_seed(seed, step) for seed in seeds])
            try:
                with torch.inference_mode(), self.runtime.autocast():
                    out = head(decoded)
            finally:
                self.dropout.disarm()
            yield out[..., :height, :width]
            del out

    def inference_batch_size(self) -> int:
        """Twice the training batch on the CPU, four times on CUDA (no gradients)."""
        return self.options.batch_size * (4 if self.runtime.cuda else 2)

    def loader_workers(self) -> int:
        if self.config.num_workers is not None:
            return self.config.num_workers
        if not self.runtime.cuda:
            return 0
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(8, cores - 1))

    def _loader(self, data: Dataset) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        workers = self.loader_workers()
        return DataLoader(
            IndexedDataset(data),
            batch_size=self.inference_batch_size(),
            shuffle=False,
            collate_fn=PadCollate(data.ignore_index),
            num_workers=workers,
            pin_memory=self.runtime.cuda,
        )

    def evaluate(self, data: Dataset, *, progress: Progress | None = None) -> EvalResult:
        """mIoU, per-class IoU and pixel accuracy over all of ``data`` (whole images,
        batched and padded with ``ignore_index``); see :mod:`segal_smp.metrics`."""
        metric = ConfusionMatrix(self.config.num_classes).to(self.device)
        cfg = self.config
        if cfg.world_size > 1:  # each rank its share; the metric sums them (torchmetrics' sync)
            data = DatasetView(data, range(cfg.rank, len(data), cfg.world_size))
            # a rank with no share still takes part in the sum
            empty = torch.zeros(0, dtype=torch.long, device=self.device)
            metric.update(empty, empty)
        loader = self._loader(data)
        total = len(loader)
        for done, (images, masks) in enumerate(loader, start=1):
            preds = self.logits(images).argmax(dim=1)
            metric.update(preds, masks.to(self.device, non_blocking=True))
            if progress is not None:
                progress("evaluate", done, total)
        return metric.scores()

    # -- training ---------------------------------------------------------------

    def fit(
        self,
        train: Dataset,
        val: Dataset | None = None,
        *,
        progress: Progress | None = None,
    ) -> TrainResult:
        """Train on ``train`` on the schedule of :meth:`SmpOptions.epochs_for`; see
        :mod:`segal_smp.training`."""
        return run_training(self, train, val, progress)

    # -- checkpoints ------------------------------------------------------------

    def _metadata(self) -> dict[str, str]:
        return {
            "architecture": self.architecture or self.name,
            "encoder": self.options.encoder,
            "num_classes": str(self.config.num_classes),
        }

    def save(self, path: Path) -> None:
        """Write the weights to ``path`` as safetensors (no pickle)."""
        save_checkpoint(Path(path), self.network, self._metadata())

    def load(self, path: Path) -> None:
        """Read weights written by :meth:`save` (safetensors: no code runs)."""
        load_checkpoint(Path(path), self.network, self._metadata())
