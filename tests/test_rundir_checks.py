"""Run folders read back are checked, not only parsed: a damaged file is one line
naming it (and its line), never a resume into wrong results; a folder killed at any
moment of its creation resumes or starts again, and the advice never goes in a
circle; `segal report --out` never overwrites what is not a report of ours."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segal_core import SegalError, hookimpl, load_plugins
from segal_core.cli import run_main
from segal_core.cycle import resume_run, run_cycle
from segal_core.lock import LOCK_NAME
from segal_core.rundir import RunDir
from segal_core.testing import TinyModel

from cycle_helpers import history, snapshot, tiny_config

ROUNDS = 2


class TinyModels:
    @hookimpl
    def segal_register_models(self) -> list[type]:
        return [TinyModel]


def plugins() -> Any:
    return load_plugins(extra=[("tiny_models", TinyModels())])


def config(out: Path) -> Any:
    return tiny_config(out, rounds=ROUNDS, model="tiny")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    run_cycle(config(out), plugins=plugins())
    return out


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "None" not in text, text
    return text


def resume_error(run: Path) -> str:
    with pytest.raises(SegalError) as err:
        resume_run(run, plugins=plugins())
    return one_line(err.value)


def edit_json(file: Path, change: Callable[[Any], Any]) -> None:
    data = json.loads(file.read_text())
    file.write_text(json.dumps(change(data)))


def edit_lines(file: Path, change: Callable[[list[str]], list[str]]) -> None:
    file.write_text("\n".join(change(file.read_text().splitlines())) + "\n")


def setting(key: str, value: Any) -> Callable[[Any], Any]:
    def change(data: Any) -> Any:
        data[key] = value
        return data

    return change


def first_entry(**values: Any) -> Callable[[Any], Any]:
    def change(data: Any) -> Any:
        sid = sorted(data["ledger"])[0]
        data["ledger"][sid].update(values)
        return data

    return change


def record(line: int, **values: Any) -> Callable[[list[str]], list[str]]:
    def change(lines: list[str]) -> list[str]:
        data = json.loads(lines[line - 1])
        data.update(values)
        lines[line - 1] = json.dumps(data)
        return lines

    return change


def truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[:-10])


# (file, how it is damaged, what the message says) -- each also refused by `segal report`
# unless marked resume-only.
DAMAGE: list[tuple[str, Callable[[Path], None], str, bool]] = [
    ("config.json", lambda f: f.write_text("{not json"), "config.json: not valid JSON", False),
    ("config.json", lambda f: f.write_text("[1, 2]"), "config.json: expected a table of settings", False),
    ("config.json", lambda f: edit_json(f, setting("seed", "abc")), "'seed' is \"abc\", expected a whole number", False),
    ("config.json", lambda f: edit_json(f, setting("rounds", 2.5)), "'rounds' is 2.5, expected a whole number", False),
    ("config.json", lambda f: edit_json(f, lambda d: {k: v for k, v in d.items() if k != "strategy"}),
     "the setting 'strategy' is missing", False),
    ("config.json", lambda f: edit_json(f, setting("resolved", [])), "'resolved' is not a table", False),
    ("state.json", lambda f: f.write_text(""), "state.json: not valid JSON", False),
    ("state.json", lambda f: edit_json(f, setting("completed_rounds", "2")), "'completed_rounds' is \"2\"", False),
    ("state.json", lambda f: edit_json(f, setting("completed_rounds", -1)), "'completed_rounds' is -1", False),
    ("state.json", lambda f: edit_json(f, setting("finished", "yes")), "'finished' is \"yes\"", False),
    ("state.json", lambda f: edit_json(f, setting("ledger", [])), "'ledger' is not a table", False),
    ("state.json", lambda f: edit_json(f, lambda d: {k: v for k, v in d.items() if k != "ledger"}),
     "'ledger' is missing", False),
    ("state.json", lambda f: edit_json(f, setting("checkpoint", "../../model.safetensors")),
     "expected a file name model-rNNN.safetensors", False),
    ("state.json", lambda f: edit_json(f, first_entry(pixels="many")), "'pixels' is \"many\", expected a whole number", False),
    ("state.json", lambda f: edit_json(f, first_entry(colour=1)), "has an unknown key 'colour'", False),
    ("state.json", lambda f: edit_json(f, first_entry(mask_file="../../etc/passwd")), "is not a file under labels/", False),
    ("state.json", lambda f: edit_json(f, first_entry(round=7)), "was labelled in round 7, but only rounds 0..1", True),
    ("history.jsonl", lambda f: edit_lines(f, lambda lines: lines[:1]),
     "state.json says 2 rounds are committed but only 1 records are here: round 1's record (line 2) is missing",
     False),
    ("history.jsonl", lambda f: f.unlink(), "round 0's record (line 1) is missing", False),
    ("history.jsonl", lambda f: edit_lines(f, lambda lines: [lines[0][:-5], *lines[1:]]), "history.jsonl:1: not valid JSON",
     False),
    ("history.jsonl", lambda f: edit_lines(f, lambda lines: lines[::-1]), "history.jsonl:1: the record is of round 1",
     False),
    ("history.jsonl", lambda f: edit_lines(f, record(2, queried="abc")), "history.jsonl:2: 'queried' is \"abc\"", False),
    ("history.jsonl", lambda f: edit_lines(f, record(1, labeled=999)), "history.jsonl:1: 'labeled' is 999", False),
    ("history.jsonl", lambda f: edit_lines(f, record(2, pool_size=3)),
     "history.jsonl:2: the record is of a pool of 3 samples, but config.json's is 16", False),
    ("history.jsonl", lambda f: edit_lines(f, record(1, queried=["train-99999"])),
     "history.jsonl:1: queried sample 'train-99999' is not in state.json's ledger", False),
    ("model-r001.safetensors", truncate, "model-r001.safetensors: cut short", True),
    ("model-r001.safetensors", lambda f: f.write_bytes(f.read_bytes()[:20]), "model-r001.safetensors: cut short", True),
    ("model-r001.safetensors", lambda f: f.unlink(), "model-r001.safetensors: missing", True),
]


@pytest.mark.parametrize(("name", "damage", "says", "resume_only"), DAMAGE,
                         ids=[f"{d[0]}-{i}" for i, d in enumerate(DAMAGE)])
def test_a_damaged_file_is_named(run: Path, name: str, damage: Callable[[Path], None], says: str,
                                 resume_only: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damage(run / name)
    before = snapshot(run)
    message = resume_error(run)
    assert says in message, message
    assert "the run folder is damaged" in message or "newer segal" in message
    assert "--resume" not in message  # no circle: the way out is a copy of the file or a new folder
    assert snapshot(run) == before, "a refused resume changes nothing"
    capsys.readouterr()
    code = run_main(["report", str(run), "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    if resume_only:
        assert code == 0, err
        return
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], err
    assert "resume" not in lines[0] and "None" not in lines[0]


def test_a_newer_format_asks_for_a_newer_segal(run: Path) -> None:
    edit_json(run / "state.json", setting("format", 99))
    assert "written in run-folder format 99 by a newer segal" in resume_error(run)


@pytest.mark.parametrize("mode", ["RGB", "size"])
def test_a_damaged_partial_mask_is_named(run: Path, mode: str) -> None:
    sid = sorted(json.loads((run / "state.json").read_text())["ledger"])[0]
    edit_json(run / "state.json", first_entry(mask_file="labels/x.png"))
    (run / "labels").mkdir()
    if mode == "RGB":
        Image.new("RGB", (32, 32)).save(run / "labels" / "x.png")
        assert "labels/x.png: a RGB image, not an 8- or 16-bit mask" in resume_error(run)
    else:
        Image.fromarray(np.zeros((8, 9), np.uint8)).save(run / "labels" / "x.png")
        assert f"the mask is 9x8 (WxH) but sample {sid!r} is 32x32" in resume_error(run)
    (run / "labels" / "x.png").unlink()
    assert "labels/x.png: missing (state.json's ledger names it)" in resume_error(run)


# -- a folder killed while it was being created -----------------------------------------------


@pytest.fixture(scope="module")
def reference(finished: Path) -> list[list[str]]:
    return [r["queried"] for r in history(finished)]


def test_killed_before_config_json_starts_again(tmp_path: Path, reference: list[list[str]]) -> None:
    """Only a (stale) lock file and a half-written temporary file: `--resume` says to
    start it again with --out, and --out takes that folder."""
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text('{"pid": 1}')
    (out / ".config.json.abc.tmp").write_text("{half")
    message = resume_error(out)
    assert "the run never started" in message and f"segal run --out {out}" in message
    RunDir.check_new(out)  # the advice holds: --out accepts it
    assert [r["queried"] for r in run_cycle(config(out), plugins=plugins())] == reference
    assert not list(out.glob(".*.tmp"))


def test_killed_after_config_json_resumes(finished: Path, tmp_path: Path, reference: list[list[str]]) -> None:
    """config.json alone (killed before the first state.json): --out points at
    --resume, and --resume runs the whole run."""
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(finished / "config.json", out / "config.json")
    (out / ".state.json.abc.tmp").write_text("{half")
    with pytest.raises(SegalError, match=f"resume it with --resume {out}"):
        RunDir.check_new(out)
    assert [r["queried"] for r in resume_run(out, plugins=plugins())] == reference
    assert json.loads((out / "state.json").read_text())["finished"]


def test_killed_after_the_first_state_json_resumes(finished: Path, tmp_path: Path,
                                                     reference: list[list[str]]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(finished / "config.json", out / "config.json")
    (out / "state.json").write_text(json.dumps({"format": 2, "completed_rounds": 0, "finished": False,
                                                "checkpoint": None, "ledger": {}}))
    assert [r["queried"] for r in resume_run(out, plugins=plugins())] == reference


def test_state_json_lost_after_rounds_were_recorded(run: Path) -> None:
    (run / "state.json").unlink()
    assert "state.json: missing, but rounds were recorded" in resume_error(run)


def test_no_circle_between_resume_and_out(run: Path, tmp_path: Path) -> None:
    """A run without its config.json: --resume and --out both say it is damaged, and
    neither sends the user to the other on this folder."""
    (run / "config.json").unlink()
    message = resume_error(run)
    assert "config.json: missing; the run folder is damaged" in message and "--out" not in message
    with pytest.raises(SegalError) as err:
        RunDir.check_new(run)
    assert "damaged run (no config.json); pick another --out" in one_line(err.value)
    assert "--resume" not in str(err.value)


# -- segal report --out: nothing of the user's is overwritten ------------------------------------


def report(run: Path, out: Path, *extra: str) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run_main(["report", str(run), "--out", str(out), *extra])
    return code, err.getvalue()


def test_report_refuses_a_folder_of_other_files(finished: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "report.md").write_text("my own report, not segal's")
    before = snapshot(out)
    code, err = report(finished, out)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: --out {out}: holds files that are not a segal report (notes.txt and 1 more)")
    assert "--force" in err and "resume" not in err
    assert snapshot(out) == before
    code, err = report(finished, out, "--force")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine"  # --force replaces the report's files only
    assert (out / "report.md").read_text().startswith("# Learning curves")


def test_report_replaces_an_earlier_report(finished: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert report(finished, out)[0] == 0
    (out / ".report.png.1.staged.tmp").write_bytes(b"left by a killed report")
    assert report(finished, out)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.csv", "report.html", "report.md", "report.png"]


def test_report_never_writes_into_a_run_or_a_file(finished: Path, tmp_path: Path) -> None:
    before = snapshot(finished)
    code, err = report(finished, finished)
    assert code == 2 and "holds files that are not a segal report" in err
    assert snapshot(finished) == before
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, err = report(finished, afile)
    assert code == 2 and err == f"error: --out {afile}: is a file, not a folder; pick another --out (nothing was changed)\n"
    assert afile.read_text() == "x"


def test_report_errors_do_not_talk_about_resuming(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = report(empty, tmp_path / "r")
    assert code == 2 and err == f"error: {empty}: the run never started (no config.json); nothing to report\n"
    code, err = report(tmp_path / "nope", tmp_path / "r")
    assert code == 2 and err == f"error: {tmp_path / 'nope'}: no such run folder\n"
    assert not (tmp_path / "r").exists()
