"""The plug-in registry behind runtimes and compiler targets."""

from __future__ import annotations

import pytest

from agent.contracts.plugins import PluginError, Registry
from agent.runtimes import RuntimeAdapter, get_runtime, known_runtimes
from compilers.errors import TargetError
from compilers.registry import get_target, known_targets


def test_builtins_are_found_by_name() -> None:
    assert {"onnxruntime", "litert", "tensorrt"} <= set(known_runtimes())
    assert {"onnx-x86", "tflite-arm", "tensorrt-jetson"} <= set(known_targets())
    assert get_target("onnx-x86").name == "onnx-x86"


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(PluginError, match=r"unknown runtime 'tvm' \(known: litert, onnxruntime, tensorrt"):
        get_runtime("tvm")
    with pytest.raises(
        TargetError, match=r"unknown target 'coreml-ios' \(known: onnx-x86, tensorrt-jetson, tflite-arm"
    ):
        get_target("coreml-ios")


def test_a_spec_that_is_not_the_expected_class_is_refused() -> None:
    reg = Registry("edgefleet.nothing-here", {"odd": "pathlib:Path"}, what="runtime")
    with pytest.raises(PluginError, match="pathlib:Path is not a RuntimeAdapter"):
        reg.load("odd", RuntimeAdapter)


def test_pyproject_registers_exactly_the_builtins() -> None:
    import tomllib
    from pathlib import Path

    from agent.contracts.names import BUILTIN_RUNTIMES, BUILTIN_TARGETS, RUNTIME_GROUP, TARGET_GROUP

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][RUNTIME_GROUP] == BUILTIN_RUNTIMES
    assert project["entry-points"][TARGET_GROUP] == BUILTIN_TARGETS


def test_a_plugin_registered_in_process_is_known_until_unregistered() -> None:
    class Extra(RuntimeAdapter):  # abstract; registering does not instantiate it
        pass

    reg = Registry("edgefleet.nothing-here", {"base": "agent.runtimes.onnxrt:OnnxRuntimeAdapter"}, "runtime")
    reg.register("extra", Extra)
    assert reg.names() == ["base", "extra"] and reg.load("extra", RuntimeAdapter) is Extra
    with pytest.raises(PluginError, match="runtime 'base' is registered twice"):
        reg.register("base", Extra)
    reg.unregister("extra")
    assert reg.names() == ["base"]
