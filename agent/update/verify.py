"""The seam where a downloaded bundle is checked before it is installed.

A :class:`Verifier` takes the downloaded file and the desired model that named it, and raises
:class:`~agent.errors.ArtifactError` when the file must be refused. The default checks the size
and sha256 the desired state declared. The signed-metadata checks happen before this, in the
bundle source (:class:`agent.trust.TufSource`: the desired state's size and sha256 must be the
signed target's, and the download is verified against it), and after unpacking
(``check_bundle``: the manifest against the target's custom fields).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from agent.contracts.state import DesiredModel, ErrorCode
from agent.errors import ArtifactError
from agent.runtimes.bundle_dir import sha256_file


class Verifier(Protocol):
    def verify(self, path: Path, model: DesiredModel) -> None:
        """Return when ``path`` holds exactly the bundle ``model`` names; raise ArtifactError if not."""
        ...


class Sha256Verifier:
    """Size and sha256 against the desired state (which arrived over the authenticated MQTT link)."""

    def verify(self, path: Path, model: DesiredModel) -> None:
        size = path.stat().st_size
        if size != model.size:
            raise ArtifactError(
                f"{model.ref}: downloaded {size} bytes, the desired state declares {model.size}",
                ErrorCode.SIZE_MISMATCH,
            )
        digest = sha256_file(path)
        if digest != model.sha256:
            raise ArtifactError(
                f"{model.ref}: sha256 {digest} does not match the declared {model.sha256}",
                ErrorCode.HASH_MISMATCH,
            )
