"""The smp models' optional capabilities: embeddings (for coreset) and MC-dropout
passes (``--model-opt dropout``, for bald and variance)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segal_core import ModelConfig, SegalError
from segal_core.model import EMBEDDINGS, STOCHASTIC_LOGITS
from segal_core.testing import RandomImages
from segal_smp import MODELS

TINY_CNN = "tu-test_resnet"


def unet(seed: int = 0, **options: object) -> object:
    return MODELS["unet"](ModelConfig(num_classes=3, device="cpu", seed=seed,
                                      options={"encoder": TINY_CNN, "batch_size": 2, **options}))


IMAGES = torch.randint(0, 256, (3, 3, 40, 36), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_dropout_option_is_checked() -> None:
    with pytest.raises(SegalError, match=r"--model-opt dropout=1.0: must be a probability in \[0, 1\)"):
        unet(dropout=1.0)
    assert unet().dropout is None and unet(dropout=0.25).dropout is not None


def test_capabilities() -> None:
    plain, dropped = unet(), unet(dropout=0.2)
    assert plain.capability_problem(EMBEDDINGS) is None and dropped.capability_problem(STOCHASTIC_LOGITS) is None
    assert plain.capability_problem(STOCHASTIC_LOGITS) == (
        "model 'unet' has no dropout; add --model-opt dropout=0.2 (dropout before the segmentation head, "
        "in training and in the stochastic passes)"
    )
    with pytest.raises(SegalError, match="has no dropout"):
        next(plain.stochastic_logits(IMAGES, 2, [1, 2, 3]))


def test_dropout_changes_no_logits_nor_checkpoint(tmp_path: Path) -> None:
    plain, dropped = unet(), unet(dropout=0.5)
    assert torch.equal(plain.logits(IMAGES), dropped.logits(IMAGES))  # inference: no dropout
    dropped.save(tmp_path / "w.safetensors")
    plain.load(tmp_path / "w.safetensors")  # the same keys: no module was inserted


def test_embeddings_are_the_pooled_encoder_output() -> None:
    model = unet()
    embeddings = model.embeddings(IMAGES)
    assert embeddings.shape == (3, model.network.encoder.out_channels[-1])
    logits, again = model.logits_and_embeddings(IMAGES)
    assert torch.allclose(again, embeddings, atol=1e-5)
    assert torch.allclose(logits, model.logits(IMAGES), atol=1e-5)
    alone = model.embeddings(IMAGES[1:2])
    assert torch.allclose(alone[0], embeddings[1], atol=1e-4)


def test_stochastic_passes_are_seeded_per_row() -> None:
    model = unet(dropout=0.3)
    clean = model.logits(IMAGES)
    passes = list(model.stochastic_logits(IMAGES, 3, [11, 12, 13]))
    assert len(passes) == 3 and all(p.shape == clean.shape for p in passes)
    assert not torch.equal(passes[0], clean) and not torch.equal(passes[0], passes[1])
    again = list(model.stochastic_logits(IMAGES, 3, [11, 12, 99]))
    assert all(torch.equal(a[:2], b[:2]) for a, b in zip(passes, again))
    assert not torch.equal(passes[0][2], again[0][2])
    alone = list(model.stochastic_logits(IMAGES[2:], 3, [13]))  # row 2 in a batch of one
    assert all(torch.allclose(a[0], b[2], atol=1e-5) for a, b in zip(alone, passes))
    assert torch.equal(model.logits(IMAGES), clean), "the passes left dropout on"


def test_training_with_dropout_is_reproducible_and_differs() -> None:
    data = RandomImages(4, sizes=[(32, 32)], num_classes=3, seed=1)
    weights = []
    for options in ({"dropout": 0.3}, {"dropout": 0.3}, {}):
        model = unet(seed=5, epochs=1, min_steps=0, **options)
        model.fit(data)
        weights.append(model.network.state_dict())
    same = all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    differs = any(not torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    assert same and differs
