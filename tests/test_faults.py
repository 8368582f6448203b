"""Faults through real subprocesses: SIGKILL at several points (training, scoring, in
the middle of writing a round's records), SIGINT and SIGTERM; then resume and compare
with an uninterrupted run."""

from __future__ import annotations

import json
import signal
from dataclasses import replace
import time
from pathlib import Path

import pytest

from segal_core import SegalError, hookimpl, load_plugins
from segal_core.cli import run_main
from segal_core.cycle import run_cycle

from cycle_helpers import TINY_ARGS, history, segal_process, tiny_config
from fakedist import make_distribution

ROUNDS = 3
# A plugin that pauses the run at a chosen point, so the test can signal it there.
PAUSE_PLUGIN = '''
import os, pathlib, time
import segal_core.rundir as rundir
from segal_core import hookimpl

AT = os.environ.get("SEGAL_TEST_PAUSE_AT", "")
MARK = pathlib.Path(os.environ.get("SEGAL_TEST_MARK", "/nonexistent"))
SECONDS = float(os.environ.get("SEGAL_TEST_PAUSE_S", "600"))


def pause():
    MARK.write_text("paused")
    time.sleep(SECONDS)


@hookimpl(wrapper=True)
def segal_phase(round, phase):
    if AT == f"{phase}:{round}":
        pause()
    return (yield)


if AT.startswith("commit:"):
    target = int(AT.split(":")[1]) + 1
    original = rundir.atomic_write

    def slow_write(path, data):
        if path.name == "state.json" and json_rounds(data) == target:
            half = path.parent / f".{path.name}.half.tmp"
            half.write_bytes(data[: len(data) // 2])  # a half-written temporary file
            pause()
        return original(path, data)

    def json_rounds(data):
        import json
        return json.loads(data).get("completed_rounds")

    rundir.atomic_write = slow_write
'''


@pytest.fixture(scope="module")
def pause_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pause")
    return make_distribution(root, "segal-test-pause", {"segal_test_pause": PAUSE_PLUGIN},
                             {"segal_test_pause": "segal_test_pause"})


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ref") / "run"
    return run_cycle(tiny_config(out, strategy="entropy", rounds=ROUNDS))


def interrupt(out: Path, plugin: Path, at: str, sig: int, pause_s: float = 600) -> tuple[int, str]:
    mark = out.parent / f"{out.name}.mark"
    env = {"PYTHONPATH": str(plugin), "SEGAL_TEST_PAUSE_AT": at, "SEGAL_TEST_MARK": str(mark),
           "SEGAL_TEST_PAUSE_S": str(pause_s)}
    proc = segal_process("run", *TINY_ARGS, "--strategy", "entropy", "--rounds", str(ROUNDS), "--out", str(out),
                         env=env)
    deadline = time.monotonic() + 240
    while not mark.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"the run never reached {at}: {err}")
        time.sleep(0.05)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=120)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, err


def resume_and_compare(out: Path, reference: list[dict]) -> None:
    assert run_main(["run", "--resume", str(out), "--no-progress"]) == 0
    resumed = history(out)
    assert [r["round"] for r in resumed] == list(range(ROUNDS))
    assert [r["queried"] for r in resumed] == [r["queried"] for r in reference]
    queried = [sid for r in resumed for sid in r["queried"]]
    assert len(queried) == len(set(queried))
    assert not list(out.glob(".*.tmp"))
    assert json.loads((out / "state.json").read_text())["finished"]


@pytest.mark.parametrize("at", ["train:1", "score:1", "commit:1"])
def test_sigkill_then_resume(tmp_path: Path, pause_plugin: Path, reference: list[dict], at: str) -> None:
    out = tmp_path / "run"
    code, _ = interrupt(out, pause_plugin, at, signal.SIGKILL)
    assert code == -signal.SIGKILL
    state = json.loads((out / "state.json").read_text())
    assert state["completed_rounds"] == 1  # round 1 never committed
    if at.startswith("commit"):
        assert list(out.glob(".*.tmp")), "the half-written temporary file should be there"
        assert len(history(out)) == 2  # written before state.json, ignored on resume
    for name in ("config.json", "state.json"):
        json.loads((out / name).read_text())  # whole, valid JSON
    resume_and_compare(out, reference)


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_sigint_and_sigterm_stop_cleanly(tmp_path: Path, pause_plugin: Path, reference: list[dict], sig: int,
                                         code: int, word: str) -> None:
    out = tmp_path / "run"
    got, err = interrupt(out, pause_plugin, "train:1", sig)
    assert got == code
    assert "Traceback" not in err
    assert f"{word}: {out} holds every completed round; continue with: segal run --resume {out}" in err
    assert json.loads((out / "state.json").read_text())["completed_rounds"] == 1
    resume_and_compare(out, reference)


def test_sigint_during_commit_finishes_the_commit(tmp_path: Path, pause_plugin: Path, reference: list[dict]) -> None:
    out = tmp_path / "run"
    got, err = interrupt(out, pause_plugin, "commit:1", signal.SIGINT, pause_s=2)
    assert got == 130, err
    assert json.loads((out / "state.json").read_text())["completed_rounds"] == 2
    resume_and_compare(out, reference)


class BlowUp:
    """From round 1 on, a learning rate that makes the loss non-finite."""

    @hookimpl
    def segal_round_start(self, run, round):  # noqa: A002 - the hook's own name
        if round == 1:
            options = {**run.model_config.options, "lr": 1e20}
            run.model_config = replace(run.model_config, options=options)


def test_non_finite_loss_keeps_earlier_rounds(tmp_path: Path) -> None:
    out = tmp_path / "run"
    plugins = load_plugins(extra=[("blowup", BlowUp())])
    with pytest.raises(SegalError, match="non-finite") as err:
        run_cycle(tiny_config(out, rounds=3), plugins=plugins)
    assert "\n" not in str(err.value)
    state = json.loads((out / "state.json").read_text())
    assert state["completed_rounds"] == 1 and not state["finished"]
    assert len(history(out)) == 1
    assert (out / "model-r000.safetensors").exists()
