"""Encoder names and pretrained weights (``--encoder``, ``--encoder-weights``).

Any encoder of segmentation_models_pytorch is accepted, plus ``tu-<name>`` for any
timm model (smp's "timm universal" encoders). Pretrained weights come from the
Hugging Face hub (smp's own encoders and most timm models) or from URLs cached by
``torch.hub``; a download that cannot happen (offline machine, no cache) becomes one
:class:`~segal_core.SegalError` line instead of a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import segmentation_models_pytorch as smp
import timm
import torch

from segal_core import SegalError
from segal_core.names import closest

__all__ = [
    "TIMM_PREFIX",
    "check_encoder",
    "encoder_names",
    "encoder_weights_argument",
    "is_download_error",
    "weights_download_error",
    "weights_caches",
]

#: Prefix of smp's "timm universal" encoders: ``tu-<any timm model>``.
TIMM_PREFIX = "tu-"
#: How many close names an unknown-encoder message lists.
_SHOWN = 10
#: Modules whose exceptions mean "the network or the hub failed".
_NETWORK_MODULES = ("huggingface_hub", "requests", "urllib3", "httpx", "httpcore", "urllib", "socket", "http")


def encoder_names() -> list[str]:
    """smp's own encoder names (``tu-<timm model>`` is accepted besides these)."""
    return list(smp.encoders.get_encoder_names())


def _listing(name: str, candidates: list[str], tail: str) -> str:
    ranked = closest(name, candidates)
    shown = ", ".join(ranked[:_SHOWN])
    more = len(ranked) - _SHOWN
    return f"{shown}, ... ({more} more){tail}" if more > 0 else f"{shown}{tail}"


def check_encoder(name: str) -> None:
    """Raise a :class:`~segal_core.SegalError` listing the closest valid names when
    ``name`` is neither an smp encoder nor ``tu-<timm model>``."""
    if name.startswith(TIMM_PREFIX):
        model = name[len(TIMM_PREFIX):]
        if timm.is_model(model):
            return
        listing = _listing(model, [TIMM_PREFIX + m for m in timm.list_models()], "")
        raise SegalError(f"--encoder {name}: unknown timm model; valid: {listing}")
    names = encoder_names()
    if name in names:
        return
    listing = _listing(name, names, f"; or {TIMM_PREFIX}<any timm model>")
    raise SegalError(f"--encoder {name}: unknown; valid: {listing}")


def encoder_weights_argument(encoder: str, weights: str | None) -> str | bool | None:
    """What to pass smp as ``encoder_weights`` for ``--encoder-weights``.

    ``None`` = random initialisation. smp's own encoders take the name of a weight set
    (``imagenet``, ...); ``tu-`` encoders take ``True`` (the timm model name, with an
    optional ``.tag``, picks the weights).
    """
    if weights is None or weights.strip().lower() in ("none", "null", ""):
        return None
    if encoder.startswith(TIMM_PREFIX):
        return True
    offered = list(smp.encoders.encoders[encoder]["pretrained_settings"])
    if weights not in offered:
        listing = ", ".join(offered) if offered else "none (use --encoder-weights none)"
        raise SegalError(f"--encoder-weights {weights}: encoder {encoder} offers: {listing}")
    return weights


def weights_caches() -> dict[str, Path]:
    """Where downloaded weights are cached: ``HF_HOME`` (the Hugging Face hub cache,
    used by smp's encoders and most timm models) and ``TORCH_HOME`` (``torch.hub``)."""
    from huggingface_hub import constants

    return {"HF_HOME": Path(constants.HF_HOME), "TORCH_HOME": Path(torch.hub.get_dir()).parent}


def is_download_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a failed download."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (OSError, ConnectionError, TimeoutError)):
            return True
        module = type(current).__module__.split(".")[0]
        if module in _NETWORK_MODULES:
            return True
        current = current.__cause__ or current.__context__
    return False


def _reason(exc: BaseException) -> str:
    """``Type: first sentence`` of ``exc``, at most about 160 characters."""
    text = " ".join(str(exc).split())
    sentence = text.split(". ", 1)[0].rstrip(".")
    if len(sentence) > 160:
        sentence = sentence[:157].rsplit(" ", 1)[0] + "..."
    return f"{type(exc).__name__}: {sentence}" if sentence else type(exc).__name__


def weights_download_error(encoder: str, exc: BaseException) -> SegalError:
    """The one-line error for weights that could not be downloaded."""
    caches = ", ".join(f"{k}={v}" for k, v in weights_caches().items())
    offline = "; HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") else ""
    return SegalError(
        f"--encoder {encoder}: the pretrained weights for encoder {encoder} could not be downloaded "
        f"(offline? {_reason(exc)}{offline}); use --encoder-weights none, or pre-fill the weights cache "
        f"({caches}) on a machine with network access"
    )
