"""``edgectl keys``: init, export and rotate make and change real TUF metadata; mistakes exit
non-zero with one line that says what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Root


def root_of(d: Path) -> Metadata[Root]:
    return Metadata[Root].from_bytes((d / "server" / "root.json").read_bytes())


def test_init_export_and_rotate(edgectl: Any, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    r = edgectl(
        "keys", "init", "--dir", keys, "--root-keys", "3", "--root-threshold", "2", "--passphrase-file", pw
    )
    assert r.exit_code == 0, r.output
    assert f"--keys-dir {keys / 'server'}" in r.stdout
    assert b"ENCRYPTED" in (keys / "offline" / "root-1.pem").read_bytes()
    assert not (keys / "server" / "root-1.pem").exists()  # root keys stay with the operator
    root = root_of(keys)
    assert root.signed.roles["root"].threshold == 2 and len(root.signed.roles["root"].keyids) == 3
    assert root.signed.consistent_snapshot

    r = edgectl("-o", "json", "keys", "export", "--dir", keys)
    assert r.exit_code == 0, r.output
    exported = json.loads(r.stdout)
    assert set(exported["roles"]) == {"root", "targets", "snapshot", "timestamp"}
    assert "private" not in r.stdout
    r = edgectl("keys", "export", "--dir", keys, "--root")
    assert json.loads(r.stdout)["signed"]["_type"] == "root"

    old_targets = set(root.signed.roles["targets"].keyids)
    r = edgectl("keys", "rotate", "targets", "--dir", keys, "--passphrase-file", pw)
    assert r.exit_code == 0, r.output
    v2 = root_of(keys)
    assert v2.signed.version == 2 and not old_targets & set(v2.signed.roles["targets"].keyids)
    root.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)  # old root accepts v2

    r = edgectl("keys", "rotate", "root", "--dir", keys, "--passphrase-file", pw)
    assert r.exit_code == 0, r.output
    v3 = root_of(keys)
    v2.signed.verify_delegate("root", v3.signed_bytes, v3.signatures)  # signed by the old threshold
    v3.signed.verify_delegate("root", v3.signed_bytes, v3.signatures)  # and by the new keys
    assert not set(v2.signed.roles["root"].keyids) & set(v3.signed.roles["root"].keyids)
    assert sorted(p.name for p in (keys / "server" / "root_history").iterdir()) == [
        "1.root.json",
        "2.root.json",
        "3.root.json",
    ]


def test_mistakes_exit_non_zero_with_one_line(edgectl: Any, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    assert edgectl("keys", "init", "--dir", keys, "--passphrase-file", pw).exit_code == 0
    r = edgectl("keys", "init", "--dir", keys)
    assert r.exit_code == 1 and "already holds TUF keys" in r.stderr
    r = edgectl("keys", "rotate", "root", "--dir", keys)  # no passphrase for encrypted keys
    assert r.exit_code == 1 and "passphrase" in r.stderr
    assert root_of(keys).signed.version == 1  # nothing half-written
    r = edgectl("keys", "rotate", "bogus", "--dir", keys, "--passphrase-file", pw)
    assert r.exit_code == 1 and "unknown role" in r.stderr
    r = edgectl("keys", "export", "--dir", tmp_path / "none")
    assert r.exit_code == 1 and "edgectl keys init" in r.stderr
    r = edgectl("keys", "init", "--dir", tmp_path / "k2", "--root-keys", "2", "--root-threshold", "3")
    assert r.exit_code == 1 and "--root-threshold" in r.stderr
