"""Selection as an option of every strategy: top-k, and seeded stochastic batches
(power, softmax) by the Gumbel-top-k trick, for whole images and for regions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segal_core import PoolContext, SegalError, Strategy, UncertaintyStrategy, load_plugins
from segal_core.options import accepted_options, coerce_options
from segal_core.regions import RunningSelection
from segal_core.selection import Selection, gumbel_noise, ranking, round_seed, selection_keys, uniform_hash
from segal_core.strategy import select_positions
from segal_uncertainty import EntropySampling, RandomSampling

POWER, SOFTMAX = Selection("power", 1.0), Selection("softmax", 1.0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def chi_square(counts: torch.Tensor, expected: torch.Tensor) -> float:
    return float(((counts - expected) ** 2 / expected).sum())


#: The 99.9% quantile of chi-square with 9 degrees of freedom (10 categories).
CHI2_9_999 = 27.88


# -- top-k is unchanged -------------------------------------------------------------


def test_topk_is_the_default_and_unchanged() -> None:
    scores = torch.tensor([0.5, float("nan"), 2.0, 0.5, -float("inf"), float("inf"), 1.0])
    plain = torch.sort(torch.where(scores.isnan(), -torch.inf, scores), descending=True, stable=True).indices
    for strategy in (EntropySampling(), RandomSampling(), EntropySampling(selection="topk")):
        assert strategy.selection == Selection("topk", 1.0)
        for k in range(len(scores) + 1):
            assert torch.equal(strategy.select(scores, k), plain[:k])
            assert torch.equal(strategy.select(scores, k, generator=gen(1)), plain[:k])  # the generator is unused


# -- the stochastic rules -----------------------------------------------------------


@pytest.mark.parametrize("rule", [POWER, SOFTMAX, Selection("power", 3.0), Selection("softmax", 0.0)])
def test_stochastic_is_deterministic_per_seed_and_never_repeats(rule: Selection) -> None:
    scores = torch.rand(50, generator=gen(0)) + 0.01
    a = select_positions(scores, 20, rule, gen(7))
    b = select_positions(scores, 20, rule, gen(7))
    c = select_positions(scores, 20, rule, gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert len(set(a.tolist())) == 20 and a.dtype == torch.int64
    assert torch.equal(select_positions(scores, 50, rule, gen(3)).sort().values, torch.arange(50))


def first_picks(scores: torch.Tensor, rule: Selection, trials: int = 5000) -> torch.Tensor:
    counts = torch.zeros(scores.numel())
    for seed in range(trials):
        counts[select_positions(scores, 1, rule, gen(seed))] += 1
    return counts


def test_power_with_beta_zero_is_uniform() -> None:
    scores = torch.tensor([0.01, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 100.0])
    counts = first_picks(scores, Selection("power", 0.0))
    assert chi_square(counts, torch.full((10,), 500.0)) < CHI2_9_999


@pytest.mark.parametrize(
    ("rule", "weights"),
    [
        (Selection("power", 1.0), lambda s: s),
        (Selection("power", 2.0), lambda s: s**2),
        (Selection("softmax", 3.0), lambda s: torch.exp(3.0 * s)),
    ],
)
def test_first_pick_is_proportional_to_the_weight(rule: Selection, weights) -> None:
    scores = torch.linspace(0.1, 1.0, 10)
    counts = first_picks(scores, rule)
    expected = weights(scores) / weights(scores).sum() * counts.sum()
    assert chi_square(counts, expected) < CHI2_9_999


def test_without_replacement_matches_sequential_sampling() -> None:
    """P(item i among k = 3 picks) under power sampling equals the sequential
    draw-one-then-renormalise probability, computed exactly."""
    import itertools

    scores = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    w = scores.tolist()
    exact = [0.0] * 5
    for order in itertools.permutations(range(5), 3):
        left, p = sum(w), 1.0
        for i in order:
            p *= w[i] / left
            left -= w[i]
        for i in order:
            exact[i] += p
    counts = torch.zeros(5)
    trials = 6000
    for seed in range(trials):
        counts[select_positions(scores, 3, POWER, gen(seed))] += 1
    freq = counts / trials
    assert torch.allclose(freq, torch.tensor(exact), atol=0.025), (freq, exact)
    assert freq.argsort().tolist() == [0, 1, 2, 3, 4]  # higher scores are picked more often


def test_large_beta_approaches_topk() -> None:
    scores = torch.rand(40, generator=gen(2)) + 0.5
    top = select_positions(scores, 8)
    for seed in range(20):
        assert torch.equal(select_positions(scores, 8, Selection("power", 2000.0), gen(seed)).sort().values,
                           top.sort().values)
        assert torch.equal(select_positions(scores, 8, Selection("softmax", 5000.0), gen(seed)).sort().values,
                           top.sort().values)


def test_power_weights_zero_and_negative_scores_last_nan_after_them() -> None:
    scores = torch.tensor([0.0, -1.0, 0.3, float("nan"), 0.2, -float("inf"), 0.0])
    for seed in range(30):
        order = select_positions(scores, 7, POWER, gen(seed)).tolist()
        assert set(order[:2]) == {2, 4}
        assert set(order[2:5]) == {0, 1, 6}
        assert order[5:] == [3, 5]  # NaN and -inf last, by position
    tails = {tuple(select_positions(scores, 7, POWER, gen(seed)).tolist()[2:5]) for seed in range(30)}
    assert len(tails) > 1, "zero-weight candidates must come in random order"


def test_stochastic_selection_needs_the_generator() -> None:
    with pytest.raises(ValueError, match="generator"):
        EntropySampling(selection="power").select(torch.rand(5), 2)


def test_noise_is_a_function_of_seed_item_and_region() -> None:
    items, regions = torch.arange(1000), torch.arange(1000) % 7
    whole = gumbel_noise(5, items, regions)
    parts = torch.cat([gumbel_noise(5, items[i : i + 13], regions[i : i + 13]) for i in range(0, 1000, 13)])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole, gumbel_noise(6, items, regions))
    u = uniform_hash(9, torch.arange(200_000))
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    g = gumbel_noise(11, torch.arange(200_000))
    assert abs(float(g.mean()) - 0.5772) < 0.02  # Euler-Mascheroni: the Gumbel mean


def test_round_seed_comes_from_the_generator() -> None:
    assert round_seed(gen(1)) == round_seed(gen(1)) != round_seed(gen(2))
    assert 0 <= round_seed(gen(3)) < 2**32 and round_seed(None) == 0


# -- regions: streaming equals one sort; images and regions agree ---------------------


def one_sort(scores: list[float], pixels: list[int], budget: int, rule: Selection, seed: int) -> list[int]:
    """The non-streaming selection: every candidate's key at once, one ranking."""
    s = torch.tensor(scores)
    keep = torch.isfinite(s) | (s == torch.inf)
    items = torch.arange(len(scores))[keep]
    tier, key = selection_keys(s[keep], items, torch.zeros_like(items), rule, seed)
    chosen, total = [], 0
    for i in ranking(tier, key).tolist():
        if total >= budget:
            break
        chosen.append(int(items[i]))
        total += pixels[int(items[i])]
    return chosen


@settings(max_examples=120, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 2.0, -1.0]), st.integers(1, 50)),
             min_size=1, max_size=60),
    st.integers(1, 400),
    st.lists(st.integers(1, 9), min_size=1, max_size=10),
    st.sampled_from([POWER, SOFTMAX, Selection("power", 0.0), Selection("softmax", 4.0), Selection()]),
    st.integers(0, 2**32 - 1),
)
def test_streaming_gumbel_selection_equals_one_sort(
    candidates: list[tuple[float, int]], budget: int, batch_sizes: list[int], rule: Selection, seed: int
) -> None:
    scores = [s for s, _ in candidates]
    pixels = [p for _, p in candidates]
    selection = RunningSelection(budget, selection=rule, seed=seed)
    start, step = 0, 0
    while start < len(candidates):
        end = min(len(candidates), start + batch_sizes[step % len(batch_sizes)])
        selection.offer(torch.tensor(scores[start:end]), torch.arange(start, end),
                        torch.zeros(end - start, dtype=torch.int64), torch.tensor(pixels[start:end]))
        start, step = end, step + 1
    picks = selection.picks()
    assert [p.index for p in picks] == one_sort(scores, pixels, budget, rule, seed)
    assert [p.score for p in picks] == pytest.approx([scores[p.index] for p in picks])  # the raw score


@pytest.mark.parametrize("rule", [POWER, SOFTMAX, Selection()])
def test_image_and_region_paths_pick_the_same(rule: Selection) -> None:
    """One region of one pixel per image, a budget of k pixels: the region selection
    makes the image selection's query (the same seed from the same generator)."""
    scores = torch.rand(64, generator=gen(4)) * 3
    for seed in range(10):
        images = select_positions(scores, 9, rule, gen(seed))
        regions = RunningSelection(9, selection=rule, seed=round_seed(gen(seed)) if rule.stochastic else 0)
        for start in range(0, 64, 10):
            part = slice(start, start + 10)
            n = scores[part].numel()
            regions.offer(scores[part], torch.arange(start, start + n), torch.zeros(n, dtype=torch.int64),
                          torch.ones(n, dtype=torch.int64))
        assert [p.index for p in regions.picks()] == images.tolist()


# -- the options: every strategy takes them -----------------------------------------


class _OwnInit(UncertaintyStrategy):
    """A third-party strategy with its own options, calling the base class."""

    name = "own_init"

    def __init__(self, temperature: float = 1.0, reduction: str = "mean", q: float = 0.1) -> None:
        super().__init__(reduction=reduction, q=q)
        self.temperature = temperature

    def pixel_scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(1).amax(1).neg()


class _Child(_OwnInit):
    name = "child"

    def __init__(self, extra: int = 0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.extra = extra


class _NoSuper(Strategy):
    name = "no_super"
    uses_model = False

    def __init__(self, size: int = 3) -> None:  # never calls Strategy.__init__
        self.size = size

    def score(self, ctx: PoolContext) -> torch.Tensor:
        return torch.rand(len(ctx.pool), generator=ctx.generator)


@pytest.mark.parametrize("cls", [EntropySampling, RandomSampling, _OwnInit, _Child, _NoSuper])
def test_every_strategy_accepts_selection_and_beta(cls: type[Strategy]) -> None:
    accepted = accepted_options(cls)
    assert accepted["selection"] is str and accepted["beta"] == float | None
    options = coerce_options(cls, {"selection": "softmax", "beta": "2.5"}, "--strategy-opt")
    assert options == {"selection": "softmax", "beta": 2.5}
    strategy = cls(**options)
    assert strategy.selection == Selection("softmax", 2.5)
    assert cls().selection == Selection("topk", 1.0)
    assert cls(selection="power").selection == Selection("power", 1.0)


def test_own_options_still_work_and_the_outer_call_wins() -> None:
    child = _Child(extra=2, temperature=3.0, reduction="max", selection="power", beta=0.5)
    assert (child.extra, child.temperature, child.reduction) == (2, 3.0, "max")
    assert child.selection == Selection("power", 0.5)  # the base class's own call did not reset it
    assert _NoSuper(size=5, selection="power").size == 5
    assert "temperature" in accepted_options(_Child) or "extra" in accepted_options(_Child)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"selection": "gumbel"}, "--strategy-opt selection=gumbel: not one of topk, power, softmax"),
        ({"beta": 2.0}, "--strategy-opt beta=2.0: only used by selection=power or selection=softmax"),
        ({"selection": "power", "beta": -1.0}, "--strategy-opt beta=-1.0: must be a finite number >= 0"),
    ],
)
def test_bad_selection_options_are_one_line(options: dict[str, object], says: str) -> None:
    with pytest.raises(SegalError) as err:
        EntropySampling(**options)  # type: ignore[arg-type]
    assert str(err.value).startswith(says) and "\n" not in str(err.value)


def test_registered_strategies_all_take_selection() -> None:
    registry = load_plugins().registry
    for name in ("random", "entropy", "margin", "least_confidence", "bald", "variance",
                 "class_balanced_entropy", "coreset"):
        assert {"selection", "beta"} <= set(accepted_options(registry.strategy(name))), name


# -- a run: seeded per round, resumed runs draw the same -----------------------------


def test_power_run_resumed_makes_the_same_picks(tmp_path: Path) -> None:
    from cycle_helpers import tiny_config

    from segal_core import hookimpl, resume_run, run_cycle

    options = {"selection": "power", "beta": "2"}
    straight = run_cycle(tiny_config(tmp_path / "straight", strategy="entropy", rounds=3, strategy_options=options))

    class Stop:
        @hookimpl
        def segal_round_start(self, round: int) -> None:
            if round == 2:
                raise KeyboardInterrupt

    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        run_cycle(tiny_config(out, strategy="entropy", rounds=3, strategy_options=options),
                  plugins=load_plugins(extra=[("stop", Stop())]))
    resumed = resume_run(out)
    assert [r["queried"] for r in resumed] == [r["queried"] for r in straight]
    topk = run_cycle(tiny_config(tmp_path / "topk", strategy="entropy", rounds=2))
    assert straight[0]["queried"] != topk[0]["queried"] or straight[1]["queried"] != topk[1]["queried"]
    assert math.isfinite(straight[0]["query_scores"][0])
