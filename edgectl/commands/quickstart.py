import signal
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from edgectl.app import Application
from edgectl.options import Output

MODEL_NAME, MODEL_VERSION, GROUP = "digits", "1", "quickstart"
LABELS = {"fleet": "quickstart"}


def _examples() -> Path:
    return Path(__file__).resolve().parents[2] / "examples" / "digits"


def quickstart(
    ctx: typer.Context,
    devices: Annotated[
        int, typer.Option("--devices", "-n", min=1, max=200, help="How many simulated devices.")
    ] = 3,
    profile: Annotated[
        list[str] | None,
        typer.Option(
            "--profile",
            "-p",
            help="Device profiles to cycle through (repeatable). "
            "Default: x86-64-avx2, raspberry-pi-5, x86-64-avx512-vnni, raspberry-pi-4.",
        ),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option("--dir", help="Where server data, device data and logs go (default: a new temp dir)."),
    ] = None,
    broker: Annotated[
        str,
        typer.Option(help="auto (Mosquitto if installed, else the embedded broker), mosquitto, or embedded."),
    ] = "auto",
    exit_when_done: Annotated[
        bool,
        typer.Option(
            "--exit-when-done", help="Stop everything and exit once the model answered (for scripts)."
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Give up on the rollout after this many seconds.", min=1)
    ] = 900,
    output: Output = None,
) -> None:
    """Run a whole fleet on this machine: broker, fleet server and N devices, then roll out a model.

    Starts a broker, the fleet server and N edge agents as real processes on loopback (x86 and ARM
    profiles mixed), pushes the example digits classifier, compiles it per target, deploys it to
    all devices with a live progress view, sends held-out digits to every device over the Open
    Inference Protocol and prints the answers. Then it leaves the API and dashboard URLs on screen
    until Ctrl-C (or exits at once with --exit-when-done). Exit status 0 only when every device
    is healthy and answered.

    Example

        edgectl quickstart --devices 3
        edgectl quickstart --devices 2 --profile x86-64-avx2 --exit-when-done -o json
    """
    import httpx
    import numpy as np

    from edgectl.client import FleetClient
    from edgectl.local.fleet import DEFAULT_PROFILES, LaunchError, LocalFleet, device_plan
    from edgectl.local.oip import infer
    from edgectl.views.deployments import counts_text, deployment_detail
    from edgectl.watch import failure_summary, watch

    app = Application.from_context(ctx, output)
    term = app.terminal
    examples = _examples()
    model_file = examples / "digits_cnn.onnx"
    if not model_file.is_file():
        app.abort(
            f"the example model {model_file} is not here: run the quickstart from a clone of the repository"
        )
    plan = device_plan(devices, profile or DEFAULT_PROFILES)
    _check_toolchains(app, [p for _, p in plan])

    root = run_dir or Path(tempfile.mkdtemp(prefix="edgefleet-quickstart-"))
    root.mkdir(parents=True, exist_ok=True)
    term.info(f"run directory (data and logs): {root}")
    summary: dict[str, Any] = {"run_dir": str(root), "devices": []}
    fleet = LocalFleet(root)
    try:
        with term.status("starting the fleet server and its broker…"):
            ready = fleet.start_server(broker=broker)
        mqtt = ready.get("mqtt") or {}
        term.success(
            f"fleet server {fleet.server_url} (MQTT {mqtt.get('host')}:{mqtt.get('port')}, "
            f"protocol {mqtt.get('protocol')})"
        )
        api = FleetClient(fleet.server_url)
        api.create_group(GROUP, [], dict(LABELS))  # first: the devices enroll into it
        with term.status(f"starting and enrolling {devices} devices…") as update:
            fleet.start_agents(plan, LABELS, on_ready=lambda d: update(f"{d} is up"), group=GROUP)
        for device_id, prof in plan:
            term.info(f"  {device_id:<8} {prof:<20} serving on {fleet.inference_url(device_id)}")

        with term.transfer("pushing digits_cnn.onnx") as progress:
            api.push_model(
                model_file,
                MODEL_NAME,
                MODEL_VERSION,
                calibration=examples / "calibration.npz",
                validation=examples / "heldout.npz",
                progress=progress,
            )
        dep = api.create_deployment(f"{MODEL_NAME}:{MODEL_VERSION}", GROUP)
        term.info(f"deploying {MODEL_NAME}:{MODEL_VERSION} to group {GROUP} (compiles per target first)…")
        start = time.monotonic()
        with term.live(deployment_detail(dep, 0.0)) as redraw:
            result = watch(
                lambda: api.get_deployment(str(dep["id"])),
                timeout=timeout,
                interval=1.0,
                clock=time.monotonic,
                sleep=time.sleep,
                on_update=lambda d: redraw(deployment_detail(d, time.monotonic() - start)),
            )
        final = result.deployment
        summary["deployment"] = {
            "id": final.get("id"),
            "state": final.get("state"),
            "counts": final.get("counts"),
            "seconds": round(time.monotonic() - start, 1),
        }
        if not result.succeeded:
            what = "timed out" if result.timed_out else failure_summary(final)
            app.abort(
                f"rollout did not succeed ({what}; {counts_text(final.get('counts'))}); "
                f"logs in {root / 'logs'}"
            )
        term.success(f"every device runs {MODEL_NAME}:{MODEL_VERSION} ({time.monotonic() - start:.0f}s)")

        held = np.load(examples / "heldout.npz")
        x, y = held["x"][:8], held["y"][:8]
        ok = True
        for device_id, prof in plan:
            with httpx.Client() as client:
                url = fleet.inference_url(device_id)
                infer(url, MODEL_NAME, {"input": x}, client=client)  # opens the connection
                t0 = time.perf_counter()
                out = infer(url, MODEL_NAME, {"input": x}, client=client)
                ms = (time.perf_counter() - t0) * 1000
            pred = np.argmax(out["logits"], axis=1)
            correct = int((pred == y).sum())
            ok = ok and correct >= len(y) - 1
            summary["devices"].append(
                {
                    "device_id": device_id,
                    "profile": prof,
                    "predicted": pred.tolist(),
                    "labels": y.tolist(),
                    "correct": correct,
                    "ms": round(ms, 1),
                    "inference_url": fleet.inference_url(device_id),
                }
            )
            term.info(
                f"  {device_id} ({prof}): predicted {pred.tolist()} labels {y.tolist()} "
                f"→ {correct}/{len(y)} correct, {ms:.1f} ms for a batch of {len(y)}"
            )
        summary.update(
            {
                "api": fleet.server_url,
                "docs": f"{fleet.server_url}/docs",
                "dashboard": f"{fleet.server_url}/dashboard",
                "ok": ok,
            }
        )
        if app.json_output:
            term.json(summary)
        term.success(f"API      {fleet.server_url}/docs")
        term.success(f"dashboard {fleet.server_url}/dashboard")
        if not ok:
            app.abort("a device answered wrongly on the held-out digits; see the lines above")
        if not exit_when_done:
            term.info("the fleet keeps running; press Ctrl-C to stop it")
            _wait_for_interrupt()
    except LaunchError as exc:
        app.abort(str(exc))
    finally:
        with term.status("stopping the fleet…"):
            fleet.stop()


def _check_toolchains(app: Application, profiles: list[str]) -> None:
    """ARM profiles need the TFLite converter; say how to get it before starting anything."""
    from device_profiles import ProfileError, load_profile

    targets = set()
    for name in profiles:
        try:
            targets.add(load_profile(name).target)
        except ProfileError as exc:
            app.abort(str(exc))
    if "tflite-arm" in targets:
        from compilers.toolchains import status

        if not status("tflite").installed:
            app.abort(
                "ARM profiles need the TFLite converter: run `edgectl toolchains install tflite` "
                "(or pass --profile x86-64-avx2 for an x86-only fleet)"
            )


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM. Both handlers are set explicitly: a shell that
    starts us in the background makes us inherit an ignored SIGINT."""
    stop = {"now": False}

    def handler(_sig: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop["now"]:
        time.sleep(0.5)
