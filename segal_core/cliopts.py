"""``RunOption``: a ``segal run`` flag that a plugin adds for one of its settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

__all__ = ["TARGETS", "RunOption"]

#: The ``RunConfig`` maps a :class:`RunOption` may write to.
TARGETS = ("model_options", "dataset_options", "strategy_options", "oracle_options", "unit_options", "plugin_options")


class RunOption(click.Option):
    """A ``segal run`` option, returned from a plugin's ``segal_cli_options`` hook,
    that sets ``key`` in one of :class:`~segal_core.config.RunConfig`'s option maps,
    exactly as ``--model-opt key=value`` (or ``--dataset-opt``, ...) would.

    Only a value the user gives (on the command line or in ``--config``) is set: the
    ``default`` shown by ``--help`` is documentation, and the plugin's own default
    applies otherwise, so a flag of one model plugin never reaches another plugin's
    model. Giving both the flag and ``--model-opt key=...`` is an error.

    :param param_decls: the flag's spellings, as for :class:`click.Option`.
    :param target: the map to write to (one of :data:`TARGETS`).
    :param key: the setting's name in that map (default: the option's name).
    """

    def __init__(
        self,
        param_decls: Sequence[str],
        *,
        target: str = "model_options",
        key: str | None = None,
        **attrs: Any,
    ) -> None:
        if target not in TARGETS:
            raise ValueError(f"RunOption target {target!r}: expected one of {', '.join(TARGETS)}")
        super().__init__(list(param_decls), **attrs)
        self.target = target
        self.key = key or self.name or ""
