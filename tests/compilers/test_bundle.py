"""The bundle on disk: the manifest's hashes match the files, tampering is detected, and the
move into place is all-or-nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.contracts.errors import ContractError
from agent.runtimes import sha256_file, verify_bundle_dir
from compilers import CompileOptions, CompileReport, compile_model
from compilers.bundle import check_destination, file_entries, make_staging, publish
from compilers.errors import CompileError
from tests.compilers.compiler_fixtures import ModelFiles


@pytest.fixture(scope="module")
def bundle(tiny: ModelFiles, tmp_path_factory: pytest.TempPathFactory) -> CompileReport:
    out = tmp_path_factory.mktemp("bundle") / "b"
    opts = CompileOptions(
        calibration=tiny.calibration, validation=tiny.validation, latency_runs=0, min_agreement=0.9
    )
    return compile_model(tiny.model, "jetson-orin-nano", out, opts)


def test_every_file_is_listed_with_its_hash_and_size(bundle: CompileReport, tiny: ModelFiles) -> None:
    on_disk = {p.name for p in bundle.out_dir.iterdir()} - {"manifest.json"}
    listed = {f.path: f for f in bundle.manifest.files}
    assert set(listed) == on_disk == {"model.onnx", "build_spec.json", "selftest.npz"}
    for path, entry in listed.items():
        assert entry.sha256 == sha256_file(bundle.out_dir / path)
        assert entry.size == (bundle.out_dir / path).stat().st_size
    assert bundle.manifest.source_sha256 == sha256_file(tiny.model)


def test_manifest_round_trips(bundle: CompileReport) -> None:
    text = (bundle.out_dir / "manifest.json").read_text()
    assert json.loads(text)["schema"] == "edgefleet.manifest/1"
    assert verify_bundle_dir(bundle.out_dir) == bundle.manifest


def test_tampering_is_detected(bundle: CompileReport, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle.out_dir, copy)
    model = copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    model.write_bytes(bytes(data))
    with pytest.raises(ContractError, match=r"model.onnx: sha256 .* != .* in the manifest"):
        verify_bundle_dir(copy)
    (copy / "selftest.npz").unlink()
    with pytest.raises(ContractError, match=r"selftest\.npz: missing"):
        verify_bundle_dir(copy)


def test_staging_is_beside_the_destination_and_published_atomically(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "bundle"
    staging = make_staging(out)
    assert staging.parent == out.parent.resolve() and staging.name.startswith(".bundle.staging-")
    (staging / "f.bin").write_bytes(b"x")
    assert file_entries(staging, {"f.bin": "extra"})[0].size == 1
    publish(staging, out, force=False)
    assert (out / "f.bin").read_bytes() == b"x" and not staging.exists()
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)


def test_destination_checks(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(CompileError, match="is not a directory"):
        check_destination(afile, force=True)
    check_destination(tmp_path / "new", force=False)
    with pytest.raises(CompileError, match="already exists"):
        check_destination(tmp_path, force=False)
