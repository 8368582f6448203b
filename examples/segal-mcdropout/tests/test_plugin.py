"""The plugin is installed and found through its entry point (run against the
installed distribution, not the source tree)."""

from __future__ import annotations

from segal_core import load_plugins

import segal_mcdropout


def test_installed_and_listed() -> None:
    plugins = load_plugins()
    info = next((i for i in plugins.infos if i.name == "segal_mcdropout"), None)
    assert info is not None, "segal_mcdropout is not installed (pip install .)"
    assert info.error is None
    assert info.distribution == "segal-mcdropout"
    assert info.version == segal_mcdropout.__version__
    assert info.registers == {"strategies": ["mc_entropy"]}
    assert "segal_round_end" in info.hooks


def test_reachable_by_name_and_alias_next_to_the_built_in_bald() -> None:
    registry = load_plugins().registry
    assert registry.strategy("mc_entropy") is segal_mcdropout.MCEntropy
    assert registry.strategy("Max-Entropy") is segal_mcdropout.MCEntropy
    assert registry.owners[("strategies", segal_mcdropout.MCEntropy)] == "segal_mcdropout"
    assert registry.owners[("strategies", registry.strategy("bald"))] == "segal_uncertainty"
