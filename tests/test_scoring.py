"""The streaming pool scorer."""

from __future__ import annotations

import weakref

import pytest
import torch

from segal_core import ModelConfig, PoolContext, SegalError
from segal_core.errors import ContractError
from segal_core.scoring import pad_collate, pool_loader, score_pool
from segal_core.testing import RandomImages, TinyModel
from segal_uncertainty import EntropySampling, LeastConfidence, MarginSampling


class ImagesOnly(RandomImages):
    """A pool whose masks must never be read while scoring."""

    def mask(self, index: int) -> torch.Tensor:
        raise AssertionError("the scorer read a mask")


def tiny(classes: int = 4, **options: object) -> TinyModel:
    return TinyModel(ModelConfig(num_classes=classes, device="cpu", seed=2, options=options))


def test_scores_are_float32_on_the_model_device_in_pool_order() -> None:
    pool = ImagesOnly(7, sizes=[(10, 12)])
    model = tiny()
    strategy = EntropySampling()
    scores = score_pool(model, pool, strategy.image_scores, batch_size=3, num_workers=0)
    assert scores.dtype == torch.float32 and scores.device == model.device
    assert scores.shape == (7,)
    whole = torch.stack([pool.image(i) for i in range(7)])
    assert torch.allclose(scores, strategy.image_scores(model.logits(whole)), rtol=1e-6)


@pytest.mark.parametrize("cls", [LeastConfidence, MarginSampling, EntropySampling])
@pytest.mark.parametrize("reduction", ["mean", "max", "top_q"])
def test_streamed_and_one_batch_agree(cls: type, reduction: str) -> None:
    pool = ImagesOnly(9, sizes=[(8, 8)], seed=3)
    model = tiny(kernel_size=3)
    strategy = cls(reduction=reduction, q=0.2)
    runs = [
        score_pool(model, pool, strategy.image_scores, batch_size=b, num_workers=0) for b in (1, 4, 9)
    ]
    for other in runs[1:]:
        assert torch.allclose(runs[0], other, rtol=1e-5, atol=1e-7)
        assert torch.equal(strategy.select(runs[0], 9), strategy.select(other, 9))


def test_progress_reports_counts() -> None:
    seen: list[tuple[str, int, int]] = []
    pool = ImagesOnly(7)
    score_pool(tiny(), pool, EntropySampling().image_scores, batch_size=3, num_workers=0,
               progress=lambda *a: seen.append(a))
    assert seen == [("score", 3, 7), ("score", 6, 7), ("score", 7, 7)]
    assert all(isinstance(v, int) for _, done, total in seen for v in (done, total))


def test_runs_in_inference_mode_and_keeps_no_logits() -> None:
    refs: list[weakref.ref[torch.Tensor]] = []
    modes: list[bool] = []

    def image_scores(logits: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        modes.append(torch.is_inference_mode_enabled())
        refs.append(weakref.ref(logits))
        return logits.mean(dim=(1, 2, 3))

    scores = score_pool(tiny(), ImagesOnly(10), image_scores, batch_size=2, num_workers=0)
    assert modes == [True] * 5
    assert all(ref() is None for ref in refs), "the scorer kept logits alive"
    assert scores.shape == (10,)


def test_mixed_sizes_are_padded_and_masked() -> None:
    sizes = [(6, 9), (10, 5), (7, 7)]
    pool = ImagesOnly(6, sizes=sizes, seed=4)
    model = tiny()  # per-pixel, so padding cannot change an image's own logits
    for cls in (LeastConfidence, MarginSampling, EntropySampling):
        strategy = cls(reduction="top_q", q=0.3)
        mixed = score_pool(model, pool, strategy.image_scores, batch_size=3, num_workers=0)
        alone = score_pool(model, pool, strategy.image_scores, batch_size=1, num_workers=0)
        assert torch.allclose(mixed, alone, rtol=1e-5), cls.name


def test_pad_collate_builds_valid_only_when_sizes_differ() -> None:
    same = [torch.ones(3, 4, 5, dtype=torch.uint8)] * 2
    batch, valid = pad_collate(same)
    assert batch.shape == (2, 3, 4, 5) and batch.dtype == torch.uint8 and valid is None
    mixed = [torch.full((3, 4, 5), 7, dtype=torch.uint8), torch.full((3, 6, 2), 9, dtype=torch.uint8)]
    batch, valid = pad_collate(mixed)
    assert batch.shape == (2, 3, 6, 5) and batch.dtype == torch.uint8
    assert valid is not None and valid.dtype == torch.bool
    assert int(valid[0].sum()) == 20 and int(valid[1].sum()) == 12
    assert bool(valid[0, :4, :5].all()) and not bool(valid[0, 4:].any())
    assert int(batch[0, :, 4:].sum()) == 0 and int(batch[1, :, :, 2:].sum()) == 0
    assert bool((batch[1, :, :, :2] == 9).all())


def test_pad_collate_mixed_dtypes_become_float() -> None:
    batch, _ = pad_collate([torch.full((3, 2, 2), 255, dtype=torch.uint8), torch.zeros(3, 2, 2)])
    assert batch.dtype == torch.float32 and float(batch[0].max()) == 1.0


def test_worker_processes_give_the_same_scores() -> None:
    pool = ImagesOnly(6, sizes=[(8, 8), (9, 7)])
    model = tiny()
    fn = MarginSampling().image_scores
    inline = score_pool(model, pool, fn, batch_size=2, num_workers=0)
    workers = score_pool(model, pool, fn, batch_size=2, num_workers=1)
    assert torch.allclose(inline, workers)


def test_pool_loader_options() -> None:
    loader = pool_loader(RandomImages(3), batch_size=2, num_workers=0, pin_memory=False)
    assert loader.persistent_workers is False and loader.pin_memory is False
    assert [b[0].shape[0] for b in loader] == [2, 1]
    with pytest.raises(SegalError, match="batch size"):
        pool_loader(RandomImages(3), batch_size=0, num_workers=0, pin_memory=False)


def test_empty_pool() -> None:
    model = tiny()
    scores = score_pool(model, RandomImages(0), EntropySampling().image_scores, batch_size=4, num_workers=0)
    assert scores.shape == (0,) and model.calls == 0


def test_bad_image_shape_names_the_sample() -> None:
    class Flat(RandomImages):
        def image(self, index: int) -> torch.Tensor:
            return torch.zeros(8, 8, dtype=torch.uint8)

    with pytest.raises(SegalError, match="train-00000"):
        score_pool(tiny(), Flat(2), EntropySampling().image_scores, batch_size=2, num_workers=0)


def test_bad_logits_shape_is_reported() -> None:
    class Shrinks(TinyModel):
        def logits(self, images: torch.Tensor) -> torch.Tensor:
            return super().logits(images)[..., :-1, :]

    model = Shrinks(ModelConfig(num_classes=3, device="cpu"))
    with pytest.raises(ContractError, match="Shrinks.logits returned shape") as err:
        score_pool(model, RandomImages(2), EntropySampling().image_scores, batch_size=2, num_workers=0)
    assert err.value.exit_code == 3  # the plugin is at fault, not the user's options


def test_strategy_score_uses_the_context() -> None:
    pool = ImagesOnly(5)
    model = tiny()
    seen: list[int] = []
    ctx = PoolContext(pool, model, torch.Generator(), batch_size=2, progress=lambda p, d, t: seen.append(d))
    scores = LeastConfidence().score(ctx)
    assert seen == [2, 4, 5] and model.calls == 3 and scores.shape == (5,)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_scoring_never_syncs_inside_the_loop() -> None:
    pool = ImagesOnly(12, sizes=[(32, 32), (24, 40)])
    model = TinyModel(ModelConfig(num_classes=5, device="cuda"))
    cpu = TinyModel(ModelConfig(num_classes=5, device="cpu"))
    strategy = EntropySampling(reduction="top_q", q=0.1)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        scores = score_pool(model, pool, strategy.image_scores, batch_size=4, num_workers=0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert scores.device.type == "cuda" and scores.dtype == torch.float32
    reference = score_pool(cpu, pool, strategy.image_scores, batch_size=4, num_workers=0)
    assert torch.allclose(scores.cpu(), reference, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_benchmark_script_prints_one_json_line_per_pool_size() -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "score_pool.py"
    cmd = [sys.executable, str(script), "--model", "tiny", "--pool-sizes", "4,8",
           "--image-size", "16x20", "--repeats", "1", "--batch-size", "3"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
    header, *lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert header["batch_size"] == 3 and header["torch"] == torch.__version__
    assert [line["pool_size"] for line in lines] == [4, 8]
    for line in lines:
        assert set(line["img_per_s"]) == {"random", "least_confidence", "margin", "entropy"}
        assert line["forward_only_img_per_s"] > 0 and line["peak_rss_mb"] > 0


def test_mixed_sizes_match_alone_with_a_spatial_network() -> None:
    """A U-Net sees across pixels: each size runs on its own, never padded by its
    batch neighbours, so the scores equal scoring one image at a time."""
    import segal_core

    model = segal_core.registry().model("unet")(
        ModelConfig(num_classes=3, device="cpu", seed=1, options={"encoder": "tu-test_resnet"})
    )
    pool = ImagesOnly(5, sizes=[(32, 40), (24, 32), (32, 40)], seed=5)
    strategy = EntropySampling()
    mixed = score_pool(model, pool, strategy.image_scores, batch_size=5, num_workers=0)
    alone = score_pool(model, pool, strategy.image_scores, batch_size=1, num_workers=0)
    assert torch.allclose(mixed, alone, rtol=1e-4, atol=1e-6)
