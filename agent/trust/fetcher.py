"""python-tuf ngclient's fetcher (:class:`~tuf.ngclient.FetcherInterface`) over httpx, with the
agent's resumable download plugged in for targets.

Metadata (a few KiB) is fetched with one GET through the caller's ``httpx.Client`` (so a client
configured for mTLS works unchanged), bounded by ngclient's ``max_length``. A target that the
caller announced with :meth:`ResumableFetcher.expect` goes through
:class:`~agent.update.download.Downloader` instead: ``Range`` resume across restarts, the
declared length as a hard bound (``LENGTH_EXCEEDED``), progress for the journal. ngclient then
checks its length and hashes against the signed targets metadata as for any fetcher.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import httpx
from tuf.api import exceptions as tuf_exc
from tuf.ngclient import FetcherInterface

from agent.contracts.state import DesiredModel
from agent.update.download import Downloader, Progress


@dataclass
class _Expected:
    model: DesiredModel  # url, size and sha256 as the signed target has them
    progress: Progress | None
    cancel: threading.Event | None


class ResumableFetcher(FetcherInterface):
    """``client`` serves metadata requests; ``downloader`` the targets announced by :meth:`expect`."""

    def __init__(self, client: httpx.Client, downloader: Downloader) -> None:
        self._client = client
        self.downloader = downloader
        self._expected: dict[str, _Expected] = {}

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            resp = self._client.send(
                self._client.build_request("GET", url), stream=True, follow_redirects=True
            )
        except httpx.RequestError as exc:
            raise tuf_exc.DownloadError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            resp.close()
            raise tuf_exc.DownloadHTTPError(f"GET {url}: HTTP {resp.status_code}", resp.status_code)
        return self._chunks(resp, url)

    @staticmethod
    def _chunks(resp: httpx.Response, url: str) -> Iterator[bytes]:
        try:
            yield from resp.iter_bytes()
        except httpx.RequestError as exc:
            raise tuf_exc.DownloadError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        finally:
            resp.close()

    @contextmanager
    def expect(
        self, model: DesiredModel, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> Iterator[None]:
        """While the block runs, a download of ``model.url`` goes through the resumable
        downloader (``model.size`` and ``model.sha256`` are the signed target's)."""
        self._expected[model.url] = _Expected(model, progress, cancel)
        try:
            yield
        finally:
            self._expected.pop(model.url, None)

    @contextmanager
    def download_file(self, url: str, max_length: int) -> Iterator[IO[bytes]]:
        job = self._expected.get(url)
        if job is None:
            with super().download_file(url, max_length) as fh:
                yield fh
            return
        if job.model.size > max_length:
            raise tuf_exc.DownloadLengthMismatchError(f"{url}: {job.model.size} bytes, at most {max_length}")
        path = self.downloader.fetch(job.model, job.progress, job.cancel)
        with open(path, "rb") as fh:
            yield fh
