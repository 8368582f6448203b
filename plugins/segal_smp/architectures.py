"""segmentation_models_pytorch architectures: what exists and how to build one.

The architecture list is smp's own (``smp.MODEL_ARCHITECTURES_MAPPING``), so a new
smp release brings its new architectures without a change here.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import re
import warnings
from collections.abc import Mapping
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from segal_core import SegalError

from .encoders import (
    TIMM_PREFIX,
    check_encoder,
    encoder_weights_argument,
    is_download_error,
    weights_download_error,
)

__all__ = ["ARCHITECTURES", "build_network", "pad_multiple", "summary"]

#: Lower-case name -> smp class (``unet`` -> ``smp.Unet``), in smp's order.
ARCHITECTURES: Mapping[str, type[nn.Module]] = dict(smp.MODEL_ARCHITECTURES_MAPPING)

#: Architectures whose encoder must be a timm vision transformer.
_VIT_ONLY = frozenset({"dpt"})


def summary(arch: str) -> str:
    """First sentence of the smp class docstring, for ``segal plugins``."""
    doc = (ARCHITECTURES[arch].__doc__ or "").strip()
    first = " ".join(doc.split("\n\n", 1)[0].split())
    first = re.sub(r"`([^`]*)`_*", r"\1", first)  # reStructuredText links -> text
    return first.split(". ", 1)[0].rstrip(".")[:160]


def _arch_kwargs(arch: str) -> dict[str, Any]:
    if arch in _VIT_ONLY:
        # accept any image size that is a multiple of the patch grid (see pad_multiple)
        return {"dynamic_img_size": True}
    return {}


def build_network(arch: str, *, encoder: str, weights: str | None, num_classes: int, seed: int) -> nn.Module:
    """A freshly initialised smp network, on the CPU.

    Initialisation is deterministic for ``seed`` and leaves the global RNG as it was
    (smp initialises layers from it, so it is forked and seeded around the build).
    Every failure a user can fix (unknown encoder, encoder that does not fit the
    architecture, weights that cannot be downloaded) is a :class:`SegalError`.
    """
    if arch not in ARCHITECTURES:
        raise SegalError(f"--model {arch}: unknown smp architecture; valid: {', '.join(ARCHITECTURES)}")
    if num_classes < 1:
        raise SegalError(f"--num-classes {num_classes}: a model needs at least one class")
    check_encoder(encoder)
    if arch in _VIT_ONLY and not encoder.startswith(TIMM_PREFIX):
        raise SegalError(
            f"--model {arch} --encoder {encoder}: {arch} needs a timm vision transformer encoder, "
            f"e.g. --encoder tu-vit_small_patch16_224"
        )
    smp_weights = encoder_weights_argument(encoder, weights)
    cls = ARCHITECTURES[arch]
    with torch.random.fork_rng(devices=[]), _offline_unless_reachable(smp_weights is not None):
        torch.manual_seed(seed)
        try:
            with warnings.catch_warnings():
                # smp's notice that a timm ViT without prefix tokens ignores the readout
                warnings.filterwarnings("ignore", message=".*does not have prefix tokens.*")
                return cls(
                    encoder_name=encoder,
                    encoder_weights=smp_weights,
                    classes=num_classes,
                    **_arch_kwargs(arch),
                )
        except SegalError:
            raise
        except Exception as exc:
            if smp_weights is not None and is_download_error(exc):
                raise weights_download_error(encoder, exc) from exc
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise SegalError(
                f"--model {arch} --encoder {encoder}: segmentation_models_pytorch cannot build this pair "
                f"({reason}); pick another --encoder"
            ) from exc


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the weights hub answers a TCP connection (skipped behind a proxy,
    where only the proxy knows)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from huggingface_hub import constants

    host = urlsplit(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _offline_unless_reachable(downloading: bool) -> Iterator[None]:
    """Without a route to the hub, use the hub client's offline mode for this build:
    cached weights still load, missing ones fail at once (not after ~30 s of retries
    printed line by line)."""
    if not downloading:
        yield
        return
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or _hub_reachable():
        yield
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


def pad_multiple(arch: str, network: nn.Module) -> int:
    """Input height and width must be multiples of this (inputs are padded to it).

    Convolutional encoders downsample 5 times (32; dilated encoders, as in DeepLabV3,
    need less but 32 is always safe). DPT needs an even number of ViT patches
    (2 x patch size). PAN pools its stride-16 features three more times (8 x the
    encoder's output stride, 128 by default).
    """
    stride = int(getattr(getattr(network, "encoder", None), "output_stride", 32) or 32)
    if arch in _VIT_ONLY:
        return 2 * stride
    if arch == "pan":
        return 8 * stride
    return 32
