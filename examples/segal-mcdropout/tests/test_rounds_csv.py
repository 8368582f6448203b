"""``mc-rounds.csv``: rows from round records, rewritten whole."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from segal_mcdropout import FILE_NAME, MCEntropy, segal_round_end
from segal_mcdropout.rounds_csv import COLUMNS


def record(round_: int, scores: list[float | None]) -> dict[str, Any]:
    return {
        "round": round_,
        "labeled": 10 * (round_ + 1),
        "labeled_fraction": 0.1 * (round_ + 1),
        "val_miou": 0.5,
        "test_miou": None,
        "queried": [f"id{i}" for i in range(len(scores))],
        "query_scores": scores,
        "seconds": {"score": 1.25},
    }


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_one_row_per_round_and_resume_safe(tmp_path: Path) -> None:
    history: list[dict[str, Any]] = []
    run = SimpleNamespace(strategy=MCEntropy(), out=tmp_path, history=history)
    for r, scores in enumerate(([0.5, 0.25], [1.0, None], [])):
        rec = record(r, scores)
        history.append(rec)
        segal_round_end(run=run, record=rec)
    rows = read(tmp_path / FILE_NAME)
    assert list(rows[0]) == list(COLUMNS)
    assert [row["round"] for row in rows] == ["0", "1", "2"]
    assert rows[0]["mean_query_score"] == "0.375" and rows[0]["max_query_score"] == "0.5"
    assert rows[1]["mean_query_score"] == "1"
    assert rows[2]["queried"] == "0" and rows[2]["mean_query_score"] == ""
    assert rows[0]["test_miou"] == "" and rows[0]["score_seconds"] == "1.25"
    # the hook again for the last round (a resumed run): no duplicate row
    segal_round_end(run=run, record=history[-1])
    assert len(read(tmp_path / FILE_NAME)) == 3
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]


def test_nothing_written_for_other_strategies(tmp_path: Path) -> None:
    run = SimpleNamespace(strategy=object(), out=tmp_path, history=[])
    segal_round_end(run=run, record=record(0, []))
    assert not list(tmp_path.iterdir())
