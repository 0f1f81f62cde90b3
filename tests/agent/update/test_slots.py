"""A/B slots: extraction is safe, verified, and never touches the other slot."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from agent.contracts.state import ErrorCode
from agent.errors import ArtifactError
from agent.update.slots import SlotStore
from tests.agent.agent_testkit import BuiltBundle, tar_bundle


def evil_tar(path: Path, member: tarfile.TarInfo, data: bytes = b"pwned") -> Path:
    with tarfile.open(path, "w") as tar:
        if member.isfile():
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        else:
            tar.addfile(member)
    return path


def test_install_unpacks_and_verifies(tmp_path: Path, bundles: dict[str, BuiltBundle]) -> None:
    slots = SlotStore(tmp_path / "slots")
    installed = slots.install(bundles["1"].tar, "a")
    assert installed.bundle_dir == tmp_path / "slots" / "a"
    assert installed.manifest.version == "1"
    assert (installed.bundle_dir / "model.onnx").read_bytes() == (
        bundles["1"].dir / "model.onnx"
    ).read_bytes()


def test_install_into_one_slot_leaves_the_other_alone(
    tmp_path: Path, bundles: dict[str, BuiltBundle]
) -> None:
    slots = SlotStore(tmp_path / "slots")
    slots.install(bundles["1"].tar, "a")
    slots.install(bundles["2"].tar, "b")
    assert slots.verify("a").manifest.version == "1"
    assert slots.verify("b").manifest.version == "2"
    assert (
        SlotStore.inactive("a") == "b" and SlotStore.inactive("b") == "a" and SlotStore.inactive(None) == "a"
    )


def test_a_tar_of_the_bundle_directory_itself_is_accepted(
    tmp_path: Path, bundles: dict[str, BuiltBundle]
) -> None:
    tar = tmp_path / "wrapped.tar"
    with tarfile.open(tar, "w") as t:
        t.add(bundles["1"].dir, "bundle-1")
    installed = SlotStore(tmp_path / "slots").install(tar, "a")
    assert installed.bundle_dir.name == "bundle-1" and installed.manifest.version == "1"


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/escape.txt", "sub/../../escape.txt"])
def test_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    tar = evil_tar(tmp_path / "evil.tar", tarfile.TarInfo(name))
    slots = SlotStore(tmp_path / "data" / "slots")
    with pytest.raises(ArtifactError, match="outside the bundle") as exc:
        slots.install(tar, "a")
    assert exc.value.code is ErrorCode.BUNDLE_INVALID
    assert not (tmp_path / "escape.txt").exists() and not Path("/abs/escape.txt").exists()
    assert not (tmp_path / "data" / "escape.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_links_and_special_files_are_refused(tmp_path: Path, kind: bytes) -> None:
    member = tarfile.TarInfo("model.onnx")
    member.type = kind
    member.linkname = "/etc/passwd"
    tar = evil_tar(tmp_path / "evil.tar", member)
    with pytest.raises(ArtifactError, match="link or special file"):
        SlotStore(tmp_path / "slots").install(tar, "a")
    assert not (tmp_path / "slots" / "a").exists()


def test_a_tar_bomb_is_refused_before_writing(tmp_path: Path, bundles: dict[str, BuiltBundle]) -> None:
    with pytest.raises(ArtifactError, match="more than 1000 bytes"):
        SlotStore(tmp_path / "slots", max_unpacked_bytes=1000).install(bundles["1"].tar, "a")
    assert not (tmp_path / "slots" / "a").exists()


def test_files_that_differ_from_the_manifest_are_refused(
    tmp_path: Path, bundles: dict[str, BuiltBundle]
) -> None:
    import shutil

    d = tmp_path / "tampered"
    shutil.copytree(bundles["1"].dir, d)
    (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes()[:-4] + b"XXXX")
    tar = tar_bundle(d, tmp_path / "tampered.tar")
    with pytest.raises(ArtifactError, match=r"model\.onnx: sha256") as exc:
        SlotStore(tmp_path / "slots").install(tar, "b")
    assert exc.value.code is ErrorCode.BUNDLE_INVALID
    assert not (tmp_path / "slots" / "b").exists()


def test_not_a_tar_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive" * 100)
    with pytest.raises(ArtifactError, match="not a readable tar"):
        SlotStore(tmp_path / "slots").install(junk, "a")


@pytest.mark.parametrize("wrapped", [False, True])
def test_install_fsyncs_every_file_and_directory_of_the_slot(
    tmp_path: Path, bundles: dict[str, BuiltBundle], monkeypatch: pytest.MonkeyPatch, wrapped: bool
) -> None:
    tar = bundles["1"].tar
    if wrapped:  # a tar of the bundle directory: files one level down
        tar = tmp_path / "wrapped.tar"
        with tarfile.open(tar, "w") as t:
            t.add(bundles["1"].dir, "bundle-1")
    synced: list[Path] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    slots = SlotStore(tmp_path / "slots")
    slots.install(tar, "a")
    slot = (tmp_path / "slots" / "a").resolve()  # /proc names real paths
    on_disk = {slot, *slot.rglob("*")}
    assert sum(p.is_file() for p in on_disk) >= 3  # manifest, model, self-test data at least
    assert on_disk <= set(synced)
    assert slot.parent in synced  # the directory entry naming the slot


@pytest.mark.parametrize("filters", [True, False], ids=["with-filters", "python-3.11.2"])
def test_install_clears_set_id_and_shared_write_bits(
    tmp_path: Path, bundles: dict[str, BuiltBundle], monkeypatch: pytest.MonkeyPatch, filters: bool
) -> None:
    """Debian bookworm's Python 3.11.2 has no tar extraction filters; there the agent clears the
    same permission bits itself, and the bundle installs either way."""
    if not filters:
        monkeypatch.delattr(tarfile, "data_filter")
    src = tmp_path / "src"
    src.mkdir()
    for p in bundles["1"].dir.iterdir():
        (src / p.name).write_bytes(p.read_bytes())
    os.chmod(src / "model.onnx", 0o6777)
    tar = tar_bundle(src, tmp_path / "b.tar")
    installed = SlotStore(tmp_path / "slots").install(tar, "a")
    mode = (installed.bundle_dir / "model.onnx").stat().st_mode & 0o7777
    assert mode & 0o6022 == 0, oct(mode)
    assert installed.manifest.version == "1"
