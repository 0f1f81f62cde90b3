"""Network faults between a real agent and the broker, and between it and the artifact server:
a fault-injecting proxy on loopback (``tests/faults/fault_proxy.py``) adds latency, partitions
the link for seconds, or stalls it half-open. Every update ends in a terminal state within its
timeout, the device ends serving a complete model, and no message is lost: the final reported
state reaches the observer after the link heals, and a desired state published during a
partition reaches the agent."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.contracts.topics import device_topic
from tests.agent.agent_testkit import AgentProcess, ArtifactServer, BuiltBundle, Observer, desired_state
from tests.faults.conftest import mqtt_settings
from tests.faults.fault_proxy import FaultProxy
from tests.faults.faultkit import reported, requests_for, serves_complete, wait_part, wait_terminal

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.e2e]
DEVICE = "edge-net-1"
DESIRED = device_topic(DEVICE, "desired")
STEPS = ["DOWNLOADING", "VERIFYING", "INSTALLING", "LOADING", "SELF_TEST", "COMMITTED"]
UPDATE_TIMEOUT = 60.0  # seconds an update may take here, faults included


@pytest.fixture
def proxies() -> Iterator[Callable[[int], FaultProxy]]:
    made: list[FaultProxy] = []

    def make(port: int) -> FaultProxy:
        made.append(FaultProxy(port))
        return made[-1]

    yield make
    for p in made:
        p.close()


def start_agent(
    tmp_path: Path,
    fleet: ArtifactServer,
    broker: Any,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    spawn: Callable[..., AgentProcess],
    *,
    broker_port: int | None = None,
    server_url: str | None = None,
) -> AgentProcess:
    """An agent serving v1, whose broker link and server URL may go through proxies."""
    fleet.behaviour.mqtt = mqtt_settings(broker.host, broker_port or broker.port)
    # A kit that signs its bundles with TUF hands the agent the root by the server's own URL;
    # through a proxy the URL differs, so the root is named here.
    root = getattr(ArtifactServer, "roots", {}).get(fleet.url)
    extra = ("--tuf-root", str(root)) if root is not None and server_url else ()
    agent = spawn(tmp_path / "data", server_url or fleet.url, DEVICE, *extra)
    agent.wait_ready()
    observer.publish(DESIRED, desired_state(DEVICE, 1, bundles["1"].model).to_json())
    assert wait_terminal(observer, 1, UPDATE_TIMEOUT)["state"] == "COMMITTED"
    return agent


def lost_steps(observer: Observer, gen: int) -> int:
    """How many of a successful update's states never reached the observer."""
    seen = {r["state"] for r in reported(observer, gen)}
    return sum(s not in seen for s in STEPS)


def slow(fleet: ArtifactServer, bundle: BuiltBundle) -> None:
    fleet.add(bundle.model, bundle.tar)
    fleet.behaviour.chunk, fleet.behaviour.throttle_s = 16 << 10, 0.02


def test_latency_on_both_links_every_report_arrives(
    tmp_path: Path,
    fleet: ArtifactServer,
    mosquitto_broker: Any,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    spawn: Callable[..., AgentProcess],
    proxies: Callable[[int], FaultProxy],
    fault_log: Callable[..., None],
) -> None:
    broker, server = proxies(mosquitto_broker.port), proxies(int(fleet.url.rsplit(":", 1)[1]))
    broker.latency = server.latency = 0.15  # 300 ms round trips on both links
    agent = start_agent(
        tmp_path, fleet, mosquitto_broker, observer, bundles, spawn,
        broker_port=broker.port, server_url=f"http://127.0.0.1:{server.port}",
    )  # fmt: skip
    started = time.monotonic()
    observer.publish(DESIRED, desired_state(DEVICE, 2, bundles["2"].model).to_json())
    done = wait_terminal(observer, 2, UPDATE_TIMEOUT)
    took = time.monotonic() - started
    assert done["state"] == "COMMITTED" and serves_complete(agent.url, bundles) == "2"
    assert observer.reported_states(2) == STEPS  # every state, in order
    assert agent.terminate() == 0
    lost = lost_steps(observer, 2)
    fault_log("network", "latency 150 ms each way, broker and server", ended=done["state"],
              seconds_to_terminal=round(took, 2), messages_lost=lost, recovered=True)  # fmt: skip


def test_broker_partition_mid_update_nothing_is_lost(
    tmp_path: Path,
    fleet: ArtifactServer,
    mosquitto_broker: Any,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    slow_bundle: BuiltBundle,
    spawn: Callable[..., AgentProcess],
    proxies: Callable[[int], FaultProxy],
    fault_log: Callable[..., None],
) -> None:
    broker = proxies(mosquitto_broker.port)
    agent = start_agent(tmp_path, fleet, mosquitto_broker, observer, bundles, spawn, broker_port=broker.port)
    slow(fleet, slow_bundle)
    started = time.monotonic()
    observer.publish(DESIRED, desired_state(DEVICE, 2, slow_bundle.model).to_json())
    wait_part(tmp_path / "data", slow_bundle.model.sha256, slow_bundle.model.size // 3)
    broker.partition()  # the update goes on while the device can't report
    time.sleep(4)
    broker.heal()
    assert broker.stats["cut"] >= 1 and broker.stats["refused"] >= 1  # it tried to come back
    done = wait_terminal(observer, 2, UPDATE_TIMEOUT)
    took = time.monotonic() - started
    assert done["state"] == "COMMITTED" and done["active"] == "linear:3"
    assert serves_complete(agent.url, {**bundles, "3": slow_bundle}) == "3"

    # A desired state published while the device is cut off reaches it once the link heals.
    broker.partition()
    observer.publish(DESIRED, desired_state(DEVICE, 3, bundles["2"].model).to_json())
    time.sleep(3)
    broker.heal()
    again = wait_terminal(observer, 3, UPDATE_TIMEOUT)
    assert again["state"] == "COMMITTED" and serves_complete(agent.url, bundles) == "2"
    statuses = observer.payloads("status")
    assert statuses[-1]["online"] and statuses[-1]["connection"] > 1  # reconnected, online
    assert agent.terminate() == 0
    fault_log("network", "broker partitioned 4 s mid-download, then 3 s around a desired state",
              ended=done["state"], seconds_to_terminal=round(took, 2), messages_lost=0,
              proxy=dict(broker.stats), recovered=True)  # fmt: skip


def test_half_open_broker_link_is_detected_and_the_update_still_reports(
    tmp_path: Path,
    fleet: ArtifactServer,
    mosquitto_broker: Any,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    spawn: Callable[..., AgentProcess],
    proxies: Callable[[int], FaultProxy],
    fault_log: Callable[..., None],
) -> None:
    broker = proxies(mosquitto_broker.port)
    agent = start_agent(tmp_path, fleet, mosquitto_broker, observer, bundles, spawn, broker_port=broker.port)
    broker.stall()  # not a byte through, no FIN, no reset
    started = time.monotonic()
    time.sleep(1)
    # The update runs while the link is stalled; the broker's keepalive check (1.5 x 5 s) drops
    # the silent client and publishes its will.
    observer.publish(DESIRED, desired_state(DEVICE, 2, bundles["2"].model).to_json())
    observer.wait_for(lambda o: [s for s in o.payloads("status") if not s["online"]], timeout=20)
    broker.heal()
    done = wait_terminal(observer, 2, UPDATE_TIMEOUT)
    took = time.monotonic() - started
    assert done["state"] == "COMMITTED" and serves_complete(agent.url, bundles) == "2"
    observer.wait_for(lambda o: o.payloads("status")[-1]["online"], timeout=20)
    assert agent.terminate() == 0
    fault_log("network", "broker link stalled half-open until the broker's keepalive dropped it",
              ended=done["state"], seconds_to_terminal=round(took, 2), messages_lost=0,
              proxy=dict(broker.stats), recovered=True)  # fmt: skip


@pytest.mark.parametrize("fault", ["partition", "stall"])
def test_artifact_link_fault_mid_download_resumes_by_range(
    fault: str,
    tmp_path: Path,
    fleet: ArtifactServer,
    mosquitto_broker: Any,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    slow_bundle: BuiltBundle,
    spawn: Callable[..., AgentProcess],
    proxies: Callable[[int], FaultProxy],
    fault_log: Callable[..., None],
) -> None:
    server = proxies(int(fleet.url.rsplit(":", 1)[1]))
    agent = start_agent(
        tmp_path,
        fleet,
        mosquitto_broker,
        observer,
        bundles,
        spawn,
        server_url=f"http://127.0.0.1:{server.port}",
    )
    slow(fleet, slow_bundle)
    started = time.monotonic()
    observer.publish(DESIRED, desired_state(DEVICE, 2, slow_bundle.model).to_json())
    wait_part(tmp_path / "data", slow_bundle.model.sha256, slow_bundle.model.size // 3)
    getattr(server, fault)()
    time.sleep(3)
    server.heal()
    assert server.stats["cut"] >= 1  # the fault met the download's live connection
    done = wait_terminal(observer, 2, UPDATE_TIMEOUT)
    took = time.monotonic() - started
    assert done["state"] == "COMMITTED" and serves_complete(agent.url, {**bundles, "3": slow_bundle}) == "3"
    ranges = [r["range"] for r in requests_for(fleet, slow_bundle.model)]
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")
    assert agent.terminate() == 0
    fault_log("network", f"artifact link {fault} 3 s mid-download", ended=done["state"],
              seconds_to_terminal=round(took, 2), resumed_with=ranges[-1], messages_lost=0,
              proxy=dict(server.stats), recovered=True)  # fmt: skip
