"""An MLServer runtime for an ONNX model (MLServer ships none): the peer that
bench/serving.py runs beside `modelvc serve`. Imported by MLServer from the model
folder it is copied into, in the side venv MLServer is installed in (never by modelvc).
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel  # type: ignore[import-not-found]
from mlserver.codecs import NumpyCodec  # type: ignore[import-not-found]
from mlserver.types import InferenceRequest, InferenceResponse  # type: ignore[import-not-found]
from mlserver.utils import get_model_uri  # type: ignore[import-not-found]


class OnnxModel(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        # As modelvc's ONNX runtime: one intra-op thread per session.
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        path = await get_model_uri(self._settings)
        self._sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self._names = [o.name for o in self._sess.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        outs = self._sess.run(self._names, feeds)
        return InferenceResponse(
            model_name=self.name, model_version=self.version, id=payload.id,
            outputs=[NumpyCodec.encode_output(n, v) for n, v in zip(self._names, outs,
                                                                       strict=True)])
