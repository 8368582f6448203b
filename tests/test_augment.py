"""Training augmentation of the smp models (segal_smp.augment): the built-in
albumentations pipeline, per-sample seeding, pipeline files and the hook's transform."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from segal_core import ModelConfig, SegalError
from segal_smp import MODELS
from segal_smp import augment as augment_module
from segal_smp.augment import (
    HOOK,
    Augmentation,
    build_pipeline,
    check_transform,
    load_pipeline,
    model_augmentation,
    seed_transform,
    training_augmentation,
)
from segal_smp.data import AugmentedDataset, EpochBatchSampler, PadCollate
from segal_smp.options import SmpOptions

from listdata import ListDataset

A = augment_module.albumentations()
IGNORE = 255


def coords(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An image whose pixels say where they are (red = row + 1, green = column + 1,
    blue = 200) and the mask ``row * width + column``, so alignment can be checked
    after any crop and flip."""
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    cols = torch.arange(width).view(1, -1).expand(height, width)
    image = torch.stack([rows + 1, cols + 1, torch.full_like(rows, 200)]).to(torch.uint8)
    return image, (rows * width + cols).long()


def aligned(image: torch.Tensor, mask: torch.Tensor, width: int) -> bool:
    """Every labelled pixel's mask value is the position its image pixel came from;
    every padded pixel is black in the image and ``IGNORE`` in the mask."""
    real = mask != IGNORE
    where = (image[0].long() - 1) * width + (image[1].long() - 1)
    padded_black = bool((image[:, ~real] == 0).all())
    return bool(torch.equal(where[real], mask[real])) and padded_black


def augmentation(**options: Any) -> Augmentation:
    return training_augmentation(SmpOptions(**options), None, IGNORE)


def one_line(exc: pytest.ExceptionInfo[SegalError], *parts: str) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message
    return message


# -- the built-in pipeline -----------------------------------------------------------


def test_default_pipeline_is_crop_and_flip_only() -> None:
    pipeline = build_pipeline(SmpOptions(crop_size=8), IGNORE)
    names = [type(t).__name__ for t in pipeline.transforms]
    assert names == ["RandomCrop", "HorizontalFlip"]
    crop = pipeline.transforms[0]
    assert (crop.height, crop.width, crop.pad_if_needed, crop.pad_position) == (8, 8, True, "top_left")
    assert crop.fill == 0 and crop.fill_mask == IGNORE
    assert [type(t).__name__ for t in build_pipeline(SmpOptions(), IGNORE).transforms] == ["HorizontalFlip"]
    jittered = build_pipeline(SmpOptions(crop_size=8, flip=False, jitter=True), IGNORE)
    assert [type(t).__name__ for t in jittered.transforms] == ["RandomCrop", "ColorJitter"]


def test_crops_to_size_and_keeps_image_and_mask_aligned() -> None:
    image, mask = coords(12, 14)
    aug = augmentation(crop_size=8)
    corners = set()
    for seed in range(30):
        out_image, out_mask = aug(image, mask, seed)
        assert out_image.shape == (3, 8, 8) and out_image.dtype == torch.uint8
        assert out_mask.shape == (8, 8) and out_mask.dtype == torch.int64
        assert aligned(out_image, out_mask, 14) and not bool((out_mask == IGNORE).any())
        rows, cols = out_mask // 14, out_mask % 14
        assert torch.equal(rows, rows[0, 0] + torch.arange(8).view(-1, 1).expand(8, 8))  # consecutive rows
        step = int(cols[0, 1] - cols[0, 0])
        assert step in (1, -1) and torch.equal(cols, cols[0, 0] + step * torch.arange(8).expand(8, 8))  # flipped or not
        corners.add((int(rows.min()), int(cols.min())))
    assert len(corners) > 5  # the window moves with the seed
    assert {r for r, _ in corners} <= set(range(5)) and {c for _, c in corners} <= set(range(7))


def test_small_images_are_padded_at_the_bottom_and_right_with_ignore() -> None:
    image, mask = coords(4, 6)  # smaller than the crop both ways
    aug = augmentation(crop_size=8, flip=False)
    out_image, out_mask = aug(image, mask, 0)
    assert out_image.shape == (3, 8, 8) and aligned(out_image, out_mask, 6)
    assert torch.equal(out_mask[:4, :6], mask) and bool((out_mask[4:] == IGNORE).all())
    assert bool((out_mask[:, 6:] == IGNORE).all()) and int((out_mask == IGNORE).sum()) == 40
    assert bool((out_image[:, 4:] == 0).all()) and bool((out_image[:, :, 6:] == 0).all())
    # taller than the crop but narrower: padded on the right, cropped vertically
    image, mask = coords(20, 5)
    for seed in range(10):
        out_image, out_mask = augmentation(crop_size=8)(image, mask, seed)
        assert out_mask.shape == (8, 8) and aligned(out_image, out_mask, 5)
        assert int((out_mask == IGNORE).sum()) == 24  # 3 padded columns (left or right once flipped)


def test_flip_flips_image_and_mask_together() -> None:
    image, mask = coords(5, 7)
    seen = set()
    for seed in range(20):
        out_image, out_mask = augmentation()(image, mask, seed)
        flipped = torch.equal(out_mask, mask.flip(-1))
        assert flipped or torch.equal(out_mask, mask)
        assert torch.equal(out_image, image.flip(-1) if flipped else image)
        seen.add(flipped)
    assert seen == {True, False}
    same_image, same_mask = augmentation(flip=False)(image, mask, 3)  # nothing on: untouched
    assert same_image is image and same_mask is mask


def test_jitter_changes_the_image_never_the_mask() -> None:
    image, mask = coords(6, 6)
    image[2] = torch.arange(36).view(6, 6).to(torch.uint8) * 7  # some colour to jitter
    changed = 0
    for seed in range(10):
        out_image, out_mask = augmentation(flip=False, jitter=True)(image, mask, seed)
        assert torch.equal(out_mask, mask) and out_image.dtype == torch.uint8
        changed += not torch.equal(out_image, image)
    assert changed >= 5
    floats = image.float() / 255
    changed = 0
    for seed in range(10):
        out_image, out_mask = augmentation(flip=False, jitter=True)(floats, mask, seed)
        assert out_image.dtype == torch.float32 and torch.equal(out_mask, mask)
        assert float(out_image.min()) >= 0.0 and float(out_image.max()) <= 1.0
        changed += not torch.equal(out_image, floats)
    assert changed >= 5


def test_float_images_stay_float32() -> None:
    image, mask = coords(10, 10)
    for dtype in (torch.float32, torch.float64):
        out_image, out_mask = augmentation(crop_size=8)(image.to(dtype) / 255, mask, 0)
        assert out_image.dtype == torch.float32 and out_mask.dtype == torch.int64
        assert aligned((out_image * 255).round().to(torch.uint8), out_mask, 10)


def test_same_seed_same_output_whatever_came_before() -> None:
    image, mask = coords(16, 16)
    aug = augmentation(crop_size=8, jitter=True)
    first = aug(image, mask, 12345)
    aug(image, mask, 7)
    aug(image, mask, 8)
    again = aug(image, mask, 12345)
    fresh = augmentation(crop_size=8, jitter=True)(image, mask, 12345)  # a new pipeline object
    for other in (again, fresh):
        assert torch.equal(first[0], other[0]) and torch.equal(first[1], other[1])
    outputs = {aug(image, mask, seed)[1].numpy().tobytes() for seed in range(10)}
    assert len(outputs) > 5  # different seeds, different crops


def test_one_stream_shared_by_all_transforms() -> None:
    # set_random_seed would seed every transform with the same number (the crop
    # position and the flip would draw the same values); one shared stream instead
    pipeline = build_pipeline(SmpOptions(crop_size=8, jitter=True), IGNORE)
    seed_transform(pipeline, 5)
    assert all(t.py_random is pipeline.py_random for t in pipeline.transforms)
    assert all(t.random_generator is pipeline.random_generator for t in pipeline.transforms)
    image, mask = coords(40, 40)
    aug = augmentation(crop_size=8)
    tops, flips = [], []
    for seed in range(400):
        out = aug(image, mask, seed)[1]
        tops.append(int(out.min()) // 40)
        flips.append(bool(out[0, 1] < out[0, 0]))
    upper = [f for t, f in zip(tops, flips, strict=True) if t < 16]
    lower = [f for t, f in zip(tops, flips, strict=True) if t >= 16]
    # with set_random_seed these are about 1.0 and 0.03: the flip would follow the crop
    assert 0.35 < sum(upper) / len(upper) < 0.65 and 0.35 < sum(lower) / len(lower) < 0.65


def _batches(dataset: AugmentedDataset, workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    sampler = EpochBatchSampler(len(dataset), 3, torch.Generator().manual_seed(11))
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=PadCollate(IGNORE), num_workers=workers)
    return [batch for _ in range(2) for batch in loader]  # two epochs


@pytest.mark.parametrize("source", ["built-in", "file"])
def test_batches_do_not_depend_on_the_workers(source: str, tmp_path: Path) -> None:
    pairs = [coords(h, w) for h, w in [(12, 14), (6, 9), (16, 10), (8, 8), (20, 20), (5, 13)]]
    for i, (image, _) in enumerate(pairs):
        image[2] = (image[2] + 9 * i).clamp(max=255)
    data = ListDataset([p[0] for p in pairs], [p[1] for p in pairs], classes=255)
    if source == "built-in":
        aug = augmentation(crop_size=8, jitter=True)
    else:
        path = tmp_path / "pipeline.yaml"
        transform = A.Compose([A.PadIfNeeded(10, 10, position="top_left", border_mode=0, fill_mask=IGNORE),
                               A.RandomCrop(10, 10), A.Affine(rotate=(-20, 20), p=0.7),
                               A.HorizontalFlip(), A.RandomBrightnessContrast(p=0.5)])
        A.save(transform, str(path), data_format="yaml")
        aug = augmentation(augment=str(path))
    dataset = AugmentedDataset(data, aug)
    serial, parallel = _batches(dataset, 0), _batches(dataset, 2)
    assert len(serial) == len(parallel) == 4
    for (images, masks), (other_images, other_masks) in zip(serial, parallel, strict=True):
        assert torch.equal(images, other_images) and torch.equal(masks, other_masks)
    reseeded = _batches(AugmentedDataset(data, aug), 0)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(serial, reseeded, strict=True))


# -- pipeline files ------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "data_format"), [(".yaml", "yaml"), (".yml", "yaml"), (".json", "json")])
def test_pipeline_files_round_trip_and_are_used(tmp_path: Path, suffix: str, data_format: str) -> None:
    saved = A.Compose([A.CenterCrop(4, 6), A.HorizontalFlip(p=1.0)])
    path = tmp_path / f"pipeline{suffix}"
    A.save(saved, str(path), data_format=data_format)
    loaded = load_pipeline(path)
    assert isinstance(loaded, A.Compose) and A.to_dict(loaded) == A.to_dict(saved)
    aug = augmentation(augment=str(path))
    assert aug.user and aug.source == f"--augment {path}"
    image, mask = coords(8, 10)
    out_image, out_mask = aug(image, mask, 0)
    assert torch.equal(out_mask, mask[2:6, 2:8].flip(-1)) and torch.equal(out_image, image[:, 2:6, 2:8].flip(-1))


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


BAD_FILES: dict[str, tuple[str, str | bytes | None, str]] = {
    # case: (file name, content (None: no file; "dir": a folder), what the message says)
    "missing": ("missing.yaml", None, "no such file"),
    "extension": ("pipeline.txt", "transform: {}", "must end in .yaml, .yml or .json"),
    "folder": ("folder.yaml", "dir", "not a file"),
    "not utf-8": ("binary.yaml", b"\xff\xfe\x00\x81garbage", "cannot read the file"),
    "bad yaml": ("broken.yaml", "transform: [unclosed\n  - x: :", "not valid YAML"),
    "bad json": ("broken.json", '{"transform": ', "not valid JSON"),
    "a list": ("list.yaml", "- HorizontalFlip\n- RandomCrop\n", "not an albumentations pipeline"),
    "no transform": ("empty.json", '{"__version__": "2.0.8"}', "not an albumentations pipeline"),
    "empty": ("empty.yaml", "", "not an albumentations pipeline"),
    "unknown transform": (
        "unknown.yaml",
        "transform:\n  __class_fullname__: Compose\n  transforms:\n  - __class_fullname__: NoSuchFlip\n    p: 0.5\n",
        "unknown transform 'NoSuchFlip'",
    ),
    "bad argument": (
        "badarg.json",
        '{"transform": {"__class_fullname__": "Compose", "transforms": '
        '[{"__class_fullname__": "RandomCrop", "height": -3, "width": 8, "p": 1.0}]}}',
        "(RandomCrop: height: Input should be greater than or equal to 1)",
    ),
    "not a compose": (
        "single.yaml",
        "transform:\n  __class_fullname__: HorizontalFlip\n  p: 0.5\n",
        "holds a HorizontalFlip, not a Compose",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_pipeline_files_give_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    name, content, says = BAD_FILES[case]
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        _write(path, content)
    with pytest.raises(SegalError) as exc:
        load_pipeline(path)
    message = one_line(exc, str(path), says)
    assert message.startswith(f"--augment {path}: ")
    with pytest.raises(SegalError) as exc:  # the same through the settings
        augmentation(augment=str(path))
    assert str(exc.value) == message


def test_a_file_that_fails_on_the_data_fails_before_training(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    A.save(A.Compose([A.RandomCrop(64, 64)]), str(path), data_format="yaml")  # no padding: 16x16 too small
    image, mask = coords(16, 16)
    with pytest.raises(SegalError) as exc:
        AugmentedDataset(ListDataset([image], [mask], classes=255), augmentation(augment=str(path)))
    one_line(exc, f"--augment {path} failed on a 16x16 training image", "fix the pipeline")


def test_a_file_replaces_the_built_in_settings_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "flip.json"
    A.save(A.Compose([A.HorizontalFlip(p=1.0)]), str(path), data_format="json")
    image, mask = coords(12, 12)
    with caplog.at_level(logging.WARNING, logger="segal_smp.augment"):
        aug = augmentation(augment=str(path), crop_size=8, jitter=True)
    assert "--crop-size=8" in caplog.text and "jitter=True" in caplog.text
    out_image, out_mask = aug(image, mask, 0)
    assert torch.equal(out_mask, mask.flip(-1)) and torch.equal(out_image, image.flip(-1))  # no crop, no jitter


class FakeModel:
    def __init__(self, options: SmpOptions, augmentation: object = None) -> None:
        self.options = options
        self.config = ModelConfig(num_classes=2, device="cpu", augmentation=augmentation)


def test_a_file_is_read_once_per_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.yaml"
    A.save(A.Compose([A.HorizontalFlip()]), str(path), data_format="yaml")
    reads: list[object] = []

    def counting(file: object) -> object:
        reads.append(file)
        return load_pipeline(file)  # type: ignore[arg-type]

    monkeypatch.setattr(augment_module, "load_pipeline", counting)
    model = FakeModel(SmpOptions(augment=str(path)))
    first = model_augmentation(model)
    assert model_augmentation(model) is first and len(reads) == 1
    other = FakeModel(SmpOptions(augment=str(path)))
    assert model_augmentation(other) is not first and len(reads) == 2


# -- the hook's transform ------------------------------------------------------------


def test_precedence_hook_then_file_then_built_in(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    A.save(A.Compose([A.VerticalFlip(p=1.0)]), str(path), data_format="yaml")
    options = SmpOptions(augment=str(path), crop_size=8)
    hook = A.Compose([A.Transpose(p=1.0)])
    image, mask = coords(10, 12)
    assert torch.equal(model_augmentation(FakeModel(options, hook))(image, mask, 0)[1], mask.T)
    assert torch.equal(model_augmentation(FakeModel(options))(image, mask, 0)[1], mask.flip(0))
    assert model_augmentation(FakeModel(SmpOptions(crop_size=8)))(image, mask, 0)[1].shape == (8, 8)
    assert model_augmentation(FakeModel(options, hook)).source == HOOK


def test_hook_transforms_that_are_not_albumentations_composes() -> None:
    image, mask = coords(6, 8)
    single = training_augmentation(SmpOptions(), A.HorizontalFlip(p=1.0))
    assert torch.equal(single(image, mask, 0)[1], mask.flip(-1))

    def swap_halves(*, image: np.ndarray, mask: np.ndarray, **_: object) -> dict[str, np.ndarray]:
        return {"image": np.roll(image, 4, axis=1), "mask": np.roll(mask, 4, axis=1)}

    plain = training_augmentation(SmpOptions(), swap_halves)
    out_image, out_mask = plain(image, mask, 0)
    assert torch.equal(out_mask, mask.roll(4, dims=1)) and aligned(out_image, out_mask, 8)

    def mirror_views(*, image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        # views with negative strides, and a float64 image in another memory layout
        floats = np.asfortranarray(image.astype(np.float64))
        return {"image": floats[:, ::-1], "mask": mask[:, ::-1]}

    out_image, out_mask = training_augmentation(SmpOptions(), mirror_views)(image, mask, 0)
    assert out_image.dtype == torch.float32 and out_image.is_contiguous() and out_mask.is_contiguous()
    assert torch.equal(out_image, image.flip(-1).float()) and torch.equal(out_mask, mask.flip(-1))


@pytest.mark.parametrize(
    ("hook", "says"),
    [
        (42, "a value of type int is not callable"),
        ({"transform": "HorizontalFlip"}, "a value of type dict is not callable"),
        (A.HorizontalFlip, "HorizontalFlip is a class, not a transform"),
        (lambda image: image, "cannot be called with image= and mask="),
    ],
)
def test_bad_hook_transforms_are_one_line(hook: object, says: str) -> None:
    with pytest.raises(SegalError) as exc:
        training_augmentation(SmpOptions(), hook)
    one_line(exc, "segal_train_augmentation hook", says, "A.Compose")
    with pytest.raises(SegalError):
        check_transform(hook)


def test_hook_transforms_that_misbehave_when_called() -> None:
    image, mask = coords(6, 8)
    cases = [
        (lambda *, image, mask: image, "returned a ndarray, not a dict with 'image' and 'mask'"),
        (lambda *, image, mask: {"image": image, "mask": mask[:3]}, "the mask must have the image's height"),
        (lambda *, image, mask: {"image": image[:, :, 0], "mask": mask}, "an image with 1 channels from one with 3"),
        (lambda *, image, mask: 1 / 0, "failed on a 6x8 training image (ZeroDivisionError"),
    ]
    for hook, says in cases:
        with pytest.raises(SegalError) as exc:
            training_augmentation(SmpOptions(), hook)(image, mask, 0)
        one_line(exc, HOOK, says)


def test_too_old_albumentations_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(A, "__version__", "1.4.3")
    with pytest.raises(SegalError) as exc:
        build_pipeline(SmpOptions())
    one_line(exc, "albumentations 1.4.3 is too old", "pip install 'albumentations>=2.0'")


# -- through a model -----------------------------------------------------------------


def model(**options: Any) -> Any:
    base: dict[str, Any] = {"encoder": "tu-test_resnet", "epochs": 1, "min_steps": 0, "steps_per_image": 0,
                            "batch_size": 2}
    augmentation = options.pop("augmentation", None)
    base.update(options)
    return MODELS["unet"](ModelConfig(num_classes=3, device="cpu", options=base, augmentation=augmentation))


def test_models_train_with_a_file_and_with_the_hook(tmp_path: Path) -> None:
    images = [coords(12, 12)[0] for _ in range(4)]
    masks = [torch.randint(0, 3, (12, 12)) for _ in range(4)]
    data = ListDataset(images, masks, classes=3)
    path = tmp_path / "p.json"
    pipeline = A.Compose([A.PadIfNeeded(16, 16, border_mode=0, fill_mask=IGNORE), A.RandomCrop(16, 16),
                          A.HorizontalFlip()])
    A.save(pipeline, str(path), data_format="json")
    result = model(augment=str(path)).fit(data)
    assert math.isfinite(result.final_loss) and result.steps == 2

    seeds: list[int] = []

    class Recording:
        """A hook transform that records the seeds it is given."""

        def set_random_state(self, random_generator: np.random.Generator, py_random: Any) -> None:
            seeds.append(int(random_generator.integers(1 << 30)))

        def __call__(self, *, image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
            return {"image": image, "mask": mask}

    result = model(augmentation=Recording(), crop_size=8).fit(data)
    assert math.isfinite(result.final_loss) and len(seeds) == 1 + 4  # the probe, then four samples
    first = list(seeds)
    seeds.clear()
    model(augmentation=Recording()).fit(data)
    assert seeds == first  # the same seeds again: reproducible


def test_a_broken_hook_stops_training_with_one_line_and_keeps_the_weights() -> None:
    def broken(*, image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        raise RuntimeError("boom")

    net = model(augmentation=broken)
    before = {k: v.clone() for k, v in net.network.state_dict().items()}
    image, mask = coords(12, 12)
    with pytest.raises(SegalError) as exc:
        net.fit(ListDataset([image, image], [mask % 3, mask % 3], classes=3))
    one_line(exc, HOOK, "failed on a 12x12 training image (RuntimeError: boom)")
    assert all(torch.equal(before[k], v) for k, v in net.network.state_dict().items())
