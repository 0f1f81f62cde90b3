"""ONNX in, a validated bundle per hardware target out.

Public API::

    from compilers import compile_model, CompileOptions, CompileReport, CompileError
    report = compile_model(Path("m.onnx"), "raspberry-pi-5", out_dir=Path("bundles/pi5"),
                           options=CompileOptions(precision="int8", calibration=Path("cal.npz")))

``compile_model`` never talks to the network or a database; it writes the bundle into a temporary
directory beside ``out_dir`` and renames it into place only when everything passed, so a failed
compile leaves no output directory.
"""

from compilers.errors import (
    CalibrationError,
    CompileError,
    ModelError,
    ShapeError,
    TargetError,
    ToolchainError,
    UnsupportedOpError,
    ValidationGateError,
)
from compilers.pipeline import CompileOptions, CompileReport, compile_model

__all__ = [
    "CalibrationError",
    "CompileError",
    "CompileOptions",
    "CompileReport",
    "ModelError",
    "ShapeError",
    "TargetError",
    "ToolchainError",
    "UnsupportedOpError",
    "ValidationGateError",
    "compile_model",
]
