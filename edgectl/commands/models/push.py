from pathlib import Path
from typing import Annotated

import typer

from edgectl.app import Application
from edgectl.options import Output
from edgectl.views.models import model_detail


def push(
    ctx: typer.Context,
    model: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL.onnx", help="The source ONNX model.", exists=True, dir_okay=False, readable=True
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="Model name, e.g. digits.")],
    version: Annotated[str, typer.Option("--version", help="Version of this upload, e.g. 1 or 2024-06-01.")],
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="Calibration samples for INT8 (.npz keyed by input name, or .npy).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    validation: Annotated[
        Path | None,
        typer.Option(
            help="Held-out samples (.npz; labels in `y` give an accuracy figure).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    min_agreement: Annotated[
        float | None,
        typer.Option(help="Lowest top-1 agreement with FP32 a compiled bundle may have.", min=0.0, max=1.0),
    ] = None,
    output: Output = None,
) -> None:
    """Upload a source ONNX model to the fleet server (with a progress bar).

    The server compiles it for each device profile when you deploy it. Pushing the same version
    again with the same bytes is harmless; other bytes under an existing version are refused.

    Example

        edgectl models push digits_cnn.onnx --name digits --version 1 --calibration calibration.npz
    """
    app = Application.from_context(ctx, output)
    with app.terminal.transfer(f"uploading {model.name}") as progress:
        pushed = app.api.push_model(model, name, version, calibration, validation, min_agreement, progress)
    if not app.json_output:
        app.terminal.success(f"pushed {pushed.get('name', name)}:{pushed.get('version', version)}")
    app.display(pushed, model_detail)
