"""Checks of what a run folder holds, applied to every file read back from it.

A file that parses is not yet a file that is right: ``config.json``, ``state.json``,
``history.jsonl``, ``labels/*.png`` and the checkpoint are checked here for their
shape and types, and state and history for agreeing with each other, so that a
damaged or hand-edited folder is refused with one line naming the file (and the
line) instead of resuming into wrong results. :class:`~segal_core.rundir.RunDir`
calls these; they raise :class:`Damaged`.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import re
import struct
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import SegalError
from .options import expected

__all__ = [
    "CHECKPOINT_PATTERN",
    "Damaged",
    "check_checkpoint",
    "check_config",
    "check_ledger_entry",
    "check_mask_mode",
    "check_records",
    "check_state",
    "damaged",
]

#: What ``state.json``'s ``checkpoint`` may name: a file of the run folder itself.
CHECKPOINT_PATTERN = re.compile(r"model-r\d{3,}\.safetensors")
#: What a ledger's ``mask_file`` may name: a PNG under ``labels/``.
_MASK_FILE = re.compile(r"labels/[^/\\\x00]+\.png")
#: Settings every ``config.json`` has held since format 1.
REQUIRED_SETTINGS = ("dataset", "model", "strategy", "oracle", "seed", "seed_ratio", "query_ratio")
#: Keys of a round's record (``history.jsonl``) and their types; the first ones are
#: required, the others checked when present.
_Number = numbers.Real  # NaN and infinity included: a record may hold them
_RECORD_REQUIRED: Mapping[str, Any] = {
    "round": int,
    "labeled": int,
    "labeled_fraction": _Number,
    "val_miou": _Number | None,
    "test_miou": _Number | None,
    "queried": list[str],
}
_RECORD_OPTIONAL: Mapping[str, Any] = {
    "labeled_pixels": int,
    "labeled_pixel_fraction": _Number,
    "pool_size": int,
    "query_scores": list[_Number | None],
    "per_class_iou": dict[str, _Number | None],
    "val_per_class_iou": dict[str, _Number | None],
    "seconds": dict[str, _Number],
    "train": dict[str, Any],
    "labels": dict[str, Any],
    "world_size": int,  # processes the round ran on (torchrun)
}
_PNG_MODES = ("L", "I;16", "I;16B", "I;16L", "I")


class Damaged(SegalError):
    """A run folder's file does not hold what segal wrote there."""


def damaged(file: Path | str, what: str) -> Damaged:
    """``FILE: WHAT; the run folder is damaged ...`` with the way out (never a
    suggestion that leads back to the same folder)."""
    return Damaged(
        f"{file}: {what}; the run folder is damaged: restore the file from a copy, or start the run "
        "again in a new folder"
    )


def _fits(value: Any, hint: Any) -> str | None:
    return expected(value, hint)


def _newer(file: Path, data: Mapping[str, Any], version: int) -> None:
    fmt = data.get("format", 1)
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        raise damaged(file, f"'format' is {fmt!r}, not a format version")
    if fmt > version:
        raise SegalError(
            f"{file}: written in run-folder format {fmt} by a newer segal (this one reads up to {version}); "
            "upgrade segal to continue or report this run"
        )


# -- config.json ------------------------------------------------------------------


def check_config(data: Any, file: Path, version: int) -> dict[str, Any]:
    """``config.json``'s content: a table of the run's settings, each of its type,
    and its ``resolved`` sizes; returns it unchanged."""
    from .config import RunConfig, upgrade

    if not isinstance(data, dict):
        raise damaged(file, "expected a table of settings")
    _newer(file, data, version)
    settings = upgrade(data)
    missing = [k for k in REQUIRED_SETTINGS if k not in settings]
    if missing:
        raise damaged(file, f"the setting {missing[0]!r} is missing")
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if f.name in settings:
            wrong = _fits(settings[f.name], hints[f.name])
            if wrong is not None:
                raise damaged(file, f"{f.name!r} is {_shown(settings[f.name])}, expected {wrong}")
    resolved = data.get("resolved", {})
    if not isinstance(resolved, dict):
        raise damaged(file, "'resolved' is not a table")
    for key, hint in (("pool_size", int), ("val_size", int), ("test_size", int | None), ("ignore_index", int)):
        if key in resolved:
            wrong = _fits(resolved[key], hint)
            if wrong is not None:
                raise damaged(file, f"resolved {key!r} is {_shown(resolved[key])}, expected {wrong}")
    return data


# -- state.json ---------------------------------------------------------------------


def check_state(data: Any, file: Path, version: int) -> dict[str, Any]:
    """``state.json``'s content, checked: returns the arguments of ``RunState`` with
    ledger entries still as tables (see :func:`check_ledger_entry`)."""
    if not isinstance(data, dict):
        raise damaged(file, "expected a table")
    _newer(file, data, version)
    for key in ("completed_rounds", "ledger"):
        if key not in data:
            raise damaged(file, f"{key!r} is missing")
    rounds = data["completed_rounds"]
    if _fits(rounds, int) or rounds < 0:
        raise damaged(file, f"'completed_rounds' is {_shown(rounds)}, expected a whole number >= 0")
    finished = data.get("finished", False)
    if not isinstance(finished, bool):
        raise damaged(file, f"'finished' is {_shown(finished)}, expected true or false")
    checkpoint = data.get("checkpoint")
    if checkpoint is not None and (not isinstance(checkpoint, str) or not CHECKPOINT_PATTERN.fullmatch(checkpoint)):
        raise damaged(file, f"'checkpoint' is {_shown(checkpoint)}, expected a file name model-rNNN.safetensors")
    if rounds > 0 and checkpoint is None:
        raise damaged(file, f"{rounds} rounds are committed but no checkpoint is named")
    ledger = data["ledger"]
    if not isinstance(ledger, dict):
        raise damaged(file, "'ledger' is not a table of sample ids")
    pending = _checked_pending(data.get("pending"), rounds, file)
    if pending is not None and finished:
        raise damaged(file, "the run is 'finished' but a round still waits for labels ('pending')")
    return {
        "completed_rounds": rounds, "finished": finished, "checkpoint": checkpoint, "ledger": ledger,
        "pending": pending,
    }


def _checked_pending(pending: Any, rounds: int, file: Path) -> dict[str, Any] | None:
    """``state.json``'s ``pending``: the round waiting for labels, or null."""
    if pending is None:
        return None
    if not isinstance(pending, dict):
        raise damaged(file, "'pending' is not a table")
    for key, hint in (("round", int), ("queries", list), ("folder", str), ("where", str)):
        if key not in pending:
            raise damaged(file, f"'pending' has no {key!r}")
        if _fits(pending[key], hint) is not None:
            raise damaged(file, f"'pending.{key}' is {_shown(pending[key])}, expected {_fits(pending[key], hint)}")
    unknown = [k for k in pending if k not in ("round", "queries", "folder", "where")]
    if unknown:
        raise damaged(file, f"'pending' has an unknown key {unknown[0]!r}")
    if pending["round"] != rounds - 1:  # the last committed round, or -1 (the seed set) before any
        raise damaged(file, f"'pending.round' is {pending['round']}, but the last committed round is {rounds - 1}")
    if not re.fullmatch(r"queries/round-(\d{3,}|seed)", pending["folder"]):
        raise damaged(file, f"'pending.folder' {pending['folder']!r} is not a folder queries/round-NNN")
    for n, query in enumerate(pending["queries"]):
        if not isinstance(query, dict) or not isinstance(query.get("id"), str):
            raise damaged(file, f"'pending.queries' item {n} is not a table with an 'id'")
        if _fits(query.get("score"), _Number | None) is not None:
            raise damaged(file, f"'pending.queries' item {n}: 'score' is {_shown(query.get('score'))}")
        if _fits(query.get("regions"), list[int] | None) is not None:
            raise damaged(file, f"'pending.queries' item {n}: 'regions' is {_shown(query.get('regions'))}")
    return pending


def check_ledger_entry(
    entry_type: type, sample_id: str, entry: Any, rounds: int | None, file: Path
) -> dict[str, Any]:
    """One ledger entry, checked against the fields of ``entry_type`` (a dataclass):
    required fields present, no unknown ones, each of its type; a mask file under
    ``labels/``; with ``rounds`` (the committed rounds), labelled in one of them."""
    where = f"ledger entry {sample_id!r}"
    if not isinstance(entry, dict):
        raise damaged(file, f"{where} is not a table")
    fields = {f.name: f for f in dataclasses.fields(entry_type)}
    hints = typing.get_type_hints(entry_type)
    unknown = [k for k in entry if k not in fields]
    if unknown:
        raise damaged(file, f"{where} has an unknown key {unknown[0]!r}")
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in entry:
            if required:
                raise damaged(file, f"{where} has no {name!r}")
            continue
        wrong = _fits(entry[name], hints[name])
        if wrong is not None:
            raise damaged(file, f"{where}: {name!r} is {_shown(entry[name])}, expected {wrong}")
    labelled_in = entry.get("round")
    if rounds is not None and isinstance(labelled_in, int) and not -1 <= labelled_in < rounds:
        raise damaged(
            file, f"{where} was labelled in round {labelled_in}, but only rounds 0..{rounds - 1} are committed"
        )
    if isinstance(entry.get("pixels"), int) and entry["pixels"] < 0:
        raise damaged(file, f"{where} has {entry['pixels']} labelled pixels")
    mask_file = entry.get("mask_file")
    if isinstance(mask_file, str) and not _MASK_FILE.fullmatch(mask_file):
        raise damaged(file, f"{where}: 'mask_file' {mask_file!r} is not a file under labels/")
    return entry


# -- history.jsonl ------------------------------------------------------------------------


def check_records(
    records: Sequence[tuple[int, Any]],
    file: Path,
    *,
    rounds: int,
    ledger: Mapping[str, Any] | None = None,
    pool_size: int | None = None,
) -> list[dict[str, Any]]:
    """The committed records (``(line number, record)`` pairs, ``rounds`` of them at
    least), checked: each a table of the right keys and types, numbered ``0, 1, ...``
    in order, labelled counts that only grow, of the run's pool, and (but for the
    last) queried ids that the ledger holds. Returns the first ``rounds`` records."""
    if len(records) < rounds:
        line = records[-1][0] + 1 if records else 1
        raise damaged(
            file,
            f"state.json says {rounds} rounds are committed but only {len(records)} records are here: "
            f"round {len(records)}'s record (line {line}) is missing",
        )
    out: list[dict[str, Any]] = []
    previous = 0
    for index, (line, record) in enumerate(records[:rounds]):
        where = f"line {line}"
        if not isinstance(record, dict):
            raise damaged(f"{file}:{line}", "a record must be a table")
        for key, hint in _RECORD_REQUIRED.items():
            if key not in record:
                raise damaged(f"{file}:{line}", f"the record has no {key!r}")
            wrong = _fits(record[key], hint)
            if wrong is not None:
                raise damaged(f"{file}:{line}", f"{key!r} is {_shown(record[key])}, expected {wrong}")
        for key, hint in _RECORD_OPTIONAL.items():
            if key in record and record[key] is not None:
                wrong = _fits(record[key], hint)
                if wrong is not None:
                    raise damaged(f"{file}:{line}", f"{key!r} is {_shown(record[key])}, expected {wrong}")
        if record["round"] != index:
            raise damaged(
                f"{file}:{line}", f"the record is of round {record['round']}, expected round {index} ({where})"
            )
        if record["labeled"] < previous:
            raise damaged(f"{file}:{line}", f"'labeled' fell from {previous} to {record['labeled']}")
        previous = record["labeled"]
        if pool_size is not None and "pool_size" in record and record["pool_size"] != pool_size:
            raise damaged(
                f"{file}:{line}",
                f"the record is of a pool of {record['pool_size']} samples, but config.json's is {pool_size}",
            )
        if ledger is not None:
            if record["labeled"] > len(ledger):
                raise damaged(
                    f"{file}:{line}",
                    f"'labeled' is {record['labeled']} but state.json's ledger holds {len(ledger)} samples",
                )
            if index < rounds - 1:
                # a waiting round's queries the annotators did not label went back to the pool
                returned = set((record.get("labels") or {}).get("returned", []))
                stray = next((sid for sid in record["queried"] if sid not in ledger and sid not in returned), None)
                if stray is not None:
                    raise damaged(
                        f"{file}:{line}", f"queried sample {stray!r} is not in state.json's ledger"
                    )
        out.append(record)
    return out


# -- labels/ and checkpoints ----------------------------------------------------------------


def check_mask_mode(mode: str, size: tuple[int, int], file: Path) -> None:
    """A partial mask is a one-channel 8- or 16-bit PNG."""
    if mode not in _PNG_MODES:
        raise damaged(file, f"a {mode} image, not an 8- or 16-bit mask of class ids")
    if min(size) < 1:
        raise damaged(file, f"an empty {size[0]}x{size[1]} image")


def check_checkpoint(path: Path) -> None:
    """A safetensors file whose header parses and whose data is all there (a cheap
    check: the header and the file's size, no tensor is read)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise damaged(path, "not a safetensors checkpoint (too short)")
            (length,) = struct.unpack("<Q", head)
            if length > 100_000_000:
                raise damaged(path, "not a safetensors checkpoint (header size out of range)")
            raw = fh.read(length)
            if len(raw) < length:
                raise damaged(path, f"cut short (its header needs {8 + length} bytes)")
            header = json.loads(raw.decode("utf-8"))
            fh.seek(0, 2)
            size = fh.tell()
    except FileNotFoundError:
        raise damaged(path, "missing (state.json names it as the last round's weights)") from None
    except (UnicodeDecodeError, ValueError):
        raise damaged(path, "not a safetensors checkpoint (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise damaged(path, "not a safetensors checkpoint (its header is not a table)")
    ends = [
        v["data_offsets"][1]
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("data_offsets"), list)
        and len(v["data_offsets"]) == 2 and isinstance(v["data_offsets"][1], int)
    ]
    if len(ends) != len([k for k in header if k != "__metadata__"]):
        raise damaged(path, "not a safetensors checkpoint (a tensor without its data offsets)")
    if 8 + length + max(ends, default=0) > size:
        raise damaged(path, f"cut short ({size} bytes, its header needs {8 + length + max(ends, default=0)})")


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
