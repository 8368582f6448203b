"""Reading one image or mask file: headers, pixels, modes and sizes.

Every failure is a :class:`~segal_core.SegalError` naming the file: missing, not an
image, truncated (PNG and JPEG end markers are checked from the header read on) or
corrupt, or a mask stored in a mode that cannot hold class ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from segal_core import SegalError

if TYPE_CHECKING:
    from .labels import ColorMap

__all__ = [
    "COLOUR_MODES",
    "IMAGE_EXTENSIONS",
    "MASK_EXTENSIONS",
    "SINGLE_CHANNEL_MODES",
    "check_mask_mode",
    "output_size",
    "read_header",
    "read_image",
    "read_mask",
]

#: File endings read as images (lower case).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: File endings read as masks: lossless formats only (JPEG would blur class ids).
MASK_EXTENSIONS: tuple[str, ...] = (".png", ".bmp", ".tif", ".tiff")
#: PIL modes holding one value per pixel (``P``: palette index = class id).
SINGLE_CHANNEL_MODES = frozenset({"1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N"})
#: PIL modes of colour masks, read through a :class:`~segal_files.ColorMap`.
COLOUR_MODES = frozenset({"RGB", "RGBA"})

#: The bytes a complete file of this format ends with (PNG's IEND chunk, JPEG's EOI).
_TRAILERS = {"PNG": (b"IEND\xaeB`\x82",), "JPEG": (b"\xff\xd9",)}


def _open(path: Path, what: str) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise SegalError(f"{path}: {what} file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise SegalError(f"{path}: not a readable {what} ({_reason(exc)}); replace or remove it") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_complete(path: Path, fmt: str | None, what: str) -> None:
    """A cheap truncation check: PNG and JPEG files must end with their end marker
    (one seek and a few bytes read; no pixel is decoded)."""
    trailers = _TRAILERS.get(fmt or "")
    if not trailers:
        return
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 64))
        tail = fh.read().rstrip(b"\x00")  # some writers pad JPEGs after EOI
    if not any(tail.endswith(t) or (fmt == "JPEG" and t in tail[-32:]) for t in trailers):
        raise SegalError(f"{path}: {what} file is truncated (no {fmt} end marker); replace or remove it")


def read_header(path: Path, what: str = "image") -> tuple[str, tuple[int, int]]:
    """``(mode, (height, width))`` of an image file, from its header only; PNG and
    JPEG files are also checked for truncation (their end marker).

    :param what: ``"image"`` or ``"mask"``, for messages.
    :raises SegalError: missing, not an image or truncated, naming ``path``.
    """
    with _open(path, what) as img:
        width, height = img.size
        mode, fmt = img.mode, img.format
    _check_complete(path, fmt, what)
    return mode, (height, width)


def _decode(img: Image.Image, path: Path, what: str) -> None:
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise SegalError(
            f"{path}: {what} cannot be decoded ({_reason(exc)}); the file is truncated or "
            "corrupt, replace or remove it"
        ) from None


def read_image(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The image at ``path`` as RGB ``uint8`` ``[3, H, W]``.

    :param size: ``(height, width)`` to resize to (bilinear, antialiased), or ``None``.
    :raises SegalError: missing, not an image, truncated or corrupt, naming ``path``.
    """
    with _open(path, "image") as img:
        _decode(img, path, "image")
        rgb = img.convert("RGB")
    if size is not None and (rgb.height, rgb.width) != tuple(size):
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.array(rgb, dtype=np.uint8)  # a writable copy
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def read_mask(
    path: Path,
    size: tuple[int, int] | None = None,
    colors: ColorMap | None = None,
) -> np.ndarray:
    """The raw values of the mask at ``path`` as an integer ``[H, W]`` array.

    A single-channel file (``L``, ``P``, 16-bit, ...) gives its stored values. A colour
    (RGB/RGBA) file is an error unless ``colors`` maps its colours to class ids.

    :param size: ``(height, width)`` to resize to (nearest neighbour), or ``None``.
    :param colors: colour -> class id table for colour masks.
    :raises SegalError: missing, not an image, corrupt, or an unexpected colour mask.
    """
    with _open(path, "mask") as img:
        _decode(img, path, "mask")
        if size is not None and (img.height, img.width) != tuple(size):
            img = img.resize((size[1], size[0]), Image.Resampling.NEAREST)
        if img.mode in SINGLE_CHANNEL_MODES:
            return np.array(img).astype(np.int64, copy=False)
        check_mask_mode(img.mode, path, colors is not None)
        rgb = np.array(img.convert("RGB"))
    assert colors is not None  # check_mask_mode let a colour mask through
    return colors.apply(rgb, path)


def check_mask_mode(mode: str, path: Path, colour_ok: bool) -> None:
    """Refuse a mask whose PIL ``mode`` cannot hold class ids (colour modes unless
    ``colour_ok``), naming ``path``."""
    if mode in SINGLE_CHANNEL_MODES or (colour_ok and mode in COLOUR_MODES):
        return
    if mode in COLOUR_MODES or mode == "LA":
        raise SegalError(
            f"{path}: a colour ({mode}) mask where single-channel class ids are expected; "
            "save masks as 8-bit grey or palette PNGs whose values are class ids"
        )
    raise SegalError(f"{path}: unsupported mask mode {mode!r}; save masks as 8-bit PNGs of class ids")


def output_size(
    size: tuple[int, int], *, resize: tuple[int, int] | None = None, scale: float | None = None
) -> tuple[int, int]:
    """The ``(height, width)`` an image of ``size`` is read at: ``resize`` when given,
    else ``size`` times ``scale`` (rounded, at least 1), else unchanged."""
    if resize is not None:
        return resize
    if scale is not None and scale != 1.0:
        return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
    return size
