"""What a simulated device costs the simulator: memory per device and CPU, idle and in a wave.

N devices of :mod:`edgectl.simulate` on a private Mosquitto, with no fleet server (a registrar
that hands every device the broker), so only the simulator's own cost is measured:

- ``rss_per_device_kib``: resident memory after all N connected, less before, over N;
- ``wave_cpu_s`` and ``wave_s``: a desired state published to every device (by a separate
  paho client in this process) until every device's final report, and the CPU spent then;
- ``idle_cpu_percent``: this process's CPU over the next ``--idle`` seconds, every device
  serving the model and sending telemetry every ``--telemetry-interval`` seconds (QoS 1).

    python benchmarks/sim_footprint.py --devices 1000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402

from agent.contracts import DesiredModel, DesiredState, MqttSettings, device_topic  # noqa: E402
from edgectl.simulate import Credentials, Faults, SimConfig, Simulator  # noqa: E402


class BrokerOnly:
    def __init__(self, port: int) -> None:
        self.creds = Credentials(MqttSettings(host="127.0.0.1", port=port, protocol="5", keepalive=60))

    def register(
        self, device_id: str, profile: str, labels: dict[str, str], facts: dict[str, Any]
    ) -> Credentials:
        return self.creds

    def close(self) -> None:
        pass


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def start_mosquitto(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = work / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "max_queued_messages 10000"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--idle", type=float, default=20.0)
    p.add_argument("--telemetry-interval", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=None, help="also write the figures here (JSON)")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="sim-footprint-"))
    broker, port = start_mosquitto(work)
    cfg = SimConfig(
        "http://unused",
        devices=args.devices,
        prefix="fp",
        telemetry_interval=args.telemetry_interval,
        step_delay=(0.01, 0.05),
    )
    try:
        rss0 = rss_kib()
        sim = Simulator(cfg, Faults(seed=1), registrar=BrokerOnly(port))
        t0 = time.monotonic()
        sim.start(timeout=300)
        connect_s = time.monotonic() - t0
        rss1 = rss_kib()
        threads = threading.active_count()  # main + the network loop (+ none per device)

        pub = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="fp-pub", protocol=MQTTProtocolVersion.MQTTv5
        )
        pub.max_inflight_messages_set(1000)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        model = DesiredModel("digits", "1", "onnx-x86", "int8", "digits/1/onnx-x86.tar", "/a", 1, "a" * 64)
        c0, w0 = cpu_s(), time.monotonic()
        published = [
            pub.publish(
                device_topic(d, "desired"), DesiredState(d, 1, (model,)).to_json(), qos=1, retain=True
            )
            for d in sim.devices
        ]
        for info in published:
            info.wait_for_publish(30)
        sim.wait_final(timeout=300)
        wave_s, wave_cpu = time.monotonic() - w0, cpu_s() - c0  # includes the publisher's thread
        pub.disconnect()
        pub.loop_stop()

        # steady state, every device serving the model: telemetry with latency and class counts
        t0, c0, i0 = sim.counts["telemetry"], cpu_s(), time.monotonic()
        time.sleep(args.idle)
        idle_cpu = (cpu_s() - c0) / (time.monotonic() - i0)
        telemetry = sim.counts["telemetry"] - t0
        rss2 = rss_kib()
        summary = sim.summary()
        sim.stop()
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    out = {
        "devices": args.devices,
        "threads_while_running": threads,
        "connect_s": round(connect_s, 2),
        "rss_before_mib": round(rss0 / 1024, 1),
        "rss_after_mib": round(rss1 / 1024, 1),
        "rss_per_device_kib": round((rss1 - rss0) / args.devices, 1),
        "rss_after_wave_mib": round(rss2 / 1024, 1),
        "idle_s": args.idle,
        "telemetry_interval_s": args.telemetry_interval,
        "telemetry_sent_while_idle": telemetry,
        "idle_cpu_percent": round(100 * idle_cpu, 1),
        "wave_s": round(wave_s, 2),
        "wave_cpu_s": round(wave_cpu, 2),
        "wave_reports": summary["messages"]["reports"],
        "states": summary["states"],
        "cpu": next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")), ""),
    }  # fmt: skip
    print(json.dumps(out, indent=2))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
