"""Serving on NVIDIA Triton Inference Server: one model repository for `fastdaf serve` and `fastdaf export-triton`.

The model runs in Triton's Python backend (`TritonPythonModel` below, loaded by the two-line
`model.py` that `write_model_repository` writes). `fastdaf serve` writes such a repository to a
private temporary folder and runs the `tritonserver` that nvidia-pytriton bundles on it; `export-triton`
writes the same repository for a separately deployed server. One model, two ways to run it. Both
load the checkpoint first, so a bad one is refused in seconds, naming the file.

No model can be loaded, unloaded or replaced while serving (`fastdaf serve`): the server runs with
`--model-control-mode=none` (the repository is read once, at startup, and never polled), and the
repository, shared-memory, trace and logging APIs are restricted to a header no client can send (see
`SEALED_HEADER`), so there is no secret on any command line or in any environment to steal. PyTriton's
own launcher is not used: it forces explicit model control, guarded by a token on tritonserver's
command line, which any local user can read in /proc/<pid>/cmdline.

Why the Python backend and not PyTriton's `bind`: PyTriton's non-decoupled proxy answers a whole
dynamic batch with one error when the callable raises (pytriton/proxy/model.py), so one bad request
would fail the good ones batched with it, or have to be answered "200 OK" with an error field. The
Python backend answers each request on its own: a bad request gets a Triton error (HTTP 400, gRPC
INVALID_ARGUMENT) naming what was wrong, and the rest of its batch is predicted together.
"""

from ..errors import ServeError
from .client import TritonClient
from .model import TritonPythonModel
from .protocol import INPUTS, MAX_TEXT_CHARS, Utterance, answer_requests, decode_request, encode_results
from .repository import MODEL_NAME, ServeOptions, model_config, validate_checkpoint, write_model_repository
from .server import SEALED_APIS, SEALED_HEADER, ServerProcess, free_port, model_ready, serve, tritonserver_command

__all__ = [
    "INPUTS",
    "MAX_TEXT_CHARS",
    "MODEL_NAME",
    "SEALED_APIS",
    "SEALED_HEADER",
    "ServeError",
    "ServeOptions",
    "ServerProcess",
    "TritonClient",
    "TritonPythonModel",
    "Utterance",
    "answer_requests",
    "decode_request",
    "encode_results",
    "free_port",
    "model_config",
    "model_ready",
    "serve",
    "tritonserver_command",
    "validate_checkpoint",
    "write_model_repository",
]
