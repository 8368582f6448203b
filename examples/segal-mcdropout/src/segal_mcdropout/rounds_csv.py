"""``mc-rounds.csv``: one row of figures per completed round, in the run folder."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "FILE_NAME", "csv_row", "write_rounds_csv"]

#: The file written into the run directory.
FILE_NAME = "mc-rounds.csv"
#: Its columns, in order.
COLUMNS = (
    "round",
    "labeled",
    "labeled_fraction",
    "val_miou",
    "test_miou",
    "queried",
    "mean_query_score",
    "max_query_score",
    "score_seconds",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def csv_row(record: dict[str, Any]) -> dict[str, str]:
    """The CSV row of one round's record (as in ``history.jsonl``)."""
    scores = [s for s in record.get("query_scores", []) if s is not None]
    return {
        "round": _cell(record["round"]),
        "labeled": _cell(record["labeled"]),
        "labeled_fraction": _cell(record["labeled_fraction"]),
        "val_miou": _cell(record.get("val_miou")),
        "test_miou": _cell(record.get("test_miou")),
        "queried": _cell(len(record.get("queried", []))),
        "mean_query_score": _cell(sum(scores) / len(scores) if scores else None),
        "max_query_score": _cell(max(scores) if scores else None),
        "score_seconds": _cell(record.get("seconds", {}).get("score")),
    }


def write_rounds_csv(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Write every record as one row, replacing ``path`` atomically (rewritten whole
    each round, so a resumed run never duplicates a row)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(csv_row(record))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
