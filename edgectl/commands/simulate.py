import signal
import time
from typing import Annotated, Any

import typer

from agent.contracts.state import ErrorCode
from edgectl.app import Application
from edgectl.options import Output

FAULTS = "Faults"


def _labels(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            key, sep, val = part.partition("=")
            if not (key and sep and val):
                raise typer.BadParameter(f"{part!r} is not KEY=VALUE", param_hint="--labels")
            out[key] = val
    return out


def simulate(
    ctx: typer.Context,
    devices: Annotated[
        int, typer.Option("--devices", "-n", min=1, max=100_000, help="How many simulated devices.")
    ],
    server: Annotated[
        str | None,
        typer.Option("--server", "-s", help="Fleet server URL.", show_default="the global --server"),
    ] = None,
    profile: Annotated[
        list[str] | None,
        typer.Option(
            "--profile",
            "-p",
            help="Device profiles to cycle through (repeatable).",
            show_default="x86-64-avx2",
        ),
    ] = None,
    labels: Annotated[
        list[str] | None,
        typer.Option("--labels", "--label", "-l", help="Labels for every device: KEY=VALUE (repeatable)."),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Device ids are PREFIX-1, PREFIX-2, …")] = "sim",
    fail_rate: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="Share of devices whose update to a new version fails.", rich_help_panel=FAULTS
        ),
    ] = 0.0,
    fail_code: Annotated[
        list[ErrorCode] | None,
        typer.Option(
            help="Error codes failing devices report (repeatable; a hash of the device id picks one).",
            show_default="SELF_TEST_FAILED",
            rich_help_panel=FAULTS,
        ),
    ] = None,
    fail_version: Annotated[
        list[str] | None,
        typer.Option(
            help="Only these versions (VERSION or NAME:VERSION) fail (repeatable).",
            show_default="every version a device has not run",
            rich_help_panel=FAULTS,
        ),
    ] = None,
    latency_regression: Annotated[
        float,
        typer.Option(
            min=0.01,
            help="p95/p99 latency factor for versions after the first a device ran.",
            rich_help_panel=FAULTS,
        ),
    ] = 1.0,
    prediction_shift: Annotated[
        float,
        typer.Option(
            min=0,
            max=1,
            help="Share of predicted-class mass moved onto one class by new versions.",
            rich_help_panel=FAULTS,
        ),
    ] = 0.0,
    error_rate: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="Share of requests that fail on new versions.", rich_help_panel=FAULTS
        ),
    ] = 0.0,
    offline_share: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="Share of devices that register, then never connect.", rich_help_panel=FAULTS
        ),
    ] = 0.0,
    unresponsive_share: Annotated[
        float,
        typer.Option(
            min=0,
            max=1,
            help="Share of devices that connect but never answer a desired state.",
            rich_help_panel=FAULTS,
        ),
    ] = 0.0,
    seed: Annotated[
        int, typer.Option(help="Which devices fail, go offline or stay mute follows from it.")
    ] = 0,
    telemetry_interval: Annotated[
        float, typer.Option(min=0, help="Seconds between telemetry messages (0: none).")
    ] = 5.0,
    fetch: Annotated[
        bool, typer.Option("--fetch", help="Download every bundle for real and check its size and sha256.")
    ] = False,
    duration: Annotated[
        float | None,
        typer.Option(min=0, help="Stop after this many seconds.", show_default="until Ctrl-C"),
    ] = None,
    output: Output = None,
) -> None:
    """Run N simulated devices in this process against a fleet server, over its real MQTT broker.

    Each device registers like an edge agent, connects with its last will, reports every update
    with the agent's own sequence (DOWNLOADING, VERIFYING, INSTALLING, LOADING, SELF_TEST,
    COMMITTED, or a failure with a real error code) and sends telemetry. The fault options make
    some of them fail, slow down, predict differently or fall silent; --seed makes the choice
    repeatable. Bundles are not downloaded unless --fetch. Stops at --duration or Ctrl-C, then
    prints where every device stands (-o json for scripts).

    Example

        edgectl simulate --devices 100 --server http://127.0.0.1:8080 --labels site=sim
        edgectl simulate -n 50 --labels site=sim --fail-rate 0.1 --latency-regression 1.5 --seed 7
    """
    from edgectl.client import FleetClient
    from edgectl.simulate import Faults, SimConfig, Simulator, SimulatorError
    from edgectl.views.simulate import simulation

    app = Application.from_context(ctx, output)
    term = app.terminal
    url = server or app.config.server
    profiles = tuple(profile or ("x86-64-avx2",))
    _check_profiles(profiles)
    try:
        faults = Faults(
            fail_rate=fail_rate,
            fail_codes=tuple(fail_code or (ErrorCode.SELF_TEST_FAILED,)),
            fail_versions=frozenset(fail_version or ()),
            latency_regression=latency_regression,
            prediction_shift=prediction_shift,
            error_rate=error_rate,
            offline_share=offline_share,
            unresponsive_share=unresponsive_share,
            seed=seed,
        )
        config = SimConfig(
            url,
            devices=devices,
            profiles=profiles,
            labels=_labels(labels or []),
            prefix=prefix,
            telemetry_interval=telemetry_interval,
            fetch=fetch,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc

    with FleetClient(url) as probe:
        probe.health()  # ServerUnreachable says how to start or point at it
    sim = Simulator(config, faults)
    start = time.monotonic()
    try:
        with term.status(f"registering and connecting {devices} simulated devices…"):
            sim.start(timeout=max(60.0, devices / 20))
        term.success(f"{devices} simulated devices registered with {url}")
        _run(app, sim, duration, start, simulation)
        summary: dict[str, Any] = sim.summary()
        timeline = sim.timeline()
    except SimulatorError as exc:
        app.abort(str(exc))
    finally:
        sim.stop()
    if app.json_output:
        summary["seconds"] = round(time.monotonic() - start, 1)
        summary["device_list"] = [
            {"device_id": d.device_id, "mode": d.mode, "profile": d.profile, "state": str(d.state),
             "active": d.active, "error": d.error.code if d.error else None, "updates": timeline[d.device_id]}
            for d in sim.devices.values()
        ]  # fmt: skip
        term.json(summary)
    else:
        term.show(simulation(summary, time.monotonic() - start))


def _run(app: Application, sim: Any, duration: float | None, start: float, view: Any) -> None:
    """Redraw the counts until ``duration`` passed, or Ctrl-C / SIGTERM."""
    stop = {"now": False}

    def handler(_sig: int, _frame: object) -> None:
        stop["now"] = True

    old = signal.signal(signal.SIGTERM, handler), signal.signal(signal.SIGINT, handler)
    try:
        with app.terminal.live(view(sim.summary(), 0.0), transient=True) as redraw:
            while not stop["now"] and (duration is None or time.monotonic() - start < duration):
                left = 0.5 if duration is None else duration - (time.monotonic() - start)
                time.sleep(max(0.0, min(0.5, left)))
                redraw(view(sim.summary(), time.monotonic() - start))
    finally:
        signal.signal(signal.SIGTERM, old[0])
        signal.signal(signal.SIGINT, old[1])


def _check_profiles(profiles: tuple[str, ...]) -> None:
    from device_profiles import ProfileError, load_profile

    for name in profiles:
        try:
            load_profile(name)
        except ProfileError as exc:
            raise typer.BadParameter(str(exc), param_hint="--profile") from exc
