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
from agent.config import AgentConfig, load_config, parse_labels, setup_logging
from agent.errors import ConfigError
from device_profiles import ProfileError, load_profile


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent",
        description="EdgeFleet device agent: gets models over MQTT, serves them over OIP v2 (HTTP).",
        epilog="Every flag can also be set as EDGEFLEET_AGENT_<FLAG> (e.g. EDGEFLEET_AGENT_DEVICE_ID) or in "
        "a --config file; flags win over the environment, which wins over the file.",
    )
    for name, field in AgentConfig.model_fields.items():  # one flag per setting
        if name == "labels":
            p.add_argument("--label", dest=name, action="append", metavar="KEY=VALUE", help=field.description)
        else:
            p.add_argument(f"--{name.replace('_', '-')}", dest=name, help=field.description)
    p.add_argument("--config", type=Path, help="YAML file with any of these settings")
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
