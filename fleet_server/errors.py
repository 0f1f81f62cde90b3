"""Errors of the fleet server, named by what the caller should do.

The REST layer maps them to HTTP statuses in one place (:mod:`fleet_server.api.errors`); the
domain code never speaks HTTP.

FleetError
├── InvalidRequestError   bad input: fix the request                            (400)
├── UnauthorizedError     missing, unknown, revoked or expired operator token   (401)
│   └── TokenUnknownError  an enrollment token the server never issued          (401)
├── ForbiddenError        a known caller not allowed this                       (403)
│   ├── TokenUsedError     an enrollment token with no uses left                (403)
│   ├── TokenExpiredError  an enrollment token past its expiry                  (403)
│   └── RevokedError       a device whose certificate was revoked               (403)
├── NotFoundError         unknown model, device, group, deployment or artifact  (404)
├── ConflictError         exists already with other content                     (409)
├── UnusableError         an upload or deployment that can't be used: not ONNX,
│                         or a compile it needs has failed (names target+reason) (422)
├── BusyError             a bound on open streams is reached: retry later       (429)
├── StoreError            the artifact store failed: retry later                (503)
├── BrokerUnavailableError no MQTT broker to hand a device yet: retry later     (503)
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


class TokenUnknownError(UnauthorizedError):
    code = "enroll_token_unknown"


class ForbiddenError(FleetError):
    code = "forbidden"


class TokenUsedError(ForbiddenError):
    code = "enroll_token_used"


class TokenExpiredError(ForbiddenError):
    code = "enroll_token_expired"


class RevokedError(ForbiddenError):
    code = "certificate_revoked"


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


class BrokerUnavailableError(FleetError):
    code = "broker_unavailable"


class ConfigError(FleetError):
    code = "config"
