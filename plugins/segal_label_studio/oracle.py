"""``--oracle label-studio``: annotators label the queries in a Label Studio server."""

from __future__ import annotations

import io
import json
import math
import os
import re
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from segal_core import Annotation, Collected, Handoff, SegalError, WaitingOracle

from .client import LabelStudio, LabelStudioError, NotFound
from .labelconfig import ConfigView, label_config, read_config
from .masks import LabelError, annotation_mask, latest_annotation, prediction_results

__all__ = ["MODEL_VERSION", "RECORD", "LabelStudioOracle"]

#: The record of a round's tasks, in the round's query folder.
RECORD = "label-studio.json"
#: The predictions' model version, the same every round: Label Studio shows as
#: pre-annotations only the predictions of the project's model version (set from the
#: first import), so a version per round would hide every round's but the first.
MODEL_VERSION = "segal"
#: Images uploaded (and tasks imported) per request.
BATCH = 16
_TITLE_MIN, _TITLE_MAX = 3, 50


#: Outside a region query's area the uploaded frame is dimmed to this brightness, so
#: annotators see what to label (the whole frame stays visible for context).
DIM = 0.4


def _uint8(image: torch.Tensor) -> torch.Tensor:
    """A ``[3, H, W]`` uint8 or 0..1 float image as uint8."""
    img = image.detach().cpu()
    if img.is_floating_point():
        img = (img.clamp(0, 1) * 255).round()
    return img.to(torch.uint8)


def _shown(image: torch.Tensor, area: torch.Tensor | None) -> torch.Tensor:
    """The frame as annotators get it: as it is, or for a region query dimmed to
    :data:`DIM` outside the area."""
    img = _uint8(image)
    if area is None:
        return img
    dim = (img.to(torch.float32) * DIM).round().to(torch.uint8)
    return torch.where(area.to("cpu", torch.bool).unsqueeze(0), img, dim)


def _png(image: torch.Tensor) -> bytes:
    """A ``[3, H, W]`` uint8 image as PNG bytes."""
    from PIL import Image

    array = image.permute(1, 2, 0).contiguous().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _file_name(rank: int, sample_id: str) -> str:
    return f"{rank:04d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', sample_id)[-80:]}.png"


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SegalError(f"{path}: cannot be read ({exc}); it names the round's Label Studio project and "
                         "tasks: restore it from a backup") from None
    if not isinstance(data, dict):
        raise SegalError(f"{path}: not a record of Label Studio tasks; restore it from a backup")
    return data


def _write_record(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class LabelStudioOracle(WaitingOracle):
    """Hands each round's queries to Label Studio as tasks (the image, with the model's
    prediction drawn as an editable pre-annotation) and reads the finished annotations
    back on ``--resume``.

    :param url: the server (``http://localhost:8080``); default ``$LABEL_STUDIO_URL``.
    :param token: a personal access token or a legacy token (Account & Settings);
        default ``$LABEL_STUDIO_API_KEY``.
    :param project: an existing project's id, or a title (reused when a project has
        it, created otherwise); default: one project per run, created on first use
        and titled after the run folder.
    :param prelabel: import the model's prediction as a pre-annotation (not for the
        seed set, when nothing is trained yet).
    :param timeout: seconds per request to the server.
    :param accept_partial: go on with the labels that arrived (see WaitingOracle).
    """

    name: ClassVar[str] = "label-studio"
    aliases: ClassVar[tuple[str, ...]] = ("label_studio",)
    description: ClassVar[str] = "annotators in a Label Studio server (url=, token=, project=)"
    #: The token is never written to config.json: give it again on --resume (or set
    #: LABEL_STUDIO_API_KEY); a server that moved or a slow one can change too.
    unsaved_options: ClassVar[frozenset[str]] = frozenset({"token", "accept_partial"})
    resume_options: ClassVar[frozenset[str]] = frozenset({"accept_partial", "url", "token", "timeout"})

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        project: str | int | None = None,
        prelabel: bool = True,
        timeout: float = 60.0,
        accept_partial: bool = False,
    ) -> None:
        super().__init__(accept_partial=accept_partial)
        url = (url or os.environ.get("LABEL_STUDIO_URL") or "").strip()
        token = (token or os.environ.get("LABEL_STUDIO_API_KEY") or "").strip()
        if not url:
            raise SegalError("--oracle label-studio needs the server's address: --oracle-opt url=http://HOST:8080 "
                             "(or set LABEL_STUDIO_URL)")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SegalError(f"--oracle-opt url={url}: expected http://HOST:PORT or https://HOST (Label Studio's "
                             "address as the browser shows it)")
        if not token:
            raise SegalError("--oracle label-studio needs an access token: --oracle-opt token=... (or set "
                             "LABEL_STUDIO_API_KEY); copy it from Label Studio's Account & Settings")
        if timeout <= 0:
            raise SegalError(f"--oracle-opt timeout={timeout}: must be a positive number of seconds")
        self.url = url.rstrip("/")
        self.token = token
        self.project = str(project).strip() if project is not None and str(project).strip() else None
        self.prelabel = bool(prelabel)
        self.timeout = float(timeout)

    # -- helpers -------------------------------------------------------------------------

    def _client(self) -> LabelStudio:
        return LabelStudio(self.url, self.token, timeout=self.timeout)

    @staticmethod
    def _run_key(run_dir: Path) -> str | None:
        """The run's key, as an earlier round recorded it (tasks carry it)."""
        for path in sorted(run_dir.glob(f"queries/*/{RECORD}")):
            record = _read_record(path)
            if record and isinstance(record.get("run"), str):
                return record["run"]
        return None

    @staticmethod
    def _earlier_project(run_dir: Path, here: Path) -> int | None:
        """The project an earlier round of this run used."""
        found = None
        for path in sorted(run_dir.glob(f"queries/*/{RECORD}")):
            if path.parent == here:
                continue
            record = _read_record(path)
            if record and isinstance(record.get("project"), int):
                found = record["project"]
        return found

    def _checked(self, project: dict[str, Any], handoff: Handoff, option: str) -> ConfigView:
        where = f"{option}: Label Studio project {project.get('id')} ({project.get('title')!r}) at {self.url}"
        try:
            view = read_config(str(project.get("label_config") or ""))
        except ValueError as exc:
            raise SegalError(f"{where}: {exc}; give SegAL a project of its own (leave project= out)") from None
        wrong = view.mismatch(handoff.classes)
        if wrong:
            raise SegalError(f"{where}: its labels do not match the dataset's classes ({wrong}); make its labels "
                             "the classes, or leave project= out for a project of SegAL's own")
        return view

    def _project(self, client: LabelStudio, handoff: Handoff, key: str, record: dict[str, Any]
                 ) -> tuple[dict[str, Any], ConfigView]:
        """Find or create the round's project and check its labels."""
        run_dir = handoff.folder.parent.parent
        config = label_config(handoff.classes, handoff.colors)
        marker = f"segal-run {key}"
        if self.project is not None:
            option = f"--oracle-opt project={self.project}"
            if self.project.isdigit():
                try:
                    found = client.project(int(self.project))
                except NotFound:
                    raise SegalError(f"{option}: no project {self.project} on {self.url} that this token can see; "
                                     "give an existing project's id or a title (created when new)") from None
                return found, self._checked(found, handoff, option)
            if not _TITLE_MIN <= len(self.project) <= _TITLE_MAX:
                raise SegalError(f"{option}: a project title has {_TITLE_MIN} to {_TITLE_MAX} characters")
            same = sorted((p for p in client.projects() if p.get("title") == self.project), key=lambda p: p["id"])
            if same:
                return same[0], self._checked(same[0], handoff, option)
            made = client.create_project(self.project, f"SegAL active-learning queries ({marker})", config)
            return made, self._checked(made, handoff, option)
        option = "--oracle-opt project="
        earlier = record.get("project") if isinstance(record.get("project"), int) else None
        earlier = earlier or self._earlier_project(run_dir, handoff.folder)
        if earlier is not None:
            try:
                found = client.project(earlier)
            except NotFound:
                found = None  # deleted since: the run goes on in a new one
            if found is not None:
                return found, self._checked(found, handoff, option)
        mine = sorted((p for p in client.projects() if marker in str(p.get("description") or "")),
                      key=lambda p: p["id"])
        if mine:
            return mine[0], self._checked(mine[0], handoff, option)
        title = f"SegAL {run_dir.name}"[:_TITLE_MAX].ljust(_TITLE_MIN, "_")
        made = client.create_project(title, f"SegAL active-learning queries of {run_dir.name} ({marker})", config)
        return made, self._checked(made, handoff, option)

    def _tasks_of(self, tasks: list[dict[str, Any]], key: str, round: int) -> dict[str, int]:  # noqa: A002
        """sample id -> task id of this run's tasks for ``round`` (the first of each)."""
        out: dict[str, int] = {}
        for task in sorted(tasks, key=lambda t: int(t.get("id", 0))):
            data = task.get("data") or {}
            if data.get("segal_run") == key and data.get("segal_round") == round and isinstance(
                    data.get("segal_id"), str):
                out.setdefault(data["segal_id"], int(task["id"]))
        return out

    def _task_url(self, project: int, task: int) -> str:
        return f"{self.url}/projects/{project}/data?task={task}"

    # -- the contract --------------------------------------------------------------------

    def submit(self, handoff: Handoff) -> str:
        """Create the round's tasks (images uploaded into the project, the model's
        prediction as a pre-annotation) unless they exist already (a submit repeated
        after a crash makes no duplicates); records them in ``label-studio.json``."""
        path = handoff.folder / RECORD
        record = _read_record(path) or {}
        key = record.get("run") if isinstance(record.get("run"), str) else None
        key = key or self._run_key(handoff.folder.parent.parent) or uuid.uuid4().hex[:12]
        if record.get("run") != key:  # kept before a project is made: a repeated submit finds it by key
            record["run"] = key
            _write_record(path, record)
        client = self._client()
        project, view = self._project(client, handoff, key, record)
        pid = int(project["id"])
        record.update(url=self.url, project=pid, title=project.get("title"), run=key, round=handoff.round)
        _write_record(path, record)  # before any task exists: a repeated submit finds them by key

        have = self._tasks_of(client.export(pid, all_tasks=True), key, handoff.round)
        todo = [(rank, q) for rank, q in enumerate(handoff.queries) if q.sample_id not in have]
        pool = handoff.pool
        for start in range(0, len(todo), BATCH):
            batch = todo[start:start + BATCH]
            images = [_shown(pool.image(pool.index_of(q.sample_id)), q.area) for _, q in batch]
            urls = client.upload(pid, [(_file_name(rank, q.sample_id), _png(img))
                                       for (rank, q), img in zip(batch, images)])
            tasks = []
            for (rank, query), url in zip(batch, urls):
                task: dict[str, Any] = {"data": {
                    view.image_key: url, "segal_id": query.sample_id, "segal_round": handoff.round,
                    "segal_run": key, "segal_rank": rank,
                }}
                if self.prelabel and handoff.predict is not None and view.brush is not None:
                    guess = handoff.predict(query.sample_id).detach().cpu().numpy()
                    if query.area is not None:  # pre-label the area only: what to look at
                        guess = np.where(query.area.cpu().numpy(), guess, -1)
                    task["predictions"] = [{
                        "model_version": MODEL_VERSION,
                        "score": float(query.score) if query.score is not None and math.isfinite(query.score)
                        else 0.0,
                        "result": prediction_results(guess, handoff.classes, view.brush, view.image_name),
                    }]
                tasks.append(task)
            client.import_tasks(pid, tasks)

        have = self._tasks_of(client.export(pid, all_tasks=True), key, handoff.round)
        lost = [q.sample_id for q in handoff.queries if q.sample_id not in have]
        if lost:
            raise LabelStudioError(f"Label Studio at {self.url}: project {pid} does not list the tasks just "
                                   f"imported for {', '.join(lost[:3])}; run again to retry")
        record["tasks"] = {q.sample_id: have[q.sample_id] for q in handoff.queries}
        _write_record(path, record)
        new = f", {len(todo)} new" if len(todo) != len(handoff.queries) else ""
        return (f"{len(handoff.queries)} tasks{new} in Label Studio project {project.get('title')!r}: "
                f"{self.url}/projects/{pid}/data; correct or draw the labels (brush or polygon) and submit each")

    def collect(self, handoff: Handoff) -> Collected:
        """The latest submitted (not skipped) annotation of each of the round's tasks
        as a class-id mask; annotations that cannot be used, and annotated tasks SegAL
        did not create for this round, are rejected lines. Reads only."""
        path = handoff.folder / RECORD
        record = _read_record(path)
        if not record or not isinstance(record.get("tasks"), dict) or not isinstance(record.get("project"), int):
            raise SegalError(f"{path}: missing or incomplete, so this round's Label Studio tasks are unknown; "
                             "restore the file (it names the project and the task of each query)")
        pid, key = record["project"], record.get("run")
        by_task = {int(tid): sid for sid, tid in record["tasks"].items()}
        queried = {q.sample_id for q in handoff.queries}
        client = self._client()
        try:
            tasks = client.export(pid, all_tasks=True)
        except NotFound:
            raise SegalError(f"{path}: Label Studio project {pid} is gone from {self.url} (deleted, or this token "
                             "cannot see it); restore it or point url=/token= at the server that holds it") from None
        out = Collected()
        present = {int(t.get("id", 0)) for t in tasks}
        for sid, tid in sorted(record["tasks"].items()):
            if int(tid) not in present and sid in queried:
                out.rejected.append(f"{self._task_url(pid, int(tid))} ({sid}): the task was deleted in Label Studio, "
                                    "so its label cannot arrive; resume with --oracle-opt accept_partial=true to "
                                    "go on without it")
        pool = handoff.pool
        for task in sorted(tasks, key=lambda t: int(t.get("id", 0))):
            tid = int(task.get("id", 0))
            data = task.get("data") or {}
            source = self._task_url(pid, tid)
            annotation = latest_annotation(task.get("annotations") or [])
            sid = by_task.get(tid)
            if sid is None:
                if annotation is None:
                    continue
                if "segal_id" not in data:
                    out.rejected.append(f"{source}: a task SegAL did not create (its data has no segal_id); its "
                                        "label is not used: label the tasks SegAL imported")
                elif data.get("segal_run") == key and data.get("segal_round") == handoff.round:
                    out.rejected.append(f"{source}: {data.get('segal_id')!r} is not a task SegAL made for this "
                                        "round's queries (a copy?); its label is not used: label the original")
                continue  # another round's or another run's task
            if sid not in queried or annotation is None:
                continue
            height, width = pool.image_size(pool.index_of(sid))
            try:
                mask = annotation_mask(annotation.get("result") or [], handoff.classes, height, width,
                                       handoff.ignore_index)
            except LabelError as exc:
                out.rejected.append(f"{source} ({sid}): {exc}")
                continue
            labelled = int((mask != handoff.ignore_index).sum())
            if labelled == 0:
                out.rejected.append(f"{source} ({sid}): the annotation labels no pixel; draw the classes, or "
                                    "skip the task to leave it unlabelled")
                continue
            out.annotations.append(Annotation(sample_id=sid, labeled_pixels=labelled,
                                              mask=torch.from_numpy(np.ascontiguousarray(mask)), source=source))
        return out
