"""The one error type for mistakes a user can fix."""

from __future__ import annotations

__all__ = ["ContractError", "LabelsPending", "SegalError", "WAITING_EXIT"]

#: Exit status of a run waiting for labels (sysexits' EX_TEMPFAIL: "try again later").
WAITING_EXIT = 75


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


class LabelsPending(Exception):
    """The run waits for labels from a :class:`~segal_core.WaitingOracle`: the round's
    queries are committed and handed out; ``segal run --resume`` (or
    :func:`~segal_core.resume_run`) collects them and goes on.

    Not an error: the CLI prints :attr:`message` (what was asked, where, what to do)
    and exits with :data:`WAITING_EXIT` (75).

    :ivar run_dir: the run folder; :ivar round: the round that queried (-1: the seed
        set); :ivar total: queries handed out; :ivar arrived: usable labels so far;
        :ivar rejected: one line per label that arrived but cannot be used;
        :ivar where: the oracle's line saying where the queries went.
    """

    exit_code: int = WAITING_EXIT

    def __init__(
        self, message: str, *, run_dir: object, round: int, total: int, arrived: int = 0,
        rejected: list[str] | None = None, where: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.run_dir = run_dir
        self.round = round
        self.total = total
        self.arrived = arrived
        self.rejected = list(rejected or [])
        self.where = where

    @property
    def missing(self) -> int:
        return self.total - self.arrived
