"""The plug-in registry behind runtimes and compiler targets."""

from __future__ import annotations

import pytest

from agent.plugins import PluginError, Registry
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
