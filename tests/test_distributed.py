"""Several processes, one run (issue 15): torchrun with gloo on the CPU, 2 processes.

* sharded pool scoring selects exactly what one process selects with the same
  weights (same ids, same order; ties and stochastic rules included), for whole
  images and for regions, and the evaluation is reduced across ranks;
* a whole 2-round run under torchrun finishes, its records validate and only rank 0
  wrote into the run folder;
* kill -9 of one rank mid-round stops the others and ``--resume`` (1 process)
  finishes the run; a run of one process resumes under torchrun;
* bad input: more processes than pool images, different settings on one rank:
  one line on rank 0, nothing on the others, no traceback; a failure on rank 1
  alone is shown by rank 1 (``error: rank 1: ...``); SIGTERM to the launcher ends
  in the run's own ``terminated:`` line, exit 143.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from segal_core.cli import run_main
from segal_core.rundir import RunDir

from cycle_helpers import TINY_ARGS
from fakedist import make_distribution
from pause_plugin import default_signals

HERE = Path(__file__).parent
WORKER = HERE / "ddp_worker.py"

# pauses rank R at a phase ("PHASE:ROUND"), writing its pid to MARK.R first
RANK_PAUSE = '''
import os, pathlib, time
from segal_core import hookimpl

AT = os.environ.get("SEGAL_TEST_PAUSE_AT", "")
MARK = os.environ.get("SEGAL_TEST_MARK", "/nonexistent")


@hookimpl(wrapper=True)
def segal_phase(round, phase):
    if AT == f"{phase}:{round}":
        pathlib.Path(f"{MARK}.{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))
        time.sleep(600)
    return (yield)
'''

# every process records what it opens for writing, renames or deletes under
# SEGAL_TEST_WATCH (python's audit hooks), into SEGAL_TEST_AUDIT/RANK-PID.json
AUDIT = '''
import atexit, json, os, sys

WATCH = os.environ.get("SEGAL_TEST_WATCH")
AUDIT = os.environ.get("SEGAL_TEST_AUDIT")
if WATCH and AUDIT:
    seen = []
    WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def _under(path):
        try:
            return os.path.abspath(os.fsdecode(path)).startswith(WATCH)
        except Exception:
            return False

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITES)
            if writes and _under(args[0]):
                seen.append([event, os.fsdecode(args[0])])
        elif event in ("os.rename", "os.replace", "os.remove", "os.mkdir", "os.rmdir") and _under(args[0]):
            seen.append([event, os.fsdecode(args[0])])

    sys.addaudithook(hook)

    def dump():
        name = f"{os.environ.get('RANK', 'launcher')}-{os.getpid()}.json"
        with open(os.path.join(AUDIT, name), "w") as fh:
            json.dump(seen, fh)

    atexit.register(dump)
'''


# a shardable strategy that fails on one rank (SEGAL_TEST_FAIL_RANK), in scoring or,
# with SEGAL_TEST_FAIL_AT=setup, when the model is checked during set-up
RANK_FAIL = '''
import os, torch
from segal_core import Strategy, SegalError, hookimpl

RANK = os.environ.get("RANK", "0")
FAIL = os.environ.get("SEGAL_TEST_FAIL_RANK", "")
AT = os.environ.get("SEGAL_TEST_FAIL_AT", "score")


class FailsOnOneRank(Strategy):
    name = "failsonerank"
    uses_model = False
    shardable = True

    def check_model(self, model):
        if AT == "setup" and RANK == FAIL:
            raise SegalError(f"--strategy failsonerank: no model fits here (rank {RANK})")

    def score(self, ctx):
        if AT == "score" and RANK == FAIL:
            raise SegalError(f"--strategy failsonerank: the pool cannot be scored here (rank {RANK})")
        return torch.arange(len(ctx.pool), dtype=torch.float32) + ctx.offset


@hookimpl
def segal_register_strategies():
    return [FailsOnOneRank]
'''


# records every segal_after_label call (round, number of annotations) into SEGAL_TEST_AFTER_LABEL
AFTER_LABEL = '''
import json, os
from segal_core import hookimpl

LOG = os.environ.get("SEGAL_TEST_AFTER_LABEL")


@hookimpl
def segal_after_label(run, round, annotations):
    if LOG:
        with open(LOG, "a") as fh:
            fh.write(json.dumps([round, len(annotations)]) + "\\n")
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun(*args: str, nproc: int = 2, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N ARGS`` (the
    rendezvous picks a free port itself: no race for one with other jobs)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, **kw)


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out, err


def run_args(out: Path, rounds: int = 2) -> list[str]:
    return ["-m", "segal_core", "run", *TINY_ARGS, "--rounds", str(rounds), "--threads", "1", "--out", str(out)]


def checked_history(out: Path) -> list[dict[str, Any]]:
    """The records, read back through the run folder's own checks."""
    rundir = RunDir.open_existing(out)
    state = rundir.state(resume=True)
    return rundir.history(state)


# -- sharded scoring -------------------------------------------------------------------


def test_sharded_selection_is_the_one_process_selection(tmp_path: Path) -> None:
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    proc = torchrun(str(WORKER), str(two))  # 2 processes, while this one scores alone
    sys.path.insert(0, str(HERE))
    try:
        import ddp_worker

        ddp_worker.main(str(one))
    finally:
        sys.path.remove(str(HERE))
    code, _, err = finish(proc)
    assert code == 0, err
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert (a.pop("world_size"), b.pop("world_size")) == (1, 2)
    assert a.keys() == b.keys()
    for case in a:
        assert b[case] == a[case], case  # same ids, same order, same scores
    # the cases are not trivial: ties across the shards' border, region picks
    positions, scores = a["images:entropy:{}"]
    assert len(set(scores)) < len(scores) and min(positions) < 12 <= max(positions)
    assert all(len(v) > 2 for k, v in a.items() if k.startswith("regions:"))


def test_merge_keeps_the_tie_rule_and_takes_k_per_rank() -> None:
    import torch

    from segal_core.selection import TOPK
    from segal_core.sharding import local_candidates, merge_candidates
    from segal_core.strategy import select_positions

    scores = torch.tensor([0.5, 0.9, float("nan"), 0.9, 0.1, 0.9, float("inf"), -float("inf"), 0.5, 0.5])
    k = 6
    want = select_positions(scores, k).tolist()
    shards = [local_candidates(scores[a:b], a, k, TOPK, 0) for a, b in ((0, 4), (4, 7), (7, 10))]
    assert all(len(s[0]) <= k for s in shards)
    assert merge_candidates(shards, k)[0] == want
    assert merge_candidates(shards, 10)[0] == select_positions(scores, 10).tolist()


# -- a whole run ----------------------------------------------------------------------


def test_two_process_run_finishes_with_one_writer(tmp_path: Path) -> None:
    out, audit, site = tmp_path / "run", tmp_path / "audit", tmp_path / "site"
    audit.mkdir()
    site.mkdir()
    (site / "sitecustomize.py").write_text(AUDIT)
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "SEGAL_TEST_WATCH": str(out), "SEGAL_TEST_AUDIT": str(audit)}
    code, stdout, err = finish(torchrun(*run_args(out), env=env))
    assert code == 0, err
    records = checked_history(out)
    assert [r["round"] for r in records] == [0, 1]
    assert [r["world_size"] for r in records] == [2, 2]
    assert len(records[0]["queried"]) == 4 and not records[1]["queried"]
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["world_size"] == 2
    assert json.loads((out / "state.json").read_text())["finished"]
    assert stdout.count("round  0 |") == 1  # rank 0 alone reports
    writes = {p.name.split("-")[0]: json.loads(p.read_text()) for p in audit.glob("*.json")}
    assert writes.get("0"), f"rank 0 wrote nothing? {sorted(writes)}"
    assert "1" in writes and writes["1"] == [], f"rank 1 wrote into the run folder: {writes['1'][:3]}"
    assert not writes.get("launcher")


# -- faults ------------------------------------------------------------------------------


def _pause_env(tmp_path: Path, at: str) -> tuple[dict[str, str], Path]:
    plugin = make_distribution(tmp_path / "plugin", "segal-test-rankpause", {"segal_test_rankpause": RANK_PAUSE},
                               {"segal_test_rankpause": "segal_test_rankpause"})
    mark = tmp_path / "mark"
    env = {"PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")]),
           "SEGAL_TEST_PAUSE_AT": at, "SEGAL_TEST_MARK": str(mark)}
    return env, mark


def _wait_for(marks: list[Path], proc: subprocess.Popen[str]) -> list[int]:
    deadline = time.monotonic() + 240
    while not all(m.exists() and m.read_text() for m in marks):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"never paused: {err[-2000:]}")
        time.sleep(0.05)
    return [int(m.read_text()) for m in marks]


@pytest.mark.parametrize("sig", [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_kill_one_rank_stops_the_others_and_resume_finishes(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "run"
    env, mark = _pause_env(tmp_path, "score:0")
    proc = torchrun(*run_args(out, rounds=2), env=env, preexec_fn=default_signals)
    _, rank1 = _wait_for([Path(f"{mark}.0"), Path(f"{mark}.1")], proc)
    os.kill(rank1, sig)
    started = time.monotonic()
    code, _, err = finish(proc, timeout=120)
    assert code != 0
    assert time.monotonic() - started < 60, "the other rank did not stop"
    assert json.loads((out / "state.json").read_text())["completed_rounds"] == 0  # round 0 never committed
    # rank 0 was stopped by the launcher (SIGTERM) and said how to go on (torchrun's
    # own report of the killed rank follows: not ours to shape)
    assert f"terminated: {out} holds every completed round; continue with: segal run --resume {out}" in err, err
    # resume on one process
    assert run_main(["run", "--resume", str(out), "--no-progress", "--threads", "1"]) == 0
    records = checked_history(out)
    assert [r["round"] for r in records] == [0, 1]
    assert [r["world_size"] for r in records] == [1, 1]
    assert len(records[0]["queried"]) == 4
    assert json.loads((out / "config.json").read_text())["resolved"]["world_size"] == 2  # as it started


def test_one_process_run_resumes_under_torchrun(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env, mark = _pause_env(tmp_path, "train:1")
    proc = subprocess.Popen([sys.executable, *run_args(out, rounds=2)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
                            preexec_fn=default_signals)
    (pid,) = _wait_for([Path(f"{mark}.0")], proc)
    os.kill(pid, signal.SIGKILL)
    proc.communicate()
    code, _, err = finish(torchrun("-m", "segal_core", "run", "--resume", str(out), "--threads", "1"))
    assert code == 0, err
    records = checked_history(out)
    assert [r["world_size"] for r in records] == [1, 2]
    assert json.loads((out / "state.json").read_text())["finished"]


# -- a waiting oracle ----------------------------------------------------------------


def test_waiting_oracle_under_two_processes(tmp_path: Path, camvid_mini: Path) -> None:
    """Rank 0 alone hands the queries out and collects the labels; the other rank gets
    the ledger; the run waits (75) and resumes on 2 processes."""
    from test_folder_oracle import annotate, assert_trained_on, camvid_folder, pending
    from test_folder_oracle import run_args as folder_args

    data, out = camvid_folder(camvid_mini, tmp_path / "data", labelled=4), tmp_path / "run"
    launch = [sys.executable, "-m", "segal_core"]
    hook = make_distribution(tmp_path / "hook", "segal-test-afterlabel", {"segal_test_afterlabel": AFTER_LABEL},
                             {"segal_test_afterlabel": "segal_test_afterlabel"})
    calls = tmp_path / "after_label.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SEGAL_TEST_AFTER_LABEL": str(calls),
           "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    first = subprocess.run([*launch, *folder_args(data, out, "--rounds", "2"), "--threads", "1",
                            "--nproc-per-node", "2"], capture_output=True, text=True, env=env, timeout=240)
    assert first.returncode == 75, first.stderr
    waiting = [line for line in first.stderr.splitlines() if line.startswith("waiting:")]
    assert len(waiting) == 1, first.stderr  # rank 0 alone says it
    assert pending(out)["round"] == 0 and len(pending(out)["queries"]) == 3
    # the hand-out is no labelling: segal_after_label waits for the labels (as in one process)
    assert not calls.exists(), calls.read_text()
    written = annotate(out, camvid_mini)
    again = subprocess.run([*launch, "run", "--resume", str(out), "--no-progress", "--threads", "1",
                            "--nproc-per-node", "2"], capture_output=True, text=True, env=env, timeout=240)
    assert again.returncode == 0, again.stderr
    assert_trained_on(out, written)
    records = checked_history(out)
    assert [r["world_size"] for r in records] == [2, 2]
    assert records[1]["labeled"] == 7  # the 4 seed frames and the 3 collected labels
    seen = [json.loads(line) for line in calls.read_text().splitlines()]
    assert seen and all(n > 0 for _, n in seen), seen
    assert [0, 3] in seen, seen


# -- bad input -------------------------------------------------------------------------


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("*") and "OMP_NUM_THREADS" not in line]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


def test_more_processes_than_pool_images(tmp_path: Path) -> None:
    args = [a for a in TINY_ARGS]
    args[args.index("n_train=16")] = "n_train=1"
    proc = subprocess.run(
        [sys.executable, "-m", "segal_core", "run", *args, "--nproc-per-node", "2", "--threads", "1",
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert line.startswith("error: --nproc-per-node: 2 processes for a pool of 1 images"), line


def test_different_settings_on_one_rank(tmp_path: Path) -> None:
    port, other = free_port(), tmp_path / "elsewhere"
    other.mkdir()
    procs = []
    for rank in (0, 1):
        extra = ["--data-path", str(other)] if rank == 1 else []
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "segal_core", "run", *TINY_ARGS, *extra, "--threads", "1",
             "--out", str(tmp_path / "run")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        ))
    (code0, _, err0), (code1, _, err1) = (finish(p) for p in procs)
    assert (code0, code1) == (2, 2), (err0, err1)
    line = _one_error_line(err0)
    assert line.startswith("error: --data-path: rank 1 was given"), line
    assert err1.strip() == ""
    assert not (tmp_path / "run").exists()


# -- slow: more paths end to end ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("extra", [
    ["--strategy", "margin", "--query-unit", "patch", "--unit-opt", "size=8", "--query-pixels", "700"],
    ["--strategy", "random"],  # not shardable: rank 0 scores alone
    ["--strategy", "bald", "--model-opt", "dropout=0.2", "--strategy-opt", "passes=2", "--retrain", "finetune"],
])
def test_other_strategies_and_units_under_torchrun(tmp_path: Path, extra: list[str]) -> None:
    out = tmp_path / "run"
    args = run_args(out, rounds=3)
    if "--query-unit" in extra:  # regions are counted in pixels: no --query-size
        at = args.index("--query-size")
        del args[at : at + 2]
    code, _, err = finish(torchrun(*args, *extra))
    assert code == 0, err
    records = checked_history(out)
    assert [r["world_size"] for r in records] == [2, 2, 2]
    assert records[0]["queried"] and records[1]["queried"]


@pytest.mark.slow
def test_kill_then_resume_on_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env, mark = _pause_env(tmp_path, "score:1")
    proc = torchrun(*run_args(out, rounds=3), env=env, preexec_fn=default_signals)
    rank0, _ = _wait_for([Path(f"{mark}.0"), Path(f"{mark}.1")], proc)
    os.kill(rank0, signal.SIGKILL)  # rank 0 this time: the writer
    code, _, _ = finish(proc, timeout=120)
    assert code != 0
    assert json.loads((out / "state.json").read_text())["completed_rounds"] == 1
    code, _, err = finish(torchrun("-m", "segal_core", "run", "--resume", str(out), "--threads", "1"))
    assert code == 0, err
    records = checked_history(out)
    assert [r["world_size"] for r in records] == [2, 2, 2]
    queried = [sid for r in records for sid in r["queried"]]
    assert len(queried) == len(set(queried)) == 8


# -- a failure on one rank other than 0 -------------------------------------------------


def _fail_env(tmp_path: Path, rank: int, at: str) -> dict[str, str]:
    plugin = make_distribution(tmp_path / "failplugin", "segal-test-rankfail", {"segal_test_rankfail": RANK_FAIL},
                               {"segal_test_rankfail": "segal_test_rankfail"})
    return {"PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")]),
            "SEGAL_TEST_FAIL_RANK": str(rank), "SEGAL_TEST_FAIL_AT": at, "OMP_NUM_THREADS": "1"}


def test_a_failure_on_rank_1_after_set_up_is_shown(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "segal_core", "run", *TINY_ARGS, "--rounds", "2", "--strategy", "failsonerank",
         "--threads", "1", "--out", str(out), "--nproc-per-node", "2"],
        capture_output=True, text=True, timeout=240, env={**os.environ, **_fail_env(tmp_path, 1, "score")},
    )
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    mine = [line for line in proc.stderr.splitlines() if line.startswith("error: rank 1: ")]
    assert mine == ["error: rank 1: --strategy failsonerank: the pool cannot be scored here (rank 1)"], proc.stderr
    assert "GLHF" not in proc.stderr and "pair.cc" not in proc.stderr, proc.stderr


def test_a_set_up_mistake_on_rank_1_leaves_no_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "segal_core", "run", *TINY_ARGS, "--strategy", "failsonerank",
         "--threads", "1", "--out", str(out), "--nproc-per-node", "2"],
        capture_output=True, text=True, timeout=240, env={**os.environ, **_fail_env(tmp_path, 1, "setup")},
    )
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert line == "error: rank 1: --strategy failsonerank: no model fits here (rank 1)", line
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_out_not_empty_fails_fast_on_every_rank(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "segal_core", "run", *TINY_ARGS, "--threads", "1", "--out", str(out),
         "--nproc-per-node", "2"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    took = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert line.startswith(f"error: --out {out}"), line
    assert took < 25, f"took {took:.0f} s"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_stray_rank_without_world_size_is_one_process(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from segal_core.cli import _rank

    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert _rank() == 0
    assert run_main(["run", "--strategy", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert _rank() == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _rank() == 1


def test_control_timeout_is_long_and_configurable() -> None:
    from segal_core.distributed import DEFAULT_TIMEOUT_S, control_timeout
    from segal_core.errors import SegalError

    assert control_timeout({}) == DEFAULT_TIMEOUT_S >= 7 * 24 * 3600
    assert control_timeout({"SEGAL_DIST_TIMEOUT": "90"}) == 90.0
    for bad in ("0", "-5", "soon", "inf"):
        with pytest.raises(SegalError, match="SEGAL_DIST_TIMEOUT"):
            control_timeout({"SEGAL_DIST_TIMEOUT": bad})


def test_settings_that_differ_are_named_by_their_flag() -> None:
    from segal_core.distributed import World, check_same_settings
    from segal_core.errors import SegalError

    class Two(World):
        def __init__(self, theirs: dict[str, Any]) -> None:
            super().__init__(rank=0, world_size=2)
            self.theirs = theirs

        def all_gather(self, obj: Any) -> list[Any]:
            return [obj, self.theirs]

    for key, value, flag in (("model_options", {"a": 2}, "--model-opt"), ("plugin_options", {"x": 1},
                             "plugin options"), ("query_size", 5, "--query-size")):
        mine = {"model_options": {"a": 1}, "plugin_options": {}, "query_size": 4}
        with pytest.raises(SegalError) as caught:
            check_same_settings(Two({**mine, key: value}), mine)
        assert str(caught.value).startswith(f"{flag}: rank 1 was given"), str(caught.value)


def test_sigterm_to_the_launcher_stops_the_run_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env, mark = _pause_env(tmp_path, "train:1")  # round 0 committed, round 1 training
    proc = subprocess.Popen(
        [sys.executable, "-m", "segal_core", "run", *TINY_ARGS, "--rounds", "3", "--threads", "1", "--out", str(out),
         "--nproc-per-node", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env}, preexec_fn=default_signals,
    )
    _wait_for([Path(f"{mark}.0"), Path(f"{mark}.1")], proc)
    proc.send_signal(signal.SIGTERM)  # the launcher alone, as systemd or a scheduler would
    code, _, err = finish(proc, timeout=120)
    assert code == 143, err
    assert "Traceback" not in err and "death signal" not in err, err
    assert f"terminated: {out} holds every completed round" in err, err
    assert json.loads((out / "state.json").read_text())["completed_rounds"] == 1


def test_the_gpu_count_is_checked_only_when_the_device_asks_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from segal_core.distributed import World
    from segal_core.errors import SegalError

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    world = World(rank=1, local_rank=1, world_size=2, local_world_size=2, backend="cpu:gloo,cuda:nccl")
    assert world.device("cpu") == "cpu"  # more processes than GPUs: fine on the CPU
    for wanted in ("cuda", "auto"):
        with pytest.raises(SegalError, match=r"^--device .*LOCAL_RANK=1 .* 1 CUDA devices"):
            world.device(wanted)
    first = World(rank=0, local_rank=0, world_size=2, local_world_size=2, backend="cpu:gloo,cuda:nccl")
    assert first.device("cuda") == "cuda:0"


def test_help_and_dry_run_print_once(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert run_main(["run", "--nproc-per-node", "2", "--help"]) == 0
    assert capfd.readouterr().out.count("Usage: segal run") == 1
    assert run_main(["run", "--nproc-per-node", "2", "--resume", str(tmp_path), "--dry-run"]) == 2
    err = capfd.readouterr().err
    assert err.count("error: ") == 1, err


@pytest.mark.parametrize("bad", [["--model-opt", "foo"], ["--strategyy", "x"]])
def test_a_command_line_mistake_is_said_once(tmp_path: Path, bad: list[str]) -> None:
    """Every rank parses the same command line before joining: rank 0 alone says it."""
    proc = subprocess.run(
        [sys.executable, "-m", "segal_core", "run", *TINY_ARGS, "--threads", "1", "--out", str(tmp_path / "run"),
         "--nproc-per-node", "2", *bad],
        capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2, proc.stderr
    assert _one_error_line(proc.stderr).startswith("error: "), proc.stderr
