"""``report.html``: one self-contained page about one run or several (``segal report``).

Learning curves with each curve's area (and the full-data ceiling), then per run:
per-class IoU over the rounds as a heat map, the class make-up of the labelled
pixels round by round, time per phase, each round's queried samples as thumbnails
(frame, the strategy's uncertainty map, prediction, label, score) and the run's
settings and versions. Charts are inline SVG, pictures ``data:`` URIs: the file
needs nothing else, no network and no script. Only committed rounds are shown, so
a run in progress can be reported at any time.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .colors import class_colors, hex_color, lut_color
from .report_charts import Bar, Series, line_chart, stacked_bars
from .report_data import RunView, class_makeup, curve_points, load_view, mismatch_line
from .rundir import atomic_write

if TYPE_CHECKING:
    from .report import RunSummary

__all__ = ["build_html", "write_html"]

log = logging.getLogger("segal")

PHASES = (
    ("train", "#4e79a7"), ("evaluate", "#59a14f"), ("score", "#e15759"), ("select", "#edc948"),
    ("label", "#b07aa1"), ("other", "#bab0ac"),
)
PICTURES = (("frame", "frame"), ("regions", "queried area"), ("uncertainty", "uncertainty"),
            ("prediction", "prediction"), ("label", "label"))
MASKS = {"prediction", "label"}
#: A full-data run: its ceiling line and its square.
FULL_COLOR = "#222222"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;margin:0;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:19px;margin:30px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}.sub{color:#666;margin:0 0 12px}
.warning{background:#fff4e5;border:1px solid #f0b45b;padding:8px 12px;border-radius:4px;margin:12px 0}
.badge{display:inline-block;font-size:12px;padding:1px 7px;border-radius:9px;margin-left:6px;vertical-align:2px}
.done{background:#e3f1e3;color:#2d6a2d}.progress{background:#fff0cc;color:#7a5a00}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border:1px solid #e2e2e2;text-align:left}
th{background:#f1f1f1;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.heatmap td{text-align:center;min-width:38px;font-variant-numeric:tabular-nums}.heatmap td.na{background:#eee;color:#999}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:4px 0 8px;font-size:12px}
.makeup .legend{margin:0;font-size:13px}.legend span::before{content:"";display:inline-block;width:11px;height:11px;margin-right:5px;vertical-align:-1px;
background:var(--c);border-radius:2px}
.chart{max-width:100%;height:auto;background:#fff}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
.samples{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0 14px}
.sample{background:#fff;border:1px solid #e2e2e2;border-radius:4px;padding:6px}
.pics{display:flex;gap:4px}.pics figure{margin:0;text-align:center}
.pics img{width:112px;height:auto;display:block;background:#000}.pics img.mask{image-rendering:pixelated}
figcaption{font-size:11px;color:#666}.meta{font-size:12px;margin-top:3px}.meta code{font-size:11px}
.note{color:#666;font-size:12px}.settings td:first-child{white-space:nowrap;color:#444}
footer{color:#888;font-size:12px;margin-top:40px}
"""


# -- the page ----------------------------------------------------------------------------


def write_html(runs: Sequence[RunSummary], path: Path, *, metric: str = "test_miou") -> str | None:
    """Write ``path`` (``report.html``) for ``runs`` (as :func:`segal_core.report.load_runs`
    returns them), atomically. Returns the one-line notice when the runs' datasets or
    class sets differ (also logged as a warning), else ``None``."""
    labels = [r.label for r in runs]
    views = [
        load_view(r.path, f"{r.label} [{r.path.name}]" if labels.count(r.label) > 1 else r.label, r.full, r.history)
        for r in runs
    ]
    notice = mismatch_line(views)
    if notice:
        log.warning(f"segal report: {notice}")
    atomic_write(Path(path), build_html(views, metric=metric, notice=notice).encode("utf-8"))
    return notice


def build_html(views: Sequence[RunView], *, metric: str = "test_miou", notice: str | None = None) -> str:
    """The whole page as a string."""
    from . import __version__

    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    palette = iter(hex_color(c) for c in class_colors(max(1, len(views))))
    colors = [FULL_COLOR if v.full else next(palette) for v in views]
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>SegAL report: {escape(', '.join(v.label for v in views))}</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>SegAL report</h1>",
        f'<p class="sub">{len(views)} run{"s" if len(views) != 1 else ""} &middot; {escape(_metric_name(metric))} '
        f"&middot; generated {escape(when)}</p>",
    ]
    if notice:
        parts.append(f'<p class="warning" id="mismatch">{escape(notice)}</p>')
    parts.append(_contents(views))
    parts.append(_curves(views, metric, colors))
    for n, view in enumerate(views):
        parts.append(_run_section(n, view, metric, colors[n]))
    parts.append(f"<footer>segal {escape(__version__)}; every picture and chart is inside this file.</footer>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _metric_name(metric: str) -> str:
    return {"test_miou": "test mIoU", "val_miou": "val mIoU"}.get(metric, metric)


def _status(view: RunView) -> str:
    if view.finished:
        rounds = f"{view.completed_rounds} round{'s' if view.completed_rounds != 1 else ''}"
        return f'<span class="badge done">finished, {rounds}</span>'
    return (f'<span class="badge progress">in progress: {view.completed_rounds} round'
            f'{"s" if view.completed_rounds != 1 else ""} committed</span>')


def _contents(views: Sequence[RunView]) -> str:
    items = "".join(f'<li><a href="#run-{n}">{escape(v.label)}</a> <code>{escape(str(v.path))}</code></li>'
                    for n, v in enumerate(views))
    return f'<nav><a href="#curves">Learning curves</a><ul>{items}</ul></nav>'


def _legend(items: Iterable[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(
        f'<span style="--c:{color}">{escape(name)}</span>' for name, color in items) + "</div>"


# -- learning curves ---------------------------------------------------------------------


def _curves(views: Sequence[RunView], metric: str, colors: Sequence[str]) -> str:
    from .report import area_under_curve

    curves = [(v, c) for v, c in zip(views, colors) if not v.full]
    ceilings = []
    for v in views:
        if v.full and v.history and isinstance(v.history[-1].get(metric), (int, float)):
            ceilings.append((f"{v.label}", float(v.history[-1][metric])))
    out = ['<section id="curves"><h2>Learning curves</h2>']
    series = [Series(v.label, curve_points(v.history, metric), c) for v, c in curves]
    out.append(line_chart(series, x_label="labelled fraction of the pool (%)", y_label=_metric_name(metric),
                          ceilings=ceilings, x_scale=100))
    pixel_level = any(v.region_level for v, _ in curves)
    if pixel_level:
        pixel_series = [Series(v.label, curve_points(v.history, metric, "labeled_pixel_fraction"), c)
                        for v, c in curves]
        out.append("<h3>Against labelled pixels</h3>")
        out.append(line_chart(pixel_series, x_label="labelled pixels of the pool (%)",
                              y_label=_metric_name(metric), ceilings=ceilings, x_scale=100))
    out.append(_legend([(v.label, c) for v, c in curves] + [(name, FULL_COLOR) for name, _ in ceilings]))
    head = ["run", "status", "rounds", "final labelled", f"final {_metric_name(metric)}", "AUC"]
    if pixel_level:
        head.append("AUC (pixels)")
    rows = []
    for v in views:
        pts = curve_points(v.history, metric)
        last = pts[-1] if pts else (None, None)
        auc = area_under_curve(pts)
        cells = [
            f'<td><a href="#run-{views.index(v)}">{escape(v.label)}</a></td>',
            f"<td>{'full data (ceiling)' if v.full else ('finished' if v.finished else 'in progress')}</td>",
            f'<td class="num">{len(v.history)}</td>',
            f'<td class="num">{_pct(last[0])}</td>',
            f'<td class="num">{_num(last[1])}</td>',
            f'<td class="num">{_num(auc)}</td>',
        ]
        if pixel_level:
            cells.append(f'<td class="num">{_num(area_under_curve(curve_points(v.history, metric, "labeled_pixel_fraction")))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    out.append('<table class="auc"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")
    out.append('<p class="note">AUC: the area under the curve divided by the range of labelled fractions it '
               "covers (the curve's mean mIoU); compare runs over the same range.</p></section>")
    return "\n".join(out)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else ""


# -- one run -------------------------------------------------------------------------------


def _run_section(n: int, view: RunView, metric: str, color: str) -> str:
    out = [f'<section class="run" id="run-{n}" data-run="{escape(str(view.path))}">',
           f'<h2><span style="color:{color}">&#9632;</span> {escape(view.label)} {_status(view)}</h2>',
           f'<p class="sub"><code>{escape(str(view.path))}</code></p>']
    out.append(_heatmap(view, metric))
    out.append(_makeup(view))
    out.append(_timing(view))
    out.append(_queries(view, n))
    out.append(_settings(view))
    out.append("</section>")
    return "\n".join(out)


def _heatmap(view: RunView, metric: str) -> str:
    key = "val_per_class_iou" if metric == "val_miou" else "per_class_iou"
    classes = view.classes
    if not classes or not view.history:
        return ""
    head = "".join(f'<th title="{_pct(r.get("labeled_fraction"))} labelled">r{r["round"]}<br>'
                   f'<span class="note">{_pct(r.get("labeled_fraction"))}</span></th>' for r in view.history)
    rows = []
    for name in classes:
        cells = []
        for r in view.history:
            value = (r.get(key) or {}).get(name)
            if not isinstance(value, (int, float)):
                cells.append(f'<td class="na" title="{escape(name)}, round {r["round"]}: absent">&ndash;</td>')
                continue
            rgb = lut_color(float(value), "viridis")
            ink = "#000" if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else "#fff"
            cells.append(f'<td style="background:{hex_color(rgb)};color:{ink}" '
                         f'title="{escape(name)}, round {r["round"]}: {value:.4f}">{value:.2f}</td>')
        rows.append(f"<tr><th>{escape(name)}</th>{''.join(cells)}</tr>")
    split = "val" if metric == "val_miou" else (view.history[-1].get("test_split") or "test")
    return (f"<h3>Per-class IoU ({escape(split)}) over the rounds</h3>"
            f'<table class="heatmap"><tr><th>class</th>{head}</tr>{"".join(rows)}</table>'
            '<p class="note">Colour: IoU from 0 (dark purple) to 1 (yellow); &ndash;: the class is absent from '
            "both prediction and truth.</p>")


def _makeup(view: RunView) -> str:
    title = "<h3>Class make-up of the labelled pixels</h3>"
    rounds = class_makeup(view)
    if rounds is None:
        return (title + '<p class="note">Not recorded: the run kept no thumbnails (<code>--no-thumbnails</code>, '
                "or made without the segal_thumbnails plugin).</p>")
    classes = view.classes or (list(rounds[0]) if rounds else [])
    colors = [hex_color(c) for c in class_colors(len(classes))]
    bars = []
    for record, counts in zip(view.history, rounds):
        total = sum(counts.values())
        bars.append(Bar(f"round {record['round']}", [(c, counts.get(c, 0), col) for c, col in zip(classes, colors)],
                        note=f"{total:,} px"))
    missing = len(view.history) - len(rounds)
    note = f'<p class="note">Counts stop after round {len(rounds) - 1}: later rounds kept none.</p>' if missing else ""
    head = "".join(f"<th>r{record['round']}</th>" for record in view.history[: len(rounds)])
    rows = []
    for name, color in zip(classes, colors):
        cells = "".join(
            f'<td class="num">{100 * counts.get(name, 0) / max(1, sum(counts.values())):.1f}%</td>' for counts in rounds
        )
        rows.append(f'<tr><th><span class="legend"><span style="--c:{color}">{escape(name)}</span></span></th>{cells}</tr>')
    shares = f'<table class="makeup"><tr><th>class</th>{head}</tr>{"".join(rows)}</table>'
    return (title + stacked_bars(bars, unit=" px") + _legend(zip(classes, colors)) + note +
            '<p class="note">What each round trained on: the seed set plus every earlier query, by class '
            "(share of the labelled pixels below).</p>" + shares)


def _timing(view: RunView) -> str:
    bars = []
    for record in view.history:
        seconds = record.get("seconds") or {}
        parts = [(name, float(seconds.get(name) or 0.0), color) for name, color in PHASES if name != "other"]
        total = float(seconds.get("total") or sum(v for _, v, _ in parts))
        parts.append(("other", max(0.0, total - sum(v for _, v, _ in parts)), PHASES[-1][1]))
        bars.append(Bar(f"round {record['round']}", parts, note=f"{total:.1f} s"))
    if not bars:
        return ""
    return ("<h3>Time per phase</h3>" + stacked_bars(bars, unit=" s", relative=False) + _legend(PHASES))


def _queries(view: RunView, n: int) -> str:
    out = ["<h3>Queried samples</h3>"]
    querying = [r for r in view.history if r.get("queried")]
    if not querying:
        why = ("A full-data run trains once on the whole pool and queries nothing." if view.full
               else "No committed round of this run has queried anything yet.")
        return out[0] + f'<p class="note">{why}</p>'
    for record in querying:
        r = int(record["round"])
        thumbs = view.thumbnails.get(r)
        queried = record["queried"]
        images = len(dict.fromkeys(queried))
        what = (f"{len(queried)} regions in {images} images" if record.get("queried_regions")
                else f"{len(queried)} queried")
        labelled = f"labelled {_pct(record.get('labeled_fraction'))}"
        if view.region_level and isinstance(record.get("labeled_pixel_fraction"), (int, float)):
            labelled += f" of the images, {_pct(record['labeled_pixel_fraction'])} of the pixels,"
        summary = f"Round {r}: {what}, {labelled} before the query"
        if thumbs is None:
            out.append(f"<details><summary>{escape(summary)}</summary><p class=\"note\">No thumbnails kept for "
                       "this round.</p></details>")
            continue
        scale = thumbs.index.get("map")
        scale_note = ('<p class="note">The strategy scores no pixels (no uncertainty map).</p>'
                      if scale is None else "")
        if isinstance(scale, dict):
            scale_note = (f'<p class="note">Uncertainty ({escape(str(thumbs.index.get("strategy", "")))}): black = '
                          f"{_num(scale.get('low'))} to yellow = {_num(scale.get('high'))}, one scale for the round."
                          "</p>")
        cards = [_sample_card(thumbs, s) for s in thumbs.samples]
        out.append(f'<details open class="round" id="run-{n}-round-{r}" data-round="{r}"><summary>{escape(summary)}</summary>'
                   f'{scale_note}<div class="samples">{"".join(cards)}</div></details>')
    return "\n".join(out)


def _sample_card(thumbs: Any, sample: dict[str, Any]) -> str:
    files = sample.get("files") or {}
    figures = []
    for key, caption in PICTURES:
        name = files.get(key)
        uri = thumbs.data_uri(name) if isinstance(name, str) else None
        if uri is None:
            continue
        css = ' class="mask"' if key in MASKS else ""
        figures.append(f'<figure><img{css} src="{uri}" alt="{escape(caption)} of {escape(str(sample.get("id")))}">'
                       f"<figcaption>{escape(caption)}</figcaption></figure>")
    score = sample.get("score")
    score_text = f"score {score:.4f}" if isinstance(score, (int, float)) else "score n/a"
    rank = int(sample.get("rank", 0)) + 1
    return (f'<div class="sample" data-id="{escape(str(sample.get("id")))}"><div class="pics">{"".join(figures)}</div>'
            f'<div class="meta">#{rank} <code>{escape(str(sample.get("id")))}</code> &middot; {score_text}</div></div>')


def _settings(view: RunView) -> str:
    config = view.config
    skip = {"resolved", "versions", "format"}
    rows = [(k, v) for k, v in config.items() if k not in skip]
    resolved = config.get("resolved") or {}
    versions = config.get("versions") or {}

    def table(items: Iterable[tuple[str, Any]]) -> str:
        body = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(_value(v))}</td></tr>" for k, v in items)
        return f'<table class="settings">{body}</table>'

    return ("<h3>Settings and versions</h3><details><summary>settings (config.json)</summary>"
            f"{table(rows)}</details><details><summary>resolved</summary>{table(resolved.items())}</details>"
            f"<details open><summary>versions</summary>{table(versions.items())}</details>")


def _value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "))
    return "" if value is None else str(value)
