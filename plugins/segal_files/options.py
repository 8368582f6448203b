"""The ``--dataset-opt`` keys every file dataset shares: ``verify``, ``size`` and
``scale``, and how they are checked."""

from __future__ import annotations

from typing import Protocol

from segal_core import SegalError

__all__ = ["MAX_SIDE", "MIN_SIDE", "OPTION_FLAG", "FileOptions", "parse_size", "resize_options"]

#: The command-line option that carries dataset options, for messages.
OPTION_FLAG = "--dataset-opt"
#: The smallest and largest image side ``size`` may ask for (models pad small images;
#: one image beyond the largest needs absurd memory).
MIN_SIDE = 1
MAX_SIDE = 16384


class FileOptions(Protocol):
    """What :func:`~segal_files.load_file_splits` reads of a dataset's options
    dataclass; the dataclass may hold any further keys of its own."""

    @property
    def verify(self) -> str:
        """``auto``, ``full`` or ``header``: see :func:`~segal_files.verify_masks`."""

    @property
    def size(self) -> str | None:
        """``HxW`` to read every item at, or ``None``."""

    @property
    def scale(self) -> float | None:
        """A factor in ``(0, 1]`` to read every item at, or ``None``."""


def parse_size(text: str, flag: str) -> tuple[int, int]:
    """``"360x480"`` -> ``(360, 480)`` (height x width); ``"256"`` -> ``(256, 256)``.

    :param flag: the option that gave ``text``, for the message.
    :raises SegalError: not one or two whole numbers, or a side outside
        :data:`MIN_SIDE`..:data:`MAX_SIDE`.
    """
    parts = text.lower().replace("*", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = (values[0], values[0])
    if len(values) != 2 or min(values) < MIN_SIDE:
        raise SegalError(f"{flag}={text!r}: expected HEIGHTxWIDTH in pixels, e.g. 512x1024")
    if max(values) > MAX_SIDE:
        raise SegalError(f"{flag}={text!r}: at most {MAX_SIDE} pixels a side (one image would need absurd memory)")
    return values[0], values[1]


def resize_options(
    size: str | None, scale: float | None, flag: str = OPTION_FLAG
) -> tuple[tuple[int, int] | None, float | None]:
    """Check the common ``size=HxW`` / ``scale=F`` dataset options.

    :returns: ``(resize, scale)`` for :class:`~segal_files.FileDataset`.
    :raises SegalError: both given, a bad size, or a scale outside ``(0, 1]``.
    """
    if size is not None and scale is not None:
        raise SegalError(f"{flag} size={size} and scale={scale}: give one of them, not both")
    if scale is not None and not 0.0 < scale <= 1.0:
        raise SegalError(f"{flag} scale={scale}: expected a factor in (0, 1], e.g. 0.5")
    return (parse_size(size, f"{flag} size") if size is not None else None), scale
