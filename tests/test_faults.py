"""Faults through real subprocesses: SIGKILL at several points (training, scoring, in
the middle of writing a round's records), SIGINT and SIGTERM; then resume and compare
with an uninterrupted run. And I/O faults in process: every write of a round failing
in turn with ENOSPC or EIO, each followed by a resume on a healthy disk."""

from __future__ import annotations

import errno
import json
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from segal_core import SegalError, hookimpl, load_plugins
from segal_core.cli import run_main
from segal_core.cycle import run_cycle

from cycle_helpers import TINY_ARGS, history, snapshot, tiny_config
from pause_plugin import PAUSE_PLUGIN, build_pause_plugin, paused_process  # noqa: F401 - PAUSE_PLUGIN: tests import it from here

ROUNDS = 3
RUN_ARGS = [*TINY_ARGS, "--strategy", "entropy", "--rounds", str(ROUNDS)]


@pytest.fixture(scope="module")
def pause_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pause_plugin(tmp_path_factory.mktemp("pause"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ref") / "run"
    return run_cycle(tiny_config(out, strategy="entropy", rounds=ROUNDS))


def interrupt(out: Path, plugin: Path, at: str, sig: int, pause_s: float = 600) -> tuple[int, str]:
    """Start a run paused at ``at`` (SIGINT at its default in the child, whatever this
    test process inherited), send ``sig``, return its status and stderr."""
    mark = out.parent / f"{out.name}.mark"
    proc = paused_process(plugin, at, mark, "run", *RUN_ARGS, "--out", str(out), pause_s=pause_s)
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


# -- I/O faults: a full disk or an I/O error at each write -----------------------------------


class Disk:
    """Stands in for the disk under a run folder (or a report folder) ``root``: counts
    every write into it (records, labels and plots through
    ``segal_core.rundir.atomic_write``, checkpoints through the smp model's writer) and
    fails the ``fail_at``-th one (1-based) with ``code``, as the real writers report it
    (an ``OSError`` naming the file; safetensors' own error type with the OS error in
    its message). Writes elsewhere (other plugins' folders) pass uncounted."""

    def __init__(self, root: Path, fail_at: int | None = None, code: int = errno.ENOSPC) -> None:
        self.root = root
        self.fail_at = fail_at
        self.code = code
        self.writes: list[str] = []

    def _count(self, path: Any) -> bool:
        path = Path(path)
        if path.parent == self.root / "labels":
            self.writes.append(f"labels/{path.name}")
        elif path.parent == self.root:
            self.writes.append(path.name)
        else:
            return False
        return len(self.writes) == self.fail_at

    def install(self, mp: pytest.MonkeyPatch) -> None:
        import segal_core.rundir as rundir
        import segal_smp.model as smp_model
        from safetensors import SafetensorError

        write, save = rundir.atomic_write, smp_model.save_checkpoint

        def atomic_write(path: Path, data: bytes) -> None:
            if self._count(path):
                raise OSError(self.code, os.strerror(self.code), str(path))
            write(path, data)

        def save_checkpoint(path: Path, network: Any, metadata: Any) -> None:
            if self._count(path):
                raise SafetensorError(
                    f"Error while serializing: I/O error: {os.strerror(self.code)} (os error {self.code})"
                )
            save(path, network, metadata)

        mp.setattr(rundir, "atomic_write", atomic_write)
        mp.setattr(smp_model, "save_checkpoint", save_checkpoint)


def cli_run(out: Path, disk: Disk | None = None, args: list[str] = RUN_ARGS) -> int:
    with pytest.MonkeyPatch.context() as mp:
        if disk is not None:
            disk.install(mp)
        return run_main(["run", *args, "--out", str(out)])


@pytest.fixture(scope="module")
def write_plan(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The writes of an uninterrupted run, in order."""
    out = tmp_path_factory.mktemp("plan") / "run"
    disk = Disk(out)
    assert cli_run(out, disk) == 0
    return disk.writes


def round_writes(plan: list[str], round: int) -> list[int]:
    """1-based positions in ``plan`` of the writes from the end of round ``round - 1``'s
    commit to the first write of round ``round + 1`` (its labels or checkpoint)."""
    commits = [i for i, name in enumerate(plan) if name == "state.json"]
    start = commits[round] + 1  # commits[0] is the new run's empty state.json
    end = next(
        (i for i in range(commits[round + 1] + 1, len(plan)) if plan[i].startswith(("model-r", "labels/"))),
        len(plan),
    )
    return [i + 1 for i in range(start, end)]


def test_every_write_of_a_round_is_planned(write_plan: list[str]) -> None:
    assert write_plan[:2] == ["config.json", "state.json"]
    names = [write_plan[i - 1] for i in round_writes(write_plan, 1)]
    assert len(names) == 5, names  # test_a_failed_write_then_resume_gives_the_same_run tries each
    assert "model-r001.safetensors" in names and "history.jsonl" in names and "state.json" in names
    assert names.count("curve.png") == 2  # round 0's, drawn after its commit, and round 1's


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize("nth", range(5))
def test_a_failed_write_then_resume_gives_the_same_run(
    tmp_path: Path, write_plan: list[str], reference: list[dict], capsys: pytest.CaptureFixture[str], nth: int
) -> None:
    """Each write of round 1 in turn fails (ENOSPC, or EIO for odd ones): one line
    naming the file, status 1, the folder at its last commit; then a resume on a
    healthy disk ends as an uninterrupted run does."""
    positions = round_writes(write_plan, 1)
    if nth >= len(positions):
        pytest.skip(f"round 1 has {len(positions)} writes")
    position = positions[nth]
    code = errno.EIO if nth % 2 else errno.ENOSPC
    out = tmp_path / "run"
    capsys.readouterr()
    assert cli_run(out, Disk(out, position, code)) == 1
    line = one_error_line(capsys.readouterr().err)
    name = write_plan[position - 1]
    assert line.startswith(f"error: {out / name}: {os.strerror(code)}; "), line
    assert f"segal run --resume {out}" in line
    commits = write_plan[: position - 1].count("state.json") - 1  # the empty state.json is not a commit
    state = json.loads((out / "state.json").read_text())
    assert state["completed_rounds"] == commits
    assert len(history(out)) >= commits
    assert not [p for p in out.rglob(".*.tmp")]
    resume_and_compare(out, reference)


@pytest.mark.parametrize(("position", "code"), [(1, errno.ENOSPC), (2, errno.EIO)])
def test_a_failed_write_while_creating_the_folder(
    tmp_path: Path, reference: list[dict], capsys: pytest.CaptureFixture[str], position: int, code: int
) -> None:
    """config.json (or the first state.json) cannot be written: one line; the same
    command again (config.json missing), or --resume (config.json written), finishes."""
    out = tmp_path / "run"
    capsys.readouterr()
    assert cli_run(out, Disk(out, position, code)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {out / ['config.json', 'state.json'][position - 1]}: {os.strerror(code)}"), line
    if position == 1:
        assert cli_run(out) == 0, capsys.readouterr().err  # nothing of the run is there: start it again
        assert [r["queried"] for r in history(out)] == [r["queried"] for r in reference]
    else:
        resume_and_compare(out, reference)


def test_a_failed_report_write_changes_nothing(
    tmp_path: Path, reference: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert cli_run(run) == 0
    report = tmp_path / "report"
    assert run_main(["report", str(run), "--out", str(report)]) == 0
    before = snapshot(report)
    for position in range(1, 4):  # report.png, report.csv, report.md (report.html is written by its own code)
        disk = Disk(report, position, errno.ENOSPC if position % 2 else errno.EIO)
        capsys.readouterr()
        with pytest.MonkeyPatch.context() as mp:
            disk.install(mp)
            assert run_main(["report", str(run), "--out", str(report)]) == 1
        line = one_error_line(capsys.readouterr().err)
        assert line.startswith(f"error: {report / ['report.png', 'report.csv', 'report.md'][position - 1]}: "), line
        assert "--resume" not in line and "run folder" not in line
        assert "segal report again" in line
        assert snapshot(report) == before, f"write {position} changed the report folder"


# region queries of 16x16 patches, 4 images' worth of pixels per round
REGION_ARGS = [
    *RUN_ARGS[: RUN_ARGS.index("--query-size")], *RUN_ARGS[RUN_ARGS.index("--query-size") + 2 :],
    "--query-unit", "patch", "--unit-opt", "size=16", "--query-pixels", str(4 * 32 * 32),
]


def test_a_failed_label_write_then_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Region queries write partial masks to labels/: the first one of round 1 fails,
    then a resume ends with the same queries and regions as an uninterrupted run."""
    plan_out = tmp_path / "plan"
    plan = Disk(plan_out)
    assert cli_run(plan_out, plan, REGION_ARGS) == 0
    expected = [(r["queried"], r["queried_regions"]) for r in history(plan_out)]
    commits = [i for i, name in enumerate(plan.writes) if name == "state.json"]
    position = next(i for i in range(commits[1] + 1, len(plan.writes)) if plan.writes[i].startswith("labels/")) + 1
    out = tmp_path / "run"
    capsys.readouterr()
    assert cli_run(out, Disk(out, position, errno.ENOSPC), REGION_ARGS) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {out / plan.writes[position - 1]}: No space left on device; "), line
    assert json.loads((out / "state.json").read_text())["completed_rounds"] == 1
    assert run_main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert [(r["queried"], r["queried_regions"]) for r in history(out)] == expected
