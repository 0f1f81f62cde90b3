"""``edgectl tokens`` and ``edgectl audit`` against the real fleet server (``create_app``: SQLite, a
directory store, the embedded broker) started with a bootstrap ``--token`` and served by uvicorn
on a free port, as in ``test_edgectl_real_server.py``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from typer.testing import Result

from tests.fixtures.asgi_server import serve_app

Run = Callable[..., Result]
BOOT = "boot-s3cret"

pytest.importorskip(
    "fleet_server.app", reason="the fleet server needs the server extra: pip install -e '.[server]'"
)


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:

    from fleet_server.app import create_app
    from fleet_server.config import Settings
    from tests.fixtures.tuf_keys import server_keys

    data = tmp_path_factory.mktemp("fleet")
    app = create_app(
        Settings(
            data_dir=data,
            port=0,
            grpc_port=-1,
            broker="embedded",
            mqtt_protocol="3.1.1",
            token=BOOT,
            keys_dir=server_keys(),
        )
    )
    with serve_app(app) as url:
        yield url


@pytest.fixture
def as_token(edgectl: Run, real_server: str) -> Callable[..., Result]:
    """``as_token(token, *args)``: edgectl against the real server with ``--token token``."""
    return lambda token, *args: edgectl("--server", real_server, "--token", token, *args)


def created(as_token: Callable[..., Result], name: str, role: str, *extra: str) -> dict[str, Any]:
    result = as_token(BOOT, "tokens", "create", "--name", name, "--role", role, *extra, "-o", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert isinstance(body, dict)
    return body


def test_tokens_create_gives_a_working_token_with_its_role(as_token: Callable[..., Result]) -> None:
    body = created(as_token, "ci", "deployer", "--expires", "30d")
    assert (body["name"], body["role"], body["state"]) == ("ci", "deployer", "active")
    assert body["expires_at"] and body["token"].startswith("eft_")
    secret = body["token"]

    made = as_token(secret, "groups", "create", "lab", "-o", "json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["name"] == "lab"

    refused = as_token(secret, "tokens", "create", "--name", "mine", "--role", "admin")
    assert refused.exit_code == 1 and refused.stdout == ""
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: ") and "HTTP 403, forbidden" in line and "edgectl tokens create" in line


def test_a_viewer_token_cannot_deploy(as_token: Callable[..., Result]) -> None:
    secret = created(as_token, "dash", "viewer")["token"]
    assert as_token(secret, "devices", "ls", "-o", "json").exit_code == 0
    result = as_token(secret, "deploy", "digits:1", "--group", "lab")
    assert result.exit_code == 1 and result.stdout == ""
    assert "HTTP 403" in result.stderr and "deployer" in result.stderr


def test_tokens_ls_and_revoke(as_token: Callable[..., Result]) -> None:
    secret = created(as_token, "temp", "viewer")["token"]
    listed = as_token(BOOT, "tokens", "ls", "-o", "json")
    assert listed.exit_code == 0
    rows = {t["name"]: t for t in json.loads(listed.stdout)}
    assert rows["temp"]["state"] == "active" and "token" not in rows["temp"]
    assert secret not in listed.stdout
    table = as_token(BOOT, "tokens", "ls")
    assert table.exit_code == 0 and "temp" in table.stdout and "viewer" in table.stdout

    revoked = as_token(BOOT, "tokens", "revoke", "temp")
    assert revoked.exit_code == 0 and "revoked token temp" in revoked.stderr
    after = as_token(secret, "devices", "ls")
    assert after.exit_code == 1 and "HTTP 401" in after.stderr and "revoked" in after.stderr
    missing = as_token(BOOT, "tokens", "revoke", "nobody")
    assert missing.exit_code == 1 and "HTTP 404" in missing.stderr


def test_tokens_create_in_a_table_shows_the_secret_once(as_token: Callable[..., Result]) -> None:
    result = as_token(BOOT, "tokens", "create", "--name", "human", "--role", "admin")
    assert result.exit_code == 0, result.output
    assert "shown only now" in result.stderr
    secret = next(w for w in result.stdout.split() if w.startswith("eft_"))
    assert as_token(secret, "tokens", "ls").exit_code == 0  # an admin


def test_bad_expiry_is_refused_before_calling_the_server(as_token: Callable[..., Result]) -> None:
    result = as_token(BOOT, "tokens", "create", "--name", "x", "--role", "viewer", "--expires", "soon")
    assert result.exit_code == 2 and "not a duration" in result.stderr
    result = as_token(BOOT, "tokens", "create", "--name", "x", "--role", "root")
    assert result.exit_code == 2


def test_audit_ls_shows_successful_and_refused_calls(as_token: Callable[..., Result]) -> None:
    secret = created(as_token, "auditee", "viewer")["token"]
    assert as_token(secret, "groups", "create", "nope").exit_code == 1  # 403
    result = as_token(BOOT, "audit", "ls", "--limit", "2", "-o", "json")
    assert result.exit_code == 0, result.output
    refused, made = json.loads(result.stdout)
    assert (refused["actor"], refused["role"], refused["action"], refused["target"], refused["status"]) == (
        "auditee",
        "viewer",
        "groups.create",
        "nope",
        403,
    )
    assert refused["method"] == "POST" and refused["path"] == "/api/v1/groups"
    assert refused["client"] == "127.0.0.1" and refused["at"].endswith("Z")
    assert (made["actor"], made["action"], made["target"], made["status"]) == (
        "bootstrap",
        "tokens.create",
        "auditee",
        201,
    )
    assert secret not in result.stdout

    older = as_token(BOOT, "audit", "ls", "--limit", "1", "--before", str(made["id"]), "-o", "json")
    (entry,) = json.loads(older.stdout)
    assert entry["id"] < made["id"]
    table = as_token(BOOT, "audit", "ls", "--limit", "5")
    assert table.exit_code == 0 and "auditee (viewer)" in table.stdout and "403" in table.stdout

    denied = as_token(secret, "audit", "ls")
    assert denied.exit_code == 1 and "HTTP 403" in denied.stderr
