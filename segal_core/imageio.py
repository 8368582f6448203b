"""Reading and checking image/mask files, shared by the file-based dataset plugins.

Dataset-agnostic building blocks:

- :func:`read_image` / :func:`read_mask`: one file to a tensor / array, with a
  :class:`~segal_core.SegalError` naming the file for anything unreadable.
- :func:`find_files` / :func:`pair_by_id`: list a folder and pair images with masks
  by id (the file stem, less an optional suffix), naming the first unpaired file.
- :func:`check_headers`: the cheap up-front check (PIL header only, no decode): every
  file is an image, each mask has the size of its image and a single channel.
- :class:`LabelMap` (raw mask value -> class id) and :class:`ColorMap` (RGB colour ->
  class id) turn what is stored in a file into class ids; a value outside the table
  is an error naming the file and the value.
- :class:`FileDataset`: a :class:`~segal_core.Dataset` over ``(id, image, mask)``
  files, optionally resized (images bilinear, masks nearest).
- :func:`verify_masks`: decode every mask once and check its values. Decoding costs
  about 4 ns per pixel (about 1.5 s for all of CamVid); ``verify="auto"`` does it at
  load when a split holds at most :data:`AUTO_VERIFY_PIXELS` mask pixels, otherwise
  values are checked as each mask is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .dataset import DEFAULT_IGNORE_INDEX, Dataset
from .errors import SegalError

__all__ = [
    "AUTO_VERIFY_PIXELS",
    "IMAGE_EXTENSIONS",
    "MASK_EXTENSIONS",
    "VERIFY_MODES",
    "ColorMap",
    "FileDataset",
    "LabelMap",
    "Sample",
    "check_headers",
    "find_files",
    "data_root",
    "output_size",
    "pair_by_id",
    "parse_size",
    "resize_options",
    "read_header",
    "read_image",
    "read_mask",
    "verify_masks",
]

#: File endings read as images (lower case).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: File endings read as masks: lossless formats only (JPEG would blur class ids).
MASK_EXTENSIONS: tuple[str, ...] = (".png", ".bmp", ".tif", ".tiff")
#: PIL modes holding one value per pixel (``P``: palette index = class id).
SINGLE_CHANNEL_MODES = frozenset({"1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N"})
#: PIL modes of colour masks, read through a :class:`ColorMap`.
COLOUR_MODES = frozenset({"RGB", "RGBA"})
#: ``verify="auto"`` decodes every mask at load up to this many pixels per split.
AUTO_VERIFY_PIXELS = 600_000_000
#: Accepted values of the ``verify`` dataset option.
VERIFY_MODES = ("auto", "full", "header")


@dataclass(frozen=True)
class Sample:
    """One labelled image on disk: stable ``id``, ``image`` and ``mask`` paths."""

    id: str
    image: Path
    mask: Path


# -- single files ------------------------------------------------------------------


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


#: The bytes a complete file of this format ends with (PNG's IEND chunk, JPEG's EOI).
_TRAILERS = {"PNG": (b"IEND\xaeB`\x82",), "JPEG": (b"\xff\xd9",)}


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
        _check_mask_mode(img.mode, path, colors is not None)
        rgb = np.array(img.convert("RGB"))
    assert colors is not None  # _check_mask_mode let a colour mask through
    return colors.apply(rgb, path)


def _check_mask_mode(mode: str, path: Path, colour_ok: bool) -> None:
    if mode in SINGLE_CHANNEL_MODES or (colour_ok and mode in COLOUR_MODES):
        return
    if mode in COLOUR_MODES or mode == "LA":
        raise SegalError(
            f"{path}: a colour ({mode}) mask where single-channel class ids are expected; "
            "save masks as 8-bit grey or palette PNGs whose values are class ids"
        )
    raise SegalError(f"{path}: unsupported mask mode {mode!r}; save masks as 8-bit PNGs of class ids")


def parse_size(text: str, flag: str) -> tuple[int, int]:
    """``"360x480"`` -> ``(360, 480)`` (height x width); ``"256"`` -> ``(256, 256)``."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = (values[0], values[0])
    if len(values) != 2 or min(values) < 1:
        raise SegalError(f"{flag}={text!r}: expected HEIGHTxWIDTH in pixels, e.g. 512x1024")
    return values[0], values[1]


def resize_options(
    size: str | None, scale: float | None, flag: str = "--dataset-opt"
) -> tuple[tuple[int, int] | None, float | None]:
    """Check the common ``size=HxW`` / ``scale=F`` dataset options.

    :returns: ``(resize, scale)`` for :class:`FileDataset`.
    :raises SegalError: both given, a bad size, or a scale outside ``(0, 1]``.
    """
    if size is not None and scale is not None:
        raise SegalError(f"{flag} size={size} and scale={scale}: give one of them, not both")
    if scale is not None and not 0.0 < scale <= 1.0:
        raise SegalError(f"{flag} scale={scale}: expected a factor in (0, 1], e.g. 0.5")
    return (parse_size(size, f"{flag} size") if size is not None else None), scale


def data_root(path: Path | None, dataset: str) -> Path:
    """The dataset folder given by ``--data-path``, checked to be a folder."""
    if path is None:
        raise SegalError(f"--dataset {dataset} needs --data-path (the dataset's folder)")
    path = Path(path).expanduser()
    if not path.is_dir():
        what = "is a file" if path.exists() else "no such folder"
        raise SegalError(f"--data-path {path}: {what}; give the {dataset} dataset's folder")
    return path


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


# -- mapping stored values to class ids -----------------------------------------------


class LabelMap:
    """Maps the values stored in masks to class ids (or the ignore index).

    A stored value absent from the table is invalid: :meth:`apply` raises a
    :class:`~segal_core.SegalError` naming the file and the value.
    """

    def __init__(self, table: Mapping[int, int], *, num_classes: int, ignore_index: int = DEFAULT_IGNORE_INDEX):
        if not table:
            raise ValueError("empty label table")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.table = dict(table)
        lut = np.full(max(256, max(table) + 1), -1, dtype=np.int64)
        for raw, cls in table.items():
            if raw < 0:
                raise ValueError(f"negative stored value {raw} in a label table")
            if not (0 <= cls < num_classes or cls == ignore_index):
                raise ValueError(f"label table maps {raw} to {cls}, not a class or the ignore index")
            lut[raw] = cls
        self._lut = lut

    @classmethod
    def identity(
        cls,
        num_classes: int,
        *,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        ignore_values: Iterable[int] = (),
    ) -> LabelMap:
        """Ids ``0..num_classes-1`` stored as themselves; ``ignore_index`` and each of
        ``ignore_values`` read as ``ignore_index``."""
        table = {i: i for i in range(num_classes)}
        for value in (ignore_index, *ignore_values):
            table[value] = ignore_index
        return cls(table, num_classes=num_classes, ignore_index=ignore_index)

    def describe(self) -> str:
        """The valid stored values, for error messages: ``"0..10; ignored: 11, 255"``
        when classes are stored as themselves, else all valid values."""
        classes = sorted(k for k, v in self.table.items() if v != self.ignore_index)
        ignored = sorted(k for k, v in self.table.items() if v == self.ignore_index)
        if any(self.table[k] != k for k in classes):
            return _ranges(sorted(self.table))
        text = _ranges(classes) or "none"
        return f"{text}; ignored: {_ranges(ignored)}" if ignored else text

    def invalid_values(self, values: np.ndarray) -> list[int]:
        """The values of the (unique, non-negative) ``values`` that the table lacks."""
        values = np.asarray(values, dtype=np.int64)
        outside = values[(values >= len(self._lut)) | (values < 0)]
        inside = values[(values >= 0) & (values < len(self._lut))]
        bad = inside[self._lut[inside] < 0]
        return sorted({int(v) for v in np.concatenate([outside, bad])})

    def apply(self, raw: np.ndarray, path: Path) -> torch.Tensor:
        """``raw`` stored values -> ``int64`` class ids (``ignore_index`` where ignored).

        :raises SegalError: a value outside the table, naming ``path`` and the value.
        """
        if raw.size and (raw.min() < 0 or raw.max() >= len(self._lut)):
            self._fail(np.unique(raw), path)
        mapped = self._lut[raw]
        if raw.size and mapped.min() < 0:
            self._fail(np.unique(raw), path)
        return torch.from_numpy(mapped)

    def check(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Histogram of the stored values of ``raw`` (index = value); raises like
        :meth:`apply` without building the mapped mask."""
        if raw.size and raw.min() < 0:
            self._fail(np.unique(raw), path)
        counts = np.bincount(raw.ravel())
        present = np.flatnonzero(counts)
        if self.invalid_values(present):
            self._fail(present, path)
        return counts

    def _fail(self, values: np.ndarray, path: Path) -> None:
        bad = self.invalid_values(values)
        shown = ", ".join(str(v) for v in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise SegalError(
            f"{path}: mask value {shown} is not a class id of this dataset "
            f"({self.num_classes} classes; valid values: {self.describe()}); "
            "fix the mask or check --num-classes"
        )


def _ranges(values: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0..2, 5"``."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)


class ColorMap:
    """Maps the RGB colours of colour masks to class ids (or the ignore index)."""

    def __init__(self, colors: Mapping[tuple[int, int, int], int]):
        if not colors:
            raise ValueError("empty colour table")
        self.colors = {tuple(int(c) for c in rgb): int(cls) for rgb, cls in colors.items()}
        self._codes = {_code(rgb): cls for rgb, cls in self.colors.items()}

    def apply(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        """``[H, W, 3]`` colours -> ``[H, W]`` int64 class ids.

        :raises SegalError: a colour not in the table, naming ``path`` and the colour.
        """
        codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        unique, inverse = np.unique(codes, return_inverse=True)
        lookup = np.empty(len(unique), dtype=np.int64)
        for i, code in enumerate(unique.tolist()):
            cls = self._codes.get(code)
            if cls is None:
                colour = ((code >> 16) & 255, (code >> 8) & 255, code & 255)
                raise SegalError(
                    f"{path}: colour {colour} is not in the class colour table "
                    f"({len(self.colors)} colours); add it to the palette or fix the mask"
                )
            lookup[i] = cls
        return lookup[inverse].reshape(codes.shape)


def _code(rgb: tuple[int, ...]) -> int:
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


# -- folders and pairing -------------------------------------------------------------


def find_files(
    folder: Path,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    *,
    suffix: str = "",
    recursive: bool = False,
) -> dict[str, Path]:
    """Files of ``folder`` ending in ``suffix`` + one of ``extensions``, by id (the
    file name less the extension and ``suffix``), sorted by id. Hidden files are
    skipped; other files are not listed.

    :param recursive: also look in sub-folders (ids stay file stems).
    :raises SegalError: two files with the same id (e.g. ``a.png`` and ``a.jpg``).
    """
    exts = tuple(e.lower() for e in extensions)
    found: dict[str, Path] = {}
    paths = folder.rglob("*") if recursive else folder.iterdir()
    for path in sorted(paths):
        name = path.name
        if name.startswith(".") or not path.is_file():
            continue
        stem, ext = os.path.splitext(name)
        if ext.lower() not in exts or not stem.endswith(suffix):
            continue
        sample_id = stem[: len(stem) - len(suffix)] if suffix else stem
        if sample_id in found:
            raise SegalError(
                f"{path}: same id {sample_id!r} as {found[sample_id]}; keep one file per id"
            )
        found[sample_id] = path
    return dict(sorted(found.items()))


def pair_by_id(
    images: Mapping[str, Path],
    masks: Mapping[str, Path],
    *,
    image_dir: Path,
    mask_dir: Path,
    image_name: str = "{id}.*",
    mask_name: str = "{id}.*",
) -> list[Sample]:
    """Pair images with masks of the same id, in id order.

    :param image_name: how an image file is named, for messages (``{id}`` = the id).
    :param mask_name: how a mask file is named, for messages.
    :raises SegalError: an image without a mask, or a mask without an image, naming
        the first such file and the folder where its partner was expected.
    """
    for sample_id, path in images.items():
        if sample_id not in masks:
            raise SegalError(
                f"{path}: image has no mask {mask_name.format(id=sample_id)} in {mask_dir}; "
                "add the mask or remove the image"
            )
    for sample_id, path in masks.items():
        if sample_id not in images:
            raise SegalError(
                f"{path}: mask has no image {image_name.format(id=sample_id)} in {image_dir}; "
                "add the image or remove the mask"
            )
    return [Sample(sid, images[sid], masks[sid]) for sid in sorted(images)]


def check_headers(samples: Sequence[Sample], *, colour_masks: bool = False) -> list[tuple[int, int]]:
    """Cheap check of every pair from the file headers (no pixel is decoded): both
    files are images, the mask has its image's size and (unless ``colour_masks``)
    one channel.

    :returns: each image's ``(height, width)``, in sample order.
    :raises SegalError: naming the first file at fault.
    """
    sizes: list[tuple[int, int]] = []
    for sample in samples:
        _, image_size = read_header(sample.image, "image")
        mode, mask_size = read_header(sample.mask, "mask")
        if mask_size != image_size:
            raise SegalError(
                f"{sample.mask}: mask is {mask_size[1]}x{mask_size[0]} (WxH) but its image "
                f"{sample.image.name} is {image_size[1]}x{image_size[0]}; masks must match their images"
            )
        _check_mask_mode(mode, sample.mask, colour_masks)
        sizes.append(image_size)
    return sizes


# -- the dataset ---------------------------------------------------------------------


class FileDataset(Dataset):
    """One split of ``(id, image file, mask file)`` samples.

    Subclasses give ``name`` and implement :meth:`~segal_core.Dataset.load`, which
    lists and checks the files and builds one instance per split.

    :param samples: the split's samples, in item order; ``ids`` are their ids.
    :param classes: class names, index = class id.
    :param split: ``"train"``, ``"val"`` or ``"test"``.
    :param labels: stored mask value -> class id; default: ids stored as themselves,
        ``ignore_index`` ignored.
    :param colors: colour -> class id, for colour masks.
    :param ignore_index: the ignore value of the returned masks.
    :param resize: read every item at this ``(height, width)``.
    :param scale: read every item at its size times ``scale`` (ignored with ``resize``).
    :param sizes: each sample's stored ``(height, width)`` (from :func:`check_headers`),
        so that ``scale`` needs no header read per item.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str],
        *,
        split: str,
        labels: LabelMap | None = None,
        colors: ColorMap | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        resize: tuple[int, int] | None = None,
        scale: float | None = None,
        sizes: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        if sizes is not None and len(sizes) != len(samples):
            raise ValueError(f"{len(sizes)} sizes for {len(samples)} samples")
        self.samples = list(samples)
        self.sizes = list(sizes) if sizes is not None else None
        self.ids = [s.id for s in self.samples]
        self.classes = list(classes)
        self.split = split
        self.ignore_index = ignore_index
        self.labels = labels or LabelMap.identity(len(self.classes), ignore_index=ignore_index)
        self.colors = colors
        self.resize = resize
        self.scale = scale

    def _size(self, index: int) -> tuple[int, int] | None:
        if self.resize is not None:
            return self.resize
        if self.scale is None or self.scale == 1.0:
            return None
        if self.sizes is not None:
            size = self.sizes[index]
        else:
            _, size = read_header(self.samples[index].image)
        return output_size(size, scale=self.scale)

    def image(self, index: int) -> torch.Tensor:
        return read_image(self.samples[index].image, self._size(index))

    def raw_mask(self, index: int) -> np.ndarray:
        """The stored values of item ``index``'s mask (colours already mapped)."""
        return read_mask(self.samples[index].mask, self._size(index), self.colors)

    def mask(self, index: int) -> torch.Tensor:
        return self.labels.apply(self.raw_mask(index), self.samples[index].mask)


def verify_masks(dataset: FileDataset, mode: str, sizes: Sequence[tuple[int, int]], flag: str) -> bool:
    """Check every mask's values at load according to ``mode`` (see
    :data:`VERIFY_MODES`): ``"full"`` always, ``"auto"`` when the split holds at most
    :data:`AUTO_VERIFY_PIXELS` pixels, ``"header"`` never (values are still checked as
    each mask is read).

    :param sizes: the stored ``(height, width)`` of each sample, from :func:`check_headers`.
    :param flag: the option that chose ``mode``, for the error message.
    :returns: whether the masks were decoded and checked.
    :raises SegalError: an unknown mode, or a mask value outside the classes.
    """
    if mode not in VERIFY_MODES:
        raise SegalError(f"{flag}={mode!r}: expected one of {', '.join(VERIFY_MODES)}")
    pixels = sum(h * w for h, w in sizes)
    if mode == "header" or (mode == "auto" and pixels > AUTO_VERIFY_PIXELS):
        return False
    for sample in dataset.samples:
        raw = read_mask(sample.mask, None, dataset.colors)
        dataset.labels.check(raw, sample.mask)
    return True
