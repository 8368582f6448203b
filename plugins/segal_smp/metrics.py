"""Segmentation metrics from a confusion matrix accumulated on the device.

The kernel (:func:`confusion_matrix`) is a ``scatter_add`` into a fixed
``num_classes**2 + 1`` bin tensor: no boolean indexing and no ``bincount`` size
probe, hence no host synchronisation per batch. :class:`ConfusionMatrix` wraps it
as a ``torchmetrics.Metric`` whose state is summed across processes when
``torch.distributed`` is initialised.

Convention: IoU of class c = TP / (TP + FP + FN). A class absent from both the
truth and the prediction (TP + FP + FN = 0) has IoU NaN and is left out of the
mean; a class present in either counts, with IoU 0 when never right. Pixels whose
truth is ``ignore_index`` (or outside ``0..num_classes-1``) count nowhere.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric

from segal_core import EvalResult

__all__ = ["ConfusionMatrix", "confusion_matrix", "scores_from_confusion"]


def confusion_matrix(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[C, C]`` int64 counts, rows = truth, columns = prediction.

    :param preds: predicted class ids, any shape, on any device.
    :param target: true class ids, same shape; values outside ``0..C-1`` (such as
        ``ignore_index``) are not counted.
    """
    preds = preds.reshape(-1).long()
    target = target.reshape(-1).to(preds.device).long()
    valid = (target >= 0) & (target < num_classes) & (preds >= 0) & (preds < num_classes)
    dump = num_classes * num_classes  # the extra bin that collects invalid pixels
    index = torch.where(valid, target * num_classes + preds, torch.full_like(target, dump))
    counts = torch.zeros(dump + 1, dtype=torch.long, device=preds.device)
    counts.scatter_add_(0, index, torch.ones_like(index))
    return counts[:dump].view(num_classes, num_classes)


def scores_from_confusion(matrix: torch.Tensor) -> EvalResult:
    """mIoU, per-class IoU and pixel accuracy from a ``[C, C]`` confusion matrix
    (see the module docstring for the convention). With no counted pixel at all,
    every value is NaN."""
    m = matrix.double()
    tp = m.diagonal()
    union = m.sum(0) + m.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))
    present = union > 0
    total = m.sum()
    miou = iou[present].mean() if bool(present.any()) else torch.tensor(math.nan)
    accuracy = tp.sum() / total if bool(total > 0) else torch.tensor(math.nan)
    return EvalResult(
        miou=float(miou),
        per_class_iou=[float(v) for v in iou.tolist()],
        pixel_accuracy=float(accuracy),
    )


class ConfusionMatrix(Metric):
    """A ``[C, C]`` confusion matrix accumulated over batches on the device."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    matrix: torch.Tensor

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state(
            "matrix", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: predicted and true class ids of the same shape."""
        self.matrix += confusion_matrix(preds, target.to(self.matrix.device), self.num_classes)

    def compute(self) -> torch.Tensor:
        return self.matrix

    def scores(self) -> EvalResult:
        """:func:`scores_from_confusion` of everything accumulated (synced across
        processes); all NaN when nothing was added."""
        if self.update_count == 0:  # torchmetrics warns on compute() before update()
            return scores_from_confusion(self.matrix)
        return scores_from_confusion(self.compute())
