"""Errors the CLI reports to the operator as one line and a non-zero exit.

EdgectlError               caught once, by the root command group, and turned into ``app.abort``
├── ConfigError            a bad flag value, environment variable or config file (names which)
└── ClientError            talking to the fleet server failed
    ├── ServerUnreachable  no connection, or no answer in time (says how to start or point at it)
    └── ApiError           the server answered with an error (carries status, code, message)

Errors of the local commands (``compilers.CompileError``, ``device_profiles.ProfileError``) are
caught by the commands that call those packages, since ``compilers`` is imported lazily.
"""

from __future__ import annotations


class EdgectlError(Exception):
    """Something the operator must fix; the message is one line meant for them."""


class ConfigError(EdgectlError):
    pass


class ClientError(EdgectlError):
    pass


class ServerUnreachable(ClientError):
    pass


class ApiError(ClientError):
    """The server answered ``status`` with ``{"error": {"code", "message"}}`` (or something else)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(f"{message} (HTTP {status}, {code})")
