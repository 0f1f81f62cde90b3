"""Offload under load: offered load at twice the device's capacity, served locally only, with
overflow to a cloud endpoint behind an injected 30 ms round trip, and with that cloud down.

One run, one model: the MobileNetV2-shaped FP32 onnx-x86 bundle (``benchmarks/serving/models.py``),
so the device's capacity is bound by the model, not by HTTP. Every server is a real process on
loopback (``benchmarks/serving/servers.py``: the agent serves a seeded bundle, no fleet server):

1. capacity: the device agent alone (no offload), closed loop, concurrency 16, binary HTTP
   -> C req/s; before it, concurrency 1 gives the single-request latency L (p50). The cloud
   stand-in's own capacity (closed loop, c=16, no proxy) is recorded too (the overflow to absorb
   is C), and the cloud path's latency one request at a time through the proxy.
2. the budget: ``--budget-ms``, default max(5 L, 30 ms + L + 15 ms) rounded up to 5 ms, so the
   device fits it with a few requests queued and the cloud path (30 ms round trip + one run)
   can make it; the device's queue bound ``--queue-limit``, default the requests that fit
   0.8 x budget at max(L, 1/C) each (a loaded device spends 1/C per request), less the one
   running.
3. three set-ups, each a fresh device agent (``--latency-budget-ms``, ``--queue-limit``,
   ``--threads``, ``--max-batch``, ``--spinning`` as given), each offered 2 x C req/s open loop
   (``benchmarks/serving/open_loop.py``: fixed schedule, 64 connections, latency from the due time):
   a. ``local-only``: no ``--offload-url``: the agent serves what its bounded queue admits and
      refuses the rest with 503 (without an endpoint the budget routes nothing);
   b. ``offload``: ``--offload-url`` to the cloud stand-in behind ``benchmarks/delay_proxy.py``
      (15 ms each way, so a 30 ms round trip);
   c. ``cloud-down``: ``--offload-url`` to the same proxy pointed at a closed port (it closes each
      connection after one round trip, as a refused connect from afar arrives).

The cloud endpoint is a second agent process serving the same bundle: it speaks the same OIP v2
(binary HTTP) as the fleet server's ``/v2`` cloud endpoint and needs no database, pushed model
version or on-demand load, so it is the simpler stand-in; it runs without a budget or offload,
with a queue bound of 256 and the device's ``--max-batch``.

Pinning: on a machine with at least two usable CPUs (``os.sched_getaffinity``) the device agent
runs with ``taskset -c <first CPU>`` and ``--threads 1``; the cloud stand-in, the proxy and this
client run on the other CPUs (on two CPUs they share the second; on three or more the client
gets the last one). The cloud stand-in gets as many ONNX Runtime threads as its CPUs. Otherwise
the cloud would share the device's CPU and add no capacity. The result records the pinning.
On two CPUs the cloud shares its one core with the client and the proxy, so it absorbs less than
C: the goodput ratio there is a floor for what a real cloud gives. A real device is also much
slower than a server core: ``--device-cpu-share`` (default 0.3) gives the device agent that share
of its core through a cgroup CPU quota (root; skipped with a note otherwise), so the device is a
Pi-class one beside a faster cloud, as in the field. The result records it (``device_cpu``).

Figures per set-up: offered and answered requests, share of answered (and of offered) requests
within the budget, goodput (answers within the budget per second) and its ratio to local-only,
share served by the cloud (``X-EdgeFleet-Served-By``), shed (503) and failed requests, p50/p99
latency of admitted requests, and the device agent's own served/offload-error counters
(``/metrics``, warm-up included). Targets (issue 7): offload >= 99 % within budget and goodput
>= 1.8 x local-only; cloud down: p99 of admitted requests within the budget.

Full run (about 2-3 minutes; on a quiet machine):

    python benchmarks/offload_bench.py --json benchmarks/offload_bench.json

Smoke run (about 2 s a set-up): ``python benchmarks/offload_bench.py --quick``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import cpu_quota, machine, pinning  # noqa: E402
from benchmarks.serving.callers import CheckError, http_factory, http_requests  # noqa: E402
from benchmarks.serving.http_client import Connection, HttpError, get_text  # noqa: E402
from benchmarks.serving.load import run_point  # noqa: E402
from benchmarks.serving.models import BenchModel, prepare  # noqa: E402
from benchmarks.serving.offload_report import print_table, targets  # noqa: E402
from benchmarks.serving.open_loop import run_open_loop  # noqa: E402
from benchmarks.serving.servers import Server, ServerError, free_port, start_agent, start_delay_proxy  # noqa: E402

SETUPS = ("local-only", "offload", "cloud-down")
RTT_MS = 30.0


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def reference(m: BenchModel) -> list[dict[str, Any]]:
    """In-process outputs per sample, to check the agents' answers against."""
    from agent.contracts.manifest import Manifest
    from agent.runtimes import load_bundle

    manifest = Manifest.from_json((m.bundle_dir / "manifest.json").read_text())
    adapter = load_bundle(m.bundle_dir, manifest, threads=1)
    session = adapter._session
    names = [o.name for o in session.get_outputs()]
    out = [
        dict(zip(names, session.run(names, {m.onnx_input_name: m.sample(i)}), strict=True))
        for i in range(len(m.samples))
    ]
    adapter.close()
    return out


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, m: BenchModel, pins: pinning.Pinning) -> None:
        self.args, self.work, self.m, self.pins = args, work, m, pins
        self.ref = reference(m)
        self.servers: list[Server] = []
        self.started = 0
        self.quotas: list[cpu_quota.Quota] = []
        self.quota_note = "device not limited (--device-cpu-share 0)"

    def agent(
        self, tag: str, threads: int, cpus: list[int] | None, flags: list[str], device: bool = False
    ) -> Server:
        """A started agent serving the model; stopped by :meth:`close` if not before. A device
        agent gets ``--device-cpu-share`` of its core when that is set."""
        self.started += 1
        server = start_agent(
            self.m.bundle_dir, self.m.name, "1", threads, self.work, False,
            tag=f"{tag}-{self.started}", extra_args=["--grpc-port", "-1", *flags], cpus=cpus,
        )  # fmt: skip
        self.servers.append(server)
        if device and self.args.device_cpu_share:
            q = cpu_quota.limit(server.proc.pid, self.args.device_cpu_share, f"device{self.started}")
            self.quota_note = q.note
            self.quotas.append(q)
        return server

    def device_flags(self) -> list[str]:
        a = self.args
        flags = ["--spinning", "true" if a.spinning else "false"]
        if a.max_batch is not None:
            flags += ["--max-batch", str(a.max_batch)]
        return flags

    def check(self, port: int) -> None:
        """One checked answer through ``port``, then a short warm-up. Raises CheckError."""
        factory = http_factory(self.m, port, self.m.input_name, True, self.ref)
        run_point(factory, 2, 0.0, 0.3 if self.args.quick else 1.0)

    def capacity(self) -> dict[str, Any]:
        a = self.args
        dev = self.agent("device-capacity", a.threads, self.pins.device, self.device_flags(), device=True)
        try:
            assert dev.http_port is not None
            first_ms = first_request_ms(self.m, dev.http_port)
            self.check(dev.http_port)
            factory = http_factory(self.m, dev.http_port, self.m.input_name, True, self.ref)
            single = run_point(factory, 1, a.warmup, a.single_duration)
            cap = run_point(factory, 16, a.warmup, a.capacity_duration)
        finally:
            dev.stop()
        if single.p50_ms is None or cap.throughput_rps is None:
            raise ServerError(f"no capacity figures: {single.first_error or cap.first_error}")
        say(f"single request: p50 {single.p50_ms:.2f} ms; capacity at c=16: {cap.throughput_rps:.1f} req/s")
        return {"first_request_ms": first_ms, "single": single.summary(), "closed_loop_c16": cap.summary()}

    def setup(
        self, name: str, budget: float, queue_limit: int, rate: float, url: str | None
    ) -> dict[str, Any]:
        a = self.args
        flags = [*self.device_flags(), "--latency-budget-ms", str(budget), "--queue-limit", str(queue_limit)]
        if url is not None:
            flags += ["--offload-url", url]
        say(f"{name}: device agent {' '.join(flags)}")
        dev = self.agent(f"device-{name}", a.threads, self.pins.device, flags, device=True)
        try:
            assert dev.http_port is not None
            note = None
            try:
                self.check(dev.http_port)  # also gives the agent its first service times
            except CheckError as exc:
                # Measured all the same: the row then shows what a client would get.
                note = f"warm-up answer check failed: {exc}"[:300]
                say(f"{name}: {note}")
            reqs = [r for r, _ in http_requests(self.m, dev.http_port, self.m.input_name, True)]
            run = run_open_loop(dev.http_port, reqs, rate, a.warmup, a.duration, a.connections)
            counters = agent_counters(dev.http_port)
        finally:
            dev.stop()
        s = {**run.summary(budget), "agent_counters": counters, "note": note}
        say(
            f"{name}: {s['answered']}/{s['offered']} answered, {s['within_budget_share']} within budget, "
            f"goodput {s['goodput_rps']} req/s, cloud {s['cloud_share']}, shed {s['shed']}, "
            f"errors {s['errors']}, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms"
        )
        return {"setup": name, "offload_url": url, **s}

    def close(self) -> None:
        for s in self.servers:
            s.stop()
        for q in self.quotas:
            q.release()


def first_request_ms(m: BenchModel, port: int) -> float:
    """The latency of a fresh agent's first request (its cold first run). Raises OSError or
    HttpError."""
    conn = Connection("127.0.0.1", port)
    try:
        t0 = time.perf_counter()
        conn.send(http_requests(m, port, m.input_name, True)[0][0])
        return round((time.perf_counter() - t0) * 1000, 3)
    finally:
        conn.close()


COUNTERS = ("edgefleet_agent_served_total", "edgefleet_agent_offload_errors_total")


def agent_counters(port: int) -> dict[str, float] | str:
    """The agent's served-by-where and offload-error counters over the whole set-up (warm-up
    included), from its ``/metrics``; why not, as a string, when it could not be read."""
    try:
        text = get_text("127.0.0.1", port, "/metrics")
    except (OSError, HttpError) as exc:
        return f"/metrics unreadable: {exc}"
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith(COUNTERS):
            out[name] = float(value)
    return out


def default_budget(single_ms: float) -> float:
    return float(5 * math.ceil(max(5 * single_ms, RTT_MS + single_ms + 15.0) / 5))


def default_queue_limit(budget_ms: float, per_request_ms: float) -> int:
    return max(1, int(0.8 * budget_ms / per_request_ms) - 1)


def run(args: argparse.Namespace, bench: Bench) -> dict[str, Any]:
    cap = bench.capacity()
    single_ms = float(cap["single"]["p50_ms"])
    capacity = float(cap["closed_loop_c16"]["throughput_rps"])
    budget = args.budget_ms or default_budget(single_ms)
    # Under load a request costs the device 1 / C (HTTP included), more than L when idle.
    per_request_ms = max(single_ms, 1000.0 / capacity)
    queue_limit = args.queue_limit or default_queue_limit(budget, per_request_ms)
    rate = args.load_factor * capacity
    say(f"budget {budget:g} ms, device queue limit {queue_limit}, offered load {rate:.1f} req/s")
    if cap["first_request_ms"] > budget:
        # The agent's service-time estimate starts from its first (cold) run and only local runs
        # update it: above the budget, an agent with an endpoint sends everything away.
        say(f"warning: a fresh agent's first request took {cap['first_request_ms']:.1f} ms, over the budget")
    lifetime = 120.0 + 3 * (args.warmup + args.duration + 60)  # the proxies exit by themselves after it
    cloud_threads = len(bench.pins.cloud) if bench.pins.cloud else args.threads
    cloud_flags = ["--queue-limit", "256"]
    if args.max_batch is not None:
        cloud_flags += ["--max-batch", str(args.max_batch)]
    cloud = bench.agent("cloud", cloud_threads, bench.pins.cloud, cloud_flags)
    assert cloud.http_port is not None
    up = start_delay_proxy(cloud.http_port, RTT_MS / 2, bench.work, "cloud", lifetime, bench.pins.cloud)
    down = start_delay_proxy(free_port(), RTT_MS / 2, bench.work, "down", lifetime, bench.pins.cloud)
    bench.servers += [up, down]
    assert up.http_port is not None and down.http_port is not None
    # The cloud's own capacity (closed loop, no proxy): what it can absorb of the overflow.
    cloud_factory = http_factory(bench.m, cloud.http_port, bench.m.input_name, True, bench.ref)
    cloud_cap = run_point(cloud_factory, 16, args.warmup, args.capacity_duration).throughput_rps
    say(f"cloud stand-in capacity at c=16: {cloud_cap or 0:.1f} req/s (overflow: {rate - capacity:.1f})")
    bench.check(up.http_port)  # the cloud answers right through the proxy
    # One request at a time over the whole cloud path (proxy, round trip, run): it must fit the budget.
    up_factory = http_factory(bench.m, up.http_port, bench.m.input_name, True, bench.ref)
    cloud_path = run_point(up_factory, 1, 0.3, args.single_duration).p50_ms
    say(f"cloud path (through the proxy), one at a time: p50 {cloud_path or 0:.1f} ms")
    urls = {
        "local-only": None,
        "offload": f"http://127.0.0.1:{up.http_port}",
        "cloud-down": f"http://127.0.0.1:{down.http_port}",
    }
    rows = [bench.setup(name, budget, queue_limit, rate, urls[name]) for name in args.setups]
    return {
        "capacity": cap,
        "capacity_rps": capacity,
        "single_request_ms": single_ms,
        "first_request_ms": cap["first_request_ms"],
        "per_request_at_capacity_ms": round(1000.0 / capacity, 3),
        "budget_ms": budget,
        "budget_from": "--budget-ms" if args.budget_ms else "max(5 x single, 30 + single + 15) ms, to 5 ms",
        "queue_limit": queue_limit,
        "offered_rps": round(rate, 1),
        "cloud_threads": cloud_threads,
        "cloud_capacity_rps": None if cloud_cap is None else round(cloud_cap, 1),
        "cloud_path_single_ms": None if cloud_path is None else round(cloud_path, 3),
        "rows": rows,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-ms", type=float, help="latency budget (default: from L)")
    ap.add_argument("--queue-limit", type=int, help="device queue bound (default: what fits the budget)")
    ap.add_argument("--load-factor", type=float, default=2.0, help="offered load / capacity (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="device ORT threads (default 1)")
    ap.add_argument("--max-batch", type=int, help="device --max-batch (default: the agent's)")
    ap.add_argument("--spinning", action="store_true", help="let the device's ORT threads spin")
    ap.add_argument("--connections", type=int, default=64, help="open-loop connections (default 64)")
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument("--no-pin", action="store_true", help="do not pin device, cloud and client apart")
    ap.add_argument(
        "--device-cpu-share",
        type=float,
        default=0.3,
        help="the device agent's share of its core, a CFS quota through the cgroup cpu controller "
        "(default 0.3: a Pi-class device beside a server-class cloud core; 0: no limit)",
    )
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it (the servers' logs)")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per set-up (default 10)")
    ap.add_argument("--quick", action="store_true", help="smoke run: about 2 s a set-up")
    ap.add_argument("-o", "--output", choices=["table", "json"], default="table")
    ap.add_argument("--json", type=Path, help="also write the whole result to this file")
    args = ap.parse_args(argv)
    args.setups = [x for x in args.setups.split(",") if x]
    for s in args.setups:
        if s not in SETUPS:
            ap.error(f"unknown set-up {s!r} ({', '.join(SETUPS)})")
    args.single_duration, args.capacity_duration = 3.0, 5.0
    if args.quick:
        args.warmup, args.duration, args.single_duration, args.capacity_duration = 0.5, 1.5, 1.0, 1.5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    load_before = machine.load_average()
    cores = os.cpu_count() or 1
    if load_before is not None and load_before[0] > 0.5 * cores:
        say(f"warning: load average {load_before[0]} on {cores} cores; figures now are not to be trusted")
    pins = pinning.plan(enabled=not args.no_pin)
    say(f"pinning: {pins.note}")
    with tempfile.TemporaryDirectory(prefix="offload-bench-") as scratch:
        tmp = str(args.keep) if args.keep else scratch
        Path(tmp).mkdir(parents=True, exist_ok=True)
        say("mobilenet: building and compiling the FP32 onnx-x86 bundle")
        m = prepare("mobilenet", Path(tmp))
        bench = Bench(args, Path(tmp), m, pins)
        pinning.pin_self(pins.client)
        try:
            figures = run(args, bench)
        except (ServerError, CheckError, OSError) as exc:
            say(f"FAILED: {exc}")
            return 1
        finally:
            bench.close()
    result = {
        "benchmark": "offload",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "model": "mobilenet",
        "settings": {
            "threads": args.threads,
            "max_batch": args.max_batch,
            "spinning": args.spinning,
            "load_factor": args.load_factor,
            "connections": args.connections,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "injected_rtt_ms": RTT_MS,
            "cloud": "a second agent process serving the same bundle (OIP v2, binary HTTP)",
            "quick": args.quick,
        },
        "pinning": pins.as_dict(),
        "device_cpu": bench.quota_note,
        "quiet_machine": None if load_before is None else load_before[0] <= 0.5 * cores,
        "machine": machine.cpu(),
        "load_average": {"before": load_before, "after": machine.load_average()},
        "versions": machine.versions(),
        **figures,
    }
    result["targets"] = targets(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        say(f"wrote {args.json}")
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    empty = [r["setup"] for r in result["rows"] if not r["answered"]]
    for name in empty:
        say(f"FAILED: {name}: no request answered")
    return 1 if empty else 0


if __name__ == "__main__":
    sys.exit(main())
