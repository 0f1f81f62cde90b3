"""Compile targets by name, from the ``edgefleet.compilers`` entry-point group (built-ins are
registered there the same way a plug-in is); unknown names are refused with the known ones."""

from __future__ import annotations

from functools import cache
from importlib import import_module
from importlib.metadata import entry_points

from compilers.base import Target
from compilers.errors import TargetError

GROUP = "edgefleet.compilers"
_BUILTIN = {
    "onnx-x86": "compilers.onnx_x86:OnnxX86Target",
    "tflite-arm": "compilers.tflite_arm:TfliteArmTarget",
    "tensorrt-jetson": "compilers.tensorrt_jetson:TensorRTJetsonTarget",
}


@cache
def _specs() -> dict[str, str]:
    specs = dict(_BUILTIN)
    for ep in entry_points(group=GROUP):
        if ep.name in specs and specs[ep.name] != ep.value:
            raise TargetError(f"target {ep.name!r} is registered twice ({specs[ep.name]} and {ep.value})")
        specs[ep.name] = ep.value
    return specs


def known_targets() -> list[str]:
    return sorted(_specs())


def get_target(name: str) -> Target:
    spec = _specs().get(name)
    if spec is None:
        raise TargetError(f"unknown target {name!r} (known: {', '.join(known_targets())})")
    module, _, attr = spec.partition(":")
    cls = getattr(import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Target)):
        raise TargetError(f"{spec} is not a compiler Target")
    return cls()
