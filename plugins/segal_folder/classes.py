"""The class file of a ``folder`` dataset: ``classes.txt`` or ``classes.json``.

``classes.txt``: one class per line, id = position (blank lines and lines starting
with ``#`` skipped). A line may end with the class colour for colour masks,
``road 128 64 128`` or ``road #804080``; names may hold spaces. Two optional
``key: value`` lines: ``ignore_index: 255`` (the stored value of ignored pixels) and
``ignore_color: 255 255 255`` (their colour).

``classes.json``: a list of names, or an object::

    {"classes": ["background", "road", ...],
     "colors": [[0, 0, 0], [128, 64, 128], ...],        # optional, colour masks
     "ignore_index": 255, "ignore_color": [255, 255, 255]}  # optional

(``classes`` may also hold ``{"name": ..., "color": [r, g, b]}`` objects.)

Both are read as UTF-8 (a byte-order mark is fine) or, with a byte-order mark,
UTF-16; other encodings are refused naming the line (see :func:`segal_files.read_text`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segal_core import SegalError
from segal_files import read_text

__all__ = ["CLASS_FILES", "ClassSpec", "read_classes"]

#: Class file names looked for at the dataset root, in this order.
CLASS_FILES = ("classes.json", "classes.txt")

RGB = tuple[int, int, int]


@dataclass
class ClassSpec:
    """What a class file says.

    :param names: class names, index = class id.
    :param colors: colour of each class for colour masks (``None``: masks hold ids).
    :param ignore_index: stored value of ignored pixels (``None``: not given).
    :param ignore_color: colour of ignored pixels in colour masks.
    :param source: the file read.
    """

    names: list[str]
    colors: list[RGB] | None = None
    ignore_index: int | None = None
    ignore_color: RGB | None = None
    source: Path | None = field(default=None, compare=False)


def _colour(value: Any, where: str) -> RGB:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("#") and len(text) == 7:
            try:
                return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
            except ValueError:
                pass
        value = text.replace(",", " ").split()
    try:
        rgb = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise SegalError(f"{where}: colour {value!r} is not R G B in 0..255 (or #RRGGBB)")
    return rgb  # type: ignore[return-value]


def _int(value: Any, where: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SegalError(f"{where}: ignore_index {value!r} is not a whole number") from None
    if number < 0:
        raise SegalError(f"{where}: ignore_index {number} is negative")
    return number


def _read_txt(path: Path) -> ClassSpec:
    names: list[str] = []
    colors: list[RGB | None] = []
    spec = ClassSpec(names=names, source=path)
    for number, line in enumerate(read_text(path, "class file").splitlines(), start=1):
        raw = line.strip()
        if not raw or raw.startswith("#"):
            continue
        where = f"{path}:{number}"
        key, colon, value = raw.partition(":")
        if colon:
            key = key.strip().lower()
            if key == "ignore_index":
                spec.ignore_index = _int(value.strip(), where)
            elif key == "ignore_color":
                spec.ignore_color = _colour(value, where)
            else:
                raise SegalError(f"{where}: unknown setting {key!r} (known: ignore_index, ignore_color)")
            continue
        parts = raw.split()
        if len(parts) >= 4 and all(p.isdigit() for p in parts[-3:]):
            names.append(" ".join(parts[:-3]))
            colors.append(_colour(parts[-3:], where))
        elif len(parts) >= 2 and parts[-1].startswith("#"):
            names.append(" ".join(parts[:-1]))
            colors.append(_colour(parts[-1], where))
        else:
            names.append(" ".join(parts))
            colors.append(None)
    given = [c for c in colors if c is not None]
    if given and len(given) != len(colors):
        missing = names[colors.index(None)]
        raise SegalError(f"{path}: class {missing!r} has no colour; give a colour for every class or none")
    spec.colors = given or None
    return spec


def _read_json(path: Path) -> ClassSpec:
    text = read_text(path, "class file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SegalError(f"{path}: not valid JSON ({exc}); fix the file") from None
    if isinstance(data, list):
        data = {"classes": data}
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise SegalError(f'{path}: expected a list of class names or {{"classes": [...]}}')
    unknown = set(data) - {"classes", "colors", "ignore_index", "ignore_color"}
    if unknown:
        raise SegalError(
            f"{path}: unknown key {sorted(unknown)[0]!r} (known: classes, colors, ignore_index, ignore_color)"
        )
    names: list[str] = []
    colors: list[RGB] = []
    for i, entry in enumerate(data["classes"]):
        if isinstance(entry, str):
            names.append(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            names.append(entry["name"])
            if "color" in entry:
                colors.append(_colour(entry["color"], f"{path}: class {entry['name']!r}"))
        else:
            raise SegalError(
                f'{path}: class {i} is {entry!r}; expected a name or {{"name": ..., "color": [r, g, b]}}'
            )
    if "colors" in data:
        if colors:
            raise SegalError(f"{path}: colours given twice (per class and in 'colors'); keep one")
        colors = [_colour(c, f"{path}: colors[{i}]") for i, c in enumerate(data["colors"] or [])]
    if colors and len(colors) != len(names):
        raise SegalError(f"{path}: {len(colors)} colours for {len(names)} classes; give one per class")
    spec = ClassSpec(names=names, colors=colors or None, source=path)
    if data.get("ignore_index") is not None:
        spec.ignore_index = _int(data["ignore_index"], str(path))
    if data.get("ignore_color") is not None:
        spec.ignore_color = _colour(data["ignore_color"], f"{path}: ignore_color")
    return spec


def read_classes(root: Path) -> ClassSpec | None:
    """The class file at ``root`` (``classes.json`` first), or ``None`` if there is none.

    :raises SegalError: a malformed file, naming it (and the line for ``.txt``).
    """
    for name in CLASS_FILES:
        path = root / name
        if path.is_file():
            spec = _read_json(path) if path.suffix == ".json" else _read_txt(path)
            if not spec.names:
                raise SegalError(f"{path}: no class names; list one class per line, id = position")
            duplicates = sorted({n for n in spec.names if spec.names.count(n) > 1})
            if duplicates:
                raise SegalError(f"{path}: class {duplicates[0]!r} is listed twice; names must be unique")
            if spec.colors and len(set(spec.colors)) != len(spec.colors):
                raise SegalError(f"{path}: two classes share a colour; colours must be unique")
            return spec
    return None
