"""The one map from :mod:`agent.serving.errors` to gRPC status codes (the HTTP handler's twin).

::

    BadRequest        INVALID_ARGUMENT
    PayloadTooLarge   RESOURCE_EXHAUSTED  (gRPC itself refuses a message over the receive limit
                                           with this code before it reaches the servicer)
    ModelNotFound     NOT_FOUND
    NotReady          UNAVAILABLE
    Overloaded        UNAVAILABLE         with ``retry-after`` (seconds) in the trailing metadata
    DeadlineExceeded  DEADLINE_EXCEEDED
    anything else     INTERNAL            (logged; the server goes on serving)
"""

from __future__ import annotations

import math

import grpc

from agent.serving.errors import (
    BadRequest,
    DeadlineExceeded,
    ModelNotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ServingError,
)

CODES: dict[type[ServingError], grpc.StatusCode] = {
    BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    NotReady: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """The status code, details and trailing metadata a failed call ends with."""
    if isinstance(exc, ServingError):
        for cls in type(exc).__mro__:
            if cls in CODES:
                trailers: tuple[tuple[str, str], ...] = ()
                if isinstance(exc, Overloaded):
                    trailers = (("retry-after", str(max(1, math.ceil(exc.retry_after)))),)
                return CODES[cls], str(exc), trailers
    return grpc.StatusCode.INTERNAL, "internal error", ()
