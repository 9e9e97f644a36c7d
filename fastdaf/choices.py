"""The words for run-time choices, each defined once with its default, and imported by the pipeline, the
encoders, the CLI, the benchmarks and serving. No torch here, so building the CLI's parser stays cheap."""

from __future__ import annotations

# How an encoder's tensor core runs (fastdaf.encoders.runners): auto = TensorRT if installed, else CUDA
# graphs on CUDA (for encoders whose features do not depend on padding), else eager.
ENCODER_BACKENDS = ("auto", "eager", "compile", "cudagraph", "tensorrt")
DEFAULT_ENCODER_BACKEND = "auto"
# Which DAF head a predictor runs (fastdaf.pipeline): auto = the fused Triton head on CUDA, else the
# reference PyTorch head (fastdaf.head.DAFHead).
HEADS = ("auto", "fused", "reference")
DEFAULT_HEAD = "auto"
# Where a served model's instances run (fastdaf.serving.ServeOptions): auto = gpu when torch sees CUDA.
SERVE_DEVICES = ("auto", "cpu", "gpu")
DEFAULT_SERVE_DEVICE = "auto"
