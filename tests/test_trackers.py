"""segal_trackers: --tracker tensorboard writes event files TensorBoard reads back with
the expected tags; --tracker mlflow logs params, metrics and the report (read back with
mlflow's client, and against a fake module that records the calls); a missing package
or a bad option is one line."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from segal_core import SegalError, hookimpl, load_plugins
from segal_core.cli import run_main
from segal_core.config import RunConfig
from segal_core.cycle import resume_run, run_cycle
from segal_core.plugins import PluginError
from segal_core.testing import TinyModel

from cycle_helpers import TINY_ARGS

from segal_trackers.base import STATE_FILE
from segal_trackers.mlflow_tracker import flat_params
from segal_trackers.options import settings_from


class TinyModels:
    @hookimpl
    def segal_register_models(self) -> list[type]:
        return [TinyModel]


def config(out: Path, trackers: list[str], pairs: list[str] | None = None, **changes: Any) -> RunConfig:
    values: dict[str, Any] = {
        "dataset": "synthetic", "dataset_options": {"n_train": 12, "n_val": 2, "n_test": 2, "size": 32},
        "model": "tiny", "model_options": {"epochs": 2}, "device": "cpu", "seed_ratio": 0.25, "query_size": 3,
        "rounds": 3, "strategy": "entropy", "progress": False, "out": str(out),
        "plugin_options": {"tracker": trackers, "tracker_opt": pairs or []},
    }
    values.update(changes)
    return RunConfig(**values)


def run(cfg: RunConfig, *extra: tuple[str, object]) -> list[dict[str, Any]]:
    return run_cycle(cfg, plugins=load_plugins(extra=[("tiny_models", TinyModels()), *extra]))


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# -- TensorBoard ---------------------------------------------------------------------------


def test_tensorboard_event_files_hold_the_expected_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    history = run(config(out, ["tensorboard"]))
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    classes = list(history[0]["per_class_iou"])
    expected = {"train/loss", "train/lr", "round/test_miou", "round/val_miou", "round/labeled_fraction",
                "round/labeled", "seconds/train", *(f"iou/{c}" for c in classes)}
    assert expected <= set(tags["scalars"])
    assert tags["images"] == ["queried"]
    miou = events.Scalars("round/test_miou")
    assert [e.step for e in miou] == [0, 1, 2]
    assert [e.value for e in miou] == pytest.approx([r["test_miou"] for r in history])
    fraction = events.Scalars("round/labeled_fraction")
    assert [e.value for e in fraction] == pytest.approx([r["labeled_fraction"] for r in history])
    iou = events.Scalars(f"iou/{classes[0]}")
    assert [e.value for e in iou] == pytest.approx([r["per_class_iou"][classes[0]] or 0.0 for r in history])
    loss = events.Scalars("train/loss")
    epochs = sum(r["train"]["epochs"] for r in history)
    assert len(loss) == epochs and [e.step for e in loss] == list(range(1, epochs + 1))  # one axis over rounds
    assert [e.step for e in events.Images("queried")] == [0, 1]  # the rounds that queried


def test_tensorboard_logdir_option(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    run(config(tmp_path / "run", ["tensorboard"], [f"logdir={tmp_path / 'tb'}"], rounds=1))
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert not (tmp_path / "run" / "tensorboard").exists()


# -- MLflow, the real one --------------------------------------------------------------------


class FailOnce:
    """Stops the run after round 1 is committed (as a crash would)."""

    @hookimpl
    def segal_round_end(self, record: dict[str, Any]) -> None:
        if record["round"] == 1:
            raise RuntimeError("boom")


def test_mlflow_local_store_read_back_and_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "run"
    with pytest.raises(PluginError, match="boom"):
        run(config(out, ["mlflow"]), ("fail_once", FailOnce()))
    first = json.loads((out / STATE_FILE).read_text())["mlflow"]
    assert first["rounds_logged"] == 1  # round 1 is committed, but the run stopped before it was logged
    history = resume_run(out, plugins=load_plugins(extra=[("tiny_models", TinyModels())]))
    saved = json.loads((out / STATE_FILE).read_text())["mlflow"]
    assert saved["run_id"] == first["run_id"] and saved["rounds_logged"] == 3
    assert saved["tracking_uri"] == (out / "mlruns").resolve().as_uri()

    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it to read a file store
    client = MlflowClient(saved["tracking_uri"])
    mlrun = client.get_run(saved["run_id"])
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == "run"
    assert mlrun.data.params["strategy"] == "entropy" and mlrun.data.params["model_options.epochs"] == "2"
    assert mlrun.data.tags["segal.strategy"] == "entropy"
    miou = client.get_metric_history(saved["run_id"], "round/test_miou")
    assert [m.step for m in miou] == [0, 1, 2]  # one MLflow run across the resume, round 1 caught up
    assert [m.value for m in miou] == pytest.approx([r["test_miou"] for r in history])
    assert client.get_metric_history(saved["run_id"], "train/loss")
    report = {a.path for a in client.list_artifacts(saved["run_id"], "report")}
    assert "report/report.html" in report
    queried = {a.path for a in client.list_artifacts(saved["run_id"], "queried")}
    assert queried == {"queried/queried-round-000.png", "queried/queried-round-001.png"}


# -- MLflow against a fake module (what the plugin asks of MLflow, checked anywhere) -----------


class FakeClient:
    calls: list[tuple[str, Any]] = []

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.calls.append(("client", tracking_uri))

    def get_experiment_by_name(self, name: str) -> None:
        self.calls.append(("get_experiment_by_name", name))

    def create_experiment(self, name: str) -> str:
        self.calls.append(("create_experiment", name))
        return "7"

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> Any:
        self.calls.append(("create_run", (experiment_id, run_name)))
        return types.SimpleNamespace(info=types.SimpleNamespace(run_id="fake-run"))

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = ()) -> None:
        self.calls.append(("log_batch", (run_id, [(m.key, m.step) for m in metrics], [p.key for p in params])))

    def log_artifact(self, run_id: str, path: str, artifact_path: str) -> None:
        self.calls.append(("log_artifact", (run_id, Path(path).name, artifact_path)))

    def log_artifacts(self, run_id: str, path: str, artifact_path: str) -> None:
        self.calls.append(("log_artifacts", (run_id, sorted(p.name for p in Path(path).iterdir()), artifact_path)))

    def set_terminated(self, run_id: str, status: str) -> None:
        self.calls.append(("set_terminated", (run_id, status)))

    def update_run(self, run_id: str, status: str) -> None:
        self.calls.append(("update_run", (run_id, status)))


@pytest.fixture
def fake_mlflow(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(FakeClient, "calls", calls)
    root = types.ModuleType("mlflow")
    root.__path__ = []  # a package, so that importlib finds its submodules in sys.modules
    tracking = types.ModuleType("mlflow.tracking")
    tracking.MlflowClient = FakeClient  # type: ignore[attr-defined]
    entities = types.ModuleType("mlflow.entities")
    entities.Metric = lambda key, value, timestamp, step: types.SimpleNamespace(key=key, value=value, step=step)  # type: ignore[attr-defined]
    entities.Param = lambda key, value: types.SimpleNamespace(key=key, value=value)  # type: ignore[attr-defined]
    for module in (root, tracking, entities):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: types.SimpleNamespace() if name == "mlflow" else real(name, *a))
    return calls


def test_mlflow_calls_with_a_tracking_uri(tmp_path: Path, fake_mlflow: list[tuple[str, Any]]) -> None:
    out = tmp_path / "run"
    history = run(config(out, ["mlflow"], ["uri=http://tracking.example:5000", "experiment=al", "run_name=r1"]))
    kinds = [kind for kind, _ in fake_mlflow]
    assert {arg for kind, arg in fake_mlflow if kind == "client"} == {"http://tracking.example:5000"}
    assert ("create_experiment", "al") in fake_mlflow and ("create_run", ("7", "r1")) in fake_mlflow
    params = [arg[2] for kind, arg in fake_mlflow if kind == "log_batch" and arg[2]]
    assert "strategy" in params[0] and "model_options.epochs" in params[0] and "out" not in params[0]
    round_steps = sorted({step for kind, arg in fake_mlflow if kind == "log_batch"
                          for key, step in arg[1] if key == "round/test_miou"})
    assert round_steps == [r["round"] for r in history]
    assert ("log_artifacts", ("fake-run", ["report.csv", "report.html", "report.md", "report.png"], "report")) \
        in fake_mlflow
    assert kinds[-1] == "set_terminated" and fake_mlflow[-1][1] == ("fake-run", "FINISHED")
    assert json.loads((out / STATE_FILE).read_text())["mlflow"] == {
        "tracking_uri": "http://tracking.example:5000", "experiment_id": "7", "run_id": "fake-run", "rounds_logged": 3}


def test_mlflow_tracking_uri_from_the_environment(tmp_path: Path, fake_mlflow: list[tuple[str, Any]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env.example:5000")
    run(config(tmp_path / "run", ["mlflow"], rounds=1))
    assert {arg for kind, arg in fake_mlflow if kind == "client"} == {"http://env.example:5000"}


# -- mistakes: one line, before anything is written ------------------------------------------


@pytest.mark.parametrize(("tracker", "extra"), [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_package_names_the_extra(tracker: str, extra: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == extra else real(name, *a))
    out = tmp_path / "run"
    assert run_main(["run", *TINY_ARGS, "--tracker", tracker, "--out", str(out)]) == 2
    line = one_error(capsys)
    assert line.startswith(f"error: --tracker {tracker}:") and f"pip install 'segal[{extra}]'" in line
    assert not out.exists()
    with pytest.raises(SegalError, match=rf"segal\[{extra}\]"):  # the Python API says the same
        run(config(out, [tracker]))


@pytest.mark.parametrize(("args", "says"), [
    (["--tracker", "wandb"], "--tracker wandb: unknown tracker; built in: tensorboard, mlflow"),
    (["--tracker", "tensorboard", "--tracker-opt", "colour=red"], "unknown key 'colour'"),
    (["--tracker", "tensorboard", "--tracker-opt", "uri=http://x"], "a setting of --tracker mlflow"),
    (["--tracker", "tensorboard", "--tracker-opt", "logdir"], "expected KEY=VALUE"),
])
def test_bad_tracker_options_are_one_line(args: list[str], says: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert run_main(["run", *TINY_ARGS, "--rounds", "1", *args, "--out", str(out)]) == 2
    assert says in one_error(capsys)


def test_settings_and_params() -> None:
    settings = settings_from({"tracker": ["MLflow", "tensorboard", "mlflow"], "tracker_opt": ["run-name=x"]})
    assert settings.trackers == ("mlflow", "tensorboard") and settings.get("run_name") == "x"
    params = flat_params({"strategy": "entropy", "model_options": {"lr": 0.1}, "out": "/x", "queried": [1, 2],
                          "name with ünicode": "y" * 600})
    assert params["strategy"] == "entropy" and params["model_options.lr"] == "0.1" and "out" not in params
    assert params["queried"] == "[1, 2]" and len(params["name with _nicode"]) == 500


def test_cli_options_in_any_order(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    args = ["--tracker-opt", f"logdir={tmp_path / 'tb'}", "--tracker", "TensorBoard"]
    assert run_main(["run", *TINY_ARGS, "--rounds", "1", *args, "--out", str(out)]) == 0
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    saved = json.loads((out / "config.json").read_text())["plugin_options"]
    assert saved["tracker"] == ["TensorBoard"] and saved["tracker_opt"] == [f"logdir={tmp_path / 'tb'}"]


def test_the_tracker_example_of_the_docs_works(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    block = text.split("<!-- tracker-example -->\n```python\n", 1)[1].split("```", 1)[0]
    module = types.ModuleType("segal_jsonlog")
    exec(compile(block, "docs/plugins.md", "exec"), module.__dict__)  # noqa: S102
    log = tmp_path / "log.jsonl"
    cfg = config(tmp_path / "run", [], rounds=2)
    cfg = RunConfig(**{**cfg.to_json(), "plugin_options": {"jsonlog": str(log)}})
    history = run(cfg, ("segal_jsonlog", module))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["test_miou"] for line in lines if "test_miou" in line] == [r["test_miou"] for r in history]
    assert sum("loss" in line for line in lines) == sum(r["train"]["epochs"] for r in history)
    assert lines[-1] == {"finished": 2}
