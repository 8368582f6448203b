"""Test helpers for plugin authors: a tiny model, a tiny dataset, and a contract
that every query strategy should pass.

Use in a test module::

    from segal_core.testing import StrategyContract

    class TestMyStrategy(StrategyContract):
        strategy_factory = MyStrategy          # a class or a zero-argument callable

pytest collects the inherited ``test_*`` methods. This module does not import pytest
(it ships in the package); a check that does not apply is skipped through a lazy
import of pytest.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from .dataset import DataConfig, Dataset, Splits
from .errors import SegalError
from .options import coerce_options
from .model import EvalResult, Model, ModelConfig, Progress, TrainResult
from .strategy import PoolContext, Strategy, UncertaintyStrategy

__all__ = ["RandomImages", "StrategyContract", "TinyModel"]


class RandomImages(Dataset):
    """Random uint8 images, generated from ``(seed, index)`` on every access (nothing
    is stored, so memory does not grow with ``n``).

    The mask is a function of the image (the red channel cut into ``num_classes``
    bands), so a per-pixel model can learn it.

    :param n: number of items.
    :param sizes: ``(height, width)`` of the images, cycled over the items (several
        sizes give a pool of mixed sizes).
    :param num_classes: mask classes.
    :param seed: changes every image.
    :param split: ``"train"``, ``"val"`` or ``"test"`` (also prefixes the ids).
    """

    def __init__(
        self,
        n: int = 8,
        *,
        sizes: Sequence[tuple[int, int]] = ((16, 16),),
        num_classes: int = 4,
        seed: int = 0,
        split: str = "train",
    ) -> None:
        if n < 0 or not sizes or num_classes < 1:
            raise ValueError("RandomImages needs n >= 0, at least one size and one class")
        self.sizes = [tuple(s) for s in sizes]
        self.seed = seed
        self.split = split
        self.classes = [f"class{c}" for c in range(num_classes)]
        self.ids = [f"{split}-{i:05d}" for i in range(n)]

    @classmethod
    def load(cls, config: DataConfig) -> Splits:
        """Three small splits; ``--dataset-opt n=...`` sets the train split's size."""
        n = int(config.options.get("n", 16))  # type: ignore[call-overload]
        classes = config.num_classes or 4
        make = lambda count, split, off: cls(  # noqa: E731
            count, num_classes=classes, seed=config.seed + off, split=split
        )
        return Splits(train=make(n, "train", 0), val=make(4, "val", 1), test=make(4, "test", 2))

    def image(self, index: int) -> torch.Tensor:
        height, width = self.sizes[index % len(self.sizes)]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return torch.randint(0, 256, (3, height, width), generator=gen, dtype=torch.uint8)

    def mask(self, index: int) -> torch.Tensor:
        red = self.image(index)[0].long()
        return (red * self.num_classes) // 256


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SegalError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


@dataclass(frozen=True)
class TinyOptions:
    """The settings of :class:`TinyModel` (``--model-opt key=value``)."""

    name: ClassVar[str] = "tiny"

    kernel_size: int = 1
    scale: float = 1.0
    epochs: int = 1
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise SegalError(f"--model-opt kernel_size={self.kernel_size}: must be an odd number >= 1")
        if self.epochs < 1:
            raise SegalError(f"--model-opt epochs={self.epochs}: must be at least 1")


class TinyModel(Model):
    """A per-pixel network (one ``kernel_size`` convolution, 1 by default) that is
    cheap enough for unit tests. Padding an image therefore never changes the logits
    of its own pixels when ``kernel_size`` is 1.

    ``calls`` counts :meth:`logits` calls (to check that a strategy never runs the
    model). Its settings (``config.options``, as :class:`TinyOptions`): ``kernel_size``
    (odd int), ``scale`` (the weights' spread: larger = more confident logits),
    ``epochs`` and ``lr``. A second model plugin needs nothing from the core but
    :class:`~segal_core.model.ModelConfig`: this one is the proof.
    """

    name: ClassVar[str] = "tiny"
    description: ClassVar[str] = "one convolution (tests only)"

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config or ModelConfig(num_classes=4, device="cpu"))
        self.options = TinyOptions(**coerce_options(TinyOptions, dict(self.config.options), "--model-opt"))
        self.kernel_size = self.options.kernel_size
        self.scale = self.options.scale
        self._device = _resolve_device(self.config.device)
        self.net = torch.nn.Conv2d(
            3, self.config.num_classes, self.kernel_size, padding=self.kernel_size // 2
        ).to(self._device)
        self.calls = 0
        self.reset()

    @property
    def device(self) -> torch.device:
        return self._device

    def reset(self) -> None:
        gen = torch.Generator().manual_seed(self.config.seed)
        with torch.no_grad():
            for param in self.net.parameters():
                param.copy_(torch.randn(param.shape, generator=gen) * self.scale)

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self._device, non_blocking=True)
        x = x.float() / 255.0 if not x.is_floating_point() else x.float()
        return (x - 0.5) * 4.0

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        with torch.inference_mode():
            return self.net(self._inputs(images))

    def fit(
        self, train: Dataset, val: Dataset | None = None, *, progress: Progress | None = None
    ) -> TrainResult:
        """Adam on one image at a time for ``options.epochs`` epochs."""
        epochs = self.options.epochs
        opt = torch.optim.Adam(self.net.parameters(), lr=self.options.lr)
        loss_fn = torch.nn.CrossEntropyLoss(ignore_index=self.config.ignore_index)
        best: tuple[float, int, dict[str, torch.Tensor]] | None = None
        steps, loss = 0, math.nan
        history: list[dict[str, float]] = []
        for epoch in range(epochs):
            for i in range(len(train)):
                image, mask = train[i]
                out = self.net(self._inputs(image[None]))
                batch_loss = loss_fn(out, mask[None].to(self._device))
                opt.zero_grad()
                batch_loss.backward()
                opt.step()
                steps += 1
                loss = float(batch_loss.detach())
                if progress is not None:
                    progress("train", steps, epochs * len(train))
            history.append({"epoch": float(epoch + 1), "loss": loss, "lr": self.options.lr})
            if val is not None:
                miou = self.evaluate(val).miou
                history[-1]["val_miou"] = miou
                if best is None or miou > best[0]:
                    best = (miou, epoch, copy.deepcopy(self.net.state_dict()))
        if best is not None:
            self.net.load_state_dict(best[2])
        return TrainResult(
            epochs=epochs,
            steps=steps,
            images=steps,
            final_loss=loss,
            best_epoch=None if best is None else best[1],
            best_val_miou=None if best is None else best[0],
            history=history,
        )

    def evaluate(self, data: Dataset, *, progress: Progress | None = None) -> EvalResult:
        classes = self.config.num_classes
        confusion = torch.zeros(classes * classes, dtype=torch.long, device=self._device)
        for i in range(len(data)):
            image, mask = data[i]
            pred = self.logits(image[None])[0].argmax(0)
            truth = mask.to(self._device)
            keep = truth != self.config.ignore_index
            confusion += torch.bincount(
                truth[keep] * classes + pred[keep], minlength=classes * classes
            )
            if progress is not None:
                progress("evaluate", i + 1, len(data))  # one image per batch
        matrix = confusion.view(classes, classes).double()
        hits = matrix.diag()
        union = matrix.sum(0) + matrix.sum(1) - hits
        iou = torch.where(union > 0, hits / union.clamp(min=1), torch.nan)
        accuracy = float(hits.sum() / matrix.sum().clamp(min=1))
        return EvalResult(
            miou=float(iou.nanmean()) if bool((union > 0).any()) else math.nan,
            per_class_iou=[float(v) for v in iou],
            pixel_accuracy=accuracy,
        )

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous().cpu() for k, v in self.net.state_dict().items()}, str(path))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        self.net.load_state_dict(load_file(str(path), device=str(self._device)))


def _skip(reason: str) -> None:
    """Skip the running test (pytest imported only when a check does not apply)."""
    import pytest

    pytest.skip(reason)


class StrategyContract:
    """Checks every query strategy must pass; subclass it in a test module.

    Override :attr:`strategy_factory` (a strategy class, or any zero-argument
    callable returning a configured strategy). The pool, model and sizes below may
    be overridden too. ``UncertaintyStrategy`` subclasses get extra checks on
    :meth:`~segal_core.UncertaintyStrategy.pixel_scores` and the reduction.
    """

    #: Builds the strategy under test (override).
    strategy_factory: ClassVar[Callable[[], Strategy]]
    num_classes: ClassVar[int] = 5
    pool_size: ClassVar[int] = 7
    image_size: ClassVar[tuple[int, int]] = (12, 10)
    seed: ClassVar[int] = 1234

    # -- building blocks (override to change the fixtures) -----------------------

    def make_strategy(self) -> Strategy:
        factory = getattr(type(self), "strategy_factory", None)
        if factory is None:
            raise TypeError(f"{type(self).__name__} must set strategy_factory")
        return factory()

    def make_pool(self, sizes: Sequence[tuple[int, int]] | None = None) -> Dataset:
        return RandomImages(
            self.pool_size, sizes=sizes or [self.image_size], num_classes=self.num_classes, seed=7
        )

    def make_model(self) -> TinyModel:
        return TinyModel(ModelConfig(num_classes=self.num_classes, device="cpu", seed=3))

    def make_context(
        self, pool: Dataset, model: Model | None, *, batch_size: int = 3, seed: int | None = None
    ) -> PoolContext:
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        return PoolContext(pool=pool, model=model, generator=gen, batch_size=batch_size)

    def run_score(
        self, strategy: Strategy, pool: Dataset, *, batch_size: int = 3, seed: int | None = None
    ) -> tuple[torch.Tensor, TinyModel]:
        model = self.make_model()
        ctx = self.make_context(pool, model, batch_size=batch_size, seed=seed)
        return strategy.score(ctx), model

    def random_logits(self, batch: int = 2, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        height, width = self.image_size
        return torch.randn((batch, self.num_classes, height, width), generator=gen) * 3.0

    def _uncertainty(self) -> UncertaintyStrategy:
        strategy = self.make_strategy()
        if not isinstance(strategy, UncertaintyStrategy):
            _skip(f"{type(strategy).__name__} is not an UncertaintyStrategy")
        assert isinstance(strategy, UncertaintyStrategy)
        return strategy

    # -- every strategy ----------------------------------------------------------

    def test_has_name(self) -> None:
        strategy = self.make_strategy()
        assert isinstance(strategy, Strategy)
        assert isinstance(strategy.name, str) and strategy.name.strip() == strategy.name
        assert strategy.name, f"{type(strategy).__name__}.name is empty"
        assert all(isinstance(a, str) and a for a in strategy.aliases)
        assert isinstance(strategy.uses_model, bool)

    def test_one_finite_score_per_item(self) -> None:
        strategy = self.make_strategy()
        pool = self.make_pool()
        scores, model = self.run_score(strategy, pool)
        assert isinstance(scores, torch.Tensor)
        assert scores.shape == (len(pool),), f"expected ({len(pool)},), got {tuple(scores.shape)}"
        assert scores.is_floating_point()
        assert bool(torch.isfinite(scores).all()), f"non-finite scores: {scores}"
        if not strategy.uses_model:
            assert model.calls == 0, "a strategy with uses_model = False ran the model"

    def test_runs_without_model_only_if_declared(self) -> None:
        strategy = self.make_strategy()
        if strategy.uses_model:
            _skip("the strategy uses the model")
        pool = self.make_pool()
        scores = strategy.score(self.make_context(pool, None))
        assert scores.shape == (len(pool),)

    def test_select_returns_k_distinct_top_positions(self) -> None:
        strategy = self.make_strategy()
        pool = self.make_pool()
        scores, _ = self.run_score(strategy, pool)
        for k in (0, 1, 3, len(pool)):
            chosen = strategy.select(scores, k)
            assert chosen.shape == (k,)
            assert chosen.dtype == torch.int64
            assert len(set(chosen.tolist())) == k, "selected positions repeat"
            assert all(0 <= p < len(pool) for p in chosen.tolist())
            rest = torch.ones(len(pool), dtype=torch.bool)
            rest[chosen] = False
            if 0 < k < len(pool):
                assert scores[chosen].min() >= scores[rest].max(), "select is not the top-k"

    def test_select_rejects_impossible_k(self) -> None:
        strategy = self.make_strategy()
        scores = torch.zeros(3)
        for k in (-1, 4):
            try:
                strategy.select(scores, k)
            except SegalError:
                continue
            raise AssertionError(f"select(k={k}) on 3 scores did not raise SegalError")

    def test_same_seed_same_query(self) -> None:
        pool = self.make_pool()
        first, _ = self.run_score(self.make_strategy(), pool)
        again, _ = self.run_score(self.make_strategy(), pool)
        assert torch.equal(first, again), "same seed and data gave different scores"
        k = len(pool) // 2
        assert torch.equal(self.make_strategy().select(first, k), self.make_strategy().select(again, k))

    def test_streamed_equals_one_batch(self) -> None:
        strategy = self.make_strategy()
        pool = self.make_pool()
        streamed, _ = self.run_score(strategy, pool, batch_size=2)
        whole, _ = self.run_score(strategy, pool, batch_size=len(pool))
        assert torch.allclose(streamed, whole, rtol=1e-5, atol=1e-6)
        assert torch.equal(strategy.select(streamed, len(pool)), strategy.select(whole, len(pool)))

    def test_pool_of_mixed_sizes(self) -> None:
        strategy = self.make_strategy()
        height, width = self.image_size
        pool = self.make_pool(sizes=[(height, width), (height + 3, width - 2), (height - 4, width + 5)])
        scores, _ = self.run_score(strategy, pool, batch_size=3)
        assert scores.shape == (len(pool),)
        assert bool(torch.isfinite(scores).all())

    # -- uncertainty strategies --------------------------------------------------

    def test_pixel_scores_shape(self) -> None:
        strategy = self._uncertainty()
        logits = self.random_logits()
        pixels = strategy.pixel_scores(logits)
        assert pixels.shape == (logits.shape[0], *logits.shape[2:])
        assert pixels.device == logits.device
        assert bool(torch.isfinite(pixels).all())

    def test_invariant_to_logit_shift(self) -> None:
        strategy = self._uncertainty()
        logits = self.random_logits()
        gen = torch.Generator().manual_seed(9)
        shift = torch.randn((logits.shape[0], 1, *logits.shape[2:]), generator=gen)
        base = strategy.pixel_scores(logits)
        moved = strategy.pixel_scores(logits + 10.0 * shift)
        assert torch.allclose(base, moved, rtol=1e-4, atol=1e-5)

    def test_valid_mask_respected(self) -> None:
        strategy = self._uncertainty()
        logits = self.random_logits()
        valid = torch.zeros((logits.shape[0], *logits.shape[2:]), dtype=torch.bool)
        valid[:, : logits.shape[2] // 2] = True
        valid[-1] = False  # an image with no valid pixel at all
        changed = logits.clone()
        changed[:, :, logits.shape[2] // 2 :] = torch.randn_like(changed[:, :, logits.shape[2] // 2 :]) * 50
        changed[:, 0, -1, -1] = torch.nan  # an invalid NaN pixel must not leak either
        a = strategy.image_scores(logits, valid)
        b = strategy.image_scores(changed, valid)
        assert a.shape == (logits.shape[0],)
        assert torch.equal(a, b), "pixels outside the valid mask changed the score"
        assert bool(torch.isneginf(a[-1])), "an image without valid pixels must score -inf"
        assert bool(torch.isfinite(a[:-1]).all())

    def test_non_finite_logits_ignored(self) -> None:
        strategy = self._uncertainty()
        logits = self.random_logits()
        broken = logits.clone()
        broken[0, :, 0, 0] = torch.nan
        broken[0, 1, 1, 1] = torch.inf
        scores = strategy.image_scores(broken)
        assert bool(torch.isfinite(scores).all()), "non-finite logits leaked into the score"
