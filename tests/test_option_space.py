"""Hypothesis over the option space of `segal run`: every option of `segal run --help`
(the plugins' included), random values of every type (NaN, infinity, huge, negative,
empty, words where numbers belong). The only outcomes allowed: a run that gets past
every check, or one clean error line with a non-zero exit, before any training.

To stay fast, training is replaced by a stand-in that records that it was reached
(everything before it, the data loaded and the model built, is real), torch's thread
settings are left alone, and the examples are a fixed, derandomised set of 60 (to
explore more locally: ``SEGAL_OPTION_EXAMPLES=2000 SEGAL_OPTION_RANDOM=1``).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import segal_core.cycle
import segal_core.threads
from segal_core.cli import build_cli, run_main
from segal_core.plugins import load_plugins

from cycle_helpers import TINY_ARGS

EXAMPLES = int(os.environ.get("SEGAL_OPTION_EXAMPLES", "60"))

SPECIAL = [
    "nan", "NaN", "inf", "-inf", "1e999", "-1", "0", "", " ", "2.5", "1e3", "-0", str(2**64), str(10**30),
    "-" + str(10**30), "none", "true", "1x1", "0x0", "99999x99999", "/", "..", "auto", "cpu", "cuda", "cuda:7",
    "image", "patch", "superpixel", "region", "scratch", "finetune", "entropy", "random", "unet", "synthetic",
]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10)
VALUE = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    TEXT,
)


def _option_keys() -> list[str]:
    from segal_smp.options import SmpOptions
    from segal_synthetic.dataset import SyntheticOptions

    keys = {f.name for f in fields(SmpOptions)} | {f.name for f in fields(SyntheticOptions)}
    return sorted(keys | {"reduction", "q", "size", "segments", "compactness", "verify", "scale", "colour"})


KEYS = _option_keys()


def _run_options() -> list[click.Option]:
    command = build_cli(load_plugins()).commands["run"]
    return [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]


OPTIONS = _run_options()


@st.composite
def mutation(draw: st.DrawFn) -> list[str]:
    """One option of `segal run` with a random value."""
    option = draw(st.sampled_from(OPTIONS))
    flag = draw(st.sampled_from(option.opts))
    if option.is_flag:
        return [flag]
    if option.multiple and option.name and option.name.endswith("_opt"):
        key = draw(st.one_of(st.sampled_from(KEYS), TEXT))
        return [flag, f"{key}={draw(VALUE)}"]
    if isinstance(option.type, click.Choice) and draw(st.booleans()):
        return [flag, draw(st.sampled_from(list(option.type.choices)))]
    return [flag, draw(VALUE)]


#: How the examples ended (printed with -s by test_outcomes_are_mixed).
OUTCOMES: dict[str, int] = {}


class Trained(Exception):
    """Raised by the stand-in for training: everything before it passed."""


def test_every_option_is_covered() -> None:
    names = {o.name for o in OPTIONS}
    assert {"seed", "seed_ratio", "num_workers", "num_classes", "dataset_opt", "model_opt", "lr", "crop_size",
            "epochs", "threads", "resume", "config_file"} <= names


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("SEGAL_OPTION_RANDOM"), database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(mutation(), min_size=1, max_size=3))
def test_any_options_end_cleanly(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                                 mutations: list[list[str]]) -> None:
    def loop(run: Any) -> list[dict[str, Any]]:
        raise Trained()

    monkeypatch.setattr(segal_core.cycle, "_loop", loop)
    monkeypatch.setattr(segal_core.threads, "apply_threads", lambda budget: budget)
    work = tmp_path_factory.mktemp("opts")
    argv = ["-q", "run", *TINY_ARGS, *[a for m in mutations for a in m]]
    if "--out" not in argv and "--resume" not in argv:
        argv += ["--out", str(work / "run")]
    err = io.StringIO()
    cwd = os.getcwd()
    os.chdir(work)  # relative --out, --config, --data-path values land here
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = run_main(argv)
    except Trained:
        OUTCOMES["trained"] = OUTCOMES.get("trained", 0) + 1
        return  # every check passed and training was about to start
    except BaseException as exc:  # anything else escaping is a traceback for the user
        pytest.fail(f"segal {' '.join(argv)}: {type(exc).__name__}: {exc}")
    finally:
        os.chdir(cwd)
    text = err.getvalue()
    OUTCOMES["error"] = OUTCOMES.get("error", 0) + 1
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("warning")]
    assert "Traceback" not in text, f"segal {' '.join(argv)}:\n{text}"
    assert code != 0, f"segal {' '.join(argv)}: exit 0 without reaching training:\n{text}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"segal {' '.join(argv)} (exit {code}):\n{text}"
    assert "None" not in lines[0].replace("--encoder-weights none", ""), lines[0]
    assert Path(work).exists()


def test_outcomes_are_mixed() -> None:
    """The examples reach both ends: some pass every check, some are refused."""
    if not OUTCOMES:
        pytest.skip("runs after test_any_options_end_cleanly")
    print(f"option space: {OUTCOMES}")
    assert OUTCOMES.get("trained", 0) > 0 and OUTCOMES.get("error", 0) > 0


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ("rounds = 2.5", "--rounds 2.5: expected a whole number"),
        ('seed = "abc"', "--seed 'abc': expected a whole number"),
        ("seed = 18446744073709551616", "--seed 18446744073709551616: must be between 0 and 2**63 - 1"),
        ("seed_ratio = nan", "--seed-ratio nan: expected a finite number"),
        ("query_ratio = -inf", "--query-ratio -inf: expected a finite number"),
        ("cache = 1", "--cache 1: expected true or false"),
        ("num_classes = 100000", "--num-classes 100000: must be between 1 and 4096"),
        ("num_workers = 1000", "--num-workers 1000: must be between 0 and 64"),
        ("[model_options]\nepochs = 2.5", "--epochs=2.5: expected a number (int)"),
        ("[model_options]\nlr = nan", "--lr nan: must be a finite number"),
        ("[model_options]\nflip = 1", "--model-opt flip=1: expected true or false"),
        ("[dataset_options]\nnoise = inf", "--dataset-opt noise=inf: must be a finite number"),
        ("[dataset_options]\nn_train = 1000000000", "--dataset-opt n_train=1000000000: expected 1 to 1000000 images"),
        ("[dataset_options]\nsize = 100000", "--dataset-opt size=100000: expected at most 4096"),
        ("[strategy_options]\nq = true", "--strategy-opt q=true: expected a number (float)"),
    ],
)
def test_config_file_values_of_the_wrong_type(tmp_path: Path, toml: str, says: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A --config file may hold any TOML value: each of the wrong type or out of
    range is one line naming the option, before any training."""
    monkeypatch.setattr(segal_core.cycle, "_loop", lambda run: pytest.fail("training started"))
    (tmp_path / "c.toml").write_text(toml + "\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run_main(["-q", "run", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "run")])
    assert code == 2
    assert err.getvalue().startswith(f"error: {says}") and err.getvalue().count("\n") == 1, err.getvalue()
