"""The fleet server's TUF repository, served by the real app under uvicorn: an independent,
stock python-tuf client (ngclient with its default urllib3 fetcher) fetches a bundle from it, on
the directory store and on S3; key rotation reaches the agent's TUF source through the server;
the refresher re-signs on schedule; a server without keys says how to make them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tuf.ngclient import Updater

from agent.contracts.state import DesiredModel
from agent.trust import TufSource, install_root
from fleet_server.app import create_app
from fleet_server.config import Settings
from fleet_server.store import DirStore
from fleet_server.trust import TufRepository, init_keys, load_online_keys, rotate
from fleet_server.trust.repository import Expiry, NewTarget
from tests.fixtures.asgi_server import serve_app


class Served:
    def __init__(self, app: Any, url: str) -> None:
        self.app = app
        self.url = url

    @property
    def fleet(self) -> Any:
        return self.app.state.fleet


@pytest.fixture
def serve() -> Iterator[Callable[[Settings], Served]]:
    with ExitStack() as stack:

        def start(settings: Settings) -> Served:
            app = create_app(settings)
            return Served(app, stack.enter_context(serve_app(app)))

        yield start


def stock_client(tmp: Path, url: str, root: bytes) -> Updater:
    """ngclient as anyone would use it: default fetcher, no EdgeFleet code."""
    tmp.mkdir(parents=True, exist_ok=True)
    return Updater(
        str(tmp / "meta"), f"{url}/tuf/", str(tmp / "targets"), f"{url}/artifacts/", bootstrap=root
    )


def check_standard_client(served: Served, seeded: dict[Any, Any], tmp: Path) -> None:
    fleet = served.fleet
    fleet.tuf.refresh()  # signs the seeded bundles in (as the refresher's next pass would)
    root = httpx.get(f"{served.url}/tuf/1.root.json", follow_redirects=True).content
    assert json.loads(root) == json.loads(fleet.tuf.root_json())
    up = stock_client(tmp, served.url, root)
    up.refresh()
    (entry,) = [v for k, v in seeded.items() if k[0] == "onnx-x86"][:1]
    info = up.get_targetinfo(entry["target_path"])
    assert info is not None and info.length == entry["size"] and info.hashes["sha256"] == entry["sha256"]
    assert info.custom["model"] == "digits" and info.custom["target"] == "onnx-x86"
    assert len(info.custom["manifest_sha256"]) == 64 and info.custom["build_key"]
    path = up.download_target(info)
    with fleet.store.open(entry["target_path"]) as fh:
        assert Path(path).read_bytes() == fh.read()


def test_a_stock_python_tuf_client_fetches_a_bundle(
    serve: Callable[[Settings], Served], settings: Settings, seed_bundles: Any, tmp_path: Path
) -> None:
    served = serve(settings)
    from fastapi.testclient import TestClient

    seeded = seed_bundles(TestClient(served.app))
    check_standard_client(served, seeded, tmp_path / "client")
    # The consistent-snapshot name must carry the bundle's own sha256.
    entry = next(iter(seeded.values()))
    head, _, base = entry["target_path"].rpartition("/")
    assert httpx.get(f"{served.url}/artifacts/{head}/{'0' * 64}.{base}").status_code == 404
    assert httpx.get(f"{served.url}/artifacts/{head}/{entry['sha256']}.{base}").status_code == 200
    assert httpx.get(f"{served.url}/tuf/../fleet.db").status_code == 404


def test_a_stock_client_fetches_from_the_s3_store(
    serve: Callable[[Settings], Served],
    settings: Settings,
    seed_bundles: Any,
    tmp_path: Path,
    s3_endpoint: str,
) -> None:
    bucket = f"tuf-{uuid.uuid4().hex[:8]}"
    s3 = settings.model_copy(update={"store": f"s3://{bucket}/fleet", "s3_endpoint": s3_endpoint})
    served = serve(s3)
    from fastapi.testclient import TestClient

    seeded = seed_bundles(TestClient(served.app))
    check_standard_client(served, seeded, tmp_path / "client")
    r = httpx.get(f"{served.url}/tuf/timestamp.json")
    assert r.status_code == 307 and bucket in r.headers["location"]  # metadata from S3 itself


def test_key_rotation_reaches_the_agent_through_the_server(
    serve: Callable[[Settings], Served], settings: Settings, seed_bundles: Any, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    init_keys(keys, root_keys=3, root_threshold=2)
    served = serve(settings.model_copy(update={"keys_dir": keys / "server"}))
    from fastapi.testclient import TestClient

    seeded = seed_bundles(TestClient(served.app))
    served.fleet.tuf.refresh()
    entry = next(v for k, v in seeded.items() if k[0] == "onnx-x86")
    model = DesiredModel(
        name="digits",
        version="1.0",
        target="onnx-x86",
        precision="int8",
        target_path=entry["target_path"],
        url="ignored",
        size=entry["size"],
        sha256=entry["sha256"],
    )
    data = tmp_path / "agent"
    install_root(data, keys / "server" / "root.json")
    src = TufSource(served.url, data)
    assert src.fetch(model).read_bytes()[:10]
    src.discard(model)
    rotate(keys, "root")
    rotate(keys, "targets")
    r = httpx.post(f"{served.url}/api/v1/tuf/refresh")
    assert r.status_code == 200 and r.json()["root_version"] == 3, r.text
    assert src.fetch(model).is_file()  # walked 2.root.json and 3.root.json, verified new targets key
    assert sorted(p.name for p in (data / "trust" / "metadata" / "root_history").iterdir()) == [
        "1.root.json",
        "2.root.json",
        "3.root.json",
    ]
    src.close()


def test_online_metadata_is_re_signed_when_half_its_time_is_gone(tmp_path: Path) -> None:
    init_keys(tmp_path / "keys", root_keys=1, root_threshold=1)
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    repo = TufRepository(
        DirStore(tmp_path / "store"),
        load_online_keys(tmp_path / "keys" / "server"),
        tmp_path / "work",
        expiry=Expiry(timestamp=timedelta(hours=2)),
        clock=lambda: now[0],
    )
    repo.open()
    assert repo.timestamp is not None and repo.timestamp.signed.version == 1
    assert not repo.refresh()
    now[0] += timedelta(minutes=61)
    assert repo.refresh() and repo.timestamp.signed.version == 2
    assert repo.timestamp.signed.expires == now[0] + timedelta(hours=2)
    assert repo.snapshot is not None and repo.snapshot.signed.version == 1  # still fresh
    repo.add_targets([NewTarget("m/1/a.tar", 10, "a" * 64, {"model": "m"})])
    assert (repo.targets and repo.targets.signed.version, repo.snapshot.signed.version) == (2, 2)
    # A restart reads the repository back from the store.
    again = TufRepository(repo.store, repo.keys, tmp_path / "work")
    again.open()
    assert again.timestamp and again.timestamp.signed.version == 3 and again.has_target("m/1/a.tar")


def test_a_server_without_keys_says_how_to_make_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    done = subprocess.run(
        [sys.executable, "-c", "from fleet_server.cli import run; run()", "--port", "0", "--data-dir",
         str(tmp_path / "d")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "edgectl keys init" in done.stderr and "--keys-dir" in done.stderr and done.stdout == ""


def test_a_server_given_old_keys_refuses_to_start(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    init_keys(keys, root_keys=1, root_threshold=1)
    old = tmp_path / "old"
    shutil.copytree(keys / "server", old)
    store = DirStore(tmp_path / "store")
    TufRepository(store, load_online_keys(keys / "server"), tmp_path / "w").open()
    rotate(keys, "timestamp")
    TufRepository(store, load_online_keys(keys / "server"), tmp_path / "w").open()
    from fleet_server.errors import ConfigError

    with pytest.raises(ConfigError, match="--keys-dir"):
        TufRepository(store, load_online_keys(old), tmp_path / "w").open()


def test_metadata_someone_else_wrote_to_the_store_is_not_re_signed(tmp_path: Path) -> None:
    """A store writer without the keys adds a target: the server refuses to start on it rather
    than sign the forged target into the next versions."""
    from fleet_server.errors import ConfigError

    keys = tmp_path / "keys"
    init_keys(keys, root_keys=1, root_threshold=1)
    store = DirStore(tmp_path / "store")
    repo = TufRepository(store, load_online_keys(keys / "server"), tmp_path / "w")
    repo.open()
    assert repo.targets is not None
    path = tmp_path / "store" / "tuf" / f"{repo.targets.signed.version}.targets.json"
    forged = json.loads(path.read_bytes())
    forged["signed"]["targets"]["evil/1/x.tar"] = {"length": 1, "hashes": {"sha256": "0" * 64}}
    path.write_text(json.dumps(forged))
    with pytest.raises(ConfigError, match="does not verify"):
        TufRepository(store, load_online_keys(keys / "server"), tmp_path / "w").open()
    path.unlink()
    with pytest.raises(ConfigError, match="incomplete"):
        TufRepository(store, load_online_keys(keys / "server"), tmp_path / "w").open()
