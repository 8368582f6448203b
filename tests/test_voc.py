"""Tests of the ``voc`` dataset plugin on a tiny tree in the VOC 2012 layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segal_core import DataConfig, SegalError, load_plugins
from segal_voc import VOC, VOC_CLASSES, voc_palette

IDS = {"train": ["2007_000032", "2007_000039", "2008_000002"], "val": ["2007_000033", "2009_000001"]}


def write(
    root: Path, sample_id: str, size: tuple[int, int] = (6, 10), values: np.ndarray | None = None
) -> np.ndarray:
    h, w = size
    rng = np.random.default_rng(int(sample_id.replace("_", "")))
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClass").mkdir(exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{sample_id}.jpg")
    if values is None:
        values = rng.integers(0, 21, (h, w))
        values[0, :] = 255  # the object border
    mask = Image.new("P", (w, h))
    mask.putdata(values.ravel().tolist())
    mask.putpalette(voc_palette())
    mask.save(root / "SegmentationClass" / f"{sample_id}.png")
    return values


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    for split, ids in IDS.items():
        for sample_id in ids:
            write(root, sample_id)
        (lists / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (lists / "trainval.txt").write_text("\n".join(IDS["train"] + IDS["val"]) + "\n")
    return root


def load(root: Path, num_classes: int | None = None, **options: str):
    return VOC.load(DataConfig(path=root, num_classes=num_classes, options=options))


def test_registered() -> None:
    registry = load_plugins().registry
    assert registry.dataset("voc") is VOC and registry.dataset("VOC2012") is VOC


def test_splits_classes_and_border(voc: Path) -> None:
    splits = load(voc)
    assert splits.train.ids == IDS["train"] and splits.val.ids == IDS["val"]
    assert splits.classes == list(VOC_CLASSES) and len(VOC_CLASSES) == 21
    assert splits.test is None and "the val split is used for testing" in splits.notices[0]
    image, mask = splits.train[1]
    with Image.open(voc / "SegmentationClass" / f"{IDS['train'][1]}.png") as stored_png:
        assert stored_png.mode == "P"
        stored = np.array(stored_png)
    assert image.dtype == torch.uint8 and image.shape == (3, 6, 10)
    assert mask.dtype == torch.int64 and np.array_equal(mask.numpy(), stored)
    assert (mask[0] == 255).all() and int(mask[1:].max()) <= 20


def test_test_split_when_masks_exist(voc: Path) -> None:
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "test.txt").write_text("2010_000001\n")
    Image.fromarray(np.zeros((6, 10, 3), np.uint8)).save(voc / "JPEGImages" / "2010_000001.jpg")
    splits = load(voc)
    assert splits.test is None and "has ids without masks" in splits.notices[0]
    write(voc, "2010_000001")
    assert load(voc).test.ids == ["2010_000001"]


def test_images_of_different_sizes_and_size_option(voc: Path) -> None:
    write(voc, IDS["train"][2], size=(9, 7))
    splits = load(voc)
    assert splits.train.image(2).shape == (3, 9, 7) and splits.train.image(0).shape == (3, 6, 10)
    fixed = load(voc, size="8x8")
    assert {tuple(fixed.train[i][0].shape) for i in range(3)} == {(3, 8, 8)}
    assert {tuple(fixed.train[i][1].shape) for i in range(3)} == {(8, 8)}


def test_missing_list_entries(voc: Path) -> None:
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "val.txt").write_text("2007_000033\n2011_999999\n")
    with pytest.raises(SegalError, match=r"val\.txt:2: 2011_999999 has no mask .*SegmentationClass/2011_999999\.png"):
        load(voc)
    masks = voc / "SegmentationClass"
    (masks / "2011_999999.png").write_bytes((masks / "2007_000033.png").read_bytes())
    with pytest.raises(SegalError, match=r"val\.txt:2: 2011_999999 has no image .*JPEGImages/2011_999999\.jpg"):
        load(voc)
    (lists / "train.txt").unlink()
    with pytest.raises(SegalError, match=r"train\.txt: missing; VOC needs"):
        load(voc)


def test_colour_masks_where_ids_are_expected(voc: Path) -> None:
    path = voc / "SegmentationClass" / f"{IDS['val'][0]}.png"
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(SegalError, match=rf"{path.name}: a colour \(RGB\) mask where single-channel class ids"):
        load(voc)


def test_ids_outside_the_classes(voc: Path) -> None:
    values = np.zeros((6, 10), np.int64)
    values[2, 2] = 21
    write(voc, IDS["train"][0], values=values)
    message = rf"{IDS['train'][0]}\.png: mask value 21 is not a class id .*0\.\.20; ignored: 255"
    with pytest.raises(SegalError, match=message):
        load(voc)


def test_wrong_layout_and_mistakes(voc: Path) -> None:
    with pytest.raises(SegalError, match=rf"not a VOC folder.*did you mean --data-path {voc}\?"):
        load(voc.parent.parent)
    with pytest.raises(SegalError, match=r"SegmentationClassAug/ missing"):
        load(voc, masks="SegmentationClassAug")
    with pytest.raises(SegalError, match=r"--num-classes 20: VOC has 21 classes"):
        load(voc, num_classes=20)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    with pytest.raises(SegalError, match=r"val\.txt: the val split is empty"):
        load(voc)
    write(voc, IDS["train"][1], size=(6, 10))
    Image.new("P", (11, 6)).save(voc / "SegmentationClass" / f"{IDS['train'][1]}.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text(IDS["val"][0])
    with pytest.raises(SegalError, match=rf"{IDS['train'][1]}\.png: mask is 11x6 \(WxH\) but its image"):
        load(voc)


def test_a_whole_run_reports_every_class(voc: Path, tmp_path: Path) -> None:
    import json

    from segal_core.cli import run_main

    out = tmp_path / "run"
    status = run_main(["run", "--dataset", "voc", "--data-path", str(voc), "--encoder", "tu-test_resnet",
                       "--epochs", "1", "--min-steps", "0", "--batch-size", "2", "--seed-ratio", "0.3",
                       "--query-size", "1", "--rounds", "2", "--device", "cpu", "--no-progress", "--out", str(out)])
    assert status == 0
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(records) == 2 and len(records[0]["queried"]) == 1
    assert all(len(r["per_class_iou"]) == 21 for r in records)


def test_list_files_in_other_encodings(voc: Path) -> None:
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("\n".join(IDS["train"]) + "\n", encoding="utf-8-sig")
    (lists / "val.txt").write_text("\r\n".join(IDS["val"]) + "\r\n", encoding="utf-16")
    splits = load(voc)
    assert splits.train.ids == IDS["train"] and splits.val.ids == IDS["val"]
    (lists / "val.txt").write_text("\n".join(IDS["val"]), encoding="utf-16-le")  # no BOM
    with pytest.raises(SegalError, match=r"val\.txt:1: holds NUL characters"):
        load(voc)
