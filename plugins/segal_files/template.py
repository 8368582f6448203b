"""The shared ``load`` of a file dataset: :func:`load_file_splits`.

A dataset plugin writes only what is its own, a ``find(root, options, config)``
function that checks its folder layout and returns a :class:`Layout`: the class
table and each split's samples. :func:`load_file_splits` does the rest, the same for
every file dataset:

1. read the ``--dataset-opt`` keys into the plugin's options dataclass (unknown keys
   and bad values refused) and check ``size``/``scale``;
2. check ``--data-path`` is a folder, then call ``find``;
3. refuse a sample id found in two splits (or twice in one);
4. per split: refuse an empty one, check every file's header, build the
   :class:`~segal_files.FileDataset` and verify its masks (``verify`` option);
5. return the :class:`~segal_core.Splits`, adding the plugin's "val used for testing"
   notice when there is no test split.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from segal_core import DEFAULT_IGNORE_INDEX, DataConfig, SegalError, Splits
from segal_core.options import coerce_options

from .dataset import FileDataset, check_headers, verify_masks
from .labels import ColorMap, LabelMap
from .layout import Sample, data_root
from .options import OPTION_FLAG, FileOptions, resize_options

__all__ = ["ClassTable", "Layout", "SplitFiles", "load_file_splits"]

OptionsT = TypeVar("OptionsT", bound=FileOptions)


@dataclass(frozen=True)
class ClassTable:
    """A dataset's classes and how its masks store them.

    :param names: class names, index = class id.
    :param labels: stored mask value -> class id; default: ids stored as themselves,
        255 ignored.
    :param colors: colour -> class id, when masks are colour images.
    """

    names: Sequence[str]
    labels: LabelMap | None = None
    colors: ColorMap | None = None

    @property
    def ignore_index(self) -> int:
        """The class id of ignored pixels (the label map's)."""
        return self.labels.ignore_index if self.labels is not None else DEFAULT_IGNORE_INDEX


@dataclass(frozen=True)
class SplitFiles:
    """One split as found on disk.

    :param samples: its samples, in item order.
    :param source: the folder or list file it was read from, for messages.
    :param hint: what to do when it is empty, for the message
        ``"<source>: the <split> split is empty; <hint>"``.
    """

    samples: Sequence[Sample]
    source: Path
    hint: str


@dataclass(frozen=True)
class Layout:
    """What a plugin's ``find`` found under the data folder.

    :param classes: the class table.
    :param splits: ``"train"`` and ``"val"`` (required) and ``"test"`` (optional), in
        the order to check them.
    :param no_test: the notice shown when there is no test split (the cycle then
        tests on val), e.g. ``"mydata: no test/ in ROOT; the val split is used for testing"``.
    :param notices: other one-line notices for the user (a fallback taken), shown first.
    """

    classes: ClassTable
    splits: Mapping[str, SplitFiles]
    no_test: str
    notices: Sequence[str] = ()


def load_file_splits(
    dataset: type[FileDataset],
    config: DataConfig,
    options: type[OptionsT],
    find: Callable[[Path, OptionsT, DataConfig], Layout],
) -> Splits:
    """Load a file dataset's splits: the common start and end of every
    :meth:`~segal_core.Dataset.load` over files (see the module docstring).

    :param dataset: the plugin's :class:`~segal_files.FileDataset` subclass; each split
        is one instance of it.
    :param config: what ``load`` was given.
    :param options: the plugin's frozen dataclass of ``--dataset-opt`` keys, with at
        least ``verify``, ``size`` and ``scale`` (see :class:`~segal_files.FileOptions`).
    :param find: ``find(root, options, config) -> Layout``: checks the layout under
        ``root`` and lists the splits, raising a :class:`~segal_core.SegalError` naming
        the folder, file or option at fault.
    :raises SegalError: a bad option, no data folder, an id in two splits, an empty
        split, or a file at fault.
    """
    chosen = options(**coerce_options(options, config.options, OPTION_FLAG))
    resize, scale = resize_options(chosen.size, chosen.scale)
    root = data_root(config.path, dataset.name)
    layout = find(root, chosen, config)
    missing = [s for s in ("train", "val") if s not in layout.splits]
    if missing:
        raise ValueError(f"{dataset.name}: its layout has no {' and '.join(missing)} split")
    _check_disjoint(layout.splits)
    table = layout.classes
    datasets: dict[str, FileDataset] = {}
    for split, files in layout.splits.items():
        if not files.samples:
            raise SegalError(f"{files.source}: the {split} split is empty; {files.hint}")
        sizes = check_headers(files.samples, colour_masks=table.colors is not None)
        datasets[split] = part = dataset(
            files.samples, table.names, split=split, labels=table.labels, colors=table.colors,
            ignore_index=table.ignore_index, resize=resize, scale=scale, sizes=sizes,
        )  # fmt: skip
        verify_masks(part, chosen.verify, sizes, f"{OPTION_FLAG} verify")
    notices = list(layout.notices)
    if "test" not in datasets:
        notices.append(layout.no_test)
    return Splits(datasets["train"], datasets["val"], datasets.get("test"), notices)


def _check_disjoint(splits: Mapping[str, SplitFiles]) -> None:
    """Refuse a sample id that stands in two splits (or twice in one), naming the id,
    both splits and both images."""
    seen: dict[str, tuple[str, Sample]] = {}
    for split, files in splits.items():
        for sample in files.samples:
            if sample.id not in seen:
                seen[sample.id] = (split, sample)
                continue
            first, other = seen[sample.id]
            where = f"twice in the {split} split" if first == split else f"in both the {first} and the {split} split"
            raise SegalError(
                f"{sample.image}: id {sample.id!r} is {where} (also {other.image}); "
                "keep each image in one split, under one id"
            )
