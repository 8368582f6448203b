"""Loading plugins from entry points into a fresh pluggy manager (no global state)."""

from __future__ import annotations

import os
import traceback
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import SegalError
from .markers import PROJECT, hookimpl
from .registry import KINDS, Registry

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


@dataclass
class Plugins:
    """A loaded plugin manager, the registry it built, and what was found."""

    manager: pluggy.PluginManager
    registry: Registry
    infos: list[PluginInfo]
    #: Names blocked by ``-p no:NAME`` or ``$SEGAL_DISABLE_PLUGINS``.
    blocked: list[str] = field(default_factory=list)

    @property
    def broken(self) -> list[PluginInfo]:
        return [i for i in self.infos if i.error]

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook``; an exception from a plugin becomes a :class:`PluginError`
        naming the plugin and the hook (a :class:`SegalError` passes unchanged)."""
        caller = getattr(self.manager.hook, hook)
        try:
            return caller(**kwargs)
        except (SegalError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            plugin = self._culprit(exc)
            raise PluginError(f"plugin {plugin!r} failed in hook {hook}: {_describe_error(exc)}") from exc

    def call_impl(self, impl: Any, hook: str, **kwargs: Any) -> Any:
        """Call one plugin's implementation of ``hook`` directly (errors name it)."""
        try:
            return impl.function(**kwargs)
        except (SegalError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {impl.plugin_name!r} failed in hook {hook}: {_describe_error(exc)}"
            ) from exc

    def _culprit(self, exc: BaseException) -> str:
        modules: dict[str, str] = {}
        for name, plugin in self.manager.list_name_plugin():
            if plugin is None:
                continue
            mod = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
            modules[mod] = name
        found = "unknown plugin"
        for frame, _ in traceback.walk_tb(exc.__traceback__):
            mod = frame.f_globals.get("__name__", "")
            for prefix, name in modules.items():
                if mod == prefix or mod.startswith(prefix + "."):
                    found = name
                    if name != "segal_core":
                        return name
        return found


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
    rest work), then collect the registered classes.

    :param blocked: plugin names not to load (``-p no:NAME``); ``$SEGAL_DISABLE_PLUGINS``
        adds to them.
    :param extra: ``(name, module_or_object)`` pairs registered as plugins too
        (tests, notebooks).
    :param entry_points: use these instead of the installed ones.
    :raises SegalError: two plugins register the same name.
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

    registry = Registry()
    for kind, (hook_name, _) in KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            info = next((i for i in infos if i.name == impl.plugin_name), None)
            try:
                classes = list(impl.function() or ())
            except Exception as exc:
                if info is not None:
                    info.error = f"{hook_name}: {_describe_error(exc)}"
                continue
            for cls in classes:
                registry.add(kind, cls, impl.plugin_name)
                if info is not None:
                    info.registers.setdefault(kind, []).append(cls.name)

    for info in infos:
        if info.error is None and pm.has_plugin(info.name):
            plugin = pm.get_plugin(info.name)
            info.hooks = sorted(
                caller.name for caller in pm.get_hookcallers(plugin) or ()
            )
    # a plugin that broke during registration must not take part in the run
    for info in infos:
        if info.error is not None and pm.has_plugin(info.name):
            pm.unregister(name=info.name)
    return Plugins(manager=pm, registry=registry, infos=infos, blocked=sorted(blocked_names))


def registry(*, blocked: Iterable[str] = ()) -> Registry:
    """The name -> class maps of every installed plugin (a fresh load each call)."""
    return load_plugins(blocked=blocked).registry


