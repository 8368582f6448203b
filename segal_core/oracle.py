"""The ``Oracle`` interface: who labels the queried samples."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from .dataset import Dataset
from .errors import ContractError

__all__ = ["Annotation", "Collected", "Handoff", "Oracle", "Query", "WaitingOracle"]


@dataclass
class Annotation:
    """The label an oracle returned for one sample.

    :param sample_id: the queried id.
    :param labeled_pixels: how many pixels now carry a label (not ``ignore_index``).
    :param mask: ``None`` when the label is the dataset's own ground truth (simulation);
        otherwise a ``[H, W]`` int64 mask, ``ignore_index`` where nothing was labelled
        (region or pixel queries, human annotators).
    """

    sample_id: str
    labeled_pixels: int
    mask: torch.Tensor | None = None
    #: Where the label came from (a file, a task), for error lines; optional.
    source: str | None = None


class Oracle(abc.ABC):
    """Returns labels for queried sample ids.

    A registered oracle class carries ``name`` (and optional ``aliases``,
    ``description``); it is built as ``cls(**options)`` from ``--oracle-opt``.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    #: ``True`` for a :class:`WaitingOracle` (labels arrive later).
    waits: ClassVar[bool] = False
    #: ``--oracle-opt`` keys never written to ``config.json``: a secret (an access
    #: token: give it again on ``--resume``, or through the oracle's environment
    #: variable) or a choice for one invocation (``accept_partial``).
    unsaved_options: ClassVar[frozenset[str]] = frozenset()
    #: ``--oracle-opt`` keys that may differ on ``--resume`` (where a server is, a
    #: token that expired); any other option given again must be the run's own.
    resume_options: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    def label(self, ids: Sequence[str], pool: Dataset) -> list[Annotation]:
        """One :class:`Annotation` per id, in the order given."""

    def label_regions(self, requests: Sequence[tuple[str, torch.Tensor]], pool: Dataset) -> list[Annotation]:
        """Label regions: one :class:`Annotation` per ``(id, area)`` request, ``area``
        a bool ``[H, W]`` mask of the pixels to label (the union of the image's
        queried regions). The mask holds the labels inside ``area`` and
        ``ignore_index`` elsewhere; ``labeled_pixels`` is the area's size (what the
        annotator looked at, void pixels included).

        The default asks :meth:`label` for the whole images and cuts each to its
        area, which is right for the ground truth; an oracle that labels regions
        itself (a person drawing only inside them) overrides it.
        """
        answers = self.label([sid for sid, _ in requests], pool)
        out: list[Annotation] = []
        for (sid, area), answer in zip(requests, answers):
            full = answer.mask if answer.mask is not None else pool.mask(pool.index_of(sid))
            part = torch.where(area.to(full.device), full, torch.full_like(full, pool.ignore_index))
            out.append(Annotation(sample_id=sid, labeled_pixels=int(area.sum()), mask=part))
        return out


# -- oracles that wait: a person labels in hours, not milliseconds -------------------


@dataclass
class Query:
    """One queried sample as a waiting oracle receives it.

    :param sample_id: the pool id.
    :param score: the strategy's score (``None`` for the random seed set).
    :param area: with region queries, a bool ``[H, W]`` mask of the pixels to label
        (the union of the image's queried regions); ``None``: the whole image.
    :param regions: the queried region ids (``None``: the whole image).
    """

    sample_id: str
    score: float | None = None
    area: torch.Tensor | None = None
    regions: list[int] | None = None


@dataclass
class Handoff:
    """One round's queries, as handed to annotators and collected back.

    The same handoff (rebuilt from ``state.json`` on ``--resume``) is given to
    :meth:`WaitingOracle.submit` and to every later :meth:`WaitingOracle.collect`.

    :param round: the round that queried (``-1``: the seed set).
    :param queries: the queries, in rank order.
    :param pool: the pool dataset (``pool.image(pool.index_of(id))`` is the frame).
    :param folder: ``RUN/queries/round-NNN`` (``round-seed`` for the seed set),
        created by the core; the oracle may write anything under it.
    :param classes: class names, index = class id; :param colors: one RGB per class.
    :param ignore_index: the mask value for "not labelled".
    :param predict: the current model's class-id prediction ``[H, W]`` (int64) for a
        sample id, for pre-labels; ``None`` when there is no trained model yet.
    """

    round: int
    queries: list[Query]
    pool: Dataset
    folder: Path
    classes: Sequence[str]
    colors: Sequence[tuple[int, int, int]]
    ignore_index: int
    predict: Callable[[str], torch.Tensor] | None = None

    @property
    def ids(self) -> list[str]:
        return [q.sample_id for q in self.queries]


@dataclass
class Collected:
    """What :meth:`WaitingOracle.collect` found.

    :param annotations: the labels that arrived, each with a full-size ``[H, W]``
        integer ``mask`` (``ignore_index`` where the annotator did not label; the
        core keeps only a region query's area) and ``source`` naming where it came
        from (a file, a task URL) for error lines.
    :param rejected: one line per label that arrived but cannot be used, naming the
        file and what to do (``"queries/round-002/masks/0001.png: 640x480, the image
        is 480x360; ..."``); the core adds its own for masks of the wrong size or
        with values outside the classes.
    """

    annotations: list[Annotation] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


class WaitingOracle(Oracle):
    """An oracle that takes a round's queries and delivers later (a person, a
    labelling tool). The run commits the round as *waiting for labels* after
    :meth:`submit` and exits with status 75 (:class:`~segal_core.LabelsPending`);
    ``segal run --resume`` calls :meth:`collect` and goes on once every query is
    labelled, or with ``--oracle-opt accept_partial=true`` with what arrived.

    :meth:`collect` must be repeatable: it reads what arrived without consuming it
    (a kill during a collection, or a second resume, loses nothing).
    """

    waits: ClassVar[bool] = True
    resume_options: ClassVar[frozenset[str]] = frozenset({"accept_partial"})
    unsaved_options: ClassVar[frozenset[str]] = frozenset({"accept_partial"})

    def __init__(self, accept_partial: bool = False) -> None:
        #: Train on the labels that arrived; the rest go back to the pool.
        self.accept_partial = bool(accept_partial)

    @abc.abstractmethod
    def submit(self, handoff: Handoff) -> str:
        """Hand the queries to annotators (write files, create tasks); returns one
        line telling the user where they went and what to do. Called once per round,
        on the rank that writes the run folder; a :class:`~segal_core.SegalError`
        leaves the run resumable (the round is not committed)."""

    @abc.abstractmethod
    def collect(self, handoff: Handoff) -> Collected:
        """The labels that have arrived for ``handoff``'s queries, checked as far as
        the oracle can (file type, readable); never modifies or deletes them."""

    def label(self, ids: Sequence[str], pool: Dataset) -> list[Annotation]:
        raise ContractError(f"--oracle {self.name} waits for annotators; the cycle calls submit() and collect()")
