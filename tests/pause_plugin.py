"""A plugin that pauses a real ``segal`` subprocess at a chosen point, so a test can
signal it there or race a second process against it; and how to start such a process
with SIGINT as Python expects it, however the test suite itself was started."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cycle_helpers import segal_process
from fakedist import make_distribution

# SEGAL_TEST_PAUSE_AT: "PHASE:ROUND" (a segal_phase) or "commit:ROUND" (in the middle
# of writing round ROUND's records); SEGAL_TEST_MARK: a file written when paused.
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


def build_pause_plugin(root: Path) -> Path:
    """Install the pause plugin under ``root`` (put it on ``PYTHONPATH``)."""
    return make_distribution(root, "segal-test-pause", {"segal_test_pause": PAUSE_PLUGIN},
                             {"segal_test_pause": "segal_test_pause"})


def default_signals() -> None:
    """Run in the child before it starts: SIGINT and SIGTERM back to their defaults.
    A test suite started in the background of a non-interactive shell (``cmd &``,
    ``nohup``) inherits SIGINT *ignored*, and a Python started so installs no
    KeyboardInterrupt handler: a test that sends SIGINT must not depend on that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def paused_process(plugin: Path, at: str, mark: Path, *args: str, pause_s: float = 600,
                   **kw: Any) -> subprocess.Popen[str]:
    """``python -m segal_core ARGS`` with the pause plugin, paused at ``at``; returns
    once it is paused there (``mark`` written)."""
    env = {"PYTHONPATH": str(plugin), "SEGAL_TEST_PAUSE_AT": at, "SEGAL_TEST_MARK": str(mark),
           "SEGAL_TEST_PAUSE_S": str(pause_s)}
    proc = segal_process(*args, env=env, preexec_fn=default_signals, **kw)
    deadline = time.monotonic() + 240
    while not mark.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"segal {' '.join(args)} never reached {at}: {err}")
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``proc`` and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate()
