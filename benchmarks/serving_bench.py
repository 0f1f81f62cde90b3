"""Serving overhead, side by side in one run on the same models and machine.

Rows, each at concurrency 1 and 16 (16 workers, each with a connection of its own), batch 1:

- ``in-process ort``: ``InferenceSession.run`` on a session opened by the agent's own loader
  (``agent.runtimes.load_bundle``, so the same threads and spinning settings the agent uses);
- ``agent http-json`` / ``http-binary`` / ``grpc``: the real agent process (``python -m agent``)
  serving the FP32 onnx-x86 bundle; gRPC only when the agent takes ``--grpc-port`` (else the row
  says why it was skipped);
- ``kserve http-json`` / ``http-binary`` / ``grpc``: KServe 0.21's Python model server, an ONNX
  Runtime model class of ours (``benchmarks/peers/kserve_server.py``);
- ``mlserver http-json`` / ``grpc``: MLServer 1.7.1, a custom ONNX Runtime runtime
  (``benchmarks/peers/mlserver_runtime.py``); MLServer has no REST binary tensors.

Every server binds 127.0.0.1 on free ports, runs only during its own rows, and serves the same
``model.onnx`` with the same ONNX Runtime version and session options. The peers live in venvs of
their own under ``~/.cache/edgefleet/peers/<name>``, made on first use (minutes; or beforehand
with ``python -m benchmarks.peers.envs``). Each answer type is checked once per row against
in-process outputs before the clock starts. The client is ours (``benchmarks/serving``): raw
HTTP/1.1 keep-alive sockets and plain gRPC stubs, in threads of this process, so on a small
machine it shares the cores with the server it measures, as any local application would.

The agent serves the bundle as after a restart (slot and journal seeded with its own classes; no
fleet server or broker: see ``benchmarks/serving/servers.py``). Rows run one after another, so
a figure taken while other work runs is noise: the result records the load average before and
after, and warns when it was high.

The full run (about 9 minutes once the peer venvs exist; run it on a quiet machine):

    python benchmarks/serving_bench.py --json benchmarks/serving_bench.json

Smoke run (about 1 s a point, proves every row produces figures):

    python benchmarks/serving_bench.py --quick

Other flags: ``--models digits,mobilenet``, ``--servers in-process,agent,kserve,mlserver``,
``--threads N`` (ONNX Runtime intra-op threads of the in-process row and the peers; default: the
core count), ``--agent-threads fit|fixed`` (the agent's own choice, its default, or ``--threads``),
``--warmup 2 --duration 10`` (seconds per point), ``-o json`` (the result on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peers import envs  # noqa: E402
from benchmarks.peers.ort_options import describe  # noqa: E402
from benchmarks.serving import machine, report  # noqa: E402
from benchmarks.serving.callers import CheckError, InProcessCaller, grpc_factory, http_factory  # noqa: E402
from benchmarks.serving.load import Caller, run_point  # noqa: E402
from benchmarks.serving.models import BenchModel, prepare  # noqa: E402
from benchmarks.serving.servers import Server, ServerError, start_agent, start_kserve, start_mlserver  # noqa: E402

SERVERS = ("in-process", "agent", "kserve", "mlserver")
PROTOCOLS = {
    "agent": ("http-json", "http-binary", "grpc"),
    "kserve": ("http-json", "http-binary", "grpc"),
    "mlserver": ("http-json", "grpc"),
}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.rows: list[dict[str, Any]] = []
        self.peer_facts: dict[str, Any] = {}
        self.ort_options: dict[str, Any] = {}
        self.agent_grpc: bool | None = None

    def point_runs(self, row: dict[str, Any], factory: Callable[[], Caller]) -> None:
        for c in self.args.concurrency:
            p = run_point(factory, c, self.args.warmup, self.args.duration)
            row["points"].append(p.summary())
            say(
                f"  {row['model']} {row['server']} {row['protocol']} c={c}: "
                f"{p.throughput_rps or 0:.1f} req/s, p50 {p.p50_ms or 0:.3f} ms, p99 {p.p99_ms or 0:.3f} ms"
                + (f", {p.errors} errors ({p.first_error})" if p.errors else "")
            )

    def add_row(self, model: str, server: str, protocol: str, **extra: Any) -> dict[str, Any]:
        row = {"model": model, "server": server, "protocol": protocol, "points": [], **extra}
        self.rows.append(row)
        return row

    # -- in-process -----------------------------------------------------------------------

    def in_process(self, m: BenchModel) -> list[dict[str, Any]]:
        """Time the in-process row (when asked) and return the reference outputs per sample; the
        session options it used become the peers' (so every row runs the same ORT settings)."""
        from agent.contracts.manifest import Manifest
        from agent.runtimes import load_bundle

        manifest = Manifest.from_json((m.bundle_dir / "manifest.json").read_text())
        adapter = load_bundle(m.bundle_dir, manifest, threads=self.args.threads)
        session = adapter._session  # the raw session: the row measures ONNX Runtime alone
        self.ort_options[m.name] = describe(session.get_session_options())
        outputs = [o.name for o in session.get_outputs()]
        reference = [
            dict(zip(outputs, session.run(outputs, {m.onnx_input_name: m.sample(i)}), strict=True))
            for i in range(len(m.samples))
        ]
        if "in-process" in self.args.servers:
            row = self.add_row(m.name, "in-process", "ort", session_options=self.ort_options[m.name])
            self.point_runs(row, lambda: InProcessCaller(session, m.onnx_input_name, outputs, m))
        adapter.close()
        return reference

    # -- servers --------------------------------------------------------------------------

    def served(
        self,
        m: BenchModel,
        name: str,
        start: Callable[[], Server],
        input_name: str,
        reference: list[dict[str, Any]],
    ) -> None:
        protocols = PROTOCOLS[name]
        say(f"{m.name}: starting {name}")
        try:
            server = start()
        except (ServerError, envs.PeerEnvError, OSError) as exc:
            for proto in protocols:
                self.add_row(m.name, name, proto, skipped=f"{name} did not start: {str(exc)[:400]}")
            say(f"{m.name}: {name} did not start: {exc}")
            return
        try:
            for proto in protocols:
                if proto == "grpc" and server.grpc_address is None:
                    self.add_row(m.name, name, proto, skipped=server.grpc_missing)
                    say(f"  {m.name} {name} grpc skipped: {server.grpc_missing}")
                    continue
                try:
                    if proto == "grpc":
                        assert server.grpc_address is not None
                        factory: Callable[[], Caller] = grpc_factory(
                            m, server.grpc_address, input_name, reference
                        )
                    else:
                        assert server.http_port is not None
                        factory = http_factory(
                            m, server.http_port, input_name, proto == "http-binary", reference
                        )
                except CheckError as exc:
                    self.add_row(m.name, name, proto, error=f"answer check failed: {exc}"[:500])
                    say(f"  {m.name} {name} {proto}: answer check failed: {exc}")
                    continue
                self.point_runs(self.add_row(m.name, name, proto, checked=True), factory)
        finally:
            server.stop()

    def peer_python(self, name: str) -> Path:
        if name not in self.peer_facts:
            say(f"{name}: making or checking its venv ({envs.peers_dir() / name})")
            python = envs.ensure(name)
            self.peer_facts[name] = {
                "venv": str(python.parent.parent),
                "versions": machine.peer_versions(python),
            }
        return envs.python_of(name)

    def model(self, m: BenchModel) -> None:
        say(f"{m.name}: in-process")
        reference = self.in_process(m)
        options = json.dumps(self.ort_options[m.name])
        threads = None if self.args.agent_threads == "fit" else self.args.threads
        if "agent" in self.args.servers:
            if self.agent_grpc is None:
                from benchmarks.serving.servers import agent_offers_grpc

                self.agent_grpc = agent_offers_grpc()
            self.served(
                m,
                "agent",
                lambda: start_agent(m.bundle_dir, m.name, "1", threads, self.work, bool(self.agent_grpc)),
                m.input_name,
                reference,
            )
        if "kserve" in self.args.servers:
            self.served(
                m,
                "kserve",
                lambda: start_kserve(self.peer_python("kserve"), m.onnx, m.name, options, self.work),
                m.onnx_input_name,
                reference,
            )
        if "mlserver" in self.args.servers:
            self.served(
                m,
                "mlserver",
                lambda: start_mlserver(self.peer_python("mlserver"), m.onnx, m.name, options, self.work),
                m.onnx_input_name,
                reference,
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="digits,mobilenet")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--agent-threads",
        choices=["fit", "fixed"],
        default="fit",
        help="fit: the agent's default (a thread per CPU, or one for a model that runs faster on one); "
        "fixed: --threads, as every other row",
    )
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="smoke run: 0.3 s warm-up, 1 s a point")
    ap.add_argument("-o", "--output", choices=["table", "json"], default="table")
    ap.add_argument("--json", type=Path, help="also write the whole result to this file")
    args = ap.parse_args(argv)
    args.models = [x for x in args.models.split(",") if x]
    args.servers = [x for x in args.servers.split(",") if x]
    args.concurrency = [int(x) for x in args.concurrency.split(",") if x]
    for m in args.models:
        if m not in ("digits", "mobilenet"):
            ap.error(f"unknown model {m!r} (digits, mobilenet)")
    for s in args.servers:
        if s not in SERVERS:
            ap.error(f"unknown server {s!r} ({', '.join(SERVERS)})")
    if args.quick:
        args.warmup, args.duration = 0.3, 1.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    load_before = machine.load_average()
    cores = os.cpu_count() or 1
    if load_before is not None and load_before[0] > 0.5 * cores:
        say(f"warning: load average {load_before[0]} on {cores} cores; figures now are not to be trusted")
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        for name in args.models:
            say(f"{name}: building and compiling the FP32 onnx-x86 bundle")
            bench.model(prepare(name, Path(tmp)))
    result = {
        "benchmark": "serving",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "settings": {
            "threads": args.threads,
            "agent_threads": args.agent_threads,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "batch": 1,
            "quick": args.quick,
        },
        # True when the 1-minute load before the run was under half the cores.
        "quiet_machine": None if load_before is None else load_before[0] <= 0.5 * cores,
        "machine": machine.cpu(),
        "load_average": {"before": load_before, "after": machine.load_average()},
        "versions": machine.versions(),
        "peers": bench.peer_facts,
        "session_options": bench.ort_options,
        "agent_grpc_offered": bench.agent_grpc,
        "rows": bench.rows,
        "ratios": [
            report.ratios(bench.rows, m, min(args.concurrency), max(args.concurrency)) for m in args.models
        ],
    }
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        say(f"wrote {args.json}")
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        report.print_tables(result)
    # Exit 1 when a row that ran has an error or a point with no completed request (a skipped
    # row, such as agent gRPC before the agent offers it, is not a failure).
    failed = [
        r
        for r in bench.rows
        if r.get("error") or any(p["errors"] or p["throughput_rps"] is None for p in r["points"])
    ]
    for r in failed:
        say(f"FAILED: {r['model']} {r['server']} {r['protocol']}: {r.get('error') or 'errors or no figures'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
