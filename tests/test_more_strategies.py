"""The strategies beyond top-k uncertainty: bald and variance (MC dropout),
class_balanced_entropy, coreset (greedy k-center) and its hybrid; each through the
shared contract, against references, and in a run of the command line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from segal_core import DatasetView, PoolContext, SegalError
from segal_core.cli import run_main
from segal_core.testing import RandomImages, StrategyContract, TinyModel
from segal_uncertainty import BALD, ClassBalancedEntropy, CoreSet, MCVariance
from segal_uncertainty.balanced import ClassPixelTally, class_weights
from segal_uncertainty.coreset import k_center, nearest_distances
from segal_uncertainty.montecarlo import BaldSums, bald, variance

from capable_models import CapableModel, EmbeddingsOnly
from cycle_helpers import TINY_ARGS, history


class _Capable:
    """Contract fixtures on a model with stochastic passes and embeddings."""

    def make_model(self) -> TinyModel:
        return CapableModel(self.num_classes)  # type: ignore[attr-defined]


class TestBALDContract(_Capable, StrategyContract):
    strategy_factory = BALD


class TestBALDTopQContract(_Capable, StrategyContract):
    strategy_factory = staticmethod(lambda: BALD(passes=3, reduction="top_q", q=0.2))


class TestVarianceContract(_Capable, StrategyContract):
    strategy_factory = staticmethod(lambda: MCVariance(passes=4, reduction="max"))


class TestClassBalancedContract(StrategyContract):
    strategy_factory = ClassBalancedEntropy


class TestClassBalancedTopQContract(StrategyContract):
    strategy_factory = staticmethod(lambda: ClassBalancedEntropy(alpha=0.5, reduction="top_q", q=0.3))


class TestCoreSetContract(_Capable, StrategyContract):
    strategy_factory = CoreSet


class TestCoreSetHybridContract(_Capable, StrategyContract):
    strategy_factory = staticmethod(lambda: CoreSet(base="entropy", m=2))


# -- BALD and variance ---------------------------------------------------------------


def passes_tensor(seed: int, passes: int = 5, classes: int = 4, spread: float = 3.0) -> torch.Tensor:
    return torch.randn((passes, 2, classes, 6, 7), generator=torch.Generator().manual_seed(seed)) * spread


def bald_reference(logits: torch.Tensor) -> torch.Tensor:
    p = logits.double().softmax(dim=2)
    mean = p.mean(dim=0)
    return -(mean * mean.log()).sum(1) + (p * p.log()).sum(2).mean(0)


def variance_reference(logits: torch.Tensor) -> torch.Tensor:
    return logits.double().softmax(dim=2).var(dim=0, unbiased=False).mean(dim=1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spread", [0.3, 3.0, 12.0])
def test_bald_and_variance_equal_float64_references(seed: int, spread: float) -> None:
    logits = passes_tensor(seed, spread=spread)
    assert torch.allclose(bald(logits).double(), bald_reference(logits).clamp(min=0), atol=3e-6)
    assert torch.allclose(variance(iter(logits)).double(), variance_reference(logits), atol=1e-6)
    assert bald(logits).dtype == torch.float32


def test_known_bald_values() -> None:
    sure = torch.full((2, 1, 3, 1, 1), -40.0)
    sure[0, 0, 0] = sure[1, 0, 2] = 40.0  # two confident passes on different classes
    assert float(bald(sure)) == pytest.approx(math.log(2), abs=1e-5)
    assert float(variance(sure)) == pytest.approx((0.25 + 0 + 0.25) / 3, abs=1e-6)
    same = torch.zeros((4, 1, 3, 1, 1))  # unsure but constant: aleatoric, not epistemic
    assert float(bald(same)) == 0.0 and float(variance(same)) == 0.0


def test_bald_sums_keep_no_pass() -> None:
    sums = BaldSums()
    with pytest.raises(ValueError, match="no pass"):
        sums.scores()
    sums.add(torch.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="first"):
        sums.add(torch.zeros((1, 3, 4, 5)))


def score(strategy, model, *, pool_size: int = 9, seed: int = 0, batch_size: int = 4, **ctx):
    pool = RandomImages(pool_size, sizes=[(10, 12)], num_classes=model.config.num_classes, seed=2)
    return strategy.score(PoolContext(pool=pool, model=model, generator=torch.Generator().manual_seed(seed),
                                      batch_size=batch_size, **ctx))


@pytest.mark.parametrize("cls", [BALD, MCVariance])
def test_no_dropout_scores_zero_and_dropout_scores_positive(cls: type) -> None:
    assert bool((score(cls(passes=4), CapableModel(p=0.0)) == 0).all())
    assert bool((score(cls(passes=4), CapableModel(p=0.5)) > 0).all())
    assert bool((score(cls(passes=1), CapableModel(p=0.5)) == 0).all())


def test_passes_are_streamed_not_kept() -> None:
    for passes in (2, 16):
        model = CapableModel(p=0.5)
        score(BALD(passes=passes), model)
        assert model.passes_made == passes * 3  # three batches
        assert model.max_alive <= 1, "the strategy kept earlier passes alive"


def test_round_seed_changes_the_masks_reproducibly() -> None:
    a, b, c = (score(BALD(), CapableModel(), seed=s) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_model_without_the_capability_is_one_line() -> None:
    with pytest.raises(SegalError) as err:
        BALD().check_model(TinyModel())
    assert str(err.value) == (
        "--strategy bald needs stochastic_logits: model 'tiny' cannot give stochastic forward passes (MC dropout) "
        "(it does not implement Model.stochastic_logits); use a model plugin that does"
    )
    with pytest.raises(SegalError, match="--strategy coreset needs embeddings: model 'tiny' cannot give image"):
        score(CoreSet(), TinyModel())


@pytest.mark.parametrize(("options", "says"), [
    ({"passes": 0}, "--strategy-opt passes=0: must be a whole number of at least 1"),
    ({"reduction": "median"}, "--strategy-opt reduction=median: not one of mean, max, top_q"),
])
def test_bald_options_are_checked(options: dict[str, object], says: str) -> None:
    with pytest.raises(SegalError, match=says):
        BALD(**options)  # type: ignore[arg-type]


# -- class-balanced entropy ------------------------------------------------------------


def test_class_weights() -> None:
    w = class_weights(torch.tensor([900, 90, 9, 0]))
    assert w.dtype == torch.float32 and bool((w[:-1] < w[1:]).all())
    assert torch.allclose(class_weights(torch.tensor([50, 50, 50])), torch.ones(3))
    assert torch.allclose(class_weights(torch.tensor([900, 90, 9, 0]), alpha=0.0), torch.ones(4))
    assert float(class_weights(torch.tensor([10**9, 0]), max_weight=50.0)[1]) == 50.0


def test_a_rare_predicted_class_raises_the_score() -> None:
    strategy = ClassBalancedEntropy()
    logits = torch.zeros((2, 3, 4, 4))
    logits[0, 0] = 2.0  # image 0 predicts class 0 (common), image 1 class 2 (rare): same entropy
    logits[1, 2] = 2.0
    plain = strategy.image_scores(logits)
    assert torch.allclose(plain[0], plain[1])
    strategy.weights = class_weights(torch.tensor([1000, 100, 10]))
    weighted = strategy.image_scores(logits)
    assert float(weighted[1]) > 10 * float(weighted[0])


def test_the_tally_counts_labels_incrementally() -> None:
    pool = RandomImages(6, sizes=[(5, 5)], num_classes=3, seed=1)
    partial = torch.full((5, 5), 255, dtype=torch.int64)
    partial[0, :3] = 2
    tally = ClassPixelTally()
    view = DatasetView(pool, [0, 1], masks={pool.ids[1]: partial})
    first = tally.counts(view, [25, 3], 3)
    want = torch.bincount(pool.mask(0).reshape(-1), minlength=3) + torch.tensor([0, 0, 3])
    assert torch.equal(first, want) and tally.decoded == 2
    assert torch.equal(tally.counts(view, [25, 3], 3), want) and tally.decoded == 2  # nothing new: nothing read
    grown = partial.clone()
    grown[1, :2] = 0
    view = DatasetView(pool, [0, 1, 4], masks={pool.ids[1]: grown})
    again = tally.counts(view, [25, 5, 25], 3)
    assert tally.decoded == 4  # image 1 gained labels, image 4 is new; image 0 not read again
    assert torch.equal(again, want + torch.tensor([2, 0, 0]) + torch.bincount(pool.mask(4).reshape(-1), minlength=3))


def test_class_balanced_reads_the_labelled_set_from_the_context() -> None:
    model = TinyModel()
    pool = RandomImages(6, sizes=[(8, 8)], num_classes=4, seed=3)
    labelled = DatasetView(pool, [0, 1])
    strategy = ClassBalancedEntropy()
    scores = score(strategy, model, labelled_data=labelled, labelled_pixels=[64, 64])
    assert strategy.weights is not None and strategy.weights.shape == (4,)
    plain = score(ClassBalancedEntropy(), model)
    assert not torch.equal(scores, plain)


# -- coreset -------------------------------------------------------------------------


def brute_force_k_center(points: torch.Tensor, centres: torch.Tensor, k: int) -> list[int]:
    x = points.double()
    chosen: list[int] = []
    for _ in range(k):
        best, far = -1, -1.0
        for i in range(len(x)):
            if i in chosen:
                continue
            near = min([float((x[i] - c).norm()) for c in centres.double()] + [float((x[i] - x[j]).norm()) for j in chosen]
                       or [math.inf])
            if near > far:
                best, far = i, near
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", range(8))
def test_greedy_equals_brute_force_and_the_radius_shrinks(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    points = (torch.randn((30, 5), generator=g) * 4).half()
    centres = (torch.randn((3, 5), generator=g) * 4).half()
    picks, radius, _ = k_center(points, nearest_distances(points, centres), 8)
    assert picks.tolist() == brute_force_k_center(points.float(), centres.float(), 8)
    assert bool((radius[1:] <= radius[:-1]).all())
    # the covering radius of the centres so far: the largest distance to the nearest one
    for step in range(1, 8):
        covering = nearest_distances(points, torch.cat([centres, points[picks[:step]]])).max()
        assert float(radius[step]) == pytest.approx(float(covering), rel=1e-5)


def test_k_center_picks_the_far_apart_points() -> None:
    corners = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    cloud = torch.cat([c + 0.1 * torch.randn((5, 2), generator=torch.Generator().manual_seed(1)) for c in corners])
    picks, _, _ = k_center(cloud.half(), torch.full((20,), torch.inf), 4)
    assert sorted(p // 5 for p in picks.tolist()) == [0, 1, 2, 3]  # one per cluster


class Colours(RandomImages):
    """Images of one flat colour each: their embedding (EmbeddingsOnly) is the colour."""

    def __init__(self, colours: list[tuple[int, int, int]]) -> None:
        super().__init__(len(colours), sizes=[(4, 4)], num_classes=4)
        self.colours = colours

    def image(self, index: int) -> torch.Tensor:
        return torch.tensor(self.colours[index], dtype=torch.uint8).view(3, 1, 1).expand(3, 4, 4).clone()


def test_coreset_starts_from_the_labelled_images_and_spreads() -> None:
    pool = Colours([(0, 0, 0), (5, 5, 5), (250, 250, 250), (128, 128, 128), (245, 245, 245), (10, 10, 10)])
    labelled = Colours([(0, 0, 0)])
    model = EmbeddingsOnly()
    ctx = PoolContext(pool=pool, model=model, generator=torch.Generator(), query_size=2, labelled_data=labelled)
    strategy = CoreSet()
    scores = strategy.score(ctx)
    picked = strategy.select(scores, 2, generator=ctx.generator).tolist()
    assert picked == [2, 3]  # white first (farthest from the labelled black), then mid grey
    assert float(scores[0]) == 0.0  # the labelled black image itself: distance 0


def test_the_hybrid_picks_among_the_most_uncertain_only() -> None:
    model = CapableModel(p=0.0, scale=2.0)
    pool = RandomImages(40, sizes=[(6, 6)], num_classes=4, seed=5)
    entropy = score_entropy(model, pool)
    for selection in ("topk", "power"):
        ctx = PoolContext(pool=pool, model=model, generator=torch.Generator().manual_seed(3), query_size=4)
        strategy = CoreSet(base="entropy", m=2, selection=selection)
        scores = strategy.score(ctx)
        picked = set(strategy.select(scores, 4).tolist())
        candidates = set(torch.nonzero(torch.isfinite(scores)).flatten().tolist())
        assert len(candidates) == 8 and picked <= candidates
        if selection == "topk":
            assert candidates == set(entropy.topk(8).indices.tolist())


def score_entropy(model: TinyModel, pool: RandomImages) -> torch.Tensor:
    from segal_uncertainty import EntropySampling

    return EntropySampling().score(PoolContext(pool=pool, model=model, generator=torch.Generator()))


def test_coreset_options_are_checked() -> None:
    with pytest.raises(SegalError, match="--strategy-opt base=variance: not one of none, entropy"):
        CoreSet(base="variance")
    with pytest.raises(SegalError, match="--strategy-opt m=0.5: must be a number of candidates"):
        CoreSet(m=0.5)
    with pytest.raises(SegalError, match="coreset picks by k-center; .* add --strategy-opt base=entropy"):
        CoreSet(selection="power")
    assert CoreSet(base="margin", selection="softmax", beta=2).selection.kind == "softmax"


# -- whole runs of the command line ----------------------------------------------------

RUNS = {
    "bald": ["--strategy", "bald", "--strategy-opt", "passes=3", "--model-opt", "dropout=0.2"],
    "variance": ["--strategy", "variance", "--strategy-opt", "passes=2", "--model-opt", "dropout=0.3"],
    "class_balanced_entropy": ["--strategy", "class_balanced_entropy", "--strategy-opt", "alpha=0.5"],
    "coreset": ["--strategy", "coreset"],
    "coreset_hybrid": ["--strategy", "coreset", "--strategy-opt", "base=entropy", "--strategy-opt", "m=2",
                       "--strategy-opt", "selection=power"],
    "softmax": ["--strategy", "entropy", "--strategy-opt", "selection=softmax", "--strategy-opt", "beta=5"],
}


@pytest.mark.parametrize("name", list(RUNS))
def test_two_rounds_of_segal_run(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    assert run_main(["run", *TINY_ARGS, *RUNS[name], "--rounds", "2", "--out", str(out)]) == 0
    records = history(out)
    assert [r["round"] for r in records] == [0, 1]
    assert len(set(records[0]["queried"])) == 4
    assert all(s is not None and math.isfinite(s) for s in records[0]["query_scores"])


def without_query_size(args: list[str]) -> list[str]:
    at = args.index("--query-size")
    return args[:at] + args[at + 2 :]


@pytest.mark.parametrize("strategy", [
    ["--strategy", "class_balanced_entropy", "--strategy-opt", "selection=power"],
    ["--strategy", "bald", "--strategy-opt", "passes=2", "--model-opt", "dropout=0.2",
     "--strategy-opt", "selection=softmax", "--strategy-opt", "beta=20"],
])
def test_region_runs(strategy: list[str], tmp_path: Path) -> None:
    out = tmp_path / "regions"
    assert run_main(["run", *without_query_size(TINY_ARGS), *strategy, "--query-unit", "patch", "--unit-opt",
                     "size=8", "--query-pixels", "256", "--rounds", "2", "--out", str(out)]) == 0
    records = history(out)
    assert len(records[0]["queried_regions"]) == 4  # 256 pixels of 8x8 patches
    assert all(math.isfinite(s) for s in records[0]["query_scores"])


@pytest.mark.parametrize(("args", "says"), [
    (["--strategy", "bald"], "error: --strategy bald needs stochastic_logits: model 'unet' has no dropout; "
                             "add --model-opt dropout=0.2"),
    (["--strategy", "coreset", "--query-unit", "patch", "--query-pixels", "64"],
     "error: --strategy coreset picks whole images by k-center over image embeddings, so it cannot query regions"),
])
def test_what_cannot_work_stops_before_training(args: list[str], says: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    base = without_query_size(TINY_ARGS) if "--query-unit" in args else TINY_ARGS
    out = tmp_path / "no"
    assert run_main(["run", *base, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(says) and len(err.splitlines()) == 1
    assert not out.exists()
