"""The self-test a freshly loaded model must pass before it serves.

The bundle's ``selftest`` file is an ``.npz`` with ``input:<name>`` and ``output:<name>`` arrays in
the source layout, one row per sample. The model runs on the inputs; every expected output must be
within ``atol + rtol * |expected|`` and, with ``check_top1``, have the same arg-max per sample.
A bundle without samples gets a smoke test instead: one run on zeros must produce every output.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from agent.contracts.manifest import Manifest, SelfTest
from agent.contracts.state import ErrorCode
from agent.errors import DeviceError
from agent.runtimes.base import RuntimeAdapter
from agent.runtimes.samples import per_run, samples_first


def run_selftest(adapter: RuntimeAdapter, bundle_dir: Path, manifest: Manifest) -> str:
    """Run the bundle's self-test on ``adapter``; return a one-line summary.

    Raises :class:`DeviceError` (``SELF_TEST_FAILED``) naming the first output that differs, or
    the inference error.
    """
    st = manifest.selftest
    if st is None:
        return _smoke(adapter, manifest)
    try:
        with np.load(bundle_dir / st.file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DeviceError(
            f"self-test samples {st.file} are unreadable: {exc}", ErrorCode.SELF_TEST_FAILED
        ) from exc
    inputs = {k.removeprefix("input:"): v for k, v in arrays.items() if k.startswith("input:")}
    expected = {k.removeprefix("output:"): v for k, v in arrays.items() if k.startswith("output:")}
    missing = [t.name for t in manifest.inputs if t.name not in inputs]
    if missing or not expected:
        what = f"input {missing[0]!r}" if missing else "expected outputs"
        raise DeviceError(f"self-test samples {st.file} lack {what}", ErrorCode.SELF_TEST_FAILED)
    try:
        got = _run_batched(adapter, manifest, inputs)
    except Exception as exc:  # the runtime's own error, whatever its type: the model can't serve
        raise DeviceError(f"self-test inference failed: {exc}", ErrorCode.SELF_TEST_FAILED) from exc
    problems = compare_outputs(expected, got, st)
    if problems:
        raise DeviceError("self-test failed: " + "; ".join(problems), ErrorCode.SELF_TEST_FAILED)
    n = next(iter(inputs.values())).shape[0] if inputs else 0
    return f"self-test passed on {n} samples ({', '.join(sorted(expected))})"


def compare_outputs(expected: dict[str, np.ndarray], got: dict[str, np.ndarray], st: SelfTest) -> list[str]:
    """One line per output that differs from the expected one (pure)."""
    problems = []
    for name, want in expected.items():
        if name not in got:
            problems.append(f"output {name!r} missing")
            continue
        have = np.asarray(got[name])
        if have.shape != want.shape:
            problems.append(f"output {name!r}: shape {list(have.shape)} != expected {list(want.shape)}")
            continue
        w, h = want.astype(np.float64), have.astype(np.float64)
        err = np.abs(h - w)
        bound = st.atol + st.rtol * np.abs(w)
        if not np.all(err <= bound):
            problems.append(
                f"output {name!r}: max abs error {float(err.max()):.4g} exceeds atol {st.atol} rtol {st.rtol}"
            )
            continue
        if st.check_top1 and want.ndim >= 2:
            agree = np.argmax(h, axis=-1) == np.argmax(w, axis=-1)
            if not np.all(agree):
                problems.append(
                    f"output {name!r}: arg-max differs on {int((~agree).sum())} of {agree.size} samples"
                )
    return problems


def _run_batched(
    adapter: RuntimeAdapter, manifest: Manifest, inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run all samples at once when the batch dimension allows it, else one at a time."""
    n = next(iter(inputs.values())).shape[0]
    # An input whose samples hold one whole tensor per run (an axis more than the input: a
    # recurrent state with its batch on a later axis, a scalar) runs one run at a time.
    whole = {t.name for t in manifest.inputs if t.name in inputs and per_run(t, inputs[t.name])}
    fixed = [t.shape[0] for t in manifest.inputs if t.shape and t.shape[0] >= 0]
    if not whole and (not fixed or all(b == n for b in fixed)):
        runs = [adapter.infer(inputs)]
    else:
        runs = [
            adapter.infer({k: np.asarray(v[i]) if k in whole else v[i : i + 1] for k, v in inputs.items()})
            for i in range(n)
        ]
    # The expected outputs have their samples first (a recurrent state's too), as the compile
    # wrote them.
    rows = [n] if len(runs) == 1 else [1] * n
    return {name: samples_first([np.asarray(r[name]) for r in runs], rows) for name in runs[0]}


def _zeros(manifest: Manifest) -> dict[str, np.ndarray]:
    return {
        t.name: np.zeros([d if d >= 0 else 1 for d in t.shape], dtype=np.dtype(t.dtype))
        for t in manifest.inputs
    }


def probe_inputs(bundle_dir: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    """One request's inputs for timing the model: the first self-test sample (real sizes), or
    zeros (dynamic dimensions 1) when the bundle has none or they are unreadable."""
    st = manifest.selftest
    if st is not None:
        try:
            with np.load(bundle_dir / st.file, allow_pickle=False) as npz:
                feed = {k.removeprefix("input:"): npz[k][:1] for k in npz.files if k.startswith("input:")}
        except (OSError, ValueError, zipfile.BadZipFile):
            feed = {}
        if feed and all(t.name in feed for t in manifest.inputs):
            return feed
    return _zeros(manifest)


def _smoke(adapter: RuntimeAdapter, manifest: Manifest) -> str:
    feed = _zeros(manifest)
    try:
        out = adapter.infer(feed)
    except Exception as exc:  # the runtime's own error, whatever its type
        raise DeviceError(f"smoke test inference failed: {exc}", ErrorCode.SELF_TEST_FAILED) from exc
    missing = [t.name for t in manifest.outputs if t.name not in out]
    if missing:
        raise DeviceError(f"smoke test: output {missing[0]!r} missing", ErrorCode.SELF_TEST_FAILED)
    return "no self-test samples in the bundle; smoke test on zeros passed"
