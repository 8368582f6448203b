"""``--tracker mlflow``: the run's settings as parameters, per-epoch and per-round
metrics, the queried thumbnails and, at the end, the HTML report as artifacts.

Where: ``--tracker-opt uri=...``, else ``$MLFLOW_TRACKING_URI``, else a local store
in ``DIR/mlruns`` (MLflow's file store; MLflow 3 asks for
``MLFLOW_ALLOW_FILE_STORE=true`` to use one, which this tracker sets around its own
calls only). The MLflow run's id is kept in ``DIR/trackers.json``, so a resumed
segal run goes on logging to the same MLflow run. Only ``MlflowClient`` is used (no
active-run state in the process).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segal_core import SegalError

from .base import STATE_FILE, Tracker, queried_grid, round_scalars, safe_key

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["MlflowTracker", "flat_params"]

ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"
#: MLflow's limit on a parameter's value (older servers: 500 characters).
PARAM_LENGTH = 500


def flat_params(config: dict[str, Any]) -> dict[str, str]:
    """``config.json`` as MLflow parameters: nested maps flattened with dots
    (``model_options.encoder``), lists as JSON, ``out`` and ``progress`` left out."""
    out: dict[str, str] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                add(f"{prefix}.{key}" if prefix else str(key), inner)
        elif prefix not in ("out", "progress", "format"):
            text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
            out[safe_key(prefix)] = text[:PARAM_LENGTH]

    add("", config)
    return out


def _is_local(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri and not uri.startswith(("databricks", "sqlite:", "postgres"))


class MlflowTracker(Tracker):
    name = "mlflow"

    # -- where -------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        return (self.settings.get("uri") or os.environ.get("MLFLOW_TRACKING_URI")
                or (Path(self.run.out).resolve() / "mlruns").as_uri())

    @contextlib.contextmanager
    def _allowed(self) -> Iterator[None]:
        """MLflow 3 refuses a file store unless ``MLFLOW_ALLOW_FILE_STORE`` is true: set
        it for this tracker's calls only, and only where the user has not."""
        if not _is_local(self.uri) or ALLOW_FILE_STORE in os.environ:
            yield
            return
        os.environ[ALLOW_FILE_STORE] = "true"
        try:
            yield
        finally:
            os.environ.pop(ALLOW_FILE_STORE, None)

    def _client(self) -> MlflowClient:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise SegalError(f"--tracker mlflow: {exc}; install it with: pip install 'segal[mlflow]'") from None
        return MlflowClient(tracking_uri=self.uri)

    def _run_id(self) -> str:
        state = self.state
        if state is None or not state.get("run_id"):
            raise SegalError(f"--tracker mlflow: {Path(self.run.out) / STATE_FILE} names no MLflow run for "
                             f"{self.uri}; resume the run to create one")
        return str(state["run_id"])

    def same_target(self, state: dict[str, Any]) -> bool:
        return state.get("tracking_uri") == self.uri

    # -- the hooks ---------------------------------------------------------------------

    def begin(self) -> dict[str, Any]:
        from mlflow.entities import Param

        with self._allowed():
            client = self._client()
            name = self.settings.get("experiment") or "segal"
            experiment = client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
            created = client.create_run(
                experiment_id,
                run_name=self.settings.get("run_name") or Path(self.run.out).name,
                tags={"segal.run_dir": str(Path(self.run.out).resolve()), "segal.strategy": self.run.config.strategy},
            )
            run_id = created.info.run_id
            params = [Param(k, v) for k, v in flat_params(self.run.config.to_json()).items()]
            for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
                client.log_batch(run_id, params=params[start : start + 100])
        return {"tracking_uri": self.uri, "experiment_id": experiment_id, "run_id": run_id}

    def reopen(self, state: dict[str, Any]) -> None:
        with self._allowed():
            self._client().update_run(str(state["run_id"]), status="RUNNING")

    def log_epochs(self, values: list[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key=tag, value=value, timestamp=now, step=step) for tag, value, step in values]
        with self._allowed():
            client = self._client()
            for start in range(0, len(metrics), 1000):
                client.log_batch(self._run_id(), metrics=metrics[start : start + 1000])

    def log_round(self, record: dict[str, Any]) -> None:
        round = int(record["round"])  # noqa: A001
        self.log_epochs([(tag, value, round) for tag, value in round_scalars(record)])
        grid = queried_grid(self.run.out, round) if record.get("queried") else None
        if grid is not None:
            from PIL import Image

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"queried-round-{round:03d}.png"
                Image.fromarray(grid).save(path)
                with self._allowed():
                    self._client().log_artifact(self._run_id(), str(path), artifact_path="queried")

    def finish(self, history: list[dict[str, Any]]) -> None:
        from segal_core.report import write_report

        with tempfile.TemporaryDirectory() as tmp:
            write_report([Path(self.run.out)], Path(tmp))
            with self._allowed():
                client = self._client()
                client.log_artifacts(self._run_id(), tmp, artifact_path="report")
                client.set_terminated(self._run_id(), status="FINISHED")
