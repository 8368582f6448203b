"""One writer per folder: a lock held while a command writes into a run folder or a
report folder.

The lock is ``fcntl.flock`` on the file :data:`LOCK_NAME` inside the folder. The
kernel drops it when the process ends, however it ends (``kill -9`` included), so a
lock file left behind by a killed process is stale and simply taken over: nothing
needs cleaning by hand. While it is held, the file says who holds it (pid, host,
start time, command), so a second process can name the holder in its one-line error.

The holder deletes the lock file when it lets go; a process that opened the file just
before that notices (the name no longer points to the file it locked) and tries again,
so two processes can never both believe they hold the lock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .errors import SegalError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking (see FolderLock)
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "FolderBusy", "FolderLock", "Holder", "holder_of", "locked"]

log = logging.getLogger("segal")

#: The lock file inside a locked folder (a run folder, a report folder).
LOCK_NAME = ".segal.lock"
#: ``flock`` errors that mean "this filesystem cannot lock", not "someone holds it".
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class FolderBusy(SegalError):
    """Another process holds the folder's lock (its message names that process)."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a folder's lock, as written in its lock file."""

    pid: int | None = None
    host: str | None = None
    since: str | None = None
    what: str | None = None
    command: str | None = None

    @classmethod
    def read(cls, data: bytes) -> Holder:
        """The holder described by a lock file's bytes (empty when unreadable)."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()

        def text(key: str) -> str | None:
            value = raw.get(key)
            return value if isinstance(value, str) and value else None

        pid = raw.get("pid")
        return cls(
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            host=text("host"),
            since=text("since"),
            what=text("what"),
            command=text("command"),
        )

    @classmethod
    def this_process(cls, what: str) -> Holder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            since=time.strftime("%Y-%m-%d %H:%M:%S %z"),
            what=what,
            command=" ".join(sys.argv)[:300],
        )

    def is_this_process(self) -> bool:
        """Whether this holder is the calling process (which may check a folder it has
        locked itself)."""
        return self.pid == os.getpid() and self.host == socket.gethostname()

    def to_bytes(self) -> bytes:
        return (json.dumps(vars(self), indent=1) + "\n").encode()

    def describe(self) -> str:
        """``a run, pid 1234 on host-a since 2026-01-02 10:00:00 +0000`` (the parts
        that are known)."""
        if self.pid is None:
            return "another segal process (it has not written its details yet)"
        where = f" on {self.host}" if self.host else ""
        since = f" since {self.since}" if self.since else ""
        what = f"{self.what}, " if self.what else ""
        return f"{what}pid {self.pid}{where}{since}"


class FolderLock:
    """The lock of one folder, held between :meth:`acquire` and :meth:`release` (or
    as a context manager).

    :param folder: the folder to lock; its lock file is ``folder / LOCK_NAME``.
    :param what: what the holder does, for other processes' messages (``"a run"``).
    :param create: create ``folder`` (and missing parents) when it does not exist;
        folders created here are removed again on release if nothing was written
        into them. Without it, a missing folder is an error.
    """

    def __init__(self, folder: Path | str, *, what: str, create: bool = True) -> None:
        self.folder = Path(folder)
        self.what = what
        self.create = create
        self._fd: int | None = None
        self._created: list[Path] = []

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    @property
    def held(self) -> bool:
        return self._fd is not None

    # -- taking it ---------------------------------------------------------------

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`FolderBusy` naming its holder.

        :raises FolderBusy: another process holds it.
        :raises SegalError: the folder is missing (without ``create``), is a file, or
            no lock file can be created in it.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.folder}: lock taken twice by one FolderLock")
        self._make_folder()
        try:
            while True:
                fd = self._open()
                if self._lock(fd):
                    break
        except BaseException:
            self._remove_created()
            raise
        self._fd = fd
        self._write_holder()
        return self

    def _make_folder(self) -> None:
        if self.folder.is_dir():
            return
        if self.folder.exists():
            raise SegalError(f"{self.folder}: is a file, not a folder")
        if not self.create:
            raise SegalError(f"{self.folder}: no such folder")
        missing = [self.folder, *(p for p in self.folder.parents if not p.exists())]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SegalError(f"{self.folder}: cannot create it ({exc.strerror or exc})") from None
        self._created = [p for p in missing if p.is_dir()]  # deepest first

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise SegalError(
                f"{self.folder}: cannot create its lock file {LOCK_NAME} ({exc.strerror or exc}); "
                "the folder must be writable"
            ) from None

    def _lock(self, fd: int) -> bool:
        """Lock ``fd``; ``False`` when the file was replaced meanwhile (try again)."""
        if fcntl is None:  # pragma: no cover - not POSIX
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            for _ in range(20):  # it may have locked the file an instant ago: let it write who it is
                if holder.pid is not None:
                    break
                time.sleep(0.025)
                holder = self._holder(fd)
            os.close(fd)
            raise FolderBusy(
                f"{self.folder}: in use by {holder.describe()}; a folder has one writer at a time: "
                "wait until that process ends (or stop it), then try again (nothing was changed)"
            ) from None
        except OSError as exc:
            if exc.errno not in _NO_LOCKING:
                os.close(fd)
                raise SegalError(f"{self.folder}: cannot lock it ({exc.strerror or exc})") from None
            log.warning(
                f"warning: {self.folder}: this filesystem cannot lock files; make sure no other segal "
                "process writes to this folder at the same time"
            )
            return True
        try:
            same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder let go and deleted it between our open and flock
            os.close(fd)
        return same

    @staticmethod
    def _holder(fd: int) -> Holder:
        try:
            return Holder.read(os.pread(fd, 4096, 0))
        except OSError:
            return Holder()

    def _write_holder(self) -> None:
        assert self._fd is not None
        data = Holder.this_process(self.what).to_bytes()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError:  # a full disk: the lock holds all the same, only unnamed
            pass

    # -- letting go --------------------------------------------------------------

    def release(self) -> None:
        """Let go (deleting the lock file first, while still holding it); remove the
        folders :meth:`acquire` created if nothing else was written into them."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(fd)
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:  # deepest first; stops at the first non-empty one
            try:
                folder.rmdir()
            except OSError:
                break
        self._created = []

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


@contextlib.contextmanager
def locked(folder: Path | str, *, what: str, create: bool = True) -> Iterator[FolderLock]:
    """``with locked(folder, what="a run"):`` hold ``folder``'s lock for the block."""
    lock = FolderLock(folder, what=what, create=create)
    with lock:
        yield lock


def holder_of(folder: Path | str) -> Holder | None:
    """Who holds ``folder``'s lock now, or ``None`` when nobody does (a lock file left
    by a killed process is not held)."""
    path = Path(folder) / LOCK_NAME
    if fcntl is None:  # pragma: no cover - not POSIX
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return FolderLock._holder(fd)
        except OSError:
            return None
        return None
    finally:
        os.close(fd)
