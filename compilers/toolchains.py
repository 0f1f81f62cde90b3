"""Managed converter environments ("toolchains"): a virtual environment per converter, kept apart
from EdgeFleet's own packages.

Some converters pin an older stack than the project's (onnx2tf 1.29 wants TensorFlow 2.19,
numpy 1.26, onnx 1.19), so each one gets a venv of its own that the compiler drives as a
subprocess. Layout under the home (``$EDGEFLEET_HOME``, else ``~/.cache/edgefleet``)::

    toolchains/
      tflite -> tflite-20250101T120000-1234   the live toolchain (a symlink to a venv)
      tflite-20250101T120000-1234/           the venv, with toolchain.json beside pyvenv.cfg
      .tflite.lock                           held while installing

A venv can't be moved once made (its scripts' ``#!`` lines and pyvenv.cfg name its path, and
onnx2tf starts ``onnxsim`` through such a script), so :func:`install` builds the venv in its final,
uniquely named directory and then switches the ``<name>`` link to it with one atomic
``os.replace``. A failed or interrupted install is therefore never the live toolchain; it is
removed by the next install. The requirements are the package data file
``compilers/toolchains/<name>.txt``.

``EDGEFLEET_<NAME>_PYTHON`` (e.g. ``EDGEFLEET_TFLITE_PYTHON``), when set, names an existing
interpreter to use instead of the managed venv.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from agent.durable import atomic_write
from compilers.errors import ToolchainError

Progress = Callable[[str], None]

HOME_ENV = "EDGEFLEET_HOME"
RECORD = "toolchain.json"
_REQUIREMENTS_DIR = Path(__file__).resolve().parent / "toolchains"
_PROBE_TIMEOUT_S = 120


@dataclass(frozen=True)
class ToolchainSpec:
    """A known toolchain: its requirements file, the module that proves it works, and the
    packages whose versions :func:`status` reports."""

    name: str
    requirements: Path
    check_import: str
    key_packages: tuple[str, ...]
    about: str = ""
    pip_args: tuple[str, ...] = ()

    @property
    def python_env(self) -> str:
        """The variable that points at an interpreter to use instead of the managed venv."""
        return f"EDGEFLEET_{self.name.upper()}_PYTHON"


KNOWN: dict[str, ToolchainSpec] = {
    "tflite": ToolchainSpec(
        name="tflite",
        requirements=_REQUIREMENTS_DIR / "tflite.txt",
        check_import="onnx2tf",
        key_packages=("onnx2tf", "tensorflow", "numpy", "onnx", "onnxruntime", "onnxsim", "ai-edge-litert"),
        about="onnx2tf with TensorFlow, for the tflite-arm target (about 2.6 GB)",
    ),
}


@dataclass(frozen=True)
class ToolchainStatus:
    """Where a toolchain stands. ``installed`` means :func:`python_for` will return an
    interpreter; ``problem`` is one line when something is off (missing, broken, or installed from
    other requirements than the ones shipped now), else ``None``."""

    name: str
    installed: bool
    path: Path
    versions: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    external: bool = False  # the interpreter came from EDGEFLEET_<NAME>_PYTHON


def home() -> Path:
    """EdgeFleet's cache home: ``$EDGEFLEET_HOME``, else ``~/.cache/edgefleet``."""
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgefleet"


def known_toolchains() -> list[str]:
    return sorted(KNOWN)


def spec(name: str) -> ToolchainSpec:
    """The toolchain called ``name``. Raises :class:`ToolchainError` listing the known ones."""
    try:
        return KNOWN[name]
    except KeyError:
        raise ToolchainError(f"unknown toolchain {name!r} (known: {', '.join(known_toolchains())})") from None


def toolchain_dir(name: str) -> Path:
    """``<home>/toolchains/<name>``: the live toolchain's path (it need not exist)."""
    return home() / "toolchains" / spec(name).name


def _install_hint(name: str, force: bool = False) -> str:
    return f"run `edgectl toolchains install {name}{' --force' if force else ''}`"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def read_requirements(ts: ToolchainSpec) -> list[str]:
    """The requirement lines of ``ts`` (comments and blanks dropped). Raises :class:`ToolchainError`
    when the file is missing or a line is not a requirement."""
    try:
        text = ts.requirements.read_text()
    except OSError as exc:
        raise ToolchainError(f"toolchain {ts.name}: cannot read {ts.requirements}: {exc.strerror}") from exc
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    reqs = [ln for ln in lines if ln]
    for ln in reqs:
        try:
            Requirement(ln)
        except InvalidRequirement as exc:
            raise ToolchainError(f"{ts.requirements}: {ln!r} is not a requirement ({exc})") from exc
    return reqs


def _pin_problems(reqs: list[str], installed: dict[str, str]) -> list[str]:
    """Requirements that the recorded package versions don't satisfy (pure)."""
    have = {canonicalize_name(k): v for k, v in installed.items()}
    out = []
    for line in reqs:
        req = Requirement(line)
        got = have.get(canonicalize_name(req.name))
        if got is None:
            out.append(f"{req.name} is missing")
        elif req.specifier and not req.specifier.contains(got, prereleases=True):
            out.append(f"{req.name} {got} does not satisfy {line}")
    return out


_PROBE = """
import importlib.util, json, sys
from importlib.metadata import distributions
packages = {d.metadata["Name"]: d.version for d in distributions() if d.metadata["Name"]}
print(json.dumps({"packages": packages, "found": importlib.util.find_spec(sys.argv[1]) is not None,
                  "python": sys.version.split()[0]}))
"""


def _probe(python: str, module: str) -> dict[str, object]:
    """Installed packages of ``python`` and whether ``module`` is importable there (found, not
    imported: importing TensorFlow takes seconds). ``{"error": ...}`` when it does not run."""
    try:
        proc = subprocess.run(
            [python, "-I", "-c", _PROBE, module], capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{python} does not run: {exc}"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"{python} failed: {last}"}
    try:
        data: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"{python} gave no package list"}
    return data


def _key_versions(ts: ToolchainSpec, packages: dict[str, str]) -> dict[str, str]:
    have = {canonicalize_name(k): v for k, v in packages.items()}
    return {p: have[canonicalize_name(p)] for p in ts.key_packages if canonicalize_name(p) in have}


def _external_status(ts: ToolchainSpec, value: str) -> ToolchainStatus:
    python = Path(value).expanduser()
    if not (python.is_file() and os.access(python, os.X_OK)):
        problem = f"{ts.python_env}={value} is not an executable file"
        return ToolchainStatus(ts.name, False, python, problem=problem, external=True)
    probe = _probe(str(python), ts.check_import)
    if "error" in probe:
        return ToolchainStatus(ts.name, False, python, problem=str(probe["error"]), external=True)
    packages = probe.get("packages")
    versions = _key_versions(ts, packages if isinstance(packages, dict) else {})
    if not probe.get("found"):
        problem = f"{ts.python_env}={value}: {ts.check_import} is not installed there"
        return ToolchainStatus(ts.name, False, python, versions, problem, external=True)
    return ToolchainStatus(ts.name, True, python, versions, external=True)


def status(name: str) -> ToolchainStatus:
    """Where toolchain ``name`` stands; never raises for a missing or broken one (that is what
    ``problem`` is for), only :class:`ToolchainError` for an unknown name.

    With ``EDGEFLEET_<NAME>_PYTHON`` set, reports on that interpreter (``path`` is the
    interpreter; versions come from running it); otherwise on the managed venv (``path`` is its
    directory; versions are those recorded at install).
    """
    ts = spec(name)
    override = os.environ.get(ts.python_env)
    return _external_status(ts, override) if override else _managed_status(ts)


def _managed_status(ts: ToolchainSpec) -> ToolchainStatus:
    root = home() / "toolchains" / ts.name
    hint, again = _install_hint(ts.name), _install_hint(ts.name, force=True)
    if not root.exists():
        return ToolchainStatus(ts.name, False, root, problem=f"not installed: {hint}")
    python = _venv_python(root)
    if not python.exists():
        return ToolchainStatus(ts.name, False, root, problem=f"broken (no {python}): {again}")
    try:
        record = json.loads((root / RECORD).read_text())
    except (OSError, ValueError):
        return ToolchainStatus(ts.name, False, root, problem=f"no readable {RECORD}: {again}")
    versions = {str(k): str(v) for k, v in record.get("versions", {}).items()}
    packages = {str(k): str(v) for k, v in record.get("packages", {}).items()}
    try:
        stale = _pin_problems(read_requirements(ts), packages)
    except ToolchainError as exc:
        return ToolchainStatus(ts.name, True, root, versions, problem=str(exc))
    problem = None
    if stale:
        problem = f"installed from other requirements ({'; '.join(stale)}): {again}"
    return ToolchainStatus(ts.name, True, root, versions, problem)


def python_for(name: str) -> Path:
    """The interpreter of toolchain ``name``: ``$EDGEFLEET_<NAME>_PYTHON`` when set, else the
    managed venv's ``bin/python``.

    Raises :class:`ToolchainError` when it is not installed (saying how to install it), when the
    override does not exist, or for an unknown name.
    """
    ts = spec(name)
    override = os.environ.get(ts.python_env)
    if override:
        python = Path(override).expanduser()
        if not python.is_file():
            raise ToolchainError(f"{ts.python_env}={override} does not exist")
        return python
    root = toolchain_dir(name)
    python = _venv_python(root)
    if not (python.exists() and (root / RECORD).is_file()):
        raise ToolchainError(f"the {name} toolchain is not installed: {_install_hint(name)}")
    return python


@contextlib.contextmanager
def _locked(path: Path, progress: Progress) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("another install of this toolchain is running; waiting for it to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _clean_env() -> dict[str, str]:
    """This process's environment without what would leak EdgeFleet's packages into the venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run_streaming(cmd: list[str], progress: Progress, what: str) -> None:
    """Run ``cmd``, passing each non-empty output line to ``progress``. Raises
    :class:`ToolchainError` with the last error-looking line when it fails."""
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=_clean_env()
        )
    except OSError as exc:
        raise ToolchainError(f"{what} failed: {exc}") from exc
    tail: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        if line.strip():
            progress(f"  {line.strip()}")
            tail = [*tail[-40:], line.strip()]
    if proc.wait() != 0:
        errors = [ln for ln in tail if ln.startswith("ERROR") or "Error" in ln]
        last = (errors or tail or ["no output"])[-1]
        raise ToolchainError(f"{what} failed (exit status {proc.returncode}): {last}")


def _run_quiet(cmd: list[str], what: str) -> None:
    """Run ``cmd`` capturing its output; raises :class:`ToolchainError` with its last line."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, env=_clean_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"{what} failed: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        raise ToolchainError(f"{what} failed: {(lines or ['no output'])[-1]}")


def _cleanup(base: Path, name: str, keep: Path | None) -> None:
    """Remove venvs of ``name`` that the live link does not point to (old or half-made ones)."""
    for p in base.glob(f"{name}-*"):
        if p.is_dir() and not p.is_symlink() and (keep is None or p.resolve() != keep.resolve()):
            shutil.rmtree(p, ignore_errors=True)


def _switch_link(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` atomically (a relative symlink, swapped in by os.replace)."""
    tmp = link.with_name(f".{link.name}.link-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target.name)
    if link.is_dir() and not link.is_symlink():
        # A real directory in the way (made by hand): move it aside so the swap stays atomic.
        aside = link.with_name(f"{link.name}-replaced-{time.strftime('%Y%m%dT%H%M%S')}")
        link.rename(aside)
    os.replace(tmp, link)


def install(name: str, progress: Progress | None = None, force: bool = False) -> ToolchainStatus:
    """Install toolchain ``name``: a venv made with this interpreter's ``-m venv``, its pinned
    requirements installed with the venv's pip (each output line goes to ``progress``), a check
    that the converter imports, and ``toolchain.json`` recording the versions; then the live
    ``toolchains/<name>`` link switches to it in one step, so a failure leaves any previous
    toolchain as it was and no half-made one behind.

    Returns the new status. Does nothing but report when the managed toolchain is already
    installed without problems, unless ``force``. Raises :class:`ToolchainError` (unknown name, venv
    or pip failure, import check failure). Needs the package index (or a mirror pip is set up for).
    """
    say = progress or (lambda _msg: None)
    ts = spec(name)
    reqs = read_requirements(ts)
    base = home() / "toolchains"
    if os.environ.get(ts.python_env):
        say(f"note: {ts.python_env} is set, so compiles use that interpreter rather than this toolchain")
    with _locked(base / f".{ts.name}.lock", say):
        current = _managed_status(ts)
        if current.installed and current.problem is None and not force:
            say(f"the {name} toolchain is already installed at {current.path} ({_versions_line(current)})")
            say("use --force to install it again")
            return current
        started = time.monotonic()
        venv = base / f"{ts.name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        say(f"installing the {name} toolchain: {ts.about or name}")
        try:
            _build(ts, reqs, venv, say)
            _switch_link(base / ts.name, venv)
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        _cleanup(base, ts.name, keep=venv)
        done = _managed_status(ts)
        took = time.monotonic() - started
        say(f"the {name} toolchain is ready at {done.path} ({_versions_line(done)}), in {took:.0f} s")
        return done


def _build(ts: ToolchainSpec, reqs: list[str], venv: Path, say: Progress) -> None:
    """Make the venv at ``venv``, install ``reqs``, check the import, write the record."""
    say(f"creating a virtual environment in {venv}")
    _run_streaming([sys.executable, "-m", "venv", str(venv)], say, "creating the virtual environment")
    python = _venv_python(venv)
    say(f"installing {', '.join(reqs) or 'nothing'} and what they pin (a few minutes on a slow link)")
    pip = [str(python), "-m", "pip", "install", "--no-input", "--progress-bar", "off", *ts.pip_args]
    _run_streaming([*pip, "-r", str(ts.requirements)], say, "pip install")
    say(f"checking that {ts.check_import} imports")
    _run_quiet([str(python), "-I", "-c", f"import {ts.check_import}"], f"import {ts.check_import}")
    probe = _probe(str(python), ts.check_import)
    if "error" in probe:
        raise ToolchainError(f"the new {ts.name} toolchain does not run: {probe['error']}")
    packages = probe.get("packages")
    packages = packages if isinstance(packages, dict) else {}
    record = {
        "name": ts.name,
        "requirements": reqs,
        "versions": _key_versions(ts, packages),
        "packages": dict(sorted(packages.items(), key=lambda kv: str(kv[0]).lower())),
        "python": probe.get("python"),
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "installed_by": sys.executable,
    }
    atomic_write(venv / RECORD, (json.dumps(record, indent=2) + "\n").encode())


def _versions_line(st: ToolchainStatus) -> str:
    return ", ".join(f"{k} {v}" for k, v in st.versions.items()) or "versions unknown"
