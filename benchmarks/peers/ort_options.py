"""ONNX Runtime session options as plain JSON, so a peer in another venv opens its session
exactly as the agent opened its own (threads, spinning, optimisation level).

Imports nothing of ours: the peers' venvs have only their server and onnxruntime.
"""

from __future__ import annotations

import json
from typing import Any

# Session config entries the agent may set; ORT has no call that lists the ones set.
CONFIG_KEYS = (
    "session.intra_op.allow_spinning",
    "session.inter_op.allow_spinning",
    "session.force_spinning_stop",
    "session.set_denormal_as_zero",
)


def describe(so: Any) -> dict[str, Any]:
    """The options of an ``ort.SessionOptions`` (e.g. ``session.get_session_options()``)."""
    config = {}
    for key in CONFIG_KEYS:
        try:
            value = so.get_session_config_entry(key)
        except Exception:  # ORT raises when the entry was never set
            continue
        if value != "":
            config[key] = value
    return {
        "intra_op_num_threads": so.intra_op_num_threads,
        "inter_op_num_threads": so.inter_op_num_threads,
        "execution_mode": int(so.execution_mode),
        "graph_optimization_level": int(so.graph_optimization_level),
        "config": config,
    }


def build(text: str) -> Any:
    """An ``ort.SessionOptions`` from :func:`describe`'s JSON."""
    import onnxruntime as ort

    d = json.loads(text)
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(d["intra_op_num_threads"])
    so.inter_op_num_threads = int(d["inter_op_num_threads"])
    so.execution_mode = ort.ExecutionMode(int(d["execution_mode"]))
    so.graph_optimization_level = ort.GraphOptimizationLevel(int(d["graph_optimization_level"]))
    for key, value in d["config"].items():
        so.add_session_config_entry(key, value)
    return so
