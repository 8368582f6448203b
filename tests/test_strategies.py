"""The built-in query strategies and the UncertaintyStrategy reductions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import segal_core
from segal_core import DatasetView, ModelConfig, PoolContext, SegalError, UncertaintyStrategy
from segal_core.options import coerce_options
from segal_core.strategy import reduce_pixels
from segal_core.testing import RandomImages, TinyModel
from segal_uncertainty import EntropySampling, LeastConfidence, MarginSampling, RandomSampling
from segal_uncertainty import functional as F

UNCERTAINTY = [LeastConfidence, MarginSampling, EntropySampling]


# -- float64 references ------------------------------------------------------------


def reference(name: str, logits: torch.Tensor) -> torch.Tensor:
    """The textbook definitions, in float64."""
    x = logits.double()
    p = x.softmax(dim=1)
    if name == "least_confidence":
        # 1 - p_max written as the sum of the other probabilities (exact in float64)
        return p.sum(1) - p.amax(1) if p.shape[1] > 1 else torch.zeros_like(p[:, 0])
    if name == "margin":
        top = p.topk(min(2, p.shape[1]), dim=1).values
        second = top[:, 1] if top.shape[1] > 1 else torch.zeros_like(top[:, 0])
        return (p.sum(1) - top[:, 0]) + second
    logp = x.log_softmax(dim=1)
    return -(p * logp).sum(1)


@pytest.mark.parametrize("cls", UNCERTAINTY)
@pytest.mark.parametrize("classes", [2, 5, 12])
@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_matches_float64_reference(cls: type[UncertaintyStrategy], classes: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(classes)
    logits = torch.randn((3, classes, 17, 23), generator=gen) * scale
    got = cls().pixel_scores(logits)
    assert got.dtype == torch.float32
    want = reference(cls.name, logits)
    rel = ((got.double() - want).abs() / want.abs().clamp(min=1e-30)).max()
    assert rel < 1e-5, f"{cls.name}: relative error {float(rel):.2e}"


def test_confident_pixels_keep_relative_precision() -> None:
    # p_max = 1 - 4e-18: a naive float32 1 - p (or log(sum exp)) rounds to 0
    logits = torch.tensor([0.0, -40.0]).view(1, 2, 1, 1)
    tail = math.exp(-40.0)
    lc = float(F.least_confidence(logits))
    assert lc == pytest.approx(tail / (1 + tail), rel=1e-5)
    assert float(F.margin(logits)) == pytest.approx(2 * tail / (1 + tail), rel=1e-5)
    assert float(F.entropy(logits)) == pytest.approx(math.log1p(tail) + 40 * tail / (1 + tail), rel=1e-5)


def test_zero_probability_classes_are_finite() -> None:
    logits = torch.tensor([1.0, 0.0, -torch.inf]).view(1, 3, 1, 1)
    two = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    for fn in (F.entropy, F.least_confidence, F.margin):
        assert torch.allclose(fn(logits), fn(two))


def test_single_class_scores_zero() -> None:
    logits = torch.randn(2, 1, 3, 3)
    for fn in (F.entropy, F.least_confidence, F.margin):
        assert torch.equal(fn(logits), torch.zeros(2, 3, 3))


# -- rank orders on hand-made distributions ----------------------------------------


def pixels_from(probs: list[list[float]]) -> torch.Tensor:
    """Logits ``[1, C, 1, P]`` whose softmax is each row of ``probs``."""
    p = torch.tensor(probs, dtype=torch.float64)
    return p.log().float().T.reshape(1, p.shape[1], 1, p.shape[0])


FLAT_TO_SHARP = [
    [0.25, 0.25, 0.25, 0.25],
    [0.4, 0.3, 0.2, 0.1],
    [0.7, 0.1, 0.1, 0.1],
    [0.97, 0.01, 0.01, 0.01],
]


@pytest.mark.parametrize("cls", UNCERTAINTY)
def test_flatter_distributions_score_higher(cls: type[UncertaintyStrategy]) -> None:
    scores = cls().pixel_scores(pixels_from(FLAT_TO_SHARP)).flatten()
    assert torch.all(scores[:-1] > scores[1:]), scores


def test_known_values_on_hand_made_distributions() -> None:
    logits = pixels_from([[0.5, 0.5, 1e-30], [0.4, 0.3, 0.3]])
    assert F.least_confidence(logits).flatten().tolist() == pytest.approx([0.5, 0.6], rel=1e-6)
    assert F.margin(logits).flatten().tolist() == pytest.approx([1.0, 0.9], rel=1e-6)
    want = [math.log(2), -(0.4 * math.log(0.4) + 0.6 * math.log(0.3))]
    assert F.entropy(logits).flatten().tolist() == pytest.approx(want, rel=1e-6)


def test_margin_and_entropy_disagree_where_they_should() -> None:
    # a two-way tie is the least certain for margin; the three-way spread for entropy
    logits = pixels_from([[0.5, 0.5, 1e-9], [0.4, 0.3, 0.3]])
    margin = F.margin(logits).flatten()
    entropy = F.entropy(logits).flatten()
    assert margin[0] > margin[1]
    assert entropy[1] > entropy[0]


@pytest.mark.parametrize("cls", UNCERTAINTY)
def test_image_order_follows_pixel_uncertainty(cls: type[UncertaintyStrategy]) -> None:
    images = torch.cat([pixels_from([row] * 6).reshape(1, 4, 2, 3) for row in reversed(FLAT_TO_SHARP)])
    scores = cls().image_scores(images)
    assert cls().select(scores, 4).tolist() == [3, 2, 1, 0]


# -- invariance, bounds (Hypothesis) -----------------------------------------------


@pytest.mark.parametrize("cls", UNCERTAINTY)
@pytest.mark.parametrize("shift", [-25.0, 7.5, 100.0])
def test_invariant_to_adding_a_constant(cls: type[UncertaintyStrategy], shift: float) -> None:
    logits = torch.randn((2, 6, 8, 8), generator=torch.Generator().manual_seed(4)) * 2
    base = cls().pixel_scores(logits.double())
    moved = cls().pixel_scores(logits.double() + shift)
    assert torch.allclose(base, moved, rtol=1e-9, atol=1e-12)
    assert torch.allclose(cls().image_scores(logits), cls().image_scores(logits + shift), rtol=1e-4)


BOUNDS = {
    "least_confidence": lambda c: 1.0 - 1.0 / c,
    "margin": lambda c: 1.0,
    "entropy": lambda c: math.log(c),
}


@settings(max_examples=60, deadline=None)
@given(
    classes=st.integers(1, 7),
    pixels=st.integers(1, 6),
    data=st.data(),
)
def test_scores_stay_within_bounds(classes: int, pixels: int, data: st.DataObject) -> None:
    size = classes * pixels
    values = data.draw(st.lists(st.floats(-60, 60, width=32), min_size=size, max_size=size))
    logits = torch.tensor(values, dtype=torch.float32).view(1, classes, 1, pixels)
    for cls in UNCERTAINTY:
        scores = cls().pixel_scores(logits)
        top = BOUNDS[cls.name](classes)
        assert bool(torch.isfinite(scores).all())
        assert float(scores.min()) >= 0.0, cls.name
        assert float(scores.max()) <= top * (1 + 1e-6) + 1e-7, (cls.name, float(scores.max()), top)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=1, max_size=40),
    q=st.floats(0.01, 1.0),
)
def test_reductions_are_ordered(values: list[float], q: float) -> None:
    pixels = torch.tensor(values, dtype=torch.float32).view(1, 1, -1)
    mean = float(reduce_pixels(pixels, reduction="mean")[0])
    top = float(reduce_pixels(pixels, reduction="top_q", q=q)[0])
    peak = float(reduce_pixels(pixels, reduction="max")[0])
    slack = 1e-4 * (1 + max(abs(v) for v in values))
    assert min(values) - slack <= mean <= top + slack
    assert top <= peak + slack
    assert peak == max(values)


# -- reductions, valid mask, non-finite guard --------------------------------------


def test_reductions_on_known_values() -> None:
    pixels = torch.arange(1.0, 11.0).view(1, 2, 5)  # 1..10
    assert reduce_pixels(pixels, reduction="mean").item() == pytest.approx(5.5)
    assert reduce_pixels(pixels, reduction="max").item() == 10.0
    assert reduce_pixels(pixels, reduction="top_q", q=0.2).item() == pytest.approx(9.5)
    assert reduce_pixels(pixels, reduction="top_q", q=0.25).item() == pytest.approx(9.0)  # ceil(2.5) = 3
    assert reduce_pixels(pixels, reduction="top_q", q=1.0).item() == pytest.approx(5.5)
    assert reduce_pixels(pixels, reduction="top_q", q=0.01).item() == 10.0  # at least one pixel


def test_valid_mask_restricts_every_reduction() -> None:
    pixels = torch.stack([torch.arange(1.0, 11.0), torch.arange(10.0, 0.0, -1)]).view(2, 2, 5)
    valid = torch.zeros(2, 2, 5, dtype=torch.bool)
    valid[:, 0, :4] = True  # image 0 keeps 1..4, image 1 keeps 10..7
    assert reduce_pixels(pixels, valid, "mean").tolist() == pytest.approx([2.5, 8.5])
    assert reduce_pixels(pixels, valid, "max").tolist() == [4.0, 10.0]
    assert reduce_pixels(pixels, valid, "top_q", q=0.5).tolist() == pytest.approx([3.5, 9.5])
    with pytest.raises(ValueError, match="valid mask"):
        reduce_pixels(pixels, valid[:, :1], "mean")


def test_valid_mask_on_strategy_ignores_other_pixels() -> None:
    logits = torch.randn((2, 4, 6, 6), generator=torch.Generator().manual_seed(0))
    valid = torch.zeros(2, 6, 6, dtype=torch.bool)
    valid[:, :3, :3] = True
    for cls in UNCERTAINTY:
        strategy = cls(reduction="mean")
        want = strategy.pixel_scores(logits)[:, :3, :3].mean(dim=(1, 2))
        assert torch.allclose(strategy.image_scores(logits, valid), want, rtol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "max", "top_q"])
def test_non_finite_pixels_are_ignored(reduction: str) -> None:
    nan, inf = torch.nan, torch.inf
    pixels = torch.tensor([[[1.0, nan, 3.0, inf]], [[nan, nan, -inf, nan]]])
    out = reduce_pixels(pixels, reduction=reduction, q=0.5)
    assert torch.isfinite(out[0])
    assert float(out[0]) == {"mean": 2.0, "max": 3.0, "top_q": 3.0}[reduction]
    assert torch.isneginf(out[1])


def test_non_finite_logits_do_not_poison_the_image() -> None:
    logits = torch.randn(1, 3, 4, 4)
    clean = EntropySampling().image_scores(logits[..., :, 1:])
    logits[0, :, :, 0] = torch.nan
    assert torch.allclose(EntropySampling().image_scores(logits), clean)


# -- selection ---------------------------------------------------------------------


def test_select_breaks_ties_by_position_and_ranks_nan_last() -> None:
    scores = torch.tensor([0.5, torch.nan, 0.9, 0.5, 0.9, -torch.inf, 0.1])
    picked = LeastConfidence().select(scores, 7).tolist()
    assert picked[:5] == [2, 4, 0, 3, 6]
    assert set(picked[5:]) == {1, 5}


def test_same_seed_and_data_give_the_same_query() -> None:
    base = RandomImages(4, sizes=[(8, 9)], num_classes=3, seed=1)
    pool = DatasetView(base, [0, 1, 0, 2, 1, 3])  # duplicates tie exactly
    model = TinyModel(ModelConfig(num_classes=3, device="cpu"))

    def query(cls: type, seed: int) -> list[int]:
        ctx = PoolContext(pool, model, torch.Generator().manual_seed(seed), batch_size=4)
        strategy = cls()
        return strategy.select(strategy.score(ctx), 4).tolist()

    for cls in [RandomSampling, *UNCERTAINTY]:
        assert query(cls, 11) == query(cls, 11)
    assert query(RandomSampling, 11) != query(RandomSampling, 12)
    scores = EntropySampling().score(PoolContext(pool, model, torch.Generator(), batch_size=4))
    assert scores[0] == scores[2] and scores[1] == scores[4]
    picked = EntropySampling().select(scores, 6).tolist()
    assert picked.index(0) < picked.index(2) and picked.index(1) < picked.index(4)


# -- random ------------------------------------------------------------------------


def test_random_never_calls_the_model() -> None:
    pool = RandomImages(9)
    model = TinyModel()
    scores = RandomSampling().score(PoolContext(pool, model, torch.Generator().manual_seed(0)))
    assert model.calls == 0 and scores.shape == (9,)
    assert RandomSampling.uses_model is False
    # and it needs no model at all
    RandomSampling().score(PoolContext(pool, None, torch.Generator().manual_seed(0)))


def test_random_query_is_a_uniform_subset() -> None:
    pool = RandomImages(5)
    counts = torch.zeros(5)
    trials = 2000
    for seed in range(trials):
        strategy = RandomSampling()
        scores = strategy.score(PoolContext(pool, None, torch.Generator().manual_seed(seed)))
        counts[strategy.select(scores, 2)] += 1
    freq = counts / trials
    # each position is picked with probability 2/5; 5 sigma is about 0.055
    assert torch.all((freq - 0.4).abs() < 0.055), freq


# -- options and registration ------------------------------------------------------


def test_options_come_from_strings() -> None:
    opts = coerce_options(EntropySampling, {"reduction": "top_q", "q": "0.05"}, "--strategy-opt")
    strategy = EntropySampling(**opts)
    assert strategy.reduction == "top_q" and strategy.q == 0.05
    with pytest.raises(SegalError, match="takes no option"):
        coerce_options(RandomSampling, {"q": "0.1"}, "--strategy-opt")


@pytest.mark.parametrize("kwargs", [{"reduction": "median"}, {"q": 0.0}, {"q": 1.5}])
def test_bad_options_are_one_line_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(SegalError) as err:
        MarginSampling(**kwargs)  # type: ignore[arg-type]
    assert "--strategy-opt" in str(err.value) and "\n" not in str(err.value)


def test_uncertainty_needs_a_model() -> None:
    ctx = PoolContext(RandomImages(2), None, torch.Generator())
    with pytest.raises(SegalError, match="needs a trained model"):
        EntropySampling().score(ctx)


def test_registered_under_names_and_original_aliases() -> None:
    reg = segal_core.registry()
    assert {"random", "least_confidence", "margin", "entropy"} <= set(reg.names("strategies"))
    for alias, cls in [
        ("RandomSampling", RandomSampling),
        ("LeastConfidence", LeastConfidence),
        ("MarginSampling", MarginSampling),
        ("EntropySampling", EntropySampling),
        ("least-confidence", LeastConfidence),
    ]:
        assert reg.strategy(alias) is cls


def test_shardable_is_not_inherited_past_an_override() -> None:
    """Under torchrun a strategy is sharded only when the class whose scoring runs
    said so: an override of score/score_regions/select resets a base's promise."""
    from segal_core import UncertaintyStrategy

    class PerPixel(UncertaintyStrategy):
        name = "per_pixel"

        def pixel_scores(self, logits: torch.Tensor) -> torch.Tensor:
            return logits.softmax(1).amax(1)

    class PoolLevel(PerPixel):
        name = "pool_level"

        def score(self, ctx: PoolContext) -> torch.Tensor:  # may look at the whole pool
            return super().score(ctx)

    class PoolLevelButSaysSo(PoolLevel):
        name = "says_so"
        shardable = True

    assert PerPixel.shardable and not PoolLevel.shardable and PoolLevelButSaysSo.shardable
