"""Errors of the compile pipeline, all :class:`CompileError`: report them, with the one-line
reason in the message; the compile left no output directory behind.

CompileError
├── ModelError          the input is not a usable ONNX model
├── UnsupportedOpError  a target can't take an op (names the op, the node, the target, what to try)
├── ShapeError          an input shape the model or the target can't take (``--input-shape``)
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
    """``target`` can't take ``op`` at node ``node``; ``detail`` says why, ``hint`` what to try
    (by default: another target for an op outside the default ONNX domain, else a re-export with a
    newer opset). One message shape for every target::

        target T can't take op OP (node 'N'): why; try what
    """

    def __init__(self, target: str, op: str, node: str, detail: str = "", hint: str | None = None) -> None:
        self.target, self.op, self.node = target, op, node
        self.hint = default_hint(target, op) if hint is None else hint
        extra = f": {detail}" if detail else ""
        tail = f"; try {self.hint}" if self.hint else ""
        super().__init__(f"target {target} can't take op {op} (node {node!r}){extra}{tail}")


def default_hint(target: str, op: str) -> str:
    """What to try when ``target`` refuses ``op`` (``domain.Op`` for ops outside the default domain)."""
    domain = op.rpartition(".")[0]
    if domain and domain != "ai.onnx" and target != "onnx-x86":
        return f"compiling for onnx-x86 (ONNX Runtime runs {domain} ops)"
    return "re-exporting the model with a newer opset (e.g. 17) or without this op"


class ShapeError(CompileError):
    """An ``--input-shape`` that names no input or does not fit it, or a dynamic dimension whose
    size a target needs and nothing gives."""


class CalibrationError(CompileError):
    pass


class ToolchainError(CompileError):
    pass


class ValidationGateError(CompileError):
    pass


class TargetError(CompileError):
    pass
