"""Bundles fetched through TUF: the agent's bundle source when it runs for real.

For each update, :class:`TufSource`:

1. refreshes the metadata with python-tuf's ngclient ``Updater`` from the configured server's
   ``/tuf/`` (root -> timestamp -> snapshot -> targets; rollback, freeze, mix-and-match and
   endless-data checks are ngclient's), trusting only ``<data dir>/trust/root.json`` and judging
   expiry by :class:`~agent.trust.clock.TrustedClock`;
2. looks up the desired model's ``target_path``: none is ``UNKNOWN_TARGET``; a signed length,
   sha256 or custom field (model, version, target) that disagrees with the desired state is
   ``TARGET_MISMATCH``;
3. downloads the target from the configured server's ``/artifacts/`` at its consistent-snapshot
   name, never from a URL a message names, through :class:`~agent.trust.fetcher.ResumableFetcher`
   and ngclient's ``download_target`` (length and hashes checked against the signed metadata);
4. after unpacking, :meth:`check_bundle` refuses a bundle whose ``manifest.json`` is not the one
   the target's ``manifest_sha256`` names, or names another model (``TARGET_MISMATCH``).

It offers the same calls as :class:`~agent.update.download.Downloader` so the reconciler drives
either. A device that can't refresh keeps serving what it has: only installs need this.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater

from agent.contracts.state import DesiredModel, ErrorCode
from agent.durable import atomic_write, fsync_dir
from agent.errors import ArtifactError, MetadataError, UpdateError
from agent.trust.clock import TrustedClock
from agent.trust.errors import translate
from agent.trust.fetcher import ResumableFetcher
from agent.update.download import Downloader, DownloadLimits, Progress

log = logging.getLogger(__name__)

ISSUED_FIELD = "x-edgefleet-issued"  # fleet_server.trust.repository writes it


def trust_dir(data_dir: Path) -> Path:
    return data_dir / "trust"


def write_root(data_dir: Path, data: bytes, *, replace: bool = False) -> bool:
    """Make ``data`` (TUF root metadata, as enrolment receives it) the root this device trusts,
    ``<data dir>/trust/root.json``, unless one is there and not ``replace``. Returns whether it
    was written. Raises ValueError (not root metadata), OSError."""
    dest = trust_dir(data_dir) / "root.json"
    if dest.exists() and not replace:
        return False
    try:
        kind = json.loads(data).get("signed", {}).get("_type")
    except (ValueError, AttributeError):
        kind = None
    if kind != "root":
        raise ValueError("not TUF root metadata")
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, data)
    return True


def install_root(data_dir: Path, root_file: Path) -> bool:
    """``--tuf-root``: :func:`write_root` with the file's bytes, unless a root is there."""
    if (trust_dir(data_dir) / "root.json").exists():
        return False
    try:
        return write_root(data_dir, root_file.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{root_file}: {exc}") from None


class TufSource:
    """Fetches and checks bundles through TUF (see the module docstring).

    ``server`` is the fleet server's base URL; ``client`` the httpx client for every request
    (mTLS goes there); ``clock`` the reference clock.
    """

    def __init__(
        self,
        server: str,
        data_dir: Path,
        *,
        client: httpx.Client | None = None,
        limits: DownloadLimits | None = None,
        clock: TrustedClock | None = None,
    ) -> None:
        self.server = server.rstrip("/") + "/"
        self.directory = data_dir / "downloads"
        self._trust = trust_dir(data_dir)
        self._own_client = client is None
        self._limits = limits or DownloadLimits()
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(self._limits.read_timeout, connect=self._limits.connect_timeout),
            follow_redirects=True,
        )
        self._partial = Downloader(
            self.server, self.directory / "partial", client=self._client, limits=limits
        )
        self.fetcher = ResumableFetcher(self._client, self._partial)
        self.clock = clock or TrustedClock(self._trust / "clock.json")
        self._known: dict[str, TargetFile] = {}
        self._lock = threading.Lock()

    # -- the Downloader calls the reconciler makes ------------------------------------------

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def use(self, base_url: str, client: httpx.Client) -> None:
        """Fetch metadata and bundles from ``base_url`` (the device listener) with ``client``
        (the device's certificate; owned from now)."""
        if self._own_client:
            self._client.close()
        self.server = base_url.rstrip("/") + "/"
        self._client, self._own_client = client, True
        self._partial.use(self.server, client)
        self._partial._own_client = False  # closed here, once
        self.fetcher = ResumableFetcher(client, self._partial)

    def done_path(self, model: DesiredModel) -> Path:
        return self.directory / f"{model.sha256}.tar"

    def partial_size(self, model: DesiredModel) -> int:
        return self._partial.partial_size(model)

    def discard(self, model: DesiredModel) -> None:
        self.done_path(model).unlink(missing_ok=True)
        self._partial.discard(model)

    def cleanup(self, keep: set[str] | frozenset[str] = frozenset()) -> None:
        self._partial.cleanup(keep)
        if self.directory.is_dir():
            for p in self.directory.iterdir():
                # .part: downloads of agents from before TUF kept them here
                if p.suffix in (".tar", ".verifying", ".part") and p.name.split(".")[0] not in keep:
                    p.unlink(missing_ok=True)

    def fetch(
        self, model: DesiredModel, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> Path:
        """The verified bundle tar for ``model``. Raises :class:`UpdateError` with the codes in
        the module docstring (metadata trouble is a retryable :class:`MetadataError`)."""
        updater = self._updater()
        info = self._target(updater, model)
        done = self.done_path(model)
        if done.is_file() and updater.find_cached_target(info, str(done)):
            return done
        self.directory.mkdir(parents=True, exist_ok=True)
        url = self._target_url(updater, info)
        signed = replace(model, url=url, size=info.length, sha256=info.hashes["sha256"])
        tmp = done.with_suffix(".verifying")
        try:
            with self.fetcher.expect(signed, progress, cancel):
                updater.download_target(info, filepath=str(tmp), target_base_url=self.server + "artifacts/")
        except UpdateError:
            tmp.unlink(missing_ok=True)
            raise
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise translate(exc, f"{model.ref}: downloading {info.path}") from exc
        os.replace(tmp, done)
        fsync_dir(self.directory)
        self._partial.discard(signed)
        return done

    def check_bundle(self, model: DesiredModel, bundle_dir: Path) -> None:
        """Refuse an unpacked bundle whose manifest is not the one its signed target names."""
        with self._lock:
            info = self._known.get(model.target_path)
        if info is None:  # a restart between download and install: look it up again
            info = self._target(self._updater(), model)
        custom = _custom(info)
        try:
            data = (bundle_dir / "manifest.json").read_bytes()
        except OSError as exc:
            raise ArtifactError(f"{model.ref}: the bundle has no readable manifest.json: {exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != custom.get("manifest_sha256"):
            raise ArtifactError(
                f"{model.ref}: manifest.json has sha256 {digest}, the signed target "
                f"{info.path} names {custom.get('manifest_sha256')}",
                ErrorCode.TARGET_MISMATCH,
            )
        manifest = json.loads(data)
        named = (manifest.get("name"), manifest.get("version"), manifest.get("target"))
        if named != (custom.get("model"), custom.get("version"), custom.get("target")):
            raise ArtifactError(
                f"{model.ref}: the manifest names {named}, the signed target {info.path} "
                f"{(custom.get('model'), custom.get('version'), custom.get('target'))}",
                ErrorCode.TARGET_MISMATCH,
            )

    # -- TUF -------------------------------------------------------------------------------

    def _updater(self) -> Updater:
        """A refreshed Updater (ngclient refreshes once per instance)."""
        root = self._trust / "root.json"
        try:
            bootstrap = root.read_bytes()
        except FileNotFoundError:
            raise MetadataError(
                f"no trusted TUF root at {root}: enrol the device, or start the agent with --tuf-root FILE",
                ErrorCode.TRUST_ROOT_MISSING,
            ) from None
        meta = self._trust / "metadata"
        meta.mkdir(parents=True, exist_ok=True)
        try:
            updater = Updater(str(meta), self.server + "tuf/", fetcher=self.fetcher, bootstrap=bootstrap)
            # ngclient fixes its reference time at construction with no public way to set it;
            # expiry must be judged by the trusted clock (agent.trust.clock), so it is set here.
            updater._trusted_set.reference_time = self.clock.now()
            updater.refresh()
        except UpdateError as exc:
            raise MetadataError(exc.message, exc.code) from exc
        except Exception as exc:
            err = translate(exc, "refreshing TUF metadata")
            if not err.retryable:
                err = MetadataError(err.message, err.code)
            raise err from exc
        self.clock.observe(_issued(updater))
        return updater

    def _target(self, updater: Updater, model: DesiredModel) -> TargetFile:
        try:
            info = updater.get_targetinfo(model.target_path)
        except Exception as exc:
            raise translate(exc, f"looking up {model.target_path}") from exc
        if info is None:
            raise ArtifactError(
                f"{model.ref}: {model.target_path!r} is not a signed target of the fleet's repository",
                ErrorCode.UNKNOWN_TARGET,
            )
        custom = _custom(info)
        problems = []
        if info.length != model.size:
            problems.append(f"length {info.length} (desired state: {model.size})")
        if info.hashes.get("sha256") != model.sha256:
            problems.append(f"sha256 {info.hashes.get('sha256')} (desired state: {model.sha256})")
        for key, want in (("model", model.name), ("version", model.version), ("target", model.target)):
            if custom.get(key) != want:
                problems.append(f"{key} {custom.get(key)!r} (desired state: {want!r})")
        if problems:
            raise ArtifactError(
                f"{model.ref}: the signed target {info.path} has {'; '.join(problems)}",
                ErrorCode.TARGET_MISMATCH,
            )
        with self._lock:
            self._known[model.target_path] = info
        return info

    def _target_url(self, updater: Updater, info: TargetFile) -> str:
        """The URL ngclient's ``download_target`` forms (consistent-snapshot hash prefix)."""
        path = info.path
        if updater._trusted_set.root.consistent_snapshot:
            head, sep, base = path.rpartition("/")
            path = f"{head}{sep}{next(iter(info.hashes.values()))}.{base}"
        return f"{self.server}artifacts/{path}"


def _custom(info: TargetFile) -> dict[str, Any]:
    custom = info.custom
    return custom if isinstance(custom, dict) else {}


def _issued(updater: Updater) -> datetime | None:
    raw = updater._trusted_set.timestamp.unrecognized_fields.get(ISSUED_FIELD)
    if not isinstance(raw, str):
        return None
    try:
        return datetime.strptime(raw, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
