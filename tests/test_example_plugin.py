"""Third-party plugins installed as real distributions, then used by ``segal``.

Two packages are built and installed, non-editable, into a temporary folder (the
environment is not modified; subprocesses see the folder on ``PYTHONPATH``):

- ``examples/segal-mcdropout``: the ``mc_entropy`` strategy (built on the core's
  ``MonteCarloStrategy`` and the models' ``stochastic_logits`` capability) and an
  ``mc-rounds.csv`` hook;
- ``segal-ratio``: the tutorial package of ``docs/plugins.md``, written from the files
  that page shows and nothing else (a plugin "nobody in this repository wrote").

Then ``segal plugins`` must list both, ``segal run`` must use each strategy end to end
with the hooks writing their files, and both packages' own tests (built on
``segal_core.testing.StrategyContract``) must pass against the installed copies.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "segal-mcdropout"
DOC = REPO / "docs" / "plugins.md"

#: A tiny run: 12 images of 32x32, 2 seed + 2 queried, the smallest encoder at hand.
TINY_RUN = [
    "--rounds", "2", "--epochs", "1", "--min-steps", "0", "--query-size", "2", "--seed-ratio", "0.15", "--batch-size", "4",
    "--encoder", "mobilenet_v2", "--device", "cpu", "--no-progress",
    "--dataset-opt", "n_train=12", "--dataset-opt", "n_val=3", "--dataset-opt", "n_test=3",
    "--dataset-opt", "size=32",
]


def doc_files(text: str) -> dict[str, str]:
    """The files a Markdown page shows: ``<!-- file: PATH -->`` then a fenced block."""
    found = re.findall(r"<!-- file: (\S+) -->\s*\n```[\w-]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    return dict(found)


def run(args: list[str], site: Path, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEGAL_DISABLE_PLUGINS")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def segal(*args: str, site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "segal_core", *args], site, cwd)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both source trees, copied out of the repository (a build writes into its tree)."""
    root = tmp_path_factory.mktemp("sources")
    shutil.copytree(
        EXAMPLE, root / "segal-mcdropout",
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"),
    )
    files = doc_files(DOC.read_text(encoding="utf-8"))
    assert set(files) == {"segal-ratio/pyproject.toml", "segal-ratio/segal_ratio/__init__.py",
                          "segal-ratio/tests/test_ratio.py"}, "docs/plugins.md's tutorial files changed"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def site(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two distributions built and installed (not editable) into a fresh folder,
    offline: no index, no build isolation (setuptools comes from this environment)."""
    pytest.importorskip("setuptools", reason="building the plugin packages offline needs setuptools")
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--quiet", "--target", str(target),
         str(sources / "segal-mcdropout"), str(sources / "segal-ratio")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return target


def test_installed_as_distributions_not_editable(site: Path) -> None:
    for dist, module in (("segal_mcdropout-0.2.0", "segal_mcdropout"), ("segal_ratio-0.1.0", "segal_ratio")):
        info = site / f"{dist}.dist-info"
        assert "[segal]" in (info / "entry_points.txt").read_text()
        assert (site / module / "__init__.py").is_file()
    assert (site / "segal_mcdropout" / "py.typed").is_file()
    assert not list(site.glob("*.pth")) and not list(site.glob("__editable__*"))


def test_segal_plugins_lists_them(site: Path, tmp_path: Path) -> None:
    result = segal("plugins", site=site, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "segal_mcdropout 0.2.0  strategies: mc_entropy; hooks: segal_round_end" in lines
    assert "segal_ratio 0.1.0  strategies: ratio; hooks: segal_round_end" in lines
    assert "BROKEN" not in result.stdout


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def history(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line.strip()]


def test_segal_run_with_mc_entropy_end_to_end(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "mc"
    result = segal("run", "--strategy", "mc_entropy", "--strategy-opt", "passes=3", "--model-opt", "dropout=0.3",
                   *TINY_RUN, "--out", str(out), site=site, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = history(out)
    assert [r["round"] for r in records] == [0, 1]
    config = json.loads((out / "config.json").read_text())
    assert config["strategy_options"] == {"passes": "3"}
    assert config["resolved"]["strategy_class"] == "segal_mcdropout.strategy.MCEntropy"
    # the CSV hook: one row per round, matching the history
    rows = read_csv(out / "mc-rounds.csv")
    assert [int(r["round"]) for r in rows] == [0, 1]
    assert [int(r["labeled"]) for r in rows] == [r["labeled"] for r in records]
    assert [int(r["queried"]) for r in rows] == [2, 0]
    scores = records[0]["query_scores"]
    assert isinstance(scores, list) and len(scores) == 2 and all(s > 0 for s in scores)
    assert float(rows[0]["max_query_score"]) == pytest.approx(max(scores), rel=1e-5)
    # the tutorial plugin's hook takes part in every run
    assert len((out / "round-log.jsonl").read_text().splitlines()) == 2


def test_segal_run_with_the_tutorial_strategy(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "ratio"
    result = segal("run", "--strategy", "RatioSampling", "--strategy-opt", "temperature=2", *TINY_RUN,
                   "--out", str(out), site=site, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = history(out)
    log = [json.loads(line) for line in (out / "round-log.jsonl").read_text().splitlines()]
    assert log == [{"round": r["round"], "labeled": r["labeled"], "test_miou": r["test_miou"]} for r in records]
    assert json.loads((out / "config.json").read_text())["resolved"]["strategy_class"] == "segal_ratio.RatioSampling"
    assert not (out / "mc-rounds.csv").exists(), "the example's CSV is only for mc_entropy runs"


def test_the_packages_own_tests_pass_when_installed(site: Path, sources: Path) -> None:
    example = sources / "segal-mcdropout"
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
         "-c", str(example / "pyproject.toml"), "--rootdir", str(sources),
         str(example / "tests"), str(sources / "segal-ratio" / "tests")],
        site, sources, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed >= 40 and "failed" not in summary and "error" not in summary, summary
