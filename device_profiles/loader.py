"""Parse and validate device profile YAML files.

Every error names the file and the field, e.g.
``my.yaml: cpu.cores: expected an integer, got 'four'``. Unknown keys are errors too, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from agent.contracts.names import BUILTIN_TARGET_RUNTIME, PRECISIONS, RUNTIMES, TARGETS

ARCHES = ("x86_64", "aarch64", "armv7l")
ENV_DIR = "EDGEFLEET_PROFILES_DIR"


class ProfileError(ValueError):
    """A profile file is missing, unreadable or invalid. The message names the file and field."""


@dataclass(frozen=True)
class CpuSpec:
    arch: str
    cores: int
    features: tuple[str, ...] = ()


@dataclass(frozen=True)
class GpuSpec:
    name: str
    compute_capability: str
    dla_cores: int = 0
    memory_shared: bool = True


@dataclass(frozen=True)
class RuntimeSpec:
    """The runtime the device runs bundles with and the versions it accepts (a PEP 440 range)."""

    name: str
    version: str
    fallback: str | None = None  # e.g. tflite-runtime on boards where LiteRT has no wheel

    @property
    def specifier(self) -> SpecifierSet:
        return SpecifierSet(self.version)


@dataclass(frozen=True)
class ServingSpec:
    """How the agent serves on this kind of device, unless its settings or the desired state say
    otherwise: runtime threads (``None``: one per core), whether runtime threads go on spinning
    between runs (off: they spin only while a run goes on; spinning between runs buys
    microseconds and burns a core while the device waits), and the largest
    dynamic batch (the batcher still measures whether batches pay)."""

    threads: int | None = None
    spinning: bool = False
    max_batch: int = 8


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    target: str
    precision: str
    cpu: CpuSpec
    memory_mb: int
    runtime: RuntimeSpec
    description: str = ""
    gpu: GpuSpec | None = None
    jetpack: str | None = None
    latency_budget_ms: float | None = None
    serving: ServingSpec = ServingSpec()
    source: str = ""

    @property
    def has_vnni(self) -> bool:
        return any(f in self.cpu.features for f in ("avx512_vnni", "avx_vnni", "vnni"))


_TOP = {
    "name": str,
    "description": str,
    "target": str,
    "precision": str,
    "cpu": dict,
    "gpu": dict,
    "memory_mb": int,
    "runtime": dict,
    "jetpack": str,
    "latency_budget_ms": (int, float),
    "serving": dict,
}
_REQUIRED = ("name", "target", "precision", "cpu", "memory_mb", "runtime")


def _type_name(t: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", dict: "a mapping", list: "a list"}
    if isinstance(t, tuple):
        return "a number"
    return names.get(t, t.__name__)


def _check(src: str, key: str, value: Any, typ: Any) -> Any:
    bad = isinstance(value, bool) and typ is not bool
    if bad or not isinstance(value, typ):
        raise ProfileError(f"{src}: {key}: expected {_type_name(typ)}, got {value!r}")
    return value


def _section(
    src: str, prefix: str, data: Any, schema: dict[str, Any], required: tuple[str, ...]
) -> dict[str, Any]:
    _check(src, prefix, data, dict)
    for key in data:
        if key not in schema:
            raise ProfileError(f"{src}: {prefix}.{key}: unknown key (known: {', '.join(schema)})")
    for key in required:
        if key not in data:
            raise ProfileError(f"{src}: {prefix}.{key}: missing")
    return {k: _check(src, f"{prefix}.{k}", v, schema[k]) for k, v in data.items()}


def parse_profile(data: Any, src: str) -> DeviceProfile:
    """Build a :class:`DeviceProfile` from parsed YAML. ``src`` names the file in errors."""
    if not isinstance(data, dict):
        raise ProfileError(f"{src}: a profile must be a mapping, got {type(data).__name__}")
    for key in data:
        if key not in _TOP:
            raise ProfileError(f"{src}: {key}: unknown key (known: {', '.join(_TOP)})")
    for key in _REQUIRED:
        if key not in data:
            raise ProfileError(f"{src}: {key}: missing")
    top = {k: _check(src, k, v, _TOP[k]) for k, v in data.items()}
    if top["target"] not in TARGETS:
        raise ProfileError(f"{src}: target: {TARGETS.unknown(top['target'])}")
    if top["precision"] not in PRECISIONS:
        raise ProfileError(f"{src}: precision: {top['precision']!r} is not one of {', '.join(PRECISIONS)}")
    if top["memory_mb"] <= 0:
        raise ProfileError(f"{src}: memory_mb: must be positive")

    cpu = _section(src, "cpu", top["cpu"], {"arch": str, "cores": int, "features": list}, ("arch", "cores"))
    if cpu["arch"] not in ARCHES:
        raise ProfileError(f"{src}: cpu.arch: {cpu['arch']!r} is not one of {', '.join(ARCHES)}")
    features = tuple(_check(src, "cpu.features[]", f, str) for f in cpu.get("features", []))

    rt = _section(
        src, "runtime", top["runtime"], {"name": str, "version": str, "fallback": str}, ("name", "version")
    )
    if rt["name"] not in RUNTIMES:
        raise ProfileError(f"{src}: runtime.name: {RUNTIMES.unknown(rt['name'])}")
    pinned = BUILTIN_TARGET_RUNTIME.get(top["target"])
    if pinned is not None and rt["name"] != pinned:
        raise ProfileError(
            f"{src}: runtime.name: target {top['target']} runs on {pinned!r}, not {rt['name']!r}"
        )
    try:
        SpecifierSet(rt["version"])
    except InvalidSpecifier as exc:
        raise ProfileError(
            f"{src}: runtime.version: {rt['version']!r} is not a version range ({exc})"
        ) from exc

    gpu = None
    if "gpu" in top:
        g = _section(
            src,
            "gpu",
            top["gpu"],
            {"name": str, "compute_capability": str, "dla_cores": int, "memory_shared": bool},
            ("name", "compute_capability"),
        )
        gpu = GpuSpec(**g)
    if top["target"] == "tensorrt-jetson" and gpu is None:
        raise ProfileError(f"{src}: gpu: missing (target tensorrt-jetson needs the GPU's compute capability)")
    budget = top.get("latency_budget_ms")
    serving = ServingSpec()
    if "serving" in top:
        sv = _section(
            src, "serving", top["serving"], {"threads": int, "spinning": bool, "max_batch": int}, ()
        )
        for key in ("threads", "max_batch"):
            if key in sv and sv[key] < 1:
                raise ProfileError(f"{src}: serving.{key}: must be at least 1")
        serving = ServingSpec(**sv)
    return DeviceProfile(
        name=top["name"],
        description=top.get("description", ""),
        target=top["target"],
        precision=top["precision"],
        cpu=CpuSpec(arch=cpu["arch"], cores=cpu["cores"], features=features),
        gpu=gpu,
        memory_mb=top["memory_mb"],
        runtime=RuntimeSpec(**rt),
        jetpack=top.get("jetpack"),
        latency_budget_ms=None if budget is None else float(budget),
        serving=serving,
        source=src,
    )


def load_profile_file(path: Path) -> DeviceProfile:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    profile = parse_profile(data, str(path))
    if profile.name != path.stem:
        raise ProfileError(f"{path}: name: {profile.name!r} must match the file name {path.stem!r}")
    return profile


def builtin_dir() -> Path:
    return Path(__file__).resolve().parent


def _dirs(extra_dirs: list[Path] | None) -> list[Path]:
    dirs = [builtin_dir()]
    env = os.environ.get(ENV_DIR)
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += list(extra_dirs or [])
    return dirs


def load_profiles(extra_dirs: list[Path] | None = None) -> dict[str, DeviceProfile]:
    """All profiles, built-in first, then ``$EDGEFLEET_PROFILES_DIR`` and ``extra_dirs`` (later
    directories override earlier ones by name). Raises :class:`ProfileError` on the first bad file."""
    out: dict[str, DeviceProfile] = {}
    for d in _dirs(extra_dirs):
        if not d.is_dir():
            raise ProfileError(f"{d}: profile directory does not exist")
        for path in sorted(d.glob("*.yaml")):
            p = load_profile_file(path)
            out[p.name] = p
    return out


def load_profile(name_or_path: str, extra_dirs: list[Path] | None = None) -> DeviceProfile:
    """A profile by name, or by path to a YAML file. Unknown names list the known ones."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        return load_profile_file(Path(name_or_path))
    profiles = load_profiles(extra_dirs)
    if name_or_path not in profiles:
        raise ProfileError(f"unknown profile {name_or_path!r} (known: {', '.join(sorted(profiles))})")
    return profiles[name_or_path]


def profile_to_dict(p: DeviceProfile) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(p):
        v = getattr(p, f.name)
        if hasattr(v, "__dataclass_fields__"):
            v = {g.name: (list(x) if isinstance(x := getattr(v, g.name), tuple) else x) for g in fields(v)}
        out[f.name] = v
    return out
