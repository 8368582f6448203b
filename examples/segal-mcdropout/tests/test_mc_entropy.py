"""The predictive-entropy kernel and the ``mc_entropy`` strategy (through SegAL's
strategy contract, on a tiny model with stochastic passes)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segal_core import ModelConfig, PoolContext, SegalError
from segal_core.seeds import pass_seed
from segal_core.testing import RandomImages, StrategyContract, TinyModel

from segal_mcdropout import MCEntropy, MeanProbs, predictive_entropy


class DropoutTinyModel(TinyModel):
    """SegAL's one-convolution test model plus the ``stochastic_logits`` capability:
    dropout with probability ``p`` on its input pixels, each row seeded from its own
    seed and the pass (``pass_seed``), as the capability asks; ``p = 0`` gives
    identical passes."""

    def __init__(self, num_classes: int = 4, p: float = 0.5, seed: int = 1) -> None:
        super().__init__(ModelConfig(num_classes=num_classes, device="cpu", seed=seed, options={"scale": 2.0}))
        self.p = p

    def stochastic_logits(self, images: torch.Tensor, passes: int, seeds: Sequence[int]) -> Iterator[torch.Tensor]:
        x = self._inputs(images)
        gen = torch.Generator()
        for step in range(passes):
            keep = torch.empty(x.shape, dtype=torch.bool)
            for row, seed in enumerate(seeds):
                gen.manual_seed(pass_seed(seed, step))
                keep[row] = torch.rand(x.shape[1:], generator=gen) >= self.p
            with torch.inference_mode():
                out = self.net(x * keep / (1.0 - self.p))
            yield out
            del out


class _WithDropout:
    """The contract's checks, run on a model that offers stochastic passes."""

    def make_model(self) -> TinyModel:
        return DropoutTinyModel(self.num_classes)  # type: ignore[attr-defined]


class TestMCEntropyContract(_WithDropout, StrategyContract):
    strategy_factory = MCEntropy


class TestMCEntropyTopQContract(_WithDropout, StrategyContract):
    @staticmethod
    def strategy_factory() -> MCEntropy:
        return MCEntropy(passes=3, reduction="top_q", q=0.2)


def one_hot_logits(classes: list[int], num_classes: int = 3, scale: float = 40.0) -> torch.Tensor:
    """``[T, 1, C, 1, 1]``: pass t confidently predicts ``classes[t]``."""
    out = torch.full((len(classes), 1, num_classes, 1, 1), -scale)
    for t, c in enumerate(classes):
        out[t, 0, c] = scale
    return out


def test_known_values() -> None:
    assert float(predictive_entropy(one_hot_logits([1, 1, 1]))) == pytest.approx(0.0, abs=1e-6)
    assert float(predictive_entropy(one_hot_logits([0, 2]))) == pytest.approx(math.log(2), abs=1e-5)
    assert float(predictive_entropy(one_hot_logits([0, 1, 2]))) == pytest.approx(math.log(3), abs=1e-5)
    # one uncertain, constant prediction: predictive entropy counts it (BALD would not)
    assert float(predictive_entropy(torch.zeros((4, 1, 3, 1, 1)))) == pytest.approx(math.log(3), abs=1e-6)


def reference(logits: torch.Tensor) -> torch.Tensor:
    mean = torch.softmax(logits.double(), dim=2).mean(dim=0)
    return -(mean * mean.log()).sum(dim=1)


@settings(max_examples=40, deadline=None)
@given(passes=st.integers(1, 6), classes=st.integers(2, 6), seed=st.integers(0, 2**31 - 1),
       spread=st.floats(0.1, 8.0))
def test_equals_a_float64_reference_and_is_bounded(passes: int, classes: int, seed: int, spread: float) -> None:
    logits = torch.randn((passes, 2, classes, 3, 4), generator=torch.Generator().manual_seed(seed)) * spread
    scores = predictive_entropy(logits)
    assert scores.shape == (2, 3, 4)
    assert torch.allclose(scores.double(), reference(logits), atol=2e-5)
    assert bool((scores >= -1e-6).all()) and bool((scores <= math.log(classes) + 1e-5).all())


def test_invariant_to_a_logit_shift_per_pixel() -> None:
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn((4, 2, 5, 6, 7), generator=gen) * 3
    shift = torch.randn((4, 2, 1, 6, 7), generator=gen) * 20
    assert torch.allclose(predictive_entropy(logits), predictive_entropy(logits + shift), atol=1e-5)


def test_accumulator_rejects_mismatched_passes() -> None:
    acc = MeanProbs()
    with pytest.raises(ValueError, match="no pass"):
        acc.mean()
    acc.add(torch.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="first"):
        acc.add(torch.zeros((1, 3, 4, 5)))


def score(strategy: MCEntropy, *, seed: int = 0, p: float = 0.5) -> torch.Tensor:
    pool = RandomImages(9, sizes=[(10, 12)], num_classes=4, seed=2)
    ctx = PoolContext(pool=pool, model=DropoutTinyModel(p=p), generator=torch.Generator().manual_seed(seed),
                      batch_size=4)
    return strategy.score(ctx)


def test_round_seed_changes_masks_and_is_reproducible() -> None:
    a, b, c = score(MCEntropy(), seed=1), score(MCEntropy(), seed=1), score(MCEntropy(), seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_without_dropout_it_is_the_plain_entropy_of_one_pass() -> None:
    from segal_core.scoring import score_pool
    from segal_core.strategy import reduce_pixels

    pool = RandomImages(9, sizes=[(10, 12)], num_classes=4, seed=2)
    model = DropoutTinyModel(p=0.0)
    plain = score_pool(model, pool, lambda logits, valid: reduce_pixels(predictive_entropy([logits]), valid),
                       batch_size=4, num_workers=0)
    assert torch.allclose(score(MCEntropy(passes=3), p=0.0), plain, atol=1e-6)


def test_options_and_capability_errors_are_one_line() -> None:
    with pytest.raises(SegalError) as err:
        MCEntropy(passes=0)
    assert str(err.value) == "--strategy-opt passes=0: must be a whole number of at least 1"
    with pytest.raises(SegalError) as err:
        MCEntropy().check_model(TinyModel())
    assert str(err.value).startswith("--strategy mc_entropy needs stochastic_logits: model 'tiny' cannot give")
    assert MCEntropy(selection="power", beta=2).selection.kind == "power"  # every strategy takes it
