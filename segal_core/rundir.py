"""The run directory: the whole state of a run, written atomically (public format).

Files (see ``docs/run-directory.md``):

- ``config.json``   every setting, resolved, plus versions; written once at the start.
- ``history.jsonl`` one JSON object per completed round.
- ``state.json``    the commit point: completed rounds, the labelled ledger, the
  checkpoint's file name. Written last at the end of each round.
- ``model-rNNN.safetensors`` the latest round's weights (no pickle).
- ``labels/ID-HASH.png`` partial masks returned by an oracle (:meth:`RunDir.write_mask`).
- ``curve.png``     mIoU against labelled fraction (drawn by the built-in
  ``segal_curve`` plugin, not by the core).

Every file is written to a temporary name and renamed into place, so a kill at any
moment leaves either the old or the new file, never half of one; files get the
permissions of the user's umask (``0644`` with the usual ``022``). ``history.jsonl``
lines beyond ``state.json``'s ``completed_rounds`` are ignored on resume.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SegalError

__all__ = ["FORMAT_VERSION", "LedgerEntry", "RunDir", "RunState", "atomic_write", "new_file_mode"]

#: 2: the model's settings moved from config.json's top level into ``model_options``
#: (format-1 folders are read and resumed as before).
FORMAT_VERSION = 2
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
    file gets the mode a plain ``open()`` would give it (the umask applied)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
class RunState:
    """What ``state.json`` holds."""

    completed_rounds: int = 0
    ledger: dict[str, LedgerEntry] = field(default_factory=dict)
    checkpoint: str | None = None
    finished: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "completed_rounds": self.completed_rounds,
            "finished": self.finished,
            "checkpoint": self.checkpoint,
            "ledger": {k: v.to_json() for k, v in self.ledger.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunState:
        return cls(
            completed_rounds=int(data["completed_rounds"]),
            finished=bool(data.get("finished", False)),
            checkpoint=data.get("checkpoint"),
            ledger={k: LedgerEntry(**v) for k, v in data["ledger"].items()},
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
        """The output folder must be new or empty, and writable. ``flag`` names it in
        the caller's words: ``--out`` on the command line, ``out=`` in Python."""
        api = flag.endswith("=")
        where = f"{flag}{str(path)!r}" if api else f"{flag} {path}"
        other = "another out=" if api else "another --out"
        if path.exists() and not path.is_dir():
            raise SegalError(f"{where}: is a file, not a folder; pick {other}")
        if path.is_dir() and any(path.iterdir()):
            if RunDir.is_run(path):
                hint = (
                    "continue it with resume_run(out) or run_cycle(config, if_exists='resume'), or start "
                    "again with if_exists='replace'" if api else f"resume it with --resume {path}, "
                    "or pick another --out"
                )
            else:
                hint = "pick an empty or new folder"
            raise SegalError(f"{where}: folder is not empty; {hint} (nothing was changed)")
        probe = path if path.is_dir() else next((p for p in path.parents if p.exists()), Path("."))
        if not os.access(probe, os.W_OK | os.X_OK):
            raise SegalError(f"{where}: {probe} is not writable; pick {other}")

    @classmethod
    def open_existing(cls, path: Path) -> RunDir:
        """A folder written by ``segal run``, for ``--resume`` or ``segal report``."""
        path = Path(path)
        if not path.is_dir():
            raise SegalError(f"{path}: no such run folder")
        if not (path / CONFIG).is_file():
            raise SegalError(f"{path}: not a SegAL run folder (no {CONFIG})")
        return cls(path)

    def create(self, config: Mapping[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / CONFIG, _json_bytes(config))
        atomic_write(self.path / STATE, _json_bytes(RunState().to_json()))

    # -- reading --------------------------------------------------------------

    def _read_json(self, name: str) -> Any:
        file = self.path / name
        try:
            return json.loads(file.read_text())
        except FileNotFoundError:
            raise SegalError(f"{file}: missing; this run folder is incomplete") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SegalError(f"{file}: not valid JSON ({exc}); the run folder is damaged") from None

    def config(self) -> dict[str, Any]:
        return self._read_json(CONFIG)

    def state(self) -> RunState:
        data = self._read_json(STATE)
        try:
            return RunState.from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SegalError(f"{self.path / STATE}: unexpected content ({exc}); the run folder is damaged") from None

    def history(self, state: RunState | None = None) -> list[dict[str, Any]]:
        """The committed records (at most ``state.completed_rounds`` of them)."""
        file = self.path / HISTORY
        records: list[dict[str, Any]] = []
        if file.exists():
            try:
                text = file.read_text()
            except UnicodeDecodeError:
                raise SegalError(f"{file}: not UTF-8 text; the run folder is damaged") from None
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        raise SegalError(f"{file}:{n}: not valid JSON; the run folder is damaged") from None
        if state is not None:
            records = records[: state.completed_rounds]
        return records

    # -- partial masks (labels/) ------------------------------------------------

    def write_mask(self, sample_id: str, mask: Any, *, who: str) -> str:
        """Write an oracle's partial mask for ``sample_id`` as a PNG under ``labels/``
        (8-bit, or 16-bit for ids above 255); returns its name relative to the run
        folder. File names are readable and distinct (a hash of the id is added).

        :param mask: an integer tensor ``[H, W]``; :param who: names the oracle in
            errors.
        """
        import hashlib
        import io

        import numpy as np
        from PIL import Image

        folder = self.path / LABELS
        folder.mkdir(exist_ok=True)
        readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in sample_id)[:80]
        digest = hashlib.sha1(sample_id.encode()).hexdigest()[:10]
        name = f"{readable}-{digest}.png"
        values = mask.detach().cpu().numpy()
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise SegalError(f"{who}: the mask for {sample_id!r} holds values outside 0..65535")
        buf = io.BytesIO()
        Image.fromarray(values.astype(np.uint8 if values.max(initial=0) < 256 else np.uint16)).save(buf, format="PNG")
        atomic_write(folder / name, buf.getvalue())
        return f"{LABELS}/{name}"

    def read_masks(self, ledger: Mapping[str, LedgerEntry]) -> dict[str, Any]:
        """The ledger's partial masks (id -> int64 tensor), read back from ``labels/``."""
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
                    out[sid] = torch.from_numpy(np.array(img).astype("int64"))
            except FileNotFoundError:
                raise SegalError(f"{file}: missing; the run folder is damaged (its ledger names it)") from None
            except OSError as exc:
                raise SegalError(f"{file}: not a readable PNG ({exc}); the run folder is damaged") from None
        return out

    def clean_temporaries(self) -> None:
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        labels = self.path / "labels"
        if labels.is_dir():
            for tmp in labels.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    # -- writing --------------------------------------------------------------

    def checkpoint_name(self, round: int) -> str:
        return f"model-r{round:03d}.safetensors"

    def commit(self, state: RunState, history: list[dict[str, Any]]) -> None:
        """Write the history, then ``state.json`` (the commit point), then drop older
        checkpoints. The checkpoint itself is written before, by the caller."""
        with deferred_signals():
            body = "".join(json.dumps(r, allow_nan=True) + "\n" for r in history)
            atomic_write(self.path / HISTORY, body.encode())
            atomic_write(self.path / STATE, _json_bytes(state.to_json()))
            for old in self.path.glob("model-r*.safetensors"):
                if old.name != state.checkpoint:
                    old.unlink(missing_ok=True)
