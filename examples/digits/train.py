"""Train the digits example: a small CNN on scikit-learn's bundled 8x8 digits, exported to ONNX.

Run ``python examples/digits/train.py [--out DIR] [--epochs N] [--seed S]``. Nothing is downloaded.
The script writes into DIR (default: this folder):

- ``digits_cnn.onnx``   input ``input`` float32 [N,1,8,8] (NCHW, pixels/16 in [0,1]), output ``logits`` [N,10]
- ``heldout.npz``       ``x`` float32 [360,1,8,8] and ``y`` int64 [360]: the stratified 20% never trained on
- ``calibration.npz``   ``input`` float32 [256,1,8,8]: training samples for INT8 calibration
- ``metrics.json``      FP32 held-out accuracy, measured with ONNX Runtime on the exported file
- ``images/``           20 held-out samples as 8x8 greyscale PNGs plus ``preprocess.yaml``

The held-out split uses a fixed seed (``SPLIT_SEED``) whatever ``--seed`` is, so the held-out set is
the same data for every model trained here; ``--seed`` drives weight init, shuffling and calibration.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
SPLIT_SEED = 0
TEST_FRACTION = 0.2
PIXEL_MAX = 16.0  # load_digits pixels are integers 0..16
CALIBRATION_SAMPLES = 256
IMAGE_SAMPLES = 20
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MODEL_FILE = "digits_cnn.onnx"

PREPROCESS_YAML = """\
# How to turn the PNGs in this folder into the input of ../digits_cnn.onnx.
#
#   1. Read the PNG as one greyscale channel of 8-bit integers 0..255 (it already is 8x8: no resizing).
#   2. x = (pixel * scale - mean[c]) / std[c], computed in float32, per channel c (one channel here).
#   3. Lay it out as NCHW: float32 [1, 1, 8, 8], one image per batch row.
#
# The PNG pixel is round(v * 255 / 16) for an original digits value v in 0..16, so pixel * scale is
# v / 16 to within 1/510: the same [0, 1] scaling the model was trained on.
# A file is named <index>_<label>.png: its row in ../heldout.npz and its true class.
layout: NCHW
color: grey
size: [8, 8]
scale: {scale!r}
mean: [0.0]
std: [1.0]
"""


class DigitsCNN(nn.Module):
    """Conv(1->32) ReLU Conv(32->64) ReLU MaxPool2 Flatten Linear(1024->256) ReLU Linear(256->10).

    Takes [N,1,8,8] float32 in [0,1] and returns [N,10] logits. Only Conv, Relu, MaxPool, Flatten and
    Gemm reach the exported graph: no BatchNorm, Dropout or Softmax.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read --out (default: this folder), --epochs and --seed from ``argv``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE, help="output folder (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling, calibration")
    return p.parse_args(argv)


def seed_everything(seed: int) -> None:
    """Make torch and numpy repeat the same run: fixed seeds, deterministic kernels, one thread."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # the model is tiny; one thread also keeps float sums in a fixed order


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, y_train, x_test, y_test): x float32 [N,1,8,8] in [0,1], y int64.

    The split is stratified 80/20 with ``SPLIT_SEED``: 1437 training and 360 held-out samples.
    """
    data = load_digits()
    x = (data.images / PIXEL_MAX).astype(np.float32)[:, None, :, :]
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    return x_tr, y_tr, x_te, y_te


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> None:
    """Fit ``model`` in place with Adam and cross-entropy, shuffling with a generator seeded by ``seed``."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(BATCH_SIZE):
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()


def export_onnx(model: nn.Module, path: Path) -> None:
    """Write ``model`` to ``path`` as opset-17 ONNX with a dynamic batch dim, and check the file."""
    model.eval()
    with warnings.catch_warnings():
        # dynamo=False is deliberate (plain Conv/Gemm graph); torch warns that this exporter is legacy.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, 8, 8),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the ONNX file at ``path`` on (x, y), run with ONNX Runtime on the CPU."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x})
    return float(np.mean(np.argmax(logits, axis=1) == y))


def write_images(out: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Save the first ``IMAGE_SAMPLES`` of (x, y) as ``<index>_<label>.png`` plus ``preprocess.yaml``.

    A pixel is stored as round(v * 255 / 16) for the original value v = x * 16, so that
    pixel / 255 equals x to within 1/510.
    """
    out.mkdir(parents=True, exist_ok=True)
    for i in range(min(IMAGE_SAMPLES, len(x))):
        original = x[i, 0] * PIXEL_MAX  # exact: x was v / 16
        pixels = np.rint(original * 255.0 / PIXEL_MAX).astype(np.uint8)
        Image.fromarray(pixels).save(out / f"{i}_{int(y[i])}.png")  # 2-D uint8 -> mode "L"
    (out / "preprocess.yaml").write_text(PREPROCESS_YAML.format(scale=1.0 / 255.0))


def write_data(out: Path, x_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray, seed: int) -> None:
    """Write heldout.npz (x, y) and calibration.npz (``input``: a seeded draw of training samples)."""
    np.savez_compressed(out / "heldout.npz", x=x_te, y=y_te)
    pick = np.random.default_rng(seed).choice(len(x_tr), size=CALIBRATION_SAMPLES, replace=False)
    np.savez_compressed(out / "calibration.npz", **{INPUT_NAME: x_tr[np.sort(pick)]})


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Train, export and evaluate; write every output file and return the metrics written."""
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)
    x_tr, y_tr, x_te, y_te = load_split()

    model = DigitsCNN()
    started = time.perf_counter()
    train(model, x_tr, y_tr, args.epochs, args.seed)
    seconds = time.perf_counter() - started

    export_onnx(model, out / MODEL_FILE)
    write_data(out, x_tr, x_te, y_te, args.seed)
    write_images(out / "images", x_te, y_te)
    metrics: dict[str, object] = {
        "model": MODEL_FILE,
        "fp32_accuracy": onnx_accuracy(out / MODEL_FILE, x_te, y_te),
        "heldout_samples": len(y_te),
        "evaluated_with": f"onnxruntime {ort.__version__}",
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": args.epochs,
        "seed": args.seed,
        "split_seed": SPLIT_SEED,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    print(f"trained in {seconds:.1f} s; wrote {out}")
    return metrics


if __name__ == "__main__":
    main()
