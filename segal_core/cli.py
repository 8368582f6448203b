"""The ``segal`` command line. Every command is a thin layer over the Python API."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .cliopts import RunOption
from .config import OPTION_MAPS, RunConfig, load_config_file
from .errors import WAITING_EXIT, LabelsPending, SegalError
from .options import parse_pairs
from .plugins import DISABLE_ENV, Plugins, load_plugins
from .rundir import RunDir
from .threads import prepare_environment

__all__ = ["build_cli", "main", "run_main"]

INTERRUPTED = 130
TERMINATED = 143


def blocked_from_argv(argv: Sequence[str]) -> list[str]:
    """Plugin names after ``-p no:NAME`` (or ``-pno:NAME``, ``-p=no:NAME``)."""
    out: list[str] = []
    args = list(argv)
    for i, arg in enumerate(args):
        value = None
        if arg == "-p" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("-p") and not arg.startswith("--") and len(arg) > 2:
            value = arg[2:].lstrip("=")
        if value and value.startswith("no:"):
            out.append(value[3:])
    return out


# -- segal run -------------------------------------------------------------------

# (names, dest, click kwargs); the original SegAL spellings are kept as aliases. The
# model's own settings (--encoder, --epochs, --lr, ...) are added by the model plugin.
RUN_OPTIONS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("--config",), "config_file", {"type": click.Path(path_type=Path, dir_okay=False),
                                    "help": "Settings from a TOML or JSON file (keys of RunConfig; a run's "
                                    "config.json works). Options given here win."}),
    (("--dataset",), "dataset", {"default": "synthetic", "show_default": True,
                                 "help": "Dataset plugin name (see `segal plugins`)."}),
    (("--data-path", "--data_path"), "data_path", {"help": "The dataset's folder."}),
    (("--dataset-opt",), "dataset_opt", {"multiple": True, "metavar": "KEY=VALUE",
                                         "help": "Option for the dataset (repeatable)."}),
    (("--num-classes", "--num_classes"), "num_classes", {"type": int,
                                                         "help": "Classes (dataset default if not given)."}),
    (("--model", "--model_name"), "model", {"default": "unet", "show_default": True,
                                            "help": "Model (see `segal plugins`)."}),
    (("--model-opt",), "model_opt", {"multiple": True, "metavar": "KEY=VALUE",
                                     "help": "Setting of the model (repeatable); see docs/models.md."}),
    (("--strategy",), "strategy", {"default": "entropy", "show_default": True,
                                   "help": "Query strategy; SegAL names (LeastConfidence, ...) accepted."}),
    (("--strategy-opt",), "strategy_opt", {"multiple": True, "metavar": "KEY=VALUE",
                                           "help": "Option for the strategy, e.g. reduction=max (repeatable)."}),
    (("--oracle",), "oracle", {"default": "ground_truth", "show_default": True, "help": "Who labels queries."}),
    (("--oracle-opt",), "oracle_opt", {"multiple": True, "metavar": "KEY=VALUE",
                                       "help": "Option for the oracle (repeatable)."}),
    (("--query-unit",), "query_unit", {"default": "image", "show_default": True,
                                       "help": "What is queried: image, patch, superpixel (or a plugin's unit)."}),
    (("--unit-opt",), "unit_opt", {"multiple": True, "metavar": "KEY=VALUE",
                                   "help": "Option for the query unit, e.g. size=32 (repeatable)."}),
    (("--query-pixels",), "query_pixels", {"type": int, "help": "Pixels queried per round with a region unit "
                                           "(overrides --query-ratio)."}),
    (("--seed-unit",), "seed_unit", {"type": click.Choice(["region", "image"]), "default": "region",
                                     "show_default": True,
                                     "help": "With a region unit: a seed set of random regions, or whole images."}),
    (("--seed-ratio", "--seed_ratio"), "seed_ratio", {"type": float, "default": 0.1, "show_default": True,
                                                      "help": "Fraction of the pool labelled at the start (of its pixels with a region unit)."}),
    (("--query-ratio", "--query_ratio"), "query_ratio", {"type": float, "default": 0.1, "show_default": True,
                                                         "help": "Fraction of the pool queried per round (of its pixels with a region unit)."}),
    (("--query-size",), "query_size", {"type": int, "help": "Samples queried per round (overrides --query-ratio)."}),
    (("--rounds",), "rounds", {"type": int, "help": "Rounds to record (default: until the pool is exhausted)."}),
    (("--budget",), "budget", {"type": float, "help": "Stop at this labelled fraction of the pool (of its pixels with a region unit)."}),
    (("--device",), "device", {"default": "auto", "show_default": True, "help": "auto, cpu, cuda or cuda:N."}),
    (("--num-workers", "--num_workers"), "num_workers", {"type": int, "help": "DataLoader workers."}),
    (("--threads",), "threads", {"type": int, "help": "CPU threads (default: $SEGAL_THREADS, else from the "
                                 "cores this process may use); see docs/threads.md."}),
    (("--seed", "--random_seed"), "seed", {"type": int, "default": 0, "show_default": True,
                                              "help": "Seeds the seed set, the networks, data order and random queries."}),
    (("--retrain",), "retrain", {"type": click.Choice(["scratch", "finetune"]), "default": "scratch",
                                 "show_default": True, "help": "Each round: a fresh network, or the last one."}),
    (("--cache",), "cache", {"is_flag": True, "help": "Decode the dataset once into memory (fast epochs)."}),
    (("--full",), "full", {"is_flag": True, "help": "Train once on the whole pool (the full-data baseline)."}),
    (("--out",), "out", {"help": "New run folder (default runs/DATASET-STRATEGY-sSEED-TIME)."}),
    (("--resume",), "resume", {"help": "Continue the run in this folder from its last completed round "
                               "(a run waiting for labels collects them first)."}),
    (("--dry-run",), "dry_run", {"is_flag": True, "help": "With --resume: say where the run stands and how many "
                                 "labels are in (segal status), without training."}),
    (("--no-progress",), "no_progress", {"is_flag": True, "help": "No progress bars."}),
    (("--nproc-per-node",), "nproc_per_node", {"type": int, "help": "Run on N processes of this machine "
                                               "(torch's launcher; see docs/distributed.md)."}),
]

# CLI dest -> RunConfig field where they differ.
_FIELD = {"dataset_opt": "dataset_options", "model_opt": "model_options",
          "strategy_opt": "strategy_options", "oracle_opt": "oracle_options", "unit_opt": "unit_options"}
# CLI dests that are not RunConfig fields.
_NOT_FIELDS = ("resume", "no_progress", "config_file", "dry_run", "nproc_per_node")


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def _config_values(params: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """Map the ``given`` CLI values onto ``RunConfig`` fields."""
    out: dict[str, Any] = {}
    for dest, value in params.items():
        if dest in _NOT_FIELDS or dest not in given:
            continue
        if dest in _FIELD:
            out[_FIELD[dest]] = parse_pairs(value, "--" + dest.replace("_", "-"))
        else:
            out[dest] = value
    if "no_progress" in given and params.get("no_progress"):
        out["progress"] = False
    return out


def _plugin_values(ctx: click.Context, options: Sequence[click.Option], params: dict[str, Any],
                   only_given: bool) -> dict[str, Any]:
    """The values of the options plugins added, as ``RunConfig`` fields: a
    :class:`RunOption` sets one key of its map (only when given); any other option
    goes to ``plugin_options``."""
    out: dict[str, dict[str, Any]] = {}
    for opt in options:
        name = opt.name or ""
        given = _given(ctx, name)
        if isinstance(opt, RunOption):
            if given:
                out.setdefault(opt.target, {})[opt.key] = params[name]
        elif given or not only_given:
            out.setdefault("plugin_options", {})[name] = params[name]
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``; option maps are merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        if key in OPTION_MAPS and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _check_flag_clashes(flags: dict[str, Any], pairs: dict[str, Any], options: Sequence[click.Option]) -> None:
    """``--encoder x`` and ``--model-opt encoder=y`` on one command line: refuse."""
    for opt in options:
        if isinstance(opt, RunOption) and opt.key in flags.get(opt.target, {}) and opt.key in pairs.get(opt.target, {}):
            flag = opt.opts[0]
            pair_flag = "--" + opt.target.replace("_options", "-opt")
            raise SegalError(f"{flag} and {pair_flag} {opt.key}=... both given; keep one")


def _make_run_command(plugins: Plugins) -> click.Command:
    plugin_options: list[click.Option] = []
    owner: dict[str, str] = {names[0]: "segal" for names, _, _ in RUN_OPTIONS}
    owner.update({f"--{dest.replace('_', '-')}": "segal" for _, dest, _ in RUN_OPTIONS})
    for impl in plugins.manager.hook.segal_cli_options.get_hookimpls():
        for opt in plugins.call_impl(impl, "segal_cli_options") or ():
            for flag in (*opt.opts, *opt.secondary_opts, f"dest:{opt.name}"):
                if flag in owner:
                    raise SegalError(
                        f"option {flag.removeprefix('dest:')} of segal run is claimed by both "
                        f"{owner[flag]!r} and {impl.plugin_name!r}; block one (segal -p no:NAME)"
                    )
                owner[flag] = impl.plugin_name
            plugin_options.append(opt)
    plugin_dests = {opt.name for opt in plugin_options}

    def callback(**params: Any) -> None:
        from .cycle import resume_run, run_cycle

        echo = click.echo if _rank() == 0 else _silent  # under torchrun rank 0 speaks
        ctx = click.get_current_context()
        plugin_given = _plugin_values(ctx, plugin_options, params, only_given=True)
        plugin_all = _plugin_values(ctx, plugin_options, params, only_given=False)
        for key in plugin_dests:
            params.pop(key, None)
        given = {k for k in params if _given(ctx, k)}
        pairs = _config_values(params, given)
        _check_flag_clashes(plugin_given, pairs, plugin_options)
        command_line = _merge(pairs, plugin_given)
        if params["dry_run"] and not params["resume"]:
            raise SegalError("--dry-run goes with --resume DIR (where a run stands); a new run has nothing to show")
        if params["resume"] and params["dry_run"]:
            other = sorted(set(command_line) - {"data_path", "oracle_options", "progress", "threads", "num_workers"})
            if other:
                raise SegalError(f"--dry-run shows where the run stands; it takes --data-path and --oracle-opt only, "
                                 f"not --{other[0].replace('_', '-')}")
            _print_status(Path(params["resume"]), plugins, as_json=False,
                          oracle_options=command_line.get("oracle_options"), data_path=command_line.get("data_path"))
            return
        if params["resume"]:
            if params["config_file"] is not None:
                raise SegalError(
                    f"--config with --resume {params['resume']}: a resumed run keeps its own config.json; drop --config"
                )
            if "out" in command_line:
                raise SegalError(f"--out with --resume {params['resume']}: a resumed run stays in its folder; drop --out")
            history = resume_run(params["resume"], command_line, plugins=plugins, echo=echo)
        else:
            defaults = _config_values(params, set(params) - given)
            defaults["plugin_options"] = plugin_all.get("plugin_options", {})
            from_file = load_config_file(params["config_file"]) if params["config_file"] is not None else {}
            values = _merge(_merge(defaults, from_file), command_line)
            values["blocked"] = list(plugins.blocked)
            config = RunConfig(**values)
            if config.out:
                # every rank checks, before joining the others (a rank waiting to join
                # would hold the run up): rank 0 says it, the others stop quietly
                RunDir.check_new(Path(config.out))  # in the command line's words
            history = run_cycle(config, plugins=plugins, echo=echo)
        echo(curve_table(history))

    params: list[click.Parameter] = [click.Option([*names, dest], **kw) for names, dest, kw in RUN_OPTIONS]
    params.extend(plugin_options)
    return click.Command(
        "run",
        callback=callback,
        params=params,
        help="Simulate pool-based active learning. With no options: the embedded synthetic "
        "dataset, offline, on the CPU, in a few minutes.",
    )


def _rank() -> int:
    """This process's rank under torchrun: 0 alone (a stray ``RANK`` without
    ``WORLD_SIZE`` above 1 is not a run of several processes)."""
    import os

    try:
        if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
            return 0
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def _in_group() -> bool:
    """Whether this process joined the run's process group (and has not left it): a
    mistake made before joining is in the command line every rank was given, and
    rank 0 says it."""
    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and dist.is_initialized()


def _silent(_: str) -> None:
    pass


def curve_table(history: Sequence[dict[str, Any]]) -> str:
    """The learning curve as a text table (labelled images, and pixels)."""
    fmt = lambda x: "   n/a" if x is None else f"{x:6.3f}"  # noqa: E731
    lines = [
        "",
        "round  labelled  fraction  pixels  val mIoU  test mIoU",
        "-----  --------  --------  ------  --------  ---------",
    ]
    for r in history:
        pixels = r.get("labeled_pixel_fraction")
        shown = "   n/a" if pixels is None else f"{100 * pixels:5.1f}%"
        lines.append(
            f"{r['round']:>5}  {r['labeled']:>8}  {100 * r['labeled_fraction']:>7.1f}%  {shown:>6}  "
            f"{fmt(r['val_miou']):>8}  {fmt(r['test_miou']):>9}"
        )
    return "\n".join(lines)


# -- segal plugins / report --------------------------------------------------------


def _make_plugins_command(plugins: Plugins) -> click.Command:
    def callback(as_json: bool) -> None:
        infos = sorted(plugins.infos, key=lambda i: i.name)
        if as_json:
            click.echo(json.dumps([vars(i) for i in infos], indent=2))
            return
        for info in infos:
            version = f" {info.version}" if info.version else ""
            if info.error:
                click.echo(f"{info.name}{version}  BROKEN: {info.error}")
                continue
            what = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in sorted(info.registers.items()))
            hooks = [h for h in info.hooks if not h.startswith("segal_register_")]
            extra = f"; hooks: {', '.join(hooks)}" if hooks else ""
            click.echo(f"{info.name}{version}  {what or 'registers nothing'}{extra}")
        if not infos:
            click.echo("no plugins installed")

    return click.Command(
        "plugins",
        callback=callback,
        params=[click.Option(["--json", "as_json"], is_flag=True, help="Machine-readable output.")],
        help="List installed plugins, what each registers, and broken ones with their error.",
    )


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", default="report", show_default=True, type=click.Path(path_type=Path),
              help="Folder for report.html, report.png, report.md and report.csv: new, empty, or an earlier "
              "report (see --force).")
@click.option("--metric", default="test_miou", show_default=True, type=click.Choice(["test_miou", "val_miou"]))
@click.option("--x", "x_axis", default="auto", show_default=True, type=click.Choice(["auto", "images", "pixels"]),
              help="x axis: labelled images or labelled pixels (auto: pixels when a run queried regions).")
@click.option("--force", is_flag=True,
              help="Write into an --out folder that holds other files (the report's own files are replaced, "
              "others left alone).")
def report_command(runs: tuple[Path, ...], out: Path, metric: str, x_axis: str, force: bool) -> None:
    """Compare runs: one plot of mIoU against labelled fraction and a table with the
    area under each curve (a --full run is drawn as the ceiling line)."""
    from .report import write_report
    from .rundir import WriteFailed

    try:
        rows = write_report(list(runs), out, metric=metric, x=x_axis, force=force)
    except OSError as exc:  # a read or write the report's own checks did not name
        where = f"{exc.filename}: " if exc.filename else ""
        raise WriteFailed(f"{where}{exc.strerror or exc}; fix that and run segal report again") from exc
    for row in rows:
        auc = row["auc"]
        click.echo(f"{row['label']:<28} rounds {row['rounds']:>3}  AUC {'n/a' if auc is None else f'{auc:.4f}'}  {row['run']}")
    click.echo(f"wrote {out / 'report.html'}, {out / 'report.png'}, {out / 'report.md'}, {out / 'report.csv'}")


def _print_status(
    run_dir: Path, plugins: Plugins, *, as_json: bool, oracle_options: dict[str, Any] | None = None,
    data_path: str | None = None,
) -> None:
    """``segal status``: where a run stands; exits with 75 while labels are missing."""
    from .waiting import label_status

    status = label_status(run_dir, plugins=plugins, oracle_options=oracle_options, data_path=data_path)
    if as_json:
        click.echo(json.dumps(status.to_json(), indent=2))
    else:
        for line in status.lines():
            click.echo(line)
    if status.waiting:
        raise click.exceptions.Exit(WAITING_EXIT)


def _make_status_command(plugins: Plugins) -> click.Command:
    def callback(run_dir: Path, as_json: bool, oracle_opt: tuple[str, ...], data_path: str | None) -> None:
        options = parse_pairs(oracle_opt, "--oracle-opt") if oracle_opt else None
        _print_status(run_dir, plugins, as_json=as_json, oracle_options=options, data_path=data_path)

    return click.Command(
        "status",
        callback=callback,
        params=[
            click.Argument(["run_dir"], type=click.Path(path_type=Path)),
            click.Option(["--json", "as_json"], is_flag=True, help="Machine-readable output."),
            click.Option(["--oracle-opt", "oracle_opt"], multiple=True, metavar="KEY=VALUE",
                         help="An oracle setting that may change after the start (a token, a server URL)."),
            click.Option(["--data-path", "data_path"], help="The dataset's folder, when it moved since the run "
                         "started."),
        ],
        help="Where a run stands: rounds committed, labelled samples and, for a round waiting for labels, how "
        "many are in (checked as --resume would). Trains nothing. Exit status 75 while labels are missing.",
    )


def build_cli(plugins: Plugins) -> click.Group:
    """The ``segal`` group for this set of plugins (plugins may add commands)."""

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("-p", "plugin_flags", multiple=True, metavar="no:NAME",
                  help=f"Block a plugin (also ${DISABLE_ENV}=a,b).")
    @click.option("-v", "--verbose", count=True, help="More messages on stderr (-vv: debug).")
    @click.option("-q", "--quiet", count=True, help="Only warnings and errors on stderr.")
    @click.version_option(package_name="segal", prog_name="segal")
    def cli(plugin_flags: tuple[str, ...], verbose: int, quiet: int) -> None:
        """SegAL: active learning for semantic segmentation."""
        level = verbose - quiet
        configure_logging(level if _rank() == 0 else min(level, -1))  # torchrun: rank 0 speaks

    cli.add_command(_make_run_command(plugins))
    cli.add_command(_make_plugins_command(plugins))
    cli.add_command(_make_status_command(plugins))
    cli.add_command(report_command)
    plugins.call("segal_cli_commands", cli=cli)
    return cli


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (tests and tools
    replace it), one message per line."""

    segal_cli = True

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ sets it
        pass


def configure_logging(level: int) -> None:
    """The ``segal`` logger on stderr: notices (INFO) by default, warnings only at
    ``level < 0`` (``-q``), debug at ``level > 0`` (``-v``). Progress bars are not
    affected. The CLI undoes it when the command ends (:func:`restore_logging`), so a
    notebook's own logging set-up is left alone."""
    logger = logging.getLogger("segal")
    restore_logging()
    logger.addHandler(_StderrHandler())
    logger.setLevel(logging.WARNING if level < 0 else logging.DEBUG if level > 0 else logging.INFO)
    logger.propagate = False


def restore_logging() -> None:
    """Take the CLI's handler off the ``segal`` logger again."""
    logger = logging.getLogger("segal")
    for handler in list(logger.handlers):
        if getattr(handler, "segal_cli", False):
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
            logger.propagate = True


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (the current round's commit is finished first)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def run_main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status. User mistakes print one line, no traceback.

    Exit status: 0 done, 1 a write failed, 2 a user mistake (:class:`SegalError`), 3 a plugin failed in a
    hook, 75 the run waits for labels (:class:`LabelsPending`; resume when they are in), 130 interrupted by
    SIGINT, 143 by SIGTERM (both resumable).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    prepare_environment()  # before torch loads its OpenMP runtime: see segal_core.threads
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(args)
    finally:
        restore_logging()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def one_line(exc: SegalError) -> str:
    """The message of ``exc`` on one line. torch re-raises an error from a DataLoader
    worker with the worker's traceback inside the message: keep its last line. Any
    other line break or control character (a value the user typed may hold one) is
    shown escaped, as ``\\n``."""
    text = str(exc).strip()
    if "Traceback (most recent call last)" in text:
        last = text.splitlines()[-1]
        _, sep, message = last.partition("Error: ")
        text = message if sep else last
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _run(args: list[str]) -> int:
    rank = _rank()
    try:
        from .launch import launch, split_nproc

        nproc, rest = split_nproc(args)
        if nproc is not None:
            return launch(nproc, rest)
    except SegalError as exc:
        click.echo(f"error: {one_line(exc)}", err=True)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # a signal before or after torch's launcher took it over
        terminated = isinstance(exc, Terminated)
        click.echo("terminated" if terminated else "interrupted", err=True)
        return TERMINATED if terminated else INTERRUPTED
    try:
        return _run_command(args, rank)
    except Exception as exc:
        from .distributed import is_peer_failure

        if not is_peer_failure(exc):
            raise
        if rank == 0:  # torch's own text (a closed connection) says nothing of the cause
            run_dir = getattr(exc, "run_dir", None) or "DIR"
            click.echo(
                "error: another process of the run stopped; its own message, if it printed one, is above "
                "(nothing when it was killed); fix its cause, then continue from the last completed round "
                f"with segal run --resume {run_dir}", err=True,
            )
        return 1


def _run_command(args: list[str], rank: int) -> int:
    try:
        plugins = load_plugins(blocked=blocked_from_argv(args))
        cli = build_cli(plugins)
        status = cli.main(args=args, prog_name="segal", standalone_mode=False)
        if isinstance(status, int) and not isinstance(status, bool):  # click.exceptions.Exit's code
            return status
    except LabelsPending as exc:  # not an error: the run waits for annotators
        if rank != 0:  # under torchrun rank 0 says it
            return exc.exit_code
        for line in exc.rejected:
            click.echo(f"rejected: {one_line(SegalError(line))}", err=True)
        click.echo(f"waiting: {one_line(SegalError(exc.message))}", err=True)
        return exc.exit_code
    except SegalError as exc:
        # under torchrun rank 0 says what every rank agreed on (another rank's mistake
        # included); a rank that stopped alone says its own, rank 0 only sees it gone
        from .distributed import PeerStopped

        if rank == 0:
            click.echo(f"error: {one_line(exc)}", err=True)
        elif not isinstance(exc, PeerStopped) and not getattr(exc, "_segal_together", False) and _in_group():
            click.echo(f"error: rank {rank}: {one_line(exc)}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except OSError as exc:  # a full disk, a read-only or vanished run folder
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {where}{exc.strerror or exc}; the run folder keeps its last completed round", err=True)
        return 1
    except click.ClickException as exc:
        if rank != 0:  # the command line every rank was given: rank 0 says it
            return exc.exit_code
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        click.echo(f"error: {where}{exc.format_message()} (see --help)", err=True)
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt) as exc:
        # click turns Ctrl-C into Abort; the signal itself is the cause
        cause = exc.__cause__ if isinstance(exc, click.Abort) else exc
        terminated = isinstance(cause, Terminated)
        run_dir = getattr(cause, "run_dir", None)
        what = "terminated" if terminated else "interrupted"
        if rank != 0:
            pass
        elif run_dir is not None:
            click.echo(
                f"{what}: {run_dir} holds every completed round; continue with: segal run --resume {run_dir}",
                err=True,
            )
        else:
            click.echo(what, err=True)
        return TERMINATED if terminated else INTERRUPTED
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_main())
