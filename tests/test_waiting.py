"""Rounds that wait for labels (issue 14's core): a waiting oracle takes the round's
queries, the run commits them as *pending* and stops with status 75, ``--resume``
collects what arrived (checked), and goes on; ``segal status`` tells where it stands.

The oracle here is a minimal file inbox of the test's own (``.npy`` answers in the
round's query folder), so these tests exercise the core's contract, not a plugin.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from segal_core import (
    Annotation,
    Collected,
    DataConfig,
    Dataset,
    Handoff,
    LabelsPending,
    SegalError,
    Splits,
    WaitingOracle,
    hookimpl,
    load_plugins,
    resume_run,
    run_cycle,
)
from segal_core.cli import run_main
from segal_core.testing import RandomImages, TinyModel
from segal_core.waiting import label_status

from cycle_helpers import history as history_lines
from cycle_helpers import snapshot, tiny_config


class Inbox(WaitingOracle):
    """Hands queries out as a list (``asked.json``) and reads answers ``<id>.npy``
    from the query folder."""

    name = "inbox"

    def submit(self, handoff: Handoff) -> str:
        asked = [{"id": q.sample_id, "score": q.score, "regions": q.regions} for q in handoff.queries]
        (handoff.folder / "asked.json").write_text(json.dumps(asked))
        if handoff.predict is not None:
            for q in handoff.queries:
                np.save(handoff.folder / f"{q.sample_id}.pre.npy", handoff.predict(q.sample_id).numpy())
        return f"{len(asked)} frames listed in {handoff.folder / 'asked.json'}"

    def collect(self, handoff: Handoff) -> Collected:
        out = Collected()
        for file in sorted(handoff.folder.glob("*.npy")):
            if file.name.endswith(".pre.npy"):
                continue
            sid = file.name[: -len(".npy")]
            out.annotations.append(Annotation(sid, 0, torch.from_numpy(np.load(file)), source=str(file)))
        return out


class Unlabelled(RandomImages):
    """A pool of which only the frames in ``masked`` have a mask."""

    name = "partly_labelled"
    requires_path = False

    @classmethod
    def load(cls, config: DataConfig) -> Splits:
        n = int(config.options.get("n", 12))  # type: ignore[call-overload]
        masked = int(config.options.get("masked", 0))  # type: ignore[call-overload]
        train = cls(n, seed=config.seed, split="train")
        train.masked = set(range(masked))
        val, test = RandomImages(4, seed=config.seed + 1, split="val"), RandomImages(4, seed=config.seed + 2, split="test")
        return Splits(train=train, val=val, test=test)

    def has_mask(self, index: int) -> bool:
        return index in getattr(self, "masked", set(range(len(self))))

    def mask(self, index: int) -> torch.Tensor:
        if not self.has_mask(index):
            raise SegalError(f"{self.ids[index]}: no mask")
        return super().mask(index)


class Registrations:
    @hookimpl
    def segal_register_oracles(self) -> list[type]:
        return [Inbox]

    @hookimpl
    def segal_register_datasets(self) -> list[type]:
        return [Unlabelled]

    @hookimpl
    def segal_register_models(self) -> list[type]:
        return [TinyModel]


def plugins():  # noqa: ANN201
    return load_plugins(extra=[("waiting_test", Registrations())])


def config(out: Path, **kw):  # noqa: ANN001, ANN201
    base = dict(model="tiny", oracle="inbox", rounds=3)
    base.update(kw)
    return tiny_config(out, **base)


def answer(out: Path, folder: str, pool: Dataset, ids: Sequence[str], change=None) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Play the annotator: the true mask with its top row unlabelled (a person's mask
    differs from the ground truth), written as ``<id>.npy``."""
    written = {}
    for sid in ids:
        mask = pool.mask(pool.index_of(sid)).numpy().copy()
        mask[0, :] = pool.ignore_index
        if change is not None:
            mask = change(sid, mask)
        np.save(out / folder / f"{sid}.npy", mask)
        written[sid] = mask
    return written


def pool_of(out: Path) -> Dataset:
    from segal_core.prepare import _load_splits

    cfg = config(out)
    return _load_splits(cfg, plugins().registry.dataset(cfg.dataset)).train


def test_a_round_waits_then_goes_on_with_the_labels(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(LabelsPending) as waited:
        run_cycle(config(out), plugins=plugins())
    exc = waited.value
    assert exc.round == 0 and exc.total == 4 and exc.arrived == 0 and exc.exit_code == 75
    assert f"segal run --resume {out}" in exc.message
    state = json.loads((out / "state.json").read_text())
    assert state["format"] == 3 and state["completed_rounds"] == 1 and not state["finished"]
    pending = state["pending"]
    records = history_lines(out)
    assert [q["id"] for q in pending["queries"]] == records[0]["queried"]
    assert records[0]["labels"] == {"oracle": "inbox", "waiting": True}
    folder = out / pending["folder"]
    assert pending["folder"] == "queries/round-000"
    asked = json.loads((folder / "asked.json").read_text())
    assert [a["id"] for a in asked] == records[0]["queried"]
    assert [a["score"] for a in asked] == records[0]["query_scores"]
    assert all((folder / f"{sid}.pre.npy").is_file() for sid in records[0]["queried"])  # pre-labels
    assert len(state["ledger"]) == 4  # the seed set, from the dataset's masks

    # nothing arrived: still waiting, nothing changed
    before = snapshot(out)
    with pytest.raises(LabelsPending) as again:
        resume_run(out, plugins=plugins())
    assert again.value.arrived == 0 and "still waits" in again.value.message
    assert snapshot(out) == before

    pool = pool_of(out)
    written = answer(out, pending["folder"], pool, records[0]["queried"])
    with pytest.raises(LabelsPending) as second:  # round 1 waits in turn
        resume_run(out, plugins=plugins())
    assert second.value.round == 1
    state = json.loads((out / "state.json").read_text())
    records = history_lines(out)
    assert records[0]["labels"] == {"oracle": "inbox", "labelled": 4, "returned": []}
    assert records[1]["labeled"] == 8
    for sid, mask in written.items():  # what the model trained on is what was written
        entry = state["ledger"][sid]
        assert entry["round"] == 0 and entry["pixels"] == int((mask != pool.ignore_index).sum())
        from PIL import Image

        assert np.array_equal(np.array(Image.open(out / entry["mask_file"])).astype(np.int64), mask)


def test_rejected_labels_each_get_a_line_and_accept_partial_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(LabelsPending):
        run_cycle(config(out), plugins=plugins())
    state = json.loads((out / "state.json").read_text())
    queried = [q["id"] for q in state["pending"]["queries"]]
    pool = pool_of(out)
    folder = out / state["pending"]["folder"]
    answer(out, state["pending"]["folder"], pool, queried[:1])
    np.save(folder / f"{queried[1]}.npy", np.zeros((5, 5), dtype=np.int64))  # another size
    side = pool.image_size(0)[0]
    np.save(folder / f"{queried[2]}.npy", np.full((side, side), 9, dtype=np.int64))  # class 9 of 4
    np.save(folder / "train-99999.npy", np.zeros((side, side), dtype=np.int64))  # not queried
    with pytest.raises(LabelsPending) as waited:
        resume_run(out, plugins=plugins())
    exc = waited.value
    assert exc.arrived == 1 and exc.missing == 3 and len(exc.rejected) == 3
    lines = "\n".join(exc.rejected)
    assert f"{queried[1]}.npy: 5x5 pixels (WxH), the frame is {side}x{side}" in lines
    assert f"{queried[2]}.npy: holds the value 9; class ids are 0..{len(pool.classes) - 1}" in lines
    assert "train-99999.npy: 'train-99999' was not queried in this round" in lines
    assert "1 of 4 in, 3 rejected, 3 missing" in exc.message

    status = label_status(out, plugins=plugins())
    assert (status.waiting_round, status.queried, status.arrived, status.missing) == (0, 4, 1, 3)
    assert status.rejected == exc.rejected

    # accept_partial: train on the one label; the other three go back to the pool
    with pytest.raises(LabelsPending) as next_round:
        resume_run(out, {"oracle_options": {"accept_partial": "true"}}, plugins=plugins())
    assert next_round.value.round == 1
    records = history_lines(out)
    assert records[0]["labels"]["returned"] == queried[1:]
    assert records[1]["labeled"] == 5
    ledger = json.loads((out / "state.json").read_text())["ledger"]
    assert queried[0] in ledger and not set(queried[1:]) & set(ledger)


def test_a_pool_without_masks_asks_for_the_seed_set(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = config(out, dataset="partly_labelled", dataset_options={"n": 12, "masked": 0})
    with pytest.raises(LabelsPending) as waited:
        run_cycle(cfg, plugins=plugins())
    assert waited.value.round == -1 and waited.value.total == 3  # seed ratio 0.25 of 12
    state = json.loads((out / "state.json").read_text())
    assert state["completed_rounds"] == 0 and state["pending"]["folder"] == "queries/round-seed"
    assert not (out / "history.jsonl").exists() or not history_lines(out)
    seed_ids = [q["id"] for q in state["pending"]["queries"]]
    full = RandomImages(12, seed=0, split="train")  # the masks a person would draw
    for sid in seed_ids:
        np.save(out / "queries/round-seed" / f"{sid}.npy", full.mask(full.index_of(sid)).numpy())
    with pytest.raises(LabelsPending) as round0:
        resume_run(out, plugins=plugins())
    assert round0.value.round == 0
    ledger = json.loads((out / "state.json").read_text())["ledger"]
    assert set(ledger) == set(seed_ids) and all(e["round"] == -1 for e in ledger.values())


def test_a_partly_labelled_pool_seeds_with_its_masks(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = config(out, dataset="partly_labelled", dataset_options={"n": 12, "masked": 5})
    with pytest.raises(LabelsPending) as waited:
        run_cycle(cfg, plugins=plugins())
    assert waited.value.round == 0
    ledger = json.loads((out / "state.json").read_text())["ledger"]
    assert sorted(ledger) == [f"train-{i:05d}" for i in range(5)]
    assert all(e["mask_file"] is None for e in ledger.values())


def test_the_ground_truth_cannot_label_frames_without_masks(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = config(out, dataset="partly_labelled", dataset_options={"n": 12, "masked": 5}, oracle="ground_truth")
    with pytest.raises(SegalError, match=r"--oracle ground_truth: 7 of 12 pool frames have no mask .*--oracle folder"):
        run_cycle(cfg, plugins=plugins())
    assert not (out / "state.json").exists()


def test_cli_exit_status_messages_and_status_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import segal_core.cli as cli

    monkeypatch.setattr(cli, "load_plugins", lambda blocked=(): plugins())
    out = tmp_path / "run"
    args = ["run", "--model", "tiny", "--oracle", "inbox", "--rounds", "3", "--dataset", "synthetic",
            "--dataset-opt", "n_train=16", "--dataset-opt", "n_val=4", "--dataset-opt", "n_test=4",
            "--dataset-opt", "size=16", "--seed-ratio", "0.25", "--query-size", "4", "--no-progress",
            "--out", str(out)]
    assert run_main(args) == 75
    err = capsys.readouterr().err
    assert "waiting: round 0 waits for labels: 4 queries handed to --oracle inbox" in err
    assert "Traceback" not in err
    assert run_main(["status", str(out)]) == 75
    shown = capsys.readouterr().out
    assert "round 0 waits for labels from --oracle inbox: 0 of 4 in, 0 rejected, 4 missing" in shown
    assert run_main(["status", "--json", str(out)]) == 75
    data = json.loads(capsys.readouterr().out)
    assert data["waiting_round"] == 0 and data["missing"] == 4
    assert run_main(["run", "--resume", str(out), "--dry-run"]) == 75
    assert "0 of 4 in" in capsys.readouterr().out
    assert run_main(["run", "--dry-run"]) == 2
    assert "--dry-run goes with --resume" in capsys.readouterr().err
    # a run that waits for nothing: status exits 0
    state = json.loads((out / "state.json").read_text())
    pool = RandomImages(1)  # noqa: F841 - the synthetic pool's masks come from the dataset below
    from segal_core.prepare import _load_splits

    cfg = tiny_config(out, dataset_options={"n_train": "16", "n_val": "4", "n_test": "4", "size": "16"})
    synthetic = _load_splits(cfg, plugins().registry.dataset("synthetic")).train
    for q in state["pending"]["queries"]:
        np.save(out / state["pending"]["folder"] / f"{q['id']}.npy", synthetic.mask(synthetic.index_of(q["id"])).numpy())
    assert run_main(["status", str(out)]) == 0
    assert "every label is in" in capsys.readouterr().out
    assert run_main(["run", "--resume", str(out)]) == 75  # round 1 waits
    assert "waiting: round 1 waits" in capsys.readouterr().err


def test_region_queries_keep_only_their_area(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = config(out, query_unit="patch", unit_options={"size": "8"}, query_size=None, query_pixels=128,
                 seed_unit="image")
    with pytest.raises(LabelsPending) as waited:
        run_cycle(cfg, plugins=plugins())
    state = json.loads((out / "state.json").read_text())
    queries = state["pending"]["queries"]
    assert waited.value.total == len(queries) and all(q["regions"] for q in queries)
    assert sum(len(q["regions"]) for q in queries) * 64 == 128  # two 8x8 patches
    pool = pool_of(out)
    written = answer(out, state["pending"]["folder"], pool, [q["id"] for q in queries])  # whole frames
    with pytest.raises(LabelsPending):
        resume_run(out, plugins=plugins())
    state = json.loads((out / "state.json").read_text())
    from PIL import Image

    for q in queries:
        entry = state["ledger"][q["id"]]
        kept = np.array(Image.open(out / entry["mask_file"])).astype(np.int64)
        assert entry["regions"] == sorted(q["regions"]) and entry["pixels"] == 64 * len(q["regions"])
        height, width = kept.shape
        area = np.zeros_like(kept, dtype=bool)  # 8x8 patches numbered row by row
        for region in q["regions"]:
            row, col = divmod(region, width // 8)
            area[8 * row : 8 * row + 8, 8 * col : 8 * col + 8] = True
        drawn = written[q["id"]]
        assert np.array_equal(kept != pool.ignore_index, area & (drawn != pool.ignore_index))
        assert np.array_equal(kept[area], np.where(drawn[area] != pool.ignore_index, drawn[area], pool.ignore_index))


def test_a_region_label_outside_its_area_is_rejected(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = config(out, query_unit="patch", unit_options={"size": "8"}, query_size=None, query_pixels=64,
                 seed_unit="image")
    with pytest.raises(LabelsPending):
        run_cycle(cfg, plugins=plugins())
    state = json.loads((out / "state.json").read_text())
    (query,) = state["pending"]["queries"]
    pool = pool_of(out)

    def outside_only(sid: str, mask: np.ndarray) -> np.ndarray:
        row, col = divmod(query["regions"][0], mask.shape[1] // 8)
        mask = mask.copy()
        mask[8 * row : 8 * row + 8, 8 * col : 8 * col + 8] = pool.ignore_index
        return mask

    answer(out, state["pending"]["folder"], pool, [query["id"]], change=outside_only)
    with pytest.raises(LabelsPending) as waited:
        resume_run(out, plugins=plugins())
    assert waited.value.arrived == 0
    assert waited.value.rejected == [
        f"{out / state['pending']['folder'] / (query['id'] + '.npy')}: labels no pixel of the area queried "
        f"(only what lies inside the area shown for {query['id']!r} is used); label inside it"
    ]


class SecretInbox(Inbox):
    """An inbox behind a token: the token is never saved, the address may move."""

    name = "secret_inbox"
    unsaved_options = frozenset({"token", "accept_partial"})
    resume_options = frozenset({"accept_partial", "token", "where"})

    def __init__(self, token: str = "", where: str = "here", accept_partial: bool = False) -> None:
        super().__init__(accept_partial=accept_partial)
        if not token:
            raise SegalError("--oracle secret_inbox needs --oracle-opt token=...")
        self.token = token


class SecretRegistrations(Registrations):
    @hookimpl
    def segal_register_oracles(self) -> list[type]:
        return [Inbox, SecretInbox]


def test_secret_options_are_not_saved_and_connection_options_may_change(tmp_path: Path) -> None:
    more = load_plugins(extra=[("waiting_test", SecretRegistrations())])
    out = tmp_path / "run"
    with pytest.raises(LabelsPending):
        options = {"token": "s3cret", "where": "a", "accept_partial": "true"}  # accept_partial: this call only
        run_cycle(config(out, oracle="secret_inbox", oracle_options=options), plugins=more)
    saved = (out / "config.json").read_text()
    assert "s3cret" not in saved and json.loads(saved)["oracle_options"] == {"where": "a"}
    with pytest.raises(SegalError, match="needs --oracle-opt token"):
        resume_run(out, plugins=more)
    with pytest.raises(LabelsPending):  # the token again, and the address moved
        resume_run(out, {"oracle_options": {"token": "new", "where": "b"}}, plugins=more)
    with pytest.raises(SegalError, match=r"options differ from the run's config.json: oracle_options"):
        resume_run(out, {"oracle_options": {"token": "new", "other": "1"}}, plugins=more)
    status = label_status(out, plugins=more, oracle_options={"token": "t"})
    assert status.waiting_round == 0 and status.missing == 4
    with pytest.raises(SegalError, match="--oracle-opt other: not an option --oracle secret_inbox lets change"):
        label_status(out, plugins=more, oracle_options={"token": "t", "other": "1"})
