"""What a device carries: install size and the agent's resident memory while serving.

For each device install, a clean virtual environment gets the working tree's wheel with its
extras, exactly as ``pip install 'edgefleet[agent]'`` would:

- ``agent`` (x86, ONNX Runtime), ``agent,tflite`` (ARM boards, LiteRT), measured on this host;
- with ``--arm64``, the two aarch64 environments of ``deploy/arm64-root.sh`` (LiteRT + numpy 2,
  tflite-runtime + numpy < 2), measured inside the arm64 root.

Then a fleet server (this environment, its own Mosquitto child) rolls the digits model out to one
agent per environment, each agent answers ``--requests`` inference requests, and its VmRSS and
VmHWM are read from /proc. Under qemu-user the aarch64 figures include the emulator's own memory,
so they bound a real board's figure from above.

    .venv/bin/python benchmarks/footprint.py [--arm64] [--requests 500]

Writes benchmarks/results/footprint.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgectl.local.launcher import Launched, start_agent, start_server  # noqa: E402
from tests.wheel_kit import CleanVenv, build_wheel  # noqa: E402

DIGITS = ROOT / "examples" / "digits"
ARM_ROOT = Path(os.environ.get("EDGEFLEET_ARM64_ROOT", Path.home() / ".cache" / "edgefleet" / "arm64-root"))
ARM_ENV = ["HOME=/root", "PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONUNBUFFERED=1"]


def edgectl(url: str, *args: str) -> str:
    env = {**os.environ, "EDGEFLEET_SERVER": url, "NO_COLOR": "1"}
    res = subprocess.run(
        [str(Path(sys.executable).with_name("edgectl")), *args], capture_output=True, text=True, env=env
    )
    if res.returncode != 0:
        raise SystemExit(f"edgectl {' '.join(args)} failed: {res.stderr[-2000:]}")
    return res.stdout


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def proc_memory(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)  # kB -> MiB
    return fields


def cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in flags)
    return ""


def serve(url: str, agent: Launched, n: int) -> None:
    x = np.load(DIGITS / "heldout.npz")["x"][:1].astype(np.float32)
    body = {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    }
    with httpx.Client(base_url=str(agent.ready["inference_url"]), timeout=60) as client:
        for _ in range(n):
            client.post("/v2/models/digits/infer", json=body).raise_for_status()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm64", action="store_true", help="also measure the aarch64 environments (needs root)")
    ap.add_argument("--requests", type=int, default=500, help="inference requests per agent before reading")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "footprint.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgefleet-footprint-") as tmp_name:
        tmp = Path(tmp_name)
        wheel = build_wheel(tmp / "wheel")
        installs: dict[str, dict[str, Any]] = {}
        commands: dict[str, tuple[list[str], str]] = {}
        for extras, profile in (("agent", "x86-64-avx2"), ("agent,tflite", "raspberry-pi-5")):
            env = CleanVenv(tmp / extras.replace(",", "-"), wheel, extras)
            installs[extras] = {
                "arch": platform.machine(),
                "site_packages_mib": round(env.site_packages_bytes() / 2**20, 1),
                "venv_mib": round(tree_bytes(env.path) / 2**20, 1),
                "distributions": len(env.distributions()),
            }
            commands[extras] = (["env", "-u", "PYTHONPATH", str(env.script("edge-agent"))], profile)
        if args.arm64:
            subprocess.run(["bash", str(ROOT / "deploy" / "arm64-root.sh"), "--keep-mounted"], check=True)
            wheel_in_root = ARM_ROOT / "tmp" / wheel.name
            wheel_in_root.write_bytes(wheel.read_bytes())
            for name in ("litert", "tflrt"):
                chroot = ["chroot", str(ARM_ROOT), "/usr/bin/env", "-i", *ARM_ENV]
                subprocess.run(
                    [
                        *chroot,
                        f"/opt/{name}/bin/pip",
                        "install",
                        "-q",
                        "--no-deps",
                        "--force-reinstall",
                        f"/tmp/{wheel.name}",
                    ],
                    check=True,
                )
                (site,) = (ARM_ROOT / "opt" / name / "lib").glob("python3*/site-packages")
                installs[f"aarch64 {name}"] = {
                    "arch": "aarch64",
                    "site_packages_mib": round(tree_bytes(site) / 2**20, 1),
                    "venv_mib": round(tree_bytes(ARM_ROOT / "opt" / name) / 2**20, 1),
                }
                commands[f"aarch64 {name}"] = ([*chroot, f"/opt/{name}/bin/edge-agent"], "raspberry-pi-5")

        server = start_server(tmp / "server")
        url = str(server.ready["url"])
        agents: dict[str, Launched] = {}
        try:
            for i, (name, (command, profile)) in enumerate(commands.items()):
                data_dir = (
                    Path(f"/var/lib/edgefleet-footprint/d{i}")
                    if name.startswith("aarch64")
                    else tmp / f"d{i}"
                )
                agents[name] = start_agent(
                    url,
                    f"d{i}",
                    profile,
                    data_dir,
                    labels={"bench": "footprint"},
                    log_dir=tmp / "logs",
                    timeout=600,
                    command=command,
                    extra=["--grpc-port", "-1"],
                )
            edgectl(
                url,
                "models",
                "push",
                str(DIGITS / "digits_cnn.onnx"),
                "--name",
                "digits",
                "--version",
                "1",
                "--calibration",
                str(DIGITS / "calibration.npz"),
                "--validation",
                str(DIGITS / "heldout.npz"),
            )
            edgectl(url, "groups", "create", "fp", "--selector", "bench=footprint")
            edgectl(url, "deploy", "digits:1", "--group", "fp", "--wait", "--timeout", "1500")
            for name, agent in agents.items():
                serve(url, agent, args.requests)
                installs[name]["agent_memory_mib"] = proc_memory(agent.proc.pid)
                installs[name]["emulated"] = name.startswith("aarch64")
        finally:
            for agent in agents.values():
                agent.stop(timeout=30)
            server.stop()
            if args.arm64:
                subprocess.run(["bash", str(ROOT / "deploy" / "arm64-root.sh"), "--umount"], check=False)

    result = {
        "command": "python benchmarks/footprint.py" + (" --arm64" if args.arm64 else ""),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": {"machine": platform.machine(), "cpu_flags": cpu_flags(), "cores": os.cpu_count()},
        "model": "digits (examples/digits), served after --requests JSON inference requests",
        "requests": args.requests,
        "installs": installs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
