"""What the live feed sends (pure): the deployments and fleet summary that changed since the last
look, framed as server-sent events.

A :class:`ChangeTracker` remembers the last summary it passed on per deployment and for the
fleet, so each look costs a comparison per *live* deployment (one whose story may still move:
not ROLLED_BACK or SUPERSEDED), never a device row. A deployment that reaches a final state is
passed on once more and then forgotten, so the memory stays as small as the live set.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fleet_server.states import FINAL_DEPLOYMENT


def compact(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def frame(event: str, data: Any) -> str:
    """One server-sent event: ``event: NAME`` and its JSON on one ``data:`` line."""
    return f"event: {event}\ndata: {compact(data)}\n\n"


class ChangeTracker:
    def __init__(self) -> None:
        self._sent: dict[int, str] = {}
        self._fleet: str | None = None

    @property
    def live_ids(self) -> frozenset[int]:
        """Deployments passed on whose state was not final yet: the next look reads them again
        even if they have become final since (so their last move is sent)."""
        return frozenset(self._sent)

    def deployments(self, summaries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The summaries (``id``, ``state``, ...) that differ from the last ones passed on."""
        changed = []
        for summary in summaries:
            dep_id, text = int(summary["id"]), compact(summary)
            if self._sent.get(dep_id) != text:
                changed.append(summary)
            if summary["state"] in FINAL_DEPLOYMENT:
                self._sent.pop(dep_id, None)
            else:
                self._sent[dep_id] = text
        return changed

    def fleet(self, summary: dict[str, Any]) -> dict[str, Any] | None:
        """``summary`` if it differs from the last fleet summary passed on, else ``None``."""
        text = compact(summary)
        if text == self._fleet:
            return None
        self._fleet = text
        return summary
