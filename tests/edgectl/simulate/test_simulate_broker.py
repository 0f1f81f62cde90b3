"""The simulator on a real Mosquitto with no fleet server: one loop thread drives every device,
and each speaks the agent's protocol (status with its will, the report sequence, telemetry)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from edgectl.simulate import Faults, SimConfig, Simulator, device_ids
from tests.edgectl.simulate.sim_kit import BrokerOnly, Wire, desired

SEQUENCE = ["DOWNLOADING", "VERIFYING", "INSTALLING", "LOADING", "SELF_TEST", "COMMITTED"]


@pytest.fixture
def wire(mosquitto_broker: Any) -> Iterator[Wire]:
    w = Wire(mosquitto_broker.host, mosquitto_broker.port)
    yield w
    w.close()


def _sim(broker: Any, n: int, faults: Faults | None = None, **config: Any) -> Simulator:
    defaults: dict[str, Any] = {"telemetry_interval": 0.3, "step_delay": (0.0, 0.02)}
    cfg = SimConfig("http://127.0.0.1:1", devices=n, prefix="b", **(defaults | config))
    return Simulator(cfg, faults, registrar=BrokerOnly(broker.host, broker.port))


def test_thirty_devices_on_one_thread_walk_the_agent_sequence(mosquitto_broker: Any, wire: Wire) -> None:
    threads = threading.active_count()
    sim = _sim(mosquitto_broker, 30)
    sim.start(timeout=30)
    try:
        assert threading.active_count() - threads <= 1  # the loop thread; no thread per device
        ids = list(sim.devices)
        wire.wait(lambda w: {s.device_id for s in w.of("status") if s.online} == set(ids), what="online")
        for d in ids:
            wire.publish_desired(desired(d, 1))
        wire.wait(lambda w: all(w.states(d, 1)[-1:] == ["COMMITTED"] for d in ids), what="commits")
        for d in ids:
            assert wire.states(d, 1) == SEQUENCE
            seqs = [r.seq for r in wire.of("reported", d)]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert sim.finals() == dict.fromkeys(ids, "COMMITTED")
        for times in sim.timeline().values():
            assert times[0]["desired_at"] <= times[0]["final_at"]
        # telemetry of the model serving, valid by the contract
        wire.wait(lambda w: {t.device_id for t in w.of("telemetry") if t.model == "digits:1"} == set(ids))
        t = next(t for t in wire.of("telemetry", ids[0]) if t.model)
        assert t.classes is not None and sum(t.classes.values()) == t.requests - t.errors
    finally:
        sim.stop()
    offline = {s.device_id for s in wire.of("status") if not s.online}
    assert offline == set(ids)  # each said so at stop, retained


def test_a_repeated_generation_is_answered_and_the_same_bundle_commits_at_once(
    mosquitto_broker: Any, wire: Wire
) -> None:
    with _sim(mosquitto_broker, 1, telemetry_interval=0) as sim:
        (d,) = sim.devices
        wire.publish_desired(desired(d, 1))
        wire.wait(lambda w: w.states(d, 1)[-1:] == ["COMMITTED"])
        before = len(wire.of("reported", d))
        wire.publish_desired(desired(d, 1))  # redelivered: no new update, the last report again
        wire.wait(lambda w: len(w.of("reported", d)) == before + 1)
        assert wire.of("reported", d)[-1] == wire.of("reported", d)[-2]
        wire.publish_desired(desired(d, 2))  # same sha256: already serving
        wire.wait(lambda w: w.states(d, 2) == ["COMMITTED"])
        wire.publish_desired(desired(d, 3, version="2", sha="b" * 64))
        wire.wait(lambda w: w.states(d, 3)[-1:] == ["COMMITTED"])
        last = wire.of("reported", d)[-1]
        assert (last.active, last.previous) == ("digits:2", "digits:1")


def test_devices_reconnect_after_the_broker_restarts(mosquitto_broker: Any, wire: Wire) -> None:
    with _sim(mosquitto_broker, 5, telemetry_interval=0) as sim:
        ids = set(sim.devices)
        wire.wait(lambda w: {s.device_id for s in w.of("status") if s.online} == ids)
        first = {s.device_id: s.connection for s in wire.of("status") if s.online}
        mosquitto_broker.restart()
        wire2 = Wire(mosquitto_broker.host, mosquitto_broker.port)
        try:
            # retained online statuses with a newer connection number than before the restart
            wire2.wait(
                lambda w: (
                    {s.device_id for s in w.of("status") if s.online and s.connection > first[s.device_id]}
                    == ids
                ),
                timeout=20,
                what="reconnects",
            )
        finally:
            wire2.close()


def test_offline_and_unresponsive_devices_stay_silent(mosquitto_broker: Any, wire: Wire) -> None:
    ids = device_ids(12, "b")

    def mixed(seed: int) -> bool:
        f = Faults(offline_share=0.3, unresponsive_share=0.3, seed=seed)
        return any(map(f.offline, ids)) and any(map(f.unresponsive, ids))

    seed = next(s for s in range(100) if mixed(s))  # the choice is a pure hash, so this is fixed
    faults = Faults(offline_share=0.3, unresponsive_share=0.3, seed=seed)
    with _sim(mosquitto_broker, 12, faults) as sim:
        modes = {d.device_id: d.mode for d in sim.devices.values()}
        assert {"offline", "unresponsive", "normal"} <= set(modes.values()), modes
        for d in modes:
            wire.publish_desired(desired(d, 1))
        normal = [d for d, m in modes.items() if m == "normal"]
        sim.wait_final(timeout=20)
        assert set(sim.finals()) == set(normal)
        assert wire.wait(lambda w: all(w.states(d, 1)[-1:] == ["COMMITTED"] for d in normal))
        online = {s.device_id for s in wire.of("status") if s.online}
        for d, m in modes.items():
            if m != "normal":
                assert wire.of("reported", d) == [] and wire.of("telemetry", d) == []
            assert (d in online) == (m != "offline")


def test_faults_set_while_running_fail_the_next_version_and_a_roll_back_works(
    mosquitto_broker: Any, wire: Wire
) -> None:
    with _sim(mosquitto_broker, 1, telemetry_interval=0.2) as sim:
        (d,) = sim.devices
        wire.publish_desired(desired(d, 1))
        wire.wait(lambda w: w.states(d, 1)[-1:] == ["COMMITTED"])
        sim.set_faults(Faults(fail_rate=1.0, latency_regression=2.0))
        wire.publish_desired(desired(d, 2, version="2", sha="b" * 64))
        wire.wait(lambda w: w.states(d, 2)[-1:] == ["IDLE"])
        failed = wire.of("reported", d)[-1]
        assert failed.error is not None and failed.error.code == "SELF_TEST_FAILED"
        assert failed.active == "digits:1"  # the previous model still serves
        wire.publish_desired(desired(d, 3))  # back to the version it ran: never fails
        wire.wait(lambda w: w.states(d, 3)[-1:] == ["COMMITTED"])
        # the version it ran first shows no regression
        wire.wait(lambda w: len([t for t in w.of("telemetry", d) if t.model == "digits:1"]) >= 2)
        p95 = {t.latency.p95_ms / t.latency.p50_ms for t in wire.of("telemetry", d) if t.latency}
        assert max(p95) < 2.0
