"""The ``segal`` command line: help, plugins listing, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from segal_core.cli import blocked_from_argv, run_main

from fakedist import STRATEGY_PLUGIN, make_distribution


def segal(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "segal_core", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=300)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "plugins", "report"):
        assert f"  {command} " in out
    assert "-p no:NAME" in out


def test_plugins_lists_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "segal_uncertainty 0.2.0  strategies: random, least_confidence, margin, entropy" in out
    for name in ("segal_synthetic", "segal_camvid", "segal_smp", "segal_oracle"):
        assert name in out
    assert "BROKEN" not in out


def test_broken_plugin_does_not_stop_plugins_or_run_help(tmp_path: Path) -> None:
    root = make_distribution(tmp_path / "d", "segal-broken", {"segal_broken": "raise ImportError('needs libfoo')\n"},
                             {"segal_broken": "segal_broken"})
    env = {"PYTHONPATH": str(root)}
    listed = segal("plugins", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "segal_broken 1.0  BROKEN: ImportError: needs libfoo" in listed.stdout
    assert "segal_uncertainty" in listed.stdout
    helped = segal("run", "--help", env=env)
    assert helped.returncode == 0 and "--strategy" in helped.stdout


def test_duplicate_strategy_name_is_one_clear_line(tmp_path: Path) -> None:
    source = STRATEGY_PLUGIN.format(name="margin", alias="m2")
    root = make_distribution(tmp_path / "d", "segal-dup", {"segal_dup": source}, {"segal_dup": "segal_dup"})
    result = segal("plugins", env={"PYTHONPATH": str(root)})
    line = one_line_error(result)
    assert result.returncode == 2
    assert "'margin'" in line and "'segal_dup'" in line and "'segal_uncertainty'" in line
    # blocking one of them lets everything work again
    ok = segal("-p", "no:segal_dup", "plugins", env={"PYTHONPATH": str(root)})
    assert ok.returncode == 0 and "segal_dup" not in ok.stdout


def test_unknown_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["run", "--strategyy", "entropy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: segal run: No such option '--strategyy'")


def test_unknown_strategy_suggests_closest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_main(["run", "--strategy", "entropi", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --strategy entropi: unknown; valid names: entropy")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-p", "no:a", "run"], ["a"]),
        (["-pno:b", "-p=no:c", "plugins"], ["b", "c"]),
        (["run", "--strategy", "p"], []),
    ],
)
def test_blocked_from_argv(argv: list[str], expected: list[str]) -> None:
    assert blocked_from_argv(argv) == expected


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--version"]) == 0
    assert "segal, version 0.2.0" in capsys.readouterr().out


def test_error_from_a_dataloader_worker_is_one_line() -> None:
    from segal_core import SegalError
    from segal_core.cli import one_line

    wrapped = SegalError(
        "Caught SegalError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nsegal_core.errors.SegalError: a/b.png: mask value 40 is not a class id'
    )
    assert one_line(wrapped) == "a/b.png: mask value 40 is not a class id"
    assert one_line(SegalError("plain")) == "plain"


OPTION_PLUGIN = '''
import click
from segal_core import hookimpl

@hookimpl
def segal_cli_options():
    return [click.Option(["--shared-flag"], default="x")]
'''


def test_two_plugins_claiming_one_option_is_an_error(tmp_path: Path) -> None:
    roots = [make_distribution(tmp_path / n, f"segal-{n}", {n: OPTION_PLUGIN}, {n: n}) for n in ("opt_a", "opt_b")]
    result = segal("run", "--help", env={"PYTHONPATH": os.pathsep.join(map(str, roots))})
    line = one_line_error(result)
    assert "--shared-flag" in line and "'opt_a'" in line and "'opt_b'" in line


def test_every_run_option_is_documented() -> None:
    from segal_core.cli import RUN_OPTIONS

    from segal_smp.cli import run_options

    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for names, _, _ in RUN_OPTIONS:
        for name in names:
            assert f"`{name}`" in doc, f"{name} is missing from docs/cli.md"
    for option in run_options():  # the smp plugin's flags
        for name in option.opts:
            assert f"`{name}`" in doc, f"{name} (segal_smp) is missing from docs/cli.md"
