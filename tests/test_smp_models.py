"""segal_smp: registration, building, logits, encoders, devices, options,
checkpoints and resets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch

from segal_core import Model, ModelConfig, SegalError, load_plugins
from segal_smp import ARCHITECTURES, MODELS, SmpModel, SmpOptions
from segal_smp.device import resolve_device, resolve_precision

#: Tiny timm test networks: fast to build and run.
TINY_CNN = "tu-test_resnet"
TINY_VIT = "tu-test_vit"



#: ModelConfig-like keywords that are the smp models' own settings.
SMP_KEYS = {f.name for f in dataclasses.fields(SmpOptions)}


def config(**kw: object) -> ModelConfig:
    # one epoch means one epoch here (the run's schedule of --min-steps is not under test)
    options: dict[str, object] = {"encoder": TINY_CNN, "batch_size": 2, "min_steps": 0, "steps_per_image": 0.0}
    base: dict[str, object] = dict(num_classes=3, device="cpu")
    options.update(kw.pop("options", {}))  # type: ignore[call-overload]
    for key, value in kw.items():
        (options if key in SMP_KEYS else base)[key] = value
    return ModelConfig(**base, options=options)  # type: ignore[arg-type]


def tiny_encoder(arch: str) -> str:
    return TINY_VIT if arch == "dpt" else TINY_CNN


def state(model: SmpModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.network.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- registration -----------------------------------------------------------------


def test_every_smp_architecture_is_registered() -> None:
    registry = load_plugins().registry
    assert set(smp.MODEL_ARCHITECTURES_MAPPING) <= set(registry.names("models"))
    for key, smp_cls in smp.MODEL_ARCHITECTURES_MAPPING.items():
        cls = registry.model(key)
        assert issubclass(cls, Model) and cls.name == key and key == key.lower()
        assert registry.model(smp_cls.__name__) is cls  # the original SegAL spelling
        assert smp_cls.__name__ in cls.aliases and cls.description


def test_unknown_architecture_lists_them() -> None:
    with pytest.raises(SegalError, match="--model unet3: unknown; valid names: unet"):
        load_plugins().registry.model("unet3")


# -- building and logits --------------------------------------------------------------


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_builds_and_logits_have_input_shape(arch: str) -> None:
    model = MODELS[arch](config(encoder=tiny_encoder(arch)))
    images = torch.randint(0, 256, (2, 3, 40, 52), dtype=torch.uint8)  # not multiples of 32
    out = model.logits(images)
    assert out.shape == (2, 3, 40, 52)
    assert out.device == model.device == torch.device("cpu")
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    assert 40 % model.stride and model.stride % 16 == 0


def test_uint8_and_unit_float_images_agree() -> None:
    model = MODELS["fpn"](config())
    images = torch.randint(0, 256, (1, 3, 33, 47), dtype=torch.uint8)
    assert torch.allclose(model.logits(images), model.logits(images.float() / 255), atol=1e-5)


def test_logits_of_an_image_do_not_depend_on_its_batch() -> None:
    model = MODELS["unet"](config())
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    assert torch.allclose(model.logits(images)[1:2], model.logits(images[1:2]), atol=1e-5)


def test_smp_native_encoder_builds() -> None:
    model = MODELS["unet"](config(encoder="resnet18"))
    assert model.logits(torch.zeros(1, 3, 36, 36, dtype=torch.uint8)).shape == (1, 3, 36, 36)


def test_bad_images_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        MODELS["unet"](config()).logits(torch.zeros(3, 32, 32))


# -- encoders and weights -------------------------------------------------------------


def test_unknown_encoder_lists_close_names() -> None:
    with pytest.raises(SegalError) as info:
        MODELS["unet"](config(encoder="resnet19"))
    message = str(info.value)
    assert message.startswith("--encoder resnet19: unknown; valid: ")
    first = message.split("valid: ")[1].split(", ")[:3]
    assert "resnet18" in first and "\n" not in message
    assert "tu-<any timm model>" in message


def test_unknown_timm_encoder_lists_close_timm_names() -> None:
    with pytest.raises(SegalError, match=r"--encoder tu-test_resnett: unknown timm model; valid: tu-test_resnet"):
        MODELS["unet"](config(encoder="tu-test_resnett"))


def test_encoder_that_does_not_fit_the_architecture() -> None:
    with pytest.raises(SegalError, match="dpt needs a timm vision transformer encoder"):
        MODELS["dpt"](config(encoder="resnet18"))
    with pytest.raises(SegalError, match="--model unet --encoder tu-test_vit: .* cannot build this pair"):
        MODELS["unet"](config(encoder=TINY_VIT))


def test_unknown_weight_set() -> None:
    with pytest.raises(SegalError, match="--encoder-weights instagram: encoder resnet18 offers: imagenet"):
        MODELS["unet"](config(encoder="resnet18", encoder_weights="instagram"))


@pytest.mark.parametrize("encoder", ["resnet18", TINY_CNN])
def test_offline_weights_are_one_clear_error(
    encoder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # fail at once instead of waiting on network timeouts, and from an empty cache
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(SegalError) as info:
        MODELS["unet"](config(encoder=encoder, encoder_weights="imagenet"))
    message = str(info.value)
    assert "\n" not in message
    assert f"the pretrained weights for encoder {encoder} could not be downloaded (offline?" in message
    assert "--encoder-weights none" in message and "HF_HOME=" in message and "TORCH_HOME=" in message


# -- device and precision --------------------------------------------------------------


def test_cuda_without_cuda_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("cuda", "cuda:1"):
        expected = f"--device {spec}: CUDA is not available on this machine; use --device cpu"
        with pytest.raises(SegalError, match=expected):
            resolve_device(spec)
    with pytest.raises(SegalError, match="--device cuda: CUDA is not available"):
        MODELS["unet"](config(device="cuda"))
    assert resolve_device("auto") == torch.device("cpu")


def test_bad_device_and_precision() -> None:
    with pytest.raises(SegalError, match="--device tpu: expected auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    with pytest.raises(SegalError, match="--precision fp8: expected one of auto, fp32, bf16, fp16"):
        resolve_precision("fp8", torch.device("cpu"))
    with pytest.raises(SegalError, match="--precision fp16: mixed precision runs on CUDA only"):
        resolve_precision("fp16", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) == torch.float32


def test_inference_batch_size_and_workers_on_cpu() -> None:
    model = MODELS["unet"](config(batch_size=3))
    assert model.inference_batch_size() == 6
    assert model.loader_workers() == 0
    assert MODELS["unet"](config(num_workers=2)).loader_workers() == 2


# -- options and configuration ------------------------------------------------------------


def test_model_options_are_checked() -> None:
    assert MODELS["unet"](config(options={"loss": "ce+dice", "eval_every": "2"})).options.eval_every == 2
    with pytest.raises(SegalError, match="--model-opt los=ce: 'smp models' takes no option 'los' .*loss"):
        MODELS["unet"](config(options={"los": "ce"}))
    with pytest.raises(SegalError, match="--model-opt loss=focal: expected one of ce, ce\\+dice"):
        MODELS["unet"](config(options={"loss": "focal"}))
    with pytest.raises(SegalError, match="--model-opt eval_every='x': expected a number"):
        MODELS["unet"](config(options={"eval_every": "x"}))


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [("epochs", 0, "--epochs"), ("batch_size", 0, "--batch-size"), ("crop_size", 0, "--crop-size"),
     ("lr", -1.0, "--lr"), ("num_workers", -1, "--num-workers")],
)
def test_bad_training_config(field: str, value: object, flag: str) -> None:
    with pytest.raises(SegalError, match=f"^{flag} "):
        MODELS["unet"](config(**{field: value}))


# -- checkpoints and resets ------------------------------------------------------------------


def perturb(model: SmpModel) -> None:
    with torch.no_grad():
        for param in model.network.parameters():
            param.add_(torch.randn_like(param))


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    source = MODELS["unet"](config(seed=1))
    perturb(source)
    # batch norm statistics and counters must travel too
    source.network.train()
    source.network(torch.randn(2, 3, 32, 32))
    path = tmp_path / "round" / "weights.safetensors"
    source.save(path)
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    target = MODELS["unet"](config(seed=2))
    assert not same(state(source), state(target))
    target.load(path)
    assert same(state(source), state(target))
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(source.logits(images), target.logits(images))


def test_load_refuses_another_model(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    MODELS["unet"](config()).save(path)
    with pytest.raises(SegalError, match="saved for another model: architecture 'unet' \\(this model: 'fpn'\\)"):
        MODELS["fpn"](config()).load(path)
    with pytest.raises(SegalError, match="num_classes '3' \\(this model: '4'\\)"):
        MODELS["unet"](config(num_classes=4)).load(path)
    with pytest.raises(SegalError, match="no such file"):
        MODELS["unet"](config()).load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(SegalError, match="not a safetensors file"):
        MODELS["unet"](config()).load(tmp_path / "junk.safetensors")


def test_reset_is_deterministic_and_leaves_global_rng_alone() -> None:
    rng = torch.random.get_rng_state()
    model = MODELS["fpn"](config(seed=7))
    assert torch.equal(rng, torch.random.get_rng_state())
    initial = state(model)
    perturb(model)
    assert not same(initial, state(model))
    model.reset()
    assert same(initial, state(model))
    assert same(initial, state(MODELS["fpn"](config(seed=7))))
    assert not same(initial, state(MODELS["fpn"](config(seed=8))))


# -- slow: real-size encoders ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_trains_and_evaluates_with_a_real_encoder(arch: str) -> None:
    from segal_core.testing import RandomImages

    encoder = "tu-vit_tiny_patch16_224" if arch == "dpt" else "resnet18"
    model = MODELS[arch](config(encoder=encoder, crop_size=64, epochs=1))
    data = RandomImages(2, sizes=[(70, 90)], num_classes=3)
    result = model.fit(data, data)
    assert result.steps == 1 and result.best_epoch == 1
    assert model.logits(torch.zeros(1, 3, 70, 90, dtype=torch.uint8)).shape == (1, 3, 70, 90)


def test_channels_last_layout_trains_saves_and_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA layout (channels-last), exercised on the CPU."""
    from segal_core.testing import RandomImages
    from segal_smp.device import Runtime

    images = torch.randint(0, 256, (2, 3, 36, 40), dtype=torch.uint8)
    plain = MODELS["unet"](config())
    expected = plain.logits(images)
    monkeypatch.setattr(Runtime, "memory_format", property(lambda self: torch.channels_last))
    model = MODELS["unet"](config())
    conv = next(p for p in model.network.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(model.logits(images), expected, atol=1e-4)
    model.fit(RandomImages(2, sizes=[(32, 32)], num_classes=3))
    model.save(tmp_path / "w.safetensors")
    plain.load(tmp_path / "w.safetensors")
    assert torch.allclose(model.logits(images), plain.logits(images), atol=1e-4)
