"""The one error type for mistakes a user can fix."""

from __future__ import annotations

__all__ = ["SegalError"]


class SegalError(Exception):
    """A mistake the user can fix: bad option, bad data, unknown name.

    The CLI prints ``str(error)`` as one line and exits with status 2, without a
    traceback. Messages name the file or option at fault and say what to do.
    """

    exit_code: int = 2
