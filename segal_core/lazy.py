"""Re-exports imported on first use (PEP 562), so that importing a package — the core,
or a plugin's entry-point module — does not import torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import each public name
    from its submodule when first asked for.

    :param package: the package's ``__name__``.
    :param exports: public name -> submodule (relative, without the dot).

    Use in a package's ``__init__.py``::

        __getattr__, __dir__ = lazy_exports(__name__, {"Thing": "things"})
    """

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{module}", package), name)

    def dir_() -> list[str]:
        return sorted({*importlib.import_module(package).__dict__, *exports})

    return getattr_, dir_
