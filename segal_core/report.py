"""Learning curves: the plot in each run folder and ``segal report``."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SegalError
from .rundir import RunDir, atomic_write

__all__ = ["RunSummary", "area_under_curve", "load_runs", "plot_runs", "write_report"]

METRICS = ("test_miou", "val_miou")


def _points(history: Sequence[dict[str, Any]], metric: str) -> list[tuple[float, float]]:
    pts = [(r["labeled_fraction"], r.get(metric)) for r in history]
    return [(x, y) for x, y in pts if y is not None and not math.isnan(y)]


def area_under_curve(points: Sequence[tuple[float, float]]) -> float | None:
    """Trapezoidal area under mIoU(labelled fraction), divided by the fraction range
    covered: the curve's mean mIoU, comparable between runs over the same range.
    A single point gives its own value."""
    pts = sorted(points)
    if not pts:
        return None
    if len(pts) == 1 or pts[-1][0] == pts[0][0]:
        return pts[0][1]
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(pts, pts[1:]))
    return area / (pts[-1][0] - pts[0][0])


@dataclass
class RunSummary:
    """One run folder as the report sees it."""

    path: Path
    label: str
    full: bool
    history: list[dict[str, Any]]


def load_runs(paths: Sequence[Path]) -> list[RunSummary]:
    out: list[RunSummary] = []
    for path in paths:
        rundir = RunDir.open_existing(Path(path))
        config = rundir.config()
        history = rundir.history(rundir.state())
        if not history:
            raise SegalError(f"{path}: the run has no completed round yet")
        full = bool(config.get("full"))
        label = "full data" if full else f"{config.get('strategy')} (seed {config.get('seed')})"
        out.append(RunSummary(Path(path), label, full, history))
    return out


def plot_runs(
    runs: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    path: Path,
    *,
    metric: str = "test_miou",
    title: str = "",
    full: Sequence[tuple[str, float]] = (),
) -> None:
    """mIoU against labelled fraction, one line per run; ``full`` baselines drawn as
    horizontal lines. Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for label, history in runs:
        pts = _points(history, metric)
        if pts:
            xs, ys = zip(*pts)
            ax.plot([100 * x for x in xs], ys, marker="o", markersize=3, label=label)
    for label, value in full:
        ax.axhline(value, linestyle="--", color="black", linewidth=1, label=label)
    ax.set_xlabel("labelled fraction of the pool (%)")
    ax.set_ylabel(metric.replace("_", " ").replace("miou", "mIoU"))
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(Path(path), buf.getvalue())


def write_report(paths: Sequence[Path], out: Path, *, metric: str = "test_miou") -> list[dict[str, Any]]:
    """Plot and tabulate several runs into ``out/report.png``, ``report.md``,
    ``report.csv`` and ``report.html``; returns the table rows."""
    if metric not in METRICS:
        raise SegalError(f"--metric {metric}: must be one of {', '.join(METRICS)}")
    runs = load_runs(paths)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SegalError(f"--out {out}: is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    curves = [r for r in runs if not r.full]
    baselines = [(r.label, r.history[-1][metric]) for r in runs if r.full and r.history[-1].get(metric) is not None]
    rows: list[dict[str, Any]] = []
    for r in runs:
        pts = _points(r.history, metric)
        last = pts[-1] if pts else (None, None)
        rows.append(
            {
                "run": str(r.path),
                "label": r.label,
                "rounds": len(r.history),
                "final_fraction": last[0],
                f"final_{metric}": last[1],
                "auc": area_under_curve(pts),
            }
        )
    plot_runs([(r.label, r.history) for r in curves], out / "report.png", metric=metric, full=baselines)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "report.csv", buf.getvalue().encode())
    fmt = lambda v: "" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [
        f"# Learning curves ({metric})",
        "",
        "AUC: area under mIoU against labelled fraction, divided by the fraction range (the curve's mean).",
        "",
        "![curves](report.png)",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
    ]
    lines += ["| " + " | ".join(fmt(v) for v in row.values()) + " |" for row in rows]
    atomic_write(out / "report.md", ("\n".join(lines) + "\n").encode())
    from .report_html import write_html  # report.html: curves, heat maps, thumbnails (issue 17)

    write_html(runs, out / "report.html", metric=metric)
    return rows
