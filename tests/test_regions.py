"""Region queries (issue 13): units, per-region scores, the streaming selection by
pixels, and whole region runs through the CLI and the Python API (resumed after
kill -9 too)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segal_core import QueryUnit, RunConfig, SegalError, Strategy, hookimpl, load_plugins
from segal_core.cli import run_main
from segal_core.cycle import run_cycle
from segal_core.regions import RunningSelection, reduce_regions
from segal_units import PatchUnit, SuperpixelUnit
from segal_units.units import patch_grid

from cycle_helpers import history, segal_process
from fakedist import make_distribution
from pause_plugin import PAUSE_PLUGIN

# -- units cover every pixel exactly once -------------------------------------------


@given(st.integers(1, 70), st.integers(1, 70), st.integers(1, 40))
def test_patches_cover_every_pixel_once(height: int, width: int, size: int) -> None:
    grid = patch_grid(height, width, size)
    assert grid.shape == (height, width) and grid.dtype == torch.int64
    counts = torch.bincount(grid.reshape(-1))
    rows, cols = -(-height // size), -(-width // size)
    assert counts.numel() == rows * cols and bool((counts > 0).all())  # ids 0..R-1, each used
    assert int(counts.sum()) == height * width and int(counts.max()) <= size * size
    # a region is one rectangle: its pixels' bounding box holds exactly its count
    for region in range(counts.numel()):
        ys, xs = torch.nonzero(grid == region, as_tuple=True)
        box = (int(ys.max()) - int(ys.min()) + 1) * (int(xs.max()) - int(xs.min()) + 1)
        assert box == int(counts[region])


def test_superpixels_are_dense_deterministic_and_follow_edges() -> None:
    image = torch.zeros(3, 40, 60, dtype=torch.uint8)
    image[:, :, 30:] = 255  # two halves: no superpixel should straddle the edge
    unit = SuperpixelUnit(segments=12, compactness=5.0)
    first, again = unit.regions(image), unit.regions(image.clone())
    assert torch.equal(first, again) and first.shape == (40, 60) and first.dtype == torch.int64
    counts = torch.bincount(first.reshape(-1))
    assert bool((counts > 0).all()) and int(counts.sum()) == 40 * 60
    left, right = set(first[:, :30].unique().tolist()), set(first[:, 30:].unique().tolist())
    assert not left & right


@pytest.mark.parametrize(("options", "says"), [
    ({"size": 0}, "--unit-opt size=0"), ({"segments": 0}, "--unit-opt segments=0"),
])
def test_bad_unit_options(options: dict[str, int], says: str) -> None:
    cls = PatchUnit if "size" in options else SuperpixelUnit
    with pytest.raises(SegalError, match=says):
        cls(**options)


# -- per-region reduction and the streaming selection --------------------------------------


def test_reduce_regions_against_a_plain_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 6, 7, generator=gen)
    pixels[0, 0, 0] = torch.nan
    regions = torch.randint(0, 4, (2, 6, 7), generator=gen)
    regions[1, :, 5:] = -1  # padding
    for reduction in ("mean", "max", "top_q"):
        scores, areas = reduce_regions(pixels, regions, reduction, q=0.3)
        for b in range(2):
            for r in range(4):
                inside = regions[b] == r
                values = pixels[b][inside & torch.isfinite(pixels[b])]
                assert int(areas[b, r]) == int(inside.sum())
                if values.numel() == 0:
                    assert scores[b, r] == -torch.inf
                    continue
                if reduction == "mean":
                    want = values.mean()
                elif reduction == "max":
                    want = values.max()
                else:
                    take = max(1, int(torch.ceil(torch.tensor(values.numel() * 0.3 - 1e-9))))
                    want = values.sort(descending=True).values[:take].mean()
                assert torch.isclose(scores[b, r], want, atol=1e-6), (reduction, b, r)


def brute_force(scores: list[float], pixels: list[int], budget: int) -> list[int]:
    """The shortest prefix of one stable best-first ranking whose pixels reach budget."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    chosen, total = [], 0
    for i in order:
        if total >= budget:
            break
        chosen.append(i)
        total += pixels[i]
    return chosen


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0]), st.integers(1, 50)), min_size=1, max_size=60),
    st.integers(1, 400),
    st.lists(st.integers(1, 9), min_size=1, max_size=10),
)
def test_streaming_selection_equals_brute_force(
    candidates: list[tuple[float, int]], budget: int, batch_sizes: list[int]
) -> None:
    scores = [s for s, _ in candidates]
    pixels = [p for _, p in candidates]
    selection = RunningSelection(budget)
    start, step = 0, 0
    while start < len(candidates):  # offered in batches of varying size, in pool order
        end = min(len(candidates), start + batch_sizes[step % len(batch_sizes)])
        selection.offer(torch.tensor(scores[start:end]), torch.arange(start, end),
                        torch.zeros(end - start, dtype=torch.int64), torch.tensor(pixels[start:end]))
        start, step = end, step + 1
        assert selection.items.numel() <= len(candidates)
    assert [p.index for p in selection.picks()] == brute_force(scores, pixels, budget)


def test_selection_keeps_at_most_what_fills_the_budget() -> None:
    selection = RunningSelection(budget=100)
    for batch in range(50):  # 5000 regions of 10 pixels offered: memory stays ~ budget / 10
        selection.offer(torch.rand(100), torch.full((100,), batch), torch.arange(100), torch.full((100,), 10))
        assert selection.items.numel() <= 10
    assert sum(p.pixels for p in selection.picks()) == 100


# -- whole runs ----------------------------------------------------------------------------

REGION_ARGS = [
    "--dataset", "camvid", "--dataset-opt", "size=45x60", "--encoder", "tu-test_resnet", "--epochs", "1",
    "--min-steps", "2", "--steps-per-image", "0", "--batch-size", "4", "--crop-size", "32",
    "--query-unit", "patch", "--unit-opt", "size=16", "--seed-ratio", "0.05", "--query-ratio", "0.05",
    "--device", "cpu", "--no-progress",
]


def test_region_run_grows_by_the_query_each_round(camvid_mini: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert run_main(["run", *REGION_ARGS, "--data-path", str(camvid_mini), "--rounds", "3", "--out", str(out)]) == 0
    records = history(out)
    config = json.loads((out / "config.json").read_text())
    pool_pixels = config["resolved"]["pool_pixels"]
    assert config["resolved"]["size_unit"] == "pixels" and pool_pixels == 24 * 45 * 60
    fractions = [r["labeled_pixel_fraction"] for r in records]
    query = config["resolved"]["query_size"]
    for before, after in zip(fractions, fractions[1:]):  # one query, give or take one patch
        assert query <= (after - before) * pool_pixels < query + 16 * 16
    first = records[0]
    assert first["queried"] and len(first["queried_regions"]) == len(first["queried"])
    state = json.loads((out / "state.json").read_text())
    entries = state["ledger"].values()
    assert all(e["regions"] and e["mask_file"] for e in entries)
    assert sum(e["pixels"] for e in entries) == round(fractions[-1] * pool_pixels)
    # an image may gain regions later; a region is never labelled twice
    picked = [(sid, reg) for r in records for sid, reg in zip(r["queried"], r["queried_regions"])]
    assert len(picked) == len(set(picked))
    # the report plots region runs against the labelled pixel fraction by itself
    from segal_core.report import write_report

    rows = write_report([out], tmp_path / "report", metric="val_miou")
    assert rows[0]["x"] == "pixels" and rows[0]["final_fraction"] == pytest.approx(fractions[-1])
    assert write_report([out], tmp_path / "report2", metric="val_miou", x="images")[0]["x"] == "images"


def test_region_run_from_python_with_superpixels_and_whole_image_seed(camvid_mini: Path, tmp_path: Path) -> None:
    config = RunConfig(
        dataset="camvid", data_path=str(camvid_mini), dataset_options={"size": "45x60"}, strategy="random",
        query_unit="superpixel", unit_options={"segments": 20}, seed_unit="image", seed_ratio=0.1,
        query_pixels=2000, rounds=2, device="cpu", progress=False, out=str(tmp_path / "r"),
        model_options={"encoder": "tu-test_resnet", "epochs": 1, "min_steps": 1, "steps_per_image": 0,
                       "crop_size": 32, "batch_size": 4},
    )
    records = run_cycle(config)
    ledger = json.loads((tmp_path / "r" / "state.json").read_text())["ledger"]
    seeded = [e for e in ledger.values() if e["round"] == -1]
    assert seeded and all("regions" not in e and e["mask_file"] is None for e in seeded)  # whole images
    assert 2000 <= sum(e["pixels"] for e in ledger.values() if e["round"] == 0) < 2000 + 45 * 60
    assert records[1]["labeled_pixel_fraction"] > records[0]["labeled_pixel_fraction"]
    assert len(list((tmp_path / "r" / "regions").rglob("*.png"))) >= 20  # maps cached on disk


class WholeImagesOnly(Strategy):
    name = "whole_only"

    def score(self, ctx: Any) -> torch.Tensor:
        return torch.zeros(len(ctx.pool))


class WholeImagesPlugin:
    @hookimpl
    def segal_register_strategies(self) -> list[type]:
        return [WholeImagesOnly]


def test_a_strategy_without_regions_and_bad_sizes_are_one_line(tmp_path: Path, camvid_mini: Path) -> None:
    plugins = load_plugins(extra=[("segal_whole", WholeImagesPlugin())])
    base = dict(dataset="camvid", data_path=str(camvid_mini), query_unit="patch", device="cpu",
                progress=False, model_options={"encoder": "tu-test_resnet"})
    with pytest.raises(SegalError, match="--strategy whole_only scores whole images only; .* implement score_regions"):
        run_cycle(RunConfig(**base, strategy="whole_only", out=str(tmp_path / "a")), plugins=plugins)
    with pytest.raises(SegalError, match="--query-size counts images"):
        run_cycle(RunConfig(**base, query_size=3, out=str(tmp_path / "b")))
    with pytest.raises(SegalError, match="--query-pixels needs a region unit"):
        run_cycle(RunConfig(**{**base, "query_unit": "image"}, query_pixels=100, out=str(tmp_path / "c")))
    with pytest.raises(SegalError, match="--unit-opt sise=3: 'patch' takes no option 'sise'"):
        run_cycle(RunConfig(**base, unit_options={"sise": "3"}, out=str(tmp_path / "d")))
    with pytest.raises(SegalError, match="--query-unit hexagon: unknown; valid names: "):
        run_cycle(RunConfig(**{**base, "query_unit": "hexagon"}, out=str(tmp_path / "e")))
    assert not any((tmp_path / n).exists() for n in "abcde")


@pytest.mark.parametrize("at", ["score:1", "commit:1"])  # commit:1: after round 1 labelled, before state.json
def test_region_run_killed_and_resumed_makes_the_same_queries(camvid_mini: Path, tmp_path: Path, at: str) -> None:
    args = [*REGION_ARGS, "--data-path", str(camvid_mini), "--strategy", "entropy", "--rounds", "3"]
    reference = tmp_path / "reference"
    assert run_main(["run", *args, "--out", str(reference)]) == 0
    plugin = make_distribution(tmp_path / "pause", "segal-test-pause", {"segal_test_pause": PAUSE_PLUGIN},
                               {"segal_test_pause": "segal_test_pause"})
    out, mark = tmp_path / "killed", tmp_path / "killed.mark"
    proc = segal_process("run", *args, "--out", str(out), env={
        "PYTHONPATH": str(plugin), "SEGAL_TEST_PAUSE_AT": at, "SEGAL_TEST_MARK": str(mark)})
    deadline = time.monotonic() + 240
    while not mark.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert json.loads((out / "state.json").read_text())["completed_rounds"] == 1
    assert run_main(["run", "--resume", str(out)]) == 0
    mine, theirs = history(out), history(reference)
    for key in ("queried", "queried_regions", "labeled_pixel_fraction", "labeled"):
        assert [r[key] for r in mine] == [r[key] for r in theirs], key
    same = json.loads((out / "state.json").read_text())["ledger"]
    assert same == json.loads((reference / "state.json").read_text())["ledger"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted(p.name for p in (reference / "labels").iterdir())


class Halves(QueryUnit):
    """A third-party unit: the left and right halves of every image."""

    name = "halves"

    def __init__(self) -> None:
        pass

    def regions(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        return (torch.arange(width) >= width // 2).long().expand(height, width).clone()


class HalvesPlugin:
    @hookimpl
    def segal_register_units(self) -> list[type]:
        return [Halves]


def test_a_plugin_registers_its_own_unit_through_segal_register_units(camvid_mini: Path, tmp_path: Path) -> None:
    plugins = load_plugins(extra=[("segal_halves", HalvesPlugin())])
    assert "halves" in plugins.registry.names("units")
    config = RunConfig(
        dataset="camvid", data_path=str(camvid_mini), dataset_options={"size": "45x60"}, strategy="entropy",
        query_unit="halves", seed_ratio=0.05, query_ratio=0.05, rounds=2, device="cpu", progress=False,
        out=str(tmp_path / "r"), model_options={"encoder": "tu-test_resnet", "epochs": 1, "min_steps": 1,
                                                "steps_per_image": 0, "crop_size": 32, "batch_size": 4},
    )
    records = run_cycle(config, plugins=plugins)
    assert set(records[0]["queried_regions"]) <= {0, 1} and records[0]["queried"]
    ledger = json.loads((tmp_path / "r" / "state.json").read_text())["ledger"]
    assert all(e["pixels"] in (45 * 30, 45 * 60) for e in ledger.values())  # one or both halves


def test_region_study_plans_equal_budgets_and_summarises() -> None:
    import importlib.util
    import sys

    path = Path(__file__).parents[1] / "benchmarks" / "region_curves.py"
    spec = importlib.util.spec_from_file_location("region_curves", path)
    assert spec and spec.loader
    study = importlib.util.module_from_spec(spec)
    sys.modules["region_curves"] = study  # dataclasses look their module up there
    spec.loader.exec_module(study)
    args = study.parse_args(["--out", "/tmp/x", "--seeds", "2", "--arms", "image-random,patch-entropy,image-coreset-entropy"])
    jobs = study.plan(args)
    assert [j.name for j in jobs] == ["full", "image-random-s0", "patch-entropy-s0", "image-coreset-entropy-s0",
                                      "image-random-s1", "patch-entropy-s1", "image-coreset-entropy-s1"]
    for job in jobs[1:]:  # every arm: the same pixel budgets and schedule
        argv = " ".join(job.argv)
        assert "--seed-ratio 0.02 --query-ratio 0.03 --rounds 7" in argv and "--min-steps 100" in argv
    assert "--min-steps 700" in " ".join(jobs[0].argv)  # the full run: the same total steps
    record = lambda x, y: {"labeled_pixel_fraction": x, "val_miou": y}  # noqa: E731
    results = [
        {"arm": "full", "records": [record(1.0, 0.5)]},
        {"arm": "a", "records": [record(0.02, 0.2), record(0.05, 0.46)]},
        {"arm": "a", "records": [record(0.02, 0.3), record(0.05, 0.44)]},
    ]
    summary = study.summarise(results)
    arm = summary["arms"]["a"]
    assert summary["target_90pct"] == pytest.approx(0.45)
    assert arm["val_miou"] == [0.25, 0.45] and arm["reaches_90pct_at"] == pytest.approx(0.05)
    assert arm["area"] == pytest.approx(0.35) and arm["seed_spread"] == pytest.approx(0.06)
