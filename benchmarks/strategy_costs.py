"""What the strategies beyond top-k cost: time against a forward-only pass, and memory.

    python benchmarks/strategy_costs.py --device cpu --pool-sizes 32,128 --image-size 96x128
    python benchmarks/strategy_costs.py --device cuda --pool-sizes 512,2048 --image-size 360x480

Prints one JSON header line, then one JSON line per pool size and strategy, each
measured in a fresh Python process (so its memory is its own):

* ``img_per_s`` and ``forward_img_per_s``: pool images per second through
  ``strategy.score`` + ``strategy.select`` and through a forward-only pass of the
  same model over the same batches (``segal_core.scoring.score_pool`` discarding the
  logits); ``ratio_to_forward``: forward time / strategy time (median of
  ``--repeats``; 0.5 = twice the forward's time);
* ``peak_rss_growth_mb``: ``ru_maxrss`` minus the RSS after setup (model, pool images
  held in memory, warm-up): what scoring added on the host;
* on CUDA, ``peak_cuda_mb``: ``torch.cuda.max_memory_allocated`` over the scoring
  passes minus what was allocated before, and ``host_syncs``: ``"none"`` when one
  more pass ran under ``torch.cuda.set_sync_debug_mode("error")`` without error,
  else the error's first line.

Strategies: ``entropy`` (the reference), ``power`` (entropy with
``selection=power``), ``class_balanced_entropy``, ``bald`` with 8 and 16 passes,
``variance`` (8 passes), ``coreset`` and ``coreset_hybrid`` (``base=entropy m=10``).
The smp model is built with ``--model-opt dropout=0.2`` (it changes no logits; the
MC strategies need it). A labelled set of ``--labelled`` images gives the
class-balanced weights and the coreset's initial centres; the query is ``pool / 8``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from benchlib import load_builtin_plugins, run_header, sync

#: name -> (registered strategy, options)
STRATEGIES: dict[str, tuple[str, dict[str, object]]] = {
    "entropy": ("entropy", {}),
    "power": ("entropy", {"selection": "power"}),
    "class_balanced_entropy": ("class_balanced_entropy", {}),
    "bald_8": ("bald", {"passes": 8}),
    "bald_16": ("bald", {"passes": 16}),
    "variance_8": ("variance", {"passes": 8}),
    "coreset": ("coreset", {}),
    "coreset_hybrid": ("coreset", {"base": "entropy", "m": 10.0}),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--pool-sizes", default="32,128")
    p.add_argument("--image-size", default="96x128", help="HxW of the random images")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--classes", type=int, default=12)
    p.add_argument("--labelled", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def current_rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_worker(args: argparse.Namespace) -> dict[str, object]:
    from segal_core import ModelConfig, PoolContext
    from segal_core.dataset import DatasetView
    from segal_core.options import coerce_options
    from segal_core.scoring import score_pool
    from segal_core.testing import RandomImages

    if args.threads:
        torch.set_num_threads(args.threads)
    size_text, name = args.worker.split(":")
    size = int(size_text)
    registry = load_builtin_plugins().registry
    height, width = (int(v) for v in args.image_size.lower().split("x"))
    device = torch.device(args.device)
    model = registry.model("unet")(ModelConfig(
        num_classes=args.classes, device=args.device,
        options={"encoder": args.encoder, "encoder_weights": None, "batch_size": args.batch_size, "dropout": 0.2},
    ))
    source = RandomImages(size + args.labelled, sizes=[(height, width)], num_classes=args.classes, seed=1)
    held = [source.image(i) for i in range(size + args.labelled)]  # generated once, held in memory

    class Held(DatasetView):
        def image(self, index: int) -> torch.Tensor:
            return held[self.indices[index]]

    pool = Held(source, list(range(size)))
    labelled = Held(source, list(range(size, size + args.labelled)))
    registered, options = STRATEGIES[name]
    cls = registry.strategy(registered)
    strategy = cls(**coerce_options(cls, options, "--strategy-opt"))
    k = max(1, size // 8)

    def context(seed: int, images: DatasetView) -> PoolContext:
        return PoolContext(pool=images, model=model, generator=torch.Generator().manual_seed(seed),
                           batch_size=args.batch_size, num_workers=args.num_workers, query_size=k,
                           labelled_data=labelled, labelled_pixels=[height * width] * args.labelled)

    def forward() -> None:
        score_pool(model, pool, lambda logits, valid: torch.zeros(logits.shape[0], device=logits.device),
                   batch_size=args.batch_size, num_workers=args.num_workers)

    def query(seed: int, images: DatasetView = pool) -> None:
        ctx = context(seed, images)
        scores = strategy.score(ctx)
        strategy.select(scores, min(k, len(images)), generator=ctx.generator)

    # warm-up on one batch: what scoring one batch takes is in the setup figure, so the
    # growth below is what a larger pool adds
    query(99, Held(source, list(range(min(size, args.batch_size)))))
    forward()
    sync(device)
    rss_setup = current_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_cuda = torch.cuda.memory_allocated(device)
    times: dict[str, list[float]] = {"forward": [], "strategy": []}
    for repeat in range(args.repeats):
        for what in (("forward", "strategy") if repeat % 2 == 0 else ("strategy", "forward")):
            sync(device)
            start = time.perf_counter()
            forward() if what == "forward" else query(repeat)
            sync(device)
            times[what].append(time.perf_counter() - start)
    record: dict[str, object] = {
        "pool_size": size,
        "strategy": name,
        "options": options,
        "query": k,
        "img_per_s": round(size / statistics.median(times["strategy"]), 2),
        "forward_img_per_s": round(size / statistics.median(times["forward"]), 2),
        "ratio_to_forward": round(statistics.median(f / s for f, s in zip(times["forward"], times["strategy"])), 3),
        "rss_after_setup_mb": round(rss_setup, 1),
        "peak_rss_growth_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_setup, 1),
    }
    if device.type == "cuda":
        record["peak_cuda_mb"] = round((torch.cuda.max_memory_allocated(device) - base_cuda) / 2**20, 1)
        torch.cuda.set_sync_debug_mode("error")
        try:
            query(7)
            record["host_syncs"] = "none"
        except RuntimeError as exc:
            record["host_syncs"] = str(exc).splitlines()[0][:200]
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return record


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(run_worker(args)), flush=True)
        return 0
    device = torch.device(args.device)
    header = {"benchmark": "strategy_costs", **run_header(device, argv), "image_size": args.image_size,
              "encoder": f"unet {args.encoder} (random weights, dropout 0.2 before the head)",
              "batch_size": args.batch_size, "classes": args.classes, "labelled": args.labelled,
              "threads": args.threads or torch.get_num_threads()}
    print(json.dumps(header), flush=True)
    passthrough = list(argv if argv is not None else sys.argv[1:])
    failed = 0
    for size in (int(s) for s in args.pool_sizes.split(",") if s):
        for name in (n for n in args.strategies.split(",") if n):
            cmd = [sys.executable, str(Path(__file__).resolve()), *passthrough, "--worker", f"{size}:{name}"]
            done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            if done.returncode != 0:
                print(json.dumps({"pool_size": size, "strategy": name, "error": f"exit {done.returncode}"}), flush=True)
                failed += 1
                continue
            print(done.stdout.strip().splitlines()[-1], flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
