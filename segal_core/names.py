"""Name normalisation and "did you mean" suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["normalize", "closest"]


def normalize(name: str) -> str:
    """Registry key for ``name``: case-insensitive, ``-`` and ``_`` equivalent."""
    return name.strip().lower().replace("-", "_")


def closest(name: str, candidates: Iterable[str]) -> list[str]:
    """All ``candidates``, the closest to ``name`` first (then alphabetical)."""
    key = normalize(name)

    def rank(c: str) -> tuple[float, str]:
        ratio = difflib.SequenceMatcher(None, key, normalize(c)).ratio()
        prefix = 1.0 if normalize(c).startswith(key[:3]) and key[:3] else 0.0
        return (-(ratio + 0.25 * prefix), c)

    return sorted(set(candidates), key=rank)
