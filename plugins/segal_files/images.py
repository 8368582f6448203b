"""Reading one image or mask file: headers, pixels, modes and sizes.

Every failure is a :class:`~segal_core.SegalError` naming the file: missing, not an
image, truncated (PNG and JPEG end markers are checked from the header read on) or
corrupt, or stored in a way that would read wrong:

- images: 8-bit grey, palette and RGB are read as RGB; an alpha channel is dropped;
  CMYK, YCbCr and LAB are converted by Pillow; 16-bit grey (``I;16``, and ``I``
  within 0..65535) is scaled to 8 bits (value / 257); floating-point (``F``) images
  and values beyond 16 bits are refused, their range being unknown;
- masks: single-channel files (``1``, ``L``, ``P``, 8/16-bit ``I``) give their stored
  values; colour masks (``RGB``, ``RGBA``, and ``P`` when a colour table is given:
  its palette colours count) go through a :class:`~segal_files.ColorMap`, and are
  refused with transparent pixels; masks with an alpha channel (``LA``, ``PA``) or of
  floating point (``F``) are refused; so is a mask stored in a lossy format (a JPEG
  named ``.png``, a JPEG-compressed TIFF), whatever its extension says.
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
    "IMAGE_MODES",
    "MASK_EXTENSIONS",
    "MASK_FORMATS",
    "SINGLE_CHANNEL_MODES",
    "check_image_mode",
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
#: PIL modes of colour masks, read through a :class:`~segal_files.ColorMap` (so is
#: ``P`` when a colour table is given).
COLOUR_MODES = frozenset({"RGB", "RGBA"})
#: 16-bit grey modes; ``I`` (32-bit) holds them when read from some files.
_WIDE_GREY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
#: PIL modes read as images (as RGB: alpha dropped, 16-bit grey scaled to 8 bits).
IMAGE_MODES = (
    frozenset({"1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "LA", "La", "PA", "CMYK", "YCbCr", "LAB"})
    | _WIDE_GREY_MODES
)
#: File formats (as Pillow names them) masks may be stored in: lossless ones.
MASK_FORMATS = frozenset({"PNG", "BMP", "TIFF", "GIF"})

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


def _check_lossless(img: Image.Image, path: Path) -> None:
    """Refuse a mask whose real format (not its extension) is lossy."""
    fmt = img.format or "unknown"
    if fmt in MASK_FORMATS and "jpeg" not in str(img.info.get("compression", "")).lower():
        return
    kind = "a JPEG-compressed TIFF" if fmt in MASK_FORMATS else f"a {fmt} file"
    named = f" named {path.suffix}" if fmt not in MASK_FORMATS and path.suffix else ""
    raise SegalError(
        f"{path}: mask is {kind}{named}; masks must be lossless PNG, BMP or TIFF files (lossy "
        "compression changes class ids at edges), save it as PNG from the original labels"
    )


def read_header(path: Path, what: str = "image") -> tuple[str, tuple[int, int]]:
    """``(mode, (height, width))`` of an image file, from its header only; PNG and
    JPEG files are also checked for truncation (their end marker).

    :param what: ``"image"`` or ``"mask"``, for messages; a ``"mask"`` is also refused
        when its real format is lossy (a JPEG named ``.png``).
    :raises SegalError: missing, not an image, truncated or a lossy mask, naming ``path``.
    """
    with _open(path, what) as img:
        width, height = img.size
        mode, fmt = img.mode, img.format
        if what == "mask":
            _check_lossless(img, path)
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
        rgb = _as_rgb(img, path)
    if size is not None and (rgb.height, rgb.width) != tuple(size):
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.array(rgb, dtype=np.uint8)  # a writable copy
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _as_rgb(img: Image.Image, path: Path) -> Image.Image:
    """A decoded image as 8-bit RGB (see the module docstring for each mode)."""
    if img.mode == "RGB":
        return img
    if img.mode in _WIDE_GREY_MODES:
        values = np.asarray(img)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise SegalError(
                f"{path}: a 32-bit integer ({img.mode}) image with values beyond 16 bits; "
                "save it as 8-bit RGB or grey"
            )
        return Image.fromarray(np.rint(values / 257.0).astype(np.uint8)).convert("RGB")
    check_image_mode(img.mode, path)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # Pillow's way for palette transparency; alpha dropped next
    return img.convert("RGB")


def check_image_mode(mode: str, path: Path) -> None:
    """Refuse an image whose PIL ``mode`` cannot be read as RGB, naming ``path``."""
    if mode in IMAGE_MODES:
        return
    if mode == "F":
        raise SegalError(
            f"{path}: a floating-point (F) image, whose value range is unknown; save it as 8-bit RGB or grey"
        )
    raise SegalError(f"{path}: image mode {mode!r} cannot be read as RGB; save it as 8-bit RGB or grey")


def read_mask(
    path: Path,
    size: tuple[int, int] | None = None,
    colors: ColorMap | None = None,
) -> np.ndarray:
    """The raw values of the mask at ``path`` as an integer ``[H, W]`` array.

    A single-channel file (``L``, ``P``, 16-bit, ...) gives its stored values. A colour
    (RGB/RGBA) file is an error unless ``colors`` maps its colours to class ids; with
    ``colors``, a palette (``P``) file is read by its palette colours too.

    :param size: ``(height, width)`` to resize to (nearest neighbour), or ``None``.
    :param colors: colour -> class id table for colour masks.
    :raises SegalError: missing, not an image, corrupt, lossy, transparent or of a
        mode that cannot hold class ids, naming ``path``.
    """
    with _open(path, "mask") as img:
        _check_lossless(img, path)
        _decode(img, path, "mask")
        check_mask_mode(img.mode, path, colors is not None)
        if size is not None and (img.height, img.width) != tuple(size):
            img = img.resize((size[1], size[0]), Image.Resampling.NEAREST)
        if colors is None or img.mode not in COLOUR_MODES | {"P"}:
            return np.array(img).astype(np.int64, copy=False)
        rgb = _opaque_rgb(img, path)
    return colors.apply(rgb, path)


def _opaque_rgb(img: Image.Image, path: Path) -> np.ndarray:
    """The ``[H, W, 3]`` colours of a colour or palette mask; refuses transparent pixels."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "RGB":
        return np.asarray(img)
    rgba = np.asarray(img.convert("RGBA"))
    if (rgba[..., 3] < 255).any():
        raise SegalError(
            f"{path}: colour mask has transparent pixels; save it without transparency "
            "(every pixel the colour of its class)"
        )
    return rgba[..., :3]


def check_mask_mode(mode: str, path: Path, colour_ok: bool) -> None:
    """Refuse a mask whose PIL ``mode`` cannot hold class ids (colour modes unless
    ``colour_ok``), naming ``path``."""
    if mode in SINGLE_CHANNEL_MODES or (colour_ok and mode in COLOUR_MODES):
        return
    if mode in COLOUR_MODES:
        raise SegalError(
            f"{path}: a colour ({mode}) mask where single-channel class ids are expected; "
            "save masks as 8-bit grey or palette PNGs whose values are class ids"
        )
    if mode in ("LA", "La", "PA"):
        raise SegalError(
            f"{path}: a mask with an alpha channel ({mode}); save masks without transparency, "
            "as 8-bit grey or palette PNGs whose values are class ids"
        )
    if mode == "F":
        raise SegalError(
            f"{path}: a floating-point (F) mask; class ids are whole numbers, save masks as 8-bit PNGs of class ids"
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
