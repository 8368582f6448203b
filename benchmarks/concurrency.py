"""Several runs at once on the CPU (issue 20): one run alone against two started together.

    python benchmarks/concurrency.py               # default, --threads 1 and the old behaviour
    python benchmarks/concurrency.py --quick       # a tiny dataset, one repeat: a smoke check
    python benchmarks/concurrency.py --modes default,threads1 --repeats 5

Each measurement starts ``segal run --dataset synthetic --rounds 1 --device cpu
--no-progress --out TMP`` (plus ``--epochs N`` with ``--epochs``) once alone, or twice
at the same moment, and times each process from start to exit (imports included).
The alone and the two-at-once measurements of every mode are taken side by side in
one repeat, and the order alternates between repeats (alone first, then two first;
modes forwards, then backwards), so load from other work on a shared machine falls on
all of them alike. Modes:

* ``default``: no thread option, the environment cleared of every thread variable;
* ``threads1``: ``--threads 1``;
* ``old``: the behaviour before issue 20: as many compute threads as cores and the
  OpenMP runtime's default spin-waiting (``--threads CORES`` with
  ``GOMP_SPINCOUNT=300000``, libgomp's spin count when ``OMP_WAIT_POLICY`` is unset).
  Runs at most ``--old-repeats`` times: two such runs at once may take many minutes.

Where ``segal run`` lacks ``--threads`` (checked with ``segal run --help``) the modes
are emulated with environment variables: ``default`` as ``OMP_WAIT_POLICY=PASSIVE``
(what :func:`segal_core.threads.prepare_environment` sets), ``threads1`` as
``OMP_NUM_THREADS=1``, ``old`` as the plain command. Where it has ``--threads`` but
does not set ``OMP_WAIT_POLICY`` itself (checked with one tiny run), ``default`` gets
``OMP_WAIT_POLICY=PASSIVE`` from outside. Each line says so (``"emulated"``), and the
header has ``threads_option`` and ``cli_sets_wait_policy``.

Prints one JSON header line (machine, versions, date, command, load average), one
JSON line per measurement (``wall_s``: the slowest process; ``per_run_s``;
``cpu_s``: user + system CPU seconds of each process; ``load1_before``) and a JSON
summary: per mode, the median alone and two-at-once wall times, ``ratio`` =
two-at-once / alone (medians; ``ratios`` per repeat) and the median CPU seconds of
one run alone and at once (``cpu_s_alone``, ``cpu_s_two_at_once``: spinning threads
burn CPU time, which other jobs on the machine do not change much). Target: ratio <= 2.5.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from benchlib import REPO, run_header

from segal_core.threads import usable_cpus

MODES = ("default", "threads1", "old")
#: Variables that change how many threads a run uses or how they wait: cleared for every mode.
THREAD_VARIABLES = (
    "SEGAL_THREADS",
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "KMP_BLOCKTIME",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)
#: libgomp's spin count when OMP_WAIT_POLICY is unset (the behaviour before issue 20).
OLD_SPINCOUNT = "300000"
TARGET_RATIO = 2.5
QUICK_OPTIONS = (
    "--epochs", "1", "--min-steps", "0", "--batch-size", "4",
    "--dataset-opt", "n_train=24", "--dataset-opt", "n_val=4", "--dataset-opt", "n_test=4",
)


@dataclass(frozen=True)
class Mode:
    """How one mode starts ``segal run``: extra arguments and environment."""

    name: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    emulated: bool = False


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--repeats", type=int, default=3, help="alone + two-at-once pairs per mode")
    p.add_argument("--old-repeats", type=int, default=1, help="at most this many repeats of 'old'")
    p.add_argument("--epochs", type=int, default=None, help="--epochs for segal run (default: its own)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds before a run is killed (reported)")
    p.add_argument("--quick", action="store_true", help="a tiny dataset and one repeat (smoke check)")
    p.add_argument("--out", default=None, help="folder for the runs (default: a temporary one, removed)")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown:
        p.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if args.quick:
        args.repeats = 1
    return args


def segal_command() -> list[str]:
    """``segal`` as this interpreter runs it (works without the entry point too)."""
    return [sys.executable, "-m", "segal_core"]


def has_threads_option() -> bool:
    """Whether ``segal run`` takes ``--threads`` yet."""
    done = subprocess.run(
        [*segal_command(), "run", "--help"], check=False, capture_output=True, text=True, env=clean_env(), timeout=300
    )
    return "--threads" in done.stdout


_WAIT_POLICY_PROBE = """
import os, sys
sys.argv = ["segal", *sys.argv[1:]]
from segal_core.cli import main
try:
    main()
except SystemExit:
    pass
print("OMP_WAIT_POLICY=" + os.environ.get("OMP_WAIT_POLICY", ""), file=sys.stderr)
"""


def cli_sets_wait_policy(options: Sequence[str], out: Path) -> bool:
    """Whether ``segal run`` itself sets ``OMP_WAIT_POLICY`` (through
    ``segal_core.threads.prepare_environment``): one tiny run, started without it."""
    cmd = [sys.executable, "-c", _WAIT_POLICY_PROBE, "run", *options, *QUICK_OPTIONS, "--threads", "1",
           "--out", str(out / "wait-policy-probe")]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=clean_env(), timeout=600)
    return "OMP_WAIT_POLICY=PASSIVE" in done.stderr.splitlines()


def clean_env() -> dict[str, str]:
    """This environment without thread variables, with the repository importable."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    extra = [str(REPO), str(REPO / "plugins")]
    env["PYTHONPATH"] = os.pathsep.join([*extra, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


def build_modes(names: Sequence[str], cpus: int, wired: bool, waits: bool) -> list[Mode]:
    """The modes asked for, with ``--threads`` when ``segal run`` has it, else emulated;
    ``default`` gets ``OMP_WAIT_POLICY=PASSIVE`` from outside when ``segal run`` does
    not set it itself yet (``waits``)."""
    if wired:
        passive = {} if waits else {"OMP_WAIT_POLICY": "PASSIVE"}
        table = {
            "default": Mode("default", (), passive, emulated=not waits),
            "threads1": Mode("threads1", ("--threads", "1")),
            "old": Mode("old", ("--threads", str(cpus)), {"GOMP_SPINCOUNT": OLD_SPINCOUNT}),
        }
    else:
        table = {
            "default": Mode("default", (), {"OMP_WAIT_POLICY": "PASSIVE"}, emulated=True),
            "threads1": Mode("threads1", (), {"OMP_NUM_THREADS": "1"}, emulated=True),
            "old": Mode("old", (), {}, emulated=True),
        }
    return [table[name] for name in names]


def run_together(
    count: int, mode: Mode, options: Sequence[str], out: Path, timeout: float, repeat: int
) -> dict[str, Any]:
    """Start ``count`` runs at once and wait for all: a JSON-able measurement."""
    env = {**clean_env(), **mode.env}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    running: dict[int, tuple[subprocess.Popen[bytes], Path]] = {}
    for i in range(count):
        folder = out / f"{mode.name}-{count}-{repeat}-{i}"
        log = folder.with_suffix(".log")
        cmd = [*segal_command(), "run", *options, *mode.args, "--out", str(folder)]
        with open(log, "wb") as sink:
            proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        running[proc.pid] = (proc, log)
    per_run: dict[int, float] = {}
    cpu: dict[int, float] = {}
    codes: dict[int, int] = {}
    killed = False
    while running:
        for pid in list(running):
            proc, log = running[pid]
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done == 0:
                continue
            del running[pid]
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            per_run[pid] = round(time.perf_counter() - start, 2)
            cpu[pid] = round(usage.ru_utime + usage.ru_stime, 2)
            codes[pid] = proc.returncode
            if proc.returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                print(json.dumps({"warning": f"{mode.name}: exit {proc.returncode}", "log_tail": tail}),
                      file=sys.stderr, flush=True)
        if running and time.perf_counter() - start > timeout:
            killed = True
            for proc, _ in running.values():
                proc.kill()
        time.sleep(0.05)
    line = {
        "mode": mode.name,
        "repeat": repeat,
        "runs_at_once": count,
        "wall_s": max(per_run.values()),
        "per_run_s": sorted(per_run.values()),
        "cpu_s": [cpu[pid] for pid in sorted(per_run, key=per_run.__getitem__)],
        "returncodes": sorted(codes.values()),
        "timed_out": killed,
        "load1_before": round(load, 2),
        "args": list(mode.args),
        "env": mode.env,
        "emulated": mode.emulated,
    }
    print(json.dumps(line), flush=True)
    return line


def summarize(lines: Sequence[dict[str, Any]], modes: Sequence[Mode]) -> dict[str, Any]:
    """Per mode: median alone and two-at-once wall, their ratio, and each repeat's ratio."""
    summary: dict[str, Any] = {}
    for mode in modes:
        mine = [
            m for m in lines
            if m["mode"] == mode.name and (m["timed_out"] or all(c == 0 for c in m["returncodes"]))
        ]
        alone = {m["repeat"]: m["wall_s"] for m in mine if m["runs_at_once"] == 1}
        two = {m["repeat"]: m["wall_s"] for m in mine if m["runs_at_once"] == 2}
        if not alone or not two:
            summary[mode.name] = {"error": "no successful measurement"}
            continue
        ratio = statistics.median(two.values()) / statistics.median(alone.values())
        cpu_alone = [c for m in mine if m["runs_at_once"] == 1 for c in m.get("cpu_s", [])]
        cpu_two = [c for m in mine if m["runs_at_once"] == 2 for c in m.get("cpu_s", [])]
        summary[mode.name] = {
            "alone_s": round(statistics.median(alone.values()), 2),
            "two_at_once_s": round(statistics.median(two.values()), 2),
            "ratio": round(ratio, 2),
            "ratios": [round(two[r] / alone[r], 2) for r in sorted(alone) if r in two],
            "meets_target": ratio <= TARGET_RATIO,
            # CPU seconds of one run (median): time spent spinning shows up here, whatever the load
            "cpu_s_alone": round(statistics.median(cpu_alone), 2) if cpu_alone else None,
            "cpu_s_two_at_once": round(statistics.median(cpu_two), 2) if cpu_two else None,
            "measured": {"alone": len(alone), "two_at_once": len(two)},  # successful repeats
            "lower_bound": any(m["timed_out"] for m in mine),  # a run was killed at --timeout
        }
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cpus = usable_cpus()
    wired = has_threads_option()
    options = ["--dataset", "synthetic", "--rounds", "1", "--device", "cpu", "--no-progress"]
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="segal-concurrency-"))
    out.mkdir(parents=True, exist_ok=True)
    waits = wired and cli_sets_wait_policy(options, out)
    modes = build_modes(args.modes, cpus, wired, waits)
    if args.quick:
        options += QUICK_OPTIONS
    elif args.epochs is not None:
        options += ["--epochs", str(args.epochs)]
    header = run_header(torch.device("cpu"), argv=None if argv is None else [__file__, *argv])
    header.update(
        benchmark="concurrency",
        usable_cpus=cpus,
        threads_option=wired,
        cli_sets_wait_policy=waits,
        segal_run=" ".join(["segal", "run", *options, "--out", "TMP"]),
        load_before=[round(x, 2) for x in os.getloadavg()],
        repeats=args.repeats,
    )
    print(json.dumps(header), flush=True)
    lines: list[dict[str, Any]] = []
    try:
        for repeat in range(args.repeats):
            order = (1, 2) if repeat % 2 == 0 else (2, 1)
            for mode in modes if repeat % 2 == 0 else list(reversed(modes)):
                if mode.name == "old" and repeat >= args.old_repeats:
                    continue
                for count in order:
                    lines.append(run_together(count, mode, options, out, args.timeout, repeat))
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    result = {
        "summary": summarize(lines, modes),
        "target_ratio": TARGET_RATIO,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result), flush=True)
    return {"header": header, "measurements": lines, **result}


if __name__ == "__main__":
    main()
