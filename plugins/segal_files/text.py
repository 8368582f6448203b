"""Reading the text files of a dataset (class files, list files) so that every one
is read as written or refused by name.

UTF-8 is read, with or without a byte-order mark (the mark is dropped); UTF-16 and
UTF-32 are read when a byte-order mark says so (Windows "Unicode" text). Anything
else is refused naming the file and the line: bytes that are not UTF-8 (e.g. Latin-1
or a legacy code page) and NUL characters (UTF-16 saved without a byte-order mark).
"""

from __future__ import annotations

import codecs
from pathlib import Path

from segal_core import SegalError

__all__ = ["read_text"]

#: Byte-order marks and their encodings; UTF-32 first (its LE mark starts like UTF-16's).
_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)


def read_text(path: Path, what: str) -> str:
    """The text of ``path``, decoded as its byte-order mark says, else as UTF-8.

    :param what: what the file is (``"list"``, ``"class file"``), for messages.
    :raises SegalError: unreadable, not UTF-8 (naming the line and the byte), not the
        encoding its byte-order mark names, or holding NUL characters.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SegalError(f"{path}: cannot read the {what} ({exc.strerror or exc}); fix or remove it") from None
    start, codec, name = next(((len(b), c, n) for b, c, n in _BOMS if data.startswith(b)), (0, "utf-8", ""))
    body = data[start:]
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:
        line = body[: exc.start].decode(codec, errors="replace").count("\n") + 1
        if name in ("", "UTF-8"):
            problem = f"not UTF-8 text (byte 0x{body[exc.start]:02X})"
        else:
            problem = f"starts with a {name} byte-order mark but is not {name} text"
        raise SegalError(f"{path}:{line}: {problem}; save the {what} as UTF-8") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise SegalError(
            f"{path}:{line}: holds NUL characters (UTF-16 without a byte-order mark?); save the {what} as UTF-8"
        )
    return text
