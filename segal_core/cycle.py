"""The pool-based active-learning cycle (``segal run``) as a Python API.

seed labels -> train -> evaluate -> score the unlabelled pool -> select -> the
oracle labels -> repeat, until the rounds, the budget or the pool run out.
"""

from __future__ import annotations

import hashlib
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .config import RunConfig
from .dataset import CachedDataset, DataConfig, Dataset, DatasetView, Splits
from .errors import SegalError
from .model import EvalResult, Model, ModelConfig
from .options import coerce_options
from .oracle import Annotation, Oracle
from .plugins import PluginError, Plugins, load_plugins
from .progress import Bars
from .rundir import LedgerEntry, RunDir, RunState, atomic_write
from .strategy import PoolContext, Strategy

__all__ = ["Run", "prepare_run", "resume_run", "run_cycle", "default_out"]

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class Run:
    """One run in progress; what lifecycle hooks receive as ``run``.

    :ivar config: the resolved settings.
    :ivar out: the run directory.
    :ivar splits: the dataset's splits (``splits.train`` is the pool).
    :ivar model: the model of the current round (``None`` before round 0 trains).
    :ivar strategy: the query strategy; :ivar oracle: the oracle.
    :ivar state: the committed state (ledger, completed rounds).
    :ivar history: the records of the completed rounds.
    """

    config: RunConfig
    out: Path
    plugins: Plugins
    splits: Splits
    model_cls: type[Model]
    model_config: ModelConfig
    strategy: Strategy
    oracle: Oracle
    rundir: RunDir
    state: RunState
    history: list[dict[str, Any]] = field(default_factory=list)
    model: Model | None = None
    seed_size: int = 0
    query_size: int = 0
    echo: Echo = field(default=_quiet, repr=False)
    #: Partial masks returned by the oracle (id -> int64 mask), kept in memory so a
    #: round does not decode ``labels/`` again; read from disk once on resume.
    partial_masks: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def pool(self) -> Dataset:
        return self.splits.train

    @property
    def classes(self) -> Sequence[str]:
        return self.splits.classes

    @property
    def eval_split(self) -> tuple[str, Dataset]:
        """The split reported as ``test_*``: test, or val when there is none."""
        if self.splits.test is not None:
            return "test", self.splits.test
        return "val", self.splits.val

    def call(self, hook: str, **kwargs: Any) -> Any:
        return self.plugins.call(hook, run=self, **kwargs)

    def unlabelled_indices(self) -> list[int]:
        done = self.state.ledger
        return [i for i, sid in enumerate(self.pool.ids) if sid not in done]


# -- setting up ------------------------------------------------------------------


def default_out(config: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = "full" if config.full else config.strategy
    return Path("runs") / f"{config.dataset}-{tag}-s{config.seed}-{stamp}"


def _versions() -> dict[str, str]:
    out = {"segal": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("segmentation_models_pytorch", "torchvision", "pluggy"):
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


def _sizes(config: RunConfig, pool_size: int) -> tuple[int, int]:
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


def prepare_run(
    config: RunConfig,
    *,
    plugins: Plugins | None = None,
    echo: Echo = _quiet,
    existing: RunDir | None = None,
) -> Run:
    """Validate everything a user can get wrong, cheaply and before any training:
    names, options, ratios, data, device, weights, the output folder."""
    config.validate()
    plugins = plugins or load_plugins(blocked=config.blocked)
    reg = plugins.registry
    dataset_cls = reg.dataset(config.dataset)
    model_cls = reg.model(config.model)
    strategy = _build(reg.strategy(config.strategy), dict(config.strategy_options), "--strategy-opt")
    oracle = _build(reg.oracle(config.oracle), dict(config.oracle_options), "--oracle-opt")

    out = Path(config.out) if config.out else default_out(config)
    if existing is None:
        RunDir.check_new(out)

    splits = _load_splits(config, dataset_cls)
    for notice in splits.notices:
        echo(f"notice: {notice}")
    seed_size, query_size = _sizes(config, len(splits.train))

    model_config = ModelConfig(
        num_classes=len(splits.classes),
        ignore_index=splits.ignore_index,
        encoder=config.encoder,
        encoder_weights=config.encoder_weights,
        device=config.device,
        precision=config.precision,
        epochs=config.epochs,
        min_steps=config.min_steps,
        steps_per_image=config.steps_per_image,
        batch_size=config.batch_size,
        crop_size=config.crop_size,
        lr=config.lr,
        num_workers=config.num_workers,
        seed=config.seed,
        options=dict(config.model_options),
    )
    model = model_cls(model_config)  # device, encoder and weights fail here, up front

    rundir = existing or RunDir(out)
    state = existing.state() if existing else RunState()
    run = Run(
        config=replace(config, out=str(out)),
        out=out,
        plugins=plugins,
        splits=splits,
        model_cls=model_cls,
        model_config=model_config,
        strategy=strategy,
        oracle=oracle,
        rundir=rundir,
        state=state,
        model=model,
        seed_size=seed_size,
        query_size=query_size,
        echo=echo,
    )
    if existing is None:
        rundir.create(
            {
                **run.config.to_json(),
                "resolved": {
                    "pool_size": len(splits.train),
                    "val_size": len(splits.val),
                    "test_size": len(splits.test) if splits.test is not None else None,
                    "classes": list(splits.classes),
                    "ignore_index": splits.ignore_index,
                    "seed_size": seed_size,
                    "query_size": query_size,
                    "model_class": f"{model_cls.__module__}.{model_cls.__qualname__}",
                    "strategy_class": f"{type(strategy).__module__}.{type(strategy).__qualname__}",
                    "device": str(model.device),
                },
                "versions": _versions(),
                "format": 1,
            }
        )
    else:
        run.history = rundir.history(state)
        run.partial_masks = _read_partial_masks(run)
        rundir.clean_temporaries()
        _check_ledger(run)
    return run


def _check_ledger(run: Run) -> None:
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


# -- one round -------------------------------------------------------------------


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _iou_table(result: EvalResult, classes: Sequence[str]) -> dict[str, float | None]:
    return {c: _finite(v) for c, v in zip(classes, result.per_class_iou)}


def _phase(run: Run, round: int, name: str, seconds: dict[str, float], action: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    failure: list[BaseException] = []

    def guarded() -> Any:
        try:
            return action()
        except BaseException as exc:
            failure.append(exc)
            raise

    try:
        result = run.call("segal_phase", round=round, phase=name, action=guarded)
    except PluginError as exc:
        if failure and exc.__cause__ is failure[0]:
            raise failure[0] from None  # the phase itself failed, not a wrapping plugin
        raise
    model = run.model
    if model is not None and model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
    return result


def _round_model(run: Run, round: int) -> Model:
    """A fresh network seeded for this round; ``finetune`` starts from the last
    round's checkpoint."""
    if round == 0 and run.model is not None:
        model = run.model  # built (and seeded with config.seed) by prepare_run
    else:
        model = run.model_cls(replace(run.model_config, seed=run.config.seed + 1000 * round))
    if run.config.retrain == "finetune" and run.state.checkpoint:
        model.load(run.out / run.state.checkpoint)
    return model


def _next_query_size(run: Run, round: int) -> int:
    labelled = len(run.state.ledger)
    pool = len(run.pool)
    if run.config.full or labelled >= pool:
        return 0
    if run.config.rounds is not None and round + 1 >= run.config.rounds:
        return 0
    k = min(run.query_size, pool - labelled)
    if run.config.budget is not None:
        k = min(k, math.floor(run.config.budget * pool + 1e-9) - labelled)
    return max(k, 0)


def _seed_ledger(run: Run) -> None:
    pool = run.pool
    gen = torch.Generator().manual_seed(run.config.seed)
    order = torch.randperm(len(pool), generator=gen)[: run.seed_size].tolist()
    ids = [pool.ids[i] for i in sorted(order)]
    _label(run, -1, ids)


def _label(run: Run, round: int, ids: Sequence[str]) -> list[Annotation]:
    annotations = run.oracle.label(ids, run.pool)
    if [a.sample_id for a in annotations] != list(ids):
        raise SegalError(f"--oracle {run.config.oracle}: returned labels for other ids than queried")
    for ann in annotations:
        mask_file = None
        if ann.mask is not None:
            mask_file = _save_mask(run, ann)
            run.partial_masks[ann.sample_id] = ann.mask.detach().to("cpu", torch.int64)
        run.state.ledger[ann.sample_id] = LedgerEntry(round=round, pixels=int(ann.labeled_pixels), mask_file=mask_file)
    return annotations


def _save_mask(run: Run, ann: Annotation) -> str:
    import io

    import numpy as np
    from PIL import Image

    folder = run.out / "labels"
    folder.mkdir(exist_ok=True)
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in ann.sample_id)[:80]
    digest = hashlib.sha1(ann.sample_id.encode()).hexdigest()[:10]  # distinct ids, distinct files
    name = f"{readable}-{digest}.png"
    mask = ann.mask.detach().cpu().numpy()
    if mask.size and (mask.min() < 0 or mask.max() > 65535):
        raise SegalError(
            f"--oracle {run.config.oracle}: the mask for {ann.sample_id!r} holds values outside 0..65535"
        )
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8 if mask.max(initial=0) < 256 else np.uint16)).save(buf, format="PNG")
    atomic_write(folder / name, buf.getvalue())
    return f"labels/{name}"


def _read_partial_masks(run: Run) -> dict[str, torch.Tensor]:
    """The ledger's partial masks from ``labels/`` (on resume)."""
    import numpy as np
    from PIL import Image

    out: dict[str, torch.Tensor] = {}
    for sid, entry in run.state.ledger.items():
        if entry.mask_file:
            out[sid] = torch.from_numpy(np.array(Image.open(run.out / entry.mask_file)).astype("int64"))
    return out


def _one_round(run: Run, round: int, bars: Callable[[str, int, int], None]) -> dict[str, Any]:
    seconds: dict[str, float] = {}
    run.call("segal_round_start", round=round)
    started = time.perf_counter()
    pool = run.pool
    labelled_ids = list(run.state.ledger)
    train_view = DatasetView(pool, [pool.index_of(i) for i in labelled_ids], masks=run.partial_masks)

    model = _round_model(run, round)
    run.model = model
    train_result = _phase(run, round, "train", seconds, lambda: model.fit(train_view, run.splits.val, progress=bars))

    split_name, split = run.eval_split

    def evaluate() -> tuple[EvalResult, EvalResult]:
        # fit already measured val on the weights it kept, when it validated
        val = train_result.val_result or model.evaluate(run.splits.val, progress=bars)
        test = val if run.splits.test is None else model.evaluate(split, progress=bars)
        return val, test

    val, test = _phase(run, round, "evaluate", seconds, evaluate)
    metrics = {
        "train": {
            "loss": _finite(train_result.final_loss),
            "epochs": train_result.epochs,
            "steps": train_result.steps,
            "best_epoch": train_result.best_epoch,
        },
        "val": val.as_dict(run.classes),
        "test": test.as_dict(run.classes),
    }
    run.call("segal_after_train", round=round, metrics=metrics)

    labelled_before = len(run.state.ledger)
    labelled_pixels = sum(e.pixels for e in run.state.ledger.values())
    k = _next_query_size(run, round)
    queried: list[str] = []
    scores_out: list[float] = []
    if k > 0:
        unlabelled = run.unlabelled_indices()
        view = DatasetView(pool, unlabelled)
        ctx = PoolContext(
            pool=view,
            model=model if run.strategy.uses_model else None,
            generator=torch.Generator().manual_seed(run.config.seed * 7919 + round + 1),
            batch_size=model.inference_batch_size(),
            num_workers=model.loader_workers(),
            progress=bars,
        )
        scores = _phase(run, round, "score", seconds, lambda: run.strategy.score(ctx))
        run.call("segal_after_scoring", round=round, ids=view.ids, scores=scores)

        def select() -> tuple[list[str], list[float]]:
            chosen = run.call("segal_select", round=round, ids=view.ids, scores=scores, k=k)
            if chosen is not None:
                position = {sid: n for n, sid in enumerate(view.ids)}
                ids = _checked_selection(run, chosen, position, k)
                picked = torch.tensor([position[sid] for sid in ids], device=scores.device)
            else:
                picked = run.strategy.select(scores, k)  # top-k on the scores' device
            # only the k chosen positions and scores come to the host
            positions = picked.cpu().tolist()
            return [view.ids[i] for i in positions], scores[picked].detach().float().cpu().tolist()

        queried, scores_out = _phase(run, round, "select", seconds, select)
        run.call("segal_after_query", round=round, queried=queried, scores=scores_out)
        annotations = _phase(run, round, "label", seconds, lambda: _label(run, round, queried))
        run.call("segal_after_label", round=round, annotations=annotations)

    seconds["total"] = time.perf_counter() - started
    pool_size = len(pool)
    return {
        "round": round,
        "labeled": labelled_before,
        "labeled_fraction": labelled_before / pool_size,
        "labeled_pixels": labelled_pixels,
        "pool_size": pool_size,
        "val_miou": _finite(val.miou),
        "test_miou": _finite(test.miou),
        "test_split": split_name,
        "val_pixel_accuracy": _finite(val.pixel_accuracy),
        "test_pixel_accuracy": _finite(test.pixel_accuracy),
        "per_class_iou": _iou_table(test, run.classes),
        "val_per_class_iou": _iou_table(val, run.classes),
        "train": metrics["train"],
        "queried": queried,
        "query_scores": [_finite(s) for s in scores_out],
        "seconds": {phase: float(f"{spent:.4f}") for phase, spent in seconds.items()},
    }


def _checked_selection(run: Run, chosen: Any, position: dict[str, int], k: int) -> list[str]:
    """A ``segal_select`` result must be ``k`` distinct unlabelled ids."""
    plugins = ", ".join(repr(i.plugin_name) for i in run.plugins.manager.hook.segal_select.get_hookimpls())
    if isinstance(chosen, (str, bytes)) or not isinstance(chosen, Sequence):
        raise SegalError(f"plugin {plugins} returned a {type(chosen).__name__} from segal_select, not a list of ids")
    ids = list(chosen)
    bad = [sid for sid in ids if sid not in position]
    if len(ids) != k or len(set(ids)) != k or bad:
        extra = f" ({bad[0]!r} is not an unlabelled id)" if bad else ""
        raise SegalError(
            f"plugin {plugins} returned {len(ids)} ids from segal_select, not {k} distinct unlabelled ids{extra}"
        )
    return ids


def summary_line(record: dict[str, Any]) -> str:
    """One line per round: labelled count and fraction, mIoU, seconds per phase."""
    sec = record["seconds"]
    phases = " ".join(f"{k} {v:.1f}s" for k, v in sec.items() if k != "total")
    val = record["val_miou"]
    test = record["test_miou"]
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    return (
        f"round {record['round']:>2} | labelled {record['labeled']}/{record['pool_size']} "
        f"({100 * record['labeled_fraction']:.1f}%) | val mIoU {fmt(val)} | "
        f"{record['test_split']} mIoU {fmt(test)} | {phases} | queried {len(record['queried'])}"
    )


# -- the loop --------------------------------------------------------------------


def _loop(run: Run) -> list[dict[str, Any]]:
    from .report import plot_runs

    bars = Bars(enabled=run.config.progress)
    try:
        if run.state.completed_rounds == 0 and not run.state.ledger:
            _seed_ledger(run)
        run.call("segal_run_start")
        while not run.state.finished:
            round = run.state.completed_rounds
            record = _one_round(run, round, bars)
            checkpoint = run.rundir.checkpoint_name(round)
            assert run.model is not None
            run.model.save(run.out / checkpoint)
            run.history.append(record)
            done = not record["queried"]
            run.state = RunState(
                completed_rounds=round + 1, ledger=run.state.ledger, checkpoint=checkpoint, finished=done
            )
            run.rundir.commit(run.state, run.history)
            run.echo(summary_line(record))
            run.call("segal_round_end", record=record)
            plot_runs([(run.config.strategy, run.history)], run.out / "curve.png", title=str(run.out.name))
        run.call("segal_run_end", history=run.history)
    except KeyboardInterrupt as exc:
        exc.run_dir = run.out  # type: ignore[attr-defined]  # for the CLI's message
        raise
    finally:
        bars.close()
    return run.history


def run_cycle(
    config: RunConfig, *, plugins: Plugins | None = None, echo: Echo = _quiet
) -> list[dict[str, Any]]:
    """Run the whole cycle into ``config.out`` (a new folder) and return the history:
    one record per round, as in ``history.jsonl``."""
    run = prepare_run(config, plugins=plugins, echo=echo)
    echo(
        f"run {run.out}: {config.dataset} pool {len(run.pool)}, strategy {config.strategy}, "
        f"model {config.model}/{config.encoder} on {run.model.device if run.model else '?'}, "
        f"seed set {run.seed_size}, {run.query_size} per query"
    )
    return _loop(run)


def resume_run(
    out: Path | str,
    overrides: dict[str, Any] | None = None,
    *,
    plugins: Plugins | None = None,
    echo: Echo = _quiet,
) -> list[dict[str, Any]]:
    """Continue the run in ``out`` from its last completed round.

    ``overrides`` are settings given again on the command line; any that differ from
    the run's own (other than output and worker settings) is an error naming them.
    """
    rundir = RunDir.open_existing(Path(out))
    saved = RunConfig.from_json(rundir.config())
    if overrides:
        merged = dict(overrides)
        for key in ("dataset_options", "model_options", "strategy_options", "oracle_options", "plugin_options"):
            if key in merged:  # options given again add to the run's own
                merged[key] = {**getattr(saved, key), **merged[key]}
        wanted = replace(saved, **merged)
        diff = saved.differences(wanted)
        if diff:
            shown = ", ".join(f"{k} (run: {getattr(saved, k)!r}, given: {getattr(wanted, k)!r})" for k in diff)
            raise SegalError(f"--resume {out}: options differ from the run's config.json: {shown}; drop them to resume")
        saved = replace(wanted, out=str(out))
    saved.out = str(out)
    run = prepare_run(saved, plugins=plugins, echo=echo, existing=rundir)
    if run.state.finished:
        echo(f"run {out} is already complete ({run.state.completed_rounds} rounds)")
        return run.history
    echo(f"resuming {out} at round {run.state.completed_rounds} ({len(run.state.ledger)} labelled)")
    return _loop(run)
