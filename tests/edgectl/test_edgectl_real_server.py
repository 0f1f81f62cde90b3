"""edgectl against the colleague's real fleet server (``fleet_server.app.create_app``: SQLite, a
directory store, the embedded MQTT broker), served by uvicorn in a thread on a free port.

The stub in ``edgectl_stub_server.py`` stays the main test bed because it can script rollout
states; this module checks that the commands agree with the real API where no agent is needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import Result

from tests.fixtures.asgi_server import serve_app
from tests.polling import wait_until

Run = Callable[..., Result]
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"

pytest.importorskip(
    "fleet_server.app", reason="the fleet server needs the server extra: pip install -e '.[server]'"
)


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:

    from fleet_server.app import create_app
    from fleet_server.config import Settings

    data = tmp_path_factory.mktemp("fleet")
    from tests.fixtures.tuf_keys import server_keys

    app = create_app(
        Settings(data_dir=data, port=0, broker="embedded", compile_workers=1, keys_dir=server_keys())
    )
    with serve_app(app) as url:
        yield url


@pytest.fixture
def real(edgectl: Run, real_server: str) -> Run:
    return lambda *args, **kw: edgectl("--server", real_server, *args, **kw)


def register(url: str, device_id: str, labels: dict[str, str], token: str) -> None:
    """Enroll as the agent does, with a token ``edgectl devices enroll-token create`` made."""
    import httpx

    from tests.fixtures.enroll import enroll

    body = {"device_id": device_id, "profile": "x86-64-avx2", "labels": labels, "facts": {"arch": "x86_64"}}
    with httpx.Client(base_url=url, timeout=10) as c:
        enroll(c, body, token=token).raise_for_status()


def test_a_session_against_the_real_server(real: Run, real_server: str, tmp_path: Path) -> None:
    pushed = real(
        "models",
        "push",
        DIGITS / "digits_cnn.onnx",
        "--name",
        "digits",
        "--version",
        "1",
        "--calibration",
        DIGITS / "calibration.npz",
        "-o",
        "json",
    )
    assert pushed.exit_code == 0, pushed.output
    model = json.loads(pushed.stdout)
    assert (model["name"], model["version"], model["size"]) == (
        "digits",
        "1",
        (DIGITS / "digits_cnn.onnx").stat().st_size,
    )
    assert [(m["name"], m["version"]) for m in json.loads(real("models", "ls", "-o", "json").stdout)] == [
        ("digits", "1")
    ]

    bogus = tmp_path / "bogus.onnx"
    bogus.write_text("not a model")
    refused = real("models", "push", bogus, "--name", "x", "--version", "1")
    assert refused.exit_code == 1
    assert refused.stdout == "" and len(refused.stderr.strip().splitlines()) == 1
    assert "HTTP 422" in refused.stderr

    assert real("groups", "create", "enrolled", "-o", "json").exit_code == 0
    made = real(
        "devices",
        "enroll-token",
        "create",
        "--group",
        "enrolled",
        "--labels",
        "rack=3",
        "--expires",
        "10m",
        "-o",
        "json",
    )
    assert made.exit_code == 0, made.output
    token = json.loads(made.stdout)
    assert token["uses"] == 1 and token["group"] == "enrolled" and token["token"].startswith("eft_")
    assert (
        real("devices", "enroll-token", "create", "--group", "enrolled", "--expires", "soon").exit_code != 0
    )
    register(real_server, "nuc-1", {"site": "lab"}, token["token"])
    created = real("groups", "create", "lab", "--selector", "site=lab", "-o", "json")
    assert created.exit_code == 0, created.output
    assert [g["name"] for g in json.loads(real("groups", "ls", "-o", "json").stdout)] == ["enrolled", "lab"]
    shown = json.loads(real("devices", "show", "nuc-1", "-o", "json").stdout)
    assert shown["labels"] == {"site": "lab", "rack": "3"}  # the token's labels added
    devices = json.loads(real("devices", "ls", "--group", "lab", "-o", "json").stdout)
    assert [d["device_id"] for d in devices] == ["nuc-1"]
    assert "nuc-1" in real("devices", "ls").stdout
    assert json.loads(real("devices", "show", "nuc-1", "-o", "json").stdout)["profile"] == "x86-64-avx2"

    deployed = real("deploy", "digits:1", "--group", "lab", "-o", "json")
    assert deployed.exit_code == 0, deployed.output
    dep_id = json.loads(deployed.stdout)["id"]
    # The deployment is recorded at once; the controller's next pass (woken by it) adds its devices.
    status = wait_until(
        lambda: (
            (s := json.loads(real("deployments", "status", str(dep_id), "-o", "json").stdout))["devices"]
            and s
        ),
        what="the deployment's devices",
    )
    assert status["model"] == "digits:1" and [d["device_id"] for d in status["devices"]] == ["nuc-1"]
    assert real("deployments", "ls").exit_code == 0

    # No agent answers, so the rollout can't finish: --wait must give up with its own status.
    waited = real("deploy", "digits:1", "--group", "lab", "--wait", "--timeout", "1", "--interval", "0.2")
    assert waited.exit_code == 3, waited.output
    assert "not decided after 1s" in waited.stderr

    revoked = real("devices", "revoke", "nuc-1", "-o", "json")
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.stdout)["state"] == "REVOKED"
    assert "REVOKED" in real("devices", "ls").stdout
    assert real("devices", "revoke", "ghost").exit_code == 1


def test_real_server_errors_are_one_line(real: Run) -> None:
    for args, text in [
        (("devices", "show", "ghost"), "HTTP 404"),
        (("deploy", "nope:1", "--group", "lab"), "HTTP 404"),
        (("deployments", "status", "999999"), "HTTP 404"),
        (("devices", "ls", "--group", "no-such-group"), "HTTP 404"),
    ]:
        result = real(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], (args, lines)


def test_group_policies_against_the_real_server(real: Run) -> None:
    created = real(
        "groups", "create", "edge-policy", "--offload-cloud", "--offload-share", "0.3", "-o", "json"
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["offload"] == {"enabled": True, "budget": 0.3}
    changed = real("groups", "set", "edge-policy", "--latency-budget-ms", "40", "-o", "json")
    assert changed.exit_code == 0, changed.output
    group = json.loads(changed.stdout)
    assert group["serving"] == {"latency_budget_ms": 40.0}
    assert group["offload"] == {"enabled": True, "budget": 0.3}
    # The server's contract refuses what the CLI passes on, in one line naming the field.
    refused = real("groups", "set", "edge-policy", "--offload-share", "1.5")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.strip() == (
        "error: offload.budget: must be between 0 and 1 (HTTP 400, invalid_request)"
    ), refused.stderr
