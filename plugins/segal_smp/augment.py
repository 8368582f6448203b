"""Training augmentation for the smp models, built from albumentations.

Where a model's training transform comes from (the first that applies):

1. the ``segal_train_augmentation`` hook (``ModelConfig.augmentation``): any
   albumentations transform, or a callable taking ``image=`` and ``mask=`` keywords
   and returning a dict with ``"image"`` and ``"mask"``;
2. the ``augment`` setting (``--augment FILE``): a pipeline saved with
   ``A.save(A.Compose([...]), FILE, data_format="yaml")`` (``.yaml``/``.yml``) or
   ``data_format="json"`` (``.json``), loaded once per model;
3. the built-in pipeline from the ``crop_size``, ``flip`` and ``jitter`` settings:
   a random square crop (padded at the bottom and right, with 0 in the image and
   ``ignore_index`` in the mask, where the image is smaller), a horizontal flip with
   probability 1/2, and photometric jitter (off by default).

Each sample is augmented with its own seed (drawn by the batch sampler): the
transform's random state is replaced by generators seeded from it just before the
call, so a sample's augmentation does not depend on which DataLoader worker loads
it, nor on the samples that worker loaded before.

albumentations is imported on first use (it pulls in OpenCV), with its PyPI update
check switched off unless ``NO_ALBUMENTATIONS_UPDATE`` is already set: a training run
makes no network calls.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import random
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import torch

from segal_core import DEFAULT_IGNORE_INDEX
from segal_core.errors import SegalError

from .options import SmpOptions, flag

__all__ = [
    "HOOK",
    "JITTER",
    "MIN_VERSION",
    "Augmentation",
    "albumentations",
    "build_pipeline",
    "check_transform",
    "load_pipeline",
    "model_augmentation",
    "seed_transform",
    "training_augmentation",
]

log = logging.getLogger(__name__)

#: ``A.ColorJitter`` arguments of the built-in jitter (``jitter=True``).
JITTER: Mapping[str, float] = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05, "p": 0.8}

#: How errors name a transform given by the hook.
HOOK = "the segal_train_augmentation hook's transform"

#: The oldest albumentations with the API used here (``RandomCrop(pad_if_needed=...,
#: pad_position=..., fill_mask=...)``, ``set_random_state``).
MIN_VERSION = (2, 0)

#: The file formats of ``A.save``/``A.load``, by file extension.
_FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}

Batch = tuple[torch.Tensor, torch.Tensor]


def albumentations() -> ModuleType:
    """The albumentations module (imported on first use, without its update check);
    a :class:`SegalError` if it is older than :data:`MIN_VERSION`."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    parts = str(A.__version__).split(".")[:2]
    if all(p.isdigit() for p in parts) and len(parts) == 2 and tuple(map(int, parts)) < MIN_VERSION:
        wanted = ".".join(map(str, MIN_VERSION))
        raise SegalError(
            f"albumentations {A.__version__} is too old for the smp models' augmentation; "
            f"pip install 'albumentations>={wanted}'"
        )
    return A


# -- building and loading ------------------------------------------------------------


def build_pipeline(options: SmpOptions, ignore_index: int = DEFAULT_IGNORE_INDEX) -> Any:
    """The built-in pipeline (an ``A.Compose``) for ``options``: crop (``crop_size``),
    flip (``flip``) and jitter (``jitter``), in that order; empty if none is on."""
    A = albumentations()
    import cv2

    transforms: list[Any] = []
    if options.crop_size is not None:
        size = options.crop_size
        transforms.append(
            A.RandomCrop(
                height=size,
                width=size,
                pad_if_needed=True,
                pad_position="top_left",  # the image stays at the top left: padding goes bottom and right
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=ignore_index,
            )
        )
    if options.flip:
        transforms.append(A.HorizontalFlip(p=0.5))
    if options.jitter:
        transforms.append(A.ColorJitter(**JITTER))
    return A.Compose(transforms)


def _reason(exc: BaseException) -> str:
    """One line saying why ``exc`` happened (pydantic's and YAML's multi-line errors
    included)."""
    cause: BaseException | None = exc
    while cause is not None:  # albumentations re-raises pydantic's errors as ValueError
        errors = getattr(cause, "errors", None)
        if callable(errors):
            try:
                first = errors()[0]
                where = ".".join(str(part) for part in first.get("loc", ())) or "argument"
                return f"{where}: {first.get('msg', cause)}"
            except Exception:  # noqa: BLE001 - fall back to the plain message
                break
        cause = cause.__cause__
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if isinstance(problem, str) and mark is not None:  # a YAML syntax error
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(exc, KeyError) and exc.args:
        return f"unknown transform or missing entry {exc.args[0]!r}"
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _culprit(A: ModuleType, node: dict[str, Any]) -> str | None:
    """The name of the innermost transform in the serialised ``node`` that
    albumentations cannot build on its own (for error messages)."""
    children = node.get("transforms")
    for child in children if isinstance(children, list) else []:
        if not isinstance(child, dict):
            return str(node.get("__class_fullname__", "a transform"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                A.from_dict({"transform": child})
        except Exception:  # noqa: BLE001 - this child is the one that fails
            return _culprit(A, child) or str(child.get("__class_fullname__", "a transform"))
    return None


def load_pipeline(path: str | os.PathLike[str]) -> Any:
    """The ``A.Compose`` saved in ``path`` by ``A.save`` (YAML for ``.yaml``/``.yml``,
    JSON for ``.json``). Every problem with the file is one :class:`SegalError` line
    naming it: wrong extension, missing, unreadable, not valid YAML/JSON, not an
    albumentations pipeline, or a pipeline that is not a ``Compose``."""
    name = f"{flag('augment')} {os.fspath(path)}"
    file = Path(path)
    fmt = _FORMATS.get(file.suffix.lower())
    save_hint = "save it with A.save(A.Compose([...]), path, data_format='yaml' or 'json')"
    if fmt is None:
        raise SegalError(f"{name}: the pipeline file must end in .yaml, .yml or .json; {save_hint}")
    if not file.exists():
        raise SegalError(f"{name}: no such file; give the path of a pipeline saved with A.save")
    if not file.is_file():
        raise SegalError(f"{name}: not a file; give the path of a pipeline saved with A.save")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else _reason(exc)
        raise SegalError(f"{name}: cannot read the file ({detail}); check it and its permissions") from exc
    try:
        if fmt == "yaml":
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
        raise SegalError(f"{name}: not valid {fmt.upper()} ({_reason(exc)}); {save_hint}") from exc
    transform_dict = data.get("transform") if isinstance(data, dict) else None
    if not isinstance(transform_dict, dict) or "__class_fullname__" not in transform_dict:
        raise SegalError(f"{name}: not an albumentations pipeline (no 'transform' entry); {save_hint}")
    A = albumentations()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a transform saved without its 'p'
            transform = A.from_dict(data)
    except Exception as exc:  # unknown transform (KeyError), bad arguments (pydantic), ...
        culprit = _culprit(A, transform_dict)
        if isinstance(exc, KeyError) and exc.args and exc.args[0] in (culprit, transform_dict["__class_fullname__"]):
            reason = f"unknown transform {exc.args[0]!r}"
        else:
            reason = f"{culprit}: {_reason(exc)}" if culprit else _reason(exc)
        raise SegalError(f"{name}: not a pipeline this albumentations {A.__version__} can build ({reason}); "
                         f"{save_hint}") from exc
    if not isinstance(transform, A.Compose):
        raise SegalError(f"{name}: holds a {type(transform).__name__}, not a Compose; "
                         f"save A.Compose([...]) around the transforms")
    return transform


def check_transform(transform: object, source: str = HOOK) -> Callable[..., Any]:
    """``transform`` if it can be called as ``transform(image=..., mask=...)``; a
    :class:`SegalError` naming ``source`` otherwise."""
    what = "return an albumentations transform such as A.Compose([...]), called as transform(image=..., mask=...)"
    if isinstance(transform, type):
        raise SegalError(f"{source}: {transform.__name__} is a class, not a transform; {what}")
    if not callable(transform):
        raise SegalError(f"{source}: a value of type {type(transform).__name__} is not callable; {what}")
    try:
        inspect.signature(transform).bind(image=None, mask=None)
    except TypeError as exc:
        name = type(transform).__name__
        raise SegalError(f"{source}: {name} cannot be called with image= and mask=; {what}") from exc
    except ValueError:  # no signature to inspect (a builtin): take it as it is
        pass
    return transform


# -- applying -------------------------------------------------------------------------


class _Seedable(Protocol):
    def set_random_state(self, random_generator: np.random.Generator, py_random: random.Random) -> None: ...


def seed_transform(transform: object, seed: int) -> None:
    """Give ``transform`` fresh random generators seeded from ``seed``.

    albumentations transforms (and anything with the same ``set_random_state``) get
    one numpy and one Python generator *shared* by all their transforms, so the draws
    follow each other in one stream (``Compose.set_random_seed`` instead seeds every
    transform with the same number, which makes, say, the crop position and the flip
    draw the same numbers). Other callables are left alone (their randomness is their
    own: not reproducible unless they seed it themselves).
    """
    if hasattr(transform, "set_random_state"):
        seedable: _Seedable = transform  # type: ignore[assignment]
        seedable.set_random_state(np.random.default_rng(seed), random.Random(seed))
    elif hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def _to_numpy(image: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``[C, H, W]`` uint8/float image and ``[H, W]`` mask -> HWC image (uint8 or
    float32, one copy) and int32 mask (what OpenCV takes; one copy)."""
    import cv2

    if image.dtype not in (torch.uint8, torch.float32):
        image = image.float()
    planes = image.detach().cpu().contiguous().numpy()
    # interleaving the channel planes with OpenCV is ~20x faster than a strided copy
    hwc = cv2.merge(list(planes)) if planes.shape[0] > 1 else planes[0][:, :, None].copy()
    return hwc, mask.detach().cpu().to(torch.int32).numpy()


def _chw(array: np.ndarray) -> torch.Tensor:
    """An HWC uint8/float32 array -> a contiguous ``[C, H, W]`` tensor (one copy)."""
    import cv2

    if array.shape[2] > 1 and array.strides[2] == array.itemsize and min(array.strides) > 0:
        return torch.from_numpy(np.stack(cv2.split(array)))
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def _to_tensors(image: object, mask: object, channels: int, source: str) -> Batch:
    """The transform's outputs back to a ``[C, H, W]`` image (uint8 or float32) and
    an int64 ``[H, W]`` mask (one copy each); ``ToTensorV2``'s tensors are taken as
    they are."""
    if isinstance(image, torch.Tensor):
        out_image = image if image.dtype in (torch.uint8, torch.float32) else image.float()
    else:
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3:
            raise SegalError(f"{source} returned an image of shape {array.shape}; expected height x width x channels")
        if array.dtype != np.uint8 and array.dtype != np.float32:
            array = array.astype(np.float32)
        out_image = _chw(array)
    if isinstance(mask, torch.Tensor):
        out_mask = mask.long()
    else:
        out_mask = torch.from_numpy(np.ascontiguousarray(np.asarray(mask), dtype=np.int64))
    if out_image.ndim != 3 or out_mask.shape != out_image.shape[-2:]:
        raise SegalError(
            f"{source} returned an image of shape {tuple(out_image.shape)} and a mask of shape "
            f"{tuple(out_mask.shape)}; the mask must have the image's height and width"
        )
    if out_image.shape[0] != channels:
        raise SegalError(f"{source} returned an image with {out_image.shape[0]} channels from one with {channels}; "
                         f"the network takes {channels}")
    return out_image.contiguous(), out_mask.contiguous()


#: How many times a crop with no labelled pixel is drawn again (partial labels).
CROP_RETRIES = 8


def _retry_seed(seed: int, attempt: int) -> int:
    """The seed of the ``attempt``-th redraw: derived, so still worker-independent."""
    return (seed * 1_000_003 + attempt * 7919) % 2**32


@dataclass(frozen=True)
class Augmentation:
    """A training transform and where it came from, applied to torch samples.

    ``augmentation(image, mask, seed)`` converts the ``[C, H, W]`` image (uint8 or
    float) and ``[H, W]`` mask to numpy, seeds the transform with ``seed``
    (:func:`seed_transform`), runs it and converts back: uint8 or float32 ``[C, H,
    W]`` image, int64 ``[H, W]`` mask.

    :param transform: an albumentations transform (or a compatible callable).
    :param source: how errors name it (the file, the hook, the built-in pipeline).
    :param user: whether the user gave it (a file or the hook); a user's transform is
        tried on one sample before training (:meth:`probe`).
    :param ignore_index: the mask value of unlabelled pixels (see the field).
    """

    transform: Callable[..., Any]
    source: str
    user: bool = False
    #: With partial labels (region queries) a random crop may land where nothing is
    #: labelled: such a crop is drawn again (up to :data:`CROP_RETRIES` times, from
    #: seeds derived from ``seed``) rather than wasting a training step.
    ignore_index: int | None = None

    @property
    def identity(self) -> bool:
        """Whether it does nothing (an empty ``Compose``): samples then skip it."""
        return not self.user and not getattr(self.transform, "transforms", True)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, seed: int) -> Batch:
        if self.identity:
            return image, mask
        np_image, np_mask = _to_numpy(image, mask)
        labelled = self.ignore_index is not None and bool((mask != self.ignore_index).any())
        for attempt in range(CROP_RETRIES + 1):
            out_image, out_mask = self._apply(np_image, np_mask, seed if attempt == 0 else _retry_seed(seed, attempt))
            if not labelled or bool((out_mask != self.ignore_index).any()):
                break
        return out_image, out_mask

    def _apply(self, np_image: Any, np_mask: Any, seed: int) -> Batch:
        seed_transform(self.transform, seed)
        try:
            out = self.transform(image=np_image, mask=np_mask)
        except SegalError:
            raise
        except Exception as exc:
            height, width = np_mask.shape
            raise SegalError(f"{self.source} failed on a {height}x{width} training image ({_reason(exc)}); "
                             f"fix the pipeline") from exc
        if not isinstance(out, Mapping) or "image" not in out or "mask" not in out:
            raise SegalError(f"{self.source} returned a {type(out).__name__}, not a dict with 'image' and 'mask'")
        return _to_tensors(out["image"], out["mask"], int(np_image.shape[2]), self.source)

    def probe(self, image: torch.Tensor, mask: torch.Tensor) -> None:
        """Run a user's transform once (seed 0) in this process, so that a broken one
        fails here, as one clear line, rather than inside a DataLoader worker."""
        if self.user:
            self(image, mask, 0)




def training_augmentation(options: SmpOptions, hook: object | None = None, ignore_index: int = DEFAULT_IGNORE_INDEX) -> Augmentation:
    """The training augmentation: ``hook`` (the ``segal_train_augmentation`` hook's
    transform) if given, else the ``augment`` file, else the built-in pipeline."""
    if hook is not None:
        source, augmentation = HOOK, Augmentation(check_transform(hook, HOOK), HOOK, user=True, ignore_index=ignore_index)
    elif options.augment is not None:
        source = f"{flag('augment')} {options.augment}"
        augmentation = Augmentation(load_pipeline(options.augment), source, user=True, ignore_index=ignore_index)
    else:
        return Augmentation(build_pipeline(options, ignore_index), "the built-in augmentation", ignore_index=ignore_index)
    ignored = [
        f"{flag(key)}={getattr(options, key)}"
        for key, default in (("crop_size", None), ("flip", True), ("jitter", False))
        if getattr(options, key) != default
    ]
    if ignored:  # once per model built
        log.warning("%s replaces the built-in augmentation: %s ignored", source, ", ".join(ignored))
    return augmentation


def model_augmentation(model: Any) -> Augmentation:
    """The training augmentation of an smp model (``model.options``,
    ``model.config.augmentation`` and ``model.config.ignore_index``), built the
    first time it is asked for and kept for the model's life (a pipeline file is read
    once per model, not once per round or per sample)."""
    options, config = model.options, model.config
    hook = getattr(config, "augmentation", None)
    ignore_index = int(config.ignore_index)
    cached = getattr(model, "_segal_augmentation", None)  # kept on the model itself
    if cached is not None and cached[0] == options and cached[1] is hook and cached[2] == ignore_index:
        return cached[3]
    augmentation = training_augmentation(options, hook, ignore_index)
    model._segal_augmentation = (options, hook, ignore_index, augmentation)
    return augmentation
