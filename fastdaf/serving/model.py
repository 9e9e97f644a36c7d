"""The model inside Triton's Python backend: loads the checkpoint once, answers each request on its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ServeError
from ..pipeline import SentimentPredictor
from .protocol import DEFAULT_MAX_AUDIO_SECONDS, INPUTS, answer_requests


class TritonPythonModel:
    """Triton Python-backend entry points; `model.py` in an exported repository re-exports this class."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils  # noqa: PLC0415 - only importable inside Triton's Python backend

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in (config.get("parameters") or {}).items()}
        self.max_audio_seconds = float(params.get("max_audio_seconds", DEFAULT_MAX_AUDIO_SECONDS))
        device = f"cuda:{args['model_instance_device_id']}" if args.get("model_instance_kind") == "GPU" else "cpu"
        checkpoint = Path(args["model_repository"]) / args["model_version"] / "checkpoint"
        self.predictor = SentimentPredictor(checkpoint, device=device, batch_size=config.get("max_batch_size") or 32)
        order = params.get("weights_order")
        if order and order.split(",") != self.predictor.modalities:
            raise ServeError(
                f"config.pbtxt says weights_order={order} but the checkpoint's modalities are "
                f"{self.predictor.modalities}"
            )
        # one warm-up call, so that readiness means a first request is served at full speed
        warm = {"text": np.array([[b"warming up"]], dtype=object)}
        if "audio" in self.predictor.modalities:
            t = np.arange(16_000, dtype=np.float32) / 16_000
            warm.update(
                audio=(0.1 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32),
                sampling_rate=np.array([[16_000]], dtype=np.int32),
            )
        if "text" not in self.predictor.modalities:
            warm.pop("text")
        answer_requests(self.predictor, [warm], max_audio_seconds=self.max_audio_seconds)

    def execute(self, requests: list) -> list:
        pb = self._pb
        inputs = []
        for request in requests:
            tensors = {}
            for name in INPUTS:
                tensor = pb.get_input_tensor_by_name(request, name)
                tensors[name] = tensor.as_numpy() if tensor is not None else None
            inputs.append({k: v for k, v in tensors.items() if v is not None})
        responses = []
        for answer in answer_requests(self.predictor, inputs, max_audio_seconds=self.max_audio_seconds):
            if isinstance(answer, str):
                responses.append(pb.InferenceResponse(error=pb.TritonError(answer, pb.TritonError.INVALID_ARG)))
            else:
                responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(k, v) for k, v in answer.items()]))
        return responses

    def finalize(self) -> None:
        self.predictor = None
