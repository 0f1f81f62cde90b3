"""Resumable bundle downloads.

The bytes go to ``<dir>/<sha256>.part``; a retry or a restarted agent continues with
``Range: bytes=N-`` from the part file's size (a server that ignores the range and answers 200
starts the file over). Redirects are followed, so an artifact store that answers with a presigned
S3 URL works. The declared size is a hard bound: a server that sends more is cut off with
``LENGTH_EXCEEDED`` (a smaller size announced up front is ``SIZE_MISMATCH``). A complete file
whose sha256 differs from the declared one is ``HASH_MISMATCH`` — except that a file stitched
together from a resumed download is first fetched once more from scratch, since a power cut can
leave garbage at the end of a part file.

httpx's exceptions are translated here, once: transport trouble, redirect loops, undecodable
bodies and HTTP errors are retried with backoff and end as :class:`~agent.errors.TransportError`
when the attempts run out.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx

from agent.backoff import Backoff
from agent.contracts.state import DesiredModel, ErrorCode
from agent.durable import fsync_dir
from agent.errors import ArtifactError, Cancelled, DeviceError, TransportError
from agent.runtimes.bundle_dir import sha256_file

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (bytes so far, total)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII, as HTTP has them; bounded, so int() is cheap and safe


@dataclass(frozen=True)
class DownloadLimits:
    max_attempts: int = 6
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.5, maximum=30.0))
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    fsync_every: int = 8 << 20  # bytes between fsyncs of the part file


class _Retry(Exception):
    """One attempt failed in a way another attempt may fix."""


class Downloader:
    """Fetches bundles named by desired states into ``directory``.

    ``base_url`` (the fleet server) resolves relative URLs. ``client`` is injectable for tests and
    for a TLS-configured client; ``sleep`` is the backoff's clock.
    """

    def __init__(
        self,
        base_url: str,
        directory: Path,
        *,
        client: httpx.Client | None = None,
        limits: DownloadLimits | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.directory = directory
        self.limits = limits or DownloadLimits()
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(self.limits.read_timeout, connect=self.limits.connect_timeout),
            follow_redirects=True,
        )
        self._own_client = client is None
        self._sleep = sleep

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    # -- device identity: downloads go to the mTLS device listener once the device is enrolled --
    def use(self, base_url: str, client: httpx.Client) -> None:
        """Resolve relative URLs against ``base_url`` and fetch with ``client`` (owned from now)."""
        if self._own_client:
            self._client.close()
        self.base_url = base_url.rstrip("/") + "/"
        self._client = client
        self._own_client = True

    def url_for(self, model: DesiredModel) -> str:
        return urljoin(self.base_url, model.url or f"artifacts/{model.target_path}")

    def part_path(self, model: DesiredModel) -> Path:
        return self.directory / f"{model.sha256}.part"

    def done_path(self, model: DesiredModel) -> Path:
        return self.directory / f"{model.sha256}.tar"

    def partial_size(self, model: DesiredModel) -> int:
        part = self.part_path(model)
        return part.stat().st_size if part.exists() else 0

    def discard(self, model: DesiredModel) -> None:
        for p in (self.part_path(model), self.done_path(model)):
            p.unlink(missing_ok=True)

    def check_bundle(self, model: DesiredModel, bundle_dir: Path) -> None:
        """Unsigned downloads carry nothing to check an unpacked bundle against (the TUF source,
        :class:`agent.trust.TufSource`, checks its manifest against the signed target)."""

    def cleanup(self, keep: set[str] | frozenset[str] = frozenset()) -> None:
        """Delete downloads whose sha256 is not in ``keep``."""
        if not self.directory.is_dir():
            return
        for p in self.directory.iterdir():
            if p.suffix in (".part", ".tar") and p.stem not in keep:
                p.unlink(missing_ok=True)

    def fetch(
        self, model: DesiredModel, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> Path:
        """Download ``model``'s bundle and return the path of the complete, hash-checked file.

        ``progress`` is called with the bytes already written to the part file (flushed to the
        operating system, not necessarily synced to the disk).

        Raises :class:`ArtifactError` (``SIZE_MISMATCH``, ``HASH_MISMATCH``, or an unusable URL),
        :class:`TransportError` after ``max_attempts`` failed attempts, :class:`DeviceError`
        (``DISK_FULL``), or :class:`Cancelled` when ``cancel`` is set.
        """
        done = self.done_path(model)
        if done.is_file():
            return done
        self.directory.mkdir(parents=True, exist_ok=True)
        part = self.part_path(model)
        url = self.url_for(model)
        attempt = 0
        resumed = False
        retried_whole = False
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{model.ref}: download cancelled")
            try:
                resumed |= self._transfer(model, url, part, progress, cancel)
            except _Retry as exc:
                attempt += 1
                if attempt >= self.limits.max_attempts:
                    raise TransportError(
                        f"{model.ref}: download from {url} failed {attempt} times: {exc}"
                    ) from exc
                delay = self.limits.backoff.delay(attempt - 1)
                log.warning("download of %s failed (%s); retry %d in %.1fs", model.ref, exc, attempt, delay)
                self._pause(delay, cancel)
                continue
            digest = sha256_file(part)
            if digest == model.sha256:
                os.replace(part, done)
                fsync_dir(self.directory)
                return done
            part.unlink(missing_ok=True)
            if resumed and not retried_whole:
                log.warning("resumed download of %s has the wrong sha256; fetching it whole once", model.ref)
                retried_whole = True
                resumed = False
                continue
            raise ArtifactError(
                f"{model.ref}: sha256 {digest} does not match the declared {model.sha256}",
                ErrorCode.HASH_MISMATCH,
            )

    def _pause(self, delay: float, cancel: threading.Event | None) -> None:
        if cancel is None:
            self._sleep(delay)
        elif cancel.wait(delay):
            raise Cancelled("download cancelled")

    def _transfer(
        self,
        model: DesiredModel,
        url: str,
        part: Path,
        progress: Progress | None,
        cancel: threading.Event | None,
    ) -> bool:
        """One attempt: bring ``part`` to ``model.size`` bytes. Returns whether it resumed a part
        file. Raises ``_Retry`` for anything another attempt may fix."""
        size = model.size
        offset = part.stat().st_size if part.exists() else 0
        if offset > size:
            part.unlink()
            offset = 0
        if offset == size:
            return True
        self._check_space(size - offset, model)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self._client.stream("GET", url, headers=headers, follow_redirects=True) as resp:
                if resp.status_code == 416:
                    part.unlink(missing_ok=True)
                    raise _Retry(f"server refused the range from byte {offset}; starting over")
                if resp.status_code not in (200, 206):
                    raise _Retry(f"HTTP {resp.status_code} from {resp.url}")
                if resp.status_code == 206:
                    start = self._check_content_range(resp, offset, model)
                    if start != offset:
                        part.unlink(missing_ok=True)
                        raise _Retry(
                            f"server answered the range from byte {start}, asked {offset}; starting over"
                        )
                    mode = "ab"
                else:
                    offset, mode = 0, "wb"
                    length = _content_length(resp)
                    if length is not None and "content-encoding" not in resp.headers and length != size:
                        raise ArtifactError(
                            f"{model.ref}: server offers {length} bytes, the desired state declares {size}",
                            ErrorCode.LENGTH_EXCEEDED if length > size else ErrorCode.SIZE_MISMATCH,
                        )
                resumed = offset > 0
                offset = self._write(resp, part, mode, offset, model, progress, cancel)
        except httpx.InvalidURL as exc:
            raise ArtifactError(
                f"{model.ref}: bad download URL {url!r}: {exc}", ErrorCode.DOWNLOAD_FAILED
            ) from exc
        except httpx.RequestError as exc:
            # TransportError (connection, timeout, protocol) and its siblings: TooManyRedirects (a
            # misconfigured store or CDN) and DecodingError (a body that doesn't match its
            # Content-Encoding). All are the server's or the network's trouble, so retried.
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        if offset < size:
            raise _Retry(f"connection ended after {offset} of {size} bytes")
        return resumed

    def _write(
        self,
        resp: httpx.Response,
        part: Path,
        mode: str,
        offset: int,
        model: DesiredModel,
        progress: Progress | None,
        cancel: threading.Event | None,
    ) -> int:
        synced = offset
        try:
            with open(part, mode) as fh:
                # Unchunked, so every byte received before a drop is on disk for the resume.
                for chunk in resp.iter_bytes():
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(f"{model.ref}: download cancelled")
                    if offset + len(chunk) > model.size:
                        fh.close()
                        part.unlink(missing_ok=True)
                        raise ArtifactError(
                            f"{model.ref}: server sent more than the declared {model.size} bytes",
                            ErrorCode.LENGTH_EXCEEDED,
                        )
                    fh.write(chunk)
                    offset += len(chunk)
                    if offset - synced >= self.limits.fsync_every:
                        fh.flush()
                        os.fsync(fh.fileno())
                        synced = offset
                    if progress is not None:
                        # Flushed first, so that what progress says (the journal saves it) is
                        # never more than a kill -9 would leave in the part file.
                        fh.flush()
                        progress(offset, model.size)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DeviceError(f"disk full while downloading {model.ref}", ErrorCode.DISK_FULL) from exc
            raise
        return offset

    @staticmethod
    def _check_content_range(resp: httpx.Response, offset: int, model: DesiredModel) -> int:
        match = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
        if match is None:
            raise _Retry(f"206 without a usable Content-Range ({resp.headers.get('content-range')!r})")
        start, total = int(match.group(1)), match.group(3)
        if total != "*" and int(total) != model.size:
            raise ArtifactError(
                f"{model.ref}: server holds {total} bytes, the desired state declares {model.size}",
                ErrorCode.SIZE_MISMATCH,
            )
        return start

    def _check_space(self, needed: int, model: DesiredModel) -> None:
        # The bundle is unpacked next to the download, so an install needs room for both.
        free = shutil.disk_usage(self.directory).free
        if free < needed + model.size:
            raise DeviceError(
                f"{model.ref} needs {needed + model.size} bytes free in {self.directory}, {free} available",
                ErrorCode.DISK_FULL,
            )


def _content_length(resp: httpx.Response) -> int | None:
    """The Content-Length header as a number, or ``None`` when it is missing or not a number.

    A malformed header is treated as an unknown length rather than an error: it is only used to
    refuse a wrong-sized file early, while the declared size (cut off while streaming) and the
    sha256 are the checks that hold. (httpx's own HTTP/1.1 parser refuses most bad values as a
    protocol error, which is retried; other transports pass them through.)
    """
    raw = resp.headers.get("content-length", "").strip()
    return int(raw) if _DIGITS.fullmatch(raw) else None
