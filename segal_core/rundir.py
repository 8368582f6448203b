"""The run directory: the whole state of a run, written atomically (public format).

Files (see ``docs/run-directory.md``):

- ``config.json``   every setting, resolved, plus versions; written once at the start.
- ``history.jsonl`` one JSON object per completed round.
- ``state.json``    the commit point: completed rounds, the labelled ledger, the
  checkpoint's file name. Written last at the end of each round.
- ``model-rNNN.safetensors`` the latest round's weights (no pickle).
- ``labels/ID-HASH.png`` partial masks returned by an oracle (:meth:`RunDir.write_mask`).
- ``queries/round-NNN/`` what a waiting oracle handed out for round NNN (its own
  files: frames, pre-labels, the annotators' masks); the core only creates it.
- ``curve.png``     mIoU against labelled fraction (drawn by the built-in
  ``segal_curve`` plugin, not by the core).
- ``.segal.lock``   there while a process writes to the folder (:mod:`segal_core.lock`).

Every file is written to a temporary name and renamed into place, so a kill at any
moment leaves either the old or the new file, never half of one; files get the
permissions of the user's umask (``0644`` with the usual ``022``). ``history.jsonl``
lines beyond ``state.json``'s ``completed_rounds`` are ignored on resume.

Everything read back is checked (:mod:`segal_core.runcheck`): a damaged folder is one
line naming the file, never a resume into wrong results. A write that fails (a full
disk, an I/O error) is one line naming the file (:class:`WriteFailed`, exit status 1);
the folder keeps its last committed round.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import runcheck
from .errors import SegalError
from .lock import LOCK_NAME, FolderBusy, holder_of

__all__ = [
    "FORMAT_VERSION",
    "LedgerEntry",
    "Pending",
    "RunDir",
    "RunState",
    "WriteFailed",
    "atomic_write",
    "is_leftover",
    "new_file_mode",
    "write_failed",
]

#: 2: the model's settings moved from config.json's top level into ``model_options``;
#: 3: ``state.json`` may hold ``pending`` (a round waiting for labels) and a record
#: its ``labels`` (how the waiting round's labels came back). Folders of formats 1
#: and 2 are read and resumed as before.
FORMAT_VERSION = 3
CONFIG = "config.json"
HISTORY = "history.jsonl"
STATE = "state.json"
LABELS = "labels"


def new_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: ``0o666`` less the
    umask (``0644`` with the usual ``022``)."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync, then rename; the
    file gets the mode a plain ``open()`` would give it (the umask applied).

    :raises OSError: the write failed (``filename`` is ``path``, whichever step
        failed); ``path`` is then unchanged and no temporary file is left.
    """
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        if exc.filename == str(path) or not exc.errno:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


def is_leftover(path: Path) -> bool:
    """Whether ``path`` is a lock file or a temporary file that segal leaves behind
    when it is killed (never anything a user made); such files count as nothing."""
    name = path.name
    return name == LOCK_NAME or (name.startswith(".") and name.endswith(".tmp"))


class WriteFailed(SegalError):
    """A file could not be written (a full disk, an I/O error, a read-only or vanished
    folder): one line naming the file, exit status 1. What was there before is kept."""

    exit_code = 1


def write_failed(path: Path, exc: BaseException) -> WriteFailed:
    """The :class:`WriteFailed` for ``exc`` raised while writing ``path``; inside a run
    folder it says that the folder keeps its last completed round and how to go on."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    code = getattr(exc, "errno", None)
    fix = (
        "free some space" if code in (errno.ENOSPC, errno.EDQUOT)
        else "make it writable" if code in (errno.EROFS, errno.EACCES, errno.EPERM)
        else "check the disk"
    )
    path = Path(path)
    run = next((p for p in (path.parent, path.parent.parent) if (p / CONFIG).is_file()), None)
    if run is None:
        return WriteFailed(f"{path}: {reason}; {fix} and try again (nothing was overwritten)")
    return WriteFailed(
        f"{path}: {reason}; the run folder keeps its last completed round: {fix}, then continue with: "
        f"segal run --resume {run}"
    )


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an :class:`OSError` raised in the block into :func:`write_failed`."""
    try:
        yield
    except OSError as exc:
        raise write_failed(Path(exc.filename) if exc.filename else path, exc) from exc


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n").encode()


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block is done (a commit is never cut in half)."""
    received: list[int] = []
    try:
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, lambda signum, frame: received.append(signum))
    except ValueError:  # not the main thread: nothing to defer
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:  # deliver it now, to the handler that was there before
            signal.raise_signal(received[0])


@dataclass
class LedgerEntry:
    """One labelled sample: the round it was first labelled in, its labelled pixels,
    the partial mask file (``None``: the dataset's own ground truth, the whole image)
    and, with a region unit, the region ids labelled so far (``None``: the whole
    image). For region queries ``pixels`` is the labelled regions' area."""

    round: int
    pixels: int
    mask_file: str | None = None
    regions: list[int] | None = None

    def to_json(self) -> dict[str, Any]:
        out = vars(self).copy()
        if self.regions is None:
            del out["regions"]  # image-level entries keep their format-1 shape
        return out


@dataclass
class Pending:
    """A round whose queries wait for labels from a waiting oracle
    (``state.json``'s ``pending``).

    :param round: the round that queried (``-1``: the seed set).
    :param queries: in rank order, ``{"id": str, "score": float | None, "regions":
        list[int] | None}`` each.
    :param folder: where the queries were handed out, relative to the run folder
        (``queries/round-NNN``); :param where: the oracle's line about it.
    """

    round: int
    queries: list[dict[str, Any]]
    folder: str
    where: str = ""

    def to_json(self) -> dict[str, Any]:
        return vars(self).copy()

    @property
    def ids(self) -> list[str]:
        return [q["id"] for q in self.queries]


@dataclass
class RunState:
    """What ``state.json`` holds."""

    completed_rounds: int = 0
    ledger: dict[str, LedgerEntry] = field(default_factory=dict)
    checkpoint: str | None = None
    finished: bool = False
    #: The round waiting for labels, if any.
    pending: Pending | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "completed_rounds": self.completed_rounds,
            "finished": self.finished,
            "checkpoint": self.checkpoint,
            "pending": self.pending.to_json() if self.pending is not None else None,
            "ledger": {k: v.to_json() for k, v in self.ledger.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunState:
        """From ``state.json``'s content as it is (:meth:`RunDir.state` checks it first)."""
        pending = data.get("pending")
        return cls(
            completed_rounds=int(data["completed_rounds"]),
            finished=bool(data.get("finished", False)),
            checkpoint=data.get("checkpoint"),
            ledger={k: LedgerEntry(**v) for k, v in data["ledger"].items()},
            pending=Pending(**pending) if pending else None,
        )


class RunDir:
    """Reads and writes one run directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # -- creating and opening -------------------------------------------------

    @staticmethod
    def is_run(path: Path) -> bool:
        """Whether ``path`` holds a run (its ``config.json`` or ``state.json``)."""
        return (path / STATE).is_file() or (path / CONFIG).is_file()

    @staticmethod
    def check_new(path: Path, flag: str = "--out") -> None:
        """The output folder must be new or empty (a lock or temporary file left by a
        killed process counts as nothing), not in use, and writable. ``flag`` names
        it in the caller's words: ``--out`` on the command line, ``out=`` in Python."""
        api = flag.endswith("=")
        where = f"{flag}{str(path)!r}" if api else f"{flag} {path}"
        other = "another out=" if api else "another --out"
        if path.exists() and not path.is_dir():
            raise SegalError(f"{where}: is a file, not a folder; pick {other}")
        if path.is_dir():
            holder = holder_of(path)
            if holder is not None and not holder.is_this_process():  # not the caller's own lock
                raise FolderBusy(
                    f"{where}: in use by {holder.describe()}; a folder has one writer at a time: "
                    f"wait until that process ends (or stop it), or pick {other} (nothing was changed)"
                )
            if any(not is_leftover(p) for p in path.iterdir()):
                if (path / CONFIG).is_file():
                    hint = (
                        "continue it with resume_run(out) or run_cycle(config, if_exists='resume'), or start "
                        "again with if_exists='replace'" if api else f"resume it with --resume {path}, "
                        "or pick another --out"
                    )
                elif (path / STATE).is_file() or (path / HISTORY).is_file():
                    hint = f"it holds a damaged run (no {CONFIG}); pick {other}"
                else:
                    hint = f"pick an empty or new folder ({other})"
                raise SegalError(f"{where}: folder is not empty; {hint} (nothing was changed)")
        probe = path if path.is_dir() else next((p for p in path.parents if p.exists()), Path("."))
        if not os.access(probe, os.W_OK | os.X_OK):
            raise SegalError(f"{where}: {probe} is not writable; pick {other}")

    @classmethod
    def open_existing(cls, path: Path, *, purpose: str = "resume") -> RunDir:
        """A folder written by ``segal run``, for ``--resume`` (``purpose="resume"``)
        or ``segal report`` (``purpose="report"``): the message for a folder that is
        not a run says what to do for that purpose."""
        path = Path(path)
        if not path.is_dir():
            what = "is a file, not a run folder" if path.exists() else "no such run folder"
            raise SegalError(f"{path}: {what}")
        if not (path / CONFIG).is_file():
            entries = [p for p in path.iterdir() if not is_leftover(p)]
            if (path / STATE).is_file() or (path / HISTORY).is_file():
                raise runcheck.damaged(path / CONFIG, "missing")
            if not entries and purpose == "report":
                raise SegalError(f"{path}: the run never started (no {CONFIG}); nothing to report")
            if not entries:
                raise SegalError(
                    f"{path}: the run never started (it was stopped before writing {CONFIG}); start it "
                    f"again in this folder: segal run --out {path} with the run's options"
                )
            raise SegalError(f"{path}: not a SegAL run folder (no {CONFIG})")
        return cls(path)

    def create(self, config: Mapping[str, Any]) -> None:
        """Write a new run's ``config.json`` and its empty ``state.json``."""
        with writing(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
            self.clean_temporaries()
        with writing(self.path / CONFIG):
            atomic_write(self.path / CONFIG, _json_bytes(config))
        with writing(self.path / STATE):
            atomic_write(self.path / STATE, _json_bytes(RunState().to_json()))

    def clear(self) -> None:
        """Delete the run in this folder (``if_exists="replace"``): every file but
        the lock file; the caller holds the lock and has checked it is a run."""
        import shutil

        for entry in self.path.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # -- reading --------------------------------------------------------------

    def _read_text(self, name: str) -> str | None:
        """The file's text, ``None`` when it does not exist."""
        file = self.path / name
        try:
            return file.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            raise runcheck.damaged(file, "not UTF-8 text") from None
        except OSError as exc:
            raise SegalError(f"{file}: cannot read it ({exc.strerror or exc})") from None

    def _read_json(self, name: str) -> Any:
        file = self.path / name
        text = self._read_text(name)
        if text is None:
            raise runcheck.damaged(file, "missing")
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise runcheck.damaged(file, f"not valid JSON ({exc})") from None

    def config(self) -> dict[str, Any]:
        """``config.json``, checked for its shape and types (ranges are checked by
        :meth:`RunConfig.validate` when the run is prepared)."""
        return runcheck.check_config(self._read_json(CONFIG), self.path / CONFIG, FORMAT_VERSION)

    def state(self, *, resume: bool = False) -> RunState:
        """``state.json``, checked. A run stopped before its first ``state.json`` was
        written (``config.json`` alone) is at its start. With ``resume`` (a run about
        to go on from it) also: every ledger entry was labelled in a committed round,
        and the checkpoint it names is there and whole."""
        file = self.path / STATE
        if not file.exists() and (self.path / CONFIG).is_file():
            if self._read_text(HISTORY) or any(self.path.glob("model-r*.safetensors")):
                raise runcheck.damaged(file, "missing, but rounds were recorded (history.jsonl, checkpoints)")
            return RunState()
        data = runcheck.check_state(self._read_json(STATE), file, FORMAT_VERSION)
        rounds = data["completed_rounds"]
        ledger = {
            sid: LedgerEntry(**runcheck.check_ledger_entry(LedgerEntry, sid, entry, rounds if resume else None, file))
            for sid, entry in data["ledger"].items()
        }
        pending = data["pending"]
        state = RunState(
            completed_rounds=rounds, ledger=ledger, checkpoint=data["checkpoint"], finished=data["finished"],
            pending=Pending(**pending) if pending is not None else None,
        )
        if resume and state.checkpoint is not None:
            runcheck.check_checkpoint(self.path / state.checkpoint)
        return state

    def history(self, state: RunState | None = None) -> list[dict[str, Any]]:
        """The committed records: with ``state``, exactly ``state.completed_rounds`` of
        them, checked against it (a committed record missing is an error naming the
        file and line; lines beyond are an unfinished round's, ignored)."""
        file = self.path / HISTORY
        text = self._read_text(HISTORY) or ""
        wanted = None if state is None else state.completed_rounds
        records: list[tuple[int, Any]] = []
        for n, line in enumerate(text.splitlines(), 1):
            if wanted is not None and len(records) >= wanted:
                break
            if line.strip():
                try:
                    records.append((n, json.loads(line)))
                except json.JSONDecodeError:
                    raise runcheck.damaged(f"{file}:{n}", "not valid JSON") from None
        if state is None:
            return [r for _, r in records]
        return runcheck.check_records(
            records, file, rounds=state.completed_rounds, ledger=state.ledger, pool_size=self._pool_size()
        )

    def _pool_size(self) -> int | None:
        """``config.json``'s resolved pool size, when it says one."""
        try:
            resolved = self.config().get("resolved", {})
        except SegalError:
            return None
        size = resolved.get("pool_size")
        return size if isinstance(size, int) else None

    # -- partial masks (labels/) ------------------------------------------------

    def write_mask(self, sample_id: str, mask: Any, *, who: str, round: int = -1) -> str:
        """Write an oracle's partial mask for ``sample_id`` as a PNG under ``labels/``
        (8-bit, or 16-bit for ids above 255); returns its name relative to the run
        folder. File names are readable and distinct (a hash of the id is added) and
        carry the round that wrote them: a mask that grows in round R is a new file,
        so the committed one stays until ``state.json`` names the new one (a kill
        before the commit resumes with the committed labels); :meth:`commit` then
        deletes the masks the ledger no longer names.

        :param mask: an integer tensor ``[H, W]``; :param who: names the oracle in
            errors; :param round: the round labelling it (``-1``: the seed set).
        """
        import hashlib
        import io

        import numpy as np
        from PIL import Image

        folder = self.path / LABELS
        readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in sample_id)[:80]
        digest = hashlib.sha1(sample_id.encode()).hexdigest()[:10]
        name = f"{readable}-{digest}-{'seed' if round < 0 else f'r{round:03d}'}.png"
        values = mask.detach().cpu().numpy()
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise SegalError(f"{who}: the mask for {sample_id!r} holds values outside 0..65535")
        buf = io.BytesIO()
        Image.fromarray(values.astype(np.uint8 if values.max(initial=0) < 256 else np.uint16)).save(buf, format="PNG")
        with writing(folder / name):
            folder.mkdir(exist_ok=True)
            atomic_write(folder / name, buf.getvalue())
        return f"{LABELS}/{name}"

    def read_masks(self, ledger: Mapping[str, LedgerEntry], pool: Any = None) -> dict[str, Any]:
        """The ledger's partial masks (id -> int64 tensor), read back from ``labels/``
        and checked: one-channel 8- or 16-bit PNGs, of their image's size when
        ``pool`` (the run's pool dataset) is given."""
        import numpy as np
        import torch
        from PIL import Image

        out: dict[str, Any] = {}
        for sid, entry in ledger.items():
            if not entry.mask_file:
                continue
            file = self.path / entry.mask_file
            try:
                with Image.open(file) as img:
                    runcheck.check_mask_mode(img.mode, img.size, file)
                    values = np.array(img).astype("int64")
            except FileNotFoundError:
                raise runcheck.damaged(file, "missing (state.json's ledger names it)") from None
            except OSError as exc:
                raise runcheck.damaged(file, f"not a readable PNG ({exc})") from None
            if values.ndim != 2:
                raise runcheck.damaged(file, f"a mask of {values.ndim} dimensions, expected 2")
            if pool is not None and sid in pool.ids:
                size = tuple(pool.image_size(pool.index_of(sid)))
                if values.shape != size:
                    raise runcheck.damaged(
                        file,
                        f"the mask is {values.shape[1]}x{values.shape[0]} (WxH) but sample {sid!r} is "
                        f"{size[1]}x{size[0]}",
                    )
            out[sid] = torch.from_numpy(values)
        return out

    def clean_temporaries(self) -> None:
        """Delete the temporary files a killed process left (never the lock file)."""
        for folder in (self.path, self.path / LABELS):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)

    # -- writing --------------------------------------------------------------

    def checkpoint_name(self, round: int) -> str:
        return f"model-r{round:03d}.safetensors"

    def save_checkpoint(self, model: Any, round: int) -> str:
        """Write ``model``'s weights as round ``round``'s checkpoint (``model.save``)
        and check the file is whole; returns its name. A failure (a full disk: some
        writers report it in their own exception type) is :class:`WriteFailed`."""
        name = self.checkpoint_name(round)
        path = self.path / name
        try:
            model.save(path)
        except OSError as exc:
            raise write_failed(path, exc) from exc
        except SegalError:
            raise
        except Exception as exc:
            code = _os_error_code(str(exc))
            if code is None:
                raise
            raise write_failed(path, OSError(code, os.strerror(code), str(path))) from exc
        try:
            runcheck.check_checkpoint(path)
        except runcheck.Damaged:
            raise write_failed(path, OSError(errno.EIO, "written incompletely (is the disk full?)")) from None
        return name

    def commit(self, state: RunState, history: list[dict[str, Any]]) -> None:
        """Write the history, then ``state.json`` (the commit point), then drop older
        checkpoints. The checkpoint itself is written before, by the caller."""
        with deferred_signals():
            body = "".join(json.dumps(r, allow_nan=True) + "\n" for r in history)
            with writing(self.path / HISTORY):
                atomic_write(self.path / HISTORY, body.encode())
            with writing(self.path / STATE):
                atomic_write(self.path / STATE, _json_bytes(state.to_json()))
            for old in self.path.glob("model-r*.safetensors"):
                if old.name != state.checkpoint:
                    old.unlink(missing_ok=True)
            self.drop_unnamed_masks(state)

    def drop_unnamed_masks(self, state: RunState) -> None:
        """Delete ``labels/`` masks the committed ledger does not name: those a grown
        mask replaced, or those a killed round wrote before its commit."""
        folder = self.path / LABELS
        if not folder.is_dir():
            return
        named = {entry.mask_file for entry in state.ledger.values() if entry.mask_file}
        for file in folder.glob("*.png"):
            if f"{LABELS}/{file.name}" not in named:
                file.unlink(missing_ok=True)


def _os_error_code(message: str) -> int | None:
    """The errno in a message such as safetensors' ``I/O error: No space left on
    device (os error 28)``."""
    import re

    found = re.search(r"os error (\d+)", message)
    return int(found.group(1)) if found else None
