"""Calibration and validation data for each corpus model, made here, deterministically (seeded).

Each model gets inputs the way its own package prepares them:

* OCR (PP-OCR): text lines rendered with a TrueType font onto paper-like backgrounds, resized and
  normalised as RapidOCR's config says ((x/255 - 0.5) / 0.5, RGB, NCHW); the orientation
  classifier's lines are turned 180 degrees for half the samples, which gives labels;
* the YOLOv8 detector: scenes of shapes, gradients and people-like figures, letterboxed to
  320x320, x/255, RGB, NCHW;
* Magika: real files of known types written by the standard library and Pillow (PNG, JPEG, GIF,
  BMP, TIFF, ZIP, GZIP, BZIP2, TAR, WAV, PDF, source code, JSON, CSV, HTML, ...), cut into the
  model's features (first and last 1024 bytes after stripping whitespace, padding 256), labelled
  by the model's own label list;
* Silero VAD: speech-like 16 kHz audio (voiced harmonics with moving formants at syllable rate,
  fricative noise, pauses, background noise), windowed as 64 + 512 samples, with the LSTM state
  the FP32 model itself carries from window to window;
* MiniLM: English sentences tokenised with BERT's uncased WordPiece vocabulary (INT64 ids and
  attention mask, padded to 32);
* the iris logistic regression: sepal length and width drawn per class from the iris data set's
  class means and spreads, labelled by class.

``write_data(name, folder)`` writes ``calibration.npz`` and ``validation.npz`` keyed by input name
(labels under ``y`` where the data has them), the form :mod:`compilers.calibration` reads.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import math
import re
import tarfile
import time
import unicodedata
import wave
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tests.corpus.fetch import asset_path, model_path

Arrays = dict[str, np.ndarray]

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
CALIBRATION_SEED, VALIDATION_SEED = 1, 2


@dataclass(frozen=True)
class DataSpec:
    """How many samples a model's calibration and validation sets have, and how they are made."""

    make: Callable[[int, int], Arrays]  # (count, seed) -> arrays keyed by input name (+ "y")
    calibration: int
    validation: int


# -- text and fonts --------------------------------------------------------------------------------

WORDS = [
    "invoice",
    "total",
    "amount",
    "due",
    "date",
    "order",
    "number",
    "customer",
    "account",
    "balance",
    "payment",
    "received",
    "thank",
    "you",
    "for",
    "your",
    "business",
    "shipping",
    "address",
    "phone",
    "email",
    "station",
    "platform",
    "departure",
    "arrival",
    "gate",
    "ticket",
    "price",
    "receipt",
    "cashier",
    "store",
    "open",
    "daily",
    "from",
    "until",
    "closed",
    "sunday",
    "monday",
    "street",
    "avenue",
    "road",
    "building",
    "floor",
    "room",
    "parking",
    "exit",
    "entrance",
    "warning",
    "caution",
    "high",
    "voltage",
    "keep",
    "door",
    "clear",
    "menu",
    "coffee",
    "tea",
    "water",
    "bread",
    "cheese",
    "soup",
    "salad",
    "chicken",
    "rice",
    "noodles",
    "dessert",
    "special",
    "offer",
]
SENTENCES = (
    "The train to the airport leaves from platform four every twenty minutes.",
    "Please keep your ticket until you reach the exit gate.",
    "A small dog slept in the sun beside the open window.",
    "The quarterly report shows revenue grew by eight percent.",
    "Turn left at the second traffic light and the museum is on your right.",
    "Heavy rain is expected across the north of the country tonight.",
    "She plays the violin in the city orchestra on weekends.",
    "The battery lasts about ten hours of continuous video playback.",
    "Our support team answers questions by email within one working day.",
    "Mix the flour and sugar, then add two eggs and a cup of milk.",
    "The committee postponed its decision until the next meeting.",
    "Solar panels on the roof now cover most of the school's electricity.",
    "He forgot his umbrella on the bus again this morning.",
    "The new bridge will shorten the commute for thousands of drivers.",
    "Children learn languages faster when they hear them every day.",
    "The firmware update fixes a bug that drained the battery overnight.",
    "A strong earthquake shook the coastal town but caused little damage.",
    "Fresh bread is baked here every morning before six o'clock.",
    "The patient was asked to avoid food for twelve hours before the test.",
    "Scientists discovered a new species of frog in the rainforest.",
    "The library extends its opening hours during the exam period.",
    "Edge devices run the model locally without sending images to the cloud.",
    "The sensor reports temperature and humidity once a minute.",
    "Is there a pharmacy open near the station at this hour?",
    "The football match was cancelled because of the storm.",
    "Prices of fruit and vegetables rose sharply after the drought.",
    "Remember to back up your files before installing the update.",
    "The hotel offers free breakfast and a shuttle to the beach.",
    "Volunteers planted three hundred trees along the river bank.",
    "The orchestra received a standing ovation after the final piece.",
    "Could you send me the slides from yesterday's presentation?",
    "The museum's new wing displays modern art from local painters.",
    "Our flight was delayed for two hours due to fog.",
    "The recipe calls for fresh basil, garlic and olive oil.",
    "Engineers tested the robot arm on the factory floor.",
    "The election results will be announced late on Sunday night.",
    "A cup of green tea has less caffeine than a cup of coffee.",
    "The startup raised money to build cheaper water filters.",
    "Students must return their library books by the end of June.",
    "The lighthouse has guided ships along this coast for a century.",
)


def fonts() -> list[Path]:
    """The TrueType fonts found on the host (DejaVu, Liberation); at least one is needed."""
    found = sorted(p for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf"))
    if not found:
        raise RuntimeError(
            "no TrueType font under /usr/share/fonts/truetype (apt-get install fonts-dejavu-core)"
        )
    return found


def _font(rng: np.random.Generator, size: int) -> ImageFont.FreeTypeFont:
    files = fonts()
    return ImageFont.truetype(str(files[int(rng.integers(len(files)))]), size)


def _phrase(rng: np.random.Generator, lo: int, hi: int) -> str:
    words = [str(WORDS[int(i)]) for i in rng.integers(len(WORDS), size=int(rng.integers(lo, hi + 1)))]
    if rng.random() < 0.5:
        words.append(f"{rng.integers(1, 9999)}")
    if rng.random() < 0.3:
        words = [w.capitalize() for w in words]
    return " ".join(words)


def _paper(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    base = rng.integers(170, 256, size=3)
    grad = np.linspace(0, rng.uniform(-30, 30), w)[None, :, None]
    noise = rng.normal(0, rng.uniform(2, 10), size=(h, w, 1))
    img = np.clip(base[None, None, :] + grad + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(img, "RGB")


def _ink(rng: np.random.Generator) -> tuple[int, int, int]:
    v = rng.integers(0, 90, size=3)
    return int(v[0]), int(v[1]), int(v[2])


def text_line(rng: np.random.Generator) -> Image.Image:
    """One text line on paper, cropped close around the text as a detector's box would be."""
    font = _font(rng, int(rng.integers(22, 40)))
    text = _phrase(rng, 1, 4)
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    pad = int(rng.integers(2, 8))
    img = _paper(rng, right - left + 2 * pad, bottom - top + 2 * pad)
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=_ink(rng))
    return img


def ocr_normalise(img: Image.Image, height: int, width: int) -> np.ndarray:
    """PP-OCR's line preprocessing: resize to ``height`` keeping the aspect ratio (at most
    ``width``), (x/255 - 0.5) / 0.5, CHW, zero-padded on the right to ``width``."""
    w = min(width, max(1, math.ceil(height * img.width / img.height)))
    arr = np.asarray(img.convert("RGB").resize((w, height), Image.Resampling.BILINEAR), dtype=np.float32)
    chw = ((arr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :w] = chw
    return out


def ppocr_cls(n: int, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    x = np.empty((n, 3, 48, 192), np.float32)
    y = np.empty(n, np.int64)
    for i in range(n):
        line = text_line(rng)
        y[i] = i % 2  # label_list ['0', '180']
        if y[i]:
            line = line.rotate(180)
        x[i] = ocr_normalise(line, 48, 192)
    return {"x": x, "y": y}


def ppocr_rec(n: int, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    return {"x": np.stack([ocr_normalise(text_line(rng), 48, 320) for _ in range(n)])}


def document(rng: np.random.Generator, size: int) -> Image.Image:
    """A page-like image with a few text lines of different sizes, a rule and a box."""
    img = _paper(rng, size, size)
    draw = ImageDraw.Draw(img)
    y = int(rng.integers(4, 20))
    while y < size - 20:
        font = _font(rng, int(rng.integers(12, 28)))
        x = int(rng.integers(4, 40))
        draw.text((x, y), _phrase(rng, 2, 6), font=font, fill=_ink(rng))
        y += int(font.size * rng.uniform(1.3, 2.2))
        if rng.random() < 0.15:
            draw.line((x, y, size - x, y), fill=_ink(rng), width=1)
            y += 6
    if rng.random() < 0.5:
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, size=2))
        draw.rectangle((x0, y0, x0 + size // 3, y0 + size // 5), outline=_ink(rng), width=2)
    return img


def ppocrv4_det(n: int, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    x = np.empty((n, 3, 256, 256), np.float32)
    for i in range(n):
        arr = np.asarray(document(rng, 256), dtype=np.float32)
        x[i] = ((arr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)  # RapidOCR Det mean = std = 0.5
    return {"x": x}


# -- scenes for the detector -----------------------------------------------------------------------


def scene(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A scene: a sky/ground gradient, shapes, and a few people-like figures in skin tones."""
    top, bottom = rng.integers(0, 256, size=3), rng.integers(0, 256, size=3)
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    img = Image.fromarray((top * (1 - t) + bottom * t).repeat(w, axis=1).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 8))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    skin = ((224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172), (241, 194, 125))
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = int(rng.integers(w // 8, w - w // 8)), int(rng.integers(h // 6, h - h // 4))
        s = int(rng.integers(h // 10, h // 4))
        tone = skin[int(rng.integers(len(skin)))]
        draw.ellipse((cx - s // 3, cy - s, cx + s // 3, cy - s // 3), fill=tone)  # head
        draw.ellipse((cx - s // 2, cy - s // 3, cx + s // 2, cy + s), fill=tone)  # torso
        draw.rectangle((cx - s // 2, cy + s // 4, cx + s // 2, cy + s), fill=_ink(rng))  # clothes
    noise = rng.normal(0, 4, size=(h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))


def letterbox(img: Image.Image, size: int) -> np.ndarray:
    """Ultralytics' preprocessing: fit into ``size`` x ``size`` keeping the aspect ratio, pad with
    grey 114, x/255, RGB, CHW."""
    scale = size / max(img.width, img.height)
    w, h = round(img.width * scale), round(img.height * scale)
    canvas = Image.new("RGB", (size, size), (114, 114, 114))
    canvas.paste(img.resize((w, h), Image.Resampling.BILINEAR), ((size - w) // 2, (size - h) // 2))
    return (np.asarray(canvas, dtype=np.float32) / 255.0).transpose(2, 0, 1)


def nudenet(n: int, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    shapes = [(int(rng.integers(240, 480)), int(rng.integers(240, 480))) for _ in range(n)]
    return {"images": np.stack([letterbox(scene(rng, w, h), 320) for w, h in shapes])}


# -- files for Magika ------------------------------------------------------------------------------


def _png(rng: np.random.Generator, fmt: str) -> bytes:
    img = scene(rng, int(rng.integers(32, 96)), int(rng.integers(32, 96)))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


FIXED_DATE = (2024, 1, 1, 0, 0, 0)  # zip and PDF dates, so the files are the same on every run


def _zip(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(int(rng.integers(2, 5))):
            text = " ".join(SENTENCES[int(j)] for j in rng.integers(40, size=20))
            z.writestr(zipfile.ZipInfo(f"docs/file{i}.txt", FIXED_DATE), text, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def _tar(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for i in range(2):
            data = _python(rng).encode()
            info = tarfile.TarInfo(f"src/module{i}.py")
            info.size, info.mtime = len(data), 1_700_000_000
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _wav(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((speech_like(rng, 0.3) * 12000).astype("<i2").tobytes())
    return buf.getvalue()


def _text(rng: np.random.Generator, k: int) -> str:
    return " ".join(SENTENCES[int(j)] for j in rng.integers(len(SENTENCES), size=k))


def _python(rng: np.random.Generator) -> str:
    fns = []
    for i in range(int(rng.integers(3, 7))):
        name = f"{WORDS[int(rng.integers(len(WORDS)))]}_{i}"
        fns.append(
            f"def {name}(items: list[int], limit: int = {rng.integers(1, 100)}) -> int:\n"
            f'    """Sum the items below the limit."""\n'
            f"    total = 0\n    for item in items:\n        if item < limit:\n            total += item\n"
            f"    return total\n"
        )
    return (
        "import os\nimport sys\nfrom pathlib import Path\n\n\n"
        + "\n\n".join(fns)
        + ('\n\nif __name__ == "__main__":\n    print(main(sys.argv[1:]))\n')
    )


def _c(rng: np.random.Generator) -> str:
    body = "\n".join(
        f"static int f{i}(const int *a, size_t n) {{\n    int s = 0;\n    for (size_t k = 0; k < n; k++)\n"
        f"        s += a[k] * {rng.integers(1, 9)};\n    return s;\n}}\n"
        for i in range(int(rng.integers(3, 6)))
    )
    return f"#include <stdio.h>\n#include <stdlib.h>\n\n{body}\nint main(void) {{\n    return 0;\n}}\n"


def _json(rng: np.random.Generator) -> str:
    rows = [
        {
            "id": int(rng.integers(1_000_000)),
            "name": str(WORDS[int(rng.integers(len(WORDS)))]),
            "price": round(float(rng.uniform(1, 100)), 2),
            "tags": ["a", "b"],
        }
        for _ in range(12)
    ]
    return json.dumps({"items": rows, "count": len(rows)}, indent=2)


def _csv(rng: np.random.Generator) -> str:
    lines = ["date,station,temperature,humidity"]
    lines += [
        f"2024-03-{d:02d},{WORDS[int(rng.integers(len(WORDS)))]},{rng.normal(12, 5):.1f},"
        f"{rng.integers(20, 99)}"
        for d in range(1, 29)
    ]
    return "\n".join(lines) + "\n"


def _html(rng: np.random.Generator) -> str:
    paras = "\n".join(f"    <p>{_text(rng, 2)}</p>" for _ in range(6))
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n  <meta charset="utf-8">\n  <title>{_phrase(rng, 2, 4)}'
        f"</title>\n</head>\n<body>\n  <h1>News</h1>\n{paras}\n</body>\n</html>\n"
    )


def _markdown(rng: np.random.Generator) -> str:
    return (
        f"# {_phrase(rng, 2, 4)}\n\n{_text(rng, 3)}\n\n## Install\n\n```bash\npip install thing\n```\n\n"
        f"- {_text(rng, 1)}\n- {_text(rng, 1)}\n\n## Usage\n\n{_text(rng, 4)}\n"
    )


def _shell(rng: np.random.Generator) -> str:
    return '#!/bin/bash\nset -euo pipefail\n\nDIR="$(cd "$(dirname "$0")" && pwd)"\n' + "".join(
        f'if [ -f "$DIR/file{i}" ]; then\n  echo "found file{i}"\n  cp "$DIR/file{i}" /tmp/\nfi\n'
        for i in range(int(rng.integers(3, 6)))
    )


def _xml(rng: np.random.Generator) -> str:
    items = "".join(
        f'  <item id="{i}"><name>{WORDS[int(rng.integers(len(WORDS)))]}</name></item>\n' for i in range(10)
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<catalog>\n{items}</catalog>\n'


def _ini(rng: np.random.Generator) -> str:
    return "".join(
        f"[section{i}]\nname = {WORDS[int(rng.integers(len(WORDS)))]}\nport = {rng.integers(1000, 9999)}\n"
        f"enabled = true\n\n"
        for i in range(4)
    )


def _pdf(rng: np.random.Generator) -> bytes:
    img = Image.fromarray(np.asarray(document(rng, 96)))
    buf = io.BytesIO()
    img.save(buf, format="PDF", creationDate=time.gmtime(0), modDate=time.gmtime(0))
    return buf.getvalue()


FILE_MAKERS: dict[str, Callable[[np.random.Generator], bytes]] = {
    "png": lambda r: _png(r, "PNG"),
    "jpeg": lambda r: _png(r, "JPEG"),
    "gif": lambda r: _png(r, "GIF"),
    "bmp": lambda r: _png(r, "BMP"),
    "tiff": lambda r: _png(r, "TIFF"),
    "pdf": _pdf,
    "zip": _zip,
    "gzip": lambda r: gzip.compress(_text(r, 30).encode(), mtime=0),
    "bzip": lambda r: bz2.compress(_text(r, 30).encode()),
    "tar": _tar,
    "wav": _wav,
    "python": lambda r: _python(r).encode(),
    "c": lambda r: _c(r).encode(),
    "json": lambda r: _json(r).encode(),
    "csv": lambda r: _csv(r).encode(),
    "html": lambda r: _html(r).encode(),
    "markdown": lambda r: _markdown(r).encode(),
    "shell": lambda r: _shell(r).encode(),
    "xml": lambda r: _xml(r).encode(),
    "ini": lambda r: _ini(r).encode(),
}


def magika_features(
    content: bytes, beg: int = 1024, end: int = 1024, block: int = 4096, pad: int = 256
) -> np.ndarray:
    """Magika's features: the first ``beg`` bytes of the first block with leading whitespace
    stripped, padded after; the last ``end`` of the last block, trailing whitespace stripped,
    padded before."""
    head = content[:block].lstrip()[:beg]
    tail = content[-block:].rstrip()[-end:] if content else b""
    out = np.full(beg + end, pad, np.int32)
    out[: len(head)] = np.frombuffer(head, np.uint8)
    if tail:
        out[beg + end - len(tail) :] = np.frombuffer(tail, np.uint8)
    return out


def magika_labels() -> list[str]:
    config = json.loads(asset_path("magika-v3", "config").read_text())
    return list(config["target_labels_space"])


def magika(n: int, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    labels = magika_labels()
    kinds = list(FILE_MAKERS)
    x = np.empty((n, 2048), np.int32)
    y = np.empty(n, np.int64)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        x[i] = magika_features(FILE_MAKERS[kind](rng))
        y[i] = labels.index(kind)
    return {"bytes": x, "y": y}


# -- audio for Silero VAD --------------------------------------------------------------------------

SAMPLE_RATE, WINDOW, CONTEXT = 16000, 512, 64


def speech_like(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Float audio in [-1, 1] at 16 kHz: voiced stretches (a pitch contour with harmonics shaped
    by two moving formants, syllable-rate amplitude), fricatives, pauses, and background noise."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    f1 = 500 + 250 * np.sin(2 * np.pi * rng.uniform(2, 5) * t)
    f2 = 1500 + 600 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + 1.0)
    voiced = np.zeros(n)
    for k in range(1, 25):
        fk = k * f0
        gain = np.exp(-(((fk - f1) / 200) ** 2)) + 0.6 * np.exp(-(((fk - f2) / 300) ** 2)) + 0.02
        voiced += gain * np.sin(k * phase) / k**0.5
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * t), 0, None) ** 0.7
    fricative = rng.normal(0, 1, n) * (rng.random(n // 800 + 1).repeat(800)[:n] < 0.15)
    mask = (rng.random(n // 4000 + 1) < 0.7).repeat(4000)[:n]  # quarter-second pauses
    audio = mask * (voiced * syllables + 0.3 * fricative) + rng.normal(0, rng.uniform(0.002, 0.02), n)
    return (0.5 * audio / max(1e-6, float(np.abs(audio).max()))).astype(np.float32)


def silero_vad(n: int, seed: int) -> Arrays:
    """``n`` windows with context from a few clips, and the state (h, c) the FP32 model carries
    into each window when it runs the clip from the start, as faster-whisper runs it."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    session = ort.InferenceSession(str(model_path("silero-vad-v6")), providers=["CPUExecutionProvider"])
    xs: list[np.ndarray] = []
    hs: list[np.ndarray] = []
    cs: list[np.ndarray] = []
    while len(xs) < n:
        clip = speech_like(rng, 2.0) if rng.random() < 0.7 else rng.normal(0, 0.01, 32000).astype(np.float32)
        padded = np.concatenate([np.zeros(CONTEXT, np.float32), clip])
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        for start in range(0, len(clip) - WINDOW + 1, WINDOW):
            window = padded[start : start + CONTEXT + WINDOW][None, :]
            xs.append(window[0])
            hs.append(h[0])
            cs.append(c[0])
            _, h, c = session.run(None, {"input": window, "h": h, "c": c})
            if len(xs) == n:
                break
    return {"input": np.stack(xs), "h": np.stack(hs), "c": np.stack(cs)}


# -- text for MiniLM -------------------------------------------------------------------------------


class WordPiece:
    """BERT's uncased tokenizer (BasicTokenizer + WordPiece) over a ``tokenizer.json`` vocabulary."""

    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab
        self.cls, self.sep, self.pad, self.unk = (vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]"))

    @classmethod
    def from_file(cls, path: Path) -> WordPiece:
        return cls(json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"])

    @staticmethod
    def basic(text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        return re.findall(r"\w+|[^\w\s]", text)

    def wordpiece(self, word: str) -> list[int]:
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            if end == start:
                return [self.unk]
            start = end
        return ids

    def encode(self, text: str, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), INT64, ``[CLS] ... [SEP]`` padded or cut to ``length``."""
        ids = [i for w in self.basic(text) for i in self.wordpiece(w)][: length - 2]
        ids = [self.cls, *ids, self.sep]
        mask = [1] * len(ids) + [0] * (length - len(ids))
        ids += [self.pad] * (length - len(ids))
        return np.array(ids, np.int64), np.array(mask, np.int64)


SEQUENCE_LENGTH = 32


def minilm(n: int, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    tok = WordPiece.from_file(asset_path("minilm-l3", "tokenizer"))
    ids, masks = [], []
    for _ in range(n):
        a, b = rng.integers(len(SENTENCES), size=2)
        text = SENTENCES[int(a)] if rng.random() < 0.7 else f"{SENTENCES[int(a)]} {SENTENCES[int(b)]}"
        i, m = tok.encode(text, SEQUENCE_LENGTH)
        ids.append(i)
        masks.append(m)
    return {"input_ids": np.stack(ids), "attention_mask": np.stack(masks)}


# -- iris ------------------------------------------------------------------------------------------

# Per class (setosa, versicolor, virginica): mean and standard deviation of sepal length and width
# in Fisher's iris data.
IRIS = (((5.006, 3.428), (0.352, 0.379)), ((5.936, 2.770), (0.516, 0.314)), ((6.588, 2.974), (0.636, 0.322)))


def iris(n: int, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    y = np.arange(n, dtype=np.int64) % 3
    rng.shuffle(y)
    x = np.stack([rng.normal(IRIS[c][0], IRIS[c][1]) for c in y]).round(1).astype(np.float32)
    return {"float_input": x, "y": y}


SPECS: dict[str, DataSpec] = {
    "ppocr-cls": DataSpec(ppocr_cls, 64, 200),
    "ppocrv4-det": DataSpec(ppocrv4_det, 24, 24),
    "ppocrv4-rec": DataSpec(ppocr_rec, 32, 48),
    "nudenet-320n": DataSpec(nudenet, 32, 32),
    "magika-v3": DataSpec(magika, 100, 200),
    "silero-vad-v6": DataSpec(silero_vad, 128, 256),
    "minilm-l3": DataSpec(minilm, 64, 96),
    "logreg-iris": DataSpec(iris, 60, 150),
}


def make(name: str, split: str) -> Arrays:
    """The ``calibration`` or ``validation`` arrays of corpus model ``name``."""
    spec = SPECS[name]
    if split == "calibration":
        return spec.make(spec.calibration, CALIBRATION_SEED)
    if split == "validation":
        return spec.make(spec.validation, VALIDATION_SEED)
    raise ValueError(f"split must be calibration or validation, got {split!r}")


def write_data(name: str, folder: Path) -> tuple[Path, Path]:
    """Write ``calibration.npz`` and ``validation.npz`` for ``name`` into ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split in ("calibration", "validation"):
        path = folder / f"{split}.npz"
        np.savez(path, **make(name, split))  # type: ignore[arg-type]
        paths.append(path)
    return paths[0], paths[1]
