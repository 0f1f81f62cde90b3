"""The built-in compile targets, runtimes and precisions: the one place that names them.

Everything that checks a target or runtime name asks the registries here (:data:`TARGETS`,
:data:`RUNTIMES`), which hold the built-ins below plus every plug-in registered through the
``edgefleet.compilers`` / ``edgefleet.runtimes`` entry-point groups (``pyproject.toml`` registers
the built-ins there too, and a test keeps the two lists equal). Unknown names are refused with the
list of known ones.

A target is what the compilers build for; a runtime is what the device runs the bundle with. The
device learns its runtime from its profile (``runtime.name``), so a plug-in target needs no entry
in :data:`BUILTIN_TARGET_RUNTIME`; that table only pins the runtime of each built-in target.
"""

from __future__ import annotations

from agent.contracts.plugins import Registry

RUNTIME_GROUP = "edgefleet.runtimes"
TARGET_GROUP = "edgefleet.compilers"

# name → ``module:attr``, used when running from a source tree that was never installed.
BUILTIN_RUNTIMES = {
    "onnxruntime": "agent.runtimes.onnxrt:OnnxRuntimeAdapter",
    "litert": "agent.runtimes.litert:LiteRTAdapter",
    "tensorrt": "agent.runtimes.tensorrt:TensorRTAdapter",
}
BUILTIN_TARGETS = {
    "onnx-x86": "compilers.onnx_x86:OnnxX86Target",
    "tflite-arm": "compilers.tflite_arm:TfliteArmTarget",
    "tensorrt-jetson": "compilers.tensorrt_jetson:TensorRTJetsonTarget",
}
# The runtime each built-in target's bundles run on.
BUILTIN_TARGET_RUNTIME = {"onnx-x86": "onnxruntime", "tflite-arm": "litert", "tensorrt-jetson": "tensorrt"}

PRECISIONS = ("int8", "fp16", "fp32")

RUNTIMES = Registry(RUNTIME_GROUP, BUILTIN_RUNTIMES, what="runtime")
TARGETS = Registry(TARGET_GROUP, BUILTIN_TARGETS, what="target")
