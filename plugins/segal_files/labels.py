"""From what a mask file stores to class ids: :class:`LabelMap` (stored value ->
class id) and :class:`ColorMap` (RGB colour -> class id).

A stored value or colour absent from its table is a :class:`~segal_core.SegalError`
naming the file and the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from segal_core import DEFAULT_IGNORE_INDEX, SegalError

__all__ = ["ColorMap", "LabelMap"]


class LabelMap:
    """Maps the values stored in masks to class ids (or the ignore index).

    A stored value absent from the table is invalid: :meth:`apply` raises a
    :class:`~segal_core.SegalError` naming the file and the value.

    :param table: stored value -> class id (or ``ignore_index``).
    :param num_classes: the number of classes.
    :param ignore_index: the class id of ignored pixels.
    :raises ValueError: an empty table, a negative stored value, or a target that is
        neither a class nor ``ignore_index`` (a programming error, not a user's).
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
    """Maps the RGB colours of colour masks to class ids (or the ignore index).

    :param colors: ``(r, g, b)`` -> class id.
    :raises ValueError: an empty table.
    """

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
