"""Compile targets by name, from the ``edgefleet.compilers`` entry-point group (built-ins are
registered there the same way a plug-in is); unknown names are refused with the known ones."""

from __future__ import annotations

from agent.plugins import PluginError, Registry
from compilers.base import Target
from compilers.errors import TargetError

GROUP = "edgefleet.compilers"
_REGISTRY = Registry(
    GROUP,
    {
        "onnx-x86": "compilers.onnx_x86:OnnxX86Target",
        "tflite-arm": "compilers.tflite_arm:TfliteArmTarget",
        "tensorrt-jetson": "compilers.tensorrt_jetson:TensorRTJetsonTarget",
    },
    what="target",
)


def known_targets() -> list[str]:
    return _REGISTRY.names()


def get_target(name: str) -> Target:
    """A fresh instance of the target ``name``. Raises :class:`TargetError` naming the known ones."""
    try:
        return _REGISTRY.load(name, Target)()
    except PluginError as exc:
        raise TargetError(str(exc)) from exc
