"""Plugin discovery, lookup, failure isolation and clash detection."""

from __future__ import annotations

import types

import pytest

from ssl_core import hookimpl
from ssl_core.errors import DuplicateComponentError, UnknownComponentError
from ssl_core.registry import PluginError, Registry


def test_entry_point_plugin_is_discovered(registry: Registry) -> None:
    # sslkit-testplugins is a real package installed in the test environment (see tests/fixtures)
    spec = registry.get("objective", "toy_align")
    assert spec.plugin == "toy"
    assert spec.package == "sslkit-testplugins"
    assert spec.modality == "toy"
    assert spec.recipe["encoder"] == "toy_mlp"
    assert "toy" in registry.plugins()
    assert "toy" in registry.modalities()


def test_core_evaluators_register_as_a_plugin(registry: Registry) -> None:
    names = {s.name for s in registry.list("evaluator")}
    assert {"knn", "linear_probe", "few_shot", "health"} <= names
    assert registry.get("evaluator", "knn").package == "sslkit"


def test_unknown_name_suggests_close_match(registry: Registry) -> None:
    with pytest.raises(UnknownComponentError) as err:
        registry.get("objective", "toy_algn")
    msg = str(err.value)
    assert "Unknown objective 'toy_algn'" in msg
    assert "Did you mean 'toy_align'?" in msg
    assert "toy_align" in err.value.known


def test_wrong_modality_is_explained(registry: Registry) -> None:
    with pytest.raises(UnknownComponentError, match="is a toy objective, not a vision one"):
        registry.get("objective", "toy_align", modality="vision")


@pytest.fixture
def fixture_plugins_only(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Load only the test fixture plugins, so other installed plugins cannot interfere."""
    monkeypatch.setenv("SSL_CORE_LOAD_PLUGINS", "toy,flaky")
    return monkeypatch


def test_failing_import_is_reported_and_others_load(fixture_plugins_only: pytest.MonkeyPatch) -> None:
    monkeypatch = fixture_plugins_only
    monkeypatch.setenv("SSLKIT_TEST_FLAKY", "import")
    import sys

    sys.modules.pop("sslkit_testplugins.flaky", None)
    reg = Registry()
    failed = {f.plugin: f for f in reg.failures}
    assert "flaky" in failed
    assert "not_installed_lib" in failed["flaky"].error
    assert reg.get("objective", "toy_align")  # the healthy plugin still loaded
    sys.modules.pop("sslkit_testplugins.flaky", None)


def test_failing_registration_rolls_back(fixture_plugins_only: pytest.MonkeyPatch) -> None:
    monkeypatch = fixture_plugins_only
    monkeypatch.setenv("SSLKIT_TEST_FLAKY", "register")
    reg = Registry()
    assert [f.plugin for f in reg.failures] == ["flaky"]
    assert "simulated bug during registration" in reg.failures[0].error
    assert "flaky_health" not in {s.name for s in reg.list("evaluator")}
    assert "flaky" not in reg.plugins()


def test_strict_mode_makes_failures_fatal(fixture_plugins_only: pytest.MonkeyPatch) -> None:
    monkeypatch = fixture_plugins_only
    monkeypatch.setenv("SSLKIT_TEST_FLAKY", "register")
    monkeypatch.setenv("SSL_CORE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="Plugin 'flaky' failed to load"):
        Registry()


def test_load_only_selected_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CORE_LOAD_PLUGINS", "toy")
    reg = Registry()
    assert "toy" in reg.plugins()
    assert "flaky" not in reg.plugins()
    monkeypatch.setenv("SSL_CORE_LOAD_PLUGINS", "")
    assert "toy" not in Registry().plugins()


def _plugin(**hooks):  # type: ignore[no-untyped-def]
    mod = types.ModuleType("inproc")
    for name, fn in hooks.items():
        setattr(mod, name, hookimpl(fn))
    return mod


def test_in_process_plugin_and_harmless_reregistration() -> None:
    reg = Registry(load_entry_points=False)

    class Dummy:
        """A dummy evaluator factory."""

    def register_evaluators(register):  # type: ignore[no-untyped-def]
        register("dummy_eval", Dummy, summary="dummy")
        register("dummy_eval", Dummy, summary="dummy")  # same thing again: harmless

    plugin = _plugin(register_evaluators=register_evaluators)
    reg.add_plugin(plugin, name="mine")
    reg.add_plugin(plugin, name="mine")
    assert reg.get("evaluator", "dummy_eval").plugin == "mine"
    assert not reg.failures


def test_name_clash_names_both_plugins() -> None:
    reg = Registry(load_entry_points=False)

    def make(cls):  # type: ignore[no-untyped-def]
        return _plugin(register_evaluators=lambda register: register("knn", cls))

    class Other:
        pass

    with pytest.raises(DuplicateComponentError) as err:
        reg.add_plugin(make(Other), name="intruder")
    assert "ssl_core.evaluators.plugin" in str(err.value) and "intruder" in str(err.value)
    assert reg.get("evaluator", "knn").plugin == "ssl_core.evaluators.plugin"  # the original survives


def test_misspelled_hook_is_reported() -> None:
    reg = Registry(load_entry_points=False)
    bad = _plugin(register_objective=lambda register: None)  # missing the trailing 's'
    reg.add_plugin(bad, name="typo")
    assert reg.failures and reg.failures[0].plugin == "typo"
    assert "register_objective" in reg.failures[0].error


def test_invalid_names_and_recipe_keys_are_rejected() -> None:
    reg = Registry(load_entry_points=False)
    reg.add_plugin(_plugin(register_encoders=lambda register: register("Bad Name", object)), name="p1")
    assert "lower-case" in reg.failures[-1].error
    reg.add_plugin(_plugin(register_objectives=lambda register: register("x", object, recipe={"encodr": "a"})), name="p2")
    assert "unknown recipe keys ['encodr']" in reg.failures[-1].error
