"""Tests of the ``folder`` dataset plugin on small generated trees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segal_core import DataConfig, SegalError, load_plugins
from segal_folder import Folder, read_classes

H, W = 6, 8


def write_pair(
    image_dir: Path, mask_dir: Path, stem: str, values: np.ndarray | None = None, *,
    ext: str = ".png", mask_name: str | None = None, colour: dict[int, tuple[int, int, int]] | None = None,
) -> np.ndarray:  # fmt: skip
    """Write an image and its mask; returns the mask's class ids."""
    rng = np.random.default_rng(abs(hash(stem)) % 2**32)
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(image_dir / f"{stem}{ext}")
    values = rng.integers(0, 3, (H, W)) if values is None else values
    if colour is None:
        mask = Image.fromarray(values.astype(np.uint8))
    else:
        mask = Image.fromarray(np.array([[colour[int(v)] for v in row] for row in values], np.uint8))
    mask.save(mask_dir / (mask_name or f"{stem}.png"))
    return values


def flat(root: Path, n: int, classes: str = "background\ncat\ndog\n") -> Path:
    for i in range(n):
        write_pair(root / "images", root / "masks", f"img{i:02d}")
    if classes:
        (root / "classes.txt").write_text(classes)
    return root


def load(root: Path, num_classes: int | None = None, seed: int = 0, **options: str):
    return Folder.load(DataConfig(path=root, num_classes=num_classes, seed=seed, options=options))


def test_registered() -> None:
    registry = load_plugins().registry
    assert registry.dataset("folder") is Folder and registry.dataset("custom") is Folder


def test_random_split_is_fixed_by_split_seed(tmp_path: Path) -> None:
    root = flat(tmp_path, 10)
    a = load(root, seed=1)
    assert (len(a.train), len(a.val), len(a.test)) == (6, 2, 2)
    assert "random split (split_seed=0): 2 val, 2 test, 6 train" in a.notices[0]
    assert a.classes == ["background", "cat", "dog"]
    everything = set(a.train.ids) | set(a.val.ids) | set(a.test.ids)
    assert everything == {f"img{i:02d}" for i in range(10)}
    b = load(root, seed=2)  # the run seed does not move the split
    assert (a.train.ids, a.val.ids, a.test.ids) == (b.train.ids, b.val.ids, b.test.ids)
    c = load(root, split_seed="7")
    assert (c.val.ids, c.test.ids) != (a.val.ids, a.test.ids)
    d = load(root, test_fraction="0", val_fraction="0.3")
    assert d.test is None and len(d.val) == 3 and "no test split" in d.notices[-1]
    image, mask = a.train[0]
    assert image.dtype == torch.uint8 and image.shape == (3, H, W)
    assert mask.dtype == torch.int64 and mask.shape == (H, W)


def test_random_split_too_few_images(tmp_path: Path) -> None:
    with pytest.raises(SegalError, match=r"2 images are too few to split off val \(0.2\), test \(0.2\)"):
        load(flat(tmp_path, 2))
    with pytest.raises(SegalError, match=r"--dataset-opt val_fraction=1.5"):
        load(flat(tmp_path, 2), val_fraction="1.5")


def test_split_folders_any_format_and_json_classes(tmp_path: Path) -> None:
    for split, ext in (("train", ".jpg"), ("val", ".bmp"), ("test", ".tif")):
        for i in range(2):
            write_pair(tmp_path / "images" / split, tmp_path / "masks" / split, f"{split}{i}", ext=ext)
    (tmp_path / "classes.json").write_text(json.dumps(["a", "b", "c"]))
    splits = load(tmp_path)
    assert splits.train.ids == ["train0", "train1"] and splits.test.ids == ["test0", "test1"]
    assert splits.notices == [] and splits.classes == ["a", "b", "c"]
    assert splits.val.image(0).shape == (3, H, W)
    assert splits.test.samples[0].image.suffix == ".tif"


def test_split_first_layout_and_val_carved_from_train(tmp_path: Path) -> None:
    for i in range(5):
        write_pair(tmp_path / "train" / "images", tmp_path / "train" / "masks", f"t{i}")
    (tmp_path / "classes.txt").write_text("x\ny\nz\n")
    splits = load(tmp_path)
    assert len(splits.train) == 4 and len(splits.val) == 1 and splits.test is None
    assert "no val split" in splits.notices[0] and "no test split" in splits.notices[1]


def test_list_files(tmp_path: Path) -> None:
    root = flat(tmp_path, 5)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("img00\nimages/img01.png\n\n# comment\nimg02.png\n")
    (root / "splits" / "val.txt").write_text("img03\n")
    (root / "splits" / "test.txt").write_text("img04\n")
    splits = load(root)
    assert splits.train.ids == ["img00", "img01", "img02"]
    assert splits.val.ids == ["img03"] and splits.test.ids == ["img04"] and splits.notices == []


def test_list_entry_missing_or_twice(tmp_path: Path) -> None:
    root = flat(tmp_path, 3)
    (root / "train.txt").write_text("img00\nimg09\n")
    (root / "val.txt").write_text("img01\n")
    with pytest.raises(SegalError, match=r"train\.txt:2: 'img09' has no image and mask in .*images; fix the list"):
        load(root)
    (root / "train.txt").write_text("img00\nimg01\n")
    with pytest.raises(SegalError, match=r"val\.txt:1: 'img01' is already in the train split"):
        load(root)


def test_colour_masks_with_palette(tmp_path: Path) -> None:
    palette = {0: (0, 0, 0), 1: (200, 10, 10), 2: (10, 200, 10), 9: (255, 255, 255)}
    values = np.array([[0, 1, 2, 9] * 2] * H)
    for split in ("train", "val"):
        write_pair(tmp_path / "images" / split, tmp_path / "masks" / split, f"{split}0", values, colour=palette)
    (tmp_path / "classes.txt").write_text(
        "# name R G B\nbackground 0 0 0\nred thing 200 10 10\ngreen #0ac80a\nignore_color: 255 255 255\n"
    )
    splits = load(tmp_path)
    assert splits.classes == ["background", "red thing", "green"]
    expected = np.where(values == 9, 255, values)
    assert splits.train.mask(0).tolist() == expected.tolist()

    (tmp_path / "classes.txt").write_text("background 0 0 0\nred 200 10 10\ngreen 10 200 10\n")
    with pytest.raises(SegalError, match=r"train0\.png: colour \(255, 255, 255\) is not in the class colour table"):
        load(tmp_path)

    (tmp_path / "classes.txt").write_text("background\nred\ngreen\n")
    with pytest.raises(SegalError, match=r"train0\.png: a colour \(RGB\) mask where single-channel class ids"):
        load(tmp_path)


def test_ignore_index_option_and_class_file(tmp_path: Path) -> None:
    root = tmp_path
    for split in ("train", "val"):
        write_pair(root / "images" / split, root / "masks" / split, f"{split}_a", np.array([[0, 1, 100, 2] * 2] * H))
    (root / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(SegalError, match=r"train_a\.png: mask value 100 is not a class id"):
        load(root)
    assert load(root, ignore_index="100").train.mask(0)[0].tolist() == [0, 1, 255, 2] * 2
    (root / "classes.txt").write_text("a\nb\nc\nignore_index: 100\n")
    assert load(root).val.mask(0)[0, 2] == 255
    with pytest.raises(SegalError, match=r"--dataset-opt ignore_index=1: ignore id 1 is also a class id"):
        load(root, ignore_index="1")


def test_classes_needed_or_num_classes(tmp_path: Path) -> None:
    root = flat(tmp_path, 5, classes="")
    with pytest.raises(SegalError, match=r"no classes\.json or classes\.txt; add one .* or pass --num-classes"):
        load(root)
    assert load(root, num_classes=3).classes == ["class_0", "class_1", "class_2"]
    (root / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(SegalError, match=r"--num-classes 4: .*classes\.txt lists 3 classes"):
        load(root, num_classes=4)


def test_bad_class_files(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\nignore_index: x\n")
    with pytest.raises(SegalError, match=r"classes\.txt:3: ignore_index 'x' is not a whole number"):
        read_classes(tmp_path)
    (tmp_path / "classes.txt").write_text("a\nb 1 2 3\n")
    with pytest.raises(SegalError, match=r"class 'a' has no colour"):
        read_classes(tmp_path)
    (tmp_path / "classes.txt").write_text("a\na\n")
    with pytest.raises(SegalError, match=r"class 'a' is listed twice"):
        read_classes(tmp_path)
    (tmp_path / "classes.json").write_text('{"classes": ["a"], "colours": []}')
    with pytest.raises(SegalError, match=r"classes\.json: unknown key 'colours'"):
        read_classes(tmp_path)
    classes = [{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": "#ffffff"}]
    (tmp_path / "classes.json").write_text(json.dumps({"classes": classes, "ignore_index": 250}))
    spec = read_classes(tmp_path)
    assert spec.names == ["a", "b"] and spec.colors == [(1, 2, 3), (255, 255, 255)] and spec.ignore_index == 250
    (tmp_path / "classes.json").write_text("[1, 2")
    with pytest.raises(SegalError, match=r"classes\.json: not valid JSON"):
        read_classes(tmp_path)


def test_pairing_mistakes_and_mask_suffix(tmp_path: Path) -> None:
    root = flat(tmp_path, 5)
    write_pair(root / "images", root / "other", "lonely")
    with pytest.raises(SegalError, match=r"images/lonely\.png: image has no mask lonely\.png in .*masks"):
        load(root, require_masks="true")
    pool = load(root).train  # by default an image without a mask is a pool frame
    assert "lonely" in pool.ids and not pool.has_mask(pool.index_of("lonely"))
    (root / "images" / "lonely.png").unlink()
    for path in (root / "masks").iterdir():
        path.rename(path.with_name(path.stem + "_mask.png"))
    hint = r"image has no mask img00\.png .* but img00_mask\.png is there; pass --dataset-opt mask_suffix=_mask"
    with pytest.raises(SegalError, match=hint):
        load(root)
    assert len(load(root, mask_suffix="_mask").train) == 3


def test_size_mismatch_and_non_image(tmp_path: Path) -> None:
    root = flat(tmp_path, 5)
    Image.fromarray(np.zeros((H, W + 1), np.uint8)).save(root / "masks" / "img03.png")
    with pytest.raises(SegalError, match=r"img03\.png: mask is 9x6 \(WxH\) but its image img03\.png is 8x6"):
        load(root)
    Image.fromarray(np.zeros((H, W), np.uint8)).save(root / "masks" / "img03.png")
    (root / "images" / "img02.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(SegalError, match=r"img02\.png: not a readable image"):
        load(root)


def test_wrong_layout_and_empty_split(tmp_path: Path) -> None:
    (tmp_path / "pictures").mkdir()
    (tmp_path / "classes.txt").write_text("a\nb\n")
    with pytest.raises(SegalError, match=r"no images/ folder; expected images/ and masks/"):
        load(tmp_path)
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "val").mkdir()
    (tmp_path / "masks" / "train").mkdir(parents=True)
    with pytest.raises(SegalError, match=r"images/val: has no mask folder .*masks/val"):
        load(tmp_path)
    (tmp_path / "masks" / "val").mkdir()
    with pytest.raises(SegalError, match=r"the train split is empty"):
        load(tmp_path)


def test_resize_options(tmp_path: Path) -> None:
    root = flat(tmp_path, 5)
    splits = load(root, size="3x4")
    assert splits.train[0][0].shape == (3, 3, 4) and splits.train[0][1].shape == (3, 4)
    with pytest.raises(SegalError, match=r"--dataset-opt colour=1: 'folder' takes no option 'colour'"):
        load(root, colour="1")


def test_a_whole_run_reports_every_class(tmp_path: Path) -> None:
    import json

    from segal_core.cli import run_main

    root = flat(tmp_path / "mydata", 10)
    out = tmp_path / "run"
    status = run_main(["run", "--dataset", "folder", "--data-path", str(root), "--encoder", "tu-test_resnet",
                       "--epochs", "1", "--min-steps", "0", "--batch-size", "2", "--seed-ratio", "0.3",
                       "--query-size", "1", "--rounds", "2", "--device", "cpu", "--no-progress", "--out", str(out)])
    assert status == 0
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(records) == 2
    assert all(list(r["per_class_iou"]) == ["background", "cat", "dog"] for r in records)


def test_class_files_in_other_encodings(tmp_path: Path) -> None:
    names = "background\ncafé\ndog\n"
    (tmp_path / "classes.txt").write_text(names, encoding="utf-8-sig")  # with a BOM
    assert read_classes(tmp_path).names == ["background", "café", "dog"]
    (tmp_path / "classes.txt").write_text(names, encoding="utf-16")
    assert read_classes(tmp_path).names == ["background", "café", "dog"]
    (tmp_path / "classes.txt").write_text(names, encoding="latin-1")
    with pytest.raises(SegalError, match=r"classes\.txt:2: not UTF-8 text \(byte 0xE9\); save the class file as UTF-8"):
        read_classes(tmp_path)
    (tmp_path / "classes.json").write_text(json.dumps(["a", "b"]), encoding="utf-8-sig")
    assert read_classes(tmp_path).names == ["a", "b"]


def test_same_stem_in_two_split_folders_is_refused(tmp_path: Path) -> None:
    for split in ("train", "val"):
        write_pair(tmp_path / "images" / split, tmp_path / "masks" / split, "x")
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(SegalError, match=r"images/val/x\.png: id 'x' is in both the train and the val split"):
        load(tmp_path)


# -- a pool without masks (issue 14) ---------------------------------------------------


def split_folders(root: Path, labelled: int, unlabelled: int, *, val: int = 2, test: int = 0) -> Path:
    """Split folders whose train split has ``labelled`` images with a mask and
    ``unlabelled`` without."""
    for i in range(labelled + unlabelled):
        write_pair(root / "images" / "train", root / "masks" / "train", f"t{i:02d}")
        if i >= labelled:
            (root / "masks" / "train" / f"t{i:02d}.png").unlink()
    for split, n in (("val", val), ("test", test)):
        for i in range(n):
            write_pair(root / "images" / split, root / "masks" / split, f"{split}{i:02d}")
    (root / "classes.txt").write_text("background\ncat\ndog\n")
    return root


def test_a_pool_with_some_masks(tmp_path: Path) -> None:
    splits = load(split_folders(tmp_path, 2, 3, test=1))
    train = splits.train
    assert train.ids == ["t00", "t01", "t02", "t03", "t04"]
    assert [train.has_mask(i) for i in range(5)] == [True, True, False, False, False]
    assert all(splits.val.has_mask(i) for i in range(len(splits.val)))
    expected = np.array(Image.open(tmp_path / "masks" / "train" / "t01.png"), dtype=np.int64)
    assert torch.equal(train.mask(1), torch.from_numpy(expected))
    assert train.image(3).shape == (3, H, W)  # an unlabelled frame still reads
    with pytest.raises(SegalError, match=r"images/train/t03\.png: this train image has no mask; label it"):
        train.mask(3)
    notice = next(n for n in splits.notices if "(the pool)" in n)
    assert "5 images, 2 with a mask and 3 without" in notice and "require_masks=true" in notice
    with pytest.raises(SegalError, match=r"images/train/t02\.png: image has no mask t02\.png"):
        load(tmp_path, require_masks="true")


def test_a_pool_with_no_masks_at_all(tmp_path: Path) -> None:
    root = split_folders(tmp_path, 0, 4)
    splits = load(root)
    assert len(splits.train) == 4 and not any(splits.train.has_mask(i) for i in range(4))
    assert any("4 images, 0 with a mask and 4 without" in n for n in splits.notices)
    for path in (root / "masks" / "train").iterdir():  # the mask folder itself may be absent
        path.unlink()
    (root / "masks" / "train").rmdir()
    assert not any(load(root).train.has_mask(i) for i in range(4))
    with pytest.raises(SegalError, match=r"images/train: has no mask folder .*masks/train"):
        load(root, require_masks="true")


def test_all_masked_pool_has_no_notice(tmp_path: Path) -> None:
    splits = load(split_folders(tmp_path, 3, 0))
    assert not any("(the pool)" in n for n in splits.notices)
    assert all(splits.train.has_mask(i) for i in range(3))


def test_val_and_test_need_masks(tmp_path: Path) -> None:
    root = split_folders(tmp_path, 2, 1, test=2)
    (root / "masks" / "test" / "test01.png").unlink()
    with pytest.raises(SegalError, match=r"images/test/test01\.png: image has no mask test01\.png in .*masks/test; "
                                          r"val and test images need masks .*move the image to the train split"):
        load(root)
    (root / "masks" / "test" / "test00.png").unlink()
    (root / "masks" / "test").rmdir()
    with pytest.raises(SegalError, match=r"images/test: has no mask folder .*; val and test images need masks"):
        load(root)


def test_lists_and_random_split_keep_unlabelled_frames_in_train(tmp_path: Path) -> None:
    root = flat(tmp_path, 6)
    for i in range(6, 10):  # four images nobody labelled
        write_pair(root / "images", root / "masks", f"img{i:02d}")
        (root / "masks" / f"img{i:02d}.png").unlink()
    splits = load(root)
    unlabelled = {f"img{i:02d}" for i in range(6, 10)}
    assert unlabelled <= set(splits.train.ids)
    assert all(s.has_mask(i) for s in (splits.val, splits.test) for i in range(len(s)))
    assert any("8 images, 4 with a mask and 4 without" in n for n in splits.notices), splits.notices
    (root / "train.txt").write_text("img00\nimg01\nimg02\nimg06\nimg07\nimg08\n")
    (root / "val.txt").write_text("img03\nimg09\n")
    with pytest.raises(SegalError, match=r"val\.txt:2: 'img09' has no mask in .*masks; val and test images need "
                                          r"masks .*list the image in train\.txt"):
        load(root)
    (root / "val.txt").write_text("img03\nimg04\n")
    splits = load(root)
    assert [splits.train.has_mask(i) for i in range(6)] == [True] * 3 + [False] * 3


def test_too_few_masks_for_a_random_split(tmp_path: Path) -> None:
    root = flat(tmp_path, 0)
    for i in range(5):
        write_pair(root / "images", root / "masks", f"img{i:02d}")
        (root / "masks" / f"img{i:02d}.png").unlink()
    with pytest.raises(SegalError, match=r"images: 0 images with a mask \(of 5; val and test images need masks"):
        load(root)


def test_suffix_hint_is_not_given_for_an_unlabelled_prefix_id(tmp_path: Path) -> None:
    root = split_folders(tmp_path, 0, 0)
    write_pair(root / "images" / "train", root / "masks" / "train", "a10")
    write_pair(root / "images" / "train", root / "masks" / "train", "a1")
    (root / "masks" / "train" / "a1.png").unlink()
    train = load(root).train
    assert train.ids == ["a1", "a10"] and [train.has_mask(0), train.has_mask(1)] == [False, True]
