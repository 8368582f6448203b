"""The dropout pre-hook: where it goes, that it is removed, seeded masks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segal_core import ModelConfig, SegalError
from segal_core.testing import TinyModel

from segal_mcdropout.dropout import find_head, find_network, mask_seed, mc_dropout


class WithHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 8, 3, padding=1)
        self.segmentation_head = nn.Sequential(nn.Conv2d(8, 4, 1), nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(torch.relu(self.body(x)))


def test_head_is_the_segmentation_head_else_the_last_layer_with_weights() -> None:
    net = WithHead()
    assert find_head(net) is net.segmentation_head
    plain = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.Identity())
    assert find_head(plain) is plain[2]
    assert find_head(net, "body") is net.body
    with pytest.raises(SegalError) as err:
        find_head(net, "decoder.blocks.4")
    assert str(err.value).startswith("--strategy-opt layer=decoder.blocks.4: no such submodule in WithHead")


def test_network_is_found_or_named_in_one_line() -> None:
    model = TinyModel(ModelConfig(num_classes=3, device="cpu"))
    assert find_network(model) is model.net

    class Opaque:
        pass

    with pytest.raises(SegalError) as err:
        find_network(Opaque())  # type: ignore[arg-type]
    assert "model 'Opaque' exposes no torch network as model.network or model.net" in str(err.value)


def test_masks_are_seeded_per_row_and_the_hook_is_removed() -> None:
    torch.manual_seed(0)
    net = WithHead().eval()
    x = torch.randn((3, 3, 8, 8))
    with torch.inference_mode():
        clean = net(x)
        with mc_dropout(net, 0.5) as dropout:
            dropout.arm([11, 12, 13])
            first = net(x)
            dropout.check_consumed()
            dropout.arm([11, 12, 99])
            second = net(x)
            dropout.arm([13])  # row 2's seed alone, in a batch of one
            alone = net(x[2:])
        after = net(x)
    assert not torch.equal(first, clean)
    assert torch.equal(first[:2], second[:2]) and not torch.equal(first[2], second[2])
    assert torch.allclose(first[2:], alone, atol=1e-6)  # batch of 1 vs 3: float rounding only
    assert torch.equal(after, clean), "the dropout hook was not removed"
    assert not net.segmentation_head._forward_pre_hooks


def test_hook_removed_after_an_error() -> None:
    net = WithHead()
    with pytest.raises(RuntimeError):
        with mc_dropout(net, 0.3) as dropout:
            dropout.arm([1])
            net(torch.zeros((2, 3, 4, 4)))  # two rows, one seed
    assert not net.segmentation_head._forward_pre_hooks


def test_a_hook_that_never_ran_is_one_line() -> None:
    net = WithHead()
    with mc_dropout(net, 0.3) as dropout:
        dropout.arm([1, 2])
        with pytest.raises(SegalError, match="the dropout hook never ran"):
            dropout.check_consumed()


def test_mask_seed_is_spread_and_63_bit() -> None:
    seeds = {mask_seed(base, index, t) for base in (0, 1) for index in range(50) for t in range(8)}
    assert len(seeds) == 2 * 50 * 8
    assert all(0 <= s < 2**63 for s in seeds)
