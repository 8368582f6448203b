"""Checkpoints: the network's ``state_dict`` in safetensors (no pickle anywhere).

The file's metadata records the architecture, encoder and class count, so loading
a checkpoint into a model of another shape is one clear error, not a key dump.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from segal_core import SegalError
from segal_core.rundir import new_file_mode

__all__ = ["FORMAT", "clone_state", "load_checkpoint", "restore_state", "save_checkpoint"]

#: ``format`` metadata of checkpoints written here.
FORMAT = "segal-smp/1"


def clone_state(network: nn.Module) -> dict[str, torch.Tensor]:
    """A real copy of ``network.state_dict()`` (new tensors on the same device), not
    references to the live parameters."""
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def restore_state(network: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` (as from :func:`clone_state`) into ``network`` in place, keeping
    each tensor's device and memory format. Keys must match exactly."""
    own = network.state_dict()
    if set(own) != set(state) or any(own[k].shape != state[k].shape for k in own):
        raise ValueError("state does not match the network")
    with torch.no_grad():
        for key, value in own.items():
            value.copy_(state[key])


def save_checkpoint(path: Path, network: nn.Module, metadata: Mapping[str, str]) -> None:
    """Write ``network``'s weights and ``metadata`` to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, **metadata})
        os.chmod(tmp, new_file_mode())  # safetensors creates 0600; results follow the umask
        os.replace(tmp, path)  # never a half-written checkpoint under the real name
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path, network: nn.Module, expected: Mapping[str, str]) -> None:
    """Load weights written by :func:`save_checkpoint` into ``network`` (in place, on
    its device). A missing or foreign file, or one saved for another architecture,
    encoder or class count, is a :class:`SegalError`."""
    path = Path(path)
    if not path.is_file():
        raise SegalError(f"checkpoint {path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SegalError(f"checkpoint {path}: not a safetensors file ({exc})") from exc
    if metadata.get("format") != FORMAT:
        found = f"format {metadata['format']!r}" if "format" in metadata else "no format in its metadata"
        raise SegalError(f"checkpoint {path}: not a SegAL smp checkpoint ({found})")
    wrong = [f"{k} {metadata.get(k)!r} (this model: {v!r})" for k, v in expected.items() if metadata.get(k) != v]
    if wrong:
        raise SegalError(f"checkpoint {path}: saved for another model: {'; '.join(wrong)}")
    try:
        restore_state(network, tensors)
    except ValueError:
        raise SegalError(f"checkpoint {path}: its tensors do not match this network; was it edited?") from None
