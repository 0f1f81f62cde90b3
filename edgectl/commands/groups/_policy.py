"""The policy options ``groups create`` and ``groups set`` share, and the request bodies they
make. Only what is given goes to the server: for ``set`` that is a merge patch (the rest stays);
the server's contracts decide what is valid and name the field when it is not."""

from __future__ import annotations

from typing import Annotated, Any

import typer

LatencyBudget = Annotated[
    float | None,
    typer.Option(
        "--latency-budget-ms",
        metavar="MS",
        help="The wait a request may take on the device before it is offloaded.",
        show_default=False,
    ),
]
MaxBatch = Annotated[
    int | None,
    typer.Option("--max-batch", metavar="N", help="The largest batch the device forms.", show_default=False),
]
OffloadUrl = Annotated[
    str | None,
    typer.Option(
        "--offload-url",
        metavar="URL",
        help="Offload overflow to this Open Inference Protocol v2 server (Triton, KServe, ...).",
        show_default=False,
    ),
]
OffloadCloud = Annotated[
    bool,
    typer.Option("--offload-cloud", help="Offload overflow to this fleet server's own cloud endpoint."),
]
OffloadShare = Annotated[
    float | None,
    typer.Option(
        "--offload-share",
        metavar="0..1",
        help="The largest share of requests that may be offloaded.",
        show_default=False,
    ),
]


def serving_body(latency_budget_ms: float | None, max_batch: int | None) -> dict[str, Any] | None:
    """The ``serving`` object for the options given (``None``: none was)."""
    body = {"latency_budget_ms": latency_budget_ms, "max_batch_size": max_batch}
    return {k: v for k, v in body.items() if v is not None} or None


def offload_body(
    url: str | None, cloud: bool, share: float | None, off: bool = False
) -> dict[str, Any] | None:
    """The ``offload`` object for the options given (``None``: none was). Raises
    :class:`typer.BadParameter` for options that contradict each other."""
    chosen = [
        name
        for name, given in (("--offload-url", url), ("--offload-cloud", cloud), ("--no-offload", off))
        if given
    ]
    if len(chosen) > 1:
        raise typer.BadParameter(f"can't go with {chosen[1]}", param_hint=chosen[0])
    body: dict[str, Any] = {}
    if url is not None:
        body.update(enabled=True, endpoint_url=url)
    elif cloud:
        body.update(enabled=True, endpoint_url=None)  # null: the server's own endpoint
    elif off:
        body.update(enabled=False)
    if share is not None:
        body["budget"] = share
    return body or None
