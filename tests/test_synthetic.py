"""Tests of the ``synthetic`` dataset plugin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segal_core import DataConfig, SegalError, load_plugins
from segal_synthetic import CLASSES, Synthetic


def _stack(ds: Synthetic) -> tuple[np.ndarray, np.ndarray]:
    items = [ds[i] for i in range(len(ds))]
    return np.stack([i.numpy() for i, _ in items]), np.stack([m.numpy() for _, m in items])


def test_registered_under_name_and_alias() -> None:
    registry = load_plugins().registry
    assert registry.dataset("synthetic") is Synthetic
    assert registry.dataset("Toy") is Synthetic
    assert Synthetic.requires_path is False


def test_default_splits_shapes_and_ids() -> None:
    splits = Synthetic.load(DataConfig())
    assert (len(splits.train), len(splits.val), len(splits.test)) == (120, 30, 30)
    assert splits.classes == list(CLASSES) and len(CLASSES) == 5
    assert splits.ignore_index == 255 and splits.notices == []
    image, mask = splits.train[7]
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64)
    assert mask.dtype == torch.int64 and mask.shape == (64, 64)
    assert int(mask.min()) >= 0 and int(mask.max()) < 5
    assert splits.train.ids[7] == "train-00007" and splits.val.ids[0] == "val-00000"
    assert len(set(splits.train.ids) | set(splits.val.ids) | set(splits.test.ids)) == 180
    assert splits.train.index_of("train-00007") == 7


def test_deterministic_per_seed_and_different_across_seeds_and_splits() -> None:
    opts = {"n_train": "6", "n_val": "3", "n_test": "3"}
    a = Synthetic.load(DataConfig(seed=5, options=opts))
    b = Synthetic.load(DataConfig(seed=5, options=opts))
    c = Synthetic.load(DataConfig(seed=6, options=opts))
    xa, ya = _stack(a.train)
    xb, yb = _stack(b.train)
    xc, yc = _stack(c.train)
    assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert not np.array_equal(xa, xc) and not np.array_equal(ya, yc)
    # item order does not matter (each item comes from seed, split and index alone)
    assert torch.equal(a.train[4][0], b.train.image(4)) and torch.equal(b.train.mask(4), a.train[4][1])
    assert not torch.equal(a.train.image(0), a.val.image(0))
    assert not torch.equal(a.val.image(0), a.test.image(0))
    # data_seed pins the scenes whatever the run seed
    d = Synthetic.load(DataConfig(seed=99, options={**opts, "data_seed": "5"}))
    assert np.array_equal(_stack(d.train)[0], xa)


def test_class_frequencies_rare_classes_present_but_rare() -> None:
    _, masks = _stack(Synthetic.load(DataConfig(seed=0)).train)
    share = np.bincount(masks.ravel(), minlength=5) / masks.size
    in_images = np.array([(masks == c).any(axis=(1, 2)).mean() for c in range(5)])
    assert share[0] > 0.4 and share[1] > 0.15  # background and large regions dominate
    assert 0.02 < share[2] < share[1]  # medium objects
    assert 0 < share[4] < 0.01 and share[4] < share[3] < share[2]  # rare and small
    assert 0.05 < in_images[4] < 0.6  # the rare class is in some images only
    assert in_images[0] == 1.0


def test_class_not_decodable_from_pixel_colour() -> None:
    """A per-pixel colour lookup (the best possible, fitted on the val split itself)
    stays far from perfect: the model has to use texture and context."""
    images, masks = _stack(Synthetic.load(DataConfig(seed=1)).train)
    codes = (images // 32).astype(np.int64)
    codes = (codes[:, 0] * 64 + codes[:, 1] * 8 + codes[:, 2]).ravel()
    table = np.zeros((512, 5))
    np.add.at(table, (codes, masks.ravel()), 1)
    predicted = table.argmax(1)[codes]
    truth = masks.ravel()
    ious = [
        ((predicted == c) & (truth == c)).sum() / max(1, ((predicted == c) | (truth == c)).sum())
        for c in range(5)
    ]
    assert float(np.mean(ious)) < 0.5
    assert (predicted == truth).mean() < 0.85


def test_small_conv_net_learns_beyond_colour() -> None:
    """Texture makes the task learnable: a tiny conv net on 3x3 neighbourhoods beats
    the majority class (and the colour lookup above) by a clear margin in a few dozen steps."""
    torch.manual_seed(0)
    splits = Synthetic.load(DataConfig(seed=2, options={"n_train": "32", "n_val": "8", "size": "32"}))
    x, y = (torch.from_numpy(a) for a in _stack(splits.train))
    xv, yv = (torch.from_numpy(a) for a in _stack(splits.val))
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 5, 1),
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(net((x.float() - 115) / 50), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (net((xv.float() - 115) / 50).argmax(1) == yv).float().mean().item()
    background = (yv == 0).float().mean().item()
    assert accuracy > background + 0.2


def test_options_validated() -> None:
    splits = Synthetic.load(DataConfig(options={"size": "32", "n_train": "4", "n_val": "2", "n_test": "0"}))
    assert splits.test is None and "no test split" in splits.notices[0]
    assert splits.train.image(0).shape == (3, 32, 32)
    with pytest.raises(SegalError, match=r"--dataset-opt colour=red: 'synthetic' takes no option 'colour'"):
        Synthetic.load(DataConfig(options={"colour": "red"}))
    with pytest.raises(SegalError, match=r"--dataset-opt size='big': expected a number"):
        Synthetic.load(DataConfig(options={"size": "big"}))
    with pytest.raises(SegalError, match=r"--dataset-opt size=8: expected at least 16"):
        Synthetic.load(DataConfig(options={"size": "8"}))
    with pytest.raises(SegalError, match=r"--dataset-opt n_train=0"):
        Synthetic.load(DataConfig(options={"n_train": "0"}))
    with pytest.raises(SegalError, match=r"rare_rate=1.5"):
        Synthetic.load(DataConfig(options={"rare_rate": "1.5"}))
    with pytest.raises(SegalError, match=r"--num-classes 3: the synthetic dataset has 5 classes"):
        Synthetic.load(DataConfig(num_classes=3))
    with pytest.raises(IndexError):
        splits.train.image(4)


def test_items_are_copies() -> None:
    ds = Synthetic.load(DataConfig(options={"n_train": "2"})).train
    mask = ds.mask(0)
    mask.fill_(3)
    assert not torch.equal(ds.mask(0), mask)
