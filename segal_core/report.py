"""Learning curves: the plot in each run folder and ``segal report``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SegalError
from .rundir import RunDir, atomic_write

__all__ = ["X_AXES", "RunSummary", "area_under_curve", "choose_axis", "load_runs", "plot_runs", "write_report"]

METRICS = ("test_miou", "val_miou")


#: ``--x``: the record key and the axis label of each x axis.
X_AXES = {
    "images": ("labeled_fraction", "labelled fraction of the pool (%)"),
    "pixels": ("labeled_pixel_fraction", "labelled pixels (% of the pool's pixels)"),
}


def _points(history: Sequence[dict[str, Any]], metric: str, x: str = "images") -> list[tuple[float, float]]:
    from .report_data import curve_points

    return curve_points(history, metric, X_AXES[x][0])


def choose_axis(runs: Sequence[RunSummary], x: str) -> str:
    """``images`` or ``pixels``: ``auto`` is pixels as soon as one run queried regions
    (so image- and region-level runs share one axis of labelling cost), images
    otherwise. Pixels need every run to record ``labeled_pixel_fraction``."""
    if x not in ("auto", *X_AXES):
        raise SegalError(f"--x {x}: must be auto, images or pixels")
    regional = any("queried_regions" in r for run in runs for r in run.history)
    chosen = x if x != "auto" else ("pixels" if regional else "images")
    if chosen == "pixels":
        lacking = [run for run in runs if not any("labeled_pixel_fraction" in r for r in run.history)]
        if lacking:
            raise SegalError(f"--x pixels: {lacking[0].path} records no labelled pixel fraction (a run from "
                             "before region queries); use --x images")
    return chosen


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
    x: str = "images",
) -> None:
    """mIoU against the labelled fraction of the pool (``x``: ``images``, or
    ``pixels``), one line per run; ``full`` baselines drawn as horizontal lines.
    Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for label, history in runs:
        pts = _points(history, metric, x)
        if pts:
            xs, ys = zip(*pts)
            ax.plot([100 * x for x in xs], ys, marker="o", markersize=3, label=label)
    for label, value in full:
        ax.axhline(value, linestyle="--", color="black", linewidth=1, label=label)
    ax.set_xlabel(X_AXES[x][1])
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


def write_report(
    paths: Sequence[Path], out: Path, *, metric: str = "test_miou", x: str = "auto"
) -> list[dict[str, Any]]:
    """Plot and tabulate several runs into ``out/report.png``, ``report.md``,
    ``report.csv`` and ``report.html``; returns the table rows. ``x``: the x axis
    (:func:`choose_axis`); areas are taken over the same axis."""
    if metric not in METRICS:
        raise SegalError(f"--metric {metric}: must be one of {', '.join(METRICS)}")
    runs = load_runs(paths)
    x = choose_axis(runs, x)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SegalError(f"--out {out}: is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    curves = [r for r in runs if not r.full]
    baselines = [(r.label, r.history[-1][metric]) for r in runs if r.full and r.history[-1].get(metric) is not None]
    rows: list[dict[str, Any]] = []
    for r in runs:
        pts = _points(r.history, metric, x)
        last = pts[-1] if pts else (None, None)
        rows.append(
            {
                "run": str(r.path),
                "label": r.label,
                "rounds": len(r.history),
                "x": x,
                "final_fraction": last[0],
                f"final_{metric}": last[1],
                "auc": area_under_curve(pts),
            }
        )
    plot_runs([(r.label, r.history) for r in curves], out / "report.png", metric=metric, full=baselines, x=x)
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
