"""Region queries against whole images on real CamVid frames, at equal pixel budgets.

Runs ``segal run`` (the CLI, as a user would) for: image-level random and entropy,
patch-level random and entropy, superpixel-level entropy, each with ``--seeds``
seeds, plus one full-data baseline trained on the whole pool with the same total
number of steps. Every run labels ``--seed-ratio`` of the pool's pixels first and
``--query-ratio`` more each round, so all curves share one x axis: the labelled
fraction of the pool's pixels. Prints one JSON line per finished run, then writes
``summary.json``, ``summary.md`` (area under each mean curve, the pixel fraction at
which it first reaches 90% of the full-data val mIoU, the seeds' spread) and
``curves.png`` under ``--out``.

The default schedule is sized for a 2-core CPU (see docs/results.md for why):

    python benchmarks/region_curves.py --out /tmp/region-study          # ~1 h on 2 cores
    python benchmarks/region_curves.py --scale 1 --device cuda --out ... # full size on a GPU
    python benchmarks/region_curves.py --quick --out /tmp/rq             # a smoke test (camvid-mini)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

#: (name, --query-unit, --strategy, --strategy-opt pairs): the curves the study compares
#: by default.
ARMS = (
    ("image-random", "image", "random", ()),
    ("image-entropy", "image", "entropy", ()),
    ("patch-random", "patch", "random", ()),
    ("patch-entropy", "patch", "entropy", ()),
    ("superpixel-entropy", "superpixel", "entropy", ()),
)
#: More arms, run with ``--arms`` (issue 18: stochastic batches and the core-set hybrid).
EXTRA_ARMS = (
    ("image-entropy-power", "image", "entropy", ("selection=power", "beta=1")),
    ("patch-entropy-power", "patch", "entropy", ("selection=power", "beta=1")),
    ("image-coreset-entropy", "image", "coreset", ("base=entropy",)),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(SHARED / "camvid-jpg"))
    p.add_argument("--out", required=True)
    p.add_argument("--scale", type=float, default=0.25, help="CamVid frames read at this scale (0.25: 90x120)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seed-ratio", type=float, default=0.02, help="of the pool's pixels")
    p.add_argument("--query-ratio", type=float, default=0.03, help="of the pool's pixels, per round")
    p.add_argument("--steps", type=int, default=100, help="training steps per round (warm-started)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--patch", type=int, default=16, help="patch side in pixels (of the scaled frames)")
    p.add_argument("--segments", type=int, default=40, help="superpixels per frame")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (each with --threads)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--arms", default=",".join(name for name, *_ in ARMS),
                   help=f"comma-separated; also: {', '.join(name for name, *_ in EXTRA_ARMS)}")
    p.add_argument("--quick", action="store_true", help="camvid-mini, a tiny encoder, 2 rounds: a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.data, args.scale, args.seeds, args.rounds = str(SHARED / "camvid-mini"), 0.25, 1, 2
        args.steps, args.encoder, args.crop_size, args.batch_size, args.jobs = 2, "tu-test_resnet", 32, 4, 1
        args.segments = 20
    return args


@dataclass
class Job:
    name: str
    arm: str
    seed: int
    argv: list[str]


def plan(args: argparse.Namespace) -> list[Job]:
    """The full-data baseline first, then every arm for each seed."""
    out = Path(args.out) / "runs"
    common = [
        "--dataset", "camvid", "--data-path", args.data, "--dataset-opt", f"scale={args.scale}",
        "--encoder", args.encoder, "--encoder-weights", "none", "--batch-size", str(args.batch_size),
        "--crop-size", str(args.crop_size), "--lr", str(args.lr), "--epochs", "1", "--steps-per-image", "0",
        "--model-opt", "eval_every=0", "--retrain", "finetune", "--device", args.device,
        "--threads", str(args.threads), "--no-progress",
    ]
    jobs = [Job("full", "full", 0, [*common, "--full", "--min-steps", str(args.steps * args.rounds),
                                    "--seed", "0", "--out", str(out / "full")])]
    arms = {name: (unit, strategy, opts) for name, unit, strategy, opts in (*ARMS, *EXTRA_ARMS)}
    for seed in range(args.seeds):
        for name in args.arms.split(","):
            if name not in arms:
                raise SystemExit(f"error: --arms {name}: unknown; known: {', '.join(arms)}")
            unit, strategy, opts = arms[name]
            argv = [*common, "--min-steps", str(args.steps), "--strategy", strategy, "--query-unit", unit,
                    "--seed-ratio", str(args.seed_ratio), "--query-ratio", str(args.query_ratio),
                    "--rounds", str(args.rounds), "--seed", str(seed), "--out", str(out / f"{name}-s{seed}")]
            for pair in opts:
                argv += ["--strategy-opt", pair]
            if unit == "patch":
                argv += ["--unit-opt", f"size={args.patch}"]
            if unit == "superpixel":
                argv += ["--unit-opt", f"segments={args.segments}"]
            jobs.append(Job(f"{name}-s{seed}", name, seed, argv))
    return jobs


def run_job(job: Job, out: Path) -> dict[str, Any]:
    """One ``segal run``; its records, wall time and status."""
    log = out / "logs" / f"{job.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(job.argv[job.argv.index("--out") + 1])
    start = time.perf_counter()
    if not (run_dir / "state.json").exists():
        with log.open("w") as fh:
            status = subprocess.call([sys.executable, "-m", "segal_core", "run", *job.argv], stdout=fh,
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    else:  # an earlier invocation's run: finish it (or just read it)
        with log.open("a") as fh:
            status = subprocess.call([sys.executable, "-m", "segal_core", "run", "--resume", str(run_dir)],
                                     stdout=fh, stderr=subprocess.STDOUT)
    records = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip()] \
        if (run_dir / "history.jsonl").exists() else []
    return {"name": job.name, "arm": job.arm, "seed": job.seed, "status": status,
            "seconds": round(time.perf_counter() - start, 1), "records": records}


def _curve(records: list[dict[str, Any]]) -> list[tuple[float, float]]:
    return [(r["labeled_pixel_fraction"], r["val_miou"]) for r in records if r.get("val_miou") is not None]


def _area(points: Sequence[tuple[float, float]]) -> float | None:
    """Trapezoid area under mIoU(pixel fraction), divided by the x range."""
    if len(points) < 2:
        return None
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:]))
    return area / (points[-1][0] - points[0][0])


def _reach(points: Sequence[tuple[float, float]], target: float | None) -> float | None:
    if target is None:
        return None
    return next((x for x, y in points if y >= target), None)


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean curve per arm (rounds aligned), its area, where it reaches 90% of the
    full-data val mIoU, and the seeds' spread (mean over rounds of max - min)."""
    full = next((r for r in results if r["arm"] == "full" and r["records"]), None)
    ceiling = full["records"][-1]["val_miou"] if full else None
    target = 0.9 * ceiling if ceiling is not None else None
    arms: dict[str, Any] = {}
    for arm in dict.fromkeys(r["arm"] for r in results if r["arm"] != "full"):
        curves = [_curve(r["records"]) for r in results if r["arm"] == arm and r["records"]]
        length = min((len(c) for c in curves), default=0)
        if length == 0:
            continue
        xs = [sum(c[i][0] for c in curves) / len(curves) for i in range(length)]
        ys = [sum(c[i][1] for c in curves) / len(curves) for i in range(length)]
        spread = [max(c[i][1] for c in curves) - min(c[i][1] for c in curves) for i in range(length)]
        mean = list(zip(xs, ys))
        arms[arm] = {
            "seeds": len(curves),
            "pixel_fraction": [round(x, 4) for x in xs],
            "val_miou": [round(y, 4) for y in ys],
            "area": _area(mean),
            "reaches_90pct_at": _reach(mean, target),
            "seed_spread": sum(spread) / length,
            "per_seed_area": [_area(c[:length]) for c in curves],
        }
    return {"full_val_miou": ceiling, "target_90pct": target, "arms": arms}


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    fmt = lambda x, d=3: "n/a" if x is None else f"{x:.{d}f}"  # noqa: E731
    lines = [
        f"Full-data val mIoU: {fmt(summary['full_val_miou'])} (90%: {fmt(summary['target_90pct'])})",
        "",
        "| arm | seeds | area (mean curve) | per-seed areas | reaches 90% at (pixel fraction) | seed spread | last: pixels, val mIoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, row in summary["arms"].items():
        seeds = ", ".join(fmt(a) for a in row["per_seed_area"])
        reach = "not reached" if row["reaches_90pct_at"] is None else f"{100 * row['reaches_90pct_at']:.1f}%"
        lines.append(
            f"| {arm} | {row['seeds']} | {fmt(row['area'])} | {seeds} | {reach} | {fmt(row['seed_spread'])} | "
            f"{100 * row['pixel_fraction'][-1]:.1f}%, {fmt(row['val_miou'][-1])} |"
        )
    lines += ["", f"Command: `{meta['command']}`; machine: {meta['machine']}; wall: {meta['wall_min']:.1f} min."]
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, row in summary["arms"].items():
        ax.plot([100 * x for x in row["pixel_fraction"]], row["val_miou"], marker="o", label=arm)
    if summary["full_val_miou"] is not None:
        ax.axhline(summary["full_val_miou"], color="black", linestyle="--", label="full data")
        ax.axhline(summary["target_90pct"], color="grey", linestyle=":", label="90% of full")
    ax.set_xlabel("labelled pixels (% of the pool)")
    ax.set_ylabel("val mIoU (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan(args)
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for result in pool.map(lambda job: run_job(job, out), jobs):
            records = result["records"]
            line = {k: v for k, v in result.items() if k != "records"} | {
                "rounds": len(records),
                "pixel_fraction": [round(r["labeled_pixel_fraction"], 4) for r in records],
                "val_miou": [None if r["val_miou"] is None else round(r["val_miou"], 4) for r in records],
            }
            print(json.dumps(line), flush=True)
            results.append(result)
    import platform

    meta = {
        "command": " ".join(["python", "benchmarks/region_curves.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "wall_min": (time.perf_counter() - started) / 60,
        "date": time.strftime("%Y-%m-%d"),
    }
    summary = summarise(results)
    (out / "summary.json").write_text(json.dumps({"meta": meta, **summary}, indent=2))
    (out / "summary.md").write_text(markdown(summary, meta))
    plot(summary, out / "curves.png")
    print(markdown(summary, meta))
    failed = [r["name"] for r in results if r["status"] != 0]
    if failed:
        print(f"failed runs: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
