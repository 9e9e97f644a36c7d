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

Protocol (batch dimension first, as Triton does; every input optional as in `fastdaf.predict`):
- inputs `text` BYTES [1] (UTF-8), `audio` FP32 [-1] (mono samples), `sampling_rate` INT32 [1]
  (Hz, required with `audio`). A request may hold several rows; all its audio rows share a length.
- outputs `score` FP32 [1] (CMU-MOSEI scale, clipped to [-3, 3]), `label` BYTES [1]
  (negative/neutral/positive), `weights` FP32 [M]: the modality weights in the order of the
  checkpoint's modalities (the bundled model: text, audio), also recorded in the config's
  `weights_order` parameter; `notes` BYTES [1]: the row's `Prediction.notes` as a JSON list of
  strings (`[]` when there are none; e.g. audio without speech that was treated as absent).
  Clients may ignore `notes`; a repository exported before it existed simply does not send it.
- A request with any bad row fails as a whole (one request, one response); other requests do not.

Batching mixed traffic (ABSENT): Triton's dynamic batcher puts in one batch only requests that carry
the same set of inputs, taken in arrival order, so text-only, audio-only and text+audio requests
interleaved are executed one at a time. A client may instead send every input on every request and
mark a missing modality: text `""` (as `fastdaf.predict`, empty text counts as absent when audio is
given) and audio of 0 samples with `sampling_rate` 0. Such requests all batch together; the answers
are the same. `fastdaf.triton_client.TritonClient` does this by default.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FastDAFError, InputError

MODEL_NAME = "fastdaf"
MAX_TEXT_CHARS = 20_000
INPUTS = ("text", "audio", "sampling_rate")
MODEL_PY = '''"""fastdaf sentiment model for Triton's Python backend, written by `fastdaf export-triton`.

The server's Python environment needs fastdaf installed (`pip install fastdaf`); the head checkpoint
is in ./checkpoint beside this file.
"""

from fastdaf.serving import TritonPythonModel  # noqa: F401
'''


class ServeError(FastDAFError):
    """The Triton server could not be started, or a model repository could not be written."""


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """How Triton batches and places the model. Defaults suit one CPU or one GPU."""

    max_batch_size: int = 32
    preferred_batch_sizes: tuple[int, ...] | None = None  # None: those of 8, 16, 32 below max_batch_size, and it
    max_queue_delay_us: int = 2000
    instances: int = 1
    device: str = "auto"  # cpu, gpu or auto (gpu when torch sees CUDA)
    max_audio_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise InputError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.preferred_batch_sizes is None:
            sizes = sorted({b for b in (8, 16, 32) if b < self.max_batch_size} | {self.max_batch_size})
            object.__setattr__(self, "preferred_batch_sizes", tuple(sizes))
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise InputError(f"preferred batch sizes {bad} are outside 1..max_batch_size ({self.max_batch_size})")
        if self.max_queue_delay_us < 0:
            raise InputError(f"max_queue_delay_us must be >= 0, got {self.max_queue_delay_us}")
        if self.instances < 1:
            raise InputError(f"instances must be >= 1, got {self.instances}")
        if self.device not in ("auto", "cpu", "gpu"):
            raise InputError(f"device {self.device!r} is not accepted; choose auto, cpu or gpu")
        if not 0 < self.max_audio_seconds <= 600:
            raise InputError(f"max_audio_seconds must be in (0, 600], got {self.max_audio_seconds}")

    def instance_kind(self) -> str:
        if self.device == "auto":
            import torch

            return "KIND_GPU" if torch.cuda.is_available() else "KIND_CPU"
        return "KIND_GPU" if self.device == "gpu" else "KIND_CPU"


# ---------------------------------------------------------------- the model repository


def model_config(modalities: Sequence[str], options: ServeOptions = ServeOptions(), *, name: str = MODEL_NAME) -> str:
    """config.pbtxt for the Python-backend model: dynamic batching, instance group, optional inputs."""
    preferred = ", ".join(str(b) for b in options.preferred_batch_sizes)
    return f"""# fastdaf sentiment model (Triton Python backend); see fastdaf/serving.py for the protocol.
name: "{name}"
backend: "python"
max_batch_size: {options.max_batch_size}
input [
  {{ name: "text" data_type: TYPE_STRING dims: [ 1 ] optional: true }},
  {{ name: "audio" data_type: TYPE_FP32 dims: [ -1 ] optional: true allow_ragged_batch: true }},
  {{ name: "sampling_rate" data_type: TYPE_INT32 dims: [ 1 ] optional: true }}
]
output [
  {{ name: "score" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "label" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "weights" data_type: TYPE_FP32 dims: [ {len(modalities)} ] }},
  {{ name: "notes" data_type: TYPE_STRING dims: [ 1 ] }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {options.max_queue_delay_us}
}}
instance_group [ {{ count: {options.instances} kind: {options.instance_kind()} }} ]
parameters {{ key: "weights_order" value: {{ string_value: "{",".join(modalities)}" }} }}
parameters {{ key: "max_audio_seconds" value: {{ string_value: "{options.max_audio_seconds:g}" }} }}
"""


def validate_checkpoint(checkpoint: str | Path | None = None, *, encoders: bool = True) -> None:
    """Load the checkpoint as the server would, so a bad one fails here, in seconds, naming its file.

    Without this a corrupt `model.safetensors` was exported silently, or made `serve` time out after
    minutes with a server log that did not name it. `encoders=False` checks the head only (config and
    every tensor), for a repository whose encoders are on the server that will run it.
    """
    from .checkpoint import CONFIG_FILE, WEIGHTS_FILE
    from .default_model import path as default_model_path
    from .errors import CheckpointError

    checkpoint = Path(checkpoint) if checkpoint is not None else default_model_path()
    try:
        if encoders:
            from .pipeline import SentimentPredictor

            SentimentPredictor(checkpoint, device="cpu")
        else:
            from .head import DAFHead

            DAFHead.from_pretrained(checkpoint)
    except FastDAFError as exc:
        if str(checkpoint) in str(exc):
            raise
        raise CheckpointError(f"checkpoint {str(checkpoint)!r} ({CONFIG_FILE}, {WEIGHTS_FILE}) cannot be served: {exc}") from exc


def write_model_repository(
    directory: str | Path,
    checkpoint: str | Path | None = None,
    options: ServeOptions = ServeOptions(),
    *,
    name: str = MODEL_NAME,
    overwrite: bool = False,
) -> Path:
    """Write `<directory>/<name>/{config.pbtxt, 1/model.py, 1/checkpoint/}`; returns `directory`.

    The checkpoint is copied in, so the repository stands alone. Encoders are referenced as the
    checkpoint records them (the bundled model's ship with fastdaf; a local path must exist on the server).
    """
    from .checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_config
    from .default_model import path as default_model_path

    checkpoint = Path(checkpoint) if checkpoint is not None else default_model_path()
    validate_checkpoint(checkpoint, encoders=False)  # the encoders may live only on the server
    config, _ = read_config(checkpoint)
    directory = Path(directory)
    model_dir = directory / name
    if model_dir.exists() and any(model_dir.iterdir()) and not overwrite:
        raise ServeError(f"{model_dir} already exists and is not empty; choose another directory or pass overwrite (--force)")
    if model_dir.exists():
        shutil.rmtree(model_dir)
    version_dir = model_dir / "1"
    (version_dir / "checkpoint").mkdir(parents=True)
    for file in (CONFIG_FILE, WEIGHTS_FILE):
        shutil.copy2(checkpoint / file, version_dir / "checkpoint" / file)
    (version_dir / "model.py").write_text(MODEL_PY)
    (model_dir / "config.pbtxt").write_text(model_config(list(config.modalities), options, name=name))
    return directory


# ---------------------------------------------------------------- requests


@dataclasses.dataclass
class Utterance:
    text: str | None
    audio: np.ndarray | None
    sampling_rate: int | None
    row: int = 0  # within its request


def decode_request(inputs: Mapping[str, np.ndarray | None], *, max_audio_seconds: float = ServeOptions.max_audio_seconds) -> list[Utterance]:
    """One Triton request's tensors (batch dimension first) -> its utterances, or InputError saying what is wrong.

    Checks the structure and sizes the server must refuse before any work; what `fastdaf.predict`
    checks (NaN samples, rates, durations, empty text) is left to it, so both give the same answers.
    """
    unknown = sorted(set(inputs) - set(INPUTS))
    if unknown:
        raise InputError(f"unknown inputs {unknown}; accepted: {list(INPUTS)}")
    text, audio, rate = (inputs.get(k) for k in INPUTS)
    if text is None and audio is None:
        raise InputError("the request has neither `text` nor `audio`; send one or both")
    given = {k: v for k, v in zip(INPUTS, (text, audio, rate)) if v is not None}
    for key, value in given.items():
        if value.ndim != 2:
            raise InputError(f"`{key}` has shape {list(value.shape)}; expected [batch, {'samples' if key == 'audio' else 1}]")
    rows = {k: v.shape[0] for k, v in given.items()}
    if len(set(rows.values())) > 1:
        raise InputError(f"the inputs disagree on the batch size: {rows}")
    n = next(iter(rows.values()))
    if n == 0:
        raise InputError("the request holds 0 rows")
    texts: list[str | None] = [None] * n
    if text is not None:
        if text.shape[1] != 1 or text.dtype != object:
            raise InputError(f"`text` must be BYTES of shape [batch, 1], got {text.dtype} {list(text.shape)}")
        for i, value in enumerate(text[:, 0]):
            raw = value if isinstance(value, bytes) else str(value).encode()
            try:
                decoded = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"`text` row {i} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if len(decoded) > MAX_TEXT_CHARS:
                raise InputError(f"`text` row {i} has {len(decoded)} characters; at most {MAX_TEXT_CHARS} are accepted")
            texts[i] = decoded
    audios: list[np.ndarray | None] = [None] * n
    rates: list[int | None] = [None] * n
    if audio is not None:
        if audio.dtype != np.float32:
            raise InputError(f"`audio` must be FP32 samples, got {audio.dtype}")
        if rate is None:
            raise InputError("`audio` needs `sampling_rate` (INT32 [batch, 1], in Hz)")
        if rate.shape[1] != 1 or rate.dtype != np.int32:
            raise InputError(f"`sampling_rate` must be INT32 of shape [batch, 1], got {rate.dtype} {list(rate.shape)}")
        for i in range(n):
            sr = int(rate[i, 0])
            if audio.shape[1] == 0 and sr == 0:
                continue  # audio marked absent: lets a client send every input on every request (see ABSENT)
            if sr > 0 and audio.shape[1] > max_audio_seconds * sr:
                raise InputError(
                    f"`audio` row {i} holds {audio.shape[1] / sr:.1f} s at {sr} Hz; this server accepts at most {max_audio_seconds:g} s"
                )
            audios[i], rates[i] = audio[i], sr
    elif rate is not None:
        raise InputError("`sampling_rate` was sent without `audio`")
    return [Utterance(t, a, r, row) for row, (t, a, r) in enumerate(zip(texts, audios, rates))]


def encode_results(predictions: Sequence[Any], modalities: Sequence[str]) -> dict[str, np.ndarray]:
    """Predictions of one request -> its output tensors (batch dimension first)."""
    return {
        "score": np.array([[p.score] for p in predictions], dtype=np.float32),
        "label": np.array([[p.label.encode()] for p in predictions], dtype=object),
        "weights": np.array([[p.weights[m] for m in modalities] for p in predictions], dtype=np.float32).reshape(len(predictions), len(modalities)),
        "notes": np.array([[json.dumps(list(p.notes)).encode()] for p in predictions], dtype=object),
    }


def answer_requests(predictor: Any, requests: Sequence[Mapping[str, np.ndarray | None]], *, max_audio_seconds: float) -> list[dict[str, np.ndarray] | str]:
    """Outputs or an error message per request; the good requests are predicted in one batch.

    Never raises: an unexpected failure of the batch is retried request by request, so it stays
    with the request that caused it.
    """
    decoded: list[list[Utterance] | str] = []
    for inputs in requests:
        try:
            decoded.append(decode_request(inputs, max_audio_seconds=max_audio_seconds))
        except InputError as exc:
            decoded.append(str(exc))
    good = [d for d in decoded if not isinstance(d, str)]
    try:
        flat = _predict(predictor, [u for rows in good for u in rows])
        per_request, k = [], 0
        for rows in good:
            per_request.append(flat[k : k + len(rows)])
            k += len(rows)
    except Exception:  # noqa: BLE001 - isolate the failure to its request
        per_request = []
        for rows in good:
            try:
                per_request.append(_predict(predictor, rows))
            except Exception as exc:  # noqa: BLE001
                per_request.append([f"internal error: {type(exc).__name__}: {exc}"] * len(rows))
    answers: list[dict[str, np.ndarray] | str] = []
    results = iter(per_request)
    for d in decoded:
        if isinstance(d, str):
            answers.append(d)
            continue
        mine = next(results)
        problems = [r if f"row {i}:" in r or len(mine) == 1 else f"row {i}: {r}" for i, r in enumerate(mine) if isinstance(r, str)]
        answers.append("; ".join(problems) if problems else encode_results(mine, predictor.modalities))
    return answers


def _predict(predictor: Any, utterances: Sequence[Utterance]) -> list:
    if not utterances:
        return []
    # messages name the row within its own request, not within the server's batch
    return predictor.predict_each([u.text for u in utterances], [u.audio for u in utterances], [u.sampling_rate for u in utterances],
                                  names=[f"row {u.row}" for u in utterances])


class TritonPythonModel:
    """Triton Python-backend entry points; `model.py` in an exported repository re-exports this class."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils  # only importable inside Triton's Python backend

        from .pipeline import SentimentPredictor

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in (config.get("parameters") or {}).items()}
        self.max_audio_seconds = float(params.get("max_audio_seconds", ServeOptions.max_audio_seconds))
        device = f"cuda:{args['model_instance_device_id']}" if args.get("model_instance_kind") == "GPU" else "cpu"
        checkpoint = Path(args["model_repository"]) / args["model_version"] / "checkpoint"
        self.predictor = SentimentPredictor(checkpoint, device=device, batch_size=config.get("max_batch_size") or 32)
        order = params.get("weights_order")
        if order and order.split(",") != self.predictor.modalities:
            raise ServeError(f"config.pbtxt says weights_order={order} but the checkpoint's modalities are {self.predictor.modalities}")
        # one warm-up call, so that readiness means a first request is served at full speed
        warm = {"text": np.array([[b"warming up"]], dtype=object)}
        if "audio" in self.predictor.modalities:
            t = np.arange(16_000, dtype=np.float32) / 16_000
            warm.update(audio=(0.1 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32), sampling_rate=np.array([[16_000]], dtype=np.int32))
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


# ---------------------------------------------------------------- the server


def model_ready(url: str, name: str = MODEL_NAME, timeout_s: float = 1.0) -> bool:
    """True when Triton at `url` (http://host:port) reports the model ready (server readiness alone is not enough)."""
    try:
        with urllib.request.urlopen(f"{url}/v2/models/{name}/ready", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


# The APIs that change or expose the server's state are restricted to this header, which no client
# can send: its name holds a space (HTTP/1.1 and HTTP/2 header names are tokens; Triton's HTTP and
# gRPC frontends refuse a request carrying one) and its value a line break (no header value holds
# one). Unlike a random token, reading it in /proc/<pid>/cmdline gives nothing. Statistics stay open:
# operators and benchmarks read batch sizes and queue times there.
SEALED_HEADER = ("fastdaf sealed", "no client\ncan send this")
SEALED_APIS = ("model-repository", "shared-memory", "trace", "logging")


def tritonserver_command(repository: Path, backends: Path, *, host: str, http_port: int, grpc_port: int, exit_timeout_s: int,
                         verbose: bool) -> list[str]:
    """The tritonserver command line: the repository loaded once (model control off), nothing secret in it."""
    from pytriton.utils.distribution import get_root_module_path

    sealed = f"{','.join(SEALED_APIS)}:{SEALED_HEADER[0]}={SEALED_HEADER[1]}"
    return [
        str(get_root_module_path() / "tritonserver" / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        "--model-control-mode=none",
        "--exit-on-error=true",
        f"--backend-directory={backends}",
        # a prefix of this server's own, so that servers side by side share no region
        f"--backend-config=python,shm-region-prefix-name=fastdaf{os.getpid()}_",
        "--backend-config=python,shm-default-byte-size=4194304",
        "--backend-config=python,shm-growth-byte-size=1048576",
        f"--http-address={host}", f"--http-port={http_port}", f"--http-restricted-api={sealed}",
        f"--grpc-address={host}", f"--grpc-port={grpc_port}", f"--grpc-restricted-protocol={sealed}",
        "--allow-metrics=false",
        f"--exit-timeout-secs={exit_timeout_s}",
        f"--log-verbose={1 if verbose else 0}",
    ]


def _prepare_backends(directory: Path) -> Path:
    """Triton's Python backend with the stub for this interpreter's version, as PyTriton lays it out."""
    import sys

    from pytriton.utils.distribution import get_root_module_path, get_stub_path

    backends = directory / "backends"
    shutil.copytree(get_root_module_path() / "tritonserver" / "backends", backends, ignore=shutil.ignore_patterns("__pycache__"))
    stub = get_stub_path(f"{sys.version_info[0]}.{sys.version_info[1]}")
    if not stub.is_file():
        raise ServeError(f"nvidia-pytriton bundles no Python-backend stub for Python {sys.version_info[0]}.{sys.version_info[1]} ({stub})")
    shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    return backends


def _server_environment() -> dict[str, str]:
    # Triton's own libraries ship beside PyTriton; the Python-backend stub embeds libpython, and
    # without LIBDIR first it may load the system's instead of the one behind this interpreter
    # (and so miss this environment's packages); it finds the interpreter's prefix on PATH.
    import sys

    from pytriton.utils.distribution import get_libs_path

    env = dict(os.environ)
    libs = [d for d in (sysconfig.get_config_var("LIBDIR"), str(get_libs_path()), env.get("LD_LIBRARY_PATH")) if d]
    env["LD_LIBRARY_PATH"] = ":".join(libs)
    env["PATH"] = f"{Path(sys.exec_prefix) / 'bin'}:{env.get('PATH', '')}"
    return env


def _die_with_parent() -> Callable[[], None]:
    """For Popen's preexec_fn: tritonserver gets SIGTERM (a graceful stop) if fastdaf dies, even by SIGKILL."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the forked child only calls it
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve(
    checkpoint: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    http_port: int = 8000,
    grpc_port: int = 8001,
    options: ServeOptions = ServeOptions(),
    exit_timeout_s: int = 20,
    startup_timeout_s: float = 300.0,
    verbose: bool = False,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Run Triton (bundled with nvidia-pytriton) on a fastdaf model repository until SIGTERM/SIGINT or `stop`.

    The checkpoint is loaded and validated first. On a stop signal Triton stops taking new
    connections and finishes the requests it accepted (for at most `exit_timeout_s`); it is killed
    if it has not exited 10 s after that. Returns 0 after a clean stop, 1 if the server died.
    """
    import subprocess

    try:
        import pytriton.utils.distribution  # noqa: F401 - only to locate the bundled tritonserver
    except ImportError as exc:
        raise ServeError(f"fastdaf serve needs nvidia-pytriton, which is not importable ({exc}); install it with: pip install 'fastdaf[serve]'") from None
    if not 1 <= exit_timeout_s <= 25:
        raise InputError(f"exit_timeout_s must be in 1..25, got {exit_timeout_s}")
    validate_checkpoint(checkpoint)
    stop = stop or threading.Event()
    url = f"http://{host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{http_port}"
    with tempfile.TemporaryDirectory(prefix="fastdaf-triton-") as tmp:  # mode 0700: no other user can change the repository
        repository = write_model_repository(Path(tmp) / "models", checkpoint, options)
        command = tritonserver_command(repository, _prepare_backends(Path(tmp)), host=host, http_port=http_port, grpc_port=grpc_port,
                                       exit_timeout_s=exit_timeout_s, verbose=verbose)
        log_file = None if verbose else Path(tmp) / "tritonserver.log"

        def failure(what: str) -> ServeError:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-15:] if log_file and log_file.exists() else []
            hint = ("; the server log ends with:\n  " + "\n  ".join(tail)) if tail else "; rerun with --verbose for the server log"
            return ServeError(what + hint)

        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):  # set explicitly: a backgrounded process inherits SIGINT ignored
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        log = open(log_file, "wb") if log_file else None  # noqa: SIM115 - closed below, after the server
        server = None
        try:
            started = time.perf_counter()
            try:
                server = subprocess.Popen(command, env=_server_environment(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT if log else None,
                                          preexec_fn=_die_with_parent())
            except OSError as exc:
                raise failure(f"Triton did not start ({type(exc).__name__}: {exc})") from None
            while not model_ready(url):
                if server.poll() is not None or stop.is_set():
                    raise failure("Triton stopped before the model was ready")
                if time.perf_counter() - started > startup_timeout_s:
                    raise failure(f"the model was not ready after {startup_timeout_s:.0f} s")
                time.sleep(0.1)
            if on_ready is not None:
                on_ready({"model": MODEL_NAME, "http": url, "grpc": f"{host}:{grpc_port}", "pid": os.getpid(),
                          "startup_s": round(time.perf_counter() - started, 2)})
            while not stop.wait(0.5):
                if server.poll() is not None:
                    return 1
            return 0
        finally:
            if server is not None and server.poll() is None:
                server.send_signal(signal.SIGINT)  # it stops taking connections, drains the open ones, exits
                try:
                    server.wait(exit_timeout_s + 10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            if log is not None:
                log.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerProcess:
    """`fastdaf serve --json` in a child process of its own session, ready when the constructor returns.

    For tests, benchmarks and scripts that need a server beside them; `stop()` sends SIGTERM (the
    graceful path) and returns the exit code. Ports default to free loopback ports.
    """

    def __init__(self, *serve_args: str, http_port: int | None = None, grpc_port: int | None = None,
                 env: Mapping[str, str] | None = None, startup_timeout_s: float = 300.0) -> None:
        import subprocess
        import sys

        self.http_port, self.grpc_port = http_port or free_port(), grpc_port or free_port()
        self.http, self.grpc = f"127.0.0.1:{self.http_port}", f"127.0.0.1:{self.grpc_port}"
        command = [sys.executable, "-m", "fastdaf.cli", "serve", "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                   "--json", *serve_args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, **(env or {})), start_new_session=True)
        self.lines: list[str] = []
        self._terminated = False
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + startup_timeout_s
        while not self._ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                time.sleep(0.2)  # let the reader take the last lines
                raise ServeError("fastdaf serve did not become ready; its output ends with:\n" + "".join(self.lines[-30:]))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith('{"event": "ready"'):
                self._ready.set()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith('{"event"')]

    def terminate(self) -> None:
        """SIGTERM, once: the server stops taking connections and finishes the accepted requests.

        Not twice: a second SIGTERM after `serve` has put back the default handlers, while the
        process exits, would kill it (exit code -15) instead of letting it finish.
        """
        if self.proc.poll() is None and not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 60.0) -> int:
        import subprocess

        self.terminate()
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServeError(f"fastdaf serve did not stop within {timeout_s:.0f} s of SIGTERM; killed it") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> ServerProcess:  # noqa: PYI034 - typing.Self needs Python 3.11; fastdaf supports 3.10
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc.poll() is None:
            try:
                self.stop()
            finally:
                self.kill()
