"""python-tuf's exceptions translated to the agent's, once, here.

::

    tuf.api.exceptions                      agent.errors           ErrorCode
    ExpiredMetadataError                    MetadataError          METADATA_EXPIRED
    BadVersionNumberError (and Equal...)    MetadataError          ROLLBACK_ATTEMPT
    UnsignedMetadataError                   MetadataError          SIGNATURE_INVALID
    LengthOrHashMismatchError (metadata)    MetadataError          SIGNATURE_INVALID
    other RepositoryError                   MetadataError          SIGNATURE_INVALID
    DownloadLengthMismatchError             ArtifactError          LENGTH_EXCEEDED
    DownloadHTTPError, DownloadError        TransportError         DOWNLOAD_FAILED

Metadata that fails to verify is retried later (the repository may be fixed, an attacker on
the path may leave) without marking the generation failed; the device keeps serving meanwhile.
"""

from __future__ import annotations

from tuf.api import exceptions as tuf_exc

from agent.contracts.state import ErrorCode
from agent.errors import ArtifactError, MetadataError, TransportError, UpdateError


def translate(exc: Exception, what: str) -> UpdateError:
    """The agent's error for a python-tuf exception raised while doing ``what``."""
    if isinstance(exc, UpdateError):
        return exc
    msg = f"{what}: {type(exc).__name__}: {exc}"
    if isinstance(exc, tuf_exc.ExpiredMetadataError):
        return MetadataError(msg, ErrorCode.METADATA_EXPIRED)
    if isinstance(exc, tuf_exc.BadVersionNumberError):
        return MetadataError(msg, ErrorCode.ROLLBACK_ATTEMPT)
    if isinstance(exc, tuf_exc.RepositoryError):
        return MetadataError(msg, ErrorCode.SIGNATURE_INVALID)
    if isinstance(exc, tuf_exc.DownloadLengthMismatchError):
        return ArtifactError(msg, ErrorCode.LENGTH_EXCEEDED)
    if isinstance(exc, tuf_exc.DownloadError):
        return TransportError(msg)
    return UpdateError(f"{what}: internal error: {type(exc).__name__}: {exc}", ErrorCode.INTERNAL)
