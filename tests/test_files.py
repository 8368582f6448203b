"""Tests of segal_files: reading, pairing and checking image/mask files, and the load template."""

from __future__ import annotations

import codecs
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from segal_core import DataConfig, SegalError, Splits
from segal_files import (
    ClassTable,
    ColorMap,
    FileDataset,
    LabelMap,
    Layout,
    ListLine,
    Sample,
    SplitFiles,
    check_headers,
    find_files,
    list_lines,
    load_file_splits,
    output_size,
    pair_by_id,
    parse_size,
    read_header,
    read_image,
    read_list,
    read_mask,
    read_text,
    resize_options,
    verify_masks,
)


def save_rgb(path: Path, h: int = 6, w: int = 8, seed: int = 0) -> np.ndarray:
    array = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def save_mask(path: Path, array: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).convert(mode).save(path)


class _Files(FileDataset):
    name = "files"

    @classmethod
    def load(cls, config):  # type: ignore[override]  # built directly in tests
        raise NotImplementedError


# -- read_image --------------------------------------------------------------------


def test_read_image_is_uint8_chw(tmp_path: Path) -> None:
    array = save_rgb(tmp_path / "a.png", 5, 7)
    image = read_image(tmp_path / "a.png")
    assert image.dtype == torch.uint8 and image.shape == (3, 5, 7)
    assert torch.equal(image, torch.from_numpy(array).permute(2, 0, 1))


def test_read_image_converts_grey_and_resizes(tmp_path: Path) -> None:
    Image.fromarray(np.full((10, 20), 77, np.uint8)).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png", size=(5, 10))
    assert image.shape == (3, 5, 10)
    assert (image == 77).all()


def test_read_image_not_an_image_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("hello, not a picture")
    with pytest.raises(SegalError, match=r"notes\.png: not a readable image"):
        read_image(bad)


def test_read_image_truncated_names_file(tmp_path: Path) -> None:
    save_rgb(tmp_path / "full.png", 64, 64)
    data = (tmp_path / "full.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SegalError, match=r"cut\.png: image cannot be decoded.*truncated"):
        read_image(cut)


def test_read_image_missing_names_file(tmp_path: Path) -> None:
    with pytest.raises(SegalError, match=r"gone\.png: image file not found"):
        read_image(tmp_path / "gone.png")


def test_read_header_reads_no_pixels(tmp_path: Path) -> None:
    save_rgb(tmp_path / "a.png", 6, 9)
    assert read_header(tmp_path / "a.png") == ("RGB", (6, 9))


# -- read_mask and the maps ------------------------------------------------------------


def test_read_mask_grey_palette_and_16bit(tmp_path: Path) -> None:
    values = np.array([[0, 1], [2, 255]], np.uint8)
    save_mask(tmp_path / "l.png", values)
    p = Image.new("P", (2, 2))
    p.putdata(values.ravel().tolist())
    p.putpalette([0, 0, 0, 128, 0, 0] * 128)
    p.save(tmp_path / "p.png")
    Image.fromarray(np.array([[0, 300], [2, 1]], np.uint16)).save(tmp_path / "i16.png")
    assert read_mask(tmp_path / "l.png").tolist() == values.tolist()
    assert read_mask(tmp_path / "p.png").tolist() == values.tolist()
    assert read_mask(tmp_path / "i16.png").tolist() == [[0, 300], [2, 1]]


def test_read_mask_colour_is_an_error_naming_file(tmp_path: Path) -> None:
    save_rgb(tmp_path / "colour.png")
    with pytest.raises(SegalError, match=r"colour\.png: a colour \(RGB\) mask where single-channel"):
        read_mask(tmp_path / "colour.png")


def test_read_mask_nearest_resize_keeps_ids(tmp_path: Path) -> None:
    values = np.random.default_rng(1).integers(0, 4, size=(40, 40))
    save_mask(tmp_path / "m.png", values)
    small = read_mask(tmp_path / "m.png", size=(10, 20))
    assert small.shape == (10, 20)
    assert set(np.unique(small)) <= set(range(4))


def test_colour_map(tmp_path: Path) -> None:
    rgb = np.array([[[255, 0, 0], [0, 0, 0]], [[0, 255, 0], [255, 255, 255]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    colors = ColorMap({(0, 0, 0): 0, (255, 0, 0): 1, (0, 255, 0): 2, (255, 255, 255): 255})
    assert read_mask(tmp_path / "c.png", colors=colors).tolist() == [[1, 0], [2, 255]]
    partial = ColorMap({(0, 0, 0): 0, (255, 0, 0): 1})
    with pytest.raises(SegalError, match=r"c\.png: colour \(0, 255, 0\) is not in the class colour table"):
        read_mask(tmp_path / "c.png", colors=partial)


def test_label_map_identity_and_errors(tmp_path: Path) -> None:
    labels = LabelMap.identity(3)
    raw = np.array([[0, 1], [2, 255]])
    assert labels.apply(raw, tmp_path / "m.png").tolist() == [[0, 1], [2, 255]]
    message = r"m\.png: mask value 7 is not a class id.*3 classes; valid values: 0\.\.2; ignored: 255"
    with pytest.raises(SegalError, match=message):
        labels.apply(np.array([[0, 7]]), tmp_path / "m.png")
    with pytest.raises(SegalError, match=r"mask value 300 "):
        labels.apply(np.array([[0, 300]]), tmp_path / "m.png")
    with pytest.raises(SegalError, match=r"mask value -1 "):
        labels.apply(np.array([[0, -1]]), tmp_path / "m.png")


def test_label_map_table_remaps() -> None:
    labels = LabelMap({7: 0, 8: 1, 0: 255}, num_classes=2)
    out = labels.apply(np.array([[7, 8, 0]]), Path("x.png"))
    assert out.dtype == torch.int64 and out.tolist() == [[0, 1, 255]]
    assert labels.describe() == "0, 7..8"
    with pytest.raises(ValueError):
        LabelMap({1: 5}, num_classes=2)


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.integers(0, 400), st.integers(0, 4), min_size=1, max_size=20),
    st.lists(st.integers(0, 400), min_size=1, max_size=50),
)
def test_label_map_matches_its_table(table: dict[int, int], values: list[int]) -> None:
    labels = LabelMap(table, num_classes=5)
    raw = np.array(values)
    if all(v in table for v in values):
        assert labels.apply(raw, Path("m.png")).tolist() == [table[v] for v in values]
        assert labels.check(raw, Path("m.png")).sum() == len(values)
    else:
        first_bad = min(v for v in values if v not in table)
        with pytest.raises(SegalError, match=rf"mask value {first_bad}\b"):
            labels.apply(raw, Path("m.png"))
        with pytest.raises(SegalError, match=rf"mask value {first_bad}\b"):
            labels.check(raw, Path("m.png"))


# -- finding and pairing files -----------------------------------------------------------


def test_find_files_by_stem_and_suffix(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", ".hidden.png", "notes.txt", "c_gt.png", "c_color.png"):
        (tmp_path / name).write_bytes(b"")
    assert list(find_files(tmp_path)) == ["a", "b", "c_color", "c_gt"]
    assert find_files(tmp_path, suffix="_gt") == {"c": tmp_path / "c_gt.png"}
    with pytest.raises(SegalError, match=r"nope: no such folder"):
        find_files(tmp_path / "nope")


def test_find_files_duplicate_stem_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(SegalError, match=r"a\.(png|jpg): same id 'a' as"):
        find_files(tmp_path)


def test_pair_by_id_names_unpaired_files(tmp_path: Path) -> None:
    images = {"a": tmp_path / "img" / "a.png", "b": tmp_path / "img" / "b.png"}
    masks = {"a": tmp_path / "ann" / "a.png", "c": tmp_path / "ann" / "c.png"}
    with pytest.raises(SegalError, match=r"img/b\.png: image has no mask b\.\* in .*ann"):
        pair_by_id(images, masks, image_dir=tmp_path / "img", mask_dir=tmp_path / "ann")
    with pytest.raises(SegalError, match=r"ann/c\.png: mask has no image c\.\* in .*img"):
        pair_by_id({"a": images["a"]}, masks, image_dir=tmp_path / "img", mask_dir=tmp_path / "ann")
    pairs = pair_by_id({"a": images["a"]}, {"a": masks["a"]}, image_dir=tmp_path, mask_dir=tmp_path)
    assert pairs == [Sample("a", images["a"], masks["a"])]


def test_check_headers(tmp_path: Path) -> None:
    save_rgb(tmp_path / "a.png", 6, 8)
    save_mask(tmp_path / "a_m.png", np.zeros((6, 8)))
    save_mask(tmp_path / "small.png", np.zeros((6, 7)))
    save_rgb(tmp_path / "rgbmask.png", 6, 8)
    (tmp_path / "text.png").write_text("nope")
    assert check_headers([Sample("a", tmp_path / "a.png", tmp_path / "a_m.png")]) == [(6, 8)]
    with pytest.raises(SegalError, match=r"small\.png: mask is 7x6 \(WxH\) but its image a\.png is 8x6"):
        check_headers([Sample("a", tmp_path / "a.png", tmp_path / "small.png")])
    with pytest.raises(SegalError, match=r"rgbmask\.png: a colour \(RGB\) mask"):
        check_headers([Sample("a", tmp_path / "a.png", tmp_path / "rgbmask.png")])
    assert check_headers([Sample("a", tmp_path / "a.png", tmp_path / "rgbmask.png")], colour_masks=True)
    with pytest.raises(SegalError, match=r"text\.png: not a readable mask"):
        check_headers([Sample("a", tmp_path / "a.png", tmp_path / "text.png")])


# -- FileDataset and verification ----------------------------------------------------------


def _dataset(tmp_path: Path, mask_values: np.ndarray, **kwargs) -> tuple[_Files, list[tuple[int, int]]]:
    save_rgb(tmp_path / "i" / "x.png", *mask_values.shape)
    save_mask(tmp_path / "m" / "x.png", mask_values)
    samples = [Sample("x", tmp_path / "i" / "x.png", tmp_path / "m" / "x.png")]
    return _Files(samples, ["a", "b", "c"], split="train", **kwargs), check_headers(samples)


def test_file_dataset_items(tmp_path: Path) -> None:
    values = np.array([[0, 1, 2, 255]] * 4)
    ds, sizes = _dataset(tmp_path, values)
    image, mask = ds[0]
    assert ds.ids == ["x"] and len(ds) == 1 and ds.num_classes == 3
    assert image.dtype == torch.uint8 and image.shape == (3, 4, 4)
    assert mask.dtype == torch.int64 and mask.tolist() == values.tolist()
    assert verify_masks(ds, "auto", sizes, "--dataset-opt verify") is True


def test_file_dataset_scale_and_resize(tmp_path: Path) -> None:
    ds, _ = _dataset(tmp_path, np.zeros((20, 40), np.int64), scale=0.5)
    assert ds.image(0).shape == (3, 10, 20) and ds.mask(0).shape == (10, 20)
    ds.resize = (5, 6)
    assert ds.image(0).shape == (3, 5, 6) and ds.mask(0).shape == (5, 6)


def test_file_dataset_bad_value_names_file_and_value(tmp_path: Path) -> None:
    ds, sizes = _dataset(tmp_path, np.array([[0, 1], [9, 2]]))
    with pytest.raises(SegalError, match=r"x\.png: mask value 9 is not a class id"):
        ds.mask(0)
    with pytest.raises(SegalError, match=r"x\.png: mask value 9 "):
        verify_masks(ds, "full", sizes, "--dataset-opt verify")
    assert verify_masks(ds, "header", sizes, "--dataset-opt verify") is False
    with pytest.raises(SegalError, match=r"--dataset-opt verify='some': expected one of auto, full, header"):
        verify_masks(ds, "some", sizes, "--dataset-opt verify")


def test_sizes_and_options() -> None:
    assert parse_size("360x480", "--x") == (360, 480)
    assert parse_size("64", "--x") == (64, 64)
    for bad in ("0x4", "axb", "1x2x3"):
        with pytest.raises(SegalError, match="expected HEIGHTxWIDTH"):
            parse_size(bad, "--dataset-opt size")
    assert output_size((100, 200), scale=0.25) == (25, 50)
    assert output_size((100, 200), resize=(3, 4), scale=0.5) == (3, 4)
    assert resize_options("8x16", None) == ((8, 16), None)
    with pytest.raises(SegalError, match="give one of them, not both"):
        resize_options("8x16", 0.5)
    with pytest.raises(SegalError, match=r"scale=2\.0: expected a factor in \(0, 1\]"):
        resize_options(None, 2.0)


# -- list files ----------------------------------------------------------------------------


def test_list_lines_and_read_list(tmp_path: Path) -> None:
    listing = tmp_path / "train.txt"
    listing.write_text("a x.png\n\n   \n# note\nb\n")
    lines = list_lines(listing)
    assert [line.fields for line in lines] == [("a", "x.png"), ("#", "note"), ("b",)]
    assert lines[2].where == f"{listing}:5"
    assert [line.fields[0] for line in list_lines(listing, comments=True)] == ["a", "b"]

    def sample(line: ListLine) -> Sample:
        return Sample(line.fields[0], tmp_path / "i.png", tmp_path / "m.png")

    listing.write_text("b\na\n")
    assert [s.id for s in read_list(listing, sample)] == ["b", "a"]  # list order kept
    listing.write_text("b\na\nb\n")
    with pytest.raises(SegalError, match=r"train\.txt:3: b is listed twice; remove one line"):
        read_list(listing, sample)
    with pytest.raises(SegalError, match=r"gone\.txt: cannot read the list"):
        list_lines(tmp_path / "gone.txt")


# -- the load template ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    name: ClassVar[str] = "files"

    verify: str = "auto"
    size: str | None = None
    scale: float | None = None
    tests: bool = True


def _find(root: Path, options: _Options, config: DataConfig) -> Layout:
    """``root/<split>/x.png`` images with ``root/<split>annot/x.png`` masks."""
    splits = {}
    for split in ("train", "val", "test") if options.tests else ("train", "val"):
        images, masks = find_files(root / split), find_files(root / f"{split}annot")
        samples = pair_by_id(images, masks, image_dir=root / split, mask_dir=root / f"{split}annot")
        splits[split] = SplitFiles(samples, root / split, "add images")
    classes = ClassTable(["a", "b", "c"], LabelMap.identity(3, ignore_values=[9]))
    return Layout(classes, splits, no_test="files: no test; the val split is used for testing", notices=["hello"])


def _tree(root: Path, counts: dict[str, int]) -> Path:
    for split, count in counts.items():
        for i in range(count):
            save_rgb(root / split / f"{split}{i}.png", 4, 6, seed=i)
            save_mask(root / f"{split}annot" / f"{split}{i}.png", np.array([[0, 1, 2, 9, 0, 1]] * 4))
    return root


def _load(root: Path | None, **options: str) -> Splits:
    return load_file_splits(_Files, DataConfig(path=root, options=options), _Options, _find)


def test_load_file_splits(tmp_path: Path) -> None:
    root = _tree(tmp_path / "d", {"train": 3, "val": 1, "test": 1})
    splits = _load(root)
    assert isinstance(splits.train, _Files) and splits.train.split == "train"
    assert (splits.train.ids, splits.val.ids, splits.test.ids) == (["train0", "train1", "train2"], ["val0"], ["test0"])
    assert splits.notices == ["hello"] and splits.classes == ["a", "b", "c"]
    assert splits.val.mask(0)[0].tolist() == [0, 1, 2, 255, 0, 1]
    no_test = _load(root, tests="false", scale="0.5")
    assert no_test.test is None and no_test.notices == ["hello", "files: no test; the val split is used for testing"]
    assert no_test.train.image(0).shape == (3, 2, 3)


def test_load_file_splits_refuses_with_one_line(tmp_path: Path) -> None:
    root = _tree(tmp_path / "d", {"train": 2, "val": 1, "test": 0})
    (root / "test").mkdir()
    (root / "testannot").mkdir()
    with pytest.raises(SegalError, match=r"d/test: the test split is empty; add images"):
        _load(root)
    with pytest.raises(SegalError, match=r"--dataset-opt size=4x4 and scale=0\.5: give one of them"):
        _load(root, size="4x4", scale="0.5")
    with pytest.raises(SegalError, match=r"--dataset-opt colour=1: 'files' takes no option 'colour'"):
        _load(root, colour="1")
    with pytest.raises(SegalError, match=r"--dataset-opt verify='some': expected one of auto, full, header"):
        _load(root, tests="false", verify="some")
    with pytest.raises(SegalError, match=r"--dataset files needs --data-path"):
        _load(None)
    save_mask(root / "valannot" / "val0.png", np.array([[0, 5, 0, 0, 0, 0]] * 4))
    with pytest.raises(SegalError, match=r"val0\.png: mask value 5 is not a class id"):
        _load(root, tests="false")
    assert _load(root, tests="false", verify="header").val.ids == ["val0"]


def test_load_file_splits_needs_train_and_val(tmp_path: Path) -> None:
    def only_train(root: Path, options: _Options, config: DataConfig) -> Layout:
        return Layout(ClassTable(["a"]), {"train": SplitFiles([], root, "")}, no_test="")

    with pytest.raises(ValueError, match="files: its layout has no val split"):
        load_file_splits(_Files, DataConfig(path=tmp_path), _Options, only_train)


# -- the example of docs/file-datasets.md ----------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "file-datasets.md"


def _doc_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    text = DOC.read_text(encoding="utf-8")
    after = text.split("`segal_leaves/__init__.py`:", 1)[1]
    code = after.split("```python\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "segal_leaves" / "__init__.py"
    path.parent.mkdir()
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("segal_leaves", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "segal_leaves", module)
    spec.loader.exec_module(module)
    return module


def test_the_documented_plugin_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    leaves = _doc_example(tmp_path, monkeypatch)
    root = tmp_path / "leaves"
    stored = np.array([[0, 100, 200, 50]] * 4)
    for split, count in (("train", 3), ("val", 1)):
        for i in range(count):
            save_rgb(root / split / "img" / f"{split}{i}.jpg", 4, 4, seed=i)
            save_mask(root / split / "gt" / f"{split}{i}_gt.png", stored)
    load = leaves.Leaves.load
    splits = load(DataConfig(path=root, options={"scale": "0.5"}))
    assert splits.train.ids == ["train0", "train1", "train2"] and splits.classes == ["soil", "leaf", "lesion"]
    assert splits.notices == [f"leaves: no test/ in {root}; the val split is used for testing"]
    assert load(DataConfig(path=root)).val.mask(0)[0].tolist() == [0, 1, 2, 255]
    assert splits.val.image(0).shape == (3, 2, 2)
    assert leaves.segal_register_datasets() == [leaves.Leaves]
    save_mask(root / "val" / "gt" / "val0_gt.png", np.array([[0, 100, 7, 50]] * 4))
    with pytest.raises(SegalError, match=r"val0_gt\.png: mask value 7 is not a class id"):
        load(DataConfig(path=root))
    with pytest.raises(SegalError, match=r"--num-classes 4: leaves has 3 classes"):
        load(DataConfig(path=root, num_classes=4))
    with pytest.raises(SegalError, match=r"no train/img/; expected"):
        load(DataConfig(path=tmp_path))


# -- unusual files: read right or refused by name ----------------------------------------------


def test_read_text_encodings(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    text = "café\nnaïve x\n"
    for data in (
        text.encode("utf-8"),
        codecs.BOM_UTF8 + text.encode("utf-8"),
        codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
        text.encode("utf-16"),  # with Python's BOM
        codecs.BOM_UTF32_LE + text.encode("utf-32-le"),
    ):
        path.write_bytes(data)
        assert read_text(path, "list") == text
    path.write_bytes(codecs.BOM_UTF8 + b"a\nb\n")
    assert [line.fields for line in list_lines(path)] == [("a",), ("b",)]  # no BOM in the first id


def test_read_text_refuses_other_encodings_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "classes.txt"
    path.write_bytes("road\nsky\ncafé\n".encode("latin-1"))
    with pytest.raises(SegalError, match=r"classes\.txt:3: not UTF-8 text \(byte 0xE9\); save the class file as UTF-8"):
        read_text(path, "class file")
    path.write_bytes("road\nsky\n".encode("utf-16-le"))  # no BOM
    with pytest.raises(SegalError, match=r"classes\.txt:1: holds NUL characters \(UTF-16 without a byte-order mark"):
        read_text(path, "class file")
    path.write_bytes(codecs.BOM_UTF16_LE + "ab\ncd".encode("utf-16-le") + b"\x00\xd8")  # a lone surrogate
    with pytest.raises(SegalError, match=r"classes\.txt:2: starts with a UTF-16 byte-order mark but is not UTF-16"):
        read_text(path, "class file")
    with pytest.raises(SegalError, match=r"nothere\.txt: cannot read the list"):
        read_text(tmp_path / "nothere.txt", "list")


def _save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def test_images_of_other_modes(tmp_path: Path) -> None:
    grey16 = np.array([[0, 257 * 100, 65535, 300]], np.uint16)
    path = _save(tmp_path / "g16.png", Image.fromarray(grey16))
    assert read_header(path)[0] == "I;16"
    assert read_image(path)[:, 0].tolist() == [[0, 100, 255, 1]] * 3  # scaled, not clipped at 255
    path = _save(tmp_path / "i32.tif", Image.fromarray(grey16.astype(np.int32)))
    assert read_header(path)[0] == "I" and read_image(path)[0, 0].tolist() == [0, 100, 255, 1]
    big = _save(tmp_path / "big.tif", Image.fromarray(np.array([[0, 70000]], np.int32)))
    with pytest.raises(SegalError, match=r"big\.tif: a 32-bit integer \(I\) image with values beyond 16 bits"):
        read_image(big)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[0, 0, 3] = 255  # the rest transparent: the colours are kept, alpha dropped
    path = _save(tmp_path / "rgba.png", Image.fromarray(rgba))
    assert read_image(path)[:, 1, 1].tolist() == [10, 20, 30]
    path = _save(tmp_path / "la.png", Image.fromarray(np.full((2, 2), 77, np.uint8)).convert("LA"))
    assert (read_image(path) == 77).all()
    path = _save(tmp_path / "cmyk.tif", Image.new("CMYK", (2, 2), (0, 255, 255, 0)))
    assert read_image(path)[:, 0, 0].tolist() == [255, 0, 0]  # Pillow's CMYK -> RGB
    palette = Image.new("P", (2, 2))
    palette.putpalette([0, 0, 0, 200, 10, 10] * 128)
    palette.putdata([1, 0, 1, 0])
    path = _save(tmp_path / "ptrans.png", palette, transparency=0)
    assert read_image(path)[:, 0, 0].tolist() == [200, 10, 10]  # no Pillow warning (they are errors here)


def test_float_images_are_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "f.tif", Image.fromarray(np.array([[0.5, 2.0]], np.float32)))
    with pytest.raises(SegalError, match=r"f\.tif: a floating-point \(F\) image, whose value range is unknown"):
        read_image(path)
    save_mask(tmp_path / "m.png", np.zeros((1, 2)))
    with pytest.raises(SegalError, match=r"f\.tif: a floating-point \(F\) image"):
        check_headers([Sample("f", path, tmp_path / "m.png")])


def test_masks_in_a_lossy_format_are_refused_whatever_their_name(tmp_path: Path) -> None:
    save_rgb(tmp_path / "a.png", 16, 16)
    jpeg = _save(tmp_path / "jpeg.png", Image.fromarray(np.zeros((16, 16), np.uint8)), format="JPEG")
    message = r"jpeg\.png: mask is a JPEG file named \.png; masks must be lossless PNG, BMP or TIFF"
    with pytest.raises(SegalError, match=message):
        check_headers([Sample("a", tmp_path / "a.png", jpeg)])
    with pytest.raises(SegalError, match=message):
        read_mask(jpeg)
    assert read_image(jpeg).shape == (3, 16, 16)  # as an image it is fine
    tiff = _save(tmp_path / "j.tif", Image.fromarray(np.zeros((16, 16, 3), np.uint8)), compression="jpeg")
    with pytest.raises(SegalError, match=r"j\.tif: mask is a JPEG-compressed TIFF; masks must be lossless"):
        read_header(tiff, "mask")
    gif = _save(tmp_path / "gif.png", Image.fromarray(np.full((16, 16), 2, np.uint8)).convert("P"), format="GIF")
    assert read_header(gif, "mask")[0] == "P"  # GIF is lossless: read, whatever the name


def test_masks_of_other_modes(tmp_path: Path) -> None:
    save_rgb(tmp_path / "a.png", 2, 2)
    la = _save(tmp_path / "la.png", Image.fromarray(np.ones((2, 2), np.uint8)).convert("LA"))
    with pytest.raises(SegalError, match=r"la\.png: a mask with an alpha channel \(LA\)"):
        check_headers([Sample("a", tmp_path / "a.png", la)])
    with pytest.raises(SegalError, match=r"la\.png: a mask with an alpha channel \(LA\)"):
        read_mask(la)
    f = _save(tmp_path / "f.tif", Image.fromarray(np.ones((2, 2), np.float32)))
    with pytest.raises(SegalError, match=r"f\.tif: a floating-point \(F\) mask; class ids are whole numbers"):
        read_mask(f)
    one = _save(tmp_path / "one.png", Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8) * 255).convert("1"))
    assert read_mask(one).tolist() == [[0, 1], [1, 0]]


def test_colour_masks_with_alpha_and_palettes(tmp_path: Path) -> None:
    colors = ColorMap({(0, 0, 0): 0, (200, 10, 10): 1})
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[0, 0, :3] = (200, 10, 10)
    path = _save(tmp_path / "opaque.png", Image.fromarray(rgba))
    assert read_mask(path, colors=colors).tolist() == [[1, 0], [0, 0]]
    rgba[1, 1, 3] = 0
    path = _save(tmp_path / "holes.png", Image.fromarray(rgba))
    with pytest.raises(SegalError, match=r"holes\.png: colour mask has transparent pixels"):
        read_mask(path, colors=colors)
    palette = Image.new("P", (2, 2))
    palette.putpalette([9, 9, 9, 0, 0, 0, 200, 10, 10] + [0] * 759)  # index 2 is class 1's colour
    palette.putdata([2, 1, 1, 1])
    path = _save(tmp_path / "indexed.png", palette)
    assert read_mask(path, colors=colors).tolist() == [[1, 0], [0, 0]]  # by colour, not by index
    assert read_mask(path).tolist() == [[2, 1], [1, 1]]  # without colours: index = class id


def test_an_id_in_two_splits_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "d", {"train": 2, "val": 1, "test": 1})
    save_rgb(root / "val" / "train1.png", 4, 6)
    save_mask(root / "valannot" / "train1.png", np.zeros((4, 6)))
    message = r"val/train1\.png: id 'train1' is in both the train and the val split \(also .*train/train1\.png\)"
    with pytest.raises(SegalError, match=message):
        _load(root)

    def twice(root: Path, options: _Options, config: DataConfig) -> Layout:
        sample = Sample("x", root / "x.png", root / "m.png")
        files = SplitFiles([sample, sample], root, "")
        return Layout(ClassTable(["a"]), {"train": files, "val": files}, no_test="")

    with pytest.raises(SegalError, match=r"id 'x' is twice in the train split"):
        load_file_splits(_Files, DataConfig(path=root), _Options, twice)
