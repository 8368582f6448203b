"""Lifecycle hooks, plugin CLI options and commands, blocking, hook errors, and the
meta-test that every hookspec is documented in docs/plugins.md and tested.

The runs use the synthetic dataset at 32x32 with ``TinyModel`` (one convolution, from
``segal_core.testing``) registered by a test plugin: the hooks do not depend on the
model, and this keeps every run to a second or two.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from segal_core import Annotation, Dataset, Oracle, SegalError, hookimpl, hookspecs, load_plugins
from segal_core.cli import run_main
from segal_core.config import RunConfig
from segal_core.cycle import Run, resume_run, run_cycle
from segal_core.plugins import DISABLE_ENV, PluginError, Plugins
from segal_core.testing import RandomImages, TinyModel

from fakedist import make_distribution

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "plugins.md"
TESTS = Path(__file__).resolve().parent

POOL = 10
TINY_DATA = {"n_train": POOL, "n_val": 2, "n_test": 2, "size": 32}
#: The same tiny run on the command line (``--model tiny`` comes from a test plugin).
TINY_ARGS = [
    "--model", "tiny", "--device", "cpu", "--epochs", "1", "--query-size", "2", "--seed-ratio", "0.2",
    "--no-progress", *[f"--dataset-opt={k}={v}" for k, v in TINY_DATA.items()],
]


class TinyModels:
    """Registers ``TinyModel`` as ``--model tiny``."""

    @hookimpl
    def segal_register_models(self) -> list[type]:
        return [TinyModel]


def tiny_config(out: Path, **changes: Any) -> RunConfig:
    values: dict[str, Any] = dict(
        dataset="synthetic", dataset_options=dict(TINY_DATA), model="tiny", device="cpu", model_options={"epochs": 1},
        seed_ratio=0.2, query_size=2, rounds=3, strategy="entropy", progress=False,
        out=str(out),
    )
    values.update(changes)
    return RunConfig(**values)


def with_plugins(*extra: tuple[str, object]) -> Plugins:
    return load_plugins(extra=[("tiny_models", TinyModels()), *extra])


def history_lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line.strip()]


# -- the lifecycle, in order, with its arguments -----------------------------------


class Recorder:
    """Implements every lifecycle hook and records what it saw."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.checks: list[str] = []  # problems seen inside hooks (asserted afterwards)
        self.scored: dict[int, tuple[list[str], torch.Tensor]] = {}
        self.metrics: dict[int, dict[str, Any]] = {}
        self.queries: dict[int, tuple[list[str], list[float]]] = {}
        self.annotations: dict[int, list[Annotation]] = {}
        self.records: list[dict[str, Any]] = []
        self.written: list[dict[str, Any]] = []
        self.final: list[dict[str, Any]] | None = None
        self.runs: set[int] = set()

    def _run(self, run: Run) -> None:
        self.runs.add(id(run))
        if not isinstance(run, Run):
            self.checks.append(f"run is {type(run).__name__}")

    @hookimpl
    def segal_run_start(self, run: Run) -> None:
        self._run(run)
        self.events.append(("run_start",))
        if run.model is None or not (run.out / "config.json").is_file():
            self.checks.append("run_start before the model or config.json exists")
        if len(run.state.ledger) != 2:
            self.checks.append(f"run_start with {len(run.state.ledger)} labelled, expected the seed set of 2")

    @hookimpl
    def segal_round_start(self, run: Run, round: int) -> None:  # noqa: A002 - the hook's own name
        self._run(run)
        self.events.append(("round_start", round))

    @hookimpl(wrapper=True)
    def segal_phase(self, run: Run, round: int, phase: str) -> Iterator[None]:  # noqa: A002
        self._run(run)
        self.events.append(("phase", round, phase))
        result = yield
        self.events.append(("phase_done", round, phase))
        return result

    @hookimpl
    def segal_after_train(self, run: Run, round: int, metrics: dict[str, Any]) -> None:  # noqa: A002
        self._run(run)
        self.events.append(("after_train", round))
        self.metrics[round] = metrics

    @hookimpl
    def segal_after_scoring(self, run: Run, round: int, ids: Sequence[str], scores: torch.Tensor) -> None:  # noqa: A002
        self._run(run)
        self.events.append(("after_scoring", round))
        unlabelled = [sid for sid in run.pool.ids if sid not in run.state.ledger]
        if list(ids) != unlabelled:
            self.checks.append(f"round {round}: scored ids are not the unlabelled pool")
        self.scored[round] = (list(ids), scores.detach().cpu().clone())

    @hookimpl
    def segal_select(self, run: Run, round: int, ids: Sequence[str], scores: torch.Tensor, k: int) -> None:  # noqa: A002
        self._run(run)
        self.events.append(("select", round, k))
        if list(ids) != self.scored[round][0] or not torch.equal(scores.cpu(), self.scored[round][1]):
            self.checks.append(f"round {round}: segal_select saw other ids or scores than segal_after_scoring")

    @hookimpl
    def segal_after_query(self, run: Run, round: int, queried: Sequence[str], scores: Sequence[float]) -> None:  # noqa: A002
        self._run(run)
        self.events.append(("after_query", round))
        if any(sid in run.state.ledger for sid in queried):
            self.checks.append(f"round {round}: after_query after the labels were added")
        self.queries[round] = (list(queried), list(scores))

    @hookimpl
    def segal_after_label(self, run: Run, round: int, annotations: Sequence[Annotation]) -> None:  # noqa: A002
        self._run(run)
        self.events.append(("after_label", round))
        if not all(run.state.ledger[a.sample_id].round == round for a in annotations):
            self.checks.append(f"round {round}: after_label before the ledger was updated")
        self.annotations[round] = list(annotations)

    @hookimpl
    def segal_round_end(self, run: Run, record: dict[str, Any]) -> None:
        self._run(run)
        self.events.append(("round_end", record["round"]))
        self.records.append(record)
        self.written.append(history_lines(run.out)[-1])  # the line as it is on disk now

    @hookimpl
    def segal_run_end(self, run: Run, history: list[dict[str, Any]]) -> None:
        self._run(run)
        self.events.append(("run_end",))
        self.final = history


def expected_events(rounds: int, k: int) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [("run_start",)]
    for r in range(rounds):
        out += [("round_start", r), ("phase", r, "train"), ("phase_done", r, "train"),
                ("phase", r, "evaluate"), ("phase_done", r, "evaluate"), ("after_train", r)]
        if r < rounds - 1:
            out += [("phase", r, "score"), ("phase_done", r, "score"), ("after_scoring", r),
                    ("phase", r, "select"), ("select", r, k), ("phase_done", r, "select"), ("after_query", r),
                    ("phase", r, "label"), ("phase_done", r, "label"), ("after_label", r)]
        out.append(("round_end", r))
    return out + [("run_end",)]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recorder, list[dict[str, Any]], Path]:
    out = tmp_path_factory.mktemp("hooks") / "run"
    recorder = Recorder()
    history = run_cycle(tiny_config(out), plugins=with_plugins(("recorder", recorder)))
    return recorder, history, out


def test_every_lifecycle_hook_in_order(recorded: tuple[Recorder, list[dict[str, Any]], Path]) -> None:
    recorder, history, _ = recorded
    assert recorder.events == expected_events(rounds=3, k=2)
    assert recorder.checks == []
    assert len(recorder.runs) == 1, "every hook must receive the same Run"


def test_round_end_record_is_the_history_line(recorded: tuple[Recorder, list[dict[str, Any]], Path]) -> None:
    recorder, history, out = recorded
    assert recorder.records == recorder.written == history_lines(out) == history
    assert recorder.final == history
    # JSON-compatible as promised: it survives a round trip unchanged
    assert json.loads(json.dumps(recorder.records)) == recorder.records


def test_phase_wrapper_sees_every_timed_phase(recorded: tuple[Recorder, list[dict[str, Any]], Path]) -> None:
    recorder, history, _ = recorded
    for record in history:
        seen = {e[2] for e in recorder.events if e[0] == "phase" and e[1] == record["round"]}
        assert seen == set(record["seconds"]) - {"total"}


def test_hook_arguments_match_the_record(recorded: tuple[Recorder, list[dict[str, Any]], Path]) -> None:
    recorder, history, _ = recorded
    for record in history:
        r = record["round"]
        metrics = recorder.metrics[r]
        assert set(metrics) == {"train", "val", "test"}
        train = dict(metrics["train"])
        assert isinstance(train.pop("history"), list)  # per epoch, for the hooks only
        assert train == record["train"]
        assert metrics["test"]["miou"] == pytest.approx(record["test_miou"], nan_ok=True)
        assert metrics["val"]["pixel_accuracy"] == pytest.approx(record["val_pixel_accuracy"])
        if not record["queried"]:
            assert r not in recorder.queries
            continue
        ids, scores = recorder.scored[r]
        assert scores.shape == (len(ids),) and len(ids) == POOL - record["labeled"]
        queried, query_scores = recorder.queries[r]
        assert queried == record["queried"] and query_scores == pytest.approx(record["query_scores"])
        # no segal_select replacement here: the strategy's own top-k, highest first
        top = torch.sort(scores, descending=True, stable=True).indices[:2].tolist()
        assert queried == [ids[i] for i in top]
        assert [a.sample_id for a in recorder.annotations[r]] == queried
        assert all(a.labeled_pixels == 32 * 32 and a.mask is None for a in recorder.annotations[r])


# -- segal_select ----------------------------------------------------------------


class Contrarian:
    """Queries the lowest-scored samples instead of the highest."""

    @hookimpl
    def segal_select(self, ids: Sequence[str], scores: torch.Tensor, k: int) -> list[str]:
        order = torch.sort(scores.cpu(), stable=True).indices[:k].tolist()
        return [ids[i] for i in order]


class Passive:
    @hookimpl
    def segal_select(self) -> None:
        return None


def test_segal_select_replaces_the_selection(tmp_path: Path) -> None:
    recorder = Recorder()
    plugins = with_plugins(("passive", Passive()), ("contrarian", Contrarian()), ("recorder", recorder))
    history = run_cycle(tiny_config(tmp_path / "run", rounds=2), plugins=plugins)
    ids, scores = recorder.scored[0]
    lowest = [ids[i] for i in torch.sort(scores, stable=True).indices[:2].tolist()]
    assert history[0]["queried"] == lowest
    assert history[0]["query_scores"] == pytest.approx([float(scores[ids.index(s)]) for s in lowest])
    ledger = json.loads((tmp_path / "run" / "state.json").read_text())["ledger"]
    assert {sid for sid, entry in ledger.items() if entry["round"] == 0} == set(lowest)


@pytest.mark.parametrize(
    "choose",
    [
        lambda ids, k: list(ids[: k + 1]),  # too many
        lambda ids, k: [ids[0]] * k,  # repeats
        lambda ids, k: ["train-99999"] + list(ids[1:k]),  # not in the pool
    ],
    ids=["too-many", "repeated", "unknown-id"],
)
def test_bad_selection_is_one_line(tmp_path: Path, choose: Any) -> None:
    class Bad:
        @hookimpl
        def segal_select(self, ids: Sequence[str], k: int) -> list[str]:
            return choose(ids, k)

    with pytest.raises(SegalError) as err:
        run_cycle(tiny_config(tmp_path / "run", rounds=2), plugins=with_plugins(("bad", Bad())))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("plugin 'bad' returned") and "from segal_select, not 2 distinct unlabelled ids" in message


class FailsOnce:
    """Raises in ``segal_round_end`` of round 0, after that round is committed."""

    @hookimpl
    def segal_round_end(self, record: dict[str, Any]) -> None:
        if record["round"] == 0:
            raise OSError("disk full")


def test_failing_hook_leaves_a_resumable_run_and_resume_calls_run_start(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(PluginError) as err:
        run_cycle(tiny_config(out), plugins=with_plugins(("fails_once", FailsOnce())))
    assert str(err.value) == "plugin 'fails_once' failed in hook segal_round_end: OSError: disk full"
    assert [r["round"] for r in history_lines(out)] == [0]

    recorder = Recorder()
    history = resume_run(out, plugins=with_plugins(("recorder", recorder)))
    assert [r["round"] for r in history] == [0, 1, 2]
    full = expected_events(rounds=3, k=2)
    assert recorder.events == full[:1] + full[full.index(("round_start", 1)) :]
    assert recorder.final == history == history_lines(out)


# -- registration hooks for datasets and oracles, used by a run ----------------------


class RandomData(RandomImages):
    """``RandomImages`` as a registered dataset that needs no ``--data-path``."""

    name = "random_images"
    requires_path = False


class TopHalfOracle(Oracle):
    """Labels only the top half of each queried image (a partial mask)."""

    name = "top_half"

    def label(self, ids: Sequence[str], pool: Dataset) -> list[Annotation]:
        out = []
        for sid in ids:
            mask = pool.mask(pool.index_of(sid)).clone()
            mask[mask.shape[0] // 2 :] = pool.ignore_index
            out.append(Annotation(sid, int((mask != pool.ignore_index).sum()), mask))
        return out


class Registrations:
    @hookimpl
    def segal_register_datasets(self) -> list[type]:
        return [RandomData]

    @hookimpl
    def segal_register_oracles(self) -> list[type]:
        return [TopHalfOracle]


def test_registered_dataset_and_oracle_drive_a_run(tmp_path: Path) -> None:
    plugins = with_plugins(("registrations", Registrations()))
    info = next(i for i in plugins.infos if i.name == "registrations")
    assert info.registers == {"datasets": ["random_images"], "oracles": ["top_half"]}
    out = tmp_path / "run"
    config = tiny_config(out, dataset="random_images", dataset_options={"n": 8}, oracle="top_half", rounds=2)
    history = run_cycle(config, plugins=plugins)
    queried = history[0]["queried"]
    assert len(queried) == 2 and history[1]["labeled"] == 2 + 2
    ledger = json.loads((out / "state.json").read_text())["ledger"]
    assert set(queried) < set(ledger) and len(ledger) == 4
    for entry in ledger.values():  # the oracle labels the seed set too: 16x16 images, top 8 rows
        assert entry["pixels"] == 8 * 16 and (out / entry["mask_file"]).is_file()
    assert history[0]["labeled_pixels"] == 2 * 8 * 16 and history[1]["labeled_pixels"] == 4 * 8 * 16
    # on resume the partial masks are read back from labels/, equal to what the oracle returned
    from segal_core.cycle import prepare_run
    from segal_core.rundir import RunDir

    rundir = RunDir.open_existing(out)
    run = prepare_run(RunConfig.from_json(rundir.config()), plugins=plugins, existing=rundir)
    expected = TopHalfOracle().label(list(ledger), run.pool)
    assert set(run.partial_masks) == set(ledger)
    for ann in expected:
        assert torch.equal(run.partial_masks[ann.sample_id], ann.mask)


# -- CLI options, commands, errors and blocking, through installed entry points -----

DEMO_PLUGIN = '''
import json
import click
from segal_core import hookimpl
from segal_core.testing import RandomImages, TinyModel

@hookimpl
def segal_register_models():
    return [TinyModel]

@hookimpl
def segal_cli_options():
    return [click.Option(["--demo-tag"], default="plain", help="A tag from the demo plugin."),
            click.Option(["--demo-level"], type=int, default=1)]

@hookimpl
def segal_cli_commands(cli):
    @cli.command("demo-hello")
    @click.argument("who")
    def hello(who):
        """Say hello (added by segal_demo)."""
        click.echo(f"hello {who} from segal_demo")

@hookimpl
def segal_run_start(run):
    (run.out / "demo-options.json").write_text(json.dumps(run.config.plugin_options))
'''

BOOM_PLUGIN = '''
from segal_core import hookimpl

@hookimpl
def segal_run_start(run):
    raise RuntimeError("the boom plugin exploded")
'''


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``segal_demo`` and ``segal_boom`` installed as distributions with entry points."""
    root = make_distribution(
        tmp_path / "site", "segal-demo", {"segal_demo": DEMO_PLUGIN, "segal_boom": BOOM_PLUGIN},
        {"segal_demo": "segal_demo", "segal_boom": "segal_boom"},
    )
    monkeypatch.syspath_prepend(str(root))
    yield
    for name in ("segal_demo", "segal_boom"):
        sys.modules.pop(name, None)


def test_plugin_command_appears_in_help_and_runs(installed: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--help"]) == 0
    assert re.search(r"^\s+demo-hello\s+Say hello", capsys.readouterr().out, re.MULTILINE)
    assert run_main(["demo-hello", "ada"]) == 0
    assert capsys.readouterr().out == "hello ada from segal_demo\n"


def test_plugin_option_reaches_plugin_options(installed: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["run", "--help"]) == 0
    assert "--demo-tag TEXT" in capsys.readouterr().out
    out = tmp_path / "run"
    args = ["-p", "no:segal_boom", "run", *TINY_ARGS, "--rounds", "1", "--demo-tag", "blue", "--out", str(out)]
    assert run_main(args) == 0, capsys.readouterr().err
    expected = {"demo_tag": "blue", "demo_level": 1}
    demo = lambda options: {k: v for k, v in options.items() if k.startswith("demo_")}  # noqa: E731  (built-in plugins add theirs)
    assert demo(json.loads((out / "demo-options.json").read_text())) == expected
    assert demo(json.loads((out / "config.json").read_text())["plugin_options"]) == expected


def test_hook_that_raises_is_one_line_naming_plugin_and_hook(
    installed: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_main(["run", *TINY_ARGS, "--rounds", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == PluginError.exit_code != 0
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error")] == [
        "error: plugin 'segal_boom' failed in hook segal_run_start: RuntimeError: the boom plugin exploded"
    ]


def test_blocking_with_p_no_and_the_environment(
    installed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(["plugins"]) == 0
    listed = capsys.readouterr().out
    assert "segal_boom 1.0  registers nothing; hooks: segal_run_start" in listed
    assert "segal_demo 1.0  models: tiny; hooks: " in listed

    # -p no:NAME: the plugin is not loaded at all (not listed, its hooks never run)
    assert run_main(["-p", "no:segal_boom", "-p", "no:segal_demo", "plugins"]) == 0
    listed = capsys.readouterr().out
    assert "segal_boom" not in listed and "segal_demo" not in listed
    assert run_main(["-p", "no:segal_demo", "--help"]) == 0
    assert "demo-hello" not in capsys.readouterr().out

    # the environment variable does the same; blocking segal_boom lets the run finish
    monkeypatch.setenv(DISABLE_ENV, "segal_boom")
    assert run_main(["plugins"]) == 0
    listed = capsys.readouterr().out
    assert "segal_boom" not in listed and "segal_demo" in listed
    out = tmp_path / "run"
    assert run_main(["run", *TINY_ARGS, "--rounds", "1", "--out", str(out)]) == 0, capsys.readouterr().err
    assert len(history_lines(out)) == 1


# -- every hookspec documented and tested -----------------------------------------


def hookspec_functions() -> list[Any]:
    """Every hookspec, in source order."""
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("segal_")]
    return sorted(specs, key=lambda f: f.__code__.co_firstlineno)


def signature_text(func: Any) -> str:
    """``name(a: T, b: U) -> R`` as written in the source (annotations unquoted)."""
    sig = inspect.signature(func)
    params = ", ".join(
        f"{p.name}: {p.annotation}" if p.annotation is not p.empty else p.name for p in sig.parameters.values()
    )
    return f"{func.__name__}({params}) -> {sig.return_annotation}"


def plain(text: str) -> str:
    """Docstring or Markdown text reduced for comparison: roles and code marks
    dropped, whitespace collapsed."""
    text = re.sub(r":(?:func|class|data|meth|mod|attr):`~?([^`]+)`", r"\1", text)
    text = text.replace("``", "`").replace("`", "")
    return " ".join(text.split())


def summary(func: Any) -> str:
    """The docstring's first paragraph."""
    return inspect.cleandoc(func.__doc__ or "").split("\n\n", 1)[0]


def doc_sections() -> dict[str, str]:
    """docs/plugins.md's hook reference: ``### `segal_x` `` heading -> its text."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^### `(segal_\w+)`\s*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1].split("\n## ", 1)[0] for i in range(1, len(parts), 2)}


def test_every_hookspec_is_documented() -> None:
    specs = hookspec_functions()
    assert len(specs) >= 16
    sections = doc_sections()
    assert set(sections) == {f.__name__ for f in specs}, "docs/plugins.md's hook reference is out of date"
    for func in specs:
        section = sections[func.__name__]
        assert signature_text(func) in section, f"{func.__name__}: signature missing or different in docs/plugins.md"
        assert plain(summary(func)) in plain(section), f"{func.__name__}: summary differs from its docstring"
        assert plain(doc_body(func)) in plain(section), f"{func.__name__}: text differs from its docstring"
        for name in inspect.signature(func).parameters:
            assert re.search(rf"`{name}`", section), f"{func.__name__}: parameter {name} not described"
        spec_opts = getattr(func, "segal_spec", {})
        if spec_opts.get("firstresult"):
            assert "first non-None result" in section, f"{func.__name__}: firstresult not said"


def test_every_hookspec_has_a_test() -> None:
    own = inspect.getsource(test_every_hookspec_has_a_test) + inspect.getsource(test_every_hookspec_is_documented)
    sources = []
    for path in sorted(TESTS.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        sources.append(text.replace(own, "") if path == Path(__file__).resolve() else text)
    corpus = "\n".join(sources)
    untested = [f.__name__ for f in hookspec_functions() if not re.search(rf"\b{f.__name__}\b", corpus)]
    assert untested == [], f"hookspecs no test under tests/ names: {untested}"


def doc_body(func: Any) -> str:
    """The whole docstring as Markdown: roles to code, ``:param x:`` to list items."""
    body = inspect.cleandoc(func.__doc__ or "")
    body = re.sub(r":(?:func|class|data|meth|attr):`~?([^`]+)`", r"`\1`", body).replace("``", "`")
    body = re.sub(r"^:param (\w+):", r"- `\1`:", body, flags=re.MULTILINE)
    return re.sub(r"^:returns:", "- returns:", body, flags=re.MULTILINE)


def render_reference() -> str:
    """The hook reference section as docs/plugins.md holds it (used to write it)."""
    blocks = []
    for func in hookspec_functions():
        opts = getattr(func, "segal_spec", {})
        marker = "@hookspec(firstresult=True)" if opts.get("firstresult") else "@hookspec"
        blocks.append(f"### `{func.__name__}`\n\n```python\n{marker}\ndef {signature_text(func)}\n```\n\n{doc_body(func)}\n")
    return "\n".join(blocks)




def test_a_string_selection_is_refused(tmp_path: Path) -> None:
    class Stringy:
        @hookimpl
        def segal_select(self, ids: Sequence[str], k: int) -> str:
            return ids[0]

    with pytest.raises(SegalError, match=r"^plugin 'stringy' returned a str from segal_select, not a list of ids$"):
        run_cycle(tiny_config(tmp_path / "run", rounds=2), plugins=with_plugins(("stringy", Stringy())))


if __name__ == "__main__":  # python tests/test_hooks.py: print the reference for docs/plugins.md
    print(textwrap.dedent(render_reference()))
