"""Poison messages on the desired topic, against a real Mosquitto: a payload nested too deep,
too large or malformed, or one whose handler raises, is refused, counted and quarantined (not
handed over again, also after a restart), the link stays up and the next good desired state is
handed over; a network loop that dies anyway is restarted."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.contracts.state import DesiredState
from agent.contracts.topics import device_topic
from agent.mqtt_client import AgentMqtt
from agent.registration import MqttSettings
from tests.agent.agent_testkit import BuiltBundle, Observer, desired_state

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed")

DEVICE = "edge-poison-1"
DESIRED = device_topic(DEVICE, "desired")
# What the hostile tester sent: 200 KB of nested lists, enough to overflow json's recursion.
NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def observer(mosquitto_broker: Any) -> Iterator[Observer]:
    obs = Observer(mosquitto_broker.host, mosquitto_broker.port)
    yield obs
    obs.publish(DESIRED, b"")  # clear the retained message for the next test
    obs.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)
    return value


def connect(broker: Any, on_desired: Callable[[DesiredState], None], **kwargs: Any) -> AgentMqtt:
    link = AgentMqtt(
        DEVICE,
        MqttSettings(broker.host, broker.port, "5", keepalive=5),
        on_desired,
        reconnect_max=1,
        **kwargs,
    )
    link.start()
    assert link.connected.wait(10)
    return link


def test_a_retained_deeply_nested_desired_state_does_not_cut_the_link(
    mosquitto_broker: Any, observer: Observer, bundles: dict[str, BuiltBundle]
) -> None:
    observer.publish(DESIRED, NESTED)  # retained: it arrives at every (re)connect
    got: list[DesiredState] = []
    link = connect(mosquitto_broker, got.append)
    try:
        time.sleep(1.0)  # the poison arrives right after the subscription
        good = desired_state(DEVICE, 2, bundles["1"].model)
        observer.publish(DESIRED, good.to_json())
        wait_until(lambda: got)
        assert got == [good]
        assert link.connected.is_set()
    finally:
        link.stop()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (NESTED, "too_deep"),
        (b'{"schema": "edgefleet.desired/1", "pad": "' + b"x" * 300_000 + b'"}', "too_large"),
        (b"{not json", "malformed"),
    ],
)
def test_a_refused_message_is_counted_and_the_link_stays_up(
    mosquitto_broker: Any, observer: Observer, bundles: dict[str, BuiltBundle], payload: bytes, reason: str
) -> None:
    refused: list[tuple[str, str]] = []
    got: list[DesiredState] = []
    link = connect(mosquitto_broker, got.append, on_refused=lambda *r: refused.append(r))
    try:
        observer.publish(DESIRED, payload)
        wait_until(lambda: refused)
        assert refused == [("desired", reason)] and got == []
        good = desired_state(DEVICE, 3, bundles["1"].model)
        observer.publish(DESIRED, good.to_json())
        wait_until(lambda: got)
        assert got == [good] and link.is_up()
    finally:
        link.stop()


def test_a_desired_state_whose_handler_raises_is_quarantined_across_restarts(
    tmp_path: Path, mosquitto_broker: Any, observer: Observer, bundles: dict[str, BuiltBundle]
) -> None:
    from agent.inbound import Quarantine

    handed: list[int] = []

    def explode(desired: DesiredState) -> None:
        handed.append(desired.generation)
        raise RecursionError("the handler overflowed")

    bad = desired_state(DEVICE, 4, bundles["1"].model)
    observer.publish(DESIRED, bad.to_json())  # retained
    first = connect(mosquitto_broker, explode, quarantine=Quarantine(tmp_path / "quarantine.json"))
    try:
        wait_until(lambda: handed)
        assert first.is_up()
    finally:
        first.stop()
    refused: list[tuple[str, str]] = []
    got: list[DesiredState] = []
    again = connect(
        mosquitto_broker,
        got.append,
        quarantine=Quarantine(tmp_path / "quarantine.json"),
        on_refused=lambda *r: refused.append(r),
    )
    try:
        wait_until(lambda: refused)  # the retained copy came back: dropped unread
        assert refused == [("desired", "quarantined")] and got == [] and handed == [4]
        good = desired_state(DEVICE, 5, bundles["1"].model)
        observer.publish(DESIRED, good.to_json())
        wait_until(lambda: got)
        assert got == [good]
    finally:
        again.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_network_loop_that_dies_anyway_is_restarted(
    mosquitto_broker: Any, observer: Observer, bundles: dict[str, BuiltBundle]
) -> None:
    restarts: list[int] = []
    got: list[DesiredState] = []
    link = connect(
        mosquitto_broker, got.append, watchdog_interval=0.2, on_loop_restart=lambda: restarts.append(1)
    )
    client = link._client
    guarded = client.on_message

    def escape(*args: Any) -> None:  # a bug outside the guard: the exception reaches paho
        client.on_message = guarded
        raise RuntimeError("escaped")

    client.on_message = escape
    try:
        good = desired_state(DEVICE, 6, bundles["1"].model)
        observer.publish(DESIRED, good.to_json())
        wait_until(lambda: got, timeout=15)  # handled again by the restarted loop
        assert got[-1] == good and restarts == [1]
        assert wait_until(link.is_up)
    finally:
        link.stop()


def test_refusals_are_logged_once_per_reason_and_reported_with_their_counts(
    mosquitto_broker: Any,
    observer: Observer,
    bundles: dict[str, BuiltBundle],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A flood of poison writes one log line per reason per interval, and the server learns the
    counts from the reported state, re-published (as often as the log line) after a refusal."""
    import logging

    from agent.contracts.state import ReportedState, UpdateState

    refused: list[tuple[str, str]] = []
    got: list[DesiredState] = []
    with caplog.at_level(logging.INFO, logger="agent.mqtt_client"):
        link = connect(mosquitto_broker, got.append, on_refused=lambda *r: refused.append(r))
        try:
            link.publish_reported(ReportedState(DEVICE, 0, UpdateState.IDLE, seq=1))
            # the first report out before any poison (on a loaded machine the link could still be
            # connecting when the poison arrives, and the first report then already counts it)
            observer.wait_for(lambda o: [r for r in o.payloads("reported") if r["device_id"] == DEVICE])
            for i in range(20):
                observer.publish(DESIRED, b"{not json %d" % i)
            observer.publish(DESIRED, NESTED)
            wait_until(lambda: len(refused) == 21)
            good = desired_state(DEVICE, 3, bundles["1"].model)
            observer.publish(DESIRED, good.to_json())
            wait_until(lambda: got)
            assert link.is_up()
            counts = {"malformed": 20, "too_deep": 1}
            observer.wait_for(lambda o: [r for r in o.payloads("reported") if r.get("refused") == counts])
            # Reconnects re-publish the counts too.
            assert link.refused == counts
        finally:
            link.stop()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused a message")]
    assert len(lines) == 2, lines  # one per reason within the interval
    # The first report carried no refusals; one re-publish per logged line, not per message.
    sent = [r for r in observer.payloads("reported") if r["device_id"] == DEVICE]
    assert sent[0]["refused"] is None and len(sent) <= 3
