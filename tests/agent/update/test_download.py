"""Resumable downloads against a real local HTTP server with Range support."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.backoff import Backoff
from agent.contracts.state import ErrorCode
from agent.errors import ArtifactError, Cancelled, TransportError
from agent.update.download import Downloader, DownloadLimits
from tests.agent.agent_testkit import ArtifactServer, BuiltBundle

FAST = DownloadLimits(max_attempts=4, backoff=Backoff(initial=0.01, maximum=0.02))


@pytest.fixture
def big(tmp_path_factory: pytest.TempPathFactory, bundles: dict[str, BuiltBundle]) -> BuiltBundle:
    """A bundle large enough to cut mid-stream: version 1 plus 300 kB of padding."""
    from tests.agent.agent_testkit import desired_model, make_bundle, tar_bundle
    from tests.agent.conftest import SAMPLES

    root = tmp_path_factory.mktemp("big")
    d = make_bundle(root / "b", bundles["1"].onnx, "big", "1", SAMPLES, extra_bytes=300_000)
    tar = tar_bundle(d, root / "big.tar")
    return BuiltBundle("big", "1", d, tar, desired_model(tar, "big", "1"), bundles["1"].onnx)


def downloader(server: ArtifactServer, tmp_path: Path) -> Downloader:
    return Downloader(server.url, tmp_path / "downloads", limits=FAST)


def test_downloads_and_checks_the_hash(
    artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle
) -> None:
    artifact_server.add(big.model, big.tar)
    seen: list[tuple[int, int]] = []
    path = downloader(artifact_server, tmp_path).fetch(big.model, progress=lambda n, t: seen.append((n, t)))
    assert path == tmp_path / "downloads" / f"{big.model.sha256}.tar"
    assert path.read_bytes() == big.tar.read_bytes()
    assert seen[-1] == (big.model.size, big.model.size)
    assert [n for n, _ in seen] == sorted(n for n, _ in seen)
    assert not (tmp_path / "downloads" / f"{big.model.sha256}.part").exists()


def test_a_dropped_connection_resumes_with_range(
    artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle
) -> None:
    artifact_server.add(big.model, big.tar)
    artifact_server.behaviour.cut_after, artifact_server.behaviour.cuts_left = 100_000, 2
    path = downloader(artifact_server, tmp_path).fetch(big.model)
    assert path.read_bytes() == big.tar.read_bytes()
    ranges = [r["range"] for r in artifact_server.requests]
    assert ranges[0] is None
    assert ranges[1:] == ["bytes=100000-", "bytes=200000-"]


def test_a_part_file_left_by_a_previous_run_is_continued(
    artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle
) -> None:
    artifact_server.add(big.model, big.tar)
    d = downloader(artifact_server, tmp_path)
    d.directory.mkdir(parents=True)
    d.part_path(big.model).write_bytes(big.tar.read_bytes()[:123_456])  # what a kill -9 left
    assert d.partial_size(big.model) == 123_456
    path = d.fetch(big.model)
    assert path.read_bytes() == big.tar.read_bytes()
    assert [r["range"] for r in artifact_server.requests] == ["bytes=123456-"]


def test_a_server_that_ignores_range_restarts_the_file(
    artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle
) -> None:
    artifact_server.add(big.model, big.tar)
    artifact_server.behaviour.ignore_range = True
    d = downloader(artifact_server, tmp_path)
    d.directory.mkdir(parents=True)
    d.part_path(big.model).write_bytes(big.tar.read_bytes()[:50_000])
    assert d.fetch(big.model).read_bytes() == big.tar.read_bytes()


def test_redirects_are_followed(artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle) -> None:
    model = replace(big.model, url=f"/redirect/{big.model.target_path}")
    artifact_server.add(model, big.tar)
    assert downloader(artifact_server, tmp_path).fetch(model).read_bytes() == big.tar.read_bytes()
    assert artifact_server.requests[0]["path"].startswith("/redirect/")
    assert artifact_server.requests[1]["path"].startswith("/artifacts/")


def test_server_errors_are_retried(artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle) -> None:
    artifact_server.add(big.model, big.tar)
    artifact_server.behaviour.fail_status, artifact_server.behaviour.fails_left = 503, 2
    assert downloader(artifact_server, tmp_path).fetch(big.model).read_bytes() == big.tar.read_bytes()
    assert len(artifact_server.requests) == 3


def test_retries_run_out_as_a_transport_error(
    artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle
) -> None:
    artifact_server.behaviour.fail_status, artifact_server.behaviour.fails_left = 500, 100
    with pytest.raises(TransportError, match="failed 4 times") as exc:
        downloader(artifact_server, tmp_path).fetch(big.model)
    assert exc.value.retryable and exc.value.code is ErrorCode.DOWNLOAD_FAILED


def test_an_unreachable_server_is_a_transport_error(tmp_path: Path, big: BuiltBundle) -> None:
    from tests.fixtures.mosquitto import _free_port

    d = Downloader(f"http://127.0.0.1:{_free_port()}", tmp_path / "dl", limits=FAST)
    with pytest.raises(TransportError, match="ConnectError"):
        d.fetch(big.model)


def test_more_bytes_than_declared_is_length_exceeded(
    artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle
) -> None:
    artifact_server.add(big.model, big.tar)
    artifact_server.behaviour.append_bytes = b"\0" * 10_000  # the server streams past the end
    d = downloader(artifact_server, tmp_path)
    with pytest.raises(ArtifactError) as exc:
        d.fetch(big.model)
    assert exc.value.code is ErrorCode.LENGTH_EXCEEDED
    assert not d.part_path(big.model).exists()


def test_a_file_longer_than_declared_is_refused_from_the_headers(
    artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle
) -> None:
    smaller = replace(big.model, size=big.model.size - 512)
    artifact_server.add(smaller, big.tar)
    with pytest.raises(ArtifactError, match="declares") as exc:
        downloader(artifact_server, tmp_path).fetch(smaller)
    assert exc.value.code is ErrorCode.LENGTH_EXCEEDED
    assert len(artifact_server.requests) == 1  # refused from the headers, not retried


def test_wrong_bytes_are_hash_mismatch(
    artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle
) -> None:
    model = replace(big.model, sha256="0" * 64)
    artifact_server.add(model, big.tar)
    d = downloader(artifact_server, tmp_path)
    with pytest.raises(ArtifactError, match="does not match") as exc:
        d.fetch(model)
    assert exc.value.code is ErrorCode.HASH_MISMATCH and not exc.value.retryable
    assert not d.part_path(model).exists() and not d.done_path(model).exists()


def test_a_resumed_file_with_a_bad_hash_is_fetched_whole_once(
    artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle
) -> None:
    artifact_server.add(big.model, big.tar)
    d = downloader(artifact_server, tmp_path)
    d.directory.mkdir(parents=True)
    d.part_path(big.model).write_bytes(b"\0" * 70_000)  # garbage a power cut left in the part file
    assert d.fetch(big.model).read_bytes() == big.tar.read_bytes()
    assert [r["range"] for r in artifact_server.requests] == ["bytes=70000-", None]


def test_cancel_stops_the_download_and_keeps_the_part(
    artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle
) -> None:
    artifact_server.add(big.model, big.tar)
    artifact_server.behaviour.throttle_s = 0.01
    cancel = threading.Event()

    def progress(n: int, _total: int) -> None:
        if n >= 50_000:
            cancel.set()

    d = downloader(artifact_server, tmp_path)
    with pytest.raises(Cancelled):
        d.fetch(big.model, progress=progress, cancel=cancel)
    assert 50_000 <= d.partial_size(big.model) < big.model.size


class _Misbehaving(BaseHTTPRequestHandler):
    """``/loop`` redirects to itself; ``/bad-gzip`` says gzip and sends something else."""

    protocol_version = "HTTP/1.1"
    hits: list[str] = []

    def log_message(self, *_args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"this is not gzip"
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def misbehaving() -> Iterator[tuple[str, list[str]]]:
    class Handler(_Misbehaving):
        hits: list[str] = []  # a fresh record per server

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", Handler.hits
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(("path", "error"), [("/loop", "TooManyRedirects"), ("/bad-gzip", "DecodingError")])
def test_redirect_loops_and_undecodable_bodies_are_retried_transport_errors(
    misbehaving: tuple[str, list[str]], tmp_path: Path, big: BuiltBundle, path: str, error: str
) -> None:
    url, hits = misbehaving
    model = replace(big.model, url=path)
    with pytest.raises(TransportError, match=f"failed 4 times: {error}") as exc:
        Downloader(url, tmp_path / "dl", limits=FAST).fetch(model)
    assert exc.value.retryable and exc.value.code is ErrorCode.DOWNLOAD_FAILED
    assert hits.count(path) >= FAST.max_attempts  # every attempt went back to the server


@pytest.mark.parametrize("length", ["twelve", "12, 13", "9" * 5000, "-5"])
def test_a_malformed_content_length_is_an_unknown_length(
    tmp_path: Path, big: BuiltBundle, length: str
) -> None:
    # httpx's HTTP/1.1 parser refuses such headers itself (a retried protocol error); other
    # transports (HTTP/2, a proxy's, an injected one) hand them over as they came.
    data = big.tar.read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": length}, content=data)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        d = Downloader("http://store.test", tmp_path / "dl", client=client, limits=FAST)
        assert d.fetch(big.model).read_bytes() == data


def test_progress_never_runs_ahead_of_the_bytes_in_the_part_file(
    artifact_server: ArtifactServer, tmp_path: Path, big: BuiltBundle
) -> None:
    """What progress says is what a ``kill -9`` would leave on disk: the journal's ``downloaded``
    counter is saved from it."""
    artifact_server.add(big.model, big.tar)
    # Small pieces, each read on its own: smaller than the file's write buffer.
    artifact_server.behaviour.chunk, artifact_server.behaviour.throttle_s = 1000, 0.0005
    part = tmp_path / "downloads" / f"{big.model.sha256}.part"
    behind: list[tuple[int, int]] = []

    def check(done: int, _total: int) -> None:
        on_disk = part.stat().st_size if part.exists() else (big.model.size if done == big.model.size else 0)
        if on_disk < done:
            behind.append((done, on_disk))

    downloader(artifact_server, tmp_path).fetch(big.model, progress=check)
    assert behind == []
