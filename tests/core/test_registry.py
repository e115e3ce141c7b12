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
    with pytest.raises(UnknownComponentError, match="is a vision objective, not an audio one"):
        registry.get("objective", "simclr", modality="audio")


def test_unknown_modality_is_named_as_such(registry: Registry) -> None:
    with pytest.raises(UnknownComponentError) as err:
        registry.get("objective", "simclr", modality="images")
    msg = str(err.value)
    assert "Unknown modality 'images'" in msg and "Known modalities:" in msg and "vision" in msg
    assert "not a images" not in msg


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


def test_name_clash_disables_the_later_plugin_only(capsys: pytest.CaptureFixture[str]) -> None:
    reg = Registry(load_entry_points=False)

    class Other:
        """Not the core's kNN."""

    def register_evaluators(register):  # type: ignore[no-untyped-def]
        register("intruder_eval", Other, summary="fine on its own")
        register("knn", Other)  # already the core's

    reg.add_plugin(_plugin(register_evaluators=register_evaluators), name="intruder")
    msg = capsys.readouterr().err
    assert "plugin 'intruder'" in msg and "is disabled" in msg and "evaluator 'knn'" in msg
    assert "ssl_core.evaluators.plugin" in msg and "Uninstall one of the two packages" in msg
    assert reg.get("evaluator", "knn").plugin == "ssl_core.evaluators.plugin"  # the original survives
    assert "intruder_eval" not in {s.name for s in reg.list()}  # the whole later plugin is disabled
    assert [(f.plugin, f.kind) for f in reg.failures] == [("intruder", "clash")]
    assert "intruder" not in reg.plugins()
    # every other component keeps working, and lookups of the clashing plugin's names explain why
    assert reg.get("evaluator", "linear_probe")
    with pytest.raises(UnknownComponentError, match="Disabled by a name clash: plugin 'intruder'"):
        reg.get("evaluator", "intruder_eval")


def test_name_clash_is_fatal_in_strict_mode() -> None:
    reg = Registry(load_entry_points=False, strict=True)
    with pytest.raises(DuplicateComponentError, match="evaluator 'knn'.*SSL_CORE_STRICT_PLUGINS"):
        reg.add_plugin(_plugin(register_evaluators=lambda register: register("knn", object)), name="intruder")


class _EntryPoint:
    """Stands in for an importlib.metadata entry point of an installed distribution."""

    def __init__(self, name: str, module: types.ModuleType, dist: str) -> None:
        self.name, self.value, self._module = name, module.__name__, module
        self.dist = types.SimpleNamespace(name=dist)

    def load(self) -> types.ModuleType:
        return self._module


def test_third_party_clash_never_displaces_a_builtin_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A third-party plugin whose entry point sorts first ('aaa') and reuses 'simclr' is the one
    disabled: sslkit's own distributions load first."""
    import ssl_core.registry as registry_module

    def ours(register):  # type: ignore[no-untyped-def]
        register("simclr", "ssl_vision.simclr:SimCLR", modality="vision", summary="the real one")
        register("resnet_small", "ssl_vision.encoders:resnet_small", modality="vision", summary="enc")

    def theirs(register):  # type: ignore[no-untyped-def]
        register("simclr", "elsewhere.simclr:SimCLR", modality="vision", summary="an impostor")

    eps = [_EntryPoint("aaa", _plugin(register_objectives=theirs), "aaa-methods"),
           _EntryPoint("vision", _plugin(register_objectives=ours), "sslkit-vision")]
    monkeypatch.setattr(registry_module.importlib.metadata, "entry_points", lambda group: eps)
    monkeypatch.delenv("SSL_CORE_LOAD_PLUGINS", raising=False)
    reg = Registry()
    assert reg.get("objective", "simclr").summary == "the real one"
    assert reg.get("objective", "simclr").package == "sslkit-vision"
    assert [(f.plugin, f.kind) for f in reg.failures] == [("aaa", "clash")]


def test_failed_registration_rolls_back_every_earlier_hook() -> None:
    """Issue 16: a plugin whose later hook raises keeps nothing from its earlier hooks."""
    reg = Registry(load_entry_points=False)
    before = {(s.kind, s.name) for s in reg.list()}

    def register_encoders(register):  # type: ignore[no-untyped-def]
        register("half_enc", object, modality="toy", summary="registered before the failure")

    def register_objectives(register):  # type: ignore[no-untyped-def]
        register("half_obj", object, modality="toy", summary="also before")
        raise RuntimeError("bug in the plugin")

    reg.add_plugin(_plugin(register_encoders=register_encoders, register_objectives=register_objectives), name="half")
    assert {(s.kind, s.name) for s in reg.list()} == before
    assert "half" not in reg.plugins() and reg.failures[-1].plugin == "half"
    assert "bug in the plugin" in reg.failures[-1].error


def test_clash_rolls_back_every_earlier_registration_of_the_plugin() -> None:
    """Issue 16: the clashing plugin's registrations from earlier hooks (encoders run before
    evaluators) are not kept either, and the holder of the name is untouched."""
    reg = Registry(load_entry_points=False)
    knn = reg.get("evaluator", "knn")
    before = {(s.kind, s.name) for s in reg.list()}

    def register_encoders(register):  # type: ignore[no-untyped-def]
        register("half_enc", object, modality="toy", summary="registered before the clash")

    def register_evaluators(register):  # type: ignore[no-untyped-def]
        register("knn", object, summary="clashes")

    reg.add_plugin(_plugin(register_encoders=register_encoders, register_evaluators=register_evaluators), name="half")
    assert {(s.kind, s.name) for s in reg.list()} == before
    assert reg.get("evaluator", "knn") is knn


def test_same_plugin_registering_a_name_twice_differently_fails() -> None:
    reg = Registry(load_entry_points=False)

    def register_encoders(register):  # type: ignore[no-untyped-def]
        register("twice", "a.b:c", modality="toy", summary="one")
        register("twice", "a.b:d", modality="toy", summary="two")

    reg.add_plugin(_plugin(register_encoders=register_encoders), name="p")
    assert "registered encoder 'twice' twice" in reg.failures[-1].error
    assert "twice" not in {s.name for s in reg.list()}


def test_import_path_factories_load_on_first_use() -> None:
    reg = Registry(load_entry_points=False)

    def register_encoders(register):  # type: ignore[no-untyped-def]
        register("lazy_mlp", "sslkit_testplugins.toy_components:MLPEncoder", modality="toy", summary="lazy")
        register("missing", "no_such_package.module:Thing", modality="toy", summary="not installed")

    reg.add_plugin(_plugin(register_encoders=register_encoders), name="lazy", package="sslkit-lazy")
    spec = reg.get("encoder", "lazy_mlp")
    assert spec.where == "sslkit_testplugins.toy_components:MLPEncoder"
    assert spec.build(in_dim=3, embed_dim=5).embed_dim == 5
    assert spec.loaded
    from ssl_core.registry import ComponentImportError

    with pytest.raises(ComponentImportError, match=r"Encoder 'missing' \(plugin 'lazy', package sslkit-lazy\).*"
                                                    r"no_such_package.*pip install sslkit-lazy"):
        reg.get("encoder", "missing").factory
    reg.add_plugin(_plugin(register_encoders=lambda register: register("bad", "not a path")), name="bad")
    assert "package.module:attr" in reg.failures[-1].error


def test_listing_imports_no_plugin_module_and_no_torch() -> None:
    """`ssl list` must stay fast: building the registry imports plugin registration modules only."""
    import subprocess
    import sys

    code = ("import sys; from ssl_core.registry import Registry; r = Registry(); assert not r.failures, r.failures; "
            "assert len(r.list('objective')) >= 9; heavy = sorted({s.target.split(':')[0] for s in r.list() if isinstance(s.target, str)} & "
            "set(sys.modules)) + ['torch'] * ('torch' in sys.modules); print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


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
