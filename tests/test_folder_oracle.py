"""``--oracle folder`` (issue 14): the frames to label go to a folder, a person saves
PNG masks beside them, ``collect`` checks each and never touches them.

Unit tests build a :class:`Handoff` by hand over a tiny in-memory pool; the end-to-end
tests at the bottom run ``segal run --oracle folder`` on camvid-mini frames laid out as
a ``folder`` dataset.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segal_core import Collected, Handoff, Query, SegalError, load_plugins
from segal_core.testing import RandomImages
from segal_oracle import FolderOracle
from segal_oracle.folder import file_names

from cycle_helpers import snapshot

H, W = 6, 8
CLASSES = ["sky", "road", "car"]
COLORS = [(128, 128, 128), (128, 64, 128), (64, 0, 128)]


class Pool(RandomImages):
    """Random frames whose ids hold characters a file name cannot."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(len(ids), sizes=((H, W),), num_classes=len(CLASSES))
        self.ids = list(ids)
        self.classes = list(CLASSES)


IDS = ["seq1/0001", "plain_id", "odd name?.png"]


def handoff(tmp_path: Path, *, regions: bool = False, predict: bool = True, ids: list[str] = IDS) -> Handoff:
    pool = Pool(ids)
    folder = tmp_path / "run" / "queries" / "round-001"
    folder.mkdir(parents=True, exist_ok=True)
    queries = []
    for i, sid in enumerate(ids):
        area = None
        if regions:
            area = torch.zeros(H, W, dtype=torch.bool)
            area[: 2 + i, : W // 2] = True
        queries.append(Query(sid, score=1.0 - i / 10, area=area, regions=[i, i + 7] if regions else None))
    guess = (lambda sid: torch.full((H, W), pool.index_of(sid) % len(CLASSES), dtype=torch.int64)) if predict else None
    return Handoff(1, queries, pool, folder, CLASSES, COLORS, 255, guess)


def png(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img.copy()


def tasks(folder: Path) -> list[dict[str, str]]:
    with open(folder / "tasks.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_mask(ho: Handoff, sid: str, values: np.ndarray, *, fmt: str = "PNG", suffix: str = ".png") -> Path:
    name = tasks(ho.folder)[ho.ids.index(sid)]["file"].removesuffix(".png")
    path = ho.folder / "masks" / f"{name}{suffix}"
    Image.fromarray(values).save(path, format=fmt)
    return path


def labels(seed: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    values = np.random.default_rng(seed).integers(0, len(CLASSES), shape).astype(np.uint8)
    values[0, 0] = 255  # a pixel left unlabelled
    return values


def test_registered_with_its_options() -> None:
    assert load_plugins().registry.oracle("folder") is FolderOracle
    oracle = FolderOracle(accept_partial=True, prelabels=False)
    assert oracle.waits and oracle.accept_partial and not oracle.prelabels


def test_file_names_are_safe_unique_and_stable() -> None:
    names = file_names(["a/b", "a_b", "plain-1_x", "x.png", "..hidden", "Case", "case", "x" * 200])
    assert names["plain-1_x"] == "plain-1_x" and names["x.png"].startswith("x_png-")
    assert names["a_b"] == "a_b" and names["a/b"].startswith("a_b-") and len(names["a/b"]) == len("a_b-") + 8
    assert not names["..hidden"].startswith(".") and "/" not in "".join(names.values())
    assert names["Case"].lower() != names["case"].lower()  # one file on a case-blind disk otherwise
    assert len(names["x" * 200]) <= 90
    assert len(set(names.values())) == 8 and not any("." in name for name in names.values())
    assert file_names(["a/b", "a_b"]) == {"a/b": names["a/b"], "a_b": "a_b"}


def test_submit_writes_frames_prelabels_tasks_and_readme(tmp_path: Path) -> None:
    ho = handoff(tmp_path)
    line = FolderOracle().submit(ho)
    assert line == f"3 frames to label in {ho.folder}: save class-id masks as masks/<name>.png, see README.txt there"
    rows = tasks(ho.folder)
    assert [r["id"] for r in rows] == IDS and {r["status"] for r in rows} == {"waiting"}
    assert rows[1]["file"] == "plain_id.png" and "/" not in rows[0]["file"] and rows[0]["score"] == "1"
    for i, row in enumerate(rows):
        frame = np.array(png(ho.folder / "images" / row["file"]))
        assert np.array_equal(frame, ho.pool.image(i).permute(1, 2, 0).numpy())
        pre = png(ho.folder / "prelabels" / row["file"])
        assert pre.mode == "P" and np.all(np.array(pre) == i % 3)  # class ids, shown in colour
        assert tuple(pre.getpalette()[3 * (i % 3) : 3 * (i % 3) + 3]) == COLORS[i % 3]
        preview = png(ho.folder / "prelabels" / row["file"].replace(".png", "-preview.png"))
        assert preview.mode == "RGB" and preview.size == (W, H)
    assert list((ho.folder / "masks").iterdir()) == [] and not (ho.folder / "regions").exists()
    readme = (ho.folder / "README.txt").read_text()
    assert f"segal run --resume {tmp_path / 'run'}" in readme and "masks/<name>.png" in readme
    assert "  1  road  colour 128 64 128" in readme and "255  (not labelled)" in readme


def test_submit_without_a_model_or_with_prelabels_off(tmp_path: Path) -> None:
    ho = handoff(tmp_path / "a", predict=False)
    FolderOracle().submit(ho)
    assert not (ho.folder / "prelabels").exists()
    ho = handoff(tmp_path / "b")
    FolderOracle(prelabels=False).submit(ho)
    assert not (ho.folder / "prelabels").exists() and len(list((ho.folder / "images").iterdir())) == 3


def test_region_queries_write_the_area(tmp_path: Path) -> None:
    ho = handoff(tmp_path, regions=True)
    assert "3 frames to label (only the areas shown in regions/) in" in FolderOracle().submit(ho)
    rows = tasks(ho.folder)
    assert rows[2]["regions"] == "2 9" and rows[2]["pixels"] == str(4 * (W // 2))
    for q, row in zip(ho.queries, rows):
        area = np.array(png(ho.folder / "regions" / row["file"]))
        assert np.array_equal(area == 255, q.area.numpy()) and set(np.unique(area)) <= {0, 255}
        assert (ho.folder / "regions" / row["file"].replace(".png", "-preview.png")).is_file()


def test_submit_never_overwrites_a_mask(tmp_path: Path) -> None:
    ho = handoff(tmp_path)
    oracle = FolderOracle()
    oracle.submit(ho)
    path = write_mask(ho, "plain_id", labels(1))
    before = path.read_bytes()
    oracle.submit(ho)  # a retried submission
    assert path.read_bytes() == before


def test_collect_accepts_good_masks_pixel_for_pixel(tmp_path: Path) -> None:
    ho = handoff(tmp_path)
    oracle = FolderOracle()
    oracle.submit(ho)
    assert oracle.collect(ho) == Collected()  # nothing arrived yet
    grey = labels(1)
    write_mask(ho, "seq1/0001", grey)
    palette = Image.frombytes("P", (W, H), labels(2).tobytes())  # palette indices are the ids
    palette.putpalette([c for rgb in COLORS for c in rgb] + [0] * (768 - 9))  # a short one renumbers 255
    palette.save(ho.folder / "masks" / f"{tasks(ho.folder)[2]['file']}")
    wide = labels(3).astype(np.uint16)  # 16-bit grey
    write_mask(ho, "plain_id", wide)
    found = oracle.collect(ho)
    assert found.rejected == []
    assert [a.sample_id for a in found.annotations] == IDS  # in query order
    for ann, expected in zip(found.annotations, (grey, wide, labels(2))):
        assert ann.mask.dtype == torch.int64 and torch.equal(ann.mask, torch.from_numpy(expected.astype(np.int64)))
        assert ann.labeled_pixels == int((expected != 255).sum()) == H * W - 1
        assert ann.source.startswith("queries/round-001/masks/")
    assert {r["status"] for r in tasks(ho.folder)} == {"labelled"}


def test_collect_rejects_each_bad_mask_with_one_line(tmp_path: Path) -> None:
    ho = handoff(tmp_path, ids=[*IDS, "e", "f", "g", "h", "j"])
    oracle = FolderOracle()
    oracle.submit(ho)
    write_mask(ho, "seq1/0001", labels(1, (H + 1, W)))  # another size
    out_of_range = labels(2)
    out_of_range[1, 1] = 7
    write_mask(ho, "plain_id", out_of_range)  # a class id that does not exist
    write_mask(ho, "odd name?.png", labels(3), fmt="JPEG", suffix=".jpg")  # lossy
    write_mask(ho, "e", np.stack([labels(4)] * 3, axis=-1))  # RGB
    write_mask(ho, "f", labels(5), fmt="JPEG")  # a JPEG named .png
    write_mask(ho, "g", np.full((H, W), 255, np.uint8))  # nothing labelled
    Image.fromarray(labels(6)).convert("LA").save(ho.folder / "masks" / "h.png")  # with transparency
    write_mask(ho, "j", labels(8))
    write_mask(ho, "j", labels(8), suffix=".PNG")  # two PNGs for one frame: the second is named, the first used
    Image.fromarray(labels(6)).save(ho.folder / "masks" / "stranger.png")  # never queried
    (ho.folder / "masks" / ".~lock.tmp").write_bytes(b"an editor's own file")  # hidden: skipped
    before = snapshot(ho.folder / "masks")
    found = oracle.collect(ho)
    assert [a.sample_id for a in found.annotations] == ["j"]
    lines = {line.split(":", 1)[0]: line for line in found.rejected}
    assert len(found.rejected) == 9 and all("\n" not in line for line in found.rejected)
    names = {r["id"]: r["file"] for r in tasks(ho.folder)}
    where = lambda sid, ext=".png": f"queries/round-001/masks/{names[sid].removesuffix('.png')}{ext}"
    assert "mask is 8x7 (WxH) but the frame" in lines[where("seq1/0001")] and "is 8x6" in lines[where("seq1/0001")]
    assert "holds value 7 in 1 pixel; class ids are 0..2 and 255 means not labelled" in lines[where("plain_id")]
    assert "a JPG, not a PNG" in lines[where("odd name?.png", ".jpg")]
    assert "save it as PNG" in lines[where("odd name?.png", ".jpg")]
    assert "a colour (RGB) image" in lines[where("e")]
    assert "a JPEG file named .png, not a PNG" in lines[where("f")]
    assert "holds no label" in lines[where("g")]
    assert "an image with transparency (LA)" in lines[where("h")]
    assert "a second mask for 'j' beside j.PNG; keep one" in lines[where("j")]
    assert "no frame 'stranger' was queried" in lines["queries/round-001/masks/stranger.png"]
    assert snapshot(ho.folder / "masks") == before  # never modified or removed
    assert {r["id"]: r["status"] for r in tasks(ho.folder)}["plain_id"] == "rejected"


def test_collect_is_repeatable_and_fixes_are_picked_up(tmp_path: Path) -> None:
    ho = handoff(tmp_path)
    oracle = FolderOracle()
    oracle.submit(ho)
    write_mask(ho, "plain_id", labels(1))
    bad = labels(2)
    bad[2, 2] = 3
    write_mask(ho, "seq1/0001", bad)
    first, second = oracle.collect(ho), oracle.collect(ho)
    assert len(first.rejected) == len(second.rejected) == 1
    assert [a.sample_id for a in first.annotations] == [a.sample_id for a in second.annotations] == ["plain_id"]
    assert torch.equal(first.annotations[0].mask, second.annotations[0].mask)
    write_mask(ho, "seq1/0001", labels(2))  # the annotator fixes it
    write_mask(ho, "plain_id", labels(1), fmt="JPEG", suffix=".jpg")  # a stray copy beside a good .png: not used
    (ho.folder / "masks" / "done").mkdir()  # an annotator's own folder: skipped
    third = FolderOracle().collect(ho)  # a fresh oracle (a resumed run) sees the same
    assert third.rejected == [] and [a.sample_id for a in third.annotations] == ["seq1/0001", "plain_id"]
    assert torch.equal(third.annotations[1].mask, first.annotations[0].mask)
    status = {r["id"]: r["status"] for r in tasks(ho.folder)}
    assert status == {"seq1/0001": "labelled", "plain_id": "labelled", "odd name?.png": "waiting"}


def test_collect_names_an_unreadable_file(tmp_path: Path) -> None:
    ho = handoff(tmp_path)
    oracle = FolderOracle()
    oracle.submit(ho)
    path = write_mask(ho, "plain_id", labels(1))
    path.write_bytes(path.read_bytes()[:40])  # saved half-way
    (found,) = oracle.collect(ho).rejected
    assert found.startswith("queries/round-001/masks/plain_id.png: cannot be read as an image")


def test_an_unwritable_folder_is_one_line(tmp_path: Path) -> None:
    ho = handoff(tmp_path)
    (ho.folder / "images").write_text("a file where the folder goes")
    with pytest.raises(SegalError, match=r"images: cannot write the frames to label"):
        FolderOracle().submit(ho)


# -- end to end: segal run --oracle folder on camvid-mini frames ---------------------

CAMVID_CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian",
                  "bicyclist"]
SIZE = (64, 48)  # (W, H): small frames keep the runs fast


def camvid_truth(camvid: Path, sample_id: str) -> np.ndarray:
    """The camvid-mini mask of a train frame at SIZE, void (11) as 255: what a careful
    annotator would draw."""
    with Image.open(camvid / "trainannot" / f"{sample_id}.png") as mask:
        values = np.array(mask.resize(SIZE, Image.Resampling.NEAREST))
    values[values == 11] = 255
    return values


def camvid_folder(camvid: Path, root: Path, labelled: int, n_train: int = 12) -> Path:
    """camvid-mini frames at SIZE as a ``folder`` dataset whose train split has masks
    for its first ``labelled`` frames only."""
    for split, n in (("train", n_train), ("val", 3), ("test", 3)):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i, frame in enumerate(sorted((camvid / split).glob("*.png"))[:n]):
            with Image.open(frame) as img:
                img.convert("RGB").resize(SIZE, Image.Resampling.BILINEAR).save(root / "images" / split / frame.name)
            if split != "train" or i < labelled:
                with Image.open(camvid / f"{split}annot" / frame.name) as mask:
                    values = np.array(mask.resize(SIZE, Image.Resampling.NEAREST))
                values[values == 11] = 255
                Image.fromarray(values).save(root / "masks" / split / frame.name)
    (root / "classes.txt").write_text("\n".join(CAMVID_CLASSES) + "\n")
    return root


def run_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--dataset", "folder", "--data-path", str(data), "--oracle", "folder", "--encoder",
            "tu-test_resnet", "--epochs", "1", "--min-steps", "0", "--batch-size", "4", "--query-size", "3",
            "--device", "cpu", "--no-progress", "--out", str(out), *extra]


def pending(out: Path) -> dict:
    import json

    return json.loads((out / "state.json").read_text())["pending"]


def annotate(out: Path, camvid: Path, ids: list[str] | None = None) -> dict[str, np.ndarray]:
    """Play the annotator on the pending round: the true mask with the top row left
    unlabelled (so it differs from anything the dataset holds), saved as masks/<name>.png."""
    folder = out / pending(out)["folder"]
    written = {}
    for row in tasks(folder):
        if ids is None or row["id"] in ids:
            values = camvid_truth(camvid, row["id"])
            values[0, :] = 255
            Image.fromarray(values).save(folder / "masks" / row["file"])
            written[row["id"]] = values
    return written


def assert_trained_on(out: Path, written: dict[str, np.ndarray]) -> None:
    """The labels the run keeps (labels/, named by state.json) are what was written."""
    import json

    ledger = json.loads((out / "state.json").read_text())["ledger"]
    for sid, values in written.items():
        entry = ledger[sid]
        assert entry["pixels"] == int((values != 255).sum())
        assert np.array_equal(np.array(png(out / entry["mask_file"])), values), sid


KILL_PLUGIN = '''
import os, pathlib, time
import segal_core.rundir as rundir

MARK = pathlib.Path(os.environ["SEGAL_TEST_MARK"])
_write_mask = rundir.RunDir.write_mask


def write_mask(self, *args, **kw):
    """Stop for good after the first collected label is written, before the commit."""
    name = _write_mask(self, *args, **kw)
    MARK.write_text(name)
    time.sleep(600)
    return name


rundir.RunDir.write_mask = write_mask
'''


def test_a_run_waits_rejects_bad_masks_and_goes_on(
    tmp_path: Path, camvid_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    from fakedist import make_distribution
    from pause_plugin import paused_process, stop

    from segal_core.cli import run_main

    data = camvid_folder(camvid_mini, tmp_path / "data", labelled=4)
    out = tmp_path / "run"
    assert run_main(run_args(data, out, "--rounds", "3")) == 75
    err = capsys.readouterr().err
    assert "4 with a mask and 8 without" in err and "round 0 waits for labels: 3 queries" in err
    assert "save class-id masks as masks/<name>.png" in err and f"segal run --resume {out}" in err
    folder = out / "queries" / "round-000"
    rows = tasks(folder)
    assert len(rows) == 3 and all((folder / "images" / r["file"]).is_file() for r in rows)
    assert all((folder / "prelabels" / r["file"]).is_file() for r in rows)  # the round-0 model's guess

    # the annotator's first try: another size, a class that does not exist, a JPEG
    first = [r["id"] for r in rows]
    small = camvid_truth(camvid_mini, first[0])[:40]
    Image.fromarray(small).save(folder / "masks" / rows[0]["file"])
    wrong = camvid_truth(camvid_mini, first[1])
    wrong[3, 3] = 42
    Image.fromarray(wrong).save(folder / "masks" / rows[1]["file"])
    jpeg = folder / "masks" / rows[2]["file"].replace(".png", ".jpg")
    Image.fromarray(camvid_truth(camvid_mini, first[2])).save(jpeg)
    before = snapshot(folder / "masks")
    assert run_main(["run", "--resume", str(out), "--no-progress"]) == 75
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("rejected: ")]
    assert {line.split(": ")[1] for line in lines} == {
        f"queries/round-000/masks/{rows[0]['file']}", f"queries/round-000/masks/{rows[1]['file']}",
        f"queries/round-000/masks/{rows[2]['file'].replace('.png', '.jpg')}",
    }
    assert "mask is 64x40 (WxH) but the frame" in err and "holds value 42 in 1 pixel;" in err
    assert "save it as PNG" in err and "0 of 3 in, 3 rejected, 3 missing" in err and "Traceback" not in err
    assert snapshot(folder / "masks") == before  # nothing the annotator wrote is touched

    # fixed: round 0's labels go in, round 1 trains and waits in turn
    written = annotate(out, camvid_mini)
    assert run_main(["run", "--resume", str(out), "--no-progress"]) == 75
    assert "round 1 waits for labels: 3 queries" in capsys.readouterr().err
    assert_trained_on(out, written)
    assert pending(out)["folder"] == "queries/round-001"
    written.update(annotate(out, camvid_mini))

    # kill -9 while the labels are entered (one written to labels/, nothing committed)
    state = (out / "state.json").read_bytes()
    plugin = make_distribution(tmp_path / "plugin", "segal-test-kill", {"segal_test_kill": KILL_PLUGIN},
                               {"segal_test_kill": "segal_test_kill"})
    sent = {k: v for k, v in snapshot(out / "queries").items() if not k.endswith("tasks.csv")}
    proc = paused_process(plugin, "", tmp_path / "mark", "run", "--resume", str(out), "--no-progress")
    proc.send_signal(signal.SIGKILL)
    stop(proc)
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "mark").read_text().startswith("labels/")  # killed with a label written, uncommitted
    assert (out / "state.json").read_bytes() == state  # still waiting for round 1
    after = snapshot(out / "queries")
    assert all(after[k] == v for k, v in sent.items())  # the frames and masks as they were

    # resumed again: nothing lost, the run finishes on exactly what was written
    assert run_main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert_trained_on(out, written)
    import json

    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["labeled"] for r in records] == [4, 7, 10]
    assert [r["labels"]["labelled"] for r in records[:2]] == [3, 3]


def test_a_pool_without_masks_asks_for_a_random_seed_set(
    tmp_path: Path, camvid_mini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segal_core.cli import run_main

    data = camvid_folder(camvid_mini, tmp_path / "data", labelled=0)
    out = tmp_path / "run"
    assert run_main(run_args(data, out, "--rounds", "2", "--seed-ratio", "0.25")) == 75
    err = capsys.readouterr().err
    assert "0 with a mask and 12 without" in err and "the seed set waits for labels: 3 queries" in err
    folder = out / "queries" / "round-seed"
    rows = tasks(folder)
    assert len(rows) == 3 and {r["score"] for r in rows} == {""}  # a random draw: no scores
    assert not (folder / "prelabels").exists()  # no model yet
    written = annotate(out, camvid_mini)
    assert run_main(["run", "--resume", str(out), "--no-progress"]) == 75  # round 0 waits in turn
    assert "round 0 waits for labels" in capsys.readouterr().err
    assert_trained_on(out, written)
