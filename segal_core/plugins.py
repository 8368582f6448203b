"""Loading plugins from entry points into a fresh pluggy manager (no global state)."""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import SegalError
from .markers import PROJECT, hookimpl
from .registration import KINDS, Registry

log = logging.getLogger("segal")

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "PluginError",
    "PluginInfo",
    "Plugins",
    "load_plugins",
    "registry",
]

#: The entry-point group plugins register under (public).
ENTRY_POINT_GROUP = "segal"
#: Comma-separated plugin names never to load (public), like ``-p no:NAME``.
DISABLE_ENV = "SEGAL_DISABLE_PLUGINS"


class PluginError(SegalError):
    """A plugin raised inside a hook; the message names the plugin and the hook."""

    exit_code = 3


@dataclass
class PluginInfo:
    """One plugin as ``segal plugins`` shows it."""

    name: str
    version: str = ""
    distribution: str = ""
    module: str = ""
    hooks: list[str] = field(default_factory=list)
    registers: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


class _CorePlugin:
    """The core's own hook implementations (always registered, never blocked)."""

    @hookimpl(trylast=True)
    def segal_phase(self, action: Callable[[], Any]) -> Any:
        return action()


def _blame(exc: BaseException, plugin: str, hook: str) -> BaseException:
    """What an exception raised by ``plugin``'s implementation of ``hook`` becomes:
    a user mistake (:class:`SegalError`) or an interrupt passes unchanged, anything
    else is a :class:`PluginError` naming them."""
    if isinstance(exc, (SegalError, KeyboardInterrupt, SystemExit)) or not isinstance(exc, Exception):
        return exc
    error = PluginError(f"plugin {plugin!r} failed in hook {hook}: {_describe_error(exc)}")
    error.__cause__ = exc
    return error


def _named(function: Callable[..., Any], plugin: str, hook: str) -> Callable[..., Any]:
    """``function`` (one plugin's implementation of ``hook``) made to name the plugin
    when it fails, so no traceback needs reading to know who failed. A wrapper
    implementation (a generator) is blamed only for what it raises itself: an
    exception thrown into it from the wrapped call and re-raised is not its fault."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def wrapper(*args: Any) -> Generator[Any, Any, Any]:
            inner = function(*args)
            try:
                value = next(inner)
            except StopIteration as stop:
                return stop.value
            except BaseException as exc:
                raise _blame(exc, plugin, hook) from exc.__cause__
            while True:
                try:
                    sent = yield value
                except BaseException as thrown:
                    try:
                        value = inner.throw(thrown)
                    except StopIteration as stop:
                        return stop.value
                    except BaseException as exc:
                        if exc is thrown:
                            raise
                        raise _blame(exc, plugin, hook) from exc.__cause__
                else:
                    try:
                        value = inner.send(sent)
                    except StopIteration as stop:
                        return stop.value
                    except BaseException as exc:
                        raise _blame(exc, plugin, hook) from exc.__cause__

        return wrapper

    @functools.wraps(function)
    def plain(*args: Any) -> Any:
        try:
            return function(*args)
        except BaseException as exc:
            blamed = _blame(exc, plugin, hook)
            if blamed is exc:
                raise
            raise blamed from exc

    return plain


def _name_failures(pm: pluggy.PluginManager, name: str) -> None:
    """Make every hook implementation of plugin ``name`` name it when it fails."""
    plugin = pm.get_plugin(name)
    for caller in pm.get_hookcallers(plugin) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin_name == name and not getattr(impl.function, "segal_named", False):
                impl.function = _named(impl.function, name, caller.name)
                impl.function.segal_named = True  # type: ignore[attr-defined]


@dataclass
class Plugins:
    """A loaded plugin manager, the registry it builds, and what was found.

    The registry (the registration hooks' classes) is built on first use, so a
    command that needs no plugin class (``segal --help``) imports none.
    """

    manager: pluggy.PluginManager
    found: list[PluginInfo]
    #: Names blocked by ``-p no:NAME`` or ``$SEGAL_DISABLE_PLUGINS``.
    blocked: list[str] = field(default_factory=list)
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def registry(self) -> Registry:
        """Name -> class maps; built on first use (a plugin whose registration fails
        is then marked broken and leaves the run).

        :raises SegalError: two plugins register the same name.
        """
        if self._registry is None:
            self._registry = _build_registry(self.manager, self.found)
        return self._registry

    @property
    def infos(self) -> list[PluginInfo]:
        """Every plugin found, with what it registers (so the registry is built)."""
        self.registry  # noqa: B018
        return self.found

    @property
    def broken(self) -> list[PluginInfo]:
        return [i for i in self.infos if i.error]

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook``; an exception from a plugin is a :class:`PluginError`
        naming the plugin and the hook (a :class:`SegalError` passes unchanged)."""
        return getattr(self.manager.hook, hook)(**kwargs)

    def call_impl(self, impl: Any, hook: str, **kwargs: Any) -> Any:
        """Call one plugin's implementation of ``hook`` directly (errors name it)."""
        return impl.function(**kwargs) if not kwargs else impl.function(*(kwargs[a] for a in impl.argnames))


def _entry_points() -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    seen: dict[str, metadata.EntryPoint] = {}
    for ep in eps:  # the same distribution on sys.path twice: keep the first
        seen.setdefault(ep.name, ep)
    return sorted(seen.values(), key=lambda ep: ep.name)


def _describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


def blocked_from_env() -> set[str]:
    """Plugin names listed in ``$SEGAL_DISABLE_PLUGINS``."""
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def load_plugins(
    *,
    blocked: Iterable[str] = (),
    extra: Sequence[tuple[str, object]] = (),
    entry_points: Sequence[metadata.EntryPoint] | None = None,
) -> Plugins:
    """Build a fresh manager: load every ``segal`` entry point (a plugin that fails to
    import, or whose hooks are invalid, is kept as *broken* with its error, and the
    rest work). The registered classes are collected when first asked for
    (:attr:`Plugins.registry`), so loading imports no plugin's heavy modules.

    :param blocked: plugin names not to load (``-p no:NAME``); ``$SEGAL_DISABLE_PLUGINS``
        adds to them.
    :param extra: ``(name, module_or_object)`` pairs registered as plugins too
        (tests, notebooks).
    :param entry_points: use these instead of the installed ones.
    :raises SegalError: ``blocked`` names a plugin that is not installed.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(_CorePlugin(), name="segal_core")
    blocked_names = set(blocked) | blocked_from_env()
    for name in blocked_names:
        pm.set_blocked(name)

    infos: list[PluginInfo] = []
    candidates: list[tuple[PluginInfo, Callable[[], object]]] = []
    for ep in entry_points if entry_points is not None else _entry_points():
        dist = getattr(ep, "dist", None)
        info = PluginInfo(
            name=ep.name,
            version=getattr(dist, "version", "") or "",
            distribution=(dist.metadata["Name"] if dist is not None else ""),
            module=ep.value,
        )
        candidates.append((info, ep.load))
    for name, obj in extra:
        candidates.append((PluginInfo(name=name, module=getattr(obj, "__name__", repr(obj))), lambda o=obj: o))

    for info, load in candidates:
        if info.name in blocked_names or pm.has_plugin(info.name):
            continue
        try:
            plugin = load()
            pm.register(plugin, name=info.name)
        except Exception as exc:
            info.error = _describe_error(exc)
            infos.append(info)
            continue
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            pm.unregister(name=info.name)
            info.error = _describe_error(exc)
        infos.append(info)

    for info in infos:
        if info.error is None and pm.has_plugin(info.name):
            plugin = pm.get_plugin(info.name)
            info.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
            _name_failures(pm, info.name)
    known = {info.name for info, _ in candidates}
    for name in sorted(set(blocked) - known):
        raise SegalError(f"-p no:{name}: no plugin is called {name!r} (installed: {', '.join(sorted(known))})")
    for name in sorted(blocked_from_env() - known):
        log.warning(f"${DISABLE_ENV}: no plugin is called {name!r}; ignored")
    return Plugins(manager=pm, found=infos, blocked=sorted(blocked_names))


def _build_registry(pm: pluggy.PluginManager, infos: list[PluginInfo]) -> Registry:
    """Collect the registered classes; a plugin whose registration hook fails is
    marked broken and unregistered."""
    registry = Registry()
    for kind, (hook_name, _) in KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            info = next((i for i in infos if i.name == impl.plugin_name), None)
            try:
                classes = list(impl.function() or ())
            except Exception as exc:
                if info is not None:
                    info.error = f"{hook_name}: {_describe_error(exc.__cause__ or exc)}"
                continue
            for cls in classes:
                registry.add(kind, cls, impl.plugin_name)
                if info is not None:
                    info.registers.setdefault(kind, []).append(cls.name)
    # a plugin that broke during registration must not take part in the run
    for info in infos:
        if info.error is not None and pm.has_plugin(info.name):
            pm.unregister(name=info.name)
    return registry


def registry(*, blocked: Iterable[str] = ()) -> Registry:
    """The name -> class maps of every installed plugin (a fresh load each call)."""
    return load_plugins(blocked=blocked).registry


