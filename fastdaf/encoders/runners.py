"""One interface for running a frozen encoder's tensor core: eager, torch.compile, CUDA graphs, TensorRT.

A *core* is an `nn.Module` whose forward takes named tensors and returns a tensor (or a tuple):
the encoder's network plus its pooling, so that everything between the inputs and the utterance
vector runs inside the compiled or captured region. A `Runner` wraps a core:

- `eager`: the module as it is.
- `compile`: `torch.compile(module, dynamic=True)`.
- `cudagraph` (CUDA only): inputs are padded up to a (batch, length) bucket, one graph is captured
  per bucket on first use and replayed after copying the inputs into its static
  buffers; at most `max_graphs` graphs are kept (least recently used evicted). Bigger inputs than the
  largest bucket run eagerly. Padding uses each input's pad value (an attention mask of 0, a length
  of the padded size, ...), so this needs padding-invariant cores; the encoders declare that
  (`graph_safe`). Cores that are not (group-norm speech feature encoders such as HuBERT see zero
  padding as signal) get one graph per *exact* input shape instead (`ExactShapes`: nothing is
  padded, so the graph computes what eager computes), in the same bounded pool and under the same
  largest batch and length; each new shape costs a capture, so `auto` keeps such cores eager.
- `tensorrt` (CUDA, needs the `tensorrt` package): ONNX export of the core, a TensorRT engine with one
  optimisation profile spanning the buckets, cached on disk keyed by the core's weights, shapes,
  dtype and the versions of torch, TensorRT and fastdaf. Refused for cores that are not padding-invariant.
- `auto`: TensorRT if importable, else CUDA graphs on CUDA, else eager (eager for cores that are
  not padding-invariant, or not capturable).

A core is *capturable* when nothing in its forward waits for the host or copies from it (`.item()`,
`if tensor:`, tensors made from Python data, outputs sized by the data): a CUDA graph capture fails
on those. fastdaf's own cores are (tests/encoders/test_capture_safety.py runs each under a dispatch tracer);
transformers' code for BERT-style text models and for masked wav2vec2-style speech models is not
(transformers 5.25: a host read of the attention mask), so those encoders declare `capturable=False`:
`auto` runs them eagerly and `cudagraph` is refused with the reason.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..choices import ENCODER_BACKENDS
from ..errors import EncoderError, UnsupportedError
from ..version import __version__

Inputs = dict[str, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """How one input of a core is padded: its pad value and whether dim 1 is a bucketed length."""

    pad: float | int = 0
    has_length: bool = True
    length_pad: str = "value"  # "value": fill with `pad`; "size": fill padded rows with the padded length (for lengths)


@dataclasses.dataclass(frozen=True)
class Buckets:
    batch: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    length: tuple[int, ...] = (16, 32, 64, 128, 256)

    def pick(self, batch: int, length: int | None) -> tuple[int, int | None] | None:
        b = next((x for x in self.batch if x >= batch), None)
        if b is None:
            return None
        if length is None:
            return b, None
        n = next((x for x in self.length if x >= length), None)
        return None if n is None else (b, n)


@dataclasses.dataclass(frozen=True)
class ExactShapes:
    """The bucket policy of cores whose outputs depend on padding: every input shape is its own bucket.

    Nothing is padded, so a graph captured for a shape computes exactly what eager does on that input.
    Shapes beyond `max_batch` rows or `max_length` (None: no limit) run eagerly, as with Buckets.
    """

    max_batch: int = 64
    max_length: int | None = None

    def pick(self, batch: int, length: int | None) -> tuple[int, int | None] | None:
        if batch > self.max_batch or (length is not None and self.max_length is not None and length > self.max_length):
            return None
        return batch, length


BucketPolicy = Buckets | ExactShapes


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: PLC0415, F401
    except ImportError:
        return False
    return True


def resolve_backend(
    backend: str, device: torch.device, *, graph_safe: bool = True, exportable: bool = True, capturable: bool = True
) -> str:
    """The concrete backend for `backend` on `device`.

    graph_safe: the core's outputs do not depend on padding (bucketed backends allowed). A core that
    is not graph-safe still gets 'cudagraph' when asked for it (make_runner then captures one graph
    per exact input shape), never TensorRT, and 'auto' keeps it eager (a capture per new shape).
    exportable: the core exports to ONNX that TensorRT can build (the built-in acoustic features are
    FFT work, which TensorRT has no layer for: they use CUDA graphs).
    capturable: a CUDA graph can capture the core (see the module docstring); 'auto' never picks
    'cudagraph' for one that is not, and asking for it is refused.
    """
    if backend not in ENCODER_BACKENDS:
        raise EncoderError(f"backend {backend!r} is not accepted; choose one of {list(ENCODER_BACKENDS)}")
    if backend == "auto":
        if device.type != "cuda" or not graph_safe:
            return "eager"
        if exportable and tensorrt_available():
            return "tensorrt"
        return "cudagraph" if capturable else "eager"
    if backend == "cudagraph" and not capturable:
        raise UnsupportedError(
            "backend 'cudagraph' cannot capture this encoder: transformers' code for it reads a tensor on the host "
            "(the attention mask), which a CUDA graph capture refuses; use 'eager', 'compile' or 'tensorrt'"
        )
    if backend in ("cudagraph", "tensorrt") and device.type != "cuda":
        raise UnsupportedError(f"backend {backend!r} runs on CUDA devices; on {device} use 'eager' or 'compile'")
    if backend == "tensorrt" and not graph_safe:
        raise UnsupportedError(
            "backend 'tensorrt' builds one engine over padded buckets, and this encoder's features change with padding "
            "(a feature encoder that normalises over time); use 'cudagraph' (one graph per exact input shape), "
            "'eager' or 'compile'"
        )
    if backend == "tensorrt" and not exportable:
        raise UnsupportedError(
            "this encoder cannot be exported to TensorRT (its FFTs have no TensorRT layer); use 'cudagraph'"
        )
    if backend == "tensorrt" and not tensorrt_available():
        raise UnsupportedError(
            "backend 'tensorrt' needs the Python package 'tensorrt' (NVIDIA TensorRT 10), which is not installed"
        )
    return backend


class Runner:
    """Callable over named input tensors; the base class runs the core eagerly."""

    name = "eager"

    def __init__(self, core: nn.Module) -> None:
        self.core = core

    def __call__(self, inputs: Inputs) -> Any:
        return self.core(**inputs)


class CompiledRunner(Runner):
    name = "compile"

    def __init__(self, core: nn.Module, mode: str = "default") -> None:
        super().__init__(core)
        self.compiled = torch.compile(core, dynamic=True, mode=mode)

    def __call__(self, inputs: Inputs) -> Any:
        return self.compiled(**inputs)


def _batch_and_length(inputs: Inputs, specs: dict[str, InputSpec]) -> tuple[int, int | None]:
    batch = next(iter(inputs.values())).shape[0]
    lengths = {t.shape[1] for n, t in inputs.items() if specs[n].has_length}
    return batch, (max(lengths) if lengths else None)


def pad_to(inputs: Inputs, specs: dict[str, InputSpec], batch: int, length: int | None) -> Inputs:
    """Inputs padded to (batch, length) with each input's pad value (lengths: the padded size)."""
    out = {}
    for name, t in inputs.items():
        spec = specs[name]
        shape = list(t.shape)
        shape[0] = batch
        if spec.has_length and length is not None:
            shape[1] = length
        fill = length if spec.length_pad == "size" and length is not None else spec.pad
        padded = torch.full(shape, fill, dtype=t.dtype, device=t.device)
        padded[tuple(slice(0, s) for s in t.shape)] = t
        out[name] = padded
    return out


def _has_shape(inputs: Inputs, specs: dict[str, InputSpec], batch: int, length: int | None) -> bool:
    """Whether every input already has the bucket's batch (and length): then padding would copy it unchanged."""
    return all(
        t.shape[0] == batch and (length is None or not specs[n].has_length or t.shape[1] == length)
        for n, t in inputs.items()
    )


def _slice_rows(out: Any, n: int) -> Any:
    if isinstance(out, torch.Tensor):
        return out[:n]
    return type(out)(o[:n] for o in out)


class BucketedRunner(Runner):
    """Pads inputs up to a bucket and runs a per-bucket callable made by `make` (kept in an LRU pool).

    With `make` = eager this checks padding invariance on any device; CudaGraphRunner makes captured
    graphs. `buckets` is the policy: Buckets (padded sizes) or ExactShapes (no padding).
    """

    name = "bucketed"

    def __init__(
        self, core: nn.Module, specs: dict[str, InputSpec], buckets: BucketPolicy = Buckets(), *, max_graphs: int = 16
    ) -> None:
        super().__init__(core)
        self.specs, self.buckets, self.max_graphs = specs, buckets, max_graphs
        self.pool: collections.OrderedDict[tuple, Callable[[Inputs], Any]] = collections.OrderedDict()

    def make(self, example: Inputs) -> Callable[[Inputs], Any]:
        return lambda padded: self.core(**padded)

    def entry(self, key: tuple, example: Inputs) -> Callable[[Inputs], Any]:
        if key in self.pool:
            self.pool.move_to_end(key)
            return self.pool[key]
        fn = self.make(example)
        self.pool[key] = fn
        while len(self.pool) > self.max_graphs:
            self.pool.popitem(last=False)
        return fn

    def __call__(self, inputs: Inputs) -> Any:
        batch, length = _batch_and_length(inputs, self.specs)
        key = self.buckets.pick(batch, length)
        if key is None:  # larger than every bucket: run as it is
            return self.core(**inputs)
        padded = inputs if _has_shape(inputs, self.specs, *key) else pad_to(inputs, self.specs, *key)
        return _slice_rows(self.entry(key, padded)(padded), batch)


def capture_cuda_graph(fn: Callable[[], Any], *, warmup: int = 2, pool: Any = None) -> tuple[Any, Any]:
    """Run fn `warmup` times on a side stream (lazy init and autotuning stay out of the graph), then
    capture one call; returns (graph, that call's output, which replays overwrite in place)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        output = fn()
    return graph, output


class CudaGraphRunner(BucketedRunner):
    """Replays one captured CUDA graph per bucket: a padded (batch, length) bucket, or with
    ExactShapes one exact input shape (for cores that are not padding-invariant)."""

    name = "cudagraph"

    def __init__(
        self, core: nn.Module, specs: dict[str, InputSpec], buckets: BucketPolicy = Buckets(), *, max_graphs: int = 16
    ) -> None:
        super().__init__(core, specs, buckets, max_graphs=max_graphs)
        self.memory_pool = torch.cuda.graph_pool_handle()

    def make(self, example: Inputs) -> Callable[[Inputs], Any]:
        static = {n: t.clone() for n, t in example.items()}

        def run() -> Any:
            with torch.inference_mode():
                return self.core(**static)

        graph, output = capture_cuda_graph(run, pool=self.memory_pool)

        def replay(padded: Inputs) -> Any:
            for n, t in padded.items():
                static[n].copy_(t)
            graph.replay()
            return output.clone() if isinstance(output, torch.Tensor) else type(output)(o.clone() for o in output)

        return replay


# ------------------------------------------------------------------------------------------ ONNX / TensorRT
def export_onnx(core: nn.Module, example: Inputs, path: str | Path, *, output_names: Sequence[str]) -> Path:
    """Export a core with dynamic batch (and length) axes: the TensorRT path's first step, tested in onnxruntime."""
    path = Path(path)
    names = list(example)
    dynamic = {n: ({0: "batch", 1: f"{n}_length"} if t.dim() > 1 else {0: "batch"}) for n, t in example.items()}
    dynamic.update({o: {0: "batch"} for o in output_names})

    class _Positional(nn.Module):  # the exporter passes positional arguments
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: torch.Tensor):
            return self.inner(**dict(zip(names, args)))

    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            _Positional(core).eval(),
            tuple(example[n] for n in names),
            str(path),
            input_names=names,
            output_names=list(output_names),
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
    return path


def engine_key(core: nn.Module, buckets: Buckets, dtype: torch.dtype, extra: dict[str, Any]) -> str:
    """Cache key of a TensorRT engine: weights, buckets, dtype and versions."""
    import tensorrt  # noqa: PLC0415 - optional: TensorRT where installed

    h = hashlib.sha256()
    for name, t in sorted(core.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    h.update(
        json.dumps(
            {
                "buckets": dataclasses.asdict(buckets),
                "dtype": str(dtype),
                "torch": torch.__version__,
                "tensorrt": tensorrt.__version__,
                "fastdaf": __version__,
                **extra,
            },
            sort_keys=True,
        ).encode()
    )
    return h.hexdigest()[:32]


def cache_dir() -> Path:
    return Path(os.environ.get("FASTDAF_CACHE", Path.home() / ".cache" / "fastdaf")) / "tensorrt"


class TensorRTRunner(Runner):
    """A TensorRT engine built from the core's ONNX export, one optimisation profile over the buckets."""

    name = "tensorrt"

    def __init__(
        self,
        core: nn.Module,
        specs: dict[str, InputSpec],
        example: Inputs,
        *,
        output_names: Sequence[str],
        buckets: Buckets = Buckets(),
        dtype: torch.dtype = torch.float16,
    ) -> None:
        import tensorrt as trt  # noqa: PLC0415 - optional: TensorRT where installed

        super().__init__(core)
        self.specs, self.buckets, self.output_names = specs, buckets, list(output_names)
        self.logger = trt.Logger(trt.Logger.WARNING)
        path = cache_dir() / f"{engine_key(core, buckets, dtype, {'inputs': sorted(example)})}.engine"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            self._build(example, path, dtype)
        runtime = trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise EncoderError(f"TensorRT could not load the cached engine {path}; delete it to rebuild")
        self.context = self.engine.create_execution_context()

    def _shape(self, t: torch.Tensor, batch: int, length: int | None) -> tuple[int, ...]:
        shape = list(t.shape)
        shape[0] = batch
        if length is not None and t.dim() > 1:
            shape[1] = length
        return tuple(shape)

    def _build(self, example: Inputs, path: Path, dtype: torch.dtype) -> None:
        import tensorrt as trt  # noqa: PLC0415 - optional: TensorRT where installed

        onnx_path = export_onnx(
            self.core.float(),
            {n: t.float() if t.is_floating_point() else t for n, t in example.items()},
            path.with_suffix(".onnx"),
            output_names=self.output_names,
        )
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EncoderError(f"TensorRT could not parse the ONNX export: {errors}")
        config = builder.create_builder_config()
        if dtype == torch.float16:
            config.set_flag(trt.BuilderFlag.FP16)
        elif dtype == torch.bfloat16:
            config.set_flag(trt.BuilderFlag.BF16)
        profile = builder.create_optimization_profile()
        lo_b, hi_b = self.buckets.batch[0], self.buckets.batch[-1]
        lo_l, hi_l = self.buckets.length[0], self.buckets.length[-1]
        for name, t in example.items():
            has_len = self.specs[name].has_length
            profile.set_shape(
                name,
                self._shape(t, lo_b, lo_l if has_len else None),
                self._shape(t, lo_b, t.shape[1] if has_len else None),
                self._shape(t, hi_b, hi_l if has_len else None),
            )
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EncoderError("TensorRT failed to build an engine for this encoder (see the TensorRT log above)")
        path.write_bytes(bytes(serialized))

    def __call__(self, inputs: Inputs) -> Any:
        import tensorrt as trt  # noqa: PLC0415 - optional: TensorRT where installed

        batch, length = _batch_and_length(inputs, self.specs)
        if self.buckets.pick(batch, length) is None:
            return self.core(**inputs)
        stream = torch.cuda.current_stream()
        inputs = {name: t.contiguous() for name, t in inputs.items()}  # kept alive until the engine has run
        for name, t in inputs.items():
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        outputs = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if self.engine.get_tensor_mode(name) != trt.TensorIOMode.OUTPUT:
                continue
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, device="cuda", dtype=torch.float32)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EncoderError("TensorRT execution failed")
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def graph_policy(buckets: Buckets, graph_safe: bool) -> BucketPolicy:
    """Padded buckets for padding-invariant cores; otherwise exact shapes up to the same largest batch and length."""
    return buckets if graph_safe else ExactShapes(max_batch=buckets.batch[-1], max_length=buckets.length[-1])


def make_runner(
    core: nn.Module,
    backend: str,
    device: torch.device,
    *,
    specs: dict[str, InputSpec],
    example: Inputs | None = None,
    output_names: Sequence[str] = ("output",),
    buckets: Buckets = Buckets(),
    graph_safe: bool = True,
    exportable: bool = True,
    capturable: bool = True,
    dtype: torch.dtype = torch.float32,
    max_graphs: int = 16,
) -> Runner:
    """The runner for `backend` (see the module docstring)."""
    chosen = resolve_backend(backend, device, graph_safe=graph_safe, exportable=exportable, capturable=capturable)
    if chosen == "eager":
        return Runner(core)
    if chosen == "compile":
        return CompiledRunner(core)
    if chosen == "cudagraph":
        return CudaGraphRunner(core, specs, graph_policy(buckets, graph_safe), max_graphs=max_graphs)
    if example is None:
        raise EncoderError("the tensorrt backend needs an example input to export the encoder")
    return TensorRTRunner(core, specs, example, output_names=output_names, buckets=buckets, dtype=dtype)
