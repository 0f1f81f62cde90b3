"""Accuracy-driven mixed precision: find the layers whose INT8 quantization costs most, so the
compile can keep them in float and try again.

Ranking (:func:`rank_qdq_layers`, for targets that emit QDQ ONNX): the FP32 model (after the
same quantization pre-processing the target ran) and the QDQ model are run on calibration samples
with every intermediate tensor saved (ONNX Runtime's ``qdq_loss_debug`` tools), and each tensor of
the QDQ model is matched with the FP32 one. A layer's cost is the quantization noise it *adds*:
the relative noise power of its output against FP32 minus the worst of its inputs' (what reaches
it already degraded), plus the noise of quantizing its own inputs. That ranks a layer high when
its inputs' quantization or its INT8 weights wreck its result, even if its input tensors look fine
by themselves (a wide-range activation whose small channels carry the signal). A graph output is
read as the gate reads it, channel by channel (:func:`compilers.metrics.channel_axis`, the worst
channel), and the noise of its own Q/DQ pair counts to the layer that writes it: a detector head
that concatenates boxes in pixels with scores in ``[0, 1]`` under one INT8 scale loses the scores,
which the whole tensor's noise power does not show.

Keeping layers in float is each target's own business (ONNX Runtime ``nodes_to_exclude``; for
TensorRT, :func:`strip_qdq` removes the Q/DQ pairs on the layer's inputs in the QDQ ONNX).
The compile keeps at most :func:`allowance` layers in float. It tries up to three
orders of the layers, each first with :data:`FIRST_REACH` of the allowance: the joins of tensors
of unlike ranges and the layers after them (:func:`mixed_range_joins`, where the graph has such a
Concat: a detector head's boxes beside its scores, whose one INT8 scale the noise ranking can't
see the harm of within its inputs), the costliest first, then :func:`from_the_ends` (a stretch at
the input or the output in float, where many layers each add a little). When none passes, the
order that came closest to its gate (:func:`gate_nearness`) gets the whole allowance. The first
that passes is bisected towards the fewest layers that still pass.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from agent.contracts.manifest import TensorSpec
from compilers.metrics import ALIKE_ATOL, ALIKE_RTOL, OutputScore, channels_of, exact_match

RANKED_BY = "per-tensor error against FP32 (onnxruntime qdq_loss_debug), noise added per layer"
# Calibration samples used to rank: the debugging tools keep every activation of every sample of
# both models in memory, so few; noise power over a few samples ranks layers well enough.
RANK_ROWS = 8
_EPS = 1e-12
_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class LayerCost:
    """One quantized layer (a node of the pre-processed source model) and its cost: relative
    noise power it adds (0: none; 1: as large as the signal)."""

    node: str
    op_type: str
    cost: float
    position: int = -1  # the node's index in the graph (-1: unknown)
    # > 0: the node is a join of tensors of unlike ranges, or follows one to the outputs, and this
    # many nodes make up the smallest such join with what follows it (see mixed_range_joins)
    join: int = 0


# Each order is tried first with this share of the allowance, and only the order that came
# closest to its gate with the whole of it: an order whose first share fails far from the gate
# rarely passes with more, and every try is a full quantization and validation.
FIRST_REACH = 0.75


def gate_nearness(scores: Sequence[OutputScore]) -> float:
    """How near a refused attempt came to its gate: its worst output's figure over that output's
    threshold (below 1 when it failed; inverted where lower is better), so that attempts gated
    on different metrics compare; 0 for a figure that is not a number (pure)."""
    worst = math.inf
    for s in scores:
        if math.isnan(s.value):
            return 0.0
        if s.higher_is_better:
            ratio = s.value / s.threshold if s.threshold > 0 else float(s.value >= s.threshold)
        else:
            ratio = s.threshold / s.value if s.value > 0 else 1.0
        worst = min(worst, ratio)
    return 0.0 if worst == math.inf else worst


def allowance(ranked: int, max_share: float, quantizable: int) -> int:
    """How many of the ``ranked`` layers an attempt may keep in float: ``max_share`` of the
    ``quantizable`` layers, at least one, at most ``ranked``, and never all of them (a model with
    every quantizable layer in float is no INT8 model); 0 when nothing is ranked (pure)."""
    return max(0, min(ranked, quantizable - 1, max(1, int(max_share * quantizable))))


def from_the_ends(ranked: Sequence[LayerCost]) -> list[LayerCost]:
    """``ranked`` in graph order taken from both ends, first and last layer, then the second and
    the second last, ...; ``[]`` when positions are unknown (pure).

    The second order the compile tries: per-layer noise misses damage that many layers add a
    little each, and float layers scattered through a quantized graph add a Q/DQ pair at every
    boundary. A stretch at the input (a backbone's stem: PaddleOCR's text detector passed with its
    first 40 of 292 layers in float, not with its 86 costliest) or at the output keeps one boundary."""
    placed = sorted((c for c in ranked if c.position >= 0), key=lambda c: c.position)
    if len(placed) != len(ranked):
        return []
    out: list[LayerCost] = []
    lo, hi = 0, len(placed) - 1
    while lo <= hi:
        out.append(placed[lo])
        if hi != lo:
            out.append(placed[hi])
        lo, hi = lo + 1, hi - 1
    return out


def joined_layers(ranked: Sequence[LayerCost], cap: int) -> list[LayerCost]:
    """The ranked layers that belong to a join of unlike ranges (:func:`mixed_range_joins`)
    no larger than ``cap``, in graph order; ``[]`` when there are none or they come to more
    than ``cap`` (pure). The first order the compile tries, when there is one."""
    joined = [c for c in ranked if 0 < c.join <= cap]
    if not joined or len(joined) > cap:
        return []
    return sorted(joined, key=lambda c: c.position)


# -- joins of unlike ranges ------------------------------------------------------------------------

# A Concat whose inputs' largest magnitudes differ by more than this is a join of unlike ranges.
JOIN_RANGE_RATIO = 16.0


def mixed_range_joins(
    model: onnx.ModelProto, float_acts: Mapping[str, Sequence[np.ndarray]], ratio: float = JOIN_RANGE_RATIO
) -> dict[str, int]:
    """Each node that is a Concat of tensors whose ranges (largest magnitude over the samples)
    differ by more than ``ratio``, or that follows one on the way to the outputs, with the size of
    the smallest such join and its followers (pure).

    A detector's head concatenates box offsets (units to hundreds) with sigmoid scores that
    calibration sees near 0: one INT8 scale for the result keeps the boxes and rounds the scores
    away, and no per-layer noise ranking finds it, because the join's noise power is the boxes'.
    Kept in float with what follows it, the join costs a handful of layers: the ddddocr
    detector's three head Concats and five nodes after them took the worst channel's cosine from
    0.909 to 0.996."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)

    def peak(t: str) -> float | None:
        acts = float_acts.get(t)
        if not acts:
            return None
        values = [
            float(np.max(np.abs(a))) for a in acts if np.asarray(a).size and np.asarray(a).dtype.kind == "f"
        ]
        return max(values) if values else None

    out: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type != "Concat" or not n.name:
            continue
        peaks = [p for p in (peak(t) for t in n.input if t) if p is not None]
        if len(peaks) < 2 or max(peaks) <= ratio * max(min(peaks), _EPS):
            continue
        closure: list[str] = []
        seen: set[str] = set()
        stack = [n]
        while stack:
            m = stack.pop()
            if m.name in seen:
                continue
            seen.add(m.name)
            closure.append(m.name)
            for t in m.output:
                stack.extend(consumers.get(t, []))
        for name in closure:
            out[name] = min(out.get(name, len(closure)), len(closure))
    return out


# -- ranking ---------------------------------------------------------------------------------------


def _noise(ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
    r = np.concatenate([np.asarray(a, np.float64).ravel() for a in ref])
    g = np.concatenate([np.asarray(a, np.float64).ravel() for a in got])
    if r.shape != g.shape:
        return 0.0
    return float(np.sum((r - g) ** 2) / max(float(np.sum(r**2)), _EPS))


def _channel_noise(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], tail: tuple[int, ...]) -> float:
    """The worst channel's relative noise power (channels as the gate scores them) of a tensor
    whose sample shape is ``tail`` (the debugging tools save tensors flattened); a channel equal
    to FP32 within float32 rounding has none."""
    r = np.concatenate([np.asarray(a, np.float64).ravel() for a in ref])
    g = np.concatenate([np.asarray(a, np.float64).ravel() for a in got])
    per = int(np.prod(tail)) if tail else 0
    if r.shape != g.shape or len(tail) < 2 or per <= 0 or r.size % per:
        return _noise(ref, got)
    r, g = r.reshape(-1, *tail), g.reshape(-1, *tail)
    r3, g3 = channels_of(r), channels_of(g)
    worst = 0.0
    for c in range(r3.shape[1]):
        rc, gc = r3[:, c], g3[:, c]
        peak = float(np.max(np.abs(rc))) if rc.size else 0.0
        if rc.size == 0 or float(np.max(np.abs(rc - gc))) <= ALIKE_ATOL + ALIKE_RTOL * peak:
            continue
        worst = max(worst, float(np.sum((rc - gc) ** 2) / max(float(np.sum(rc**2)), _EPS)))
    return worst


def _sample_shape(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    """A graph output's shape after the batch axis when every one of those dims is fixed."""
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim]
    tail = tuple(dims[1:])
    return tail if len(dims) >= 3 and all(d > 0 for d in tail) else None


def quantized_nodes(qdq: onnx.ModelProto) -> set[str]:
    """Names of the QDQ model's non-Q/DQ nodes that take at least one input from a
    ``DequantizeLinear`` (the layers quantization touched)."""
    dq_out = {o for n in qdq.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {
        n.name
        for n in qdq.graph.node
        if n.op_type not in _QDQ and n.name and any(i in dq_out for i in n.input)
    }


def layer_costs_from_activations(
    float_model: onnx.ModelProto,
    quantized: set[str],
    matched: dict[str, dict[str, Sequence[np.ndarray]]],
    qdq_raw: dict[str, Sequence[np.ndarray]],
    float_acts: dict[str, Sequence[np.ndarray]],
) -> list[LayerCost]:
    """Rank ``quantized`` layers of ``float_model`` (pure): see the module docstring.

    ``matched`` is ``create_activation_matching``'s result (per tensor ``float``, ``pre_qdq``,
    ``post_qdq``), ``qdq_raw``/``float_acts`` every saved tensor of each model by name.
    """
    graph_outputs = {o.name: _sample_shape(o) for o in float_model.graph.output}

    def noise(t: str, ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
        tail = graph_outputs.get(t)
        return _noise(ref, got) if tail is None else _channel_noise(ref, got, tail)

    def against_float(t: str, side: str) -> float | None:  # FP32 against t before/after its Q/DQ
        m = matched.get(t)
        if m is not None and "float" in m and side in m:
            return noise(t, m["float"], m[side])
        if t in float_acts and t in qdq_raw:
            return noise(t, float_acts[t], qdq_raw[t])
        return None

    def consumed(t: str) -> float | None:  # noise of what a consumer (or the gate) gets: after Q/DQ
        return against_float(t, "post_qdq")

    def local(t: str) -> float:  # noise of the Q/DQ pair itself on t
        m = matched.get(t)
        return _noise(m["pre_qdq"], m["post_qdq"]) if m is not None else 0.0

    def produced(t: str) -> float | None:  # noise of a layer's result before its output Q/DQ
        return against_float(t, "pre_qdq")

    joins = mixed_range_joins(float_model, float_acts)
    out = []
    for position, node in enumerate(float_model.graph.node):
        if node.name not in quantized:
            continue
        ins = [x for x in (consumed(t) for t in node.input if t) if x is not None]
        outs = [x for x in (produced(t) for t in node.output if t) if x is not None]
        # a graph output as the gate gets it: after its own Q/DQ
        outs += [x for x in (consumed(t) for t in node.output if t in graph_outputs) if x is not None]
        added = max(0.0, max(outs, default=0.0) - max(ins, default=0.0))
        cost = added + max((local(t) for t in node.input if t), default=0.0)
        out.append(LayerCost(node.name, node.op_type, cost, position, joins.get(node.name, 0)))
    out.sort(key=lambda c: -c.cost)
    return out


def rank_qdq_layers(
    source: Path,
    qdq_path: Path,
    samples: dict[str, np.ndarray],
    inputs: tuple[TensorSpec, ...],
    rows: int = RANK_ROWS,
) -> tuple[LayerCost, ...]:
    """The layers of the QDQ model at ``qdq_path`` (quantized from ``source`` after
    :func:`compilers.ort_tools.pre_process`), costliest first. Runs both models under ONNX
    Runtime with graph optimisation off, so Q/DQ pairs are computed as float math. Raises
    :class:`~compilers.errors.ToolchainError`."""
    from onnxruntime.quantization import qdq_loss_debug as dbg

    from compilers import ort_tools

    def run() -> tuple[LayerCost, ...]:
        with tempfile.TemporaryDirectory(prefix="edgefleet-rank-") as tmp:
            work = Path(tmp)
            pre = work / "pre.onnx"
            ort_tools.pre_process(source, pre)
            dbg.modify_model_output_intermediate_tensors(str(pre), str(work / "float_aug.onnx"))
            dbg.modify_model_output_intermediate_tensors(str(qdq_path), str(work / "qdq_aug.onnx"))
            float_acts = dbg.collect_activations(
                str(work / "float_aug.onnx"), ort_tools.reader_of(samples, inputs, rows)
            )
            qdq_acts = dbg.collect_activations(
                str(work / "qdq_aug.onnx"), ort_tools.reader_of(samples, inputs, rows)
            )
            matched = dbg.create_activation_matching(qdq_acts, float_acts)
            qdq = onnx.load(str(qdq_path), load_external_data=False)
            ranked = layer_costs_from_activations(
                onnx.load(str(pre), load_external_data=False),
                quantized_nodes(qdq),
                matched,
                qdq_acts,
                float_acts,
            )
        return tuple(ranked)

    return ort_tools._tool("ranking layers by quantization error", run)


# -- chosen one by one at the outputs ----------------------------------------------------------

# The search at the outputs runs where the graph has at most this many quantized layers (each
# step tries every layer not yet chosen), within SEARCH_SECONDS, on at most SEARCH_ROWS
# calibration samples: fewer (down to SEARCH_MIN_ROWS) where the model is slow enough that its
# first step would take more than a quarter of the time (fewer samples choose less well: Silero
# VAD's layers, chosen on 16 samples, did not pass where those chosen on 128 did).
SEARCH_POOL = 64
SEARCH_SECONDS = 120.0
SEARCH_ROWS = 128
SEARCH_MIN_ROWS = 16
SEARCHED_BY = "each layer kept in float in turn, with those chosen before, scored at the model's outputs"


def greedy_float_layers(
    pool: Sequence[str],
    agreement: Callable[[tuple[str, ...]], float],
    cap: int,
    clock: Callable[[], float],
    seconds: float,
) -> list[tuple[str, float]]:
    """Forward selection: up to ``cap`` layers of ``pool``, each the one whose keeping in float,
    with those chosen before, gives the highest ``agreement`` (the worst output's similarity to
    FP32); the layers in the order they were chosen, each with the agreement it brought (pure
    but for the two callables).

    Per-layer noise misses layers whose harm shows only downstream (a sum of squares quantized
    before its square root: little noise power, large error where the values are small) and
    layers that matter only together; scoring at the outputs sees both. Every step tries every
    layer left while ``seconds`` (by ``clock``) allow it; when the steps left would not fit, the
    later ones try only the layers that scored best alone, as many as fit; when time runs out
    mid-step, that step's best so far is the last one chosen."""
    start = clock()
    steps = min(cap, len(pool))
    chosen: list[tuple[str, float]] = []
    left = list(pool)
    alone: dict[str, float] = {}
    while left and len(chosen) < steps:
        began, tried = clock(), 0
        best: tuple[float, str] | None = None
        for node in left:
            score = agreement((*(n for n, _ in chosen), node))
            tried += 1
            if not chosen:
                alone[node] = score
            if best is None or score > best[0]:
                best = (score, node)
            if clock() - start > seconds:
                break
        assert best is not None
        chosen.append((best[1], best[0]))
        left.remove(best[1])
        now = clock()
        spare, to_go = seconds - (now - start), steps - len(chosen)
        if spare <= 0:
            break
        per_try = (now - began) / tried
        if to_go and per_try * len(left) * to_go > spare:
            fits = max(1, int(spare / (per_try * to_go)))
            left = sorted(left, key=lambda n: -alone.get(n, -math.inf))[:fits]
    return chosen


def _similarity(ref: np.ndarray, got: np.ndarray) -> float:
    """Cosine similarity of float outputs over the elements FP32 gives a number for (0 where the
    quantized model gives none); the share of equal elements otherwise (1 when both are all
    zeros)."""
    if ref.shape != got.shape:
        return 0.0
    if not np.issubdtype(ref.dtype, np.floating):
        return exact_match(ref, got)
    r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    finite = np.isfinite(r)  # what FP32 itself leaves undefined is not scored
    if not np.all(np.isfinite(g[finite])):
        return 0.0
    r, g = r[finite], g[finite]
    nr, ng = float(np.linalg.norm(r)), float(np.linalg.norm(g))
    if nr == 0.0 and ng == 0.0:
        return 1.0
    return float(r @ g / max(nr * ng, _EPS))


def search_at_outputs(
    source: Path,
    qdq_path: Path,
    samples: dict[str, np.ndarray],
    inputs: tuple[TensorSpec, ...],
    ranked: Sequence[LayerCost],
    cap: int,
    seconds: float = SEARCH_SECONDS,
    max_rows: int = SEARCH_ROWS,
) -> list[LayerCost]:
    """The ``ranked`` layers of the QDQ model at ``qdq_path`` chosen by
    :func:`greedy_float_layers`, each candidate scored by running the model with the Q/DQ
    around it and those chosen before removed (:func:`strip_qdq`, as TensorRT would compute it)
    on at most ``max_rows`` calibration samples against FP32, up to the step that agreed best;
    ``[]`` where more than :data:`SEARCH_POOL` layers are ranked. Raises
    :class:`~compilers.errors.ToolchainError`."""
    if not ranked or len(ranked) > SEARCH_POOL or cap <= 0:
        return []
    import onnxruntime as ort

    from compilers import ort_tools

    def run() -> list[LayerCost]:
        with tempfile.TemporaryDirectory(prefix="edgefleet-search-") as tmp:
            pre = Path(tmp) / "pre.onnx"
            ort_tools.pre_process(source, pre)
            float_model = onnx.load(str(pre))
        qdq = onnx.load(str(qdq_path))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # Q/DQ as float math
        opts.log_severity_level = 3
        # the reader defines no len(), which list() would ask for
        feeds = [f for f in ort_tools.reader_of(samples, inputs, max_rows)]

        def outputs(model: onnx.ModelProto) -> list[np.ndarray]:
            cpu = ["CPUExecutionProvider"]
            session = ort.InferenceSession(model.SerializeToString(), opts, providers=cpu)
            got = [session.run(None, f) for f in feeds]
            return [np.concatenate([np.asarray(g[i]).reshape(-1) for g in got]) for i in range(len(got[0]))]

        started = time.monotonic()
        ref = outputs(float_model)
        per_row = (time.monotonic() - started) / max(1, sum(len(next(iter(f.values()))) for f in feeds))
        # a candidate runs Q/DQ too (about half as long again), and the first step runs them all
        fit = int(seconds / 4 / max(len(ranked) * per_row * 1.5, 1e-9))
        if fit < max_rows:
            feeds = [f for f in ort_tools.reader_of(samples, inputs, max(SEARCH_MIN_ROWS, fit))]
            ref = outputs(float_model)

        def agreement(nodes: tuple[str, ...]) -> float:
            got = outputs(strip_qdq(qdq, nodes, float_model))
            return min((_similarity(r, g) for r, g in zip(ref, got, strict=True)), default=1.0)

        by_name = {c.node: c for c in ranked}
        chosen = greedy_float_layers([c.node for c in ranked], agreement, cap, time.monotonic, seconds)
        if not chosen:
            return []
        # up to the step that agreed best: a layer that helped nothing can cost accuracy elsewhere
        best = max(range(len(chosen)), key=lambda i: (chosen[i][1], -i))
        return [by_name[n] for n, _ in chosen[: best + 1]]

    return ort_tools._tool("choosing layers at the outputs", run)


# -- TensorRT: Q/DQ removed around float layers -------------------------------------------------


def _dequantize(w: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int) -> np.ndarray:
    z = np.zeros_like(scale, dtype=np.float64) if zero is None else zero.astype(np.float64)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * w.ndim
        shape[axis] = scale.size
        scale, z = scale.reshape(shape), z.reshape(shape)
    return ((w.astype(np.float64) - z) * scale.astype(np.float64)).astype(np.float32)


def strip_qdq(
    qdq: onnx.ModelProto, nodes: Iterable[str], float_model: onnx.ModelProto | None = None
) -> onnx.ModelProto:
    """A copy of ``qdq`` where the named nodes take float inputs: each input that came through a
    ``QuantizeLinear`` → ``DequantizeLinear`` pair is rewired to the tensor before the pair, and
    each INT8 weight through a ``DequantizeLinear`` is replaced by its FP32 value (from
    ``float_model`` when it has the weight, else dequantized); the Q/DQ pairs on their outputs are
    bypassed (their consumers take the float result and quantize it again where they have their
    own pair). Q/DQ nodes and initializers left
    without consumers are removed. Consumers other than the named nodes keep their Q/DQ."""
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    g = model.graph
    keep = set(nodes)
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name: i for i in g.initializer}
    originals = {} if float_model is None else {i.name: i for i in float_model.graph.initializer}
    added: dict[str, str] = {}

    def float_weight(dq: onnx.NodeProto) -> str:
        if dq.output[0] in added:
            return added[dq.output[0]]
        q_init = inits[dq.input[0]]
        candidates = [
            dq.output[0].removesuffix("_DequantizeLinear_Output"),
            dq.input[0].removesuffix("_quantized"),
        ]
        for name in candidates:
            orig = originals.get(name)
            if orig is not None and tuple(orig.dims) == tuple(q_init.dims):
                value = numpy_helper.to_array(orig)
                break
        else:
            scale = numpy_helper.to_array(inits[dq.input[1]])
            zero = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] else None
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            value = _dequantize(numpy_helper.to_array(q_init), scale, zero, axis)
        name = f"{dq.output[0]}_float"
        g.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        added[dq.output[0]] = name
        return name

    graph_outputs = {o.name for o in g.output}
    folded = _folded_consumers(qdq, float_model)
    for node in g.node:
        if node.name not in keep:
            continue
        for j, t in enumerate(list(node.output)):
            if t not in folded:  # a Relu folded into this Q/DQ pair would be lost without it
                _float_output(g, node, j, t, graph_outputs)
        for i, t in enumerate(node.input):
            dq = producer.get(t)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            src = producer.get(dq.input[0])
            if src is not None and src.op_type == "QuantizeLinear":
                node.input[i] = src.input[0]
            elif dq.input[0] in inits:
                node.input[i] = float_weight(dq)
    _prune(model, {i.name for i in qdq.graph.initializer})
    return model


def _folded_consumers(qdq: onnx.ModelProto, float_model: onnx.ModelProto | None) -> set[str]:
    """Tensors whose consumer in ``float_model`` the quantizer dropped (a Relu or Clip folded
    into the output's Q/DQ range, as ONNX Runtime does for asymmetric activations)."""
    if float_model is None:
        return set()
    present = {n.name for n in qdq.graph.node}
    # The quantizer gives the producer the dropped node's output name, or keeps its own.
    return {
        t for n in float_model.graph.node if n.name and n.name not in present for t in (*n.input, *n.output)
    }


def _float_output(g: onnx.GraphProto, node: onnx.NodeProto, j: int, t: str, graph_outputs: set[str]) -> None:
    """Bypass the Q → DQ pairs on ``node``'s output ``t``: their consumers take ``t`` itself; a
    pair that ends in a graph output gives that name to ``node``'s output instead."""
    for q in [n for n in g.node if n.op_type == "QuantizeLinear" and n.input and n.input[0] == t]:
        for dq in [
            n for n in g.node if n.op_type == "DequantizeLinear" and n.input and n.input[0] == q.output[0]
        ]:
            out = dq.output[0]
            if out in graph_outputs:
                g.node.remove(dq)
                node.output[j] = out
                for other in g.node:
                    for k, x in enumerate(other.input):
                        if x == t:
                            other.input[k] = out
                t = out
            else:
                for other in g.node:
                    for k, x in enumerate(other.input):
                        if x == out:
                            other.input[k] = t


def _prune(model: onnx.ModelProto, prunable_inits: set[str]) -> None:
    """Remove Q/DQ nodes whose outputs nothing uses, then initializers nothing uses."""
    g = model.graph
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if n.op_type in _QDQ and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input} | outputs
    for init in [i for i in g.initializer if i.name in prunable_inits and i.name not in used]:
        g.initializer.remove(init)


def with_float_producers(model: onnx.ModelProto, nodes: Sequence[str]) -> tuple[str, ...]:
    """``nodes`` plus, one level up, each node whose outputs only ``nodes`` consume (pure).

    ONNX Runtime's x86 quantizer gives a Conv's or MatMul's output its own Q/DQ pair (for its INT8
    kernel) even when no INT8 layer reads it, so excluding only the consumer would still quantize
    the tensor that hurt it; excluding its producer as well keeps that tensor float."""
    chosen = list(dict.fromkeys(nodes))
    keep = set(chosen)
    consumers: dict[str, set[str]] = {}
    for n in model.graph.node:
        for t in n.input:
            consumers.setdefault(t, set()).add(n.name)
    outputs = {o.name for o in model.graph.output}
    producer = {o: n for n in model.graph.node for o in n.output}
    for name in list(chosen):
        node = next((n for n in model.graph.node if n.name == name), None)
        if node is None:
            continue
        for t in node.input:
            p = producer.get(t)
            if p is None or not p.name or p.name in keep or p.op_type in _QDQ:
                continue
            if all(o not in outputs and consumers.get(o, set()) <= keep for o in p.output):
                chosen.append(p.name)
                keep.add(p.name)
    return tuple(chosen)
