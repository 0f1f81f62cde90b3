"""Load and check the source ONNX model, and describe its inputs and outputs.

Everything a user can get wrong about the model file itself is caught here, once, with a one-line
:class:`~compilers.errors.ModelError`, before any target spends time on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from agent.contracts.manifest import TensorSpec
from compilers.errors import ModelError

# The checker refuses a proto above 2 GiB in memory; such models keep weights in external files
# and are checked by path instead.
_PROTO_LIMIT = 2**31 - 1
_IMAGE_CHANNELS = (1, 3, 4)


def one_line(text: object, limit: int = 240) -> str:
    """``text`` squeezed onto one line and cut to ``limit`` characters (messages for operators)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def load_model(path: Path) -> onnx.ModelProto:
    """Read ``path`` and run the ONNX checker on it.

    Raises :class:`ModelError` ("X is not an ONNX model: why") when the path is not a file, does
    not parse as an ONNX protobuf, or fails the checker.
    """
    if not path.is_file():
        raise ModelError(f"{path} is not an ONNX model: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # the protobuf parser raises several unrelated types
        raise ModelError(f"{path} is not an ONNX model: {one_line(exc) or type(exc).__name__}") from exc
    try:
        if model.ByteSize() > _PROTO_LIMIT:
            onnx.checker.check_model(str(path))
        else:
            onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise ModelError(f"{path} is not an ONNX model: {one_line(exc)}") from exc
    if not model.graph.node:
        raise ModelError(f"{path} is not an ONNX model: the graph has no nodes")
    return model


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph``, including those inside subgraphs (``If``, ``Loop``, ``Scan``)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_nodes(g)


# Ops of a model that is quantized already: Q/DQ pairs (ONNX Runtime's static QDQ, PyTorch or
# TensorRT-style quantization-aware training), ONNX Runtime's integer and QLinear operator forms,
# and dynamic quantization.
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "QAttention",
        "QGemm",
    }
)


def refuse_quantized(model: onnx.ModelProto, path: Path) -> None:
    """Raise :class:`ModelError` when ``model`` is quantized already: compile takes the FP32 model
    and quantizes it per target, checking each bundle against it; an INT8 source has no FP32 to
    check against, and a second quantization of its Q/DQ pairs breaks it (ONNX Runtime refused
    the result; onnx2tf's conversion lost a third of the top-1 answers of a QDQ digits model)."""
    counts: dict[str, int] = {}
    for node in iter_nodes(model.graph):
        if node.op_type in QUANTIZED_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    if counts:
        found = ", ".join(f"{n} {op}" for op, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        raise ModelError(
            f"{path} is quantized already ({found}): give the FP32 model it was made from; compile "
            "quantizes it for each target and checks the result against it"
        )


def node_label(node: onnx.NodeProto, index: int | None = None) -> str:
    """A name for ``node`` in messages: its own name, else its first output."""
    if node.name:
        return node.name
    if node.output:
        return f"<{node.op_type} → {node.output[0]}>"
    return f"<{node.op_type} #{index}>"


def guess_layout(shape: tuple[int, ...]) -> str | None:
    """``"NCHW"`` for a 4-D tensor whose dim 1 looks like image channels (1, 3 or 4), ``"NHWC"``
    when only the last dim does, else ``None``. A guess, recorded for tools, never relied on."""
    if len(shape) != 4:
        return None
    if shape[1] in _IMAGE_CHANNELS:
        return "NCHW"
    if shape[3] in _IMAGE_CHANNELS:
        return "NHWC"
    return None


def _spec(value: onnx.ValueInfoProto, kind: str, path: str) -> TensorSpec:
    if value.type.WhichOneof("value") != "tensor_type":
        raise ModelError(
            f"{path}: {kind} {value.name!r} is not a tensor (sequence and map {kind}s are not supported)"
        )
    ttype = value.type.tensor_type
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type)).name
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"{path}: {kind} {value.name!r} has an unsupported element type {ttype.elem_type}"
        ) from exc
    if not ttype.HasField("shape"):
        raise ModelError(f"{path}: {kind} {value.name!r} has no shape (not even its rank)")
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in ttype.shape.dim)
    return TensorSpec(name=value.name, dtype=dtype, shape=shape, layout=guess_layout(shape))


def tensor_specs(model: onnx.ModelProto, path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The model's real inputs (initializers listed as inputs by old exporters are skipped) and
    outputs, with numpy dtype names and ``-1`` for dynamic dims.

    Raises :class:`ModelError` for non-tensor or shapeless inputs/outputs.
    """
    initializers = {i.name for i in model.graph.initializer}
    inputs = tuple(_spec(v, "input", str(path)) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_spec(v, "output", str(path)) for v in model.graph.output)
    if not inputs or not outputs:
        raise ModelError(f"{path} is not an ONNX model: it needs at least one input and one output")
    return inputs, outputs


def input_specs(model: onnx.ModelProto, path: Path) -> tuple[TensorSpec, ...]:
    """The model's real inputs, as :func:`tensor_specs` describes them (outputs unchecked: a
    scikit-learn ZipMap output becomes a tensor only in :mod:`compilers.intake`)."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = tuple(_spec(v, "input", str(path)) for v in model.graph.input if v.name not in initializers)
    if not inputs:
        raise ModelError(f"{path} is not an ONNX model: it needs at least one input and one output")
    return inputs


def opset_of(model: onnx.ModelProto, domain: str = "") -> int | None:
    """The opset version ``model`` imports for ``domain`` (``""`` is the default ONNX domain)."""
    for imp in model.opset_import:
        if imp.domain in (domain, "ai.onnx" if domain == "" else domain):
            return int(imp.version)
    return None


def model_info(model: onnx.ModelProto) -> dict[str, Any]:
    """A few facts about the model for the manifest's ``build`` section."""
    return {
        "opset": opset_of(model),
        "ir_version": int(model.ir_version),
        "producer": f"{model.producer_name} {model.producer_version}".strip() or None,
        "nodes": sum(1 for _ in iter_nodes(model.graph)),
    }


# Ops that pass a tensor on unchanged in value (looked through to find what made an output).
_PASS_THROUGH = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Concat")
# Reductions over tokens or positions: what pools a sequence or a feature map into one vector.
_POOLING = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceL2", "GlobalAveragePool", "GlobalMaxPool")


def pooled_outputs(model: onnx.ModelProto) -> frozenset[str]:
    """Graph outputs that pool a sequence or feature map into a vector: sentence and image
    embeddings, not class scores (pure). An output counts when, looking through ops that keep its
    values (a one-input Concat, Reshape, Flatten, ...), it is made by a reduction
    (ReduceMean, GlobalAveragePool, ...), an ``LpNormalization``, or a ``Div`` of a reduction (mean
    pooling: summed tokens over the mask's count; L2 normalisation) that is not a softmax
    written out (``Exp`` over its ``ReduceSum``)."""
    producer = {o: n for n in model.graph.node for o in n.output}

    def made_by(t: str) -> onnx.NodeProto | None:
        node = producer.get(t)
        seen = 0
        while node is not None and node.op_type in _PASS_THROUGH and seen < 16:
            real = [i for i in node.input if i]
            if node.op_type == "Concat" and len(real) != 1:
                break
            if not real:
                break
            node, seen = producer.get(real[0]), seen + 1
        return node

    def pooling(node: onnx.NodeProto | None) -> bool:
        return node is not None and node.op_type in _POOLING

    out = set()
    for value in model.graph.output:
        node = made_by(value.name)
        if node is None:
            continue
        if pooling(node) or node.op_type == "LpNormalization":
            out.add(value.name)
        elif node.op_type == "Div" and len(node.input) == 2:
            num, den = (made_by(t) for t in node.input)
            if num is not None and num.op_type == "Exp":
                continue
            if pooling(num) or pooling(den) or (den is not None and den.op_type in ("Sqrt", "Clip", "Max")):
                out.add(value.name)
    return frozenset(out)
