"""Device profiles: every built-in loads; bad files fail naming the file and the field; user
directories override built-ins by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.contracts.names import BUILTIN_TARGETS
from device_profiles import ProfileError, builtin_dir, load_profile, load_profile_file, load_profiles
from device_profiles.loader import ENV_DIR

GOOD = """\
name: {name}
target: onnx-x86
precision: int8
cpu: {{arch: x86_64, cores: 4, features: [avx2]}}
memory_mb: 4096
runtime: {{name: onnxruntime, version: ">=1.16"}}
"""


@pytest.fixture(autouse=True)
def _no_env_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_all_builtins_load() -> None:
    profiles = load_profiles()
    files = sorted(p.stem for p in builtin_dir().glob("*.yaml"))
    assert sorted(profiles) == files and len(files) >= 8
    assert {p.target for p in profiles.values()} == set(BUILTIN_TARGETS)
    for p in profiles.values():
        assert p.source.endswith(f"{p.name}.yaml") and p.memory_mb > 0
        if p.target == "tensorrt-jetson":
            assert p.gpu is not None and p.gpu.compute_capability


def test_known_facts_of_builtins() -> None:
    assert load_profile("jetson-agx-orin").gpu.dla_cores == 2  # type: ignore[union-attr]
    assert load_profile("jetson-orin-nano").gpu.dla_cores == 0  # type: ignore[union-attr]
    assert load_profile("x86-64-avx512-vnni").has_vnni and not load_profile("x86-64-avx2").has_vnni
    assert load_profile("raspberry-pi-4").runtime.fallback == "tflite-runtime"


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ProfileError, match=r"unknown profile 'nope' \(known: .*x86-64-avx2"):
        load_profile("nope")


@pytest.mark.parametrize(
    ("text", "field", "why"),
    [
        (GOOD + "colour: red\n", "colour", "unknown key"),
        (GOOD.replace("target: onnx-x86", "target: coral-tpu"), "target", "unknown target 'coral-tpu'"),
        (GOOD.replace("memory_mb: 4096", "memory_mb: lots"), "memory_mb", "expected an integer, got 'lots'"),
        (GOOD.replace("cores: 4", "cores: four"), "cpu.cores", "expected an integer, got 'four'"),
        (GOOD.replace("cores: 4", "cores: 4, turbo: true"), "cpu.turbo", "unknown key"),
        (GOOD.replace("precision: int8", "precision: int4"), "precision", "'int4' is not one of"),
        (GOOD.replace('version: ">=1.16"', 'version: "newest"'), "runtime.version", "is not a version range"),
        (GOOD.replace("name: onnxruntime", "name: tensorrt"), "runtime.name", "runs on 'onnxruntime'"),
        (GOOD.replace("memory_mb: 4096\n", ""), "memory_mb", "missing"),
        (GOOD.replace("memory_mb: 4096", "memory_mb: true"), "memory_mb", "expected an integer, got True"),
        (GOOD + "serving: {{threads: 0}}\n", "serving.threads", "must be at least 1"),
        (GOOD + "serving: {{spinning: 1}}\n", "serving.spinning", "expected"),
        (GOOD + "serving: {{batch: 4}}\n", "serving.batch", "unknown key"),
    ],
)
def test_bad_file_names_file_and_field(tmp_path: Path, text: str, field: str, why: str) -> None:
    path = _write(tmp_path, "box", text.format(name="box"))
    with pytest.raises(ProfileError) as err:
        load_profile_file(path)
    assert str(err.value).startswith(f"{path}: {field}: ") and why in str(err.value)


def test_jetson_profile_needs_a_gpu(tmp_path: Path) -> None:
    text = GOOD.format(name="jet").replace("target: onnx-x86", "target: tensorrt-jetson")
    text = text.replace("name: onnxruntime", "name: tensorrt").replace("arch: x86_64", "arch: aarch64")
    with pytest.raises(ProfileError, match="gpu: missing"):
        load_profile_file(_write(tmp_path, "jet", text))


def test_name_must_match_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="must match the file name"):
        load_profile_file(_write(tmp_path, "other", GOOD.format(name="box")))


def test_not_yaml_or_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile_file(_write(tmp_path, "a", "key: [unclosed"))
    with pytest.raises(ProfileError, match="a profile must be a mapping"):
        load_profile_file(_write(tmp_path, "b", "- just\n- a list\n"))


def test_user_dir_adds_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    override = GOOD.format(name="x86-64-avx2").replace("memory_mb: 4096", "memory_mb: 1234")
    _write(tmp_path, "x86-64-avx2", override)
    _write(tmp_path, "my-box", GOOD.format(name="my-box"))
    profiles = load_profiles([tmp_path])
    assert profiles["x86-64-avx2"].memory_mb == 1234 and "my-box" in profiles
    assert load_profile("my-box", [tmp_path]).source == str(tmp_path / "my-box.yaml")
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    assert load_profile("x86-64-avx2").memory_mb == 1234


def test_bad_user_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="profile directory does not exist"):
        load_profiles([tmp_path / "missing"])
    _write(tmp_path, "broken", "name: broken\n")
    with pytest.raises(ProfileError, match=r"broken\.yaml"):
        load_profiles([tmp_path])


def test_profile_by_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "box", GOOD.format(name="box"))
    assert load_profile(str(path)).name == "box"


def test_serving_section_is_optional_and_typed(tmp_path: Path) -> None:
    plain = load_profile_file(_write(tmp_path, "box", GOOD.format(name="box")))
    assert (plain.serving.threads, plain.serving.spinning, plain.serving.max_batch) == (None, False, 8)
    tuned = load_profile_file(
        _write(
            tmp_path,
            "gpu",
            (GOOD + "serving: {{threads: 2, spinning: true, max_batch: 32}}\n").format(name="gpu"),
        )
    )
    assert (tuned.serving.threads, tuned.serving.spinning, tuned.serving.max_batch) == (2, True, 32)
