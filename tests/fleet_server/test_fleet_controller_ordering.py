"""Rollout passes that race (``reconcile()`` may be called from any thread besides the
controller's own): the desired state a device is left with, the retained message, must be the
newest generation."""

from __future__ import annotations

import threading
from typing import Any

from agent.contracts import DesiredState
from fleet_server.deployments import create_deployment
from tests.fixtures.enroll import enroll


class SlowFirstPublisher:
    """Records what is published; the first publish lets ``meanwhile`` run (up to ``grace`` s)
    before it records, as a paho call delayed by a thread switch would."""

    def __init__(self, meanwhile: Any, grace: float = 1.0) -> None:
        self.published: list[tuple[str, int]] = []
        self._meanwhile = meanwhile
        self._grace = grace
        self._lock = threading.Lock()
        self.other: threading.Thread | None = None

    def publish_desired(self, desired: DesiredState) -> None:
        if self.other is None:
            self.other = threading.Thread(target=self._meanwhile)
            self.other.start()
            self.other.join(self._grace)  # with passes publishing under their lock, it waits for us
        with self._lock:
            self.published.append((desired.device_id, desired.generation))


def test_the_last_published_generation_is_the_newest_when_passes_race(
    settings: Any, start_app: Any, seed_bundles: Any, fleet: Any
) -> None:
    c = start_app(settings)
    seed_bundles(c, version="1.0")
    seed_bundles(c, version="2.0")
    for device_id in ("d1", "d2"):
        r = enroll(c, {"device_id": device_id, "profile": "x86-64-avx2"})
        assert r.status_code == 200, r.text
    assert c.post("/api/v1/groups", json={"name": "g", "devices": ["d1", "d2"]}).status_code == 201
    fl = fleet(c)
    fl.controller.stop()  # passes run only when this test says so
    with fl.sessions() as s:
        create_deployment(s, fl.profiles, "digits:1.0", "g")

    def newer_deployment_and_its_pass() -> None:
        with fl.sessions() as s:
            create_deployment(s, fl.profiles, "digits:2.0", "g")
        fl.controller.reconcile()

    pub = SlowFirstPublisher(newer_deployment_and_its_pass)
    fl.controller.publisher = pub
    fl.controller.reconcile()  # pass A: generation 1; pass B (generation 2) starts while it publishes
    assert pub.other is not None
    pub.other.join(10)

    stored = {d["device_id"]: d["desired_generation"] for d in c.get("/api/v1/devices").json()}
    assert stored == {"d1": 2, "d2": 2}
    last: dict[str, int] = {}
    for device_id, generation in pub.published:
        last[device_id] = generation
    assert sorted(pub.published) == [("d1", 1), ("d1", 2), ("d2", 1), ("d2", 2)]
    assert last == stored, pub.published  # the retained message is the newest generation
