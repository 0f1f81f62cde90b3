"""The agent's telemetry parts on their own: the latency histogram, the recorder, the offline
buffer on a real directory, the publisher's order and drop accounting, the process sampler and the
contract's bounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.contracts import ContractError, Telemetry
from agent.contracts.telemetry import MAX_CLASSES
from agent.telemetry import (
    LatencyHistogram,
    ProcessSampler,
    TelemetryBuffer,
    TelemetryPublisher,
    TelemetryRecorder,
)
from agent.telemetry.histogram import BUCKETS


def test_histogram_percentiles_are_within_four_percent() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(mean=-6, sigma=1.0, size=20_000)  # around 2.5 ms
    h = LatencyHistogram()
    for v in values:
        h.add(float(v))
    for q in (50, 95, 99):
        got, want = h.percentile(q), float(np.percentile(values, q))
        assert got is not None and abs(got - want) / want < 0.04, (q, got, want)
    assert len(h.counts) == BUCKETS  # fixed size whatever came in
    h.add(0.0)
    h.add(1e9)
    assert len(h.counts) == BUCKETS and h.total == 20_002
    assert LatencyHistogram().percentile(50) is None


def test_recorder_counts_classes_errors_and_offload() -> None:
    r = TelemetryRecorder()
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.0, 0.2, 0.7]], np.float32)
    r.record("m:1", True, 0.002, False, {"logits": scores})
    r.record("m:1", True, 0.004, True, {"logits": scores[:1]})
    r.record("m:1", False)
    window = r.take()
    w = window["m:1"]
    assert (w.requests, w.errors, w.answered, w.offloaded) == (3, 1, 2, 1)
    assert w.classes == {"1": 2, "0": 1, "2": 1}
    assert w.offload_ratio() == 0.5
    lat = w.latency_ms()
    assert lat is not None and lat.p50_ms is not None and 1.9 < lat.p50_ms < 2.1
    assert r.take() == {}  # a new window


def test_recorder_summarises_non_class_outputs_and_bounds_classes() -> None:
    r = TelemetryRecorder()
    r.record("reg:1", True, 0.001, outputs={"y": np.array([1.0, 3.0], np.float32)})
    r.record("reg:1", True, 0.001, outputs={"y": np.array([5.0], np.float32)})
    big = np.arange(100_000, dtype=np.float32)  # sampled, not summed whole
    r.record("big:1", True, 0.001, outputs={"y": big})
    w = r.take()
    st = w["reg:1"].outputs["y"].stats()
    assert (st.count, st.mean, st.min, st.max) == (3, 3.0, 1.0, 5.0)
    assert st.std == pytest.approx(np.std([1.0, 3.0, 5.0]))
    assert w["big:1"].outputs["y"].count <= 1024
    many = TelemetryRecorder()
    eye = np.eye(1000, dtype=np.float32)
    for i in range(0, 1000, 200):
        many.record("wide:1", True, 0.001, outputs={"p": eye[i : i + 200]})
    counts = many.take()["wide:1"].classes
    assert len(counts) == MAX_CLASSES and sum(counts.values()) == 1000 and counts["other"] > 0


def test_buffer_drops_oldest_by_count_and_bytes_and_survives_a_restart(tmp_path: Path) -> None:
    b = TelemetryBuffer(tmp_path / "t", max_messages=3, max_bytes=10_000)
    for seq in range(5):
        b.add(seq, json.dumps({"seq": seq, "dropped": 0}).encode())
    assert len(b) == 3 and b.dropped == 2
    assert b.oldest() is not None and b.oldest()[0] == 2  # type: ignore[index]
    again = TelemetryBuffer(tmp_path / "t", max_messages=3, max_bytes=10_000)
    assert len(again) == 3 and again.dropped == 2 and again.next_seq == 5
    # A dropped message that carried a count passes it on: nothing reported is lost.
    again.add(5, json.dumps({"seq": 5, "dropped": 0}).encode())
    assert again.dropped == 3
    again.remove_oldest()  # seq 3 was sent: 4, 5 left
    again.add(6, b'{"dropped": 4}')
    again.add(7, b"{}")  # drops seq 4: 4
    again.add(8, b"{}")  # drops seq 5: 5
    again.add(9, b"{}")  # drops seq 6, which itself carried 4: 5 + 1 + 4
    assert again.dropped == 10
    assert [again.oldest()[0]] == [7]  # type: ignore[index]
    assert again.take_dropped() == 10 and again.dropped == 0
    small = TelemetryBuffer(tmp_path / "s", max_messages=100, max_bytes=250)
    for seq in range(10):
        small.add(seq, b"x" * 100)
    assert len(small) == 2 and small.dropped == 8  # bytes bound: two 100-byte messages fit


def test_buffer_take_dropped_resets_and_persists(tmp_path: Path) -> None:
    b = TelemetryBuffer(tmp_path, max_messages=1)
    b.add(0, b"{}")
    b.add(1, b"{}")
    assert b.take_dropped() == 1 and b.dropped == 0
    assert TelemetryBuffer(tmp_path, max_messages=1).dropped == 0


class Link:
    """A send function that is up or down, recording what it sent."""

    def __init__(self) -> None:
        self.up = True
        self.sent: list[dict[str, object]] = []

    def __call__(self, payload: bytes) -> bool:
        if self.up:
            self.sent.append(json.loads(payload))
        return self.up


def test_publisher_buffers_offline_and_replays_in_order_with_the_drop_count(tmp_path: Path) -> None:
    now = [1000.0]
    link = Link()
    rec = TelemetryRecorder()
    pub = TelemetryPublisher(
        "d1",
        rec,
        TelemetryBuffer(tmp_path, max_messages=3),
        link,
        interval=5,
        active_models=lambda: ["m:1"],
        queue_depths=lambda: {"m:1": 2},
        clock=lambda: now[0],
    )
    rec.record("m:1", True, 0.01, outputs={"logits": np.array([[0.0, 1.0]], np.float32)})
    now[0] += 5
    pub.tick()
    (first,) = link.sent
    assert first["model"] == "m:1" and first["requests"] == 1 and first["queue_depth"] == 2
    assert first["classes"] == {"1": 1} and first["window_s"] == 5.0 and first["seq"] == 0
    assert first["throughput_rps"] == 0.2
    link.up = False
    for _ in range(5):  # seq 1..5; the 3-message buffer keeps 3..5
        now[0] += 5
        pub.tick()
    # Seq 1 was dropped before seq 5 was made (seq 5 carries that count), seq 2 after.
    assert len(pub.buffer) == 3 and pub.buffer.dropped == 1
    link.up = True
    now[0] += 5
    pub.tick()
    seqs = [m["seq"] for m in link.sent]
    assert seqs == [0, 3, 4, 5, 6]
    assert [m["dropped"] for m in link.sent] == [0, 0, 0, 1, 1]  # the two lost, each counted once
    assert all(Telemetry.from_dict(m) for m in link.sent)
    assert len(pub.buffer) == 0


def test_publisher_without_a_model_sends_process_figures(tmp_path: Path) -> None:
    link = Link()
    pub = TelemetryPublisher("d1", TelemetryRecorder(), TelemetryBuffer(tmp_path), link, interval=5)
    pub.tick()
    (msg,) = link.sent
    assert msg["model"] is None and msg["requests"] == 0 and msg["memory_mb"]


def test_temperature_is_the_hottest_readable_zone(tmp_path: Path) -> None:
    for name, text in (("thermal_zone0", "41500\n"), ("thermal_zone1", "55250\n"), ("thermal_zone2", "junk")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "temp").write_text(text)
    assert ProcessSampler(tmp_path).temperature_c() == 55.25
    assert ProcessSampler(tmp_path / "none").temperature_c() is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"classes": {str(i): 1 for i in range(MAX_CLASSES + 1)}}, "classes"),
        ({"classes": {"x" * 17: 1}}, "classes"),
        ({"classes": {"1": -1}}, "classes.1"),
        ({"outputs": {f"o{i}": {"count": 1} for i in range(17)}}, "outputs"),
        ({"outputs": {"y": {"count": -1}}}, "outputs.y.count"),
        ({"dropped": -1}, "negative"),
        ({"queue_depth": -1}, "queue_depth"),
        ({"model": ""}, "model"),
        ({"requests": 2**60}, "over"),
    ],
)
def test_contract_bounds(extra: dict[str, object], message: str) -> None:
    body = {"schema": "edgefleet.telemetry/1", "device_id": "d", **extra}
    with pytest.raises(ContractError, match=message):
        Telemetry.from_dict(body)


def test_contract_reads_an_older_message() -> None:
    t = Telemetry.from_dict({"schema": "edgefleet.telemetry/1", "device_id": "d", "requests": 3})
    assert t.classes is None and t.outputs is None and t.dropped == 0 and t.seq is None


def test_interval_0_turns_telemetry_off_and_a_negative_one_is_refused(tmp_path: Path) -> None:
    from agent.config import load_config
    from agent.daemon import Agent
    from agent.errors import ConfigError
    from device_profiles import load_profile

    base = {
        "server": "http://127.0.0.1:9",
        "device_id": "d",
        "profile": "x86-64-avx2",
        "data_dir": str(tmp_path),
    }
    with pytest.raises(ConfigError, match=r"telemetry.interval.*must not be negative"):
        load_config(base | {"telemetry_interval": "-1"}, {})
    assert load_config(base, {}).telemetry_interval == 5.0
    off = Agent(
        load_config(base | {"telemetry_interval": "0", "grpc_port": "-1"}, {}), load_profile("x86-64-avx2")
    )
    try:
        off.start()
        assert off.telemetry is None and off.service.telemetry is None and off.publisher is None
        assert not (tmp_path / "telemetry").exists()
    finally:
        off.stop()
