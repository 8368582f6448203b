"""Tests of the ``cityscapes`` dataset plugin on a tiny tree in the official layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segal_cityscapes import LABEL_TO_TRAIN, TRAIN_CLASSES, Cityscapes
from segal_core import DataConfig, SegalError, load_plugins

H, W = 8, 16
#: a few label ids with their train ids: road, car, sky, unlabeled, parking, bicycle, license plate
PICK = np.array([7, 26, 23, 0, 9, 33, 255, 11])
WANT = np.array([0, 13, 10, 255, 255, 18, 255, 2])


def frame(root: Path, split: str, city: str, n: int, *, labels: np.ndarray | None = None, colour: bool = True) -> str:
    stem = f"{city}_{n:06d}_000019"
    image_dir, mask_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(image_dir / f"{stem}_leftImg8bit.png")
    labels = np.tile(PICK, (H, W // len(PICK))) if labels is None else labels
    Image.fromarray(labels.astype(np.uint8)).save(mask_dir / f"{stem}_gtFine_labelIds.png")
    # the other files of the official release, which must not be mistaken for masks
    Image.fromarray(np.zeros((H, W), np.uint16)).save(mask_dir / f"{stem}_gtFine_instanceIds.png")
    (mask_dir / f"{stem}_gtFine_polygons.json").write_text("{}")
    if colour:
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(mask_dir / f"{stem}_gtFine_color.png")
    return stem


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "cityscapes"
    frame(root, "train", "aachen", 0)
    frame(root, "train", "aachen", 1)
    frame(root, "train", "bremen", 2)
    frame(root, "val", "frankfurt", 3)
    frame(root, "test", "berlin", 4, labels=np.zeros((H, W)))
    return root


def load(root: Path, num_classes: int | None = None, **options: str):
    return Cityscapes.load(DataConfig(path=root, num_classes=num_classes, options=options))


def test_label_table() -> None:
    assert len(TRAIN_CLASSES) == 19 and TRAIN_CLASSES[0] == "road" and TRAIN_CLASSES[-1] == "bicycle"
    assert sorted(v for v in LABEL_TO_TRAIN.values() if v != 255) == list(range(19))
    assert set(LABEL_TO_TRAIN) == set(range(34)) | {255}
    assert load_plugins().registry.dataset("Cityscapes") is Cityscapes


def test_layout_ids_and_train_id_mapping(tree: Path) -> None:
    splits = load(tree)
    assert splits.train.ids == ["aachen_000000_000019", "aachen_000001_000019", "bremen_000002_000019"]
    assert splits.val.ids == ["frankfurt_000003_000019"]
    assert splits.test is None and "test masks are withheld" in splits.notices[0]
    assert splits.classes == list(TRAIN_CLASSES) and splits.ignore_index == 255
    image, mask = splits.train[0]
    assert image.dtype == torch.uint8 and image.shape == (3, H, W)
    assert mask.dtype == torch.int64 and mask[0].tolist() == np.tile(WANT, 2).tolist()
    assert load(tree, use_test="true").test.ids == ["berlin_000004_000019"]


def test_reduced_resolution(tree: Path) -> None:
    half = load(tree, scale="0.5")
    image, mask = half.train[1]
    assert image.shape == (3, H // 2, W // 2) and mask.shape == (H // 2, W // 2)
    assert set(mask.unique().tolist()) <= set(WANT.tolist())  # nearest: no invented ids
    fixed = load(tree, size="4x4")
    assert fixed.val[0][0].shape == (3, 4, 4) and fixed.val[0][1].shape == (4, 4)


def test_train_id_masks(tree: Path) -> None:
    for path in (tree / "gtFine").rglob("*_labelIds.png"):
        values = np.vectorize(LABEL_TO_TRAIN.get)(np.array(Image.open(path)))
        Image.fromarray(values.astype(np.uint8)).save(str(path).replace("_labelIds", "_labelTrainIds"))
    assert load(tree, masks="trainIds").train.mask(0)[0].tolist() == np.tile(WANT, 2).tolist()
    with pytest.raises(SegalError, match=r"--dataset-opt masks=ids: expected one of labelIds, trainIds"):
        load(tree, masks="ids")


def test_ids_outside_the_table(tree: Path) -> None:
    bad = np.tile(PICK, (H, 2))
    bad[3, 3] = 40
    stem = frame(tree, "val", "lindau", 9, labels=bad)
    message = rf"{stem}_gtFine_labelIds\.png: mask value 40 is not a class id .*valid values: 0\.\.33, 255\)"
    with pytest.raises(SegalError, match=message):
        load(tree)  # a tiny tree: verify=auto decodes every mask at load
    lazy = load(tree, verify="header")
    with pytest.raises(SegalError, match=rf"{stem}_gtFine_labelIds\.png: mask value 40 "):
        lazy.val.mask(lazy.val.index_of(stem))


def test_colour_masks_only(tmp_path: Path) -> None:
    root = tmp_path / "cs"
    frame(root, "train", "ulm", 0)
    frame(root, "val", "ulm", 1)
    for path in (root / "gtFine" / "train").rglob("*_labelIds.png"):
        path.unlink()
    message = r"gtFine/train: only colour masks \(\*_gtFine_color\.png\), no \*_gtFine_labelIds\.png"
    with pytest.raises(SegalError, match=message):
        load(root)


def test_colour_saved_as_label_ids(tree: Path) -> None:
    path = next((tree / "gtFine" / "val").rglob("*_labelIds.png"))
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(SegalError, match=rf"{path.name}: a colour \(RGB\) mask"):
        load(tree)


def test_missing_and_wrong_layout(tree: Path) -> None:
    with pytest.raises(SegalError, match=rf"not a Cityscapes folder.*did you mean --data-path {tree}\?"):
        load(tree / "leftImg8bit")
    path = next((tree / "gtFine" / "train" / "bremen").glob("*_labelIds.png"))
    path.unlink()
    message = r"bremen_000002_000019_leftImg8bit\.png: image has no mask bremen_000002_000019_gtFine_labelIds\.png"
    with pytest.raises(SegalError, match=message):
        load(tree)
    shutil.rmtree(tree / "leftImg8bit" / "train" / "bremen")
    shutil.rmtree(tree / "gtFine" / "val")
    with pytest.raises(SegalError, match=r"gtFine/val: missing"):
        load(tree)
    with pytest.raises(SegalError, match=r"--num-classes 20: Cityscapes is evaluated on 19 classes"):
        load(tree, num_classes=20)


def test_a_whole_run_reports_every_class(tree: Path, tmp_path: Path) -> None:
    import json

    from segal_core.cli import run_main

    out = tmp_path / "run"
    status = run_main(["run", "--dataset", "cityscapes", "--data-path", str(tree), "--encoder", "tu-test_resnet",
                       "--epochs", "1", "--min-steps", "0", "--batch-size", "2", "--seed-ratio", "0.3",
                       "--query-size", "1", "--rounds", "2", "--device", "cpu", "--no-progress", "--out", str(out)])
    assert status == 0
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(records) == 2 and len(records[0]["queried"]) == 1
    assert all(len(r["per_class_iou"]) == 19 for r in records)
