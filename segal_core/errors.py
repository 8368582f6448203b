"""The one error type for mistakes a user can fix."""

from __future__ import annotations

__all__ = ["ContractError", "SegalError"]


class SegalError(Exception):
    """A mistake the user can fix: bad option, bad data, unknown name.

    The CLI prints ``str(error)`` as one line and exits with status 2, without a
    traceback. Messages name the file or option at fault and say what to do.
    """

    exit_code: int = 2


class ContractError(SegalError):
    """A plugin broke an interface's contract (a model's logits of the wrong shape, a
    dataset's image that is not ``[3, H, W]``, a bad ``segal_select`` answer).

    Printed as one line like any :class:`SegalError`, with exit status 3 (a plugin
    failed), because the fix is in the plugin, not in the user's options.
    """

    exit_code: int = 3
