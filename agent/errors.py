"""The agent's errors, named by what the caller does with them.

::

    AgentError
    ├── UpdateError                 an update failed; carries the ErrorCode the device reports
    │   ├── ArtifactError           reject: the bytes are wrong (size, hash, signature, bundle,
    │   │                           incompatible target). The generation is marked failed and never
    │   │                           retried; only a new generation can fix it.
    │   ├── MetadataError           retry: the TUF metadata could not be verified (bad signature,
    │   │                           rollback, expired, no trust root yet). The device keeps serving
    │   │                           and tries again later; the generation is not marked failed.
    │   ├── TransportError          retry: network or server trouble. Retried with backoff; when the
    │   │                           retries run out it is reported, but the generation is not marked
    │   │                           failed, so a later delivery tries again (the download resumes).
    │   ├── DeviceError             report: this device could not run the bundle (runtime missing,
    │   │                           load refused, self-test failed, disk full). Marked failed.
    │   └── Cancelled               a newer desired state arrived mid-download; nothing to report.
    ├── StorageError                report, retry: the journal can't be written (disk full,
    │                               read-only, I/O error). The update can't go on nor be recorded;
    │                               the failure is reported unrecorded and tried again later.
    ├── ConfigError                 abort at start-up: the message says which setting is wrong.
    └── EnrollmentError             abort: the fleet server refused the enrollment (4xx), or the
                                    device has no identity and no enrollment token.

Foreign exceptions are translated once, at the seam that meets them: httpx errors in
:mod:`agent.update.download`, python-tuf's in :mod:`agent.trust.errors`, tar and OS errors in
:mod:`agent.update.slots`, and the runtimes'
:class:`~agent.runtimes.base.RuntimeUnavailable` / :class:`~agent.runtimes.base.RuntimeLoadError`
in :mod:`agent.update.reconciler`.
"""

from __future__ import annotations

import errno

from agent.contracts.state import ErrorCode


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class UpdateError(AgentError):
    """An update step failed. ``code`` is what the device reports; ``retryable`` says whether the
    same generation may be tried again."""

    code: ErrorCode = ErrorCode.INTERNAL
    retryable: bool = False

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class ArtifactError(UpdateError):
    """Reject the artifact: wrong size, hash or signature, not a bundle, or not for this device."""

    code = ErrorCode.BUNDLE_INVALID


class MetadataError(UpdateError):
    """The signed metadata was refused or could not be refreshed. Retry later; keep serving."""

    code = ErrorCode.SIGNATURE_INVALID
    retryable = True


class TransportError(UpdateError):
    """The download could not complete (connection, timeout, 5xx). Retry later; it resumes."""

    code = ErrorCode.DOWNLOAD_FAILED
    retryable = True


class DeviceError(UpdateError):
    """This device can't run the bundle: runtime missing, model refused, self-test failed, disk full."""

    code = ErrorCode.LOAD_FAILED


class Cancelled(UpdateError):
    """A newer desired state replaced the one being downloaded."""

    retryable = True


class StorageError(AgentError):
    """The data directory refused a journal write (``code``: ``DISK_FULL`` or ``STORAGE_FAILED``).
    Not an :class:`UpdateError`: nothing can be recorded, so nothing is rolled back either."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code

    @classmethod
    def from_os_error(cls, exc: OSError, what: str) -> StorageError:
        code = ErrorCode.DISK_FULL if exc.errno == errno.ENOSPC else ErrorCode.STORAGE_FAILED
        return cls(f"cannot write {what}: {exc.strerror or exc}", code)


class ConfigError(AgentError):
    """A setting is missing or invalid. The message names the setting and where it came from."""


class EnrollmentError(AgentError):
    """The fleet server refused the enrollment (4xx), or there is nothing to enroll with."""
