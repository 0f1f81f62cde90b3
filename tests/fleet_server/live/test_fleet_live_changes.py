"""The live feed's change tracker (pure): a summary is passed on when it changed, a deployment
that reached a final state once more and then forgotten, and frames are one-line JSON."""

from __future__ import annotations

import json

from fleet_server.live import ChangeTracker, frame


def dep(dep_id: int, state: str, healthy: int = 0) -> dict[str, object]:
    return {"id": dep_id, "state": state, "counts": {"HEALTHY": healthy}}


def test_only_changed_deployments_are_passed_on_and_final_ones_forgotten() -> None:
    t = ChangeTracker()
    assert t.deployments([dep(1, "RUNNING"), dep(2, "SUCCEEDED")]) == [dep(1, "RUNNING"), dep(2, "SUCCEEDED")]
    assert t.live_ids == {1, 2}
    assert t.deployments([dep(1, "RUNNING"), dep(2, "SUCCEEDED")]) == []  # nothing moved
    assert t.deployments([dep(1, "RUNNING", healthy=1), dep(2, "SUCCEEDED")]) == [dep(1, "RUNNING", 1)]
    # Superseded: sent once more, then no longer looked at.
    assert t.deployments([dep(2, "SUPERSEDED")]) == [dep(2, "SUPERSEDED")]
    assert t.live_ids == {1}
    assert t.deployments([dep(1, "ROLLED_BACK")]) == [dep(1, "ROLLED_BACK")]
    assert t.live_ids == frozenset()


def test_the_fleet_summary_is_passed_on_when_it_changed() -> None:
    t = ChangeTracker()
    assert t.fleet({"devices": 1}) == {"devices": 1}
    assert t.fleet({"devices": 1}) is None
    assert t.fleet({"devices": 2}) == {"devices": 2}


def test_a_frame_is_one_event_with_one_line_of_json() -> None:
    text = frame("deployment", {"id": 1, "error": "two\nlines"})
    head, data, end = text.split("\n", 2)
    assert head == "event: deployment" and end == "\n"
    assert data.startswith("data: ") and json.loads(data[6:]) == {"id": 1, "error": "two\nlines"}
