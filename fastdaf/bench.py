"""`fastdaf-bench`: latency benchmarks on whatever device is present; `--json` for machines.

`e2e` times the whole prediction per encoder backend (fastdaf.encoders.runners): text encoder, audio
encoder and head separately and in sequence (total), for given batch sizes, text lengths (tokens)
and audio durations. Encoders are built with random weights from their configurations (latency does
not depend on the weights, and the GPU machine lacks the MiniLM package); inputs are random token
ids and random audio, never zeros. `--head` picks the head behind the encoders: `auto` (the
predictor's choice: the fused head on CUDA) or a head backend below (`eager` with `--backends eager`
is the all-eager baseline).

`serve` sends a load to a served model (`fastdaf serve`, or Triton with an `export-triton`
repository) from concurrent clients and reports requests/s and latency percentiles
(fastdaf.serving.client.run_load); `--records` keeps every request's outcome.

`head` times the DAF head per backend, side by side in one process:
- `eager`: the reference DAFHead;
- `cudagraph`: the reference replayed from a CUDA graph (CUDA only);
- `compile`: the reference under torch.compile;
- `fused`: the fused Triton head (CUDA only);
- `fused-cudagraph`: the fused head replayed from a CUDA graph (CUDA only).
Each call is timed wall-clock (host clock around the call and a device synchronise), after
warm-up (compilation, autotuning and graph capture stay out of the numbers); p50/p90/p99 over the
iterations, throughput = batch / p50.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import triton

from .audio.acoustic import FEATURE_DIM
from .choices import ENCODER_BACKENDS
from .config import DAFConfig
from .encoders.acoustic import AcousticCore
from .encoders.runners import Buckets, InputSpec, capture_cuda_graph, make_runner
from .encoders.speech import SpeechCore
from .encoders.text import TextCore
from .errors import FastDAFError, InputError, UnsupportedError
from .fused import FusedDAFHead
from .head import DAFHead
from .reference_check import random_head
from .serving.client import run_load

BACKENDS = ("eager", "cudagraph", "compile", "fused", "fused-cudagraph")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def environment(device: torch.device) -> dict[str, Any]:
    info = {"torch": torch.__version__, "triton": triton.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
    else:
        info["device"] = f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
    return info


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], device: torch.device, *, warmup: int, iters: int) -> dict[str, float]:
    """Wall-clock latency of fn() in microseconds: p50/p90/p99/mean over `iters` calls after `warmup`."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        synchronize(device)
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]  # noqa: E731
    return {
        "p50_us": statistics.median(samples),
        "p90_us": pick(0.90),
        "p99_us": pick(0.99),
        "mean_us": statistics.fmean(samples),
    }


def random_features(config: DAFConfig, batch: int, dtype: torch.dtype, device: torch.device, seed: int = 1):
    g = torch.Generator(device=device).manual_seed(seed)
    feats = {
        m: torch.randn(batch, d, generator=g, device=device, dtype=torch.float32).to(dtype)
        for m, d in config.modalities.items()
    }
    present = torch.rand(batch, config.n_modalities, generator=g, device=device) < 0.9
    present[:, 0] = True
    return feats, present


def capture_graph(fn: Callable[[], Any], device: torch.device) -> Callable[[], None]:
    """Capture fn in a CUDA graph (after warm-up, as the encoders' graph runner does) and return its replay."""
    with torch.cuda.device(device):
        graph, _ = capture_cuda_graph(fn, warmup=3)
    return graph.replay


def head_callables(
    head: DAFHead, feats: dict, present: torch.Tensor, backends: Sequence[str], *, compile_mode: str = "default"
) -> dict[str, Callable[[], Any]]:
    """One zero-argument callable per backend, all computing the same head on the same inputs."""
    device = present.device
    cuda = device.type == "cuda"
    calls: dict[str, Callable[[], Any]] = {}
    unavailable = [b for b in backends if not cuda and b in ("cudagraph", "fused", "fused-cudagraph")]
    if unavailable:
        raise InputError(f"backend(s) {unavailable} need a CUDA device; on {device} choose from ['eager', 'compile']")
    with torch.no_grad():
        if "eager" in backends or "cudagraph" in backends:
            calls["eager"] = lambda: head(feats, present, check=False)
        if "cudagraph" in backends:
            calls["cudagraph"] = capture_graph(lambda: head(feats, present, check=False), device)
        if "compile" in backends:
            compiled = torch.compile(lambda f, p: head(f, p, check=False), mode=compile_mode)
            calls["compile"] = lambda: compiled(feats, present)
        if "fused" in backends or "fused-cudagraph" in backends:
            fused = FusedDAFHead.from_head(head)
            B = present.shape[0]
            out = (
                torch.empty(B, head.config.n_outputs, device=device),
                torch.empty(B, head.config.n_modalities, device=device),
            )
            calls["fused"] = lambda: fused(feats, present, out=out, check=False)
            if "fused-cudagraph" in backends:
                calls["fused"]()  # autotune before capture
                calls["fused-cudagraph"] = capture_graph(calls["fused"], device)
    return {b: calls[b] for b in backends}


def bench_head(
    config: DAFConfig,
    batch_sizes: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
    backends: Sequence[str],
    *,
    warmup: int = 20,
    iters: int = 200,
    compile_mode: str = "default",
) -> list[dict[str, Any]]:
    """Rows of {batch, backend, p50_us, ..., throughput, speedup_vs_eager} for every batch and backend."""
    head = random_head(config, device)
    rows = []
    for batch in batch_sizes:
        feats, present = random_features(config, batch, dtype, device)
        with torch.no_grad():
            calls = head_callables(head, feats, present, backends, compile_mode=compile_mode)
            timings = {name: time_calls(fn, device, warmup=warmup, iters=iters) for name, fn in calls.items()}
        base = timings.get("eager")
        for name, t in timings.items():
            row = {
                "batch": batch,
                "backend": name,
                "dtype": str(dtype).replace("torch.", ""),
                **t,
                "rows_per_s": batch / (t["p50_us"] * 1e-6),
            }
            if base is not None:
                row["speedup_vs_eager"] = base["p50_us"] / t["p50_us"]
            rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    header = f"{'batch':>7} {'backend':>16} {'dtype':>9} {'p50 us':>10} {'p90 us':>10} {'p99 us':>10} {'rows/s':>12} {'x eager':>8}"
    lines = [header]
    for r in rows:
        speed = f"{r['speedup_vs_eager']:8.2f}" if "speedup_vs_eager" in r else f"{'-':>8}"
        lines.append(
            f"{r['batch']:>7} {r['backend']:>16} {r['dtype']:>9} {r['p50_us']:10.1f} {r['p90_us']:10.1f} {r['p99_us']:10.1f} {r['rows_per_s']:12.0f} {speed}"
        )
    return "\n".join(lines)


def parse_modalities(text: str) -> dict[str, int]:
    """'text=768,audio=74' -> {'text': 768, 'audio': 74}."""
    out: dict[str, int] = {}
    for part in text.split(","):
        name, _, dim = part.partition("=")
        if not name or not dim.strip().isdigit():
            raise InputError(
                f"--modalities takes name=dim pairs separated by commas (e.g. text=768,audio=74), got {text!r}"
            )
        out[name.strip()] = int(dim)
    return out


# The head behind each end-to-end row: "auto" is the product's choice (the fused head on CUDA, under
# the row's CUDA graph for graph backends; the reference head on CPU, compiled for "compile"); any
# head_callables backend pins it ("eager" for the all-eager baseline).
E2E_HEADS = ("auto", *BACKENDS)
MINILM_L6 = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
)
E2E_BACKENDS = tuple(b for b in ENCODER_BACKENDS if b != "auto")  # each concrete encoder backend


def text_core(name: str, device: torch.device, dtype: torch.dtype, backend: str, max_length: int):
    """A text encoder core with random weights: 'minilm' (the default encoder's size), 'bert-base', or a path to a config."""
    import transformers as tf  # noqa: PLC0415 - heavy: only when a Hugging Face model is built

    if name == "minilm":
        config = tf.BertConfig(**MINILM_L6)
    elif name == "bert-base":
        config = tf.BertConfig()
    else:
        config = tf.AutoConfig.from_pretrained(name)
    layers = [1, 2, 3, 4, 5, 6] if name == "minilm" else None  # the bundled model's layer mix
    core = TextCore(tf.AutoModel.from_config(config), layers, "mean").to(device, dtype).eval()
    specs = {"input_ids": InputSpec(pad=0), "attention_mask": InputSpec(pad=0)}
    lengths = tuple(n for n in (16, 32, 64, 128, 256) if n < max_length) + (max_length,)
    example = {
        "input_ids": torch.randint(1000, 2000, (1, 64), device=device),
        "attention_mask": torch.ones(1, 64, dtype=torch.long, device=device),
    }
    runner = make_runner(
        core,
        backend,
        device,
        specs=specs,
        example=example,
        output_names=("vector",),
        buckets=Buckets(length=lengths),
        dtype=dtype,
    )
    return runner, config.hidden_size, config.vocab_size


def audio_core(name: str, device: torch.device, dtype: torch.dtype, backend: str, seconds: float):
    """An audio encoder core: 'acoustic' (built-in) or 'hubert-base' / a config path (random weights)."""
    rate = 16000
    buckets = Buckets(batch=(1, 2, 4, 8, 16, 32, 64), length=(int(seconds * rate),))
    if name == "acoustic":
        specs = {"waveforms": InputSpec(pad=0.0), "lengths": InputSpec(has_length=False, length_pad="size")}
        runner = make_runner(AcousticCore(), backend, device, specs=specs, buckets=buckets, exportable=False)
        return runner, FEATURE_DIM, "acoustic"
    import transformers as tf  # noqa: PLC0415 - heavy: only when a Hugging Face model is built

    config = tf.HubertConfig() if name == "hubert-base" else tf.AutoConfig.from_pretrained(name)
    model = tf.AutoModel.from_config(config).to(device, dtype).eval()
    core = SpeechCore(model, None, "input_values")
    masked = getattr(config, "feat_extract_norm", "layer") == "layer"
    specs = {"inputs": InputSpec(pad=0.0), "frames": InputSpec(has_length=False, pad=1)}
    example = {"inputs": torch.randn(1, rate, device=device, dtype=dtype), "frames": torch.tensor([49], device=device)}
    runner = make_runner(
        core,
        backend,
        device,
        specs=specs,
        example=example,
        output_names=("sums", "counts"),
        buckets=buckets,
        graph_safe=masked,
        dtype=dtype,
    )
    return runner, config.hidden_size, "speech"


def bench_e2e(
    device: torch.device,
    backends: Sequence[str],
    batch_sizes: Sequence[int],
    *,
    text_model: str = "minilm",
    audio_model: str = "acoustic",
    tokens: int = 64,
    seconds: float = 10.0,
    dtype: torch.dtype | None = None,
    warmup: int = 10,
    iters: int = 100,
    head: str = "auto",
) -> list[dict[str, Any]]:
    """Rows of {backend, head, batch, text/audio/head/total p50/p90/p99 (us), utterances/s, peak memory}.

    head: which head runs after the encoders (E2E_HEADS): "auto" as a predictor would, "eager" for an
    all-eager row (eager encoders and the reference head), or any other head_callables backend.
    """

    if head not in E2E_HEADS:
        raise InputError(f"head {head!r} is not accepted; choose one of {list(E2E_HEADS)}")
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    rows = []
    for backend in backends:
        try:
            text_run, text_dim, vocab = text_core(text_model, device, dtype, backend, max(tokens, 16))
            audio_run, audio_dim, audio_kind = audio_core(audio_model, device, dtype, backend, seconds)
        except UnsupportedError as exc:
            rows.append({"backend": backend, "skipped": str(exc)})
            continue
        dafhead = random_head(DAFConfig({"text": text_dim, "audio": audio_dim}, projection_size=128), device)
        head_backend = (
            head
            if head != "auto"
            else (
                ("fused-cudagraph" if backend in ("cudagraph", "tensorrt") else "fused")
                if device.type == "cuda"
                else ("compile" if backend == "compile" else "eager")
            )
        )
        for batch in batch_sizes:
            g = torch.Generator(device=device).manual_seed(batch)
            ids = torch.randint(1000, vocab - 1, (batch, tokens), generator=g, device=device)
            mask = torch.ones(batch, tokens, dtype=torch.long, device=device)
            samples = int(seconds * 16000)
            wave = torch.randn(batch, samples, generator=g, device=device) * 0.1
            if audio_kind == "acoustic":
                audio_inputs = {"waveforms": wave, "lengths": torch.full((batch,), samples, device=device)}
            else:
                frames = torch.full((batch,), (samples - 400) // 320 + 1, device=device)
                audio_inputs = {"inputs": wave.to(dtype), "frames": frames}
            feats = {
                "text": torch.randn(batch, text_dim, device=device),
                "audio": torch.randn(batch, audio_dim, device=device),
            }
            present = torch.ones(batch, 2, dtype=torch.bool, device=device)
            with torch.inference_mode():
                head_call = head_callables(dafhead, feats, present, [head_backend])[head_backend]
                text_call = lambda: text_run({"input_ids": ids, "attention_mask": mask})  # noqa: E731
                audio_call = lambda: audio_run(audio_inputs)  # noqa: E731

                def total():
                    text_call()
                    audio_call()
                    head_call()

                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                stages = {
                    name: time_calls(fn, device, warmup=warmup, iters=iters)
                    for name, fn in (("text", text_call), ("audio", audio_call), ("head", head_call), ("total", total))
                }
            row: dict[str, Any] = {
                "backend": backend,
                "batch": batch,
                "tokens": tokens,
                "audio_seconds": seconds,
                "text_model": text_model,
                "audio_model": audio_model,
                "head": head_backend,
            }
            for name, t in stages.items():
                row.update({f"{name}_{k}": v for k, v in t.items() if k != "mean_us"})
            row["utterances_per_s"] = batch / (stages["total"]["p50_us"] * 1e-6)
            row["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
            rows.append(row)
    return rows


def format_e2e(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'backend':>10} {'batch':>6} {'text p50':>10} {'audio p50':>10} {'head p50':>10} {'total p50':>10} {'total p99':>10} {'utt/s':>10}"
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['backend']:>10}  skipped: {r['skipped']}")
            continue
        lines.append(
            f"{r['backend']:>10} {r['batch']:>6} {r['text_p50_us']:10.1f} {r['audio_p50_us']:10.1f} {r['head_p50_us']:10.1f} "
            f"{r['total_p50_us']:10.1f} {r['total_p99_us']:10.1f} {r['utterances_per_s']:10.1f}"
        )
    return "\n".join(lines) + "\n(latencies in microseconds, wall clock per call)"


def plot_e2e(rows: list[dict[str, Any]], path: str) -> str:
    import matplotlib  # noqa: PLC0415 - plot extra, only when drawing

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - plot extra, only when drawing

    fig, ax = plt.subplots(figsize=(6, 4))
    for backend in dict.fromkeys(r["backend"] for r in rows if "skipped" not in r):
        pts = [
            (r["batch"], r["total_p50_us"] / 1000) for r in rows if r.get("backend") == backend and "skipped" not in r
        ]
        ax.plot([b for b, _ in pts], [t for _, t in pts], marker="o", label=backend)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("end-to-end latency p50 (ms)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastdaf-bench", description="fastdaf latency benchmarks")
    sub = parser.add_subparsers(dest="mode", required=True)
    head = sub.add_parser("head", help="time the DAF head per backend")
    head.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    head.add_argument("--dtype", choices=DTYPES, default="fp32")
    head.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 4096])
    head.add_argument("--modalities", default="text=768,audio=74", help="name=dim,... (default text=768,audio=74)")
    head.add_argument("--projection-size", type=int, default=256)
    head.add_argument("--attention-size", type=int, default=64)
    head.add_argument("--hidden-size", type=int, default=128)
    head.add_argument("--fusion", choices=("dynamic", "static", "mean"), default="dynamic")
    head.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=None, help="default: every backend the device supports"
    )
    head.add_argument("--compile-mode", default="default", help="torch.compile mode for the compile backend")
    head.add_argument("--warmup", type=int, default=20)
    head.add_argument("--iters", type=int, default=200)
    head.add_argument("--json", action="store_true", help="print one JSON object")

    e2e = sub.add_parser("e2e", help="time the full prediction (text encoder, audio encoder, head) per encoder backend")
    e2e.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    e2e.add_argument(
        "--backends",
        nargs="+",
        choices=E2E_BACKENDS,
        default=None,
        help="default: eager, compile, cudagraph, tensorrt on CUDA; eager, compile on CPU",
    )
    e2e.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64])
    e2e.add_argument("--tokens", type=int, default=64, help="text length in tokens")
    e2e.add_argument("--audio-seconds", type=float, default=10.0)
    e2e.add_argument(
        "--text-model",
        default="minilm",
        help="'minilm' (default encoder's size), 'bert-base', or a config path (random weights)",
    )
    e2e.add_argument(
        "--audio-model",
        default="acoustic",
        help="'acoustic' (built-in), 'hubert-base', or a config path (random weights)",
    )
    e2e.add_argument("--dtype", choices=DTYPES, default=None, help="default: fp16 on CUDA, fp32 on CPU")
    e2e.add_argument("--warmup", type=int, default=10)
    e2e.add_argument("--iters", type=int, default=100)
    e2e.add_argument(
        "--head",
        choices=E2E_HEADS,
        default="auto",
        help="head after the encoders: auto (fused on CUDA, reference on CPU) or a head backend; eager for an all-eager row",
    )
    e2e.add_argument("--plot", default=None, help="write a PNG of latency vs batch per backend")
    e2e.add_argument("--json", action="store_true")

    serve = sub.add_parser("serve", help="load a served model (fastdaf serve / Triton) from concurrent clients")
    serve.add_argument(
        "--url", default="127.0.0.1:8000", help="host:port of the HTTP (or, with --protocol grpc, gRPC) endpoint"
    )
    serve.add_argument("--protocol", choices=("http", "grpc"), default="http")
    serve.add_argument("--requests", type=int, default=1000)
    serve.add_argument("--concurrency", type=int, default=32, help="concurrent clients, one connection each")
    serve.add_argument(
        "--mix",
        choices=("mixed", "text+audio", "text", "audio"),
        default="mixed",
        help="inputs of the good requests (mixed: text only, audio only, both in turn)",
    )
    serve.add_argument(
        "--mark-absent",
        action="store_true",
        help="send every input on every request, missing modalities marked absent (lets Triton batch mixed traffic)",
    )
    serve.add_argument(
        "--bad-every", type=int, default=0, help="make every Nth request a bad one (each kind in turn); 0: none"
    )
    serve.add_argument(
        "--records", default=None, help="write one JSON line per request (outcome, latency) to this file"
    )
    serve.add_argument("--json", action="store_true")
    return parser


def main_serve(args: argparse.Namespace) -> int:
    if args.bad_every < 0:
        print("fastdaf-bench: error: --bad-every must be >= 0", file=sys.stderr)
        return 2
    try:
        summary, records = run_load(
            args.url,
            args.requests,
            concurrency=args.concurrency,
            protocol=args.protocol,
            bad_every=args.bad_every,
            mix=args.mix,
            mark_absent=args.mark_absent,
        )
    except FastDAFError as exc:
        print(f"fastdaf-bench: error: {exc}", file=sys.stderr)
        return 2
    if args.records:
        with open(args.records, "w") as f:
            f.writelines(json.dumps(record) + "\n" for record in records)
    if args.json:
        print(
            json.dumps({"mode": "serve", "environment": environment(torch.device("cpu")), "results": summary}, indent=2)
        )
    else:
        lat = summary["latency_ms_good"]
        print(
            f"fastdaf-bench serve: {summary['requests']} {args.mix} requests ({summary['bad_requests_sent']} bad) over {args.protocol} from "
            f"{summary['concurrency']} clients to {summary['url']}: {summary['requests_per_s']} requests/s, "
            f"latency of good requests p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms; "
            f"{summary['succeeded']} succeeded, {summary['failed']} failed"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mode == "serve":
        return main_serve(args)
    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but no CUDA device is available; use --device cpu")
        if min(args.batch_sizes) < 1 or args.warmup < 0 or args.iters < 1:
            raise InputError("batch sizes and --iters must be >= 1, --warmup >= 0")
        if args.mode == "e2e":
            if args.tokens < 2 or args.audio_seconds < 0.1:
                raise InputError("--tokens must be >= 2 and --audio-seconds >= 0.1")
            backends = args.backends or (list(E2E_BACKENDS) if device.type == "cuda" else ["eager", "compile"])
            rows = bench_e2e(
                device,
                backends,
                args.batch_sizes,
                text_model=args.text_model,
                audio_model=args.audio_model,
                tokens=args.tokens,
                seconds=args.audio_seconds,
                dtype=DTYPES[args.dtype] if args.dtype else None,
                warmup=args.warmup,
                iters=args.iters,
                head=args.head,
            )
            config = {
                "text_model": args.text_model,
                "audio_model": args.audio_model,
                "tokens": args.tokens,
                "audio_seconds": args.audio_seconds,
                "head": args.head,
            }
        else:
            backends = args.backends or (list(BACKENDS) if device.type == "cuda" else ["eager", "compile"])
            head_config = DAFConfig(
                parse_modalities(args.modalities),
                projection_size=args.projection_size,
                attention_size=args.attention_size,
                hidden_size=args.hidden_size,
                fusion=args.fusion,
            )
            rows = bench_head(
                head_config,
                args.batch_sizes,
                DTYPES[args.dtype],
                device,
                backends,
                warmup=args.warmup,
                iters=args.iters,
                compile_mode=args.compile_mode,
            )
            config = head_config.to_dict()
    except FastDAFError as exc:
        print(f"fastdaf-bench: error: {exc}", file=sys.stderr)
        return 2
    env = environment(device)
    if getattr(args, "plot", None):
        plot_e2e(rows, args.plot)
    if args.json:
        print(json.dumps({"mode": args.mode, "environment": env, "config": config, "results": rows}, indent=2))
    else:
        print(f"fastdaf-bench {args.mode} on {env['device']} (torch {env['torch']}, triton {env['triton']}): {config}")
        print(format_e2e(rows) if args.mode == "e2e" else format_rows(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
