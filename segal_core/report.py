"""Learning curves: the plot in each run folder and ``segal report``.

``segal report --out DIR`` writes only where nothing of the user's can be lost: a new
or empty folder, or one that holds nothing but an earlier report (each of its files
recognised by its content). Any other folder needs ``--force``, which replaces the
report's own files there and leaves every other file alone. A report folder has one
writer at a time (:mod:`segal_core.lock`), and the report's files are all written to
temporary names first and renamed into place only when every one is written, so a
full disk leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import rundir as _rundir
from .errors import SegalError
from .lock import FolderBusy, FolderLock, holder_of
from .rundir import RunDir, WriteFailed, is_leftover, writing

__all__ = [
    "REPORT_FILES",
    "X_AXES",
    "RunSummary",
    "area_under_curve",
    "check_report_folder",
    "choose_axis",
    "load_runs",
    "plot_runs",
    "render_plot",
    "write_report",
]

METRICS = ("test_miou", "val_miou")
#: Written into every PNG drawn here (a ``tEXt`` chunk), so that a report is recognised.
PNG_SOFTWARE = "segal report"
#: The files of a report, each with the test that recognises it as one ``segal report``
#: wrote (given the file's first 4 KiB).
REPORT_FILES: Mapping[str, Callable[[bytes], bool]] = {
    "report.png": lambda head: head.startswith(b"\x89PNG") and b"tEXtSoftware\x00" + PNG_SOFTWARE.encode() in head,
    "report.md": lambda head: head.startswith(b"# Learning curves"),
    "report.csv": lambda head: head.startswith(b"run,label,rounds,"),
    "report.html": lambda head: b"<title>SegAL report" in head,
}


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
        rundir = RunDir.open_existing(Path(path), purpose="report")
        config = rundir.config()
        state = rundir.state()
        history = rundir.history(state)
        if not history and state.pending is not None:
            raise SegalError(f"{path}: the run waits for the labels of its seed set, so no round is trained yet; "
                             f"see segal status {path}")
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
    Written atomically as PNG.

    :raises WriteFailed: the file could not be written (one line naming it)."""
    data = render_plot(runs, metric=metric, title=title, full=full, x=x)
    with writing(Path(path)):
        _rundir.atomic_write(Path(path), data)


def render_plot(
    runs: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    *,
    metric: str = "test_miou",
    title: str = "",
    full: Sequence[tuple[str, float]] = (),
    x: str = "images",
) -> bytes:
    """The PNG that :func:`plot_runs` writes, as bytes."""
    # a Figure of its own (no pyplot, no matplotlib.use): a notebook's backend and its
    # open figures are left alone, whatever calls this every round
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
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
    fig.savefig(buf, format="png", metadata={"Software": PNG_SOFTWARE})
    return buf.getvalue()


# -- where a report may be written -------------------------------------------------------


def _is_ours(path: Path) -> bool:
    """Whether ``path`` is a file ``segal report`` wrote (by its name and content)."""
    test = REPORT_FILES.get(path.name)
    if test is None or path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            return test(fh.read(4096))
    except OSError:
        return False


def check_report_folder(out: Path, *, force: bool = False) -> None:
    """The rule for ``segal report --out``: a new or empty folder, or one that holds
    nothing but an earlier report; anything else needs ``force`` (the report's own
    files are replaced, every other file is left alone). Never a folder that another
    process is writing.

    :raises SegalError: ``out`` is a file, in use, or holds other files.
    """
    if out.exists() and not out.is_dir():
        raise SegalError(f"--out {out}: is a file, not a folder; pick another --out (nothing was changed)")
    if not out.is_dir():
        return
    holder = holder_of(out)
    if holder is not None and not holder.is_this_process():
        raise FolderBusy(
            f"--out {out}: in use by {holder.describe()}; a folder has one writer at a time: wait until that "
            "process ends (or stop it), or pick another --out (nothing was changed)"
        )
    if force:
        return
    foreign = sorted(p.name for p in out.iterdir() if not is_leftover(p) and not _is_ours(p))
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise SegalError(
            f"--out {out}: holds files that are not a segal report ({foreign[0]}{more}); pick a new or empty "
            f"folder, or add --force to write the report there ({', '.join(REPORT_FILES)} are replaced, "
            "other files left alone) (nothing was changed)"
        )


@dataclass
class _Staging:
    """A report's files, written to temporary names first (:meth:`path`,
    :meth:`write`), then renamed into place together (:meth:`commit`)."""

    folder: Path
    files: list[tuple[Path, Path]] = field(default_factory=list)

    def path(self, name: str) -> Path:
        """A temporary file for ``name``; the caller writes it."""
        tmp = self.folder / f".{name}.{os.getpid()}.staged.tmp"
        self.files.append((tmp, self.folder / name))
        return tmp

    def write(self, name: str, data: bytes) -> None:
        with _report_writing(self.folder / name):
            _rundir.atomic_write(self.path(name), data)

    def commit(self) -> None:
        for tmp, final in self.files:
            with _report_writing(final):
                os.replace(tmp, final)
        self.files = []

    def discard(self) -> None:
        for tmp, _ in self.files:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self.files = []


@contextlib.contextmanager
def _report_writing(path: Path) -> Iterator[None]:
    """An :class:`OSError` in the block: one line naming the report file."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise WriteFailed(
            f"{path}: {reason}; free some space (or fix the folder) and run segal report again "
            "(the files there before are unchanged)"
        ) from exc


def write_report(
    paths: Sequence[Path], out: Path, *, metric: str = "test_miou", x: str = "auto", force: bool = False
) -> list[dict[str, Any]]:
    """Plot and tabulate several runs into ``out/report.png``, ``report.md``,
    ``report.csv`` and ``report.html``; returns the table rows. ``x``: the x axis
    (:func:`choose_axis`); areas are taken over the same axis. ``out`` must be new,
    empty or an earlier report unless ``force`` (:func:`check_report_folder`)."""
    if metric not in METRICS:
        raise SegalError(f"--metric {metric}: must be one of {', '.join(METRICS)}")
    runs = load_runs(paths)
    x = choose_axis(runs, x)
    out = Path(out)
    check_report_folder(out, force=force)
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
    png = render_plot([(r.label, r.history) for r in curves], metric=metric, full=baselines, x=x)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
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
    from .report_html import write_html  # report.html: curves, heat maps, thumbnails (issue 17)

    with FolderLock(out, what="a report"):  # one writer per report folder
        check_report_folder(out, force=force)  # again: now no one else writes there
        for stale in out.glob(".*report.*.tmp"):  # left by a report that was killed
            stale.unlink(missing_ok=True)
        staging = _Staging(out)
        try:
            staging.write("report.png", png)
            staging.write("report.csv", buf.getvalue().encode())
            staging.write("report.md", ("\n".join(lines) + "\n").encode())
            html = staging.path("report.html")
            with _report_writing(out / "report.html"):
                write_html(runs, html, metric=metric)
            staging.commit()
        finally:
            staging.discard()
    return rows
