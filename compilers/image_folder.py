"""Calibration samples from a folder of images plus a ``preprocess.yaml`` that states how a
picture becomes the model's input (see ``examples/digits/images/preprocess.yaml``).

The config is data, checked like a device profile: an unknown key or a wrong type is an error
naming the file and the key, so a typo never falls back to a default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from compilers.errors import CalibrationError, ToolchainError

CONFIG_NAMES = ("preprocess.yaml", "preprocess.yml")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_CHANNELS = {"grey": 1, "gray": 1, "rgb": 3, "bgr": 3}
_KEYS = {"layout", "color", "size", "scale", "mean", "std"}


@dataclass(frozen=True)
class Preprocess:
    """``x = (pixel * scale - mean[c]) / std[c]`` in float32, images resized to ``size`` (H, W)."""

    layout: str
    color: str
    size: tuple[int, int]
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    @property
    def channels(self) -> int:
        return _CHANNELS[self.color]


def _numbers(src: Path, key: str, value: Any, count: int) -> tuple[float, ...]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        raise CalibrationError(f"{src}: {key}: expected a number or a list of numbers, got {value!r}")
    if len(value) not in (1, count):
        raise CalibrationError(
            f"{src}: {key}: expected 1 or {count} values (one per channel), got {len(value)}"
        )
    return tuple(float(v) for v in value) * (count if len(value) == 1 else 1)


def parse_preprocess(data: Any, src: Path) -> Preprocess:
    """Check a parsed ``preprocess.yaml``. Raises :class:`CalibrationError` naming file and key."""
    if not isinstance(data, dict):
        raise CalibrationError(f"{src}: expected a mapping of {', '.join(sorted(_KEYS))}")
    for key in data:
        if key not in _KEYS:
            raise CalibrationError(f"{src}: {key}: unknown key (known: {', '.join(sorted(_KEYS))})")
    for key in ("layout", "color", "size"):
        if key not in data:
            raise CalibrationError(f"{src}: {key}: missing")
    layout, color, size = data["layout"], data["color"], data["size"]
    if layout not in ("NCHW", "NHWC"):
        raise CalibrationError(f"{src}: layout: {layout!r} is not NCHW or NHWC")
    if color not in _CHANNELS:
        raise CalibrationError(f"{src}: color: {color!r} is not one of {', '.join(_CHANNELS)}")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise CalibrationError(f"{src}: size: expected [height, width], got {size!r}")
    scale = data.get("scale", 1.0 / 255.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise CalibrationError(f"{src}: scale: expected a number, got {scale!r}")
    channels = _CHANNELS[color]
    std = _numbers(src, "std", data.get("std", 1.0), channels)
    if any(s == 0 for s in std):
        raise CalibrationError(f"{src}: std: must not be zero")
    return Preprocess(
        layout=layout,
        color=color,
        size=(size[0], size[1]),
        scale=float(scale),
        mean=_numbers(src, "mean", data.get("mean", 0.0), channels),
        std=std,
    )


def read_preprocess(folder: Path) -> Preprocess:
    """The folder's ``preprocess.yaml``. Raises :class:`CalibrationError` if absent or invalid."""
    for name in CONFIG_NAMES:
        path = folder / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise CalibrationError(f"{path}: cannot read: {' '.join(str(exc).split())}") from exc
            return parse_preprocess(data, path)
    raise CalibrationError(
        f"{folder}: a folder of images needs a {CONFIG_NAMES[0]} saying how to preprocess them"
    )


def _natural_key(path: Path) -> list[Any]:
    # "2_x.png" before "10_x.png", so the sample order is the one a person expects.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def image_paths(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)


def _to_array(path: Path, pre: Preprocess) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            img = opened.convert("L" if pre.channels == 1 else "RGB")
        height, width = pre.size
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(img, dtype=np.float32)
    except (OSError, UnidentifiedImageError) as exc:
        raise CalibrationError(f"{path}: not a readable image: {' '.join(str(exc).split())}") from exc
    pixels = pixels.reshape(pre.size[0], pre.size[1], pre.channels)  # HWC
    if pre.color == "bgr":
        pixels = pixels[..., ::-1]
    mean = np.asarray(pre.mean, dtype=np.float32)
    std = np.asarray(pre.std, dtype=np.float32)
    x = (pixels * np.float32(pre.scale) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1) if pre.layout == "NCHW" else x, dtype=np.float32)


def load_image_folder(folder: Path) -> np.ndarray:
    """Every image in ``folder`` (natural name order), preprocessed, stacked into one float32
    array ``[N, C, H, W]`` or ``[N, H, W, C]`` as the config's layout says.

    Raises :class:`CalibrationError` (no config, bad config, no images, unreadable image) or
    :class:`ToolchainError` when Pillow is missing.
    """
    try:
        import PIL  # noqa: F401 - only to fail early with an install hint
    except ImportError as exc:
        raise ToolchainError(
            "Pillow is not installed; it reads calibration images (pip install edgefleet[compile])"
        ) from exc
    pre = read_preprocess(folder)
    paths = image_paths(folder)
    if not paths:
        raise CalibrationError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    return np.stack([_to_array(p, pre) for p in paths])
