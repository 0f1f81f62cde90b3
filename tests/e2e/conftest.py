"""Fixtures for the end-to-end tests: a fleet of real processes (fleet-server, edge-agents) on
loopback against a real Mosquitto, with either SQLite + a directory store or PostgreSQL + S3."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgectl.local.launcher import Launched, start_agent, start_server, throwaway_keys, trust_root
from tests.e2e.e2e_kit import enroll_token


@pytest.fixture
def tflite_toolchain() -> None:
    from compilers.toolchains import status

    if not status("tflite").installed:
        pytest.skip(
            "tflite toolchain not installed: run `edgectl toolchains install tflite` (ARM devices need it)"
        )


@dataclass
class Backend:
    name: str
    db: str | None = None
    store: str | None = None
    s3_endpoint: str | None = None
    bucket: str | None = None
    prefix: str = ""


@pytest.fixture(params=["sqlite+dir", "postgres+s3"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "sqlite+dir":
        return Backend("sqlite+dir")
    pg = request.getfixturevalue("postgres_url")
    s3 = request.getfixturevalue("s3_endpoint")
    import boto3

    bucket = f"edgefleet-e2e-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3, region_name="us-east-1").create_bucket(Bucket=bucket)
    return Backend(
        "postgres+s3", db=pg, store=f"s3://{bucket}/fleet", s3_endpoint=s3, bucket=bucket, prefix="fleet"
    )


@dataclass
class Fleet:
    root: Path
    server: Launched
    keys_dir: Path
    agents: dict[str, Launched] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.server.ready["url"])

    def add_agent(self, device_id: str, profile: str, labels: dict[str, str]) -> Launched:
        # -- device identity: every agent enrolls with a token of its own (one use) --
        agent = start_agent(
            self.url,
            device_id,
            profile,
            self.root / device_id,
            labels=labels,
            log_dir=self.root / "logs",
            tuf_root=trust_root(self.keys_dir),
            enroll_token=enroll_token(self.url),
        )
        self.agents[device_id] = agent
        return agent

    def inference_url(self, device_id: str) -> str:
        return str(self.agents[device_id].ready["inference_url"])

    def logs(self) -> str:
        return "\n".join(a.log_tail(30) for a in [self.server, *self.agents.values()])


def fleet_tls(mosquitto_broker: Any, server_dir: Path) -> None:
    """Run ``mosquitto_broker`` with the configuration fleet-server writes for its own Mosquitto
    (mTLS, ACL, CRL), from the CA the server will find in ``server_dir``."""
    from fleet_server.identity.broker_files import TlsFiles, write_tls_files
    from fleet_server.identity.ca import FleetCA

    ca = FleetCA.load_or_create(server_dir / "identity")
    files = write_tls_files(ca, TlsFiles(server_dir / "mosquitto" / "tls"), [], [])
    mosquitto_broker.use_fleet_tls(files)
    mosquitto_broker.restart()


@pytest.fixture
def make_fleet(tmp_path: Path, mosquitto_broker: Any) -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(backend: Backend | None = None) -> Fleet:
        b = backend or Backend("sqlite+dir")
        keys = throwaway_keys(tmp_path / "keys")
        fleet_tls(mosquitto_broker, tmp_path / "server")  # device identity: mTLS + ACLs on
        server = start_server(
            tmp_path / "server",
            keys_dir=keys,
            broker=mosquitto_broker.url,
            db=b.db,
            store=b.store,
            s3_endpoint=b.s3_endpoint,
        )
        fleet = Fleet(tmp_path, server, keys)
        fleets.append(fleet)
        return fleet

    yield make
    for f in fleets:
        for a in f.agents.values():
            a.stop()
        f.server.stop()
