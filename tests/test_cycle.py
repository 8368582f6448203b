"""The active-learning cycle end to end: records, determinism, resume, report."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from segal_core import SegalError
from segal_core.cli import run_main
from segal_core.cycle import resume_run, run_cycle
from segal_core.report import area_under_curve, write_report

from cycle_helpers import TINY_ARGS, history, segal_process, snapshot, tiny_config

RECORD_KEYS = {"round", "labeled", "labeled_fraction", "labeled_pixels", "val_miou", "test_miou",
               "per_class_iou", "queried", "query_scores", "seconds"}


def test_run_until_the_pool_is_exhausted(tmp_path: Path) -> None:
    out = tmp_path / "run"
    records = run_cycle(tiny_config(out))
    # pool 16, seed 4, 4 per query: rounds at 4, 8, 12, 16 labelled
    assert [r["labeled"] for r in records] == [4, 8, 12, 16]
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    assert records == history(out)
    for r in records:
        assert RECORD_KEYS <= set(r)
        assert r["labeled_fraction"] == r["labeled"] / 16
        assert len(r["per_class_iou"]) == 5
        assert set(r["seconds"]) >= {"train", "evaluate", "total"}
    queried = [sid for r in records for sid in r["queried"]]
    assert len(queried) == len(set(queried)) == 12
    assert records[-1]["queried"] == []
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and state["completed_rounds"] == 4
    assert set(state["ledger"]) == {f"train-{i:05d}" for i in range(16)} or len(state["ledger"]) == 16
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "curve.png", "history.jsonl", "model-r003.safetensors", "state.json", "thumbnails"]
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["pool_size"] == 16 and config["versions"]["torch"]


def test_scores_are_sorted_and_labelled_pixels_grow(tmp_path: Path) -> None:
    records = run_cycle(tiny_config(tmp_path / "r", rounds=2))
    assert len(records) == 2
    scores = records[0]["query_scores"]
    assert scores == sorted(scores, reverse=True) and len(scores) == 4
    assert records[1]["labeled_pixels"] > records[0]["labeled_pixels"] > 0


def test_same_seed_same_queries_other_seed_differs(tmp_path: Path) -> None:
    a = run_cycle(tiny_config(tmp_path / "a", rounds=2, strategy="random"))
    b = run_cycle(tiny_config(tmp_path / "b", rounds=2, strategy="random"))
    c = run_cycle(tiny_config(tmp_path / "c", rounds=2, strategy="random", seed=1))
    assert a[0]["queried"] == b[0]["queried"]
    assert a[0]["val_miou"] == b[0]["val_miou"]
    assert a[0]["queried"] != c[0]["queried"]


def test_budget_and_full_baseline(tmp_path: Path) -> None:
    budget = run_cycle(tiny_config(tmp_path / "b", budget=0.5))
    assert [r["labeled"] for r in budget] == [4, 8]
    full = run_cycle(tiny_config(tmp_path / "f", full=True))
    assert len(full) == 1 and full[0]["labeled_fraction"] == 1.0 and full[0]["queried"] == []


def test_finetune_resume_and_finished_run(tmp_path: Path) -> None:
    out = tmp_path / "ft"
    run_cycle(tiny_config(out, rounds=2, retrain="finetune"))
    before = snapshot(out)
    again = resume_run(out)
    assert len(again) == 2
    assert snapshot(out) == before


def test_resume_with_other_options_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    run_cycle(tiny_config(out, rounds=1))
    before = snapshot(out)
    assert run_main(["run", "--resume", str(out), "--strategy", "margin"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --resume {out}: options differ from the run's config.json: strategy")
    assert snapshot(out) == before
    with pytest.raises(SegalError, match="not a SegAL run folder"):
        resume_run(tmp_path)


def _kill_after_rounds(out: Path, rounds: int, extra: list[str]) -> None:
    proc = segal_process("run", *TINY_ARGS, *extra, "--out", str(out))
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            state = out / "state.json"
            if state.exists() and json.loads(state.read_text())["completed_rounds"] >= rounds:
                break
            if proc.poll() is not None:
                pytest.fail(f"run ended before it could be killed: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.05)
        time.sleep(0.3)  # into the next round's training
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=60)


def test_sigkill_mid_round_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    extra = ["--strategy", "entropy", "--rounds", "4"]
    killed = tmp_path / "killed"
    _kill_after_rounds(killed, 1, extra)
    done = json.loads((killed / "state.json").read_text())["completed_rounds"]
    assert 1 <= done < 4
    assert run_main(["run", "--resume", str(killed), "--no-progress"]) == 0
    resumed = history(killed)
    straight = run_cycle(tiny_config(tmp_path / "straight", strategy="entropy", rounds=4))
    assert [r["round"] for r in resumed] == [0, 1, 2, 3]
    queried = [sid for r in resumed for sid in r["queried"]]
    assert len(queried) == len(set(queried))
    assert [r["queried"] for r in resumed] == [r["queried"] for r in straight]
    assert not list(killed.glob(".*.tmp"))


def test_report_draws_two_runs_and_a_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = []
    for strategy in ("random", "entropy"):
        runs.append(tmp_path / strategy)
        run_cycle(tiny_config(runs[-1], strategy=strategy, rounds=3))
    runs.append(tmp_path / "full")
    run_cycle(tiny_config(runs[-1], full=True))
    out = tmp_path / "report"
    assert run_main(["report", *map(str, runs), "--out", str(out)]) == 0
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (out / "report.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("run,label,rounds")
    md = (out / "report.md").read_text()
    assert "random (seed 0)" in md and "entropy (seed 0)" in md and "full data" in md
    table = write_report(runs[:2], tmp_path / "r2")
    for row, run in zip(table, runs[:2]):
        pts = [(r["labeled_fraction"], r["test_miou"]) for r in history(run)]
        assert row["auc"] == pytest.approx(area_under_curve(pts))


def test_area_under_curve() -> None:
    assert area_under_curve([(0.1, 0.2), (0.3, 0.4)]) == pytest.approx(0.3)
    assert area_under_curve([(0.5, 0.7)]) == 0.7
    assert area_under_curve([]) is None


@pytest.mark.parametrize(("num_classes", "expected"), [(None, 11), (12, 12)])
def test_camvid_mini_through_the_api(camvid_mini: Path, tmp_path: Path, num_classes: int | None,
                                     expected: int) -> None:
    from segal_core.config import RunConfig

    config = RunConfig(dataset="camvid", data_path=str(camvid_mini), num_classes=num_classes, rounds=1, dataset_options={"size": "90x120"}, device="cpu", progress=False, out=str(tmp_path / "r"), model_options={"encoder": "tu-test_resnet", "epochs": 1, "min_steps": 0, "crop_size": 64, "batch_size": 4})
    (record,) = run_cycle(config)
    assert len(record["per_class_iou"]) == expected
    assert ("void" in record["per_class_iou"]) == (expected == 12)
    assert record["test_split"] == "test" and record["pool_size"] == 24


@pytest.mark.slow
def test_camvid_mini_through_the_cli_as_in_the_issue(camvid_mini: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert run_main(["run", "--dataset", "camvid", "--data-path", str(camvid_mini), "--encoder", "resnet18",
                     "--encoder-weights", "none", "--epochs", "1", "--rounds", "1", "--crop-size", "128",
                     "--no-progress", "--out", str(out)]) == 0
    assert len(history(out)[0]["per_class_iou"]) == 11


def test_original_segal_command_offline(camvid_mini: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The command of the original README either runs or stops with one line about
    the weights (this machine is offline)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "r"
    status = run_main(["run", "--dataset", "CamVid", "--data_path", str(camvid_mini), "--model_name", "Unet",
                       "--encoder", "resnet34", "--encoder_weights", "imagenet", "--num_classes", "12",
                       "--strategy", "LeastConfidence", "--seed_ratio", "0.02", "--query_ratio", "0.02",
                       "--n_epoch", "1", "--out", str(out)])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not be downloaded" in err[0] and "--encoder-weights none" in err[0]
    assert not out.exists()


def test_resume_accepts_options_given_again_and_refuses_out(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert run_main(["run", *TINY_ARGS, "--rounds", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    # repeating one of the run's dataset options (and the tuple/list difference) is no change
    assert run_main(["run", "--resume", str(out), "--dataset-opt", "size=32", "--no-progress"]) == 0
    assert "already complete" in capsys.readouterr().err
    assert run_main(["run", "--resume", str(out), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "drop --out" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["blocked"] == []


def test_resume_refuses_a_changed_dataset(camvid_mini: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    data = tmp_path / "CamVid"
    for sub in ("train", "trainannot", "val", "valannot"):
        (data / sub).mkdir(parents=True)
        for f in sorted((camvid_mini / sub).iterdir())[:3]:
            shutil.copy(f, data / sub / f.name)
    out = tmp_path / "r"
    args = ["run", "--dataset", "camvid", "--data-path", str(data), "--encoder", "tu-test_resnet", "--epochs", "1",
            "--min-steps", "0", "--batch-size", "2", "--rounds", "1", "--dataset-opt", "size=90x120",
            "--no-progress", "--out", str(out)]
    assert run_main(args) == 0
    extra = sorted((camvid_mini / "train").iterdir())[5]
    shutil.copy(extra, data / "train" / extra.name)
    shutil.copy(camvid_mini / "trainannot" / extra.name, data / "trainannot" / extra.name)
    capsys.readouterr()
    assert run_main(["run", "--resume", str(out)]) == 2
    assert "the dataset changed since the run started (pool_size 3 -> 4)" in capsys.readouterr().err
