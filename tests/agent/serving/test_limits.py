"""The request body limit follows what the model's inputs can need."""

from __future__ import annotations

from agent.contracts.manifest import TensorSpec
from agent.serving.limits import HEADER_SLACK, JSON_BYTES_PER_VALUE, MAX_ROWS, body_limit


def test_fixed_inputs_bound_the_body() -> None:
    assert body_limit([TensorSpec("x", "float32", (1, 3))]) == 3 * JSON_BYTES_PER_VALUE + HEADER_SLACK


def test_a_batch_axis_allows_max_rows() -> None:
    specs = [TensorSpec("x", "float32", (-1, 1, 8, 8)), TensorSpec("m", "int64", (-1, 2))]
    assert body_limit(specs) == MAX_ROWS * (64 + 2) * JSON_BYTES_PER_VALUE + HEADER_SLACK


def test_another_dynamic_dimension_leaves_the_server_wide_limit() -> None:
    assert body_limit([TensorSpec("img", "float32", (-1, 3, -1, -1))]) is None
