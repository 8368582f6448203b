"""The core/plugin line (issue 16): model settings owned by the model plugin and
contributed to the CLI, --config files, a torch-free CLI start, logging, the curve as
a plugin, hooks blamed without guessing, and the API's own words (issue 20)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from segal_core import ModelConfig, RunConfig, SegalError, hookimpl, load_plugins
from segal_core.rundir import FORMAT_VERSION
from segal_core.cli import run_main
from segal_core.config import load_config_file, upgrade
from segal_core.cycle import run_cycle
from segal_core.testing import TinyModel

from cycle_helpers import TINY_ARGS, TINY_DATA, history, snapshot, tiny_config


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


# -- model settings: the plugin's, contributed to the CLI -------------------------


def test_smp_flags_land_in_model_options_only_when_given(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert run_main(["run", *TINY_ARGS, "--rounds", "1", "--lr", "0.002", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == FORMAT_VERSION
    options = config["model_options"]
    assert options["lr"] == 0.002 and options["encoder"] == "tu-test_resnet"
    assert "crop_size" not in options and "precision" not in options  # defaults stay the plugin's
    assert "encoder" not in config and "lr" not in config  # nothing model-specific at the top


def test_flag_and_model_opt_for_one_setting_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_main(["run", *TINY_ARGS, "--lr", "0.1", "--model-opt", "lr=0.2", "--out", str(tmp_path / "r")])
    assert status == 2
    line = one_error(capsys)
    assert "--lr" in line and "--model-opt lr=" in line
    assert not (tmp_path / "r").exists()


def test_a_second_model_plugin_needs_no_core_change(tmp_path: Path) -> None:
    class TinyPlugin:
        @hookimpl
        def segal_register_models(self) -> list[type]:
            return [TinyModel]

    plugins = load_plugins(extra=[("segal_tiny_models", TinyPlugin())])
    config = RunConfig(dataset="synthetic", dataset_options=dict(TINY_DATA), model="tiny", device="cpu",
                       model_options={"epochs": 2, "scale": 0.5}, seed_ratio=0.25, query_size=4, rounds=2,
                       progress=False, out=str(tmp_path / "r"))
    records = run_cycle(config, plugins=plugins)
    assert [r["train"]["epochs"] for r in records] == [2, 2]  # TinyModel read its own setting
    with pytest.raises(SegalError, match="'tiny' takes no option 'encoder'"):
        run_cycle(RunConfig(**{**vars(config), "out": str(tmp_path / "s"),
                               "model_options": {"encoder": "resnet18"}}), plugins=plugins)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--lr", "nan"], "--lr nan: must be a finite number"),
        (["--crop-size", "4"], "--crop-size 4: must be between 8"),
        (["--epochs", "0"], "--epochs 0: must be between 1"),
        (["--model-opt", "warmup=inf"], "--model-opt warmup inf: must be a finite number"),
        (["--precision", "fp8"], "--precision"),
    ],
)
def test_smp_settings_are_checked_once_by_the_plugin(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(["run", *TINY_ARGS, *args, "--out", str(tmp_path / "r")]) == 2
    assert says in one_error(capsys)
    assert not (tmp_path / "r").exists()


def test_format_1_settings_are_read_as_model_options() -> None:
    old = {"strategy": "margin", "encoder": "resnet34", "encoder_weights": None, "epochs": 2, "lr": 0.01,
           "model_options": {"loss": "ce+dice", "lr": 0.5}}
    config = RunConfig.from_json(old)
    assert config.model_options == {"encoder": "resnet34", "epochs": 2, "lr": 0.5, "loss": "ce+dice"}
    assert upgrade({"strategy": "x"}) == {"strategy": "x"}


# -- --config FILE ---------------------------------------------------------------------


def test_config_file_toml_and_json_and_command_line_wins(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text(
        'strategy = "margin"\nseed = 3\nrounds = 1\n[model_options]\nencoder = "tu-test_resnet"\nepochs = 1\n'
        "min_steps = 0\n[dataset_options]\nn_train = 16\nn_val = 4\nn_test = 4\nsize = 32\n"
    )
    out = tmp_path / "a"
    assert run_main(["run", "--config", str(toml), "--seed", "5", "--device", "cpu", "--lr", "0.004",
                     "--no-progress", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"] == "margin" and config["seed"] == 5  # the command line wins
    assert config["model_options"] == {"encoder": "tu-test_resnet", "epochs": 1, "min_steps": 0, "lr": 0.004}
    # the run's own config.json starts a new run (its out is dropped: a folder of its own)
    again = tmp_path / "b"
    assert run_main(["run", "--config", str(out / "config.json"), "--seed", "6", "--out", str(again)]) == 0
    second = json.loads((again / "config.json").read_text())
    assert second["seed"] == 6 and second["strategy"] == "margin"
    assert second["model_options"] == config["model_options"]
    assert second["dataset_options"] == config["dataset_options"]


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("a.json", '{"stratgy": "margin"}', "unknown setting 'stratgy' (closest: strategy"),
        ("a.json", "{not json", "not valid JSON"),
        ("a.toml", "x = = 1", "not valid TOML"),
        ("a.json", '["margin"]', "expected a table of settings"),
        ("a.json", '{"seed_ratio": NaN}', "not valid JSON"),
        ("missing.json", None, "no such file"),
    ],
)
def test_bad_config_files_are_one_line(name: str, text: str | None, says: str, tmp_path: Path) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(SegalError, match=f"--config {path}") as err:
        load_config_file(path)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_config_with_resume_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.json").write_text("{}")
    assert run_main(["run", "--resume", str(tmp_path), "--config", str(tmp_path / "c.json")]) == 2
    assert "drop --config" in one_error(capsys)


# -- a fast, torch-free CLI start ----------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["report", "--help"]])
def test_help_imports_no_torch(argv: list[str]) -> None:
    code = ("import sys; from segal_core.cli import run_main; status = run_main(sys.argv[1:]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', status)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().endswith("NO-TORCH 0"), result.stdout[-300:] + result.stderr
    if argv == ["run", "--help"]:
        assert "--encoder" in result.stdout and "[smp models]" in result.stdout


def test_unknown_blocked_plugin_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["-p", "no:segal_typo", "plugins"]) == 2
    line = one_error(capsys)
    assert "-p no:segal_typo" in line and "segal_uncertainty" in line


# -- logging, schedule, curve plugin -------------------------------------------------------


def test_logging_levels_and_the_schedule_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["run", *TINY_ARGS, "--rounds", "1", "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "round  0 |" in captured.out and "round  0 |" not in captured.err  # results on stdout
    schedule = [line for line in captured.err.splitlines() if line.startswith("training ")]
    # TINY_ARGS: 4 labelled images, batch 4, --epochs 1 --min-steps 0, --steps-per-image 1
    assert schedule == ["training 4 steps: 4 epochs of 1 batches (batch size 4, 4 labelled images), from "
                        "--min-steps 0 + --steps-per-image 1 x 4 images = 4 steps, more than --epochs 1"]
    assert run_main(["-q", "run", *TINY_ARGS, "--rounds", "1", "--out", str(tmp_path / "b")]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and "round  0 |" in quiet.out


def test_curve_is_drawn_by_a_plugin_that_can_be_blocked(tmp_path: Path) -> None:
    assert run_main(["run", *TINY_ARGS, "--rounds", "1", "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "curve.png").stat().st_size > 1000
    assert run_main(["-p", "no:segal_curve", "run", *TINY_ARGS, "--rounds", "1", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "history.jsonl").exists() and not (tmp_path / "b" / "curve.png").exists()


# -- hooks named from what was called --------------------------------------------------------


class PhaseWrapper:
    """A ``segal_phase`` wrapper that lets the phase's own error pass."""

    @hookimpl(wrapper=True)
    def segal_phase(self, phase: str) -> Any:
        return (yield)


class BrokenTrain:
    @hookimpl
    def segal_after_train(self, round: int) -> None:  # noqa: A002
        raise ZeroDivisionError("oops")


def test_a_wrapper_is_not_blamed_for_the_phase_and_a_failing_hook_is_named(tmp_path: Path) -> None:
    plugins = load_plugins(extra=[("segal_wrapper", PhaseWrapper()), ("segal_broken", BrokenTrain())])
    with pytest.raises(SegalError) as err:
        run_cycle(tiny_config(tmp_path / "a", rounds=1), plugins=plugins)
    assert str(err.value) == "plugin 'segal_broken' failed in hook segal_after_train: ZeroDivisionError: oops"
    assert getattr(err.value, "exit_code", None) == 3
    # the phase's own error passes the wrapper unchanged: the wrapper is not blamed
    plugins = load_plugins(extra=[("segal_wrapper", PhaseWrapper()), ("segal_exploding", ExplodingPlugin())])
    with pytest.raises(RuntimeError, match="fit broke"):
        run_cycle(tiny_config(tmp_path / "b", rounds=1, model="exploding", model_options={}), plugins=plugins)


class Exploding(TinyModel):
    name = "exploding"

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("fit broke")


class ExplodingPlugin:
    @hookimpl
    def segal_register_models(self) -> list[type]:
        return [Exploding]


class GivesAugmentation:
    seen: list[object] = []

    @hookimpl
    def segal_train_augmentation(self, config: RunConfig) -> object:
        return "marker"

    @hookimpl
    def segal_round_start(self, run: Any) -> None:
        GivesAugmentation.seen.append(run.model_config.augmentation)


def test_segal_train_augmentation_reaches_the_model_config(tmp_path: Path) -> None:
    class TinyPlugin:
        @hookimpl
        def segal_register_models(self) -> list[type]:
            return [TinyModel]

    plugins = load_plugins(extra=[("segal_tiny_models", TinyPlugin()), ("segal_aug", GivesAugmentation())])
    config = tiny_config(tmp_path / "a", rounds=1, model="tiny", model_options={"epochs": 1})
    run_cycle(config, plugins=plugins)
    assert GivesAugmentation.seen == ["marker"]
    assert ModelConfig(num_classes=2).augmentation is None


# -- the Python API's own words, if_exists, file modes, --full resume ------------------------


def test_api_out_errors_speak_python_and_if_exists(tmp_path: Path) -> None:
    out = tmp_path / "r"
    first = run_cycle(tiny_config(out, rounds=1))
    with pytest.raises(SegalError) as err:
        run_cycle(tiny_config(out, rounds=1))
    message = str(err.value)
    assert message.startswith(f"out={str(out)!r}: folder is not empty") and "--" not in message
    assert "if_exists='resume'" in message
    before = snapshot(out)
    assert run_cycle(tiny_config(out, rounds=1), if_exists="resume") == first  # complete: nothing redone
    assert snapshot(out) == before
    with pytest.raises(SegalError, match="options differ"):  # resume checks the settings given
        run_cycle(tiny_config(out, rounds=1, strategy="random"), if_exists="resume")
    with pytest.raises(SegalError, match="--strategy nope: unknown"):  # a typo costs nothing
        run_cycle(tiny_config(out, rounds=1, strategy="nope"), if_exists="replace")
    assert snapshot(out) == before
    again = run_cycle(tiny_config(out, rounds=1, seed=1), if_exists="replace")
    assert len(again) == 1 and json.loads((out / "config.json").read_text())["seed"] == 1
    with pytest.raises(SegalError, match="if_exists='overwrite'"):
        run_cycle(tiny_config(out), if_exists="overwrite")  # type: ignore[arg-type]
    stray = tmp_path / "photos"
    stray.mkdir()
    (stray / "a.jpg").write_bytes(b"x")
    with pytest.raises(SegalError, match="pick an empty or new folder"):
        run_cycle(tiny_config(stray), if_exists="replace")  # never deletes what is not a run
    assert (stray / "a.jpg").read_bytes() == b"x"


def test_results_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        run_cycle(tiny_config(tmp_path / "r", rounds=1))
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "r").iterdir() if p.is_file()}
    assert modes and all(mode == 0o644 for mode in modes.values()), modes


def test_resuming_a_full_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from segal_core.rundir import RunDir

    out = tmp_path / "full"
    assert run_main(["run", *TINY_ARGS, "--full", "--out", str(out)]) == 0
    state = json.loads((out / "state.json").read_text())
    # as if killed during round 0: nothing committed yet
    RunDir(out).create(json.loads((out / "config.json").read_text()))
    (out / "history.jsonl").unlink()
    capsys.readouterr()
    assert run_main(["run", "--resume", str(out)]) == 0
    err = capsys.readouterr().err
    assert "resuming the full-data run" in err and "(0 labelled)" not in err
    assert len(history(out)) == 1 and state["completed_rounds"] == 1
