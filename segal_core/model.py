"""The ``Model`` interface: a segmentation network with its trainer."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from .dataset import Dataset

from .errors import SegalError

__all__ = ["CAPABILITIES", "EMBEDDINGS", "STOCHASTIC_LOGITS", "EvalResult", "Model", "ModelConfig", "TrainResult"]

#: Optional model capabilities a strategy may require (``Strategy.requires``):
#: :meth:`Model.embeddings` (and :meth:`Model.logits_and_embeddings`) ...
EMBEDDINGS = "embeddings"
#: ... and :meth:`Model.stochastic_logits` (MC dropout).
STOCHASTIC_LOGITS = "stochastic_logits"
#: Capability -> what it gives, in words (for messages).
CAPABILITIES: Mapping[str, str] = {
    EMBEDDINGS: "image embeddings",
    STOCHASTIC_LOGITS: "stochastic forward passes (MC dropout)",
}


@dataclass(frozen=True)
class ModelConfig:
    """What the core gives every model; the model's own settings are in ``options``.

    :param num_classes: output channels (logits ``[B, num_classes, H, W]``).
    :param ignore_index: mask value ignored by the loss and the metrics.
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (``--device``).
    :param num_workers: DataLoader workers (``None`` = the model's default, within the
        run's thread budget).
    :param seed: seed for weight init and data order (the cycle derives one per round).
    :param options: the model plugin's own settings: ``--model-opt key=value`` pairs
        and the flags the plugin adds to ``segal run`` (``--encoder``, ``--lr``, ...
        for the smp models). The model class defines, defaults and validates them.
    :param augmentation: a training augmentation returned by a
        ``segal_train_augmentation`` hook, or ``None`` (the model's own); what it must
        be is up to the model plugin (an albumentations transform for the smp models).
    :param rank: this process's global rank under ``torchrun`` (0 alone).
    :param world_size: processes training together (1 alone). Above 1 the core has
        joined the ``torch.distributed`` process group before building the model
        (gloo on the CPU, NCCL on CUDA); a model that supports it trains with
        DistributedDataParallel, each rank on its share of every epoch, and evaluates
        its share of a split with the metric reduced across ranks, so that ``fit``
        and ``evaluate`` return the same on every rank. ``device`` is then already
        this rank's own (``cuda:LOCAL_RANK``).
    :param local_rank: rank on this machine (the CUDA device index it uses).
    """

    num_classes: int
    ignore_index: int = 255
    device: str = "auto"
    num_workers: int | None = None
    seed: int = 0
    options: Mapping[str, object] = field(default_factory=dict)
    augmentation: object | None = None
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


@dataclass
class EvalResult:
    """Metrics over a whole split, accumulated on the device.

    ``per_class_iou`` holds NaN for a class absent from both prediction and truth.
    """

    miou: float
    per_class_iou: list[float]
    pixel_accuracy: float

    def as_dict(self, classes: Sequence[str]) -> dict[str, object]:
        return {
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "per_class_iou": {c: v for c, v in zip(classes, self.per_class_iou)},
        }


@dataclass
class TrainResult:
    """What one call of :meth:`Model.fit` did."""

    epochs: int
    steps: int
    images: int
    final_loss: float
    best_epoch: int | None = None
    best_val_miou: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    #: The validation metrics of the weights kept (the best epoch), when ``fit``
    #: evaluated them; the cycle then does not evaluate val again.
    val_result: EvalResult | None = None


#: Called by long loops as ``progress(phase, done, total)``: ``train`` counts optimiser
#: steps, ``evaluate`` batches and ``score`` images (the progress bars say so).
Progress = Callable[[str, int, int], None]


class Model(abc.ABC):
    """A segmentation network that trains, evaluates and yields logits.

    Owns its device, precision and checkpoints. A registered model class carries
    ``name`` (and optional ``aliases``, ``description``) and is built as
    ``cls(config)``.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    @property
    @abc.abstractmethod
    def device(self) -> torch.device:
        """Where the network runs; logits come back on this device."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Re-initialise the weights (training from scratch), deterministically."""

    @abc.abstractmethod
    def fit(
        self,
        train: Dataset,
        val: Dataset | None = None,
        *,
        progress: Progress | None = None,
    ) -> TrainResult:
        """Train on ``train`` (masks may hold ``ignore_index``); when ``val`` is given,
        keep the weights of the best validation epoch (a real copy)."""

    @abc.abstractmethod
    def evaluate(self, data: Dataset, *, progress: Progress | None = None) -> EvalResult:
        """mIoU, per-class IoU and pixel accuracy over the whole split."""

    @abc.abstractmethod
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Inference-mode logits ``[B, C, H, W]`` on :attr:`device` for a batch of
        images ``[B, 3, H, W]`` (uint8 or float, any device). Pads to the network's
        stride internally and crops back."""

    @abc.abstractmethod
    def save(self, path: Path) -> None:
        """Write the weights to ``path`` (no pickled Python objects)."""

    @abc.abstractmethod
    def load(self, path: Path) -> None:
        """Read weights written by :meth:`save` (safely: no code runs)."""

    def inference_batch_size(self) -> int:
        """Batch size for pool scoring and evaluation (override: a model knows its
        memory)."""
        return 8

    def loader_workers(self) -> int:
        """DataLoader workers for this model's device."""
        return self.config.num_workers if self.config.num_workers is not None else 0

    # -- optional capabilities (strategies that need one say so in ``requires``) -------

    def _label(self) -> str:
        return self.name or type(self).__name__

    def capability_problem(self, capability: str) -> str | None:
        """``None`` when this model offers ``capability`` (:data:`EMBEDDINGS`,
        :data:`STOCHASTIC_LOGITS`), else why not, as one line that says what to do.

        The default: offered when the class overrides the capability's method. A
        model whose capability depends on its settings (dropout on or off) overrides
        this too.
        """
        if capability not in CAPABILITIES:
            return f"unknown model capability {capability!r} (known: {', '.join(CAPABILITIES)})"
        if getattr(type(self), capability) is getattr(Model, capability):
            return (
                f"model {self._label()!r} cannot give {CAPABILITIES[capability]} "
                f"(it does not implement Model.{capability}); use a model plugin that does"
            )
        return None

    def embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Optional: one embedding per image, ``[B, D]`` on :attr:`device` (any float
        dtype), for a batch ``[B, 3, H, W]`` (uint8 or float), in inference mode.

        What ``coreset`` measures distances between; the smp models give the encoder's
        deepest feature map averaged over height and width. The base class has none.
        """
        raise SegalError(
            f"model {self._label()!r} cannot give embeddings (it does not implement Model.embeddings)"
        )

    def logits_and_embeddings(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, C, H, W]`` and embeddings ``[B, D]`` of one batch. The default
        calls :meth:`logits` and :meth:`embeddings`; override to share one forward."""
        return self.logits(images), self.embeddings(images)

    def stochastic_logits(self, images: torch.Tensor, passes: int, seeds: Sequence[int]) -> Iterator[torch.Tensor]:
        """Optional: ``passes`` stochastic forward passes (MC dropout) of a batch,
        yielded one at a time as logits ``[B, C, H, W]`` on :attr:`device`.

        Row ``i``'s randomness in pass ``t`` comes from ``seeds[i]`` and ``t`` alone
        (``segal_core.seeds.pass_seed(seeds[i], t)``), so an image's passes do not
        depend on its batch. Yield each pass before computing the next and keep no
        reference to it: memory stays flat in ``passes``. The base class has none.
        """
        raise SegalError(
            f"model {self._label()!r} cannot give stochastic forward passes (it does not implement "
            "Model.stochastic_logits)"
        )
