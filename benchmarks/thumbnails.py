"""What the thumbnails cost a round: pool scoring and selection, with and without the
``segal_thumbnails`` plugin's work, side by side.

    python benchmarks/thumbnails.py --device cpu --pool-size 64 --k 8
    python benchmarks/thumbnails.py --device cuda --pool-size 512 --k 48

The plugin acts after selection, on the ``k`` queried samples only: one forward pass
each (the pool's per-pixel maps are never kept), the strategy's per-pixel score,
the arg-max, four small pictures and an index. Each repeat measures, back to back:

* ``score_select``: ``strategy.score`` over the pool, then ``strategy.select(k)``
  (what a round spends without the plugin);
* ``thumbnails``: ``segal_thumbnails.store.write_round`` and ``write_labels`` for the
  selected ``k`` (what the plugin adds, files written to a temporary run folder).

Printed: one JSON line (header, settings, medians over ``--repeats``,
``ratio`` = median of (score_select + thumbnails) / score_select per repeat, bytes
per sample) and a small table. Images are synthetic uint8 frames
(``segal_core.testing.RandomImages``); the model comes from the registry (``unet``,
random weights) or is ``--model tiny``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # a checkout that is not installed
    sys.path.append(str(Path(__file__).resolve().parents[1]))
from segal_core.threads import prepare_environment

prepare_environment()  # idle OpenMP threads sleep, as under `segal run`: set before torch loads

import torch  # noqa: E402
from benchlib import run_header, sync  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--pool-size", type=int, default=64)
    p.add_argument("--k", type=int, default=8, help="samples queried per round")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", default="360x480", help="HxW of the synthetic images")
    p.add_argument("--model", default="unet", help="a registered model name, or 'tiny'")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--classes", type=int, default=12)
    p.add_argument("--strategy", default="entropy")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="also write the JSON line here")
    return p.parse_args(argv)


@dataclass
class BenchRun:
    """The parts of a ``segal_core.Run`` the thumbnail writer reads."""

    out: Path
    model: Any
    pool: Any
    strategy: Any
    config: Any
    partial_masks: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return list(self.pool.classes)


def build(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from segal_core import ModelConfig, UncertaintyStrategy, registry
    from segal_core.testing import RandomImages, TinyModel

    options: dict[str, object] = {}
    if args.model != "tiny":
        options.update(encoder=args.encoder, encoder_weights=None, batch_size=args.batch_size)
    config = ModelConfig(num_classes=args.classes, device=args.device, options=options)
    reg = registry()
    model = TinyModel(config) if args.model == "tiny" else reg.model(args.model)(config)
    height, width = (int(v) for v in args.image_size.lower().split("x"))
    pool = RandomImages(args.pool_size, sizes=[(height, width)], num_classes=args.classes, seed=1)
    cls = reg.strategy(args.strategy)
    strategy = cls(reduction="mean") if issubclass(cls, UncertaintyStrategy) else cls()
    return model, pool, strategy


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from segal_core import Annotation, PoolContext

    from segal_thumbnails.store import write_labels, write_round

    model, pool, strategy = build(args)
    device = model.device
    model.logits(torch.stack([pool.image(i) for i in range(min(args.batch_size, len(pool)))]))  # warm-up
    sync(device)
    seconds: dict[str, list[float]] = {"score_select": [], "thumbnails": []}
    sizes: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            ctx = PoolContext(pool=pool, model=model, generator=torch.Generator().manual_seed(repeat),
                              batch_size=args.batch_size)
            start = time.perf_counter()
            scores = strategy.score(ctx)
            picked = strategy.select(scores, args.k)
            sync(device)
            seconds["score_select"].append(time.perf_counter() - start)
            ids = [pool.ids[i] for i in picked.cpu().tolist()]
            values = scores[picked].float().cpu().tolist()
            run = BenchRun(Path(tmp), model, pool, strategy,
                           SimpleNamespace(strategy=args.strategy, plugin_options={}))
            start = time.perf_counter()
            write_round(run, repeat, ids, values)  # type: ignore[arg-type]
            write_labels(run, repeat, [Annotation(sid, 0) for sid in ids])  # type: ignore[arg-type]
            sync(device)
            seconds["thumbnails"].append(time.perf_counter() - start)
            folder = Path(tmp) / "thumbnails" / f"round-{repeat:03d}"
            sizes.append(sum(p.stat().st_size for p in folder.iterdir() if p.name != "index.json"))
    ratio = statistics.median(
        (s + t) / s for s, t in zip(seconds["score_select"], seconds["thumbnails"], strict=True)
    )
    result = {
        "benchmark": "thumbnails",
        "header": run_header(device, [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"},
        "seconds": {k: round(statistics.median(v), 4) for k, v in seconds.items()},
        "all_seconds": {k: [round(x, 4) for x in v] for k, v in seconds.items()},
        "ms_per_thumbnail_sample": round(1000 * statistics.median(seconds["thumbnails"]) / args.k, 2),
        "ratio": round(ratio, 4),
        "bytes_per_sample": round(statistics.median(sizes) / args.k),
    }
    line = json.dumps(result)
    print(line)
    if args.json is not None:
        args.json.write_text(line + "\n")
    med = result["seconds"]
    print(f"\n{'pool':>6} {'k':>4} {'score+select s':>15} {'thumbnails s':>13} {'ms/sample':>10} "
          f"{'ratio':>7} {'bytes/sample':>13}")
    print(f"{args.pool_size:>6} {args.k:>4} {med['score_select']:>15.3f} {med['thumbnails']:>13.3f} "
          f"{result['ms_per_thumbnail_sample']:>10.1f} {result['ratio']:>7.3f} {result['bytes_per_sample']:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
