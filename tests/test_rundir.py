"""Run-directory primitives: atomic writes, the commit point, ``--out`` checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from segal_core import SegalError
from segal_core.rundir import LedgerEntry, RunDir, RunState, atomic_write


def record(round: int, labeled: int = 1, queried: list[str] | None = None) -> dict:
    """A round's record with the keys every record holds."""
    return {"round": round, "labeled": labeled, "labeled_fraction": labeled / 10, "val_miou": 0.5,
            "test_miou": float("nan"), "queried": queried or []}


def checkpoint(path: Path) -> None:
    from safetensors.torch import save_file
    import torch

    save_file({"w": torch.zeros(3)}, str(path))


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_commit_and_read_back(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "run")
    rd.create({"strategy": "entropy"})
    state = RunState(completed_rounds=1, ledger={"a": LedgerEntry(round=-1, pixels=10)}, checkpoint="model-r000.safetensors")
    checkpoint(rd.path / "model-r000.safetensors")
    rd.commit(state, [record(0)])
    again = RunDir.open_existing(rd.path)
    assert again.state(resume=True).ledger["a"] == LedgerEntry(round=-1, pixels=10)
    assert len(again.history(again.state())) == 1


def test_history_beyond_state_is_ignored(tmp_path: Path) -> None:
    rd = RunDir(tmp_path)
    rd.create({})
    (tmp_path / "history.jsonl").write_text(json.dumps(record(0)) + "\n" + json.dumps(record(1)) + "\n{half")
    assert [r["round"] for r in rd.history(RunState(completed_rounds=1, ledger={"a": LedgerEntry(-1, 5)}))] == [0]


def test_commit_drops_older_checkpoints(tmp_path: Path) -> None:
    rd = RunDir(tmp_path)
    rd.create({})
    for n in range(2):
        (tmp_path / rd.checkpoint_name(n)).write_bytes(b"w")
    rd.commit(RunState(completed_rounds=2, checkpoint=rd.checkpoint_name(1)), [record(0), record(1)])
    assert sorted(p.name for p in tmp_path.glob("model-*")) == ["model-r001.safetensors"]


def test_check_new_refuses_files_and_runs(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SegalError, match="is a file"):
        RunDir.check_new(f)
    run = tmp_path / "run"
    RunDir(run).create({})
    with pytest.raises(SegalError, match=f"resume it with --resume {run}"):
        RunDir.check_new(run)
    RunDir.check_new(tmp_path / "new" / "deeper")  # fine: will be created
    # in Python's words, with the way to resume or replace from a notebook
    with pytest.raises(SegalError, match=r"out='.*': folder is not empty; continue it with resume_run\(out\)"):
        RunDir.check_new(run, flag="out=")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_check_new_refuses_unwritable(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(SegalError, match="not writable"):
        RunDir.check_new(ro / "run")


def test_open_existing_errors(tmp_path: Path) -> None:
    with pytest.raises(SegalError, match="no such run folder"):
        RunDir.open_existing(tmp_path / "nope")
    with pytest.raises(SegalError, match="the run never started"):
        RunDir.open_existing(tmp_path)  # empty: killed before config.json
    (tmp_path / "photo.png").write_bytes(b"x")
    with pytest.raises(SegalError, match="not a SegAL run folder"):
        RunDir.open_existing(tmp_path)
    RunDir(tmp_path).create({})
    (tmp_path / "state.json").write_text("{broken")
    with pytest.raises(SegalError, match="state.json: not valid JSON"):
        RunDir(tmp_path).state()
