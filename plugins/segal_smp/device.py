"""Where a model runs and in which precision (``--device``, ``--precision``).

The CPU path is plain fp32. The CUDA-only branches are kept small: autocast with
bf16 (or fp16 plus a gradient scaler on cards without bf16), channels-last memory
layout, and ``torch.backends.cudnn.benchmark``.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import torch

from segal_core import SegalError

__all__ = ["PRECISIONS", "Runtime", "resolve_device", "resolve_precision", "resolve_runtime"]

#: Values accepted by ``--precision``.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_CUDA_INDEX = re.compile(r"^cuda:(\d+)$")


def resolve_device(spec: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a :class:`torch.device`.

    ``auto`` picks the current CUDA device when there is one, else the CPU. Asking
    for CUDA where there is none (or for a card index that does not exist) is a
    :class:`~segal_core.SegalError`.
    """
    text = spec.strip().lower()
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = _CUDA_INDEX.match(text)
    if text == "cuda" or match:
        if not torch.cuda.is_available():
            raise SegalError(f"--device {spec}: CUDA is not available on this machine; use --device cpu")
        if match:
            index = int(match.group(1))
            count = torch.cuda.device_count()
            if index >= count:
                raise SegalError(
                    f"--device {spec}: this machine has {count} CUDA device(s) "
                    f"(cuda:0..cuda:{count - 1}); pick one of them or --device cuda"
                )
            return torch.device("cuda", index)
        return torch.device("cuda")
    raise SegalError(f"--device {spec}: expected auto, cpu, cuda or cuda:N")


def resolve_precision(spec: str, device: torch.device) -> torch.dtype:
    """``--precision`` -> the compute dtype (``float32``, ``bfloat16``, ``float16``).

    ``auto`` = bf16 on CUDA cards that support it, fp16 on older CUDA cards, fp32 on
    the CPU. Mixed precision is offered on CUDA only.
    """
    text = spec.strip().lower()
    if text not in PRECISIONS:
        raise SegalError(f"--precision {spec}: expected one of {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        if text in ("auto", "fp32"):
            return torch.float32
        raise SegalError(
            f"--precision {spec}: mixed precision runs on CUDA only; use --precision fp32 (or auto) on {device.type}"
        )
    if text == "fp32":
        return torch.float32
    bf16_ok = torch.cuda.is_bf16_supported()
    if text == "bf16" and not bf16_ok:
        raise SegalError("--precision bf16: this CUDA device has no bf16 support; use --precision fp16")
    if text == "fp16" or (text == "auto" and not bf16_ok):
        return torch.float16
    return torch.bfloat16


@dataclass(frozen=True)
class Runtime:
    """A resolved device and compute dtype, with the helpers the trainer needs."""

    device: torch.device
    dtype: torch.dtype

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def mixed(self) -> bool:
        """Whether autocast runs (CUDA with bf16 or fp16)."""
        return self.cuda and self.dtype != torch.float32

    @property
    def memory_format(self) -> torch.memory_format:
        """channels-last on CUDA (faster convolutions with tensor cores)."""
        return torch.channels_last if self.cuda else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Autocast to :attr:`dtype` on CUDA; nothing on the CPU."""
        if not self.mixed:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for fp16 (bf16 needs none)."""
        return torch.amp.GradScaler("cuda", enabled=self.cuda and self.dtype == torch.float16)

    def prepare(self) -> None:
        """Per-device global switches, set when a model is placed on the device.

        On CUDA: ``torch.backends.cudnn.benchmark = True`` (a process-wide switch that
        picks the fastest convolution algorithms per input shape; training crops have
        a fixed shape, so it pays off). Nothing on the CPU.
        """
        if self.cuda:
            torch.backends.cudnn.benchmark = True


def resolve_runtime(device: str, precision: str) -> Runtime:
    """Resolve ``--device`` and ``--precision`` together."""
    dev = resolve_device(device)
    return Runtime(device=dev, dtype=resolve_precision(precision, dev))
