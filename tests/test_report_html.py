"""``segal report`` writes report.html: every run, curves, heat maps, the class make-up,
thumbnails of each queried sample, settings; self-contained (no URL outside the file,
no script); a run in progress shows its committed rounds only; runs of different class
sets are flagged in one line; a real browser renders it with every image loaded."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segal_core import hookimpl, load_plugins
from segal_core.cli import run_main
from segal_core.config import RunConfig
from segal_core.cycle import run_cycle
from segal_core.report import write_report
from segal_core.report_charts import nice_ticks
from segal_core.testing import TinyModel


class TinyModels:
    @hookimpl
    def segal_register_models(self) -> list[type]:
        return [TinyModel]


def make_run(out: Path, **changes: Any) -> Path:
    values: dict[str, Any] = dict(
        dataset="synthetic", dataset_options={"n_train": 12, "n_val": 2, "n_test": 2, "size": 32},
        model="tiny", model_options={"epochs": 1}, device="cpu", seed_ratio=0.25, query_size=3, rounds=3,
        strategy="entropy", progress=False, out=str(out),
    )
    values.update(changes)
    run_cycle(RunConfig(**values), plugins=load_plugins(extra=[("tiny_models", TinyModels())]))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    return {
        "entropy": make_run(base / "entropy"),
        "random": make_run(base / "random", strategy="random"),
        "full": make_run(base / "full", full=True),
    }


class Page(HTMLParser):
    """The tags of a page with their attributes, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def all(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def history(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]


def report(paths: Sequence[Path], out: Path) -> tuple[str, Page]:
    write_report(list(paths), out)
    text = (out / "report.html").read_text()
    return text, Page(text)


def check_self_contained(text: str, page: Page) -> None:
    assert "http://" not in text and "https://" not in text and "file:" not in text
    assert not page.all("script") and not page.all("link") and not page.all("iframe")
    for img in page.all("img"):
        assert img["src"].startswith(("data:image/png;base64,", "data:image/jpeg;base64,")), img["src"][:40]
    for a in page.all("a"):
        assert a["href"].startswith("#"), a["href"]


def test_one_run(runs: dict[str, Path], tmp_path: Path) -> None:
    text, page = report([runs["entropy"]], tmp_path / "r")
    check_self_contained(text, page)
    assert len(page.all("section", **{"class": "run"})) == 1
    assert len(page.all("polyline", **{"class": "series", "data-name": "entropy (seed 0)"})) == 1
    assert len(page.all("table", **{"class": "heatmap"})) == 1
    records = history(runs["entropy"])
    classes = json.loads((runs["entropy"] / "config.json").read_text())["resolved"]["classes"]
    heat = text[text.index('class="heatmap"') : text.index("</table>", text.index('class="heatmap"'))]
    assert heat.count("<tr>") == 1 + len(classes)
    for name in classes:
        assert f"<th>{name}</th>" in heat
    # every queried sample of every querying round, with its four pictures
    queried = [(r["round"], sid) for r in records for sid in r["queried"]]
    assert len(queried) == 6
    samples = page.all("div", **{"class": "sample"})
    assert [s["data-id"] for s in samples] == [sid for _, sid in queried]
    assert len(page.all("img")) == 4 * len(queried)
    assert {d["data-round"] for d in page.all("details", **{"class": "round"})} == {"0", "1"}
    assert "Class make-up of the labelled pixels" in text and "Not recorded" not in text
    assert "Time per phase" in text and "torch" in text and "finished, 3 rounds" in text


def test_several_runs_and_the_ceiling(runs: dict[str, Path], tmp_path: Path) -> None:
    text, page = report([runs["entropy"], runs["random"], runs["full"]], tmp_path / "r")
    check_self_contained(text, page)
    assert [s["data-run"] for s in page.all("section", **{"class": "run"})] == [str(p) for p in runs.values()]
    assert {p["data-name"] for p in page.all("polyline", **{"class": "series"})} == {"entropy (seed 0)", "random (seed 0)"}
    assert "stroke-dasharray" in text and "full data (ceiling)" in text  # the full-data line
    assert len(page.all("table", **{"class": "heatmap"})) == 3
    assert "The strategy scores no pixels" in text  # random: frame, prediction, label only
    assert "queries nothing" in text  # the full-data run
    assert 'id="mismatch"' not in text


def test_a_run_in_progress_shows_committed_rounds_only(runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "partial"
    shutil.copytree(runs["entropy"], run)
    state = json.loads((run / "state.json").read_text())
    state.update(completed_rounds=1, finished=False)
    (run / "state.json").write_text(json.dumps(state))
    text, page = report([run], tmp_path / "r")
    assert "in progress: 1 round committed" in text
    assert {d["data-round"] for d in page.all("details", **{"class": "round"})} == {"0"}
    assert len(page.all("div", **{"class": "sample"})) == 3
    heat = text[text.index('class="heatmap"') :]
    assert ">r0<" in heat and ">r1<" not in heat.split("</table>")[0]


def test_runs_of_different_class_sets_say_so(runs: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    shutil.copytree(runs["random"], other)
    config = json.loads((other / "config.json").read_text())
    config["resolved"]["classes"] = ["sky", "road"]
    (other / "config.json").write_text(json.dumps(config))
    assert run_main(["report", str(runs["entropy"]), str(other), "--out", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "report.html").read_text()
    assert 'id="mismatch"' in text and "different datasets or class sets" in text
    warnings = [line for line in capsys.readouterr().err.splitlines() if "class sets" in line]
    assert len(warnings) == 1 and "5 classes" in warnings[0] and "2 classes" in warnings[0]


def test_a_run_without_thumbnails(tmp_path: Path) -> None:
    run = make_run(tmp_path / "bare", rounds=2, plugin_options={"no_thumbnails": True})
    text, page = report([run], tmp_path / "r")
    assert "Not recorded" in text and "No thumbnails kept for this round" in text
    assert not page.all("img")


def test_nice_ticks() -> None:
    assert nice_ticks(0, 50) == [0, 10, 20, 30, 40, 50]
    assert nice_ticks(0.1, 0.27)[0] <= 0.1 and nice_ticks(0.1, 0.27)[-1] >= 0.27
    assert nice_ticks(0.5, 0.5)  # a single value still gets an axis


# -- a real browser ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
PROBE = """<script>
addEventListener("load", () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.setAttribute("data-probe", `images=${imgs.length} broken=${broken}`);
});
</script>"""


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-extensions", "--no-first-run", "--hide-scrollbars", "--enable-logging=stderr", "--v=0", *args],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_a_real_browser_renders_it(runs: dict[str, Path], tmp_path: Path) -> None:
    write_report([runs["entropy"], runs["random"]], tmp_path / "r")
    page = tmp_path / "r" / "report.html"
    # the page itself has no script: a copy with a probe counts the images that loaded
    probed = tmp_path / "r" / "probe.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    expected = len(Page(page.read_text()).all("img"))
    assert expected == 6 * 4 + 6 * 3  # entropy: 4 pictures a sample; random: no uncertainty map
    assert f'data-probe="images={expected} broken=0"' in dom.stdout, dom.stdout[-500:] + dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    result = chromium(f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri())
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (1600, 1200)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # text, charts and pictures, not a blank page


def test_a_region_run_shows_pixels_and_queried_areas(tmp_path: Path) -> None:
    run = make_run(tmp_path / "regions", rounds=2, query_unit="patch", unit_options={"size": 8}, query_size=None,
                   query_ratio=0.05)
    text, page = report([run], tmp_path / "r")
    check_self_contained(text, page)
    assert "Against labelled pixels" in text and "AUC (pixels)" in text
    assert "regions in" in text and "of the pixels" in text
    assert page.all("img", alt=f"queried area of {page.all('div', **{'class': 'sample'})[0]['data-id']}")
