"""``key=value`` options for plugins (``--strategy-opt``, ``--model-opt``, ...).

Values reach a plugin as text from the command line or as JSON/TOML values from a
``--config`` file or a run's ``config.json``; :func:`coerce_options` turns both into
what the plugin's type hints say, and refuses what does not fit: a word where a
number belongs, ``2.5`` for a whole number, ``true`` for a number, NaN or infinity
for any float.
"""

from __future__ import annotations

import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import SegalError
from .names import closest

__all__ = ["accepted_options", "coerce_options", "coerce_value", "expected", "parse_pairs"]

#: Words read as ``None`` for an optional setting.
_NONE_WORDS = ("none", "null", "")
_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")
_NOT_FINITE = ": must be a finite number"


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
    """Keyword options of ``target`` (a class: its ``__init__``), name -> type hint
    (``typing.Any`` for a parameter without one: its value is passed unchanged)."""
    func = target.__init__ if inspect.isclass(target) else target
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable hints: keep them as they are written
        hints = {}
    out: dict[str, Any] = {}
    for name, param in inspect.signature(func).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        out[name] = hints.get(name, param.annotation if param.annotation is not param.empty else Any)
    return out


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else "none" if value is None else str(value)


def coerce_value(value: Any, hint: Any, where: str, *, spaced: bool = False) -> Any:
    """``value`` (text, or a value read from JSON/TOML) as type ``hint`` says.

    ``int``, ``float``, ``bool``, ``str``, ``Literal[...]`` and unions of them with
    ``None`` are checked; any other hint passes the value through unchanged.

    :param where: how the message names the setting, e.g. ``--model-opt epochs``.
    :param spaced: ``where`` is a flag of its own (``--lr``): a non-finite value is
        shown as ``--lr nan``, not ``--lr=nan``.
    :raises SegalError: a value of the wrong type, a non-finite float, an unknown word.
    """
    if _is_union(hint):
        args = typing.get_args(hint)
        optional = type(None) in args
        if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)):
            return None
        kinds = [a for a in args if a is not type(None)]
        problems: list[SegalError] = []
        for arg in kinds:
            try:
                return coerce_value(value, arg, where, spaced=spaced)
            except SegalError as exc:
                problems.append(exc)
        finite = next((p for p in problems if str(p).endswith(_NOT_FINITE)), None)
        if finite is not None:  # a number, but NaN or infinite: say that
            raise finite
        number = [a.__name__ for a in kinds if a in (int, float)]
        what = f"a number ({' or '.join(number)})" if number else " or ".join(getattr(a, "__name__", str(a)) for a in kinds)
        raise SegalError(f"{where}={_shown(value)}: expected {what}{' or none' if optional else ''}")
    if typing.get_origin(hint) is typing.Literal:
        allowed = typing.get_args(hint)
        if value in allowed:
            return value
        raise SegalError(f"{where}={_shown(value)}: expected one of {', '.join(map(str, allowed))}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            low = value.strip().lower()
            if low in _TRUE_WORDS:
                return True
            if low in _FALSE_WORDS:
                return False
        raise SegalError(f"{where}={_shown(value)}: expected true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise SegalError(f"{where}={_shown(value)}: expected a number (int)")
    if hint is float:
        if isinstance(value, bool):
            raise SegalError(f"{where}={_shown(value)}: expected a number (float)")
        if not isinstance(value, (int, float, str)):
            raise SegalError(f"{where}={_shown(value)}: expected a number (float)")
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except OverflowError:  # an int beyond the float range
            number = math.inf
        except ValueError:
            raise SegalError(f"{where}={_shown(value)}: expected a number (float)") from None
        if not math.isfinite(number):
            shown = value.strip() if isinstance(value, str) else value
            raise SegalError(f"{where}{' ' if spaced else '='}{shown}{_NOT_FINITE}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise SegalError(f"{where}={_shown(value)}: expected text")
    return value


def expected(value: Any, hint: Any) -> str | None:
    """What ``value`` (as read from JSON or TOML, not coerced) should have been to fit
    type ``hint``, in words (``"a whole number"``), or ``None`` when it fits.

    ``int``, ``float`` (finite), ``numbers.Real`` (any number, NaN included),
    ``bool``, ``str``, ``None``, ``Literal``, unions, ``list[T]`` and ``dict[str, T]``
    are checked; any other hint accepts anything.
    """
    if hint is Any:
        return None
    if _is_union(hint):
        wanted = [expected(value, arg) for arg in typing.get_args(hint)]
        return None if None in wanted else " or ".join(w for w in wanted if w)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return None if value in args else "one of " + ", ".join(map(str, args))
    if origin is list:
        if not isinstance(value, list):
            return "a list"
        wrong = next((w for w in (expected(v, args[0]) for v in value) if w), None) if args else None
        return None if wrong is None else f"a list of {wrong.removeprefix('a ').removeprefix('an ')}s"
    if origin is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return "a table of names to values"
        if len(args) == 2:
            wrong = next((w for w in (expected(v, args[1]) for v in value.values()) if w), None)
            return None if wrong is None else f"a table of names to {wrong}"
        return None
    if hint is type(None) or hint is None:
        return None if value is None else "none"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if hint is numbers.Real:  # any number, NaN and infinity included
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        try:
            return None if ok and math.isfinite(value) else "a finite number"
        except OverflowError:  # an int beyond the float range
            return "a finite number"
    if hint is str:
        return None if isinstance(value, str) else "text"
    return None


def coerce_options(
    target: Callable[..., Any],
    options: Mapping[str, Any],
    flag: str,
    *,
    names: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Check ``options`` against what ``target`` accepts and coerce them to its type
    hints (see :func:`coerce_value`); an unknown option is an error naming ``flag``
    and the accepted ones.

    :param names: how a message names option ``key`` when it has a flag of its own
        (``lr`` -> ``--lr``); default: ``{flag} {key}``.
    """
    accepted = accepted_options(target)
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in accepted:
            valid = ", ".join(closest(key, accepted)) or "none"
            what = getattr(target, "name", None) or getattr(target, "__name__", "this plugin")
            raise SegalError(f"{flag} {key}={value}: {what!r} takes no option {key!r} (it takes: {valid})")
        where = names(key) if names else f"{flag} {key}"
        out[key] = coerce_value(value, accepted[key], where, spaced=names is not None)
    return out
