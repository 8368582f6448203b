"""pluggy markers for the ``segal`` project."""

from __future__ import annotations

import pluggy

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "segal"
#: Marks a hook specification in :mod:`segal_core.hookspecs`.
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a hook implementation in a plugin module.
hookimpl = pluggy.HookimplMarker(PROJECT)
