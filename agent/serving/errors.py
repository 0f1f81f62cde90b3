"""Errors of the inference service, each with the HTTP status one handler maps it to (the gRPC
front-end maps the same classes to its status codes) and the outcome label metrics count it under.

::

    ServingError
    ├── BadRequest          400  malformed request, or a tensor that doesn't fit (named)
    ├── PayloadTooLarge     413  body over the limit, as sent or decompressed
    ├── ModelNotFound       404  no such model or version served here
    ├── NotReady            503  no model loaded yet
    ├── Overloaded          503  shed: the local queue is full, or the budget can't be met and the
    │                            cloud is unavailable; carries ``retry_after`` seconds
    └── DeadlineExceeded    504  the request's deadline passed while it waited
"""

from __future__ import annotations


class ServingError(Exception):
    status: int = 500
    outcome: str = "error"


class BadRequest(ServingError):
    """The request is malformed or a tensor doesn't fit the model (the message names it)."""

    status = 400
    outcome = "bad_request"


class PayloadTooLarge(ServingError):
    """The request body is over the limit, as sent or once decompressed."""

    status = 413
    outcome = "too_large"


class ModelNotFound(ServingError):
    """No model (or version) of that name is served here."""

    status = 404
    outcome = "not_found"


class NotReady(ServingError):
    """No model is loaded yet."""

    status = 503
    outcome = "not_ready"


class Overloaded(ServingError):
    """Shed rather than queued: try again after ``retry_after`` seconds."""

    status = 503
    outcome = "shed"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(ServingError):
    """The request waited past its deadline; it was not run."""

    status = 504
    outcome = "deadline"
