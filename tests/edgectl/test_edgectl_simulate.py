"""``edgectl simulate`` and :mod:`edgectl.simulate` against a real fleet-server process and a
real Mosquitto: simulated devices register over REST, take deployments over MQTT, and what they
send is what the server records."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from agent.contracts.state import ErrorCode
from edgectl.client import FleetClient
from edgectl.simulate import Faults, SimConfig, Simulator, SimulatorError, device_ids
from tests.edgectl.simulate.sim_kit import Wire
from tests.fixtures.mosquitto import MOSQUITTO, MosquittoBroker
from tests.polling import wait_until

Run = Callable[..., Result]
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
PROFILE = "x86-64-avx2"
SEQUENCE = ["DOWNLOADING", "VERIFYING", "INSTALLING", "LOADING", "SELF_TEST", "COMMITTED"]

pytest.importorskip("fleet_server.app", reason="the fleet server needs the server extra")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    binary = MOSQUITTO if Path(MOSQUITTO).exists() else shutil.which("mosquitto")
    if not binary:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    b = MosquittoBroker(binary, tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def server(broker: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fleet server with digits:1 pushed and compiled for x86 ahead, so deployments start at once."""
    from edgectl.local.launcher import start_server

    proc = start_server(tmp_path_factory.mktemp("fleet"), broker=broker.url)
    url = str(proc.ready["url"])
    try:
        with FleetClient(url) as api:
            api.push_model(DIGITS / "digits_cnn.onnx", "digits", "1", calibration=DIGITS / "calibration.npz")
            api.compile_ahead("digits", "1", [PROFILE])
            wait_until(
                lambda: (
                    (b := api.get_model("digits", "1")["bundles"]) and all(x["status"] == "ready" for x in b)
                ),
                timeout=180,
                interval=0.5,
                what="the x86 bundle",
            )
        yield url
    finally:
        proc.stop()


@pytest.fixture
def api(server: str) -> Iterator[FleetClient]:
    with FleetClient(server) as client:
        yield client


@pytest.fixture
def wire(broker: MosquittoBroker) -> Iterator[Wire]:
    w = Wire(broker.host, broker.port)
    yield w
    w.close()


def _sim(server: str, n: int, group: str, faults: Faults | None = None, **config: Any) -> Simulator:
    cfg = SimConfig(
        server, devices=n, prefix=group, labels={"sim": group}, **({"telemetry_interval": 0.5} | config)
    )
    return Simulator(cfg, faults)


def _deploy(api: FleetClient, group: str) -> str:
    api.create_group(group, [], {"sim": group})
    return str(api.create_deployment("digits:1", group)["id"])


def _state(api: FleetClient, dep_id: str, *states: str, timeout: float = 60) -> dict[str, Any]:
    return wait_until(
        lambda: (d := api.get_deployment(dep_id))["state"] in states and d,
        timeout=timeout,
        interval=0.2,
        what=f"deployment {dep_id} {states}",
    )


def _first_finals(sim: Simulator) -> dict[str, dict[str, Any]] | None:
    """Each device's first desired generation and how it ended, once every device has ended it."""
    timeline = sim.timeline()
    if all(t and t[0]["final_at"] is not None for t in timeline.values()):
        return {d: t[0] for d, t in timeline.items()}
    return None


def test_twenty_devices_roll_out_to_succeeded_and_their_telemetry_reaches_the_server(
    server: str, api: FleetClient, wire: Wire
) -> None:
    sim = _sim(server, 20, "good")
    with sim:
        registered = {d["device_id"] for d in api.list_devices() if d["device_id"].startswith("good-")}
        assert registered == set(sim.devices)
        dep = _state(api, _deploy(api, "good"), "SUCCEEDED")
        assert {d["device_id"] for d in dep["devices"]} == set(sim.devices)
        assert sim.finals() == dict.fromkeys(sim.devices, "COMMITTED")
        for d in sim.devices:
            assert wire.states(d, 1) == SEQUENCE  # the agent's sequence, parsed by its contract
        # telemetry: valid messages on the wire, and the server's view of a device shows them
        wire.wait(lambda w: any(t.model == "digits:1" for t in w.of("telemetry", "good-01")), timeout=10)
        shown = wait_until(
            lambda: (t := api.get_device("good-01").get("telemetry")) and t.get("model") == "digits:1" and t,
            what="telemetry of digits:1 on the server",
        )
        assert shown["device_id"] == "good-01" and shown["latency"]["p95_ms"] > 0
        assert sum(shown["classes"].values()) == shown["requests"] - shown["errors"]
        assert api.get_device("good-01")["active"] == "digits:1"


def test_with_fail_rate_one_every_device_reports_a_real_error_code(
    server: str, api: FleetClient, wire: Wire
) -> None:
    codes = (ErrorCode.SELF_TEST_FAILED, ErrorCode.LOAD_FAILED)
    sim = _sim(server, 6, "bad", Faults(fail_rate=1.0, fail_codes=codes, seed=3), telemetry_interval=0)
    with sim:
        dep_id = _deploy(api, "bad")
        # how each device's first desired generation ended (a roll back may send another later)
        first = wait_until(lambda: _first_finals(sim), timeout=60, what="every device's final report")
        assert {t["outcome"] for t in first.values()} <= {str(c) for c in codes}
        _state(api, dep_id, "FAILED", "HALTED", "ROLLED_BACK")  # the controller may roll back
        for d, t in first.items():
            states = wire.states(d, t["generation"])
            assert states[-2:] == ["ROLLING_BACK", "IDLE"] and "COMMITTED" not in states
            at = "SELF_TEST" if t["outcome"] == "SELF_TEST_FAILED" else "LOADING"
            assert states[-3] == at
            failed = [r for r in wire.of("reported", d) if r.generation == t["generation"]][-1]
            assert failed.error is not None and failed.error.code == t["outcome"]
            assert api.get_device(d)["active"] is None


def test_offline_devices_register_but_never_report(server: str, api: FleetClient, wire: Wire) -> None:
    ids = device_ids(8, "gone")
    seed = next(
        s for s in range(100) if 0 < sum(Faults(offline_share=0.4, seed=s).offline(d) for d in ids) < 8
    )
    sim = _sim(server, 8, "gone", Faults(offline_share=0.4, seed=seed))
    with sim:
        offline = [d.device_id for d in sim.devices.values() if d.mode == "offline"]
        dep_id = _deploy(api, "gone")
        sim.wait_final(timeout=60)
        time.sleep(0.5)
        assert set(sim.finals()) == set(ids) - set(offline)
        for d in offline:
            dev = api.get_device(d)  # registered, then silent
            assert dev["reported_generation"] is None and dev["telemetry"] is None
            assert wire.of("reported", d) == [] and wire.of("status", d) == []
        assert api.get_deployment(dep_id)["state"] == "RUNNING"  # waiting on the silent ones


def test_the_command_runs_a_fleet_for_its_duration(edgectl: Run, server: str, api: FleetClient) -> None:
    r = edgectl(
        "simulate", "--devices", "3", "--server", server, "--prefix", "cli", "--labels", "site=cli,kind=sim",
        "--duration", "1.5", "--telemetry-interval", "0.5", "--seed", "2", "-o", "json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["devices"] == 3 and out["modes"] == {"normal": 3}
    assert [d["device_id"] for d in out["device_list"]] == ["cli-01", "cli-02", "cli-03"]
    assert out["messages"]["telemetry"] >= 3
    dev = api.get_device("cli-02")
    assert dev["labels"] == {"site": "cli", "kind": "sim"} and dev["profile"] == PROFILE
    wait_until(lambda: api.get_device("cli-02")["online"] is False, what="offline after the stop")


def test_the_table_says_where_the_devices_stand(edgectl: Run, server: str) -> None:
    r = edgectl(
        "simulate", "-n", "2", "-s", server, "--prefix", "tbl", "--duration", "0.3", "--offline-share", "1"
    )
    assert r.exit_code == 0, r.output
    assert "2 simulated devices (2 offline), 0 connected" in r.stdout
    assert "2 simulated devices registered" in r.stderr


def test_help_explains(edgectl: Run) -> None:
    r = edgectl("simulate", "--help")
    assert r.exit_code == 0
    for text in (
        "--devices",
        "--fail-rate",
        "--offline-share",
        "--latency-regression",
        "DOWNLOADING",
        "--seed",
    ):
        assert text in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Missing option '--devices'"),
        (["--devices", "0"], "--devices"),
        (["--devices", "2", "--fail-rate", "1.5"], "--fail-rate"),
        (["--devices", "2", "--labels", "nolabel"], "'nolabel' is not KEY=VALUE"),
        (["--devices", "2", "--profile", "no-such-board"], "no-such-board"),
        (["--devices", "2", "--fail-code", "BOGUS"], "--fail-code"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(edgectl: Run, args: list[str], message: str) -> None:
    r = edgectl("simulate", "--server", "http://127.0.0.1:1", *args)
    assert r.exit_code == 2
    assert message in r.stderr


def test_an_unreachable_server_is_named(edgectl: Run, free_url: str) -> None:
    r = edgectl("simulate", "--devices", "1", "--server", free_url)
    assert r.exit_code == 1
    assert "cannot reach the fleet server" in r.stderr and r.stdout == ""


def test_with_fetch_devices_download_the_real_bundle(server: str, api: FleetClient) -> None:
    sim = _sim(server, 2, "fetch", fetch=True, telemetry_interval=0)
    with sim:
        _state(api, _deploy(api, "fetch"), "SUCCEEDED")
        assert sim.counts["downloads"] == 2  # each device fetched it and the sha256 matched
        assert sim.finals() == dict.fromkeys(sim.devices, "COMMITTED")


def test_a_refused_registration_stops_the_simulator_with_the_server_words(server: str) -> None:
    sim = Simulator(SimConfig(server, devices=2, prefix="nope", profiles=("no-such-board",)))
    with pytest.raises(SimulatorError, match="refused the registration: HTTP 400"):
        sim.start(timeout=20)
    assert not sim.started
