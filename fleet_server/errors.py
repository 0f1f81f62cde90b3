"""Errors of the fleet server, named by what the caller should do.

The REST layer maps them to HTTP statuses in one place (:mod:`fleet_server.api.errors`); the
domain code never speaks HTTP.

FleetError
├── InvalidRequestError   bad input: fix the request                            (400)
├── UnauthorizedError     missing, unknown, revoked or expired operator token   (401)
├── ForbiddenError        a known operator token whose role is too low          (403)
├── NotFoundError         unknown model, device, group, deployment or artifact  (404)
├── ConflictError         exists already with other content                     (409)
├── UnusableError         an upload or deployment that can't be used: not ONNX,
│                         or a compile it needs has failed (names target+reason) (422)
├── BusyError             a bound on open streams is reached: retry later       (429)
├── StoreError            the artifact store failed: retry later                (503)
└── ConfigError           settings that can't work; raised at start-up
"""

from __future__ import annotations


class FleetError(Exception):
    """Base of every error the fleet server raises on purpose. The message is for a person."""

    code = "error"

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class InvalidRequestError(FleetError):
    code = "invalid_request"


class UnauthorizedError(FleetError):
    code = "unauthorized"


class ForbiddenError(FleetError):
    code = "forbidden"


class NotFoundError(FleetError):
    code = "not_found"


class ConflictError(FleetError):
    code = "conflict"


class UnusableError(FleetError):
    code = "unusable"


class BusyError(FleetError):
    code = "busy"


class StoreError(FleetError):
    code = "store_unavailable"


class ConfigError(FleetError):
    code = "config"
