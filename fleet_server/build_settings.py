"""What a device profile changes in a build, as a key (pure).

Two profiles with the same :class:`BuildKey` get the same bundle, so a model version is compiled
once per key however many groups and deployments need it. ``onnx-x86`` and ``tflite-arm`` builds
depend on the precision only; a ``tensorrt-jetson`` build also on the GPU's compute capability
and on whether the board has DLA cores (the build config names them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from device_profiles import DeviceProfile


@dataclass(frozen=True)
class BuildKey:
    target: str
    precision: str
    settings_key: str
    settings: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def build_key(profile: DeviceProfile) -> BuildKey:
    """The build a device of ``profile`` needs. ``settings_key`` is short, stable and readable
    (``int8``, ``int8-sm87-dla``)."""
    settings: dict[str, Any] = {"precision": profile.precision}
    key = profile.precision
    if profile.target == "tensorrt-jetson" and profile.gpu is not None:
        cc = profile.gpu.compute_capability
        dla = profile.gpu.dla_cores > 0
        settings |= {"compute_capability": cc, "dla": dla}
        key += f"-sm{cc.replace('.', '')}" + ("-dla" if dla else "")
    return BuildKey(profile.target, profile.precision, key, settings)
