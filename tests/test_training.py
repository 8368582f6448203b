"""Training of the smp models: learning, best-epoch copy, non-finite loss, seeding,
crops and batches."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from segal_core import Dataset, DatasetView, EvalResult, ModelConfig, SegalError
from segal_core.testing import RandomImages
from segal_smp import MODELS, SmpModel, SmpOptions
from segal_smp.augment import training_augmentation
from segal_smp.data import EpochBatchSampler, PadCollate
from segal_smp.training import lr_factor

from listdata import ListDataset

IGNORE = 255


#: ModelConfig-like keywords that are the smp models' own settings.
SMP_KEYS = {f.name for f in dataclasses.fields(SmpOptions)}


def config(**kw: object) -> ModelConfig:
    options: dict[str, object] = {
        "encoder": "tu-test_resnet", "batch_size": 4, "crop_size": 32, "lr": 3e-3, "epochs": 1,
        "min_steps": 0, "steps_per_image": 0.0,
    }
    base: dict[str, object] = dict(num_classes=2, device="cpu")
    options.update(kw.pop("options", {}))  # type: ignore[call-overload]
    for key, value in kw.items():
        (options if key in SMP_KEYS else base)[key] = value
    return ModelConfig(**base, options=options)  # type: ignore[arg-type]


def weights(model: SmpModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.network.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Blobs(Dataset):
    """A learnable problem: a reddish rectangle (class 1) on a bluish background
    (class 0), with pixel noise."""

    name = "blobs"

    def __init__(self, n: int, seed: int, size: int = 32) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.classes = ["background", "blob"]
        self.ids = [f"blob{seed}-{i}" for i in range(n)]
        self.items: list[tuple[torch.Tensor, torch.Tensor]] = []
        for _ in range(n):
            top, left = torch.randint(0, size // 2, (2,), generator=gen).tolist()
            height, width = torch.randint(size // 4, size // 2, (2,), generator=gen).tolist()
            mask = torch.zeros(size, size, dtype=torch.long)
            mask[top : top + height, left : left + width] = 1
            colour = torch.tensor([40, 60, 200]).view(3, 1, 1) + mask * torch.tensor([170, 60, -150]).view(3, 1, 1)
            noise = torch.randint(-20, 21, (3, size, size), generator=gen)
            self.items.append(((colour + noise).clamp(0, 255).to(torch.uint8), mask))

    @classmethod
    def load(cls, config):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def image(self, index: int) -> torch.Tensor:
        return self.items[index][0]

    def mask(self, index: int) -> torch.Tensor:
        return self.items[index][1]


def test_training_reduces_the_loss_on_a_learnable_problem() -> None:
    data, val = Blobs(8, seed=0), Blobs(4, seed=1)
    model = MODELS["unet"](config(epochs=4))
    before = model.evaluate(val).miou
    calls: list[int] = []
    result = model.fit(data, val, progress=lambda phase, done, total: calls.append(done))
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.steps == 8 and result.epochs == 4 and result.images == 32
    assert calls == list(range(1, 9))
    assert result.best_epoch is not None and result.best_val_miou == max(h["val_miou"] for h in result.history)
    after = model.evaluate(val).miou
    assert after == pytest.approx(result.best_val_miou) and after > before + 0.2
    assert result.final_loss == pytest.approx(losses[-1])


def test_best_epoch_weights_are_a_real_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation peaks at epoch 2 then gets worse: the model must end with epoch 2's
    weights, not the last epoch's (the original SegAL kept a live reference)."""
    model = MODELS["fpn"](config(epochs=4))
    scripted = iter([0.2, 0.6, 0.4, 0.1])
    seen: list[dict[str, torch.Tensor]] = []

    def fake_evaluate(data: Dataset, *, progress: object = None) -> EvalResult:
        seen.append(weights(model))
        return EvalResult(miou=next(scripted), per_class_iou=[0.0, 0.0], pixel_accuracy=0.0)

    monkeypatch.setattr(model, "evaluate", fake_evaluate)
    result = model.fit(RandomImages(4, sizes=[(32, 32)], num_classes=2), RandomImages(2, num_classes=2))
    assert result.best_epoch == 2 and result.best_val_miou == 0.6
    assert len(seen) == 4
    final = weights(model)
    assert same(final, seen[1])
    assert not same(final, seen[3])


def test_eval_every_and_nan_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    model = MODELS["unet"](config(epochs=5, options={"eval_every": "2"}))
    scripted = iter([math.nan, 0.3, 0.1])

    def fake_evaluate(data: Dataset, *, progress: object = None) -> EvalResult:
        return EvalResult(miou=next(scripted), per_class_iou=[], pixel_accuracy=0.0)

    monkeypatch.setattr(model, "evaluate", fake_evaluate)
    result = model.fit(RandomImages(2, sizes=[(32, 32)], num_classes=2), RandomImages(2, num_classes=2))
    assert [h["epoch"] for h in result.history if "val_miou" in h] == [2.0, 4.0, 5.0]
    assert result.best_epoch == 4


def test_without_validation_the_last_weights_stay() -> None:
    model = MODELS["unet"](config())
    before = weights(model)
    result = model.fit(RandomImages(3, sizes=[(32, 32)], num_classes=2))
    assert result.best_epoch is None and result.best_val_miou is None
    assert not same(before, weights(model))
    assert all("val_miou" not in h for h in result.history)


class PoisonedLater(ListDataset):
    """Its images turn to NaN after ``clean_reads`` reads (e.g. in the second epoch)."""

    def __init__(self, n: int, clean_reads: int) -> None:
        super().__init__([torch.rand(3, 32, 32) for _ in range(n)], [torch.zeros(32, 32, dtype=torch.long)] * n)
        self.reads, self.clean_reads = 0, clean_reads

    def image(self, index: int) -> torch.Tensor:
        self.reads += 1
        image = super().image(index)
        return image if self.reads <= self.clean_reads else torch.full_like(image, math.nan)


def test_non_finite_loss_is_an_error_and_puts_the_weights_back() -> None:
    model = MODELS["unet"](config(batch_size=2, epochs=3))
    before = weights(model)
    data = PoisonedLater(4, clean_reads=4)  # epoch 1 trains (two updates), epoch 2 fails
    with pytest.raises(SegalError, match=r"^training loss became non-finite at epoch 2 step 1; lower --lr or check"):
        model.fit(data)
    assert same(before, weights(model))


def test_same_seed_same_training_and_workers_do_not_matter() -> None:
    data = RandomImages(5, sizes=[(40, 36), (24, 24)], num_classes=2)
    first = MODELS["unet"](config(seed=3, crop_size=24))
    first.fit(data)
    second = MODELS["unet"](config(seed=3, crop_size=24, num_workers=1))
    second.fit(data)
    assert same(weights(first), weights(second))
    third = MODELS["unet"](config(seed=4, crop_size=24))
    third.fit(data)
    assert not same(weights(first), weights(third))


def test_partial_and_fully_ignored_masks_train() -> None:
    base = RandomImages(4, sizes=[(32, 32)], num_classes=2)
    ignored = {sid: torch.full((32, 32), IGNORE) for sid in base.ids}
    model = MODELS["unet"](config(options={"loss": "ce+dice"}))
    result = model.fit(DatasetView(base, [0, 1, 2, 3], masks=ignored))
    assert result.final_loss == 0.0  # nothing labelled: no signal, but no NaN either
    partial = {base.ids[0]: torch.where(torch.arange(32)[:, None] < 16, base.mask(0), IGNORE)}
    result = model.fit(DatasetView(base, [0, 1], masks=partial))
    assert math.isfinite(result.final_loss) and result.final_loss > 0


def test_whole_images_of_mixed_sizes_and_small_images_under_crops() -> None:
    data = RandomImages(3, sizes=[(20, 28), (37, 19), (8, 8)], num_classes=2)
    for crop in (None, 48):
        model = MODELS["pspnet"](config(crop_size=crop, batch_size=2))
        result = model.fit(data)
        assert math.isfinite(result.final_loss) and result.steps == 1  # 3 samples: one batch of 3


def test_batch_of_one_too_small_for_batch_norm() -> None:
    model = MODELS["unet"](config(batch_size=1))
    before = weights(model)
    with pytest.raises(SegalError, match="--batch-size 1: unet cannot batch-normalise a batch of one 32x32"):
        model.fit(RandomImages(2, sizes=[(32, 32)], num_classes=2))
    assert same(before, weights(model))


def test_empty_training_set() -> None:
    with pytest.raises(SegalError, match="cannot train on an empty training set"):
        MODELS["unet"](config()).fit(RandomImages(0))


# -- data helpers ------------------------------------------------------------------------


def test_crop_pads_with_ignore_and_flip_is_seeded() -> None:
    # the built-in albumentations pipeline (tests/test_augment.py tests it in depth)
    image = torch.arange(3 * 4 * 6, dtype=torch.uint8).view(3, 4, 6)
    mask = torch.ones(4, 6, dtype=torch.long)
    crop_flip = training_augmentation(SmpOptions(crop_size=8), None, IGNORE)
    out_image, out_mask = crop_flip(image, mask, 0)
    assert out_image.shape == (3, 8, 8) and out_mask.shape == (8, 8)
    assert int((out_mask == 1).sum()) == 24 and int((out_mask == IGNORE).sum()) == 40
    assert bool((out_mask[4:] == IGNORE).all())  # padded at the bottom (and at the right, before a flip)
    again = crop_flip(image, mask, 0)
    assert torch.equal(again[0], out_image) and torch.equal(again[1], out_mask)
    flip_only = training_augmentation(SmpOptions(), None, IGNORE)
    flips = {bool(torch.equal(flip_only(image, mask, s)[0], image)) for s in range(20)}
    assert flips == {True, False}


@pytest.mark.parametrize(("size", "batch"), [(1, 4), (5, 4), (9, 4), (8, 4), (3, 1), (2, 8)])
def test_batches_cover_every_sample_and_never_hold_one(size: int, batch: int) -> None:
    sampler = EpochBatchSampler(size, batch, torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert {i for b in batches for i, _ in b} == set(range(size))
    if batch > 1:
        assert all(len(b) >= 2 for b in batches)
    again = list(EpochBatchSampler(size, batch, torch.Generator().manual_seed(0)))
    assert again == batches


def test_pad_collate_mixed_sizes_and_dtypes() -> None:
    items = [
        (torch.full((3, 2, 3), 255, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.long)),
        (torch.ones(3, 4, 1), torch.ones(4, 1, dtype=torch.long)),
    ]
    images, masks = PadCollate(IGNORE)(items)
    assert images.shape == (2, 3, 4, 3) and images.dtype == torch.float32
    assert float(images[0, 0, 0, 0]) == 1.0 and float(images[0, 0, 3, 2]) == 0.0
    assert int((masks[0] == IGNORE).sum()) == 6 and int((masks[1] == IGNORE).sum()) == 8


def test_schedule_warms_up_then_decays() -> None:
    factors = [lr_factor(s, 100, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert 0.01 <= factors[-1] < 0.02
    assert lr_factor(0, 1, 0.05) == 1.0


@pytest.mark.slow
def test_camvid_mini_trains_and_evaluates(camvid_mini: object) -> None:
    from pathlib import Path

    from segal_core import DataConfig, load_plugins

    camvid = load_plugins().registry.dataset("camvid")
    splits = camvid.load(DataConfig(path=Path(str(camvid_mini)), options={"scale": 0.25}))
    model = MODELS["unet"](config(num_classes=len(splits.classes), encoder="resnet18", batch_size=4,
                                  crop_size=64, epochs=2, lr=1e-3))
    result = model.fit(splits.train, splits.val)
    assert result.steps == 12 and math.isfinite(result.final_loss)
    test = model.evaluate(splits.test if splits.test is not None else splits.val)
    assert len(test.per_class_iou) == 11 and 0.0 <= test.miou <= 1.0 and test.pixel_accuracy > 0.1


def test_min_steps_and_steps_per_image_set_the_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    data = Blobs(8, seed=3)  # batch 4: two steps an epoch
    result = MODELS["unet"](config(epochs=1, min_steps=5)).fit(data)
    assert (result.epochs, result.steps) == (3, 6)  # 5 steps rounded up to whole epochs
    result = MODELS["unet"](config(epochs=1, min_steps=2, steps_per_image=0.5)).fit(data)
    assert (result.epochs, result.steps) == (3, 6)  # 2 + 0.5 x 8 = 6 steps
    result = MODELS["unet"](config(epochs=2, min_steps=1)).fit(data)
    assert result.epochs == 2  # never fewer than --epochs


def test_eval_every_zero_never_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    model = MODELS["unet"](config(epochs=2, options={"eval_every": "0"}))
    calls: list[int] = []
    monkeypatch.setattr(model, "evaluate", lambda data, progress=None: calls.append(1))
    result = model.fit(Blobs(4, seed=1), Blobs(2, seed=2))
    assert calls == [] and result.best_epoch is None


def test_fit_returns_the_validation_metrics_of_the_weights_it_kept() -> None:
    model = MODELS["unet"](config(epochs=2, options={"eval_every": "1"}))
    result = model.fit(Blobs(4, seed=1), Blobs(4, seed=2))
    assert result.val_result is not None and result.val_result.miou == result.best_val_miou
    again = model.evaluate(Blobs(4, seed=2))
    assert again.per_class_iou == pytest.approx(result.val_result.per_class_iou, nan_ok=True)
