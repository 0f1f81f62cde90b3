"""Build the MobileNetV2 example: the standard architecture with seeded random weights, exported to ONNX.

Run ``python examples/mobilenet/build.py [--out DIR] [--seed S]``. Nothing is downloaded and nothing is
trained, so the model's predictions mean nothing: it stands in for a real ImageNet classifier when a
pipeline needs a model of the right shape, size (~14 MB FP32) and op mix. DIR (default: ``out/`` next to
this file, git-ignored) receives:

- ``mobilenetv2.onnx``  input ``input`` float32 [N,3,224,224], output ``logits`` [N,1000], opset 17
- ``calibration.npz``   ``input`` float32 [32,3,224,224]: seeded standard-normal samples, clipped to +-3

BatchNorm running statistics are set by a few train-mode passes over random inputs, so activations keep
a sensible range through all 52 conv layers; the model is then exported in eval mode, which folds every
BatchNorm into the conv before it.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MODEL_FILE = "mobilenetv2.onnx"
IMAGE_SIZE = 224
NUM_CLASSES = 1000
CALIBRATION_SAMPLES = 32
BN_STAT_BATCHES = 2
BN_STAT_BATCH_SIZE = 8

# (expansion t, output channels c, repeats n, first stride s): the MobileNetV2 paper's table 2.
INVERTED_RESIDUAL_CONFIG = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu6: bool = True
) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + BatchNorm, then ReLU6 unless ``relu6`` is False."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu6:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when t == 1), 3x3 depthwise, 1x1 linear projection; adds the input back
    when the stride is 1 and the channel count is unchanged."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = [] if expansion == 1 else [conv_bn(cin, hidden, 1)]
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, relu6=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2, width 1.0: [N,3,224,224] float32 in, [N,1000] logits out (no softmax)."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3, stride=2)]
        cin = 32
        for t, c, n, s in INVERTED_RESIDUAL_CONFIG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read --out (default: out/ next to this file) and --seed from ``argv``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE / "out", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and calibration samples")
    return p.parse_args(argv)


def random_inputs(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` float32 [3,224,224] samples, standard normal clipped to +-3 (roughly a normalised image)."""
    x = rng.standard_normal((count, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    return np.clip(x, -3.0, 3.0)


def build_model(seed: int) -> MobileNetV2:
    """Seeded random MobileNetV2 in eval mode, its BatchNorm statistics measured on random inputs."""
    torch.manual_seed(seed)
    model = MobileNetV2()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the passes below
    rng = np.random.default_rng(seed + 1)
    model.train()
    with torch.no_grad():
        for _ in range(BN_STAT_BATCHES):
            model(torch.from_numpy(random_inputs(rng, BN_STAT_BATCH_SIZE)))
    return model.eval()


def export_onnx(model: nn.Module, path: Path) -> None:
    """Write ``model`` to ``path`` as opset-17 ONNX with a dynamic batch dim, and check the file."""
    model.eval()
    with warnings.catch_warnings():
        # dynamo=False is deliberate (it folds BatchNorm into Conv); torch warns this exporter is legacy.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    onnx.checker.check_model(str(path), full_check=True)


def check_runs(path: Path, x: np.ndarray) -> tuple[int, ...]:
    """Run the ONNX file at ``path`` on ``x`` with ONNX Runtime (CPU) and return the output shape."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x})
    if not np.all(np.isfinite(logits)):
        raise RuntimeError(f"{path} gave non-finite logits")
    return tuple(logits.shape)


def main(argv: list[str] | None = None) -> Path:
    """Build, export and check the model, write the calibration samples; return the model path."""
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(args.seed)
    path = out / MODEL_FILE
    export_onnx(model, path)
    calibration = random_inputs(np.random.default_rng(args.seed), CALIBRATION_SAMPLES)
    np.savez(out / "calibration.npz", **{INPUT_NAME: calibration})
    shape = check_runs(path, calibration[:2])
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {params} parameters); ORT output {shape}")
    return path


if __name__ == "__main__":
    main()
