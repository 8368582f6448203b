"""Training under ``torchrun``: DistributedDataParallel around the smp network.

The core joins the process group before the model is built and says the rank and
world size in :class:`~segal_core.model.ModelConfig`; here the network is wrapped
for one training run. DDP hands rank 0's weights to every rank when it wraps (so a
fine-tuned round needs its checkpoint on rank 0 only) and averages the gradients of
every step; the wrapper is dropped when training ends and the plain network (the
same parameters) is what evaluates, scores and is saved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .model import SmpModel

__all__ = ["distributed_forward"]


def distributed_forward(model: SmpModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network wrapped in ``DistributedDataParallel`` (one device per rank on
    CUDA: ``model.device``; the CPU under gloo), its batch norms made
    ``SyncBatchNorm`` first with ``--model-opt sync_bn=true`` (CUDA only)."""
    from torch.nn.parallel import DistributedDataParallel

    if model.options.sync_bn and model.runtime.cuda:
        model.network = nn.SyncBatchNorm.convert_sync_batchnorm(model.network)
    device_ids = [model.device.index if model.device.index is not None else torch.cuda.current_device()] \
        if model.runtime.cuda else None
    wrapped = DistributedDataParallel(model.network, device_ids=device_ids)

    def forward(images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = wrapped(images)
        return out

    return forward
