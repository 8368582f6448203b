"""The BALD kernel and the ``bald`` strategy (through SegAL's strategy contract)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segal_core import ModelConfig, PoolContext, SegalError
from segal_core.testing import RandomImages, StrategyContract, TinyModel

from segal_mcdropout import BALD, PassAccumulator, bald


class TestBALDContract(StrategyContract):
    strategy_factory = BALD


class TestBALDTopQContract(StrategyContract):
    @staticmethod
    def strategy_factory() -> BALD:
        return BALD(passes=3, p=0.5, reduction="top_q", q=0.2)


def one_hot_logits(classes: list[int], num_classes: int = 3, scale: float = 40.0) -> torch.Tensor:
    """``[T, 1, C, 1, 1]``: pass t confidently predicts ``classes[t]``."""
    out = torch.full((len(classes), 1, num_classes, 1, 1), -scale)
    for t, c in enumerate(classes):
        out[t, 0, c] = scale
    return out


def test_known_values() -> None:
    # passes that agree: no disagreement at all
    assert float(bald(one_hot_logits([1, 1, 1]))) == pytest.approx(0.0, abs=1e-6)
    # two confident passes on different classes: log 2
    assert float(bald(one_hot_logits([0, 2]))) == pytest.approx(math.log(2), abs=1e-5)
    # three confident passes on three classes: log 3, the maximum for C = 3
    assert float(bald(one_hot_logits([0, 1, 2]))) == pytest.approx(math.log(3), abs=1e-5)
    # one uncertain but constant prediction is aleatoric, not epistemic: 0
    flat = torch.zeros((4, 1, 3, 1, 1))
    assert float(bald(flat)) == pytest.approx(0.0, abs=1e-6)


def reference(logits: torch.Tensor) -> torch.Tensor:
    """H[mean p] - mean H[p] in float64 from all passes at once."""
    probs = torch.softmax(logits.double(), dim=2)
    mean = probs.mean(dim=0)
    h_mean = -(mean * mean.log()).sum(dim=1)
    mean_h = -(probs * probs.log()).sum(dim=2).mean(dim=0)
    return (h_mean - mean_h).float()


@settings(max_examples=40, deadline=None)
@given(
    passes=st.integers(1, 6),
    classes=st.integers(2, 6),
    seed=st.integers(0, 2**31 - 1),
    spread=st.floats(0.1, 8.0),
)
def test_accumulated_equals_all_passes_and_is_bounded(passes: int, classes: int, seed: int, spread: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn((passes, 2, classes, 3, 4), generator=gen) * spread
    scores = bald(logits)
    assert scores.shape == (2, 3, 4)
    assert torch.allclose(scores, reference(logits).clamp(min=0), atol=2e-5)
    assert bool((scores >= 0).all()) and bool((scores <= math.log(classes) + 1e-5).all())
    if passes == 1:
        assert bool((scores == 0).all())


def test_invariant_to_a_logit_shift_per_pixel() -> None:
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn((4, 2, 5, 6, 7), generator=gen) * 3
    shift = torch.randn((4, 2, 1, 6, 7), generator=gen) * 20
    assert torch.allclose(bald(logits), bald(logits + shift), atol=1e-5)


def test_non_finite_logits_give_non_finite_pixels() -> None:
    logits = torch.randn((3, 1, 4, 2, 2))
    logits[1, 0, :, 0, 0] = torch.nan
    logits[0, 0, 2, 1, 1] = -torch.inf  # an impossible class is fine
    scores = bald(logits)
    assert bool(torch.isnan(scores[0, 0, 0]))
    assert bool(torch.isfinite(scores[0, 1, 1]))


def test_accumulator_rejects_mismatched_passes() -> None:
    acc = PassAccumulator()
    with pytest.raises(ValueError, match="no pass"):
        acc.scores()
    acc.add(torch.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="first pass"):
        acc.add(torch.zeros((1, 3, 4, 5)))


def score(strategy: BALD, *, seed: int = 0, batch_size: int = 4, model: TinyModel | None = None) -> torch.Tensor:
    pool = RandomImages(9, sizes=[(10, 12)], num_classes=4, seed=2)
    model = model or TinyModel(ModelConfig(num_classes=4, device="cpu", seed=1, options={"scale": 2.0}))
    ctx = PoolContext(pool=pool, model=model, generator=torch.Generator().manual_seed(seed), batch_size=batch_size)
    return strategy.score(ctx)


def test_single_pass_scores_zero_and_more_passes_disagree() -> None:
    assert bool((score(BALD(passes=1)) == 0).all())
    many = score(BALD(passes=6, p=0.5))
    assert bool((many > 0).all())


def test_round_seed_changes_masks_and_is_reproducible() -> None:
    a, b, c = score(BALD(), seed=1), score(BALD(), seed=1), score(BALD(), seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_options_are_checked_with_one_line_naming_the_option() -> None:
    for kwargs, option in (
        ({"passes": 0}, "passes=0"),
        ({"p": 1.0}, "p=1.0"),
        ({"p": 0.0}, "p=0.0"),
        ({"reduction": "median"}, "reduction=median"),
        ({"q": 0.0}, "q=0.0"),
    ):
        with pytest.raises(SegalError) as err:
            BALD(**kwargs)
        message = str(err.value)
        assert message.startswith(f"--strategy-opt {option}: ") and "\n" not in message


def test_needs_a_model() -> None:
    ctx = PoolContext(pool=RandomImages(2), model=None, generator=torch.Generator())
    with pytest.raises(SegalError, match="needs a trained model"):
        BALD().score(ctx)
