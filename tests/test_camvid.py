"""Tests of the ``camvid`` dataset plugin (real mini set plus broken copies in tmp_path)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segal_camvid import CAMVID_CLASSES, CamVid
from segal_core import DataConfig, SegalError, load_plugins


def load(path: Path, num_classes: int | None = None, **options: str):
    return CamVid.load(DataConfig(path=path, num_classes=num_classes, options=options))


def make_copy(
    mini: Path, root: Path, counts: dict[str, int], *, jpg: bool = False, lists: bool = False
) -> Path:
    """A small CamVid tree under ``root`` from the first frames of each mini split."""
    for split, count in counts.items():
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        lines = []
        for image in sorted((mini / split).glob("*.png"))[:count]:
            if jpg:
                Image.open(image).convert("RGB").save(root / split / f"{image.stem}.jpg", quality=90)
            else:
                shutil.copy(image, root / split / image.name)
            shutil.copy(mini / f"{split}annot" / image.name, root / f"{split}annot" / image.name)
            lines.append(f"/SegNet/CamVid/{split}/{image.name} /SegNet/CamVid/{split}annot/{image.name}")
        if lists:
            (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def small(camvid_mini: Path, tmp_path: Path) -> Path:
    return make_copy(camvid_mini, tmp_path / "CamVid", {"train": 3, "val": 2, "test": 1})


def test_registered_with_alias() -> None:
    registry = load_plugins().registry
    assert registry.dataset("camvid") is CamVid
    assert registry.dataset("CamVid") is CamVid
    assert CamVid.requires_path


def test_mini_set_with_foreign_prefix_lists(camvid_mini: Path) -> None:
    assert (camvid_mini / "train.txt").read_text().startswith("/SegNet/CamVid/train/")
    splits = load(camvid_mini)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 6, 6)
    lines = (camvid_mini / "val.txt").read_text().splitlines()
    listed = [line.split()[0].rsplit("/", 1)[1][:-4] for line in lines if line]
    assert splits.val.ids == listed
    assert splits.classes == list(CAMVID_CLASSES) and splits.ignore_index == 255
    assert splits.notices == []
    image, mask = splits.train[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 360, 480)
    assert mask.dtype == torch.int64 and mask.shape == (360, 480)


def test_void_is_ignored_by_default_and_a_class_with_12(camvid_mini: Path) -> None:
    sample_id = "0001TP_006690"
    raw = np.array(Image.open(camvid_mini / "trainannot" / f"{sample_id}.png"))
    void = raw == 11
    assert void.any(), "fixture frame should hold void pixels"

    eleven = load(camvid_mini).train
    mask = eleven.mask(eleven.index_of(sample_id)).numpy()
    assert (mask[void] == 255).all() and (mask[~void] == raw[~void]).all()
    assert eleven.num_classes == 11

    twelve = load(camvid_mini, num_classes=12).train
    assert twelve.classes[-1] == "void" and twelve.num_classes == 12
    assert np.array_equal(twelve.mask(twelve.index_of(sample_id)).numpy(), raw)

    with pytest.raises(SegalError, match=r"--num-classes 5: CamVid has 11 classes .* or 12"):
        load(camvid_mini, num_classes=5)


def test_jpg_images_without_lists_and_missing_test(camvid_mini: Path, tmp_path: Path) -> None:
    root = make_copy(camvid_mini, tmp_path / "jpg", {"train": 2, "val": 1}, jpg=True)
    splits = load(root)
    assert splits.test is None
    assert "no test/ and testannot/" in splits.notices[0] and "val split is used" in splits.notices[0]
    assert splits.train.samples[0].image.suffix == ".jpg" and splits.train.samples[0].mask.suffix == ".png"
    image, mask = splits.train[0]
    png = np.array(Image.open(camvid_mini / "train" / f"{splits.train.ids[0]}.png"))
    assert image.shape == (3, 360, 480)
    assert np.abs(image.permute(1, 2, 0).numpy().astype(int) - png).mean() < 8  # same picture, lossy
    assert mask.shape == (360, 480)


def test_png_lists_map_onto_jpg_copies(camvid_mini: Path, tmp_path: Path) -> None:
    root = make_copy(camvid_mini, tmp_path / "jpg", {"train": 2, "val": 1}, jpg=True)
    lines = [
        f"C:\\data\\CamVid\\train\\{p.stem}.png C:\\data\\CamVid\\trainannot\\{p.stem}.png"
        for p in sorted((root / "train").iterdir())
    ]
    (root / "train.txt").write_text("\n".join(reversed(lines)))
    splits = load(root)
    assert splits.train.ids == sorted(splits.train.ids, reverse=True)  # list order kept
    assert all(s.image.suffix == ".jpg" for s in splits.train.samples)


def test_list_entry_missing_is_an_error_naming_the_line(camvid_mini: Path, tmp_path: Path) -> None:
    root = make_copy(camvid_mini, tmp_path / "c", {"train": 2, "val": 1}, lists=True)
    with (root / "train.txt").open("a") as f:
        f.write("/SegNet/CamVid/train/nothere.png /SegNet/CamVid/trainannot/nothere.png\n")
    with pytest.raises(SegalError, match=r"train\.txt:3: image /SegNet/CamVid/train/nothere\.png not found"):
        load(root)
    assert len(load(root, lists="false").train) == 2  # the folders themselves are fine


def test_mask_value_outside_the_classes(small: Path) -> None:
    target = sorted((small / "valannot").iterdir())[0]
    values = np.array(Image.open(target))
    values[5, 7] = 20
    Image.fromarray(values).save(target)
    with pytest.raises(SegalError, match=rf"{target.name}: mask value 20 is not a class id"):
        load(small)
    splits = load(small, verify="header")  # lazily: at read time
    with pytest.raises(SegalError, match=rf"{target.name}: mask value 20 "):
        splits.val.mask(0)


def test_size_mismatch_names_the_file(small: Path) -> None:
    target = sorted((small / "trainannot").iterdir())[1]
    Image.open(target).crop((0, 0, 480, 300)).save(target)
    with pytest.raises(SegalError, match=rf"{target.name}: mask is 480x300 \(WxH\) but its image .* is 480x360"):
        load(small)


def test_colour_mask_is_an_error(small: Path) -> None:
    target = sorted((small / "testannot").iterdir())[0]
    Image.open(target).convert("RGB").save(target)
    with pytest.raises(SegalError, match=rf"{target.name}: a colour \(RGB\) mask"):
        load(small)


def test_missing_folders_say_what_is_expected(small: Path) -> None:
    shutil.rmtree(small / "valannot")
    expected = r"not a CamVid folder, valannot/ missing; expected .*train/ trainannot/ val/ valannot/"
    with pytest.raises(SegalError, match=expected):
        load(small)
    with pytest.raises(SegalError, match=rf"did you mean --data-path {small}\?"):
        load(small.parent)  # the folder above CamVid/
    shutil.rmtree(small / "testannot")
    (small / "valannot").mkdir()
    with pytest.raises(SegalError, match=r"test: found without testannot/"):
        load(small)
    with pytest.raises(SegalError, match="needs --data-path"):
        CamVid.load(DataConfig())


def test_image_without_mask_and_mask_without_image(small: Path) -> None:
    extra = small / "train" / "lonely.png"
    shutil.copy(next((small / "train").iterdir()), extra)
    with pytest.raises(SegalError, match=r"train/lonely\.png: image has no mask lonely\.\* in .*trainannot"):
        load(small)
    extra.unlink()
    shutil.copy(next((small / "valannot").iterdir()), small / "valannot" / "orphan.png")
    with pytest.raises(SegalError, match=r"valannot/orphan\.png: mask has no image"):
        load(small)


def test_non_image_file_names_the_file(small: Path) -> None:
    target = sorted((small / "train").iterdir())[0]
    target.write_text("this is not a PNG")
    with pytest.raises(SegalError, match=rf"{target.name}: not a readable image"):
        load(small)


def test_empty_split_is_an_error(small: Path) -> None:
    for folder in ("val", "valannot"):
        for path in (small / folder).iterdir():
            path.unlink()
    with pytest.raises(SegalError, match=r"val: the val split is empty"):
        load(small)


def test_options(small: Path) -> None:
    splits = load(small, scale="0.25")
    assert splits.train.image(0).shape == (3, 90, 120) and splits.train.mask(0).shape == (90, 120)
    splits = load(small, size="48x64")
    assert splits.test[0][0].shape == (3, 48, 64) and splits.test[0][1].shape == (48, 64)
    with pytest.raises(SegalError, match=r"--dataset-opt crop=1: 'camvid' takes no option 'crop'"):
        load(small, crop="1")
    with pytest.raises(SegalError, match=r"--dataset-opt verify='all'"):
        load(small, verify="all")


def test_a_frame_in_two_splits_is_refused(small: Path) -> None:
    frame = sorted((small / "train").iterdir())[0]
    shutil.copy(frame, small / "val" / frame.name)
    shutil.copy(small / "trainannot" / frame.name, small / "valannot" / frame.name)
    message = rf"val/{frame.name}: id '{frame.stem}' is in both the train and the val split \(also .*train/"
    with pytest.raises(SegalError, match=message):
        load(small)


def test_list_files_in_other_encodings(camvid_mini: Path, tmp_path: Path) -> None:
    root = make_copy(camvid_mini, tmp_path / "c", {"train": 2, "val": 1}, lists=True)
    text = (root / "train.txt").read_text()
    (root / "train.txt").write_text(text, encoding="utf-16")  # Windows "Unicode": with a BOM
    assert len(load(root).train) == 2
    (root / "val.txt").write_bytes((root / "val.txt").read_bytes().replace(b"/SegNet", b"/S\xe9gNet", 1))
    with pytest.raises(SegalError, match=r"val\.txt:1: not UTF-8 text \(byte 0xE9\); save the list as UTF-8"):
        load(root)
