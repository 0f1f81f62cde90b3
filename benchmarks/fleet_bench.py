"""One wave to the whole group, at several fleet sizes: how long the server takes to see it done.

For each size N: a fresh fleet server (``edgectl.local.launcher.start_server``, with its own
Mosquitto child and SQLite) and N simulated devices (:mod:`edgectl.simulate`, one process, the
real enrollment, mTLS and report sequence) in one group. The digits example is pushed and compiled
ahead (so compile time is not measured), then one deployment goes to the whole group in one
wave (with ``--health-window`` seconds of post-switch health window, 0 by default, where the
server takes rollout options) and we measure:

- ``desired_spread_s``: from the deployment's creation to the last device receiving its desired
  state; ``final_spread_s``: to the last device's final report;
- ``succeeded_after_last_report_s``: from the last device's final report to the deployment's
  SUCCEEDED (by the server's own ``updated_at`` stamp, wall clock of this same machine), and the
  same as this script saw it by polling (``..._polled_s``, polling every ``--poll`` seconds);
- ``wall_s``: from the deployment's creation to SUCCEEDED seen;
- ``server_cpu_s`` and ``server_cpu_per_report_ms``: the server process's utime + stime from
  ``/proc/<pid>/stat``, from just before the deployment to SUCCEEDED seen, over the reports the
  devices sent in that time (the polling is included; it is the same at every size).

Writes ``benchmarks/results/fleet_bench.json`` (or ``--out``) with the figures, the CPU model and
flags from ``/proc/cpuinfo``, and the command line.

    python benchmarks/fleet_bench.py                  # N = 100, 500, 1000, 2000
    python benchmarks/fleet_bench.py --sizes 50       # a quick check that it works
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgectl.client import FleetClient  # noqa: E402
from edgectl.errors import ApiError  # noqa: E402
from edgectl.local.launcher import Launched, start_server  # noqa: E402
from edgectl.simulate import Faults, SimConfig, Simulator  # noqa: E402

DIGITS = ROOT / "examples" / "digits"
PROFILE = "x86-64-avx2"
MODEL, VERSION, GROUP = "digits", "1", "bench"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (fields 14 and 15 of /proc/<pid>/stat), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_info() -> dict[str, Any]:
    model, flags = "", ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = value.strip()
    return {"model": model, "count": os.cpu_count(), "flags": flags.split()}


def wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def compile_ahead(api: FleetClient, timeout: float = 600.0) -> None:
    api.push_model(
        DIGITS / "digits_cnn.onnx",
        MODEL,
        VERSION,
        calibration=DIGITS / "calibration.npz",
        validation=DIGITS / "heldout.npz",
    )
    api.compile_ahead(MODEL, VERSION, [PROFILE])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bundles = api.get_model(MODEL, VERSION).get("bundles") or []
        if bundles and all(b["status"] == "ready" for b in bundles):
            return
        failed = [b for b in bundles if b["status"] == "failed"]
        if failed:
            raise RuntimeError(f"the compile failed: {failed[0].get('error')}")
        time.sleep(0.5)
    raise RuntimeError(f"the bundle was not ready after {timeout:g}s")


def deploy(api: FleetClient, health_window: float) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One wave to the whole group, with the post-switch health window given (it would otherwise
    sit between the last report and SUCCEEDED). A server without rollout options (before the
    staged rollouts) is sent the plain request; the answer says which was used."""
    rollout = {"waves": [{"percent": 100}], "health_window_s": health_window}
    body = {"model": f"{MODEL}:{VERSION}", "group": GROUP}
    try:
        return api.request("POST", "/api/v1/deployments", json=body | {"rollout": rollout}), rollout
    except ApiError as exc:
        if exc.status not in (400, 422):
            raise
        return api.create_deployment(f"{MODEL}:{VERSION}", GROUP), None


def run_size(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    server: Launched = start_server(work / "server", broker="mosquitto", timeout=120)
    url = str(server.ready["url"])
    api = FleetClient(url)
    sim: Simulator | None = None
    try:
        api.create_group(GROUP, [], {"fleet": GROUP})  # first: the devices enroll into it
        token = str(api.create_enroll_token(GROUP, uses=n)["token"])
        sim = Simulator(
            SimConfig(
                url,
                token,
                devices=n,
                profiles=(PROFILE,),
                labels={"fleet": GROUP},
                prefix="bench",
                telemetry_interval=args.telemetry_interval,
                step_delay=(args.step_min, args.step_max),
            ),
            Faults(seed=args.seed),
        )
        compile_ahead(api)
        t0 = time.monotonic()
        sim.start(timeout=max(120.0, n / 5))
        register_s = time.monotonic() - t0
        time.sleep(args.settle)  # let the server finish what enrollment woke
        pid = server.proc.pid
        cpu0, reports0 = cpu_seconds(pid), sim.counts["reports"]
        created = time.monotonic()
        dep, rollout = deploy(api, args.health_window)
        seen: dict[str, Any] = {}
        deadline = created + args.timeout
        polls = 0
        while time.monotonic() < deadline:
            polls += 1
            # the summary with counts, no device rows: the poll must not load the server itself
            seen = api.request("GET", f"/api/v1/deployments/{dep['id']}", params={"limit": 0})
            if seen["state"] in ("SUCCEEDED", "FAILED"):
                break
            time.sleep(args.poll)
        done_seen = time.monotonic()
        cpu1, reports1 = cpu_seconds(pid), sim.counts["reports"]
        timeline = sim.timeline()
        desired = [t[-1]["desired_at"] for t in timeline.values() if t]
        finals = [t[-1]["final_at"] for t in timeline.values() if t and t[-1]["final_at"] is not None]
        last_final = max(finals) if finals else None
        reports = reports1 - reports0
        result: dict[str, Any] = {
            "devices": n,
            "state": seen.get("state"),
            "register_and_connect_s": round(register_s, 3),
            "devices_final": len(finals),
            "desired_spread_s": round(max(desired) - created, 3) if desired else None,
            "final_spread_s": round(last_final - created, 3) if last_final else None,
            "wall_s": round(done_seen - created, 3),
            "reports": reports,
            "server_cpu_s": round(cpu1 - cpu0, 3),
            "server_cpu_per_report_ms": round(1000 * (cpu1 - cpu0) / reports, 3) if reports else None,
            "polls": polls,
            "rollout": rollout,
        }
        if last_final is not None:
            result["succeeded_after_last_report_polled_s"] = round(done_seen - last_final, 3)
            if seen.get("state") == "SUCCEEDED" and seen.get("updated_at"):
                last_final_wall = last_final + sim.wall_offset
                result["succeeded_after_last_report_s"] = round(wall(seen["updated_at"]) - last_final_wall, 3)
        return result
    finally:
        if sim is not None:
            sim.stop()
        api.close()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100,500,1000,2000", help="comma-separated fleet sizes")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fleet_bench.json")
    p.add_argument("--timeout", type=float, default=900.0, help="give up on one deployment after this")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between deployment polls")
    p.add_argument("--settle", type=float, default=2.0, help="seconds between enrollment and deploy")
    p.add_argument(
        "--health-window", type=float, default=0.0, help="post-switch health window of the rollout (s)"
    )
    p.add_argument("--telemetry-interval", type=float, default=0.0, help="0: no telemetry (default)")
    p.add_argument("--step-min", type=float, default=0.01)
    p.add_argument("--step-max", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the run directories")
    args = p.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error(f"--sizes: not a list of integers: {args.sizes!r}")
    if not sizes or min(sizes) < 1:
        p.error("--sizes: name at least one positive size")
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        p.error("the benchmark needs Mosquitto (apt-get install mosquitto)")

    results = []
    for n in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"fleet-bench-{n}-"))
        try:
            r = run_size(n, work, args)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(r), flush=True)
        results.append(r)

    doc = {
        "benchmark": "fleet_bench",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpu": cpu_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if all(r["state"] == "SUCCEEDED" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
