"""SIGKILL a real agent at every state of the update machine, mid-download and in the middle of
journal writes, restart it on the same data directory and check what it comes back to: a
complete model serving at once (old or new), the update ending in a terminal state, the last
report matching the journal, a download resumed from the bytes on disk (the Range header the
server saw), no temp file left and no partial file loaded.

The kills inside the agent come from ``tests/faults/kill_agent.py`` (the real agent, dying at a
named journal write); the mid-download kills are sent from here once the part file holds 30% or
60% of a throttled download.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.contracts.topics import device_topic
from agent.update.slots import SlotStore
from tests.agent.agent_testkit import AgentProcess, ArtifactServer, BuiltBundle, Observer, desired_state
from tests.faults.faultkit import (
    assert_report_matches_journal,
    journal,
    reported,
    requests_for,
    serves_complete,
    stale_temps,
    wait_part,
    wait_terminal,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.e2e]
DEVICE = "edge-kill-1"

# (kill point, what gen 2 installs, the journal state a restart finds, its recovery report)
# "fast": v2; "slow": v3, 1.5 MB downloaded slowly; "failing": v4, whose self-test fails.
RESUMED = "resumed after a crash at {} (1 of 2)"
POINTS: list[tuple[str, str, str, str | None]] = [
    ("download@30%", "slow", "DOWNLOADING", None),
    ("download@60%", "slow", "DOWNLOADING", None),
    ("DOWNLOADING@2:saved", "fast", "DOWNLOADING", None),
    ("VERIFYING@2:saved", "fast", "VERIFYING", RESUMED.format("VERIFYING")),
    ("INSTALLING@2:saved", "fast", "INSTALLING", RESUMED.format("INSTALLING")),
    ("LOADING@2:saved", "fast", "LOADING", RESUMED.format("LOADING")),
    ("SELF_TEST@2:saved", "fast", "SELF_TEST", RESUMED.format("SELF_TEST")),
    ("COMMITTED@2:saved", "fast", "COMMITTED", None),
    ("ROLLING_BACK@2:saved", "failing", "ROLLING_BACK", None),
    # Mid-journal-write: temp file written but not renamed (the old journal holds), renamed but
    # the directory not fsynced (the new one holds, as no power was cut).
    ("VERIFYING@2:written", "fast", "DOWNLOADING", None),
    ("VERIFYING@2:renamed", "fast", "VERIFYING", RESUMED.format("VERIFYING")),
    ("COMMITTED@2:written", "fast", "SELF_TEST", RESUMED.format("SELF_TEST")),
    ("COMMITTED@2:renamed", "fast", "COMMITTED", None),
    ("ROLLING_BACK@2:written", "failing", "SELF_TEST", RESUMED.format("SELF_TEST")),
    ("ROLLING_BACK@2:renamed", "failing", "ROLLING_BACK", None),
]


@pytest.mark.parametrize(("point", "which", "found", "recovery"), POINTS, ids=[p[0] for p in POINTS])
def test_killed_at_a_point_of_the_update_comes_back_serving_and_finishes(
    point: str,
    which: str,
    found: str,
    recovery: str | None,
    tmp_path: Path,
    fleet: ArtifactServer,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    slow_bundle: BuiltBundle,
    failing_bundle: BuiltBundle,
    spawn: Callable[..., AgentProcess],
    fault_log: Callable[..., None],
) -> None:
    new = {"fast": bundles["2"], "slow": slow_bundle, "failing": failing_bundle}[which]
    fleet.add(new.model, new.tar)
    known = {**bundles, "3": slow_bundle}
    data, mark = tmp_path / "data", tmp_path / "kill-mark.json"
    desired = device_topic(DEVICE, "desired")
    in_agent = not point.startswith("download@")
    env = {"EDGEFLEET_TEST_KILL": point, "EDGEFLEET_TEST_KILL_MARK": str(mark)} if in_agent else None
    first = spawn(data, fleet.url, DEVICE, module="tests.faults.kill_agent" if in_agent else "agent", env=env)
    first.wait_ready()
    observer.publish(desired, desired_state(DEVICE, 1, bundles["1"].model).to_json())
    wait_terminal(observer, 1)

    if which == "slow":
        fleet.behaviour.chunk, fleet.behaviour.throttle_s = 16 << 10, 0.02
    observer.publish(desired, desired_state(DEVICE, 2, new.model).to_json())
    at_kill = 0
    if in_agent:
        assert first.proc.wait(60) == -9, "the agent did not die at the kill point"
        first.kill()
        assert mark.exists()
    else:
        part = wait_part(
            data, new.model.sha256, int(new.model.size * float(point.split("@")[1].rstrip("%")) / 100)
        )
        first.kill()
        at_kill = part.stat().st_size
        assert 0 < at_kill < new.model.size
        assert journal(data)["downloaded"] <= at_kill  # the journal never runs ahead of the disk
    fleet.behaviour.throttle_s = 0.0
    left = journal(data)
    assert left["state"] == found, left
    temps_at_kill = stale_temps(data)
    assert bool(temps_at_kill) == point.endswith(":written")
    requests_before = len(fleet.requests)

    started = time.monotonic()
    second = spawn(data, fleet.url, DEVICE)
    second.wait_ready()
    at_once = serves_complete(second.url, known)  # a complete model at once, before the resume ends
    done = wait_terminal(observer, 2)
    took = time.monotonic() - started
    final = serves_complete(second.url, known)
    assert_report_matches_journal(done, data)
    assert not stale_temps(data)
    # No partial file loaded: the slot serving is the bundle as its manifest lists it.
    j = journal(data)
    SlotStore(data / "slots").verify(j["active"]["slot"])
    if which == "failing":
        assert done["state"] == "IDLE" and done["error"]["code"] == "SELF_TEST_FAILED"
        assert final == "1" and 2 in j["failed_generations"]
    else:
        assert done["state"] == "COMMITTED" and done["error"] is None and final == new.version
        assert not list((data / "downloads").rglob("*.tar"))  # cleaned after the commit
    assert done.get("recovery") == recovery
    ranges = [r["range"] for r in requests_for(fleet, new.model, since=requests_before)]
    if at_kill:
        assert ranges and ranges[0] == f"bytes={at_kill}-"  # resumed from the bytes on disk
    elif found in ("VERIFYING", "INSTALLING", "LOADING", "SELF_TEST", "COMMITTED", "ROLLING_BACK"):
        assert ranges == []  # the complete download was kept: nothing fetched again
    assert not reported(observer, 2, "ROLLING_BACK") or which == "failing"
    assert second.terminate() == 0
    assert "Traceback" not in second.log.read_text()
    fault_log(
        "kill",
        point,
        journal_at_kill=found,
        temps_at_kill=temps_at_kill,
        part_bytes_at_kill=at_kill or None,
        range_after=ranges[0] if ranges else None,
        serving_at_restart=at_once,
        serving_after=final,
        ended=done["state"],
        recovery=done.get("recovery"),
        seconds_to_terminal=round(took, 2),
        recovered=True,
    )
