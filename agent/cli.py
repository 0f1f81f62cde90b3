"""``edge-agent``: run the device agent.

Every flag can also come from ``EDGEFLEET_AGENT_<NAME>`` or a YAML file (``--config``); flags win
over the environment, which wins over the file. On success the agent prints one JSON line to
stdout, ``{"event": "ready", "device_id": ..., "inference_url": ..., "grpc_address": ...}``
(``grpc_address`` only while gRPC is on); logs go to stderr.
Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failed while running, 2 bad settings.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from agent import __version__
from agent.config import load_config, parse_labels, setup_logging
from agent.errors import ConfigError
from device_profiles import ProfileError, load_profile


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent",
        description="EdgeFleet device agent: gets models over MQTT, serves them over OIP v2 (HTTP).",
        epilog="Every flag can also be set as EDGEFLEET_AGENT_<FLAG> (e.g. EDGEFLEET_AGENT_DEVICE_ID) or in "
        "a --config file; flags win over the environment, which wins over the file.",
    )
    p.add_argument("--server", help="fleet server base URL, e.g. http://fleet:8080")
    p.add_argument("--device-id", dest="device_id", help="this device's id (letters, digits, . _ : -)")
    p.add_argument("--profile", help="device profile name (e.g. x86-64-avx2) or path to a profile YAML")
    p.add_argument("--data-dir", dest="data_dir", help="where the journal, slots and downloads live")
    p.add_argument("--host", help="inference API bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="inference API port (default 0: pick a free port)")
    p.add_argument(
        "--label", dest="labels", action="append", metavar="KEY=VALUE", help="a device label (repeatable)"
    )
    p.add_argument("--config", type=Path, help="YAML file with any of these settings")
    p.add_argument("--threads", type=int, help="threads per model (default: the runtime's choice)")
    p.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    p.add_argument(
        "--advertise-url", dest="advertise_url", help="inference URL to register, if not the bound one"
    )
    p.add_argument("--grpc-port", dest="grpc_port", type=int, help="gRPC inference port (0: free; -1: off)")
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli = vars(args)
    config_file = cli.pop("config")
    try:
        if cli.get("labels") is not None:
            cli["labels"] = parse_labels(cli["labels"], "--label")
        config = load_config(cli, os.environ, config_file)
        profile = load_profile(config.profile)
    except (ConfigError, ProfileError) as exc:
        print(f"edge-agent: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    from agent.daemon import run_agent  # heavy imports (runtimes, FastAPI) only once the settings are good

    return run_agent(config, profile)


def run() -> NoReturn:
    sys.exit(main())
