"""segal_thumbnails: pictures of the queried samples only, small, atomic, and off with
--no-thumbnails or -p no:segal_thumbnails; the queries never change because of them."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segal_core import Annotation, DataConfig, Dataset, Oracle, hookimpl, load_plugins
from segal_core.cli import run_main
from segal_core.config import RunConfig
from segal_core.cycle import run_cycle
from segal_core.testing import TinyModel

from cycle_helpers import TINY_ARGS

from segal_thumbnails import render
from segal_thumbnails.store import FOLDER, INDEX, SEED, round_dir

POOL = 12


class TopHalfOracle(Oracle):
    """Labels only the top half of each queried image (a partial mask, like a region)."""

    name = "thumb_top_half"

    def label(self, ids: Sequence[str], pool: Dataset) -> list[Annotation]:
        out = []
        for sid in ids:
            mask = pool.mask(pool.index_of(sid)).clone()
            mask[mask.shape[0] // 2 :] = pool.ignore_index
            out.append(Annotation(sid, int((mask != pool.ignore_index).sum()), mask))
        return out


class TestPlugin:
    @hookimpl
    def segal_register_models(self) -> list[type]:
        return [TinyModel]

    @hookimpl
    def segal_register_oracles(self) -> list[type]:
        return [TopHalfOracle]


def config(out: Path, size: int = 32, **changes: Any) -> RunConfig:
    values: dict[str, Any] = dict(
        dataset="synthetic", dataset_options={"n_train": POOL, "n_val": 2, "n_test": 2, "size": size},
        model="tiny", model_options={"epochs": 1}, device="cpu", seed_ratio=0.25, query_size=3, rounds=3,
        strategy="entropy", progress=False, out=str(out),
    )
    values.update(changes)
    return RunConfig(**values)


def run(cfg: RunConfig, blocked: Sequence[str] = ()) -> list[dict[str, Any]]:
    return run_cycle(cfg, plugins=load_plugins(extra=[("thumb_test", TestPlugin())], blocked=blocked))


def index(out: Path, round: int) -> dict[str, Any]:  # noqa: A002
    return json.loads((round_dir(out, round) / INDEX).read_text())


def test_only_the_queried_samples_small_and_complete(tmp_path: Path) -> None:
    out = tmp_path / "run"
    history = run(config(out, size=160))
    folders = sorted(p.name for p in (out / FOLDER).iterdir() if p.is_dir())
    assert folders == ["round-000", "round-001"]  # the last round queries nothing
    for record in history[:2]:
        data = index(out, record["round"])
        assert [s["id"] for s in data["samples"]] == record["queried"]
        assert [s["score"] for s in data["samples"]] == pytest.approx(record["query_scores"])
        assert data["strategy"] == "entropy" and data["map"]["high"] >= data["map"]["low"]
        names = {p.name for p in round_dir(out, record["round"]).iterdir()}
        listed = {f for s in data["samples"] for f in s["files"].values()}
        assert names == listed | {INDEX}  # nothing for any other sample
        for sample in data["samples"]:
            assert set(sample["files"]) == {"frame", "uncertainty", "prediction", "label"}
            for name in sample["files"].values():
                path = round_dir(out, record["round"]) / name
                with Image.open(path) as img:
                    assert max(img.size) == render.MAX_SIDE  # 160 px images, shrunk
                assert path.stat().st_size < 12_000, (name, path.stat().st_size)
            assert sample["label_source"] == "dataset"
            assert sum(sample["class_pixels"].values()) == sample["labelled_pixels"] == 160 * 160


def test_class_pixels_are_counted_at_full_resolution(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(config(out, rounds=2))
    synthetic = load_plugins().registry.dataset("synthetic")
    pool = synthetic.load(DataConfig(options={"n_train": POOL, "n_val": 2, "n_test": 2, "size": 32})).train
    sample = index(out, 0)["samples"][0]
    assert sample["class_pixels"] == render.class_pixels(pool.mask(pool.index_of(sample["id"])), pool.classes, 255)
    state = json.loads((out / "state.json").read_text())
    seed = [sid for sid, e in state["ledger"].items() if e["round"] == -1]
    seed_json = json.loads((out / FOLDER / SEED).read_text())
    assert seed_json["samples"] == len(seed) == 3
    expected = dict.fromkeys(pool.classes, 0)
    for sid in seed:
        for name, n in render.class_pixels(pool.mask(pool.index_of(sid)), pool.classes, 255).items():
            expected[name] += n
    assert seed_json["class_pixels"] == expected


def test_thumbnails_change_no_query(tmp_path: Path) -> None:
    with_thumbs = run(config(tmp_path / "a"))
    without = run(config(tmp_path / "b", plugin_options={"no_thumbnails": True}))
    assert not (tmp_path / "b" / FOLDER).exists()
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(with_thumbs) == strip(without)


def test_random_strategy_has_no_uncertainty_map(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(config(out, strategy="random", rounds=2))
    data = index(out, 0)
    assert data["map"] is None
    assert all(set(s["files"]) == {"frame", "prediction", "label"} for s in data["samples"])


def test_partial_labels_are_drawn_and_counted(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(config(out, oracle="thumb_top_half", rounds=2))
    for sample in index(out, 0)["samples"]:
        assert sample["label_source"] == "oracle" and "regions" in sample["files"]
        assert sum(sample["class_pixels"].values()) == sample["labelled_pixels"] == 16 * 32
        assert (round_dir(out, 0) / sample["files"]["regions"]).is_file()


def test_cli_no_thumbnails_and_blocking(tmp_path: Path) -> None:
    assert run_main(["run", *TINY_ARGS, "--rounds", "2", "--no-thumbnails", "--out", str(tmp_path / "a")]) == 0
    assert not (tmp_path / "a" / FOLDER).exists()
    assert json.loads((tmp_path / "a" / "config.json").read_text())["plugin_options"]["no_thumbnails"] is True
    assert run_main(["-p", "no:segal_thumbnails", "run", *TINY_ARGS, "--rounds", "2", "--out", str(tmp_path / "b")]) == 0
    assert not (tmp_path / "b" / FOLDER).exists()


def test_a_repeated_round_leaves_no_stale_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(config(out, rounds=2))
    folder = round_dir(out, 0)
    (folder / "someone-else-frame.jpg").write_bytes(b"old")
    data = index(out, 0)
    from segal_thumbnails.store import _drop_stale

    _drop_stale(folder, data["samples"])
    assert not (folder / "someone-else-frame.jpg").exists()
    assert all((folder / f).is_file() for s in data["samples"] for f in s["files"].values())


def test_thumb_size_and_masks() -> None:
    import torch

    assert render.thumb_size(360, 480) == (72, 96)
    assert render.thumb_size(20, 10) == (20, 10)  # never enlarged
    mask = torch.tensor([[0, 1], [255, 7]])
    assert render.class_pixels(mask, ["a", "b", "c"], 255) == {"a": 1, "b": 1, "c": 0}
    png = render.mask_png(mask, (2, 2), 3, 255)
    with Image.open(io.BytesIO(png)) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert pixels[1].tolist() == [[0, 0, 0], [0, 0, 0]]  # ignore and out-of-range: black


def test_the_benchmark_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # what the script sets; undone after the test
    import thumbnails as bench

    out = tmp_path / "figures.json"
    argv = ["--model", "tiny", "--pool-size", "8", "--k", "2", "--image-size", "48x64", "--repeats", "2",
            "--json", str(out)]
    assert bench.main(argv) == 0
    figures = json.loads(out.read_text())
    assert figures["settings"]["k"] == 2 and len(figures["all_seconds"]["thumbnails"]) == 2
    assert figures["ratio"] > 1 and figures["bytes_per_sample"] > 0
    assert "score+select s" in capsys.readouterr().out
