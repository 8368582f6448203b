"""Label Studio's brush RLE, encoded and decoded (our own implementation of the format).

A brush result's ``value.rle`` is a list of bytes holding a bit stream, most
significant bit first. It encodes ``count`` values of ``word`` bits each: the pixels of
an RGBA image of the task's original size, row by row, four values per pixel. Label
Studio reads the alpha channel (every fourth value) as the brush's coverage.

The stream::

    count        32 bits   how many values follow (height * width * 4)
    word - 1      5 bits   bits per value (8 for RGBA bytes)
    size_k - 1    4 bits   four times: the bit widths of the four run-length classes
    then chunks until ``count`` values are produced:
    repeat        1 bit    1: one value repeated; 0: that many literal values
    class         2 bits   which of the four widths the length is written in
    length - 1    size_class bits
    value(s)      word bits once (repeat) or ``length`` times (literal)

The last byte is padded with zero bits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RLEError", "decode", "decode_alpha", "encode", "encode_mask"]

#: The run-length widths this encoder writes (any four widths 1..16 decode).
_SIZES = (3, 6, 10, 16)


class RLEError(ValueError):
    """A brush RLE that cannot be decoded (truncated, or a header that does not fit)."""


def _fields_to_bytes(values: np.ndarray, widths: np.ndarray) -> list[int]:
    """Concatenate ``values[i]`` written in ``widths[i]`` bits (MSB first), pad to bytes."""
    if values.size == 0:
        return []
    most = int(widths.max())
    shifts = widths[:, None] - 1 - np.arange(most, dtype=np.int64)[None, :]
    bits = (values[:, None] >> np.clip(shifts, 0, None)) & 1
    return np.packbits(bits[shifts >= 0].astype(np.uint8)).tolist()


def encode(values: np.ndarray, word: int = 8) -> list[int]:
    """The brush RLE of a flat array of ``values`` (each below ``2**word``), as bytes.

    Runs of two or more equal values become repeat chunks; single values between runs
    are grouped into literal chunks.
    """
    flat = np.ascontiguousarray(values, dtype=np.int64).ravel()
    if not 1 <= word <= 32:
        raise ValueError(f"word size {word}: must be 1..32 bits")
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << word):
        raise ValueError(f"values outside 0..{(1 << word) - 1}")
    out_values: list[np.ndarray] = []
    out_widths: list[np.ndarray] = []

    def put(vals: list[int], widths: list[int]) -> None:
        out_values.append(np.asarray(vals, dtype=np.int64))
        out_widths.append(np.asarray(widths, dtype=np.int64))

    put([flat.size, word - 1, *(s - 1 for s in _SIZES)], [32, 5, 4, 4, 4, 4])

    def length_fields(length: int) -> tuple[list[int], list[int]]:
        cls = next(k for k, s in enumerate(_SIZES) if length <= 1 << s)
        return [cls, length - 1], [2, _SIZES[cls]]

    longest = 1 << _SIZES[-1]
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]]) if flat.size else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], flat.size]
    single_from: int | None = None  # start of pending single values (a literal chunk)

    def flush_literal(until: int) -> None:
        nonlocal single_from
        if single_from is None:
            return
        pos = single_from
        while pos < until:
            n = min(longest, until - pos)
            v, w = length_fields(n)
            put([0, *v], [1, *w])
            out_values.append(flat[pos:pos + n])
            out_widths.append(np.full(n, word, dtype=np.int64))
            pos += n
        single_from = None

    for start, end in zip(starts.tolist(), ends.tolist()):
        if end - start == 1:
            if single_from is None:
                single_from = start
            continue
        flush_literal(start)
        value = int(flat[start])
        pos = start
        while pos < end:
            n = min(longest, end - pos)
            if n == 1:  # a run's remainder of one value
                single_from = pos
                break
            v, w = length_fields(n)
            put([1, *v, value], [1, *w, word])
            pos += n
    flush_literal(flat.size)
    return _fields_to_bytes(np.concatenate(out_values), np.concatenate(out_widths))


def encode_mask(mask: np.ndarray) -> list[int]:
    """The brush RLE of a bool ``[H, W]`` mask: an RGBA image, all four channels 255
    where ``mask`` is true and 0 elsewhere (what Label Studio draws for a brush)."""
    rgba = np.repeat(np.asarray(mask, dtype=bool).reshape(-1, 1), 4, axis=1).astype(np.int64) * 255
    return encode(rgba.ravel(), word=8)


class _Bits:
    """A read cursor over a bit stream (MSB first)."""

    def __init__(self, data: bytes | bytearray | list[int]) -> None:
        try:
            raw = np.asarray(bytearray(data), dtype=np.uint8)
        except (TypeError, ValueError):
            raise RLEError("the rle is not a list of bytes (0..255)") from None
        self.bits = np.unpackbits(raw).astype(np.int64)
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        if self.pos + n > self.bits.size:
            raise RLEError("the rle ends early (truncated)")
        out = self.bits[self.pos:self.pos + n]
        self.pos += n
        return out

    def read(self, n: int) -> int:
        value = 0
        for bit in self.take(n).tolist():
            value = (value << 1) | bit
        return value

    def words(self, count: int, word: int) -> np.ndarray:
        block = self.take(count * word).reshape(count, word)
        return block @ (np.int64(1) << np.arange(word - 1, -1, -1, dtype=np.int64))


def decode(data: bytes | bytearray | list[int], limit: int | None = None) -> np.ndarray:
    """The flat values a brush RLE encodes (int64).

    :param limit: refuse a header that announces more values than this (a corrupt or
        foreign stream would otherwise allocate without bound).
    :raises RLEError: truncated data, a header over ``limit``, a run past the end.
    """
    bits = _Bits(data)
    count = bits.read(32)
    word = bits.read(5) + 1
    sizes = [bits.read(4) + 1 for _ in range(4)]
    if limit is not None and count > limit:
        raise RLEError(f"the rle holds {count} values, more than the image's {limit}")
    out = np.zeros(count, dtype=np.int64)
    i = 0
    while i < count:
        repeat = bits.read(1)
        length = bits.read(sizes[bits.read(2)]) + 1
        if i + length > count:
            raise RLEError(f"a run of {length} values goes past the {count} announced")
        if repeat:
            out[i:i + length] = bits.read(word)
        else:
            out[i:i + length] = bits.words(length, word)
        i += length
    return out


def decode_alpha(data: bytes | bytearray | list[int], height: int, width: int) -> np.ndarray:
    """The alpha channel ``[height, width]`` (int64) of a brush RLE of that size.

    :raises RLEError: undecodable data, or a value count other than ``height * width * 4``.
    """
    values = decode(data, limit=height * width * 4)
    if values.size != height * width * 4:
        raise RLEError(f"the rle holds {values.size} values, not {height}x{width}x4 = {height * width * 4}")
    return values.reshape(height, width, 4)[:, :, 3]
