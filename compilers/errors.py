"""Errors of the compile pipeline, all :class:`CompileError`: report them, with the one-line
reason in the message; the compile left no output directory behind.

CompileError
├── ModelError          the input is not a usable ONNX model
├── UnsupportedOpError  a target can't take an op (names the op and the node)
├── CalibrationError    calibration data missing, unreadable, or of the wrong shape/dtype
├── ToolchainError      a converter toolchain is missing or failed (says how to install it)
├── ValidationGateError the compiled model disagrees with FP32 more than the gate allows
└── TargetError         unknown target, or a precision the target can't produce
"""


class CompileError(Exception):
    """A compile failed; the message is a one-line reason meant for the operator."""


class ModelError(CompileError):
    pass


class UnsupportedOpError(CompileError):
    def __init__(self, target: str, op: str, node: str, detail: str = "") -> None:
        self.target, self.op, self.node = target, op, node
        extra = f": {detail}" if detail else ""
        super().__init__(f"target {target} can't take op {op} (node {node!r}){extra}")


class CalibrationError(CompileError):
    pass


class ToolchainError(CompileError):
    pass


class ValidationGateError(CompileError):
    pass


class TargetError(CompileError):
    pass
