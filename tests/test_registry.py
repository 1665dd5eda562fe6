"""Registry behaviour: decorator registration, duplicates, shadowing, unknown names, plugins."""

import importlib.metadata
import sys
import textwrap

import pytest

from bench.registry import (
    WARPERS,
    DuplicateNameError,
    PluginLoadError,
    Registry,
    RegistryError,
    UnknownNameError,
    load_plugin,
)


def test_decorator_registers_under_name_and_function_name():
    reg = Registry("thing")

    @reg.register("alpha")
    class Alpha:
        pass

    @reg.register()
    def beta():
        return 1

    assert reg.get("alpha") is Alpha
    assert reg.get("beta") is beta
    assert reg.names() == ["alpha", "beta"]


def test_duplicate_name_is_an_error_naming_both_origins():
    reg = Registry("thing")
    reg.add("alpha", object())
    with pytest.raises(DuplicateNameError, match="'alpha' is already registered"):
        reg.add("alpha", object())


def test_builtin_cannot_be_shadowed_by_a_plugin():
    WARPERS.get("gfla")  # built-ins are loaded
    with pytest.raises(DuplicateNameError, match="built-ins cannot be shadowed"):
        WARPERS.add("gfla", type("Impostor", (), {}))


def test_unknown_name_lists_known_names_and_closest_match():
    reg = Registry("thing")
    for name in ("plain_flow", "affine_stn", "none"):
        reg.add(name, object())
    with pytest.raises(UnknownNameError) as info:
        reg.get("plain_flwo")
    message = str(info.value)
    assert "did you mean 'plain_flow'" in message
    assert "affine_stn, none, plain_flow" in message


def test_invalid_names_rejected():
    reg = Registry("thing")
    with pytest.raises(RegistryError):
        reg.add("has space", object())
    with pytest.raises(RegistryError):
        reg.add("", object())


def test_plugin_from_path_and_module(tmp_path, monkeypatch):
    plugin = tmp_path / "my_plugin_mod.py"
    plugin.write_text(textwrap.dedent("""
        from bench.registry import Registry
        REG = Registry("gadget")
        REG.add("from_file", 1)
    """))
    load_plugin(str(plugin))
    assert sys.modules["warpbench_plugin_my_plugin_mod"].REG.get("from_file") == 1
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugin("my_plugin_mod")
    assert sys.modules["my_plugin_mod"].REG.get("from_file") == 1


def test_plugin_import_error_is_a_plugin_load_error(tmp_path):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginLoadError, match="boom"):
        load_plugin(str(broken))
    with pytest.raises(PluginLoadError, match="no such file"):
        load_plugin(str(tmp_path / "missing.py"))


def _entry_point(name, value, group):
    return importlib.metadata.EntryPoint(name=name, value=value, group=group)


def test_entry_points_are_lazy_and_a_broken_one_fails_only_its_lookup(tmp_path, monkeypatch):
    (tmp_path / "good_ep_plugin.py").write_text(
        "from bench.registry import REG_UNDER_TEST\nREG_UNDER_TEST.add('good', 42)\n"
    )
    (tmp_path / "bad_ep_plugin.py").write_text("import not_a_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("gizmo")
    monkeypatch.setattr("bench.registry.REG_UNDER_TEST", reg, raising=False)
    eps = [_entry_point("good", "good_ep_plugin", reg.group), _entry_point("bad", "bad_ep_plugin", reg.group)]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [e for e in eps if e.group == group])
    assert reg.names() == ["bad", "good"]  # listed without importing
    assert "good_ep_plugin" not in sys.modules
    assert reg.get("good") == 42
    with pytest.raises(PluginLoadError, match="bad_ep_plugin"):
        reg.get("bad")


def test_baselines_are_discovered_through_the_entry_point_group():
    names = WARPERS.names()
    for name in ("gfla", "none", "affine_stn", "plain_flow", "nonlocal_attn"):
        assert name in names


def test_loading_the_same_plugin_file_twice_is_harmless(tmp_path):
    plugin = tmp_path / "twice_plugin.py"
    plugin.write_text("from bench.registry import WARPERS\nWARPERS.add('loaded_twice_warper', object())\n")
    load_plugin(str(plugin))
    load_plugin(str(plugin))
    assert "loaded_twice_warper" in WARPERS.names()
