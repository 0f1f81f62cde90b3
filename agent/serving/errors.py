"""Errors of the inference API, each with the HTTP status one handler maps it to."""

from __future__ import annotations


class ServingError(Exception):
    status: int = 500


class BadRequest(ServingError):
    """The request is malformed or a tensor doesn't fit the model (the message names it)."""

    status = 400


class PayloadTooLarge(ServingError):
    """The request body is over the limit, as sent or once decompressed."""

    status = 413


class ModelNotFound(ServingError):
    """No model (or version) of that name is served here."""

    status = 404


class NotReady(ServingError):
    """No model is loaded yet."""

    status = 503
