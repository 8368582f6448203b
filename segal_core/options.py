"""``key=value`` options for plugins (``--strategy-opt``, ``--model-opt``, ...)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import SegalError
from .names import closest

__all__ = ["parse_pairs", "accepted_options", "coerce_options"]


def parse_pairs(pairs: Iterable[str], flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a pair without ``=`` is an error
    naming ``flag``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise SegalError(f"{flag} {pair!r}: expected KEY=VALUE")
        out[key] = value.strip()
    return out


def accepted_options(target: Callable[..., Any]) -> dict[str, Any]:
    """Keyword options of ``target`` (a class: its ``__init__``), name -> type hint."""
    func = target.__init__ if inspect.isclass(target) else target
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable hints: keep them as strings
        hints = {}
    out: dict[str, Any] = {}
    for name, param in inspect.signature(func).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        out[name] = hints.get(name, param.annotation if param.annotation is not param.empty else str)
    return out


def _coerce(value: Any, hint: Any, label: str) -> Any:
    if not isinstance(value, str):
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value.lower() in ("none", "null", "") and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, label)
            except SegalError:
                continue
        kinds = [a for a in args if a is not type(None)]
        number = [a.__name__ for a in kinds if a in (int, float)]
        what = f"a number ({' or '.join(number)})" if number else " or ".join(getattr(a, "__name__", str(a)) for a in kinds)
        raise SegalError(f"{label}={value!r}: expected {what}{' or none' if type(None) in args else ''}")
    if hint is bool:
        low = value.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise SegalError(f"{label}={value!r}: expected true or false")
    if hint in (int, float):
        try:
            return hint(value)
        except ValueError:
            raise SegalError(f"{label}={value!r}: expected a number ({hint.__name__})") from None
    return value


def coerce_options(target: Callable[..., Any], options: Mapping[str, Any], flag: str) -> dict[str, Any]:
    """Check ``options`` against what ``target`` accepts and coerce them to its type
    hints; an unknown option is an error naming ``flag`` and the accepted ones."""
    accepted = accepted_options(target)
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in accepted:
            valid = ", ".join(closest(key, accepted)) or "none"
            what = getattr(target, "name", None) or getattr(target, "__name__", "this plugin")
            raise SegalError(f"{flag} {key}={value}: {what!r} takes no option {key!r} (it takes: {valid})")
        out[key] = _coerce(value, accepted[key], f"{flag} {key}")
    return out
