"""--oracle label-studio against a real Label Studio server (tests/lsserver.py starts
it): the test plays the annotator through the API, brush and polygon annotations on
the imported tasks, and checks the masks pixel for pixel."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.error
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from segal_core import Handoff, Query, SegalError
from segal_core.testing import RandomImages
from segal_label_studio import LabelStudioOracle
from segal_label_studio.labelconfig import label_config
from segal_label_studio.rle import decode_alpha

from lsserver import Server, server_or_skip

IGNORE = 255


@pytest.fixture(scope="session")
def ls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from server_or_skip(tmp_path_factory.mktemp("label-studio"))


@pytest.fixture
def pool() -> RandomImages:
    return RandomImages(6, sizes=[(20, 30), (24, 16)], num_classes=3)


def handoff(folder: Path, pool: RandomImages, ids: list[str], round: int = 0,  # noqa: A002
            predict: Any = None) -> Handoff:
    folder.mkdir(parents=True, exist_ok=True)
    return Handoff(round=round, queries=[Query(sid, 1.0 - i / 10) for i, sid in enumerate(ids)], pool=pool,
                   folder=folder, classes=list(pool.classes), colors=[(200, 0, 0), (0, 200, 0), (0, 0, 200)],
                   ignore_index=IGNORE, predict=predict)


def sdk_brush(ls: Server, label: str, mask: np.ndarray) -> dict[str, Any]:
    """A brush result encoded by label-studio-sdk's own encoder (in the server's
    environment), as the browser would send it: not by SegAL's encoder."""
    code = ("import json,sys,numpy as np\nfrom label_studio_sdk.converter.brush import mask2rle\n"
            "m=np.array(json.load(sys.stdin),dtype=np.uint8)*255\nprint(json.dumps([int(b) for b in mask2rle(m)]))")
    out = subprocess.run([str(ls.sdk_python()), "-c", code], input=json.dumps(mask.astype(int).tolist()),
                         capture_output=True, text=True, check=True)
    h, w = mask.shape
    return {"from_name": "brush", "to_name": "image", "type": "brushlabels", "original_width": w,
            "original_height": h, "image_rotation": 0,
            "value": {"format": "rle", "rle": json.loads(out.stdout), "brushlabels": [label]}}


def rect_polygon(label: str, x0: int, y0: int, x1: int, y1: int, h: int, w: int) -> dict[str, Any]:
    """A polygon on whole pixel corners, in percent (covers columns x0..x1-1, rows y0..y1-1)."""
    pts = [[100 * x / w, 100 * y / h] for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
    return {"from_name": "polygon", "to_name": "image", "type": "polygonlabels", "original_width": w,
            "original_height": h, "image_rotation": 0,
            "value": {"points": pts, "closed": True, "polygonlabels": [label]}}


def record(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "label-studio.json").read_text())


def test_submit_imports_tasks_once_and_collect_reads_masks_exactly(ls: Server, pool: RandomImages,
                                                                   tmp_path: Path) -> None:
    ids = [pool.ids[0], pool.ids[1], pool.ids[2]]
    predict = lambda sid: pool.mask(pool.index_of(sid))  # noqa: E731
    h0 = handoff(tmp_path / "run" / "queries" / "round-000", pool, ids, predict=predict)
    oracle = LabelStudioOracle(url=ls.url, token=ls.token)
    line = oracle.submit(h0)
    rec = record(h0.folder)
    pid = rec["project"]
    assert line.startswith("3 tasks in Label Studio project 'SegAL run'") and f"/projects/{pid}/data" in line
    assert sorted(rec["tasks"]) == sorted(ids)

    # a submit repeated (a crash before the core committed) makes no second set of tasks
    assert oracle.submit(h0).startswith("3 tasks, 0 new in Label Studio")
    tasks = {t["id"]: t for t in ls.tasks(pid)}
    assert len(tasks) == 3 and record(h0.folder)["tasks"] == rec["tasks"]

    # each task: the uploaded image, SegAL's fields, the prediction as a brush pre-annotation
    for sid, tid in rec["tasks"].items():
        task = tasks[tid]
        assert task["data"]["segal_id"] == sid and task["data"]["segal_round"] == 0
        assert task["data"]["image"].startswith("/data/upload/")
        (pred,) = ls.api("GET", f"/api/predictions/?task={tid}")
        h, w = pool.image_size(pool.index_of(sid))
        drawn = np.full((h, w), IGNORE)
        for result in pred["result"]:
            drawn[decode_alpha(result["value"]["rle"], h, w) >= 128] = pool.classes.index(
                result["value"]["brushlabels"][0])
        assert np.array_equal(drawn, pool.mask(pool.index_of(sid)).numpy())
    png = ls.get_bytes(tasks[rec["tasks"][ids[0]]]["data"]["image"])
    served = torch.from_numpy(np.array(Image.open(BytesIO(png)))).permute(2, 0, 1)
    assert torch.equal(served, pool.image(0))

    # the annotator: ids[0] brush + overlapping polygon (two annotations, the later counts);
    # ids[1] a polygon only; ids[2] skipped (counts as missing)
    a, b, c = (rec["tasks"][sid] for sid in ids)
    h, w = 20, 30
    rng = np.random.default_rng(3)
    blob = rng.random((h, w)) < 0.4
    ls.annotate(a, [rect_polygon("class2", 0, 0, 30, 20, h, w)])  # older, replaced below
    ls.annotate(a, [sdk_brush(ls, "class0", blob), rect_polygon("class1", 5, 2, 17, 11, h, w)])
    hb, wb = 24, 16
    ls.annotate(b, [rect_polygon("class2", 3, 4, 12, 20, hb, wb)])
    ls.annotate(c, [], cancelled=True)

    got = oracle.collect(h0)
    assert got.rejected == []
    by_id = {ann.sample_id: ann for ann in got.annotations}
    assert sorted(by_id) == [ids[0], ids[1]]
    expected_a = np.full((h, w), IGNORE)
    expected_a[blob] = 0
    expected_a[2:11, 5:17] = 1  # the polygon comes later in the result list: it wins
    assert np.array_equal(by_id[ids[0]].mask.numpy(), expected_a)
    assert by_id[ids[0]].labeled_pixels == int((expected_a != IGNORE).sum())
    assert by_id[ids[0]].mask.dtype == torch.int64
    expected_b = np.full((hb, wb), IGNORE)
    expected_b[4:20, 3:12] = 2
    assert np.array_equal(by_id[ids[1]].mask.numpy(), expected_b)
    assert f"/projects/{pid}/data?task={a}" in (by_id[ids[0]].source or "")
    # collect reads only: a second call gives the same
    again = oracle.collect(h0)
    assert [(x.sample_id, x.labeled_pixels) for x in again.annotations] == [
        (x.sample_id, x.labeled_pixels) for x in got.annotations]

    # labels that arrive on tasks SegAL did not make for this round are rejected lines
    ls.api("POST", f"/api/projects/{pid}/import", [{"data": {"image": tasks[a]["data"]["image"]}}])
    copy = {**tasks[b]["data"]}
    ls.api("POST", f"/api/projects/{pid}/import", [{"data": copy}])
    new = [t for t in ls.tasks(pid) if t["id"] not in tasks]
    assert len(new) == 2
    for task in new:
        ls.annotate(task["id"], [rect_polygon("class0", 0, 0, 4, 4, h, w)])
    got = oracle.collect(h0)
    assert sorted(x.sample_id for x in got.annotations) == [ids[0], ids[1]]
    assert len(got.rejected) == 2
    assert any("a task SegAL did not create" in line for line in got.rejected)
    assert any(f"{ids[1]!r} is not a task SegAL made for this round" in line for line in got.rejected)

    # the next round goes to the same project, its predictions under the same model
    # version (the only one Label Studio shows as pre-annotations)
    h1 = handoff(tmp_path / "run" / "queries" / "round-001", pool, [pool.ids[3], pool.ids[5]], round=1,
                 predict=predict)
    area = torch.zeros(24, 16, dtype=torch.bool)
    area[2:10, 3:12] = True
    h1.queries[1].area, h1.queries[1].regions = area, [7]
    oracle.submit(h1)
    rec1 = record(h1.folder)
    assert rec1["project"] == pid and rec1["run"] == rec["run"]
    (task,) = [t for t in ls.tasks(pid) if t["id"] == rec1["tasks"][pool.ids[3]]]
    assert task["data"]["segal_round"] == 1
    (pred,) = ls.api("GET", f"/api/predictions/?task={task['id']}")
    assert pred["model_version"] == ls.api("GET", f"/api/projects/{pid}/")["model_version"] == "segal"

    # a region query: the frame dimmed outside the area, the pre-annotation inside it only
    (task,) = [t for t in ls.tasks(pid) if t["id"] == rec1["tasks"][pool.ids[5]]]
    served = np.array(Image.open(BytesIO(ls.get_bytes(task["data"]["image"])))).transpose(2, 0, 1)
    frame = pool.image(5).numpy()
    inside = area.numpy()
    assert np.array_equal(served[:, inside], frame[:, inside])
    assert np.array_equal(served[:, ~inside], np.round(frame[:, ~inside] * 0.4).astype(np.uint8))
    (pred,) = ls.api("GET", f"/api/predictions/?task={task['id']}")
    drawn = np.full((24, 16), IGNORE)
    for result in pred["result"]:
        drawn[decode_alpha(result["value"]["rle"], 24, 16) >= 128] = pool.classes.index(
            result["value"]["brushlabels"][0])
    assert np.array_equal(drawn, np.where(inside, pool.mask(5).numpy(), IGNORE))

    # a task deleted in Label Studio: its label cannot arrive, said in one line
    ls.api("DELETE", f"/api/tasks/{rec1['tasks'][pool.ids[3]]}/")
    got = oracle.collect(h1)
    assert got.annotations == [] and len(got.rejected) == 2  # and the task SegAL did not create, still there
    assert f"({pool.ids[3]}): the task was deleted in Label Studio" in got.rejected[0]


def test_personal_access_token_works_like_the_legacy_one(ls: Server, pool: RandomImages, tmp_path: Path) -> None:
    pat = ls.personal_token()
    oracle = LabelStudioOracle(url=ls.url, token=pat)
    h = handoff(tmp_path / "pat" / "queries" / "round-seed", pool, [pool.ids[4]], round=-1)
    assert oracle.submit(h).startswith("1 tasks in Label Studio project 'SegAL pat'")
    (tid,) = record(h.folder)["tasks"].values()
    assert ls.api("GET", f"/api/predictions/?task={tid}") == []  # the seed set: no model, no pre-annotation
    ls.annotate(tid, [rect_polygon("class1", 0, 0, 30, 20, 20, 30)])
    (ann,) = oracle.collect(h).annotations
    assert ann.labeled_pixels == 600 and bool((ann.mask == 1).all())


def test_bad_token_is_one_line_and_nothing_is_made(ls: Server, pool: RandomImages, tmp_path: Path) -> None:
    h = handoff(tmp_path / "bad" / "queries" / "round-000", pool, [pool.ids[0]])
    for token in ("not-the-token", "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2ln"):
        with pytest.raises(SegalError, match=f"token=: Label Studio at {ls.url} refused the token") as err:
            LabelStudioOracle(url=ls.url, token=token).submit(h)
        assert "\n" not in str(err.value)
    assert set(record(h.folder)) == {"run"}  # the run's key only: no project, no task


def test_projects_whose_labels_do_not_match_are_refused(ls: Server, pool: RandomImages, tmp_path: Path) -> None:
    colors = [(0, 0, 0)] * 4
    other = ls.api("POST", "/api/projects/", {"title": "not segal", "label_config": label_config(
        ["class0", "class1", "tree", "class9"], colors)})
    h = handoff(tmp_path / "mismatch" / "queries" / "round-000", pool, [pool.ids[0]])
    for project in (str(other["id"]), "not segal"):
        with pytest.raises(SegalError, match=(
                f"project={project}: Label Studio project {other['id']} \\('not segal'\\) at .*: its labels do not "
                "match the dataset's classes \\(brush: missing class2; extra tree, class9 \\| polygon: ")):
            LabelStudioOracle(url=ls.url, token=ls.token, project=project).submit(h)
    with pytest.raises(SegalError, match="project=987654: no project 987654 on .* that this token can see"):
        LabelStudioOracle(url=ls.url, token=ls.token, project="987654").submit(h)
    assert ls.tasks(other["id"]) == []
    # a title nobody has: created with SegAL's config; prelabel=false: no pre-annotation
    oracle = LabelStudioOracle(url=ls.url, token=ls.token, project="a new one", prelabel=False)
    h.predict = lambda sid: pool.mask(pool.index_of(sid))
    assert oracle.submit(h).startswith("1 tasks in Label Studio project 'a new one'")
    (tid,) = record(h.folder)["tasks"].values()
    assert ls.api("GET", f"/api/predictions/?task={tid}") == []


def test_a_collect_whose_project_is_gone_says_so(ls: Server, pool: RandomImages, tmp_path: Path) -> None:
    h = handoff(tmp_path / "gone" / "queries" / "round-000", pool, [pool.ids[5]])
    oracle = LabelStudioOracle(url=ls.url, token=ls.token)
    oracle.submit(h)
    ls.api("DELETE", f"/api/projects/{record(h.folder)['project']}/")
    with pytest.raises(SegalError, match="label-studio.json: Label Studio project .* is gone from"):
        oracle.collect(h)
    with pytest.raises(urllib.error.HTTPError):
        ls.api("GET", f"/api/projects/{record(h.folder)['project']}/")


# -- segal run end to end ----------------------------------------------------------------


def _ledger_masks(out: Path) -> dict[str, np.ndarray]:
    ledger = json.loads((out / "state.json").read_text())["ledger"]
    return {sid: np.array(Image.open(out / e["mask_file"])) for sid, e in ledger.items() if e.get("mask_file")}


def _draw(ls: Server, out: Path, round_folder: str, classes: list[str], seed: int) -> dict[str, np.ndarray]:
    """Play the annotator on every task of a round: a brush blob of one class and a
    rectangle polygon of another on top; returns the masks that must come back."""
    rec = record(out / "queries" / round_folder)
    drawn = {}
    rng = np.random.default_rng(seed)
    for k, (sid, tid) in enumerate(sorted(rec["tasks"].items())):
        blob = rng.random((32, 32)) < 0.5
        expected = np.full((32, 32), IGNORE)
        expected[blob] = k % len(classes)
        expected[4:20, 8:30] = (k + 1) % len(classes)
        ls.annotate(tid, [sdk_brush(ls, classes[k % len(classes)], blob),
                          rect_polygon(classes[(k + 1) % len(classes)], 8, 4, 30, 20, 32, 32)])
        drawn[sid] = expected
    return drawn


def test_segal_run_waits_for_label_studio_and_goes_on(ls: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from cycle_helpers import TINY_ARGS, history

    from segal_core.cli import run_main
    from segal_synthetic import CLASSES

    classes = list(CLASSES)
    out = tmp_path / "e2e"
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls.token)
    args = ["run", *TINY_ARGS, "--oracle", "label-studio", "--rounds", "3", "--out", str(out)]

    # the server is down when round 0 queries: one line, exit 2, the run resumable
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{port}")
    assert run_main(args) == 2
    err = capsys.readouterr().err
    assert f"url=http://127.0.0.1:{port}: no Label Studio answers there" in err and "Traceback" not in err
    monkeypatch.setenv("LABEL_STUDIO_URL", ls.url)
    assert run_main(["run", "--resume", str(out), "--no-progress"]) == 75
    err = capsys.readouterr().err
    assert "round 0 waits for labels: 4 queries" in err and "4 tasks in Label Studio project 'SegAL e2e'" in err
    assert f"segal run --resume {out}" in err
    assert ls.token not in (out / "config.json").read_text()  # from the environment: not written down

    # a wrong token when the labels are collected: one line, the run still waits
    state = (out / "state.json").read_bytes()
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-the-token")
    assert run_main(["run", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"token=: Label Studio at {ls.url} refused the token" in err and "Traceback" not in err
    assert (out / "state.json").read_bytes() == state
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls.token)

    assert run_main(["status", str(out)]) == 75
    assert "0 of 4 in, 0 rejected, 4 missing" in capsys.readouterr().out
    drawn = _draw(ls, out, "round-000", classes, seed=0)
    assert run_main(["status", str(out)]) == 0
    assert "4 of 4 in" in capsys.readouterr().out
    assert run_main(["run", "--resume", str(out), "--no-progress"]) == 75
    assert "round 1 waits for labels: 4 queries" in capsys.readouterr().err
    kept = _ledger_masks(out)
    for sid, mask in drawn.items():
        assert np.array_equal(kept[sid], mask), sid

    # round 1: an empty annotation, a skipped task and a label on a task SegAL did not make
    rec = record(out / "queries" / "round-001")
    tids = [tid for _, tid in sorted(rec["tasks"].items())]
    ls.annotate(tids[0], [])
    ls.annotate(tids[1], [], cancelled=True)
    ls.api("POST", f"/api/projects/{rec['project']}/import", [{"data": {"image": "/data/upload/none.png"}}])
    (foreign,) = [t for t in ls.tasks(rec["project"]) if "segal_id" not in t["data"]]
    ls.annotate(foreign["id"], [rect_polygon(classes[0], 0, 0, 4, 4, 32, 32)])
    assert run_main(["run", "--resume", str(out), "--no-progress"]) == 75
    err = capsys.readouterr().err
    rejected = [line for line in err.splitlines() if line.startswith("rejected: ")]
    assert len(rejected) == 2 and "Traceback" not in err
    assert any("the annotation labels no pixel" in line for line in rejected)
    assert any("a task SegAL did not create" in line for line in rejected)
    assert "0 of 4 in, 2 rejected, 4 missing" in err

    drawn.update(_draw(ls, out, "round-001", classes, seed=1))  # later annotations replace the empty one
    assert run_main(["run", "--resume", str(out), "--no-progress"]) == 0
    kept = _ledger_masks(out)
    for sid, mask in drawn.items():
        assert np.array_equal(kept[sid], mask), sid
    assert [r["labeled"] for r in history(out)] == [4, 8, 12]
