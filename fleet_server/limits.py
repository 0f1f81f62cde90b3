"""Every bound on what the server takes in and stores, in one place, with why each number.

Device messages (MQTT) are bounded in bytes per topic kind *before* they are parsed and in
nesting depth while they are; integers bound for a database column must fit it. Stored text is
truncated with a marker (:func:`truncate`) where a shortened value is still useful to a reader
(error messages), and refused where it would be wrong (a model ref, a label). Where a number is a
guess rather than a hard bound, the comment says what it must stay above.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.contracts.state import ERROR_MESSAGE_MAX, INT32_MAX, JSON_INT_MAX, TRUNCATED, truncate

# The bounds the agent's contracts hold too (agent.contracts.state says why each): generation and
# connection columns are PostgreSQL ``integer`` (SQLite would take 64 bits, but the schema must
# hold on both, and 2**31 updates is no real limit); ``seq`` and counters stay within what a JSON
# reader in a browser (the dashboard) reads exactly.
DB_INT_MAX = INT32_MAX
__all__ = ["DB_INT_MAX", "JSON_INT_MAX", "TRUNCATED", "FieldLimits", "MessageLimits", "clip", "truncate"]


@dataclass(frozen=True)
class MessageLimits:
    """Per-topic payload bounds in bytes, checked before parsing, and the nesting depth.

    A reported state is a few hundred bytes (ids, two refs, an error message the agent keeps
    short, a progress map of a few counters); a status under 200; a telemetry window a few
    hundred, and under 16 KiB at the bounds of its contract (256 class counts, 16 output
    statistics: :mod:`agent.contracts.telemetry`). 64 KiB leaves room for growth (a long error)
    and still caps what one message costs to parse and store; 4 KiB for the status, whose
    fields are fixed. The deepest contract nests four levels (telemetry → outputs → one
    output's statistics); 32 leaves room for free-form telemetry while keeping the parser's
    recursion far from Python's limit.
    """

    reported_bytes: int = 64 * 1024
    status_bytes: int = 4 * 1024
    telemetry_bytes: int = 64 * 1024
    max_depth: int = 32

    def max_bytes(self, kind: str) -> int:
        return {"reported": self.reported_bytes, "status": self.status_bytes}.get(kind, self.telemetry_bytes)


@dataclass(frozen=True)
class FieldLimits:
    """Bounds on stored fields.

    - ``error_message_chars``: a device's or compile's error message, truncated with a marker
      (a compiler's traceback is useful in its first lines; 4 KiB holds them).
    - ``error_code_chars``: the error code, truncated (codes are short enum names).
    - ``ref_chars``: ``name:version`` refs (two 128-char names and a colon; the column holds
      300). A longer one can't name a model the server has: the report is refused.
    - ``url_chars``: the inference URL column (512); a longer one is not recorded.
    - ``labels``, ``label_key_chars``, ``label_value_chars``: a device's labels (Kubernetes'
      63-char keys; values select groups, 256 is plenty); refused over them.
    - ``facts_bytes``: a device's facts as JSON (arch, os, runtimes: well under 2 KiB); refused.
    - ``request_body_bytes``: a JSON REST body read whole (registration, groups, deployments).
      A group naming 10,000 devices by id is about 1.4 MB; 2 MiB holds that.
    """

    error_message_chars: int = ERROR_MESSAGE_MAX
    error_code_chars: int = 64
    ref_chars: int = 300
    url_chars: int = 512
    labels: int = 64
    label_key_chars: int = 63
    label_value_chars: int = 256
    facts_bytes: int = 16 * 1024
    request_body_bytes: int = 2 * 1024 * 1024


MESSAGE_LIMITS = MessageLimits()
FIELD_LIMITS = FieldLimits()


def clip(text: str, limit: int = 200) -> str:
    """A bounded form of text that may come from a device (a topic, a contract error naming a
    field's value), for logs and error answers: never echo a whole payload."""
    return truncate(text, limit)
