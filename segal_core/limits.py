"""Limits that depend on the machine: settings that would take absurd memory are
refused up front, with the limit named, instead of failing (or swapping) later."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import SegalError

if TYPE_CHECKING:
    from .dataset import Splits

__all__ = ["available_memory", "check_cache_fits"]

#: The share of the free memory that ``--cache`` may take.
CACHE_SHARE = 0.8


def available_memory() -> int | None:
    """Bytes of memory free for a new allocation (Linux ``MemAvailable``, else the
    free pages), or ``None`` when the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_cache_fits(splits: Splits, free: int | None = None) -> None:
    """``--cache`` decodes every split into memory (uint8 images and masks, int64 masks
    past 255 classes): refuse it when that would take more than :data:`CACHE_SHARE` of
    the free memory, estimated from the first image's size.

    :param free: the free memory in bytes (default: :func:`available_memory`).
    :raises SegalError: naming the estimate and the limit.
    """
    free = available_memory() if free is None else free
    parts = [s for s in (splits.train, splits.val, splits.test) if s is not None and len(s)]
    if free is None or not parts:
        return
    height, width = parts[0].image_size(0)
    mask_bytes = 1 if max(len(splits.train.classes), splits.train.ignore_index) < 256 else 8
    items = sum(len(s) for s in parts)
    need = items * height * width * (3 + mask_bytes)
    if need > CACHE_SHARE * free:
        gib = 1024**3
        raise SegalError(
            f"--cache: the dataset would take about {need / gib:.1f} GiB in memory ({items} images of "
            f"{width}x{height}), more than {CACHE_SHARE:.0%} of the {free / gib:.1f} GiB free; drop --cache"
        )
