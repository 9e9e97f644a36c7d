"""The words for run-time choices, defined once and imported by the CLI, the pipeline and the encoder
backends. No torch here, so building the CLI's parser (`fastdaf --help`) stays fast."""

from __future__ import annotations

# How an encoder's tensor core runs (fastdaf.encoders.runners): auto = TensorRT if installed, else CUDA
# graphs on CUDA, else eager.
ENCODER_BACKENDS = ("auto", "eager", "compile", "cudagraph", "tensorrt")
# Which DAF head a predictor runs (fastdaf.pipeline): auto = the fused Triton head on CUDA, else the
# reference PyTorch head.
HEADS = ("auto", "fused", "reference")
