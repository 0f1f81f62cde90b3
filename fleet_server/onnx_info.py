"""Read an uploaded ONNX model's inputs and outputs, refusing files that are not ONNX models.

``onnx`` is imported on the first upload, not at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleet_server.errors import UnusableError


def _tensor(value_info: Any) -> dict[str, Any]:
    import onnx

    tt = value_info.type.tensor_type
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
    except (KeyError, ValueError, TypeError):
        dtype = str(tt.elem_type)
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
    return {"name": value_info.name, "dtype": dtype, "shape": shape}


def inspect_onnx(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(inputs, outputs)`` as ``{name, dtype, shape}`` (``-1`` for a dynamic dimension).
    Raises :class:`UnusableError` when the file is not a usable ONNX model."""
    try:
        import onnx
    except ImportError as exc:  # a server without the compile extra can still store models
        raise UnusableError("the server can't read ONNX models: install edgefleet[server]") from exc
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:
        raise UnusableError(
            f"not an ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    # Protobuf parses many byte strings as an (empty) message; a real model has an opset and nodes.
    if not model.opset_import or not model.graph.node:
        raise UnusableError("not an ONNX model: no graph nodes or opset")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise UnusableError(f"invalid ONNX model: {str(exc).splitlines()[0]}") from exc
    initializers = {i.name for i in model.graph.initializer}
    inputs = [_tensor(v) for v in model.graph.input if v.name not in initializers]
    outputs = [_tensor(v) for v in model.graph.output]
    if not inputs or not outputs:
        raise UnusableError("the ONNX model has no inputs or no outputs")
    return inputs, outputs
