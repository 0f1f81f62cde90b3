"""The TUF keys and where they live: made by ``edgectl keys init``, changed by ``edgectl keys
rotate``, read by the fleet server.

An operator's key directory has two parts::

    DIR/offline/root-1.pem ... root-N.pem   root keys (encrypted when a passphrase is given);
                                            only ``keys init`` and ``keys rotate`` need them, so
                                            they can stay on a machine the server never sees
    DIR/server/                             what the server is given (``--keys-dir DIR/server``):
        targets.pem, snapshot.pem,          the online keys, unencrypted (the server signs
        timestamp.pem                       unattended), mode 0600
        root.json                           the current root metadata (public)
        root_history/N.root.json            every root version, so devices walk N -> N+1

The server holds the targets key: it signs each bundle into the repository as it is compiled.
Root keys are the trust anchor; rotating any key makes a new root version signed by the old
root threshold *and* the new root keys, which running devices accept without re-enrolment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import JSONSerializer

from agent.durable import atomic_write
from fleet_server.errors import ConfigError

ONLINE_ROLES = ("targets", "snapshot", "timestamp")
ROLES = ("root", *ONLINE_ROLES)
ROOT_EXPIRY = timedelta(days=365)
INIT_HINT = (
    "make them with `edgectl keys init --dir DIR` and start the server with "
    "`--keys-dir DIR/server` (or EDGEFLEET_KEYS_DIR)"
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def root_bytes(root: Metadata[Root]) -> bytes:
    return root.to_bytes(JSONSerializer(compact=False))


def new_signer() -> tuple[CryptoSigner, Ed25519PrivateKey]:
    """A fresh ed25519 key, as a signer and as the key to save (CryptoSigner exports no
    encrypted form)."""
    key = Ed25519PrivateKey.generate()
    return CryptoSigner(key), key


def _write_key(path: Path, key: Ed25519PrivateKey, passphrase: bytes | None) -> None:
    enc = BestAvailableEncryption(passphrase) if passphrase else NoEncryption()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, enc)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, pem)
    os.chmod(path, 0o600)


def load_signer(path: Path, passphrase: bytes | None = None) -> CryptoSigner:
    """The signer in the PEM file ``path``. Raises :class:`ConfigError` naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key {path}: {exc.strerror or exc}") from exc
    try:
        return CryptoSigner(load_pem_private_key(data, passphrase))
    except (ValueError, TypeError) as exc:
        hint = " (wrong or missing passphrase?)" if b"ENCRYPTED" in data else ""
        raise ConfigError(f"{path}: not a usable private key{hint}: {exc}") from exc


@dataclass(frozen=True)
class KeyDir:
    """An operator's key directory (see the module docstring)."""

    path: Path

    @property
    def offline(self) -> Path:
        return self.path / "offline"

    @property
    def server(self) -> Path:
        return self.path / "server"

    def root_key_paths(self) -> list[Path]:
        return sorted(self.offline.glob("root-*.pem"), key=lambda p: int(p.stem.split("-")[1]))

    def root(self) -> Metadata[Root]:
        return load_root(self.server)

    def root_signers(self, passphrase: bytes | None) -> list[CryptoSigner]:
        return [load_signer(p, passphrase) for p in self.root_key_paths()]


def load_root(server_dir: Path) -> Metadata[Root]:
    """The current root metadata in a server key directory. Raises :class:`ConfigError`."""
    path = server_dir / "root.json"
    try:
        return Metadata[Root].from_bytes(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"no TUF keys in {server_dir} (no root.json): {INIT_HINT}") from None
    except Exception as exc:
        raise ConfigError(f"{path}: not TUF root metadata: {exc}") from exc


def _publish_root(server_dir: Path, root: Metadata[Root]) -> None:
    data = root_bytes(root)
    history = server_dir / "root_history"
    history.mkdir(parents=True, exist_ok=True)
    atomic_write(history / f"{root.signed.version}.root.json", data)
    atomic_write(server_dir / "root.json", data)


def init_keys(
    directory: Path,
    *,
    root_keys: int = 3,
    root_threshold: int = 2,
    passphrase: bytes | None = None,
    expiry: timedelta = ROOT_EXPIRY,
) -> Metadata[Root]:
    """Make every key and root version 1 in ``directory`` (which must not hold keys yet).
    Returns the root. Raises :class:`ConfigError`."""
    if not 1 <= root_threshold <= root_keys:
        raise ConfigError(f"--root-threshold {root_threshold} must be between 1 and --root-keys {root_keys}")
    kd = KeyDir(directory)
    if (kd.server / "root.json").exists() or kd.root_key_paths():
        raise ConfigError(f"{directory} already holds TUF keys; rotate them with `edgectl keys rotate`")
    root = Root(expires=utcnow() + expiry, consistent_snapshot=True)
    root_signers = []
    for i in range(1, root_keys + 1):
        s, key = new_signer()
        root.add_key(s.public_key, "root")
        _write_key(kd.offline / f"root-{i}.pem", key, passphrase)
        root_signers.append(s)
    root.roles["root"].threshold = root_threshold
    for role in ONLINE_ROLES:
        s, key = new_signer()
        root.add_key(s.public_key, role)
        _write_key(kd.server / f"{role}.pem", key, None)
    md = Metadata(root)
    for s in root_signers:
        md.sign(s, append=True)
    _publish_root(kd.server, md)
    return md


def rotate(
    directory: Path, role: str, *, passphrase: bytes | None = None, expiry: timedelta = ROOT_EXPIRY
) -> Metadata[Root]:
    """Replace ``role``'s keys with new ones and publish root version N+1, signed by the old
    root threshold and (for ``root``) the new root keys too. Returns the new root.
    Raises :class:`ConfigError`."""
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    kd = KeyDir(directory)
    current = kd.root()
    old_signers = kd.root_signers(passphrase)
    if not old_signers:
        raise ConfigError(f"no root keys in {kd.offline}: rotating needs them")
    new = Metadata[Root].from_bytes(root_bytes(current))
    r = new.signed
    r.version += 1
    r.expires = utcnow() + expiry
    for keyid in list(r.roles[role].keyids):
        r.revoke_key(keyid, role)
    new_keys = [new_signer() for _ in (old_signers if role == "root" else [None])]
    for s, _key in new_keys:
        r.add_key(s.public_key, role)
    new_signers = [s for s, _key in new_keys] if role == "root" else []
    new.signatures.clear()
    signers: list[Signer] = [*old_signers, *new_signers]
    for signer in signers:
        new.sign(signer, append=True)
    # Both thresholds must hold, or devices would refuse the new root.
    current.signed.verify_delegate("root", new.signed_bytes, new.signatures)
    r.verify_delegate("root", new.signed_bytes, new.signatures)
    if role == "root":
        old_paths = kd.root_key_paths()
        for i, (_s, key) in enumerate(new_keys, 1):
            _write_key(kd.offline / f"root-{i}.pem.new", key, passphrase)
        for p in old_paths:
            os.replace(p, p.with_suffix(f".v{current.signed.version}.retired"))
        for i in range(1, len(new_signers) + 1):
            os.replace(kd.offline / f"root-{i}.pem.new", kd.offline / f"root-{i}.pem")
    else:
        _write_key(kd.server / f"{role}.pem", new_keys[0][1], None)
    _publish_root(kd.server, new)
    return new


@dataclass(frozen=True)
class OnlineKeys:
    """What the server signs with: the root it serves (and its history) and the online signers."""

    root: Metadata[Root]
    history: tuple[bytes, ...]  # N.root.json bytes for N = 1 .. current
    signers: dict[str, Signer]


def load_online_keys(server_dir: Path) -> OnlineKeys:
    """Read a server key directory, checking that each online key is the one root names.
    Raises :class:`ConfigError` saying how to make keys when there are none."""
    root = load_root(server_dir)
    history = []
    for v in range(1, root.signed.version + 1):
        p = server_dir / "root_history" / f"{v}.root.json"
        try:
            history.append(p.read_bytes())
        except OSError as exc:
            raise ConfigError(f"{p}: missing root version {v} ({exc.strerror}); devices need it") from exc
    signers: dict[str, Signer] = {}
    for role in ONLINE_ROLES:
        s = load_signer(server_dir / f"{role}.pem")
        if s.public_key.keyid not in root.signed.roles[role].keyids:
            raise ConfigError(
                f"{server_dir / (role + '.pem')} is not a {role} key of root v{root.signed.version}"
            )
        signers[role] = s
    return OnlineKeys(root, tuple(history), signers)


def read_passphrase(path: Path | None) -> bytes | None:
    """The passphrase in the file ``path`` (its first line), or ``None``."""
    if path is None:
        return None
    try:
        text = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the passphrase file {path}: {exc.strerror}") from exc
    if not text or not text[0]:
        raise ConfigError(f"the passphrase file {path} is empty")
    return text[0].encode()
