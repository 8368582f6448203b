"""The plugin manager: entry points, broken plugins, duplicates, blocking, hook errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import segal_core
from segal_core import SegalError, hookimpl, load_plugins
from segal_core.plugins import PluginError

from fakedist import STRATEGY_PLUGIN, make_distribution

BUILTINS = {"segal_synthetic", "segal_camvid", "segal_folder", "segal_cityscapes", "segal_voc",
            "segal_smp", "segal_uncertainty", "segal_oracle"}


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str, dist: str | None = None) -> None:
    root = make_distribution(tmp_path / name, dist or f"segal-{name}", {name: source}, {name: name})
    monkeypatch.syspath_prepend(str(root))


def test_builtins_load_through_entry_points() -> None:
    plugins = load_plugins()
    names = {i.name for i in plugins.infos}
    assert BUILTINS <= names
    assert not plugins.broken, [(i.name, i.error) for i in plugins.broken]
    for info in plugins.infos:
        if info.name in BUILTINS:
            assert info.distribution == "segal"
            assert info.version == segal_core.__version__


def test_registry_reaches_builtins_by_name_and_alias() -> None:
    reg = segal_core.registry()
    assert reg.strategies["entropy"] is reg.strategy("EntropySampling")
    assert reg.strategy("least-confidence") is reg.strategies["LeastConfidence"]
    assert {"random", "least_confidence", "margin", "entropy"} <= set(reg.names("strategies"))


def test_third_party_plugin_from_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path, monkeypatch, "segal_const", STRATEGY_PLUGIN.format(name="constant", alias="Const"))
    plugins = load_plugins()
    cls = plugins.registry.strategy("const")
    assert cls.name == "constant"
    info = next(i for i in plugins.infos if i.name == "segal_const")
    assert info.registers == {"strategies": ["constant"]}
    assert info.distribution == "segal-segal_const" and info.version == "1.0"
    assert plugins.registry.owners[("strategies", cls)] == "segal_const"


def test_broken_plugin_is_reported_and_others_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path, monkeypatch, "segal_broken", "import no_such_module_xyz\n")
    plugins = load_plugins()
    broken = {i.name: i.error for i in plugins.broken}
    assert "segal_broken" in broken
    assert "no_such_module_xyz" in broken["segal_broken"]
    assert plugins.registry.strategy("entropy").name == "entropy"


def test_misspelt_hook_marks_plugin_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = "from segal_core import hookimpl\n@hookimpl\ndef segal_register_stratgies():\n    return []\n"
    install(tmp_path, monkeypatch, "segal_typo", source)
    plugins = load_plugins()
    error = next(i.error for i in plugins.infos if i.name == "segal_typo")
    assert error and "segal_register_stratgies" in error
    assert not plugins.manager.has_plugin("segal_typo")


def test_registration_hook_that_raises_is_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = "from segal_core import hookimpl\n@hookimpl\ndef segal_register_models():\n    raise RuntimeError('boom')\n"
    install(tmp_path, monkeypatch, "segal_boom", source)
    plugins = load_plugins()
    error = next(i.error for i in plugins.infos if i.name == "segal_boom")
    assert error == "segal_register_models: RuntimeError: boom"


def test_duplicate_name_names_both_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path, monkeypatch, "segal_dup", STRATEGY_PLUGIN.format(name="Entropy", alias="entropy2"))
    with pytest.raises(SegalError) as err:
        load_plugins().registry  # noqa: B018
    message = str(err.value)
    assert "strategy name 'entropy'" in message.lower()
    assert "segal_dup" in message and "segal_uncertainty" in message
    assert "\n" not in message


def test_duplicate_alias_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path, monkeypatch, "segal_dup2", STRATEGY_PLUGIN.format(name="mine", alias="MarginSampling"))
    with pytest.raises(SegalError) as err:
        load_plugins().registry  # noqa: B018
    message = str(err.value)
    assert "'MarginSampling'" in message
    assert "'segal_uncertainty'" in message and "'segal_dup2'" in message


def test_blocking_a_plugin_by_argument_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path, monkeypatch, "segal_dup3", STRATEGY_PLUGIN.format(name="entropy", alias="x"))
    reg = load_plugins(blocked=["segal_uncertainty"]).registry
    assert reg.owners[("strategies", reg.strategy("entropy"))] == "segal_dup3"
    monkeypatch.setenv("SEGAL_DISABLE_PLUGINS", "segal_dup3, segal_voc")
    plugins = load_plugins()
    names = {i.name for i in plugins.infos}
    assert "segal_dup3" not in names and "segal_voc" not in names
    assert plugins.registry.owners[("strategies", plugins.registry.strategy("entropy"))] == "segal_uncertainty"


def test_unknown_name_lists_valid_names_closest_first() -> None:
    reg = segal_core.registry()
    with pytest.raises(SegalError) as err:
        reg.strategy("entrpy")
    message = str(err.value)
    assert message.startswith("--strategy entrpy: unknown; valid names: entropy,")
    for name in ("random", "margin", "least_confidence"):
        assert name in message


def test_each_load_is_a_fresh_manager() -> None:
    a, b = load_plugins(), load_plugins()
    assert a.manager is not b.manager
    assert a.registry is not b.registry


class Exploding:
    @hookimpl
    def segal_round_start(self, run, round):  # noqa: A002 - the hook's own name
        raise ValueError("bad round")


def test_plugin_error_in_hook_names_plugin_and_hook() -> None:
    plugins = load_plugins(extra=[("exploder", Exploding())])
    with pytest.raises(PluginError) as err:
        plugins.call("segal_round_start", run=None, round=0)
    assert str(err.value) == "plugin 'exploder' failed in hook segal_round_start: ValueError: bad round"


def test_phase_hook_runs_the_action_inside_wrappers() -> None:
    seen: list[str] = []

    class Timer:
        @hookimpl(wrapper=True)
        def segal_phase(self, phase):
            seen.append(f"before {phase}")
            result = yield
            seen.append(f"after {phase} -> {result}")
            return result

    plugins = load_plugins(extra=[("timer", Timer())])
    out = plugins.call("segal_phase", run=None, round=0, phase="train", action=lambda: seen.append("work") or 42)
    assert out == 42
    assert seen == ["before train", "work", "after train -> 42"]
