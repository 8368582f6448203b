"""Run by tests/test_distributed.py, under torchrun (2 processes) or alone (no
WORLD_SIZE): score one pool with one model's weights by several strategies and
selection rules, sharded across the processes, and evaluate one split. Rank 0
writes what it got to the JSON file named by argv[1]; the test compares the two."""

from __future__ import annotations

import json
import sys

import torch

from segal_core import load_plugins
from segal_core.dataset import Dataset, DatasetView
from segal_core.distributed import World
from segal_core.model import ModelConfig
from segal_core.regions import RegionMaps
from segal_core.sharding import select_images, select_regions
from segal_core.strategy import PoolContext, RegionContext
from segal_core.testing import RandomImages

POOL = 23  # odd: the shards differ in size
DISTINCT = 7  # item i is image i % 7: many exact ties, broken by position


class Tied(Dataset):
    """``n`` items cycling through the images of ``base`` (ties on purpose)."""

    def __init__(self, base: Dataset, n: int) -> None:
        self.base, self.n = base, n
        self.classes, self.ignore_index, self.split = base.classes, base.ignore_index, "train"
        self.ids = [f"item-{i:03d}" for i in range(n)]

    def __len__(self) -> int:
        return self.n

    def image(self, index: int) -> torch.Tensor:
        return self.base.image(index % len(self.base))

    def mask(self, index: int) -> torch.Tensor:
        return self.base.mask(index % len(self.base))

    def image_size(self, index: int) -> tuple[int, int]:
        return self.base.image_size(index % len(self.base))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(index), self.mask(index)

    @classmethod
    def load(cls, config):  # pragma: no cover
        raise TypeError


IMAGE_CASES = [  # (strategy, options, k)
    ("entropy", {}, 5),
    ("margin", {"selection": "power", "beta": 2.0}, 6),
    ("bald", {"passes": 3}, 5),
]
REGION_CASES = [  # (strategy, options, budget in pixels)
    ("entropy", {}, 700),
    ("margin", {"selection": "softmax", "beta": 3.0}, 600),
    ("bald", {"passes": 2, "reduction": "max"}, 500),
]


def main(out: str) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    world = World.from_env()
    plugins = load_plugins()
    registry = plugins.registry
    base = RandomImages(DISTINCT, sizes=((16, 16), (16, 24)), num_classes=3, seed=3)
    pool: Dataset = Tied(base, POOL)
    view = DatasetView(pool, list(range(POOL)))
    config = ModelConfig(
        num_classes=3, device="cpu", seed=0, num_workers=0,
        options={"encoder": "tu-test_resnet", "batch_size": 2, "dropout": 0.2},
        rank=world.rank, world_size=world.world_size, local_rank=world.local_rank,
    )
    model = registry.model("unet")(config)  # the same weights on every rank (seeded)
    result: dict[str, object] = {"world_size": world.world_size}
    for n, (name, options, k) in enumerate(IMAGE_CASES):
        strategy = registry.strategy(name)(**options)

        def make_ctx(shard: DatasetView, offset: int) -> PoolContext:
            return PoolContext(pool=shard, model=model, generator=torch.Generator().manual_seed(100 + n),
                               batch_size=3, query_size=k, offset=offset)

        result[f"images:{name}:{options}"] = select_images(world, strategy, view, k, make_ctx)
    unit = registry.unit("patch")(size=8)
    for n, (name, options, budget) in enumerate(REGION_CASES):
        strategy = registry.strategy(name)(**options)
        labelled = {1: [0, 2], 4: [1]}  # a few regions labelled already (positions in the pool)

        def make_rctx(shard: DatasetView, offset: int) -> RegionContext:
            return RegionContext(
                pool=shard, model=model, generator=torch.Generator().manual_seed(200 + n), batch_size=3,
                unit=unit, maps=RegionMaps(unit, shard), budget=budget, offset=offset,
                labelled={i - offset: r for i, r in labelled.items() if offset <= i < offset + len(shard)},
            )

        picks = select_regions(world, strategy, view, budget, make_rctx)
        result[f"regions:{name}:{options}"] = [[p.index, p.region, p.pixels, p.score] for p in picks]
    evaluation = model.evaluate(RandomImages(9, sizes=((16, 16),), num_classes=3, seed=5, split="val"))
    result["evaluate"] = [evaluation.miou, evaluation.pixel_accuracy, evaluation.per_class_iou]
    if world.is_writer:
        with open(out, "w") as fh:
            json.dump(result, fh)
    world.close()
    torch.set_num_threads(threads)


if __name__ == "__main__":
    main(sys.argv[1])
