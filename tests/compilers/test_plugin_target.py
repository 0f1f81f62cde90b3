"""A plug-in target and a plug-in runtime take a bundle from compile to serve.

Nothing outside the registries names the built-in targets and runtimes, so a target and runtime
registered by a third party (here in-process, as an entry point would) compile, parse, load in
the agent's model registry and answer an inference like the built-ins do.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from agent.contracts import ContractError
from agent.contracts.manifest import Manifest
from agent.contracts.names import RUNTIMES, TARGETS
from agent.contracts.state import DesiredModel, DesiredState
from agent.runtimes import RuntimeAdapter, load_bundle, load_onnx
from agent.serving.models import LoadedModel, ModelRegistry
from agent.update.journal import Journal
from agent.update.plan import Action, decide
from compilers import TargetError, compile_model
from compilers.base import CompileJob, Target, TargetOutput
from compilers.registry import get_target, known_targets
from device_profiles import ProfileError, load_profile_file
from tests.compilers.compiler_fixtures import ModelFiles, images

PROFILE = """\
name: npu-box
target: acme-npu
precision: fp32
cpu: {arch: aarch64, cores: 4}
memory_mb: 2048
runtime: {name: acme-rt, version: ">=1.0"}
"""


class AcmeRuntime(RuntimeAdapter):
    """Runs ``.acme`` files (ONNX under another name) through ONNX Runtime, and counts its runs."""

    name: ClassVar[str] = "acme-rt"
    runs: ClassVar[int] = 0

    def __init__(self, inner: RuntimeAdapter) -> None:
        super().__init__(inner.bundle_dir, inner.manifest)
        self._inner = inner

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def version(cls) -> str | None:
        return "1.2"

    @classmethod
    def load(
        cls, bundle_dir: Path, manifest: Manifest, threads: int | None = None, spinning: bool | None = None
    ) -> AcmeRuntime:
        assert manifest.entrypoint.endswith(".acme")
        return cls(load_onnx(bundle_dir, manifest, threads=threads))

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        type(self).runs += 1
        return self._inner.infer(inputs)


class AcmeTarget(Target):
    name: ClassVar[str] = "acme-npu"
    runtime: ClassVar[str] = "acme-rt"
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    def check_ops(self, model: object) -> None:
        return None

    def compile(self, job: CompileJob, staging: Path) -> TargetOutput:
        shutil.copyfile(job.source_path, staging / "model.acme")
        return TargetOutput(
            entrypoint="model.acme",
            files={"model.acme": "model"},
            inputs=job.inputs,
            outputs=job.outputs,
            runtime_version=job.profile.runtime.version,
        )


@pytest.fixture
def plugins() -> Iterator[None]:
    TARGETS.register("acme-npu", AcmeTarget)
    RUNTIMES.register("acme-rt", AcmeRuntime)
    try:
        yield
    finally:
        TARGETS.unregister("acme-npu")
        RUNTIMES.unregister("acme-rt")


def test_a_plugin_target_and_runtime_go_from_compile_to_serve(
    plugins: None, tiny: ModelFiles, tmp_path: Path
) -> None:
    (tmp_path / "npu-box.yaml").write_text(PROFILE)
    profile = load_profile_file(tmp_path / "npu-box.yaml")
    assert "acme-npu" in known_targets() and isinstance(get_target("acme-npu"), AcmeTarget)

    out = tmp_path / "bundle"
    report = compile_model(tiny.model, profile, out)
    assert report.manifest.target == "acme-npu" and report.manifest.runtime == "acme-rt"
    assert report.manifest.validation is not None and report.manifest.validation.ran  # by AcmeRuntime

    manifest = Manifest.from_json((out / "manifest.json").read_bytes())
    assert manifest == report.manifest

    # The device side: the plan takes the plug-in target, the registry loads the plug-in runtime.
    desired = DesiredState(
        "dev-1", 1, (DesiredModel("tiny", "1", "acme-npu", "fp32", "t/1/x.tar", "/x", 10, "a" * 64),)
    )
    plan = decide(
        desired,
        device_id="dev-1",
        target=profile.target,
        runtime=profile.runtime.name,
        runtime_problems={"acme-rt": None},
        journal=Journal(),
    )
    assert plan.action is Action.UPDATE
    registry = ModelRegistry()
    adapter = load_bundle(out, manifest)
    assert isinstance(adapter, AcmeRuntime)
    registry.swap("default", LoadedModel("tiny", "1", adapter, manifest))
    before = AcmeRuntime.runs
    x = images(2)
    with registry.use("tiny") as served:
        scores = served.adapter.infer({"image": x})["scores"]
    assert AcmeRuntime.runs == before + 1
    source = load_onnx(tiny.model.parent, replace(manifest, entrypoint=tiny.model.name))
    reference = source.infer({"image": x})["scores"]
    np.testing.assert_allclose(scores, reference, rtol=1e-5, atol=1e-5)
    registry.close()


def test_a_plugin_target_refuses_a_profile_naming_another_runtime(
    plugins: None, tiny: ModelFiles, tmp_path: Path
) -> None:
    (tmp_path / "npu-box.yaml").write_text(PROFILE.replace("name: acme-rt", "name: onnxruntime"))
    profile = load_profile_file(tmp_path / "npu-box.yaml")
    with pytest.raises(TargetError, match="builds for runtime 'acme-rt', the profile names 'onnxruntime'"):
        compile_model(tiny.model, profile, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_without_the_plugin_its_manifest_and_profile_are_refused(tmp_path: Path) -> None:
    (tmp_path / "npu-box.yaml").write_text(PROFILE)
    with pytest.raises(ProfileError, match=r"target: unknown target 'acme-npu' \(known: onnx-x86"):
        load_profile_file(tmp_path / "npu-box.yaml")
    with pytest.raises(ContractError, match=r"manifest.target: 'acme-npu' is not one of onnx-x86"):
        Manifest.from_dict(
            {
                "schema": "edgefleet.manifest/1",
                "target": "acme-npu",
                "precision": "fp32",
                "runtime": "acme-rt",
                "runtime_version": "1",
                "entrypoint": "m",
                "source_sha256": "",
                "inputs": [],
                "outputs": [],
                "files": [],
            }
        )
