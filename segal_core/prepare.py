"""Setting a run up: every check a user can fail, cheaply and before any training.

Names, options, ratios, data, device, weights and the output folder are checked in
:func:`prepare_run`; a resumed run is also checked against the data it started with.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import __version__
from .config import RunConfig
from .dataset import CachedDataset, DataConfig, Dataset, Splits
from .distributed import SINGLE, World
from .errors import SegalError
from .limits import check_cache_fits
from .model import ModelConfig
from .options import coerce_options
from .plugins import Plugins, load_plugins
from .regions import RegionMaps, pixel_budget
from .run import Echo, Run, _quiet
from .rundir import FORMAT_VERSION, RunDir, RunState
from .shadow import ShadowRunDir
from .strategy import RegionContext, Strategy
from .units import QueryUnit

__all__ = [
    "check_resumed_data", "check_settings", "default_out", "prepare_run", "resume_free_oracle_options", "run_sizes",
]

log = logging.getLogger("segal")


def default_out(config: RunConfig) -> Path:
    """``runs/DATASET-STRATEGY-sSEED-TIME`` (``full`` for the strategy of a --full run)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = "full" if config.full else config.strategy
    return Path("runs") / f"{config.dataset}-{tag}-s{config.seed}-{stamp}"


def _versions() -> dict[str, str]:
    import torch

    out = {"segal": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("segmentation_models_pytorch", "torchvision", "pluggy", "albumentations"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # optional in a plugin-less install
            pass
    return out


def _load_splits(config: RunConfig, dataset_cls: type[Dataset]) -> Splits:
    path: Path | None = None
    if config.data_path:
        path = Path(config.data_path).expanduser()
        if not path.exists():
            raise SegalError(f"--data-path {config.data_path}: no such folder")
        if not path.is_dir():
            raise SegalError(f"--data-path {config.data_path}: is a file; give the dataset's folder")
    elif dataset_cls.requires_path:
        raise SegalError(f"--dataset {config.dataset} needs --data-path (the dataset's folder)")
    data_config = DataConfig(
        path=path, num_classes=config.num_classes, seed=config.seed, options=dict(config.dataset_options)
    )
    splits = dataset_cls.load(data_config)
    if config.cache:
        check_cache_fits(splits)  # absurd memory is refused up front (segal_core.limits)
        splits = Splits(
            train=CachedDataset(splits.train),
            val=CachedDataset(splits.val),
            test=CachedDataset(splits.test) if splits.test is not None else None,
            notices=splits.notices,
        )
    if len(splits.train) == 0:
        raise SegalError(f"--dataset {config.dataset}: the train split (the pool) is empty")
    if len(splits.val) == 0:
        raise SegalError(f"--dataset {config.dataset}: the val split is empty")
    return splits


def _build(cls: type, options: dict[str, Any], flag: str) -> Any:
    return cls(**coerce_options(cls, options, flag))


def run_sizes(config: RunConfig, pool_size: int) -> tuple[int, int]:
    """The seed set's size and the query size for a pool of ``pool_size``."""
    if config.full:
        return pool_size, 0
    seed = max(1, round(config.seed_ratio * pool_size))
    if config.query_size is not None:
        query = config.query_size
        if seed < pool_size and query > pool_size - seed:
            raise SegalError(
                f"--query-size {query}: larger than the unlabelled pool ({pool_size - seed} of "
                f"{pool_size} after the seed set); lower it"
            )
    else:
        query = max(1, round(config.query_ratio * pool_size))
    return min(seed, pool_size), query  # a seed set of the whole pool: one round


def _apply_threads(config: RunConfig, world: World = SINGLE) -> int:
    """Give this process its CPU thread budget (``--threads``, ``$SEGAL_THREADS``,
    else the usable cores, shared by the processes of the run on this machine);
    returns the DataLoader workers counted in it."""
    import os

    import torch

    from .threads import apply_threads, plan_threads, usable_cpus

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    budget = plan_threads(
        config.threads, device_type=device.split(":")[0], env=os.environ,
        cpus=max(1, usable_cpus() // world.local_world_size),
        workers=config.num_workers,
    )
    budget = apply_threads(budget)
    log.debug(
        f"threads: {budget.intra_op} compute + {budget.loader_workers} DataLoader workers (from {budget.source})"
    )
    return budget.loader_workers


def resume_free_oracle_options(plugins: Plugins, oracle: str) -> frozenset[str]:
    """The ``--oracle-opt`` keys that may differ on ``--resume`` (and the unsaved ones,
    a token that must be given again): the oracle class says which."""
    try:
        cls = plugins.registry.oracle(oracle)
    except SegalError:
        return frozenset()  # an unknown name is reported by prepare_run
    return frozenset(getattr(cls, "resume_options", ())) | frozenset(getattr(cls, "unsaved_options", ()))


def check_settings(config: RunConfig, plugins: Plugins) -> tuple[type[Dataset], type, Strategy, Any, QueryUnit]:
    """The checks that need no data: the settings, every name, every plugin's options,
    unit and strategy together, and that the data folder exists. Returns the dataset
    and model classes, the strategy, the oracle and the unit."""
    config.validate()
    reg = plugins.registry
    dataset_cls = reg.dataset(config.dataset)
    model_cls = reg.model(config.model)
    strategy = _build(reg.strategy(config.strategy), dict(config.strategy_options), "--strategy-opt")
    oracle = _build(reg.oracle(config.oracle), dict(config.oracle_options), "--oracle-opt")
    unit = _build(reg.unit(config.query_unit), dict(config.unit_options), "--unit-opt")
    _check_unit(config, unit, strategy)
    if config.data_path and not Path(config.data_path).expanduser().is_dir():
        _load_splits(config, dataset_cls)  # raises its one line (no such folder, a file)
    return dataset_cls, model_cls, strategy, oracle, unit


def prepare_run(
    config: RunConfig,
    *,
    plugins: Plugins | None = None,
    echo: Echo = _quiet,
    existing: RunDir | None = None,
    world: World = SINGLE,
) -> Run:
    """Validate everything a user can get wrong, cheaply and before any training:
    names, options, ratios, data, device, weights, the output folder. A new run's
    folder is created; an ``existing`` one is read back and checked. Under
    ``torchrun`` (``world``) only rank 0 touches the folder."""
    plugins = plugins or load_plugins(blocked=config.blocked)
    settings = check_settings(config, plugins)
    dataset_cls, model_cls, strategy, oracle, unit = settings

    out = Path(config.out) if config.out else default_out(config)
    if existing is None and world.is_writer:
        RunDir.check_new(out, flag="out=")
    workers = _apply_threads(config, world)

    splits = _load_splits(config, dataset_cls)
    for notice in splits.notices:
        log.info(f"notice: {notice}")
    if world.world_size > len(splits.train):
        raise SegalError(
            f"--nproc-per-node: {world.world_size} processes for a pool of {len(splits.train)} images; "
            f"start at most {len(splits.train)} (each process scores a share of the pool)"
        )
    areas = [h * w for h, w in (splits.train.image_size(i) for i in range(len(splits.train)))]
    masked = _check_pool_masks(config, splits.train, oracle)
    if unit.whole_image:
        seed_size, query_size = run_sizes(config, len(splits.train))
    else:  # sizes in pixels
        seed_size = pixel_budget(config.seed_ratio, None, sum(areas))
        query_size = 0 if config.full else pixel_budget(config.query_ratio, config.query_pixels, sum(areas))
    if masked is not None and any(masked) and not config.full:  # the frames with a mask are the seed set
        seed_size = masked.count(True) if unit.whole_image else sum(a for a, m in zip(areas, masked) if m)

    model_config = ModelConfig(
        num_classes=len(splits.classes),
        ignore_index=splits.ignore_index,
        device=world.device(config.device),
        num_workers=workers,
        seed=config.seed,
        options=dict(config.model_options),
        augmentation=plugins.call("segal_train_augmentation", config=config, splits=splits),
        rank=world.rank,
        world_size=world.world_size,
        local_rank=world.local_rank,
    )
    model = model_cls(model_config)  # device, encoder and weights fail here, up front
    strategy.check_model(model)  # a capability the strategy needs (embeddings, MC dropout)

    rundir = existing or (RunDir(out) if world.is_writer else ShadowRunDir(out))
    run = Run(
        # the data folder as an absolute path: `segal run --resume` and `segal status`
        # work from any folder (a run moved to another machine gives --data-path again)
        config=replace(config, out=str(out), data_path=_absolute(config.data_path) if existing is None
                       else config.data_path),
        out=out,
        plugins=plugins,
        splits=splits,
        model_cls=model_cls,
        model_config=model_config,
        strategy=strategy,
        oracle=oracle,
        rundir=rundir,
        state=existing.state(resume=True) if existing else RunState(),
        model=model,
        seed_size=seed_size,
        query_size=query_size,
        echo=echo,
        unit=unit,
        maps=RegionMaps(unit, splits.train, out / "regions" / cache_name(unit), write=world.is_writer),
        pool_areas=areas,
        pool_masked=masked,
        world=world,
    )
    if existing is None:
        unsaved = getattr(oracle, "unsaved_options", frozenset())
        recorded = run.config.to_json()
        recorded["oracle_options"] = {k: v for k, v in recorded["oracle_options"].items() if k not in unsaved}
        rundir.create(
            {
                **recorded,
                "resolved": {
                    "pool_size": len(splits.train),
                    "val_size": len(splits.val),
                    "test_size": len(splits.test) if splits.test is not None else None,
                    "classes": list(splits.classes),
                    "ignore_index": splits.ignore_index,
                    "seed_size": seed_size,
                    "query_size": query_size,
                    "size_unit": "images" if unit.whole_image else "pixels",
                    "query_unit": unit.describe(),
                    "pool_pixels": sum(areas),
                    "model_class": f"{model_cls.__module__}.{model_cls.__qualname__}",
                    "strategy_class": f"{type(strategy).__module__}.{type(strategy).__qualname__}",
                    "device": str(model.device),
                    "world_size": world.world_size,
                },
                "versions": _versions(),
                "format": FORMAT_VERSION,
            }
        )
    else:
        run.history = rundir.history(run.state)
        for sample_id, mask in rundir.read_masks(run.state.ledger, run.pool).items():
            run.keep_mask(sample_id, mask)
        rundir.clean_temporaries()
        rundir.drop_unnamed_masks(run.state)  # what a killed round labelled before its commit
        check_resumed_data(run)
    return run


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else path


def _check_pool_masks(config: RunConfig, pool: Dataset, oracle: Any) -> list[bool] | None:
    """Which pool frames have a mask (``None``: all). A pool with frames nobody
    labelled needs an oracle that waits for annotators, and cannot train --full."""
    masked = [bool(pool.has_mask(i)) for i in range(len(pool))]
    if all(masked):
        return None
    lacking = masked.count(False)
    first = pool.ids[masked.index(False)]
    if not getattr(oracle, "waits", False):
        raise SegalError(
            f"--oracle {config.oracle}: {lacking} of {len(pool)} pool frames have no mask (the first: {first!r}), "
            "and the ground truth cannot label them; let a person label them with --oracle folder "
            "(or --oracle label-studio), or give every frame a mask"
        )
    if config.full:
        raise SegalError(
            f"--full trains on every pool frame, but {lacking} of {len(pool)} have no mask (the first: {first!r}); "
            "drop --full, or give every frame a mask"
        )
    log.info(f"pool: {len(pool) - lacking} of {len(pool)} frames have a mask; the others wait for the oracle")
    return masked


def _check_unit(config: RunConfig, unit: QueryUnit, strategy: Strategy) -> None:
    """Unit, strategy and sizes that fit together, before any data is read."""
    if unit.whole_image:
        if config.query_pixels is not None:
            raise SegalError(f"--query-pixels needs a region unit (--query-unit patch|superpixel|...), "
                             f"not --query-unit {config.query_unit}; use --query-size for images")
        return
    if config.query_size is not None:
        raise SegalError(f"--query-size counts images; with --query-unit {config.query_unit} give --query-pixels")
    if type(strategy).score_regions is Strategy.score_regions:
        strategy.score_regions(RegionContext(pool=None, model=None, generator=None, unit=unit))  # type: ignore[arg-type]


def cache_name(unit: QueryUnit) -> str:
    """A folder name per unit and options (another --unit-opt, other regions)."""
    import hashlib

    return f"{unit.name}-{hashlib.sha1(unit.describe().encode()).hexdigest()[:8]}"


def check_resumed_data(run: Run) -> None:
    """On resume, the data must be what the run started with."""
    resolved = run.rundir.config().get("resolved", {})
    sizes = {"pool_size": len(run.splits.train), "val_size": len(run.splits.val),
             "test_size": len(run.splits.test) if run.splits.test is not None else None}
    changed = [f"{k} {resolved[k]} -> {v}" for k, v in sizes.items() if k in resolved and resolved[k] != v]
    if changed:
        raise SegalError(
            f"--resume {run.out}: the dataset changed since the run started ({', '.join(changed)}); "
            "point --data-path at the data the run started with"
        )
    known = set(run.pool.ids)
    missing = [sid for sid in run.state.ledger if sid not in known]
    if missing:
        raise SegalError(
            f"--resume {run.out}: labelled sample {missing[0]!r} is not in the dataset any more; "
            "point --data-path at the data the run started with"
        )
