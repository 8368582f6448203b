"""One writer per folder: the lock itself, a stale lock after kill -9, and real
processes racing on one run folder (run/run, run/resume, resume/resume) or one
report folder (report/report)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segal_core import SegalError, hookimpl, load_plugins
from segal_core.cli import run_main
from segal_core.cycle import resume_run, run_cycle
from segal_core.lock import LOCK_NAME, FolderBusy, FolderLock, holder_of
from segal_core.rundir import RunDir
from segal_core.testing import TinyModel

from cycle_helpers import TINY_ARGS, history, segal_process, snapshot, tiny_config
from pause_plugin import build_pause_plugin, default_signals, paused_process, stop

RUN_ARGS = [*TINY_ARGS, "--rounds", "2"]


class TinyModels:
    """Registers ``TinyModel`` as ``--model tiny`` (in this process)."""

    @hookimpl
    def segal_register_models(self) -> list[type]:
        return [TinyModel]


def tiny_run(out: Path, **kw: object) -> list[dict]:
    plugins = load_plugins(extra=[("tiny_models", TinyModels())])
    return run_cycle(tiny_config(out, rounds=1, model="tiny"), plugins=plugins, **kw)  # type: ignore[arg-type]


def hold_lock(folder: Path, mark: Path, what: str = "a run") -> subprocess.Popen[str]:
    """Another process that takes ``folder``'s lock and sleeps."""
    code = (
        "import sys, time, pathlib\n"
        "from segal_core.lock import FolderLock\n"
        f"lock = FolderLock(sys.argv[1], what={what!r}).acquire()\n"
        "pathlib.Path(sys.argv[2]).write_text('held')\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), str(mark)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not mark.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the lock holder never started: {proc.communicate()[1]}")
        time.sleep(0.02)
    return proc


def busy_line(err: str, pid: int) -> str:
    """The one error line, which names the holder: its pid, host and start time."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: ") and "in use by " in line, line
    assert f"pid {pid} on {socket.gethostname()} since 20" in line, line
    return line


# -- the lock ---------------------------------------------------------------------------


def test_a_held_lock_names_its_holder_and_is_released_on_any_exit(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "run"
    with pytest.raises(RuntimeError):
        with FolderLock(folder, what="a run"):
            info = json.loads((folder / LOCK_NAME).read_text())
            assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["since"]
            assert holder_of(folder).pid == os.getpid()
            with pytest.raises(FolderBusy, match=rf"in use by a run, pid {os.getpid()} on .* since 20"):
                FolderLock(folder, what="another").acquire()
            raise RuntimeError("any exit")
    assert holder_of(folder) is None
    assert not (tmp_path / "new").exists(), "folders the lock created and nothing filled are removed"
    folder.mkdir(parents=True)
    (folder / "kept").write_text("x")
    with FolderLock(folder, what="a run"):
        pass
    assert sorted(p.name for p in folder.iterdir()) == ["kept"]


def test_a_missing_folder_is_not_created_for_a_resume(tmp_path: Path) -> None:
    with pytest.raises(SegalError, match="no such folder"):
        FolderLock(tmp_path / "gone", what="a resumed run", create=False).acquire()
    assert not (tmp_path / "gone").exists()


def test_a_lock_left_by_kill_9_is_stale(tmp_path: Path) -> None:
    """The kernel drops a killed process's flock: its lock file stays, says who it
    was, and is taken over; a new run may start in a folder that holds only it."""
    folder = tmp_path / "run"
    proc = hold_lock(folder, tmp_path / "mark")
    assert holder_of(folder).pid == proc.pid
    stop(proc)  # SIGKILL
    assert (folder / LOCK_NAME).exists() and json.loads((folder / LOCK_NAME).read_text())["pid"] == proc.pid
    assert holder_of(folder) is None
    RunDir.check_new(folder)  # a folder holding only a stale lock counts as empty
    with FolderLock(folder, what="a run"):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_the_python_api_takes_the_lock(tmp_path: Path) -> None:
    """run_cycle and resume_run refuse a folder another process holds, before any
    work, and change nothing in it."""
    out = tmp_path / "run"
    tiny_run(out)
    before = snapshot(out)
    proc = hold_lock(out, tmp_path / "mark")
    try:
        with pytest.raises(FolderBusy, match=rf"pid {proc.pid}"):
            resume_run(out)
        with pytest.raises(FolderBusy, match=rf"pid {proc.pid}"):
            tiny_run(out, if_exists="replace")
        with pytest.raises(FolderBusy, match=rf"pid {proc.pid}"):
            tiny_run(out)
    finally:
        stop(proc)
    assert {k: v for k, v in snapshot(out).items() if k != LOCK_NAME} == before


# -- real processes racing ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pause_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pause_plugin(tmp_path_factory.mktemp("pause"))


def second(*args: str) -> tuple[int, str]:
    proc = segal_process(*args, preexec_fn=default_signals)
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err


def test_run_run_and_run_resume(tmp_path: Path, pause_plugin: Path) -> None:
    """While one `segal run --out X` trains, a second `segal run --out X` and a
    `segal run --resume X` are refused with one line naming it; after it is killed
    (kill -9: its lock file stays, stale) the run resumes to the end."""
    out = tmp_path / "run"
    first = paused_process(pause_plugin, "train:1", tmp_path / "mark", "run", *RUN_ARGS, "--out", str(out))
    try:
        before = snapshot(out)
        code, err = second("run", *RUN_ARGS, "--out", str(out))
        assert code == 2
        busy_line(err, first.pid)
        code, err = second("run", "--resume", str(out), "--no-progress")
        assert code == 2
        busy_line(err, first.pid)
        assert snapshot(out) == before
    finally:
        stop(first)
    assert (out / LOCK_NAME).exists()  # stale
    assert run_main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert [r["round"] for r in history(out)] == [0, 1]
    assert not (out / LOCK_NAME).exists()


def test_resume_resume(tmp_path: Path, pause_plugin: Path) -> None:
    out = tmp_path / "run"
    assert run_main(["run", *TINY_ARGS, "--rounds", "1", "--out", str(out)]) == 0
    state = json.loads((out / "state.json").read_text())
    state["finished"] = False  # one more round to go: make it a resumable run of 2 rounds
    (out / "state.json").write_text(json.dumps(state))
    config = json.loads((out / "config.json").read_text())
    config["rounds"] = 2
    (out / "config.json").write_text(json.dumps(config))
    first = paused_process(pause_plugin, "train:1", tmp_path / "mark", "run", "--resume", str(out), "--no-progress")
    try:
        code, err = second("run", "--resume", str(out), "--no-progress")
        assert code == 2
        assert "a resumed run" in busy_line(err, first.pid)
    finally:
        stop(first)


def test_two_runs_started_together(tmp_path: Path) -> None:
    """No pause: two `segal run --out X` start at once. One runs; the other ends with
    one clean line (X in use, or X holds a run already), and X holds one run."""
    out = tmp_path / "run"
    args = ["run", *TINY_ARGS, "--rounds", "1", "--out", str(out)]
    procs = [segal_process(*args, preexec_fn=default_signals) for _ in range(2)]
    results = [(p.wait(timeout=240), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(err for code, err in results if code == 2)
    line = [line for line in err.splitlines() if line.strip()][-1]
    assert "Traceback" not in err and line.startswith("error: ") and str(out) in line
    assert "in use by a run, pid " in line or "folder is not empty" in line, line
    assert len(history(out)) == 1 and json.loads((out / "state.json").read_text())["finished"]


def test_report_report(tmp_path: Path) -> None:
    """Two `segal report --out R` at once: the second is refused naming the first."""
    run = tmp_path / "run"
    tiny_run(run)
    out, mark = tmp_path / "report", tmp_path / "mark"
    slow = (
        "import pathlib, sys, time\n"
        "import segal_core.report as report\n"
        "real = report._Staging.commit\n"
        "def commit(self):\n"
        f"    pathlib.Path({str(mark)!r}).write_text('paused')\n"
        "    time.sleep(600)\n"
        "report._Staging.commit = commit\n"
        "from segal_core.cli import main\n"
        "sys.argv = ['segal', *sys.argv[1:]]\n"
        "main()\n"
    )
    first = subprocess.Popen([sys.executable, "-c", slow, "report", str(run), "--out", str(out)],
                             stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=default_signals)
    try:
        deadline = time.monotonic() + 120
        while not mark.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        code, err = second("report", str(run), "--out", str(out))
        assert code == 2
        assert "a report" in busy_line(err, first.pid)
    finally:
        stop(first)
    assert not [p for p in out.iterdir() if p.name.startswith("report.")]  # the first never committed
    assert run_main(["report", str(run), "--out", str(out)]) == 0  # its leftovers are no obstacle
    assert sorted(p.name for p in out.iterdir()) == ["report.csv", "report.html", "report.md", "report.png"]
