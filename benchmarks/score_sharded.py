"""Sharded pool scoring: one pool scored by 1 process and by N processes (torchrun).

    python benchmarks/score_sharded.py --device cpu --nprocs 1,2 --pool 96 --repeats 3
    python benchmarks/score_sharded.py --device cuda --nprocs 1,2,4,8 --pool 4096

Each world size runs as ``python -m torch.distributed.run --standalone --nproc-per-node N`` (one
process alone for N = 1, without torch.distributed), and the world sizes alternate
``--repeats`` times, so drift on a shared machine hits them alike. In every world
each process scores its shard of the same pool with the same weights
(``segal_core.sharding.select_images``: ``entropy``, the top ``--k``), then rank 0
gathers ``k`` candidates per rank and merges them. On the CPU each process is pinned
to its own core (``os.sched_setaffinity``, core = local rank) with one torch thread;
on CUDA each rank uses the device of its local rank.

Prints one JSON header line (machine, torch, model, images, load average before and
after), then one JSON line per world size: ``img_per_s`` (pool / the median of the
slowest rank's scoring time), ``speedup`` (against 1 process, medians),
``merge_s`` (gather + merge on rank 0, after a barrier that ends scoring) and
``merge_fraction`` (merge / scoring), and whether every world selected the same ids
in the same order (``same_selection``). With ``--ceiling``, N independent processes
(no torch.distributed) also score pool/N images each at the same time, each pinned
to its own core: ``independent_speedup`` is what the machine gives N processes at
best, the ceiling for ``speedup``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchlib import load_builtin_plugins, machine_name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--nprocs", default="1,2", help="comma-separated world sizes")
    p.add_argument("--pool", type=int, default=96, help="pool images")
    p.add_argument("--k", type=int, default=8, help="images selected")
    p.add_argument("--image-size", default="128x160", help="HxW of the synthetic images")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-pin", action="store_true", help="do not pin each process to a core")
    p.add_argument("--ceiling", action="store_true", help="also run N independent processes (no "
                   "torch.distributed), each scoring pool/N images on its own core at the same time: "
                   "what this machine allows N processes at best")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--alone", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def worker(args: argparse.Namespace) -> None:
    """One process of one world: score, merge, write rank 0's figures to args.worker."""
    from segal_core.dataset import DatasetView
    from segal_core.distributed import World
    from segal_core.model import ModelConfig
    from segal_core.sharding import select_images
    from segal_core.strategy import PoolContext
    from segal_core.testing import RandomImages

    from segal_core.distributed import SINGLE

    world = World.from_env() if args.alone is None else SINGLE
    part, parts = (int(v) for v in (args.alone or "0,1").split(","))
    local = world.local_rank if args.alone is None else part
    if args.device == "cpu":
        torch.set_num_threads(1)
        if not args.no_pin and hasattr(os, "sched_setaffinity"):
            cores = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {cores[local % len(cores)]})
    height, width = (int(v) for v in args.image_size.split("x"))
    pool = RandomImages(args.pool, sizes=((height, width),), num_classes=12, seed=1)
    registry = load_builtin_plugins().registry  # entry points, or the built-ins by name (device_run.sh)
    device = world.device(args.device) if args.device != "cpu" else "cpu"
    model = registry.model("unet")(ModelConfig(
        num_classes=12, device=device, seed=0, num_workers=0,
        options={"encoder": args.encoder, "batch_size": max(1, args.batch_size // 2)},
        rank=world.rank, world_size=world.world_size, local_rank=world.local_rank,
    ))
    strategy = registry.strategy("entropy")()
    share = len(pool) // parts
    view = DatasetView(pool, range(part * share, (part + 1) * share) if parts > 1 else range(len(pool)))
    # warm-up: one batch through the model
    model.logits(torch.stack([pool.image(0)] * min(2, len(pool))))
    times: dict[str, float] = {}

    def phase(name: str, action):  # type: ignore[no-untyped-def]
        if name == "select":
            world.barrier()  # scoring ends on every rank before the merge is timed
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = action()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times[name] = time.perf_counter() - start
        return result

    def make_ctx(shard: DatasetView, offset: int) -> PoolContext:
        return PoolContext(pool=shard, model=model, generator=torch.Generator().manual_seed(0),
                           batch_size=args.batch_size, query_size=args.k, offset=offset)

    world.barrier()
    picked, _ = select_images(world, strategy, view, args.k, make_ctx, phase=phase)
    every = world.gather(times["score"])
    if world.is_writer:
        assert every is not None
        Path(args.worker).write_text(json.dumps({
            "score_s": max(every), "score_s_per_rank": every, "merge_s": times["select"], "picked": picked,
        }))
    world.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    sizes = [int(n) for n in args.nprocs.split(",")]
    header = {
        "benchmark": "score_sharded",
        "date": dt.date.today().isoformat(),
        "machine": machine_name(torch.device(args.device)),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "model": f"unet/{args.encoder}",
        "images": f"{args.pool} x 3x{args.image_size} uint8 (synthetic)",
        "batch_size": args.batch_size,
        "k": args.k,
        "threads": ("1 torch thread per process, " + ("not pinned" if args.no_pin else "pinned to core = local rank"))
        if args.device == "cpu" else "default",
        "load_before": os.getloadavg(),
    }
    results: dict[int, list[dict]] = {n: [] for n in sizes}
    ceiling: dict[int, list[float]] = {}
    here = Path(__file__).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for n in (sizes if repeat % 2 == 0 else sizes[::-1]):
                out = Path(tmp) / f"w{n}-{repeat}.json"
                common = [str(here), *(argv if argv is not None else sys.argv[1:]), "--worker", str(out)]
                env = {**os.environ, "OMP_NUM_THREADS": "1" if args.device == "cpu" else os.environ.get(
                    "OMP_NUM_THREADS", "4")}
                if n == 1:
                    env = {k: v for k, v in env.items() if k not in ("WORLD_SIZE", "RANK")}
                    command = [sys.executable, *common]
                else:
                    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                               "--nproc-per-node", str(n), *common]
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"world size {n} failed:\n{done.stderr[-3000:]}")
                results[n].append(json.loads(out.read_text()))
                if args.ceiling and n > 1:
                    outs = [Path(tmp) / f"c{n}-{repeat}-{r}.json" for r in range(n)]
                    procs = [subprocess.Popen(
                        [sys.executable, str(here), *(argv if argv is not None else sys.argv[1:]),
                         "--worker", str(o), "--alone", f"{r},{n}"],
                        env={k: v for k, v in env.items() if k not in ("WORLD_SIZE", "RANK")},
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                    ) for r, o in enumerate(outs)]
                    for proc in procs:
                        if proc.wait() != 0:
                            raise SystemExit(f"independent processes failed:\n{proc.stderr.read()[-3000:]}")
                    ceiling.setdefault(n, []).append(max(json.loads(o.read_text())["score_s"] for o in outs))
    header["load_after"] = os.getloadavg()
    print(json.dumps(header))
    base = statistics.median(r["score_s"] for r in results[sizes[0]])
    first = results[sizes[0]][0]["picked"]
    for n in sizes:
        score = statistics.median(r["score_s"] for r in results[n])
        merge = statistics.median(r["merge_s"] for r in results[n])
        print(json.dumps({
            "world_size": n,
            "score_s": [round(r["score_s"], 3) for r in results[n]],
            "img_per_s": round(args.pool / score, 2),
            "speedup": round(base / score * (1 if sizes[0] == 1 else sizes[0]), 3),
            "merge_s": round(merge, 5),
            "merge_fraction": round(merge / score, 5),
            "same_selection": all(r["picked"] == first for r in results[n]),
            **({"independent_score_s": [round(t, 3) for t in ceiling[n]],
                "independent_speedup": round(base / statistics.median(ceiling[n]), 3)} if n in ceiling else {}),
        }))


if __name__ == "__main__":
    main()
