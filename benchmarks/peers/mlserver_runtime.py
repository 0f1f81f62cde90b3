"""An MLServer custom runtime that serves an ONNX file with ONNX Runtime.

``serving_bench.py`` writes the settings (``settings.json`` and the model's
``model-settings.json`` naming ``mlserver_runtime.OnnxModel``) and starts ``mlserver start``
with this folder on ``PYTHONPATH``. The model's ``parameters.uri`` is the .onnx path and
``parameters.extra.ort_options`` the session options (see ``ort_options.py``). The shape is the
one MLServer's docs give for a custom runtime: ``load`` opens the session, ``predict`` decodes
with ``NumpyCodec``, runs, encodes.
"""

from __future__ import annotations

import json
from typing import Any

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from ort_options import build


class OnnxModel(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        params = self.settings.parameters
        options = build(json.dumps(params.extra["ort_options"]))
        self._session: Any = ort.InferenceSession(params.uri, options, providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feed = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        values = self._session.run(self._outputs, feed)
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(n, v) for n, v in zip(self._outputs, values, strict=True)],
        )
