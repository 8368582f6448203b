"""The GPU benchmark scripts run on the CPU: ``benchmarks/gpu_cycle.py`` (issue 9) and
``benchmarks/camvid_curves.py`` (issue 10), plus the pure parts of the curves script
(schedule, job plan, summary). Whole ``--quick`` runs are ``slow``."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from segal_core.config import RunConfig
from segal_smp import SmpOptions

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


def _module(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module(name)


@pytest.fixture
def curves(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _module("camvid_curves", monkeypatch)


# -- gpu_cycle.py ----------------------------------------------------------------------

GPU_CYCLE_KEYS = {"benchmark", "header", "settings", "scoring", "forward_in_memory", "training", "round",
                  "ratios", "total_seconds"}


def _check_gpu_cycle(results: dict[str, Any], images: int, with_round: bool) -> None:
    assert GPU_CYCLE_KEYS <= set(results)
    header = results["header"]
    assert {"date", "machine", "command", "versions"} <= set(header)
    assert header["versions"]["torch"]
    scoring = results["scoring"]
    assert scoring["images"] == images
    assert set(scoring["img_per_s"]) == {"forward_from_disk", "random", "least_confidence", "margin", "entropy"}
    assert all(v > 0 for v in scoring["img_per_s"].values())
    assert results["forward_in_memory"]["img_per_s"]["fp32"] > 0
    training = results["training"]
    assert training["project"]["img_per_s"] > 0 and training["reference_fp32_batch4"]["img_per_s"] > 0
    assert math.isclose(
        training["speedup"], training["project"]["img_per_s"] / training["reference_fp32_batch4"]["img_per_s"],
        rel_tol=0.01,
    )
    ratios = results["ratios"]["scoring_to_forward"]
    assert set(ratios) == {"random", "least_confidence", "margin", "entropy"}
    if with_round:
        assert {"train", "evaluate", "score", "select", "label", "total"} <= set(results["round"]["seconds"])
        assert results["round"]["queried"] > 0
    else:
        assert results["round"] is None


def test_gpu_cycle_tiny_cpu_run(
    monkeypatch: pytest.MonkeyPatch, camvid_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gpu_cycle = _module("gpu_cycle", monkeypatch)
    out = tmp_path / "figures.json"
    argv = ["--quick", "--data", str(camvid_mini), "--images", "3", "--batch-size", "2", "--forward-batch", "2",
            "--forward-iters", "1", "--train-images", "2", "--reference-steps", "1", "--scale", "0.1",
            "--skip-round", "--json", str(out)]
    assert gpu_cycle.main(argv) == 0
    results = json.loads(out.read_text())
    _check_gpu_cycle(results, images=3, with_round=False)
    printed = capsys.readouterr().out
    table = printed[printed.index("figure") :]  # the table comes last
    for row in ("scoring entropy", "scoring margin", "forward fp32", "training speed-up", "total benchmark seconds"):
        assert row in table
    assert "--skip-round" in results["header"]["command"]


def test_gpu_cycle_rejects_a_missing_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gpu_cycle = _module("gpu_cycle", monkeypatch)
    assert gpu_cycle.main(["--quick", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --data") and len(err.strip().splitlines()) == 1


# -- camvid_curves.py: schedule, plan, summary --------------------------------------------


def test_steps_grow_with_the_labelled_set(curves: ModuleType) -> None:
    assert curves.steps_for(18, 100, 3.0) == 154
    assert curves.steps_for(144, 100, 3.0) == 532
    args = curves.parse_args(["--out", "x"])
    config = curves.plan_jobs(args)[0].config["model_options"]
    assert (config["min_steps"], config["steps_per_image"]) == (100, 3.0)
    # the run's model turns them into whole epochs: 18 images in batches of 16 are
    # 2 batches an epoch -> 77 epochs = 154 steps; 367 images: 23 batches, 1201 steps
    options = SmpOptions(epochs=1, min_steps=100, steps_per_image=3.0, batch_size=16)
    assert options.epochs_for(18, 2) == 77
    assert options.epochs_for(367, 23) == math.ceil(1201 / 23)


def test_plan_runs_full_first_then_whole_seeds(curves: ModuleType, tmp_path: Path) -> None:
    args = curves.parse_args(["--out", str(tmp_path / "c"), "--seeds", "3,4", "--strategies", "random,entropy"])
    jobs = curves.plan_jobs(args)
    assert [j.name for j in jobs] == ["full-s3", "random-s3", "entropy-s3", "random-s4", "entropy-s4"]
    for job in jobs:
        config = RunConfig(**job.config)  # every key is a RunConfig setting
        config.validate()
        model = config.model_options
        assert model["encoder"] == "resnet34" and model["encoder_weights"] is None
        assert (config.seed_ratio, config.query_ratio, config.rounds) == (0.05, 0.05, 8)
        assert (model["batch_size"], model["crop_size"]) == (16, 320)
        assert Path(config.out or "").parent == tmp_path / "c" / "runs"
    assert jobs[0].config["full"] and jobs[0].strategy == "full"
    assert jobs[2].config["strategy_options"] == {"reduction": "mean"}
    assert jobs[1].config["strategy_options"] == {}


def test_plan_counts_steps(curves: ModuleType, tmp_path: Path) -> None:
    args = curves.parse_args(["--out", str(tmp_path), "--seeds", "0", "--strategies", "random", "--rounds", "2"])
    jobs = curves.plan_jobs(args)
    # pool 100: full 100 + 3 * 100 = 400; random: 5 and 10 labelled -> 115 + 130
    assert curves.planned_steps(jobs, 100) == 400 + 115 + 130


def _history(fractions: list[float], mious: list[float]) -> list[dict[str, Any]]:
    return [{"labeled_fraction": f, "val_miou": m} for f, m in zip(fractions, mious)]


def test_summary_means_spreads_and_reach(curves: ModuleType) -> None:
    xs = [0.1, 0.2, 0.3, 0.4]
    histories = {
        "full-s0": ("full", _history([1.0], [0.60])),
        "random-s0": ("random", _history(xs, [0.30, 0.40, 0.50, 0.56])),
        "random-s1": ("random", _history(xs, [0.30, 0.40, 0.50, 0.54])),
        "entropy-s0": ("entropy", _history(xs, [0.40, 0.59, 0.58, 0.60])),
        "entropy-s1": ("entropy", _history(xs, [0.40, 0.56, 0.575, 0.60])),
        "margin-s0": ("margin", _history(xs[:2], [0.40, 0.50])),  # stopped at a deadline
    }
    summary = curves.summarise(histories, rounds=4)
    assert summary["full_miou"] == pytest.approx(0.60)
    assert summary["threshold"] == pytest.approx(0.57)
    rand, ent, mar = (summary["strategies"][k] for k in ("random", "entropy", "margin"))
    # trapezoids over 0.1..0.4, divided by the range 0.3
    auc_r0 = (0.35 + 0.45 + 0.53) * 0.1 / 0.3
    auc_r1 = (0.35 + 0.45 + 0.52) * 0.1 / 0.3
    assert rand["auc_per_run"]["random-s0"] == pytest.approx(auc_r0)
    assert rand["auc_mean"] == pytest.approx((auc_r0 + auc_r1) / 2)
    assert rand["auc_std"] == pytest.approx(abs(auc_r0 - auc_r1) / math.sqrt(2))
    assert rand["reach_fraction_mean_curve"] is None
    # entropy's mean curve: 0.40, 0.575, 0.5775, 0.60 -> reaches 0.57 at 0.2
    assert ent["reach_fraction_mean_curve"] == pytest.approx(0.2)
    assert ent["reach_fraction_per_run"] == {"entropy-s0": 0.2, "entropy-s1": 0.3}
    root2 = math.sqrt(2)
    assert [p["std"] for p in ent["mean_curve"]] == pytest.approx([0.0, 0.03 / root2, 0.005 / root2, 0.0])
    # an unfinished run counts in the curve, not in the AUC statistics
    assert mar["complete_runs"] == [] and mar["auc_mean"] is None
    targets = summary["targets"]
    assert targets["entropy_beats_random_by_spread"] is True
    assert targets["entropy_auc_gap_over_random"] == pytest.approx(ent["auc_mean"] - rand["auc_mean"])
    assert targets["entropy_reaches_95pct_by_40pct"] is True
    assert "margin_beats_random_by_spread" not in targets
    slow = dict(histories, **{f"entropy-s{i}": ("entropy", _history(xs, [0.3, 0.4, 0.5, 0.5])) for i in (0, 1)})
    assert curves.summarise(slow, rounds=4)["targets"]["entropy_reaches_95pct_by_40pct"] is False


def test_summary_without_a_baseline_reaches_nothing(curves: ModuleType) -> None:
    summary = curves.summarise({"random-s0": ("random", _history([0.1, 0.2], [0.3, 0.4]))}, rounds=2)
    assert summary["full_miou"] is None
    assert summary["strategies"]["random"]["reach_fraction_mean_curve"] is None
    assert summary["strategies"]["random"]["auc_std"] is None  # one seed: no spread
    assert "entropy_reaches_95pct_by_40pct" not in summary["targets"]


def test_curves_refuses_a_used_folder(curves: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old.txt").write_text("x")
    assert curves.main(["--quick", "--out", str(tmp_path)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


# -- whole --quick runs (slow) --------------------------------------------------------------


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(args, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_gpu_cycle_quick(camvid_mini: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = _run([sys.executable, "benchmarks/gpu_cycle.py", "--quick", "--data", str(camvid_mini),
                 "--json", str(out)])
    assert done.returncode == 0, done.stderr
    _check_gpu_cycle(json.loads(out.read_text()), images=8, with_round=True)
    assert "round phase score (s)" in done.stdout


def _check_curves(folder: Path, names: list[str]) -> dict[str, Any]:
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["strategies"]) == {"random", "least_confidence", "margin", "entropy"}
    assert summary["full_miou"] is not None
    for name in names:
        history = (folder / "runs" / name / "history.jsonl").read_text().splitlines()
        assert len(history) == (1 if name.startswith("full") else 3)
    for strategy in summary["strategies"].values():
        assert strategy["auc_mean"] is not None and strategy["auc_std"] is not None
    assert (folder / "report" / "report.png").is_file() and (folder / "curves_mean.png").is_file()
    assert "| entropy |" in (folder / "summary.md").read_text()
    return summary


@pytest.mark.slow
def test_camvid_curves_quick(camvid_mini: Path, tmp_path: Path) -> None:
    folder = tmp_path / "curves"
    done = _run([sys.executable, "benchmarks/camvid_curves.py", "--quick", "--data", str(camvid_mini),
                 "--out", str(folder)])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    names = ["full-s0"] + [f"{s}-s{seed}" for seed in (0, 1) for s in ("random", "least_confidence", "margin", "entropy")]
    summary = _check_curves(folder, names)
    assert all(j["status"] == "done" for j in summary["jobs"].values())


@pytest.mark.slow
def test_device_run_script_quick(camvid_mini: Path, tmp_path: Path) -> None:
    if camvid_mini.resolve() != (REPO.parent / "shared" / "data" / "camvid-mini").resolve():
        pytest.skip("device_run.sh quick reads ../shared/data/camvid-mini")
    out = tmp_path / "out"
    env_python = {"PYTHON": sys.executable, "OUT": str(out), "SEGAL_SITE": str(tmp_path / "site"),
                  "SEGAL_CURVES_ARGS": "--seeds 0", "SEGAL_BUDGET_S": "900"}
    done = _run(["bash", "benchmarks/device_run.sh", "all", "quick"], env=env_python)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    produced = sorted(p.name for p in out.iterdir())
    assert produced == sorted(["gpu_cycle.json", "gpu_cycle.log", "curves.log", "summary.json", "summary.md",
                               "curves_mean.png", "report.png", "curves.tgz"])
    assert all(p.is_file() for p in out.iterdir())  # nothing in sub-folders: it all comes back
    listing = _run(["tar", "-tzf", str(out / "curves.tgz")]).stdout
    assert "runs/entropy-s0/history.jsonl" in listing and ".safetensors" not in listing


def test_builtin_plugins_without_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    # as on a GPU machine where the project is not pip-installed: no segal entry point
    import segal_core.plugins

    benchlib = _module("benchlib", monkeypatch)
    monkeypatch.setattr(segal_core.plugins, "_entry_points", list)
    assert segal_core.plugins.load_plugins().registry.names("datasets") == []
    registry = benchlib.load_builtin_plugins().registry
    assert registry.dataset("camvid").name == "camvid"
    assert registry.model("unet").name == "unet"
    assert set(registry.names("strategies")) >= {"random", "least_confidence", "margin", "entropy"}
    assert registry.oracle("ground_truth") is not None
