"""Pool-scoring throughput and memory: every strategy against a forward-only pass.

    python benchmarks/score_pool.py --device cpu --pool-sizes 32,128
    python benchmarks/score_pool.py --device cuda --pool-sizes 512,2048

Prints one JSON header line (machine, torch, model, image size, batch size, how
memory is measured), then one JSON line per pool size:

* ``img_per_s``: strategy -> images per second through ``strategy.score``
  (median over ``--repeats`` passes);
* ``forward_only_img_per_s``: the same model, the same batches through the same
  DataLoader (``segal_core.scoring.score_pool`` with an ``image_scores`` that
  discards the logits);
* ``ratio_to_forward``: strategy -> median over repeats of forward time / strategy
  time, each pair measured back to back (the passes are interleaved and their order
  rotates every repeat, so drift on a shared machine hits all of them alike);
* ``per_batch_ratio``: uncertainty strategy -> forward time / (forward time +
  ``image_scores`` time), summed over one more pass where each batch's logits are
  scored by every strategy right after the forward (robust to a noisy machine);
* with ``--query-unit patch|superpixel``: the strategies score regions
  (``score_regions``: per-region reduction and the streaming selection of
  ``--query-pixels``), against the same forward-only pass; the per-batch ratio is
  not measured then;
* ``peak_rss_mb``: ``ru_maxrss`` of a fresh Python process that scores only this
  pool size (model, warm-up and every pass included); ``rss_after_setup_mb`` is
  the RSS before the first timed pass, so the difference is what scoring added.
  On CUDA, ``peak_cuda_mb`` is ``torch.cuda.max_memory_allocated``.

Images are synthetic uint8 (``segal_core.testing.RandomImages``), generated on each
access so the data itself takes no memory, or real frames with ``--data PATH``
(``--dataset camvid`` by default), cycled to reach the pool size. The model comes
from the plugin registry (``--model unet --encoder resnet18``, random weights);
``--model tiny`` uses the test model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from benchlib import machine_name

STRATEGIES = ("random", "least_confidence", "margin", "entropy")
FORWARD = "forward_only"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--pool-sizes", default="32,128", help="comma-separated pool sizes")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=None, help="default: 0 on cpu, 4 on cuda")
    p.add_argument("--image-size", default="360x480", help="HxW of the synthetic images")
    p.add_argument("--model", default="unet", help="a registered model name, or 'tiny'")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--classes", type=int, default=12)
    p.add_argument("--precision", default="auto", help="the model's precision (auto, fp32, bf16, fp16)")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--reduction", default="mean", help="reduction of the uncertainty strategies")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per strategy and pool size")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--data", type=Path, default=None, help="real images instead of synthetic ones")
    p.add_argument("--dataset", default="camvid", help="dataset plugin for --data")
    p.add_argument("--query-unit", default="image", help="image, or a region unit: patch, superpixel")
    p.add_argument("--unit-opt", action="append", default=[], metavar="KEY=VALUE", help="option of the unit")
    p.add_argument("--query-pixels", type=int, default=100_000, help="region selection budget (pixels)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def current_rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_model(args: argparse.Namespace):  # noqa: ANN201 - a segal_core.Model
    from segal_core import ModelConfig, registry
    from segal_core.testing import TinyModel

    options: dict[str, object] = {}
    if args.model != "tiny":  # the smp model's own settings
        options.update(encoder=args.encoder, encoder_weights=None, precision=args.precision,
                       batch_size=args.batch_size)
    config = ModelConfig(num_classes=args.classes, device=args.device, options=options)
    if args.model == "tiny":
        return TinyModel(config)
    return registry().model(args.model)(config)


def build_pool(args: argparse.Namespace, size: int):  # noqa: ANN201 - a segal_core.Dataset
    from segal_core import DataConfig, DatasetView, registry
    from segal_core.testing import RandomImages

    if args.data is None:
        height, width = (int(v) for v in args.image_size.lower().split("x"))
        return RandomImages(size, sizes=[(height, width)], num_classes=args.classes, seed=1)
    splits = registry().dataset(args.dataset).load(DataConfig(path=args.data))
    train = splits.train
    return DatasetView(train, [i % len(train) for i in range(size)])


def run_worker(args: argparse.Namespace) -> dict[str, object]:
    from segal_core import PoolContext, RegionContext, Strategy, UncertaintyStrategy, registry
    from segal_core.scoring import pool_loader, score_pool

    if args.threads:
        torch.set_num_threads(args.threads)
    size = args.worker
    model = build_model(args)
    pool = build_pool(args, size)
    workers = args.num_workers if args.num_workers is not None else (4 if model.device.type == "cuda" else 0)
    reg = registry()
    names = [n for n in args.strategies.split(",") if n]
    strategies: dict[str, Strategy] = {}
    for name in names:
        cls = reg.strategy(name)
        strategies[name] = cls(reduction=args.reduction) if issubclass(cls, UncertaintyStrategy) else cls()

    def discard(logits: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        return torch.zeros(logits.shape[0], device=logits.device)

    def sync() -> None:
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)

    passes: dict[str, Callable[[], torch.Tensor]] = {
        FORWARD: lambda: score_pool(model, pool, discard, batch_size=args.batch_size, num_workers=workers)
    }
    unit = None
    if args.query_unit != "image":  # region scoring: per-region scores, streaming selection
        import tempfile

        from segal_core.options import coerce_options, parse_pairs
        from segal_core.regions import RegionMaps

        unit_cls = reg.unit(args.query_unit)
        unit = unit_cls(**coerce_options(unit_cls, parse_pairs(args.unit_opt, "--unit-opt"), "--unit-opt"))
        maps = RegionMaps(unit, pool, Path(tempfile.mkdtemp(prefix="segal-regions-")))
        for i in range(size):  # costly maps (superpixels) are computed once, as in a run
            maps(i)

    def scorer(strategy: Strategy, seed: int) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            common = dict(pool=pool, model=model, generator=torch.Generator().manual_seed(seed),
                          batch_size=args.batch_size, num_workers=workers)
            if unit is None:
                return strategy.score(PoolContext(**common))
            picks = strategy.score_regions(
                RegionContext(**common, unit=unit, maps=maps, budget=args.query_pixels, labelled={})
            )
            return torch.zeros(size) if picks else torch.zeros(0)  # only the picks are kept

        return run

    for seed, (name, strategy) in enumerate(strategies.items()):
        passes[name] = scorer(strategy, seed)

    # warm-up: one batch through the network (allocator, cudnn autotune, lazy init)
    warm = torch.stack([pool.image(i) for i in range(min(args.batch_size, size))])
    model.logits(warm)
    sync()
    del warm
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(model.device)
    rss_setup = current_rss_mb()

    order = list(passes)
    seconds: dict[str, list[float]] = {name: [] for name in order}
    for repeat in range(args.repeats):
        shift = repeat % len(order)
        for name in order[shift:] + order[:shift]:
            sync()
            start = time.perf_counter()
            scores = passes[name]()
            sync()
            seconds[name].append(time.perf_counter() - start)
            assert scores.shape == (size,) or unit is not None
            del scores

    # the same comparison batch by batch: forward, then each strategy's image_scores
    # on those very logits, back to back (immune to drift between whole passes)
    uncertainty = {n: st for n, st in strategies.items() if isinstance(st, UncertaintyStrategy) and unit is None}
    batch_forward, batch_scoring = 0.0, dict.fromkeys(uncertainty, 0.0)
    loader = pool_loader(
        pool, batch_size=args.batch_size, num_workers=workers, pin_memory=model.device.type == "cuda"
    )
    with torch.inference_mode():
        for images, valid in loader:
            images = images.to(model.device, non_blocking=True)
            sync()
            start = time.perf_counter()
            logits = model.logits(images)
            sync()
            batch_forward += time.perf_counter() - start
            for name, strategy in uncertainty.items():
                start = time.perf_counter()
                strategy.image_scores(logits, valid)
                sync()
                batch_scoring[name] += time.perf_counter() - start
    del loader

    forward = seconds[FORWARD]
    record: dict[str, object] = {
        "pool_size": size,
        "img_per_s": {n: round(size / statistics.median(seconds[n]), 3) for n in names},
        "forward_only_img_per_s": round(size / statistics.median(forward), 3),
        "ratio_to_forward": {
            n: round(statistics.median(f / t for f, t in zip(forward, seconds[n], strict=True)), 3)
            for n in names
        },
        "per_batch_ratio": {
            n: round(batch_forward / (batch_forward + t), 4) for n, t in batch_scoring.items()
        },
        "repeats": args.repeats,
        "rss_after_setup_mb": round(rss_setup, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if model.device.type == "cuda":
        record["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(model.device) / 2**20, 1)
    return record


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(run_worker(args)), flush=True)
        return 0
    header = {
        "benchmark": "score_pool",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_name(torch.device(args.device if torch.cuda.is_available() else "cpu")),
        "device": args.device,
        "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(),
        "model": f"{args.model} ({args.encoder}, random weights)" if args.model != "tiny" else "tiny",
        "classes": args.classes,
        "image_size": "data: " + str(args.data) if args.data else args.image_size,
        "batch_size": args.batch_size,
        "reduction": args.reduction,
        "rss": "ru_maxrss of a fresh subprocess per pool size",
        "query_unit": args.query_unit if args.query_unit == "image" else
        f"{args.query_unit} {' '.join(args.unit_opt)}, selection budget {args.query_pixels} px",
    }
    print(json.dumps(header), flush=True)
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    for size in (int(s) for s in args.pool_sizes.split(",") if s):
        cmd = [sys.executable, str(Path(__file__).resolve()), *passthrough, "--worker", str(size)]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            print(json.dumps({"pool_size": size, "error": f"worker exited with {done.returncode}"}))
            return done.returncode
        print(done.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
