"""The four built-in strategies pass the reusable strategy contract, and the
contract fails strategies that break it."""

from __future__ import annotations

import pytest
import torch

from segal_core import PoolContext, Strategy, UncertaintyStrategy
from segal_core.testing import RandomImages, StrategyContract, TinyModel
from segal_uncertainty import EntropySampling, LeastConfidence, MarginSampling, RandomSampling


class TestRandomContract(StrategyContract):
    strategy_factory = RandomSampling


class TestLeastConfidenceContract(StrategyContract):
    strategy_factory = LeastConfidence


class TestMarginContract(StrategyContract):
    strategy_factory = MarginSampling


class TestEntropyContract(StrategyContract):
    strategy_factory = EntropySampling


class TestEntropyTopQContract(StrategyContract):
    strategy_factory = staticmethod(lambda: EntropySampling(reduction="top_q", q=0.25))
    num_classes = 3
    image_size = (9, 14)


class TestMarginMaxContract(StrategyContract):
    # a plain lambda (not a staticmethod) must work as a factory too
    strategy_factory = lambda: MarginSampling(reduction="max")  # noqa: E731


# -- the contract can fail ---------------------------------------------------------


class _NanScores(Strategy):
    name = "nan_scores"
    uses_model = False

    def score(self, ctx: PoolContext) -> torch.Tensor:
        return torch.full((len(ctx.pool),), torch.nan)


class _SneakyRandom(Strategy):
    """Claims not to use the model, yet runs it."""

    name = "sneaky"
    uses_model = False

    def score(self, ctx: PoolContext) -> torch.Tensor:
        assert ctx.model is not None
        ctx.model.logits(ctx.pool.image(0)[None])
        return torch.rand(len(ctx.pool), generator=ctx.generator)


class _Unseeded(Strategy):
    name = "unseeded"
    uses_model = False

    def score(self, ctx: PoolContext) -> torch.Tensor:
        return torch.rand(len(ctx.pool))  # ignores ctx.generator


class _ShiftSensitive(UncertaintyStrategy):
    name = "shift_sensitive"

    def pixel_scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.max(dim=1).values  # depends on the logits' offset


class _WrongShape(Strategy):
    name = "wrong_shape"
    uses_model = False

    def score(self, ctx: PoolContext) -> torch.Tensor:
        return torch.zeros(len(ctx.pool) + 1)


@pytest.mark.parametrize(
    ("factory", "check"),
    [
        (_NanScores, "test_one_finite_score_per_item"),
        (_SneakyRandom, "test_one_finite_score_per_item"),
        (_Unseeded, "test_same_seed_same_query"),
        (_ShiftSensitive, "test_invariant_to_logit_shift"),
        (_WrongShape, "test_one_finite_score_per_item"),
    ],
)
def test_contract_catches(factory: type[Strategy], check: str) -> None:
    contract = type("Contract", (StrategyContract,), {"strategy_factory": factory})()
    with pytest.raises(AssertionError):
        getattr(contract, check)()


def test_contract_without_factory_says_so() -> None:
    with pytest.raises(TypeError, match="strategy_factory"):
        StrategyContract().make_strategy()


def test_uncertainty_checks_skip_for_plain_strategies() -> None:
    contract = TestRandomContract()
    with pytest.raises(pytest.skip.Exception):
        contract.test_pixel_scores_shape()


def test_testing_module_does_not_import_pytest() -> None:
    import subprocess
    import sys

    code = "import sys, segal_core.testing; print('pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the fake model and data -------------------------------------------------------


def test_random_images_are_reproducible_and_mixed_sizes() -> None:
    data = RandomImages(5, sizes=[(4, 6), (7, 3)], num_classes=3, seed=2)
    assert len(data) == 5 and len(set(data.ids)) == 5
    assert torch.equal(data.image(3), data.image(3))
    assert not torch.equal(data.image(0), data.image(2))
    assert data.image(1).shape == (3, 7, 3) and data.image(1).dtype == torch.uint8
    mask = data.mask(1)
    assert mask.shape == (7, 3) and mask.dtype == torch.int64
    assert int(mask.min()) >= 0 and int(mask.max()) < 3


def test_tiny_model_trains_evaluates_and_round_trips(tmp_path) -> None:
    from segal_core import ModelConfig

    data = RandomImages(6, sizes=[(8, 8)], num_classes=3)
    model = TinyModel(ModelConfig(num_classes=3, device="cpu", options={"epochs": 4, "lr": 0.05}))
    before = model.evaluate(data).miou
    result = model.fit(data, data)
    after = model.evaluate(data).miou
    assert result.steps == 24 and result.best_epoch is not None
    assert after > before
    path = tmp_path / "tiny.safetensors"
    model.save(path)
    other = TinyModel(ModelConfig(num_classes=3, device="cpu", seed=5))
    images = data.image(0)[None]
    assert not torch.equal(other.logits(images), model.logits(images))
    other.load(path)
    assert torch.equal(other.logits(images), model.logits(images))
    assert other.calls == 2


# -- the example from docs/strategies.md passes the contract ------------------------


class _Variance(UncertaintyStrategy):
    name = "prob_variance"

    def pixel_scores(self, logits: torch.Tensor) -> torch.Tensor:
        return -logits.softmax(dim=1).var(dim=1)


class TestDocumentedExampleContract(StrategyContract):
    strategy_factory = _Variance
