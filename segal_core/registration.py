"""Name -> class maps built from what the plugins register."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import SegalError
from .names import closest, normalize

__all__ = ["KINDS", "Registry"]

#: Registration kind -> (hook name, CLI option that picks one).
KINDS: Mapping[str, tuple[str, str]] = {
    "datasets": ("segal_register_datasets", "--dataset"),
    "models": ("segal_register_models", "--model"),
    "strategies": ("segal_register_strategies", "--strategy"),
    "oracles": ("segal_register_oracles", "--oracle"),
    "units": ("segal_register_units", "--query-unit"),
}


@dataclass
class Registry:
    """Loaded classes by name. Each map holds every name *and* alias as written;
    :meth:`get` also matches case-insensitively with ``-`` and ``_`` equivalent."""

    datasets: dict[str, type] = field(default_factory=dict)
    models: dict[str, type] = field(default_factory=dict)
    strategies: dict[str, type] = field(default_factory=dict)
    oracles: dict[str, type] = field(default_factory=dict)
    units: dict[str, type] = field(default_factory=dict)
    #: (kind, class) -> the plugin that registered it.
    owners: dict[tuple[str, type], str] = field(default_factory=dict)

    def add(self, kind: str, cls: type, plugin: str) -> None:
        """Register ``cls`` under its ``name`` and ``aliases``; a name already taken
        (case-insensitively) by another class is an error naming both plugins."""
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not name:
            raise SegalError(f"plugin {plugin!r} registered {cls.__qualname__} without a 'name'")
        table: dict[str, type] = getattr(self, kind)
        taken = {normalize(k): v for k, v in table.items()}
        for key in (name, *getattr(cls, "aliases", ())):
            other = taken.get(normalize(key))
            if other is not None and other is not cls:
                theirs = self.owners.get((kind, other), "?")
                raise SegalError(
                    f"two plugins register the {kind[:-1] if kind != 'strategies' else 'strategy'} "
                    f"name {key!r}: {theirs!r} ({other.__qualname__}) and {plugin!r} "
                    f"({cls.__qualname__}); uninstall or block one (segal -p no:NAME)"
                )
            table[key] = cls
            taken[normalize(key)] = cls
        self.owners[(kind, cls)] = plugin

    def names(self, kind: str) -> list[str]:
        """Primary names of ``kind`` (no aliases), sorted."""
        table: dict[str, type] = getattr(self, kind)
        return sorted({cls.name for cls in table.values()})

    def get(self, kind: str, name: str) -> type:
        """The class called ``name``; an unknown name is an error listing the valid
        names, the closest first."""
        table: dict[str, type] = getattr(self, kind)
        if name in table:
            return table[name]
        key = normalize(name)
        for candidate, cls in table.items():
            if normalize(candidate) == key:
                return cls
        option = KINDS[kind][1]
        valid = closest(name, self.names(kind))
        listing = ", ".join(valid) if valid else "none installed"
        raise SegalError(f"{option} {name}: unknown; valid names: {listing}")

    def dataset(self, name: str) -> type:
        return self.get("datasets", name)

    def model(self, name: str) -> type:
        return self.get("models", name)

    def strategy(self, name: str) -> type:
        return self.get("strategies", name)

    def oracle(self, name: str) -> type:
        return self.get("oracles", name)

    def unit(self, name: str) -> type:
        return self.get("units", name)
