"""`fastdaf-bench`: latency benchmarks on whatever device is present; `--json` for machines.

Every mode also appends its measurements as benchmark rows (fastdaf.bench_rows.BenchRow) to the one
results file, `benchmarks/results.jsonl` (`--results FILE` elsewhere, `--no-results` none), and
`fastdaf-bench plot [--results FILE] --out FILE.png` draws that file's p50s in one chart.

`e2e` times the whole prediction per encoder backend (fastdaf.encoders.runners): text encoder, audio
encoder and head separately and in sequence (total), for given batch sizes, text lengths (tokens)
and audio durations. Encoders are built with random weights from their configurations (latency does
not depend on the weights, and the GPU machine lacks the MiniLM package); inputs are random token
ids and random audio, never zeros. The encoder runners use the encoders' own bucket definitions
(text_buckets, acoustic_buckets, speech_buckets of fastdaf.encoders), so on bucketed backends a 10 s
clip is padded to the acoustic encoder's 16 s bucket, as a predictor pads it. `--head` picks the head
behind the encoders from fastdaf.choices.HEADS: `auto` (the predictor's choice: the fused head on
CUDA, the reference head elsewhere), `fused` or `reference`; it runs the way the encoders do (under a
CUDA graph behind cudagraph/tensorrt encoders on CUDA, compiled behind compile encoders), so
`--backends eager --head reference` is the all-eager baseline.

`serve` sends a load to a served model (`fastdaf serve`, or Triton with an `export-triton`
repository) from concurrent clients and reports requests/s and latency percentiles
(fastdaf.serving.client.run_load); `--records` keeps every request's outcome.

`head` times the DAF head per backend, side by side in one process; each backend is a head of
fastdaf.choices.HEADS and how it runs:
- `reference`: the reference DAFHead (PyTorch);
- `reference-cudagraph`: the reference replayed from a CUDA graph (CUDA only);
- `reference-compile`: the reference under torch.compile;
- `fused`: the fused Triton head (CUDA only);
- `fused-cudagraph`: the fused head replayed from a CUDA graph (CUDA only).
The former names `eager`, `cudagraph` and `compile` are still accepted on the command line (a note on
stderr says the new name). Each call is timed wall-clock (host clock around the call and a device
synchronise), after warm-up (compilation, autotuning and graph capture stay out of the numbers);
p50/p90/p99 over the iterations (fastdaf.bench_rows.percentiles), throughput = batch / p50.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from .audio.acoustic import FEATURE_DIM, SAMPLE_RATE
from .bench_charts import plot_e2e, plot_rows
from .bench_rows import (
    DEFAULT_RESULTS,
    BenchRow,
    add_results_options,
    bench_row,
    default_results,
    environment,
    machine_load,
    percentiles,
    reliability_warnings,
    write_results,
)
from .choices import DEFAULT_HEAD, ENCODER_BACKENDS, HEADS
from .config import DAFConfig
from .dtypes import DTYPES
from .encoders.acoustic import AcousticCore, acoustic_buckets
from .encoders.base import pick_device, pick_dtype
from .encoders.bert import NativeBert
from .encoders.runners import InputSpec, capture_cuda_graph, make_runner
from .encoders.speech import SpeechCore, SpeechEncoder, speech_buckets
from .encoders.text import TextCore, text_buckets
from .errors import FastDAFError, InputError, UnsupportedError
from .extras import require
from .fused import SUPPORTED_FUSION, FusedDAFHead
from .head import DAFHead
from .options import CommandParser, device_option
from .pipeline import choose_head
from .reference_check import random_head
from .serving.client import MIXES, PROTOCOLS, run_load

# Head backends: a head of choices.HEADS ("reference": fastdaf.head.DAFHead, "fused": the Triton head), run
# as it is or replayed from a CUDA graph / under torch.compile.
BACKENDS = ("reference", "reference-cudagraph", "reference-compile", "fused", "fused-cudagraph")
CUDA_ONLY = ("reference-cudagraph", "fused", "fused-cudagraph")
# the head backends' former names, still accepted on the command line
BACKEND_ALIASES = {"eager": "reference", "cudagraph": "reference-cudagraph", "compile": "reference-compile"}
# `e2e --head` took a head backend before it took a choices.HEADS word; how the head runs now follows the encoders
HEAD_ALIASES = {"eager": "reference", "cudagraph": "reference", "compile": "reference", "fused-cudagraph": "fused"}


def _alias(aliases: dict[str, str], what: str) -> Callable[[str], str]:
    """An argparse `type` mapping a former name to its new one, with a one-line note on stderr."""

    def convert(word: str) -> str:
        if word in aliases:
            print(f"fastdaf-bench: note: {what} {word!r} is now called {aliases[word]!r}", file=sys.stderr)
            return aliases[word]
        return word

    return convert


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
    return {f"{k}_us": v for k, v in percentiles(samples).items()}


def random_features(config: DAFConfig, batch: int, dtype: torch.dtype, device: torch.device, seed: int = 1):
    g = torch.Generator(device=device).manual_seed(seed)
    feats = {
        m: torch.randn(batch, d, generator=g, device=device, dtype=torch.float32).to(dtype)
        for m, d in config.modalities.items()
    }
    present = torch.rand(batch, config.n_modalities, generator=g, device=device) < 0.9
    present[:, 0] = True
    return feats, present


def head_callables(
    head: DAFHead, feats: dict, present: torch.Tensor, backends: Sequence[str], *, compile_mode: str = "default"
) -> dict[str, Callable[[], Any]]:
    """One zero-argument callable per head backend (BACKENDS), all computing the same head on the same inputs.

    The CUDA-graph backends capture with the encoders' graph code (fastdaf.encoders.runners.capture_cuda_graph).
    """
    device = present.device
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise InputError(f"head backend(s) {unknown} are not accepted; choose from {list(BACKENDS)}")
    unavailable = [b for b in backends if device.type != "cuda" and b in CUDA_ONLY]
    if unavailable:
        available = [b for b in BACKENDS if b not in CUDA_ONLY]
        raise InputError(f"backend(s) {unavailable} need a CUDA device; on {device} choose from {available}")

    def replay(fn: Callable[[], Any]) -> Callable[[], None]:
        with torch.cuda.device(device):
            graph, _ = capture_cuda_graph(fn, warmup=3)
        return graph.replay

    calls: dict[str, Callable[[], Any]] = {}
    with torch.no_grad():
        if "reference" in backends or "reference-cudagraph" in backends:
            calls["reference"] = lambda: head(feats, present, check=False)
        if "reference-cudagraph" in backends:
            calls["reference-cudagraph"] = replay(lambda: head(feats, present, check=False))
        if "reference-compile" in backends:
            compiled = torch.compile(lambda f, p: head(f, p, check=False), mode=compile_mode)
            calls["reference-compile"] = lambda: compiled(feats, present)
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
                calls["fused-cudagraph"] = replay(calls["fused"])
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
    """Rows of {batch, backend, p50_us, ..., rows_per_s, speedup_vs_reference} for every batch and backend."""
    head = random_head(config, device)
    rows = []
    bar = progress_bar(len(batch_sizes) * len(backends), "head")
    for batch in batch_sizes:
        feats, present = random_features(config, batch, dtype, device)
        with torch.no_grad():
            calls = head_callables(head, feats, present, backends, compile_mode=compile_mode)
            timings = {}
            for name, fn in calls.items():
                bar.set_postfix_str(f"batch {batch} {name}")
                timings[name] = time_calls(fn, device, warmup=warmup, iters=iters)
                bar.update()
        base = timings.get("reference")
        for name, t in timings.items():
            row = {
                "batch": batch,
                "backend": name,
                "dtype": str(dtype).replace("torch.", ""),
                **t,
                "rows_per_s": batch / (t["p50_us"] * 1e-6),
            }
            if base is not None:
                row["speedup_vs_reference"] = base["p50_us"] / t["p50_us"]
            rows.append(row)
    bar.close()
    return rows


def progress_bar(total: int, what: str) -> tqdm:
    """Progress of the timing runs on stderr, on a terminal only (JSON on stdout stays clean when piped)."""
    return tqdm(total=total, desc=f"fastdaf-bench {what}", unit="run", file=sys.stderr, disable=None, leave=False)


def head_bench_rows(
    rows: list[dict[str, Any]],
    config: DAFConfig,
    device: torch.device,
    *,
    benchmark: str = "fastdaf-bench head",
    **extra,
) -> list[BenchRow]:
    """bench_head's rows as benchmark rows (fastdaf.bench_rows)."""
    shape = {
        "modalities": dict(config.modalities),
        "projection": config.projection_size,
        "attention": config.attention_size,
        "hidden": config.hidden_size,
    }
    return [
        bench_row(
            benchmark,
            "DAF head",
            device=device,
            backend=r["backend"],
            shape={"batch": r["batch"], **shape},
            dtype=r["dtype"],
            p50_ms=r["p50_us"] / 1e3,
            p90_ms=r["p90_us"] / 1e3,
            p99_ms=r["p99_us"] / 1e3,
            throughput=r["rows_per_s"],
            throughput_unit="rows/s",
            extra={
                "mean_ms": r["mean_us"] / 1e3,
                "fusion": config.fusion,
                **({"speedup_vs_reference": r["speedup_vs_reference"]} if "speedup_vs_reference" in r else {}),
                **extra,
            },
        )
        for r in rows
    ]


def format_rows(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'batch':>7} {'backend':>19} {'dtype':>9} {'p50 us':>10} {'p90 us':>10} {'p99 us':>10} {'rows/s':>12} "
        f"{'x reference':>11}"
    )
    lines = [header]
    for r in rows:
        speed = f"{r['speedup_vs_reference']:11.2f}" if "speedup_vs_reference" in r else f"{'-':>11}"
        lines.append(
            f"{r['batch']:>7} {r['backend']:>19} {r['dtype']:>9} {r['p50_us']:10.1f} {r['p90_us']:10.1f} "
            f"{r['p99_us']:10.1f} {r['rows_per_s']:12.0f} {speed}"
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


MINILM_L6 = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
)
E2E_BACKENDS = tuple(b for b in ENCODER_BACKENDS if b != "auto")  # each concrete encoder backend
# the window a SpeechEncoder cuts audio into by default (its signature's default, the one definition)
SPEECH_WINDOW_SECONDS = inspect.signature(SpeechEncoder).parameters["window_seconds"].default


def text_core(name: str, device: torch.device, dtype: torch.dtype, backend: str, max_length: int):
    """A text encoder core with random weights: 'minilm' (the default encoder's size), 'bert-base', or a path
    to a config; with the text encoder's buckets for max_length."""
    import transformers as tf  # noqa: PLC0415 - heavy: only when a Hugging Face model is built

    if name == "minilm":
        config = tf.BertConfig(**MINILM_L6)
    elif name == "bert-base":
        config = tf.BertConfig()
    else:
        config = tf.AutoConfig.from_pretrained(name)
    layers = [1, 2, 3, 4, 5, 6] if name == "minilm" else None  # the bundled model's layer mix
    # BERT configs run on fastdaf's BERT, as BERT-architecture checkpoints do in the pipeline (and it is
    # capture-safe); others on transformers' model, which a CUDA graph cannot capture (encoders.runners)
    native = config.model_type == "bert"
    model = NativeBert(config.to_dict()) if native else tf.AutoModel.from_config(config)
    core = TextCore(model, layers, "mean").to(device, dtype).eval()
    specs = {"input_ids": InputSpec(pad=0), "attention_mask": InputSpec(pad=0)}
    example = {
        "input_ids": torch.randint(1000, 2000, (1, 64), device=device),
        "attention_mask": torch.ones(1, 64, dtype=torch.long, device=device),
    }
    # fmt: off
    runner = make_runner(core, backend, device, specs=specs, example=example, output_names=("vector",),
                         buckets=text_buckets(max_length), dtype=dtype, capturable=native)
    # fmt: on
    return runner, config.hidden_size, config.vocab_size


def audio_core(name: str, device: torch.device, dtype: torch.dtype, backend: str, seconds: float):
    """An audio encoder core: 'acoustic' (built-in) or 'hubert-base' / a config path (random weights), with the
    encoder's buckets (a speech window of max(20 s, seconds), so that one clip is one window)."""
    rate = SAMPLE_RATE
    if name == "acoustic":
        specs = {"waveforms": InputSpec(pad=0.0), "lengths": InputSpec(has_length=False, length_pad="size")}
        runner = make_runner(AcousticCore(), backend, device, specs=specs, buckets=acoustic_buckets(), exportable=False)
        return runner, FEATURE_DIM, "acoustic"
    import transformers as tf  # noqa: PLC0415 - heavy: only when a Hugging Face model is built

    config = tf.HubertConfig() if name == "hubert-base" else tf.AutoConfig.from_pretrained(name)
    model = tf.AutoModel.from_config(config).to(device, dtype).eval()
    core = SpeechCore(model, None, "input_values")
    masked = getattr(config, "feat_extract_norm", "layer") == "layer"
    specs = {"inputs": InputSpec(pad=0.0), "frames": InputSpec(has_length=False, pad=1)}
    example = {"inputs": torch.randn(1, rate, device=device, dtype=dtype), "frames": torch.tensor([49], device=device)}
    # fmt: off
    runner = make_runner(core, backend, device, specs=specs, example=example, output_names=("sums", "counts"),
                         buckets=speech_buckets(max(SPEECH_WINDOW_SECONDS, seconds), rate), graph_safe=masked,
                         dtype=dtype)
    # fmt: on
    return runner, config.hidden_size, "speech"


def e2e_head_backend(head: str, encoder_backend: str, device: torch.device, config: DAFConfig) -> str:
    """The head backend (BACKENDS) behind encoders run by `encoder_backend`: `head` (choices.HEADS) resolved as
    a predictor does (fastdaf.pipeline.choose_head: auto takes the fused head on CUDA where it supports `config`),
    run the way the encoders run (replayed from a CUDA graph behind cudagraph/tensorrt encoders on CUDA, compiled
    behind compile ones)."""
    if head not in HEADS:
        raise InputError(f"head {head!r} is not accepted; choose one of {list(HEADS)}")
    kind = choose_head(head, config, device)
    if device.type == "cuda" and encoder_backend in ("cudagraph", "tensorrt"):
        return f"{kind}-cudagraph"
    if encoder_backend == "compile" and kind == "reference":
        return "reference-compile"
    return kind


def _unbucketed(runner: Any, batch: int, length: int) -> bool:
    """Whether a graph/TensorRT runner runs this input as it is (eagerly): larger than its largest bucket."""
    policy = getattr(runner, "buckets", None)
    return policy is not None and policy.pick(batch, length) is None


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
    head: str = DEFAULT_HEAD,
) -> list[dict[str, Any]]:
    """Rows of {backend, head, batch, text/audio/head/total p50/p90/p99 (us), utterances/s, peak memory}.

    head: which head runs after the encoders (choices.HEADS; see e2e_head_backend): "auto" as a predictor
    would, "reference" behind eager encoders for the all-eager row. dtype: default as the encoders pick it.
    A row's "unbucketed" lists the stages whose input is larger than their runner's largest bucket (run
    eagerly, as the encoders' runners do).
    """
    if head not in HEADS:
        raise InputError(f"head {head!r} is not accepted; choose one of {list(HEADS)}")
    dtype = dtype or pick_dtype(None, device)
    rows = []
    bar = progress_bar(len(backends) * len(batch_sizes), "e2e")
    for backend in backends:
        bar.set_postfix_str(f"{backend}: building encoders")
        try:
            text_run, text_dim, vocab = text_core(text_model, device, dtype, backend, max(tokens, 16))
            audio_run, audio_dim, audio_kind = audio_core(audio_model, device, dtype, backend, seconds)
        except UnsupportedError as exc:
            rows.append({"backend": backend, "skipped": str(exc)})
            bar.update(len(batch_sizes))
            continue
        dafhead = random_head(DAFConfig({"text": text_dim, "audio": audio_dim}, projection_size=128), device)
        head_backend = e2e_head_backend(head, backend, device, dafhead.config)
        for batch in batch_sizes:
            g = torch.Generator(device=device).manual_seed(batch)
            ids = torch.randint(1000, vocab - 1, (batch, tokens), generator=g, device=device)
            mask = torch.ones(batch, tokens, dtype=torch.long, device=device)
            samples = int(seconds * SAMPLE_RATE)
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
                "dtype": str(dtype).replace("torch.", ""),
            }
            unbucketed = [
                stage
                for stage, runner, length in (("text", text_run, tokens), ("audio", audio_run, samples))
                if _unbucketed(runner, batch, length)
            ]
            if unbucketed:
                row["unbucketed"] = unbucketed
            for name, t in stages.items():
                row.update({f"{name}_{k}": v for k, v in t.items() if k != "mean_us"})
            row["utterances_per_s"] = batch / (stages["total"]["p50_us"] * 1e-6)
            row["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
            rows.append(row)
            bar.set_postfix_str(f"{backend} batch {batch}")
            bar.update()
    bar.close()
    return rows


E2E_STAGES = {"text": "e2e text encoder", "audio": "e2e audio encoder", "head": "e2e head", "total": "e2e total"}


def e2e_bench_rows(
    rows: list[dict[str, Any]], device: torch.device, *, benchmark: str = "fastdaf-bench e2e", **extra
) -> list[BenchRow]:
    """bench_e2e's rows as benchmark rows (fastdaf.bench_rows): one per stage (text, audio, head, total) of
    each timed row; backend is the encoder backend, the head backend is in extra. Skipped rows give none."""
    out = []
    for r in rows:
        if "skipped" in r or "total_p50_us" not in r:
            continue
        shape = {"batch": r["batch"], "tokens": r["tokens"], "audio_seconds": r["audio_seconds"]}
        common = {
            "text_model": r["text_model"],
            "audio_model": r["audio_model"],
            "head": r["head"],
            **({"unbucketed": r["unbucketed"]} if "unbucketed" in r else {}),
            **{k: r[k] for k in ("plan",) if k in r},
            **extra,
        }
        for stage, what in E2E_STAGES.items():
            p50 = r[f"{stage}_p50_us"]
            memory = {"peak_memory_mb": r.get("peak_memory_mb")} if stage == "total" else {}
            out.append(
                bench_row(
                    benchmark,
                    what,
                    device=device,
                    backend=r["backend"],
                    shape=shape,
                    dtype=r.get("dtype"),
                    p50_ms=p50 / 1e3,
                    p90_ms=r[f"{stage}_p90_us"] / 1e3,
                    p99_ms=r[f"{stage}_p99_us"] / 1e3,
                    throughput=r["batch"] / (p50 * 1e-6),
                    throughput_unit="utterances/s",
                    extra={**common, **memory},
                )
            )
    return out


def serve_bench_row(
    summary: dict[str, Any], records: list[dict[str, Any]], *, benchmark: str = "fastdaf-bench serve", **extra
) -> BenchRow:
    """run_load's outcome as one benchmark row: latency percentiles of the good requests that succeeded (ms,
    client wall clock), requests/s; the device is the client's (the server runs at summary["url"])."""
    good = [r["latency_ms"] for r in records if r.get("kind") == "good" and r.get("ok")]
    mix = summary["mix"] + (", marked absent" if summary.get("mark_absent") else "")
    return bench_row(
        benchmark,
        f"served request ({mix})",
        device=f"client: {environment(torch.device('cpu'))['device']}",
        backend=f"served, {summary['protocol']}",
        shape={"concurrency": summary["concurrency"], "requests": summary["requests"]},
        samples_ms=good or None,
        throughput=summary["requests_per_s"],
        throughput_unit="requests/s",
        extra={
            **{
                k: summary.get(k)
                for k in ("url", "succeeded", "failed", "bad_requests_sent", "seconds", "server_mean_batch")
            },
            **extra,
        },
    )


def format_e2e(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'backend':>10} {'batch':>6} {'text p50':>10} {'audio p50':>10} {'head p50':>10} {'total p50':>10} "
        f"{'total p99':>10} {'utt/s':>10}"
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['backend']:>10}  skipped: {r['skipped']}")
            continue
        lines.append(
            f"{r['backend']:>10} {r['batch']:>6} {r['text_p50_us']:10.1f} {r['audio_p50_us']:10.1f} "
            f"{r['head_p50_us']:10.1f} "
            f"{r['total_p50_us']:10.1f} {r['total_p99_us']:10.1f} {r['utterances_per_s']:10.1f}"
        )
    return "\n".join(lines) + "\n(latencies in microseconds, wall clock per call)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastdaf-bench", description="fastdaf latency benchmarks")
    sub = parser.add_subparsers(dest="mode", required=True, parser_class=CommandParser)
    head = sub.add_parser("head", help="time the DAF head per backend")
    head.add_argument(
        "--device", type=device_option, default="auto", help="auto (cuda when available), cuda, cuda:N or cpu"
    )
    head.add_argument("--dtype", choices=DTYPES, default="fp32", help="input features' dtype")
    head.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 4096], help="rows per call, each timed")
    head.add_argument("--modalities", default="text=768,audio=74", help="name=dim,... (default text=768,audio=74)")
    head.add_argument("--projection-size", type=int, default=256, help="the head's per-modality projection width")
    head.add_argument("--attention-size", type=int, default=64, help="the head's attention scorer width")
    head.add_argument("--hidden-size", type=int, default=128, help="the head's regressor hidden width")
    head.add_argument("--fusion", choices=SUPPORTED_FUSION, default="dynamic", help="fusion mode of the timed head")
    head.add_argument(
        "--backends",
        nargs="+",
        type=_alias(BACKEND_ALIASES, "head backend"),
        choices=BACKENDS,
        default=None,
        help="default: every backend the device supports (former names eager, cudagraph, compile are accepted)",
    )
    head.add_argument("--compile-mode", default="default", help="torch.compile mode for reference-compile")
    head.add_argument("--warmup", type=int, default=20, help="untimed calls first (compilation, autotuning, capture)")
    head.add_argument("--iters", type=int, default=200, help="timed calls per backend and batch")
    head.add_argument("--json", action="store_true", help="print one JSON object")
    add_results_options(head)

    e2e = sub.add_parser("e2e", help="time the full prediction (text encoder, audio encoder, head) per encoder backend")
    e2e.add_argument(
        "--device", type=device_option, default="auto", help="auto (cuda when available), cuda, cuda:N or cpu"
    )
    e2e.add_argument(
        "--backends",
        nargs="+",
        choices=E2E_BACKENDS,
        default=None,
        help=f"encoder backends; default: {', '.join(E2E_BACKENDS)} on CUDA; eager, compile on CPU",
    )
    e2e.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64], help="utterances per call, each timed")
    e2e.add_argument("--tokens", type=int, default=64, help="text length in tokens")
    e2e.add_argument("--audio-seconds", type=float, default=10.0, help="audio length per utterance")
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
    e2e.add_argument(
        "--dtype", choices=("auto", *DTYPES), default="auto", help="auto: fp16 on CUDA, fp32 on CPU (as the encoders)"
    )
    e2e.add_argument("--warmup", type=int, default=10, help="untimed calls first (compilation, graph capture)")
    e2e.add_argument("--iters", type=int, default=100, help="timed calls per backend and batch")
    e2e.add_argument(
        "--head",
        type=_alias(HEAD_ALIASES, "--head"),
        choices=HEADS,
        default=DEFAULT_HEAD,
        help="head after the encoders: auto (fused on CUDA, reference elsewhere), fused or reference; it runs as "
        "the encoders do (CUDA graph, compile); --backends eager --head reference is the all-eager row",
    )
    e2e.add_argument("--plot", default=None, help="write a PNG of latency vs batch per backend (needs fastdaf[plot])")
    e2e.add_argument("--json", action="store_true", help="print one JSON object")
    add_results_options(e2e)

    serve = sub.add_parser("serve", help="load a served model (fastdaf serve / Triton) from concurrent clients")
    serve.add_argument(
        "--url", default="127.0.0.1:8000", help="host:port of the HTTP (or, with --protocol grpc, gRPC) endpoint"
    )
    serve.add_argument("--protocol", choices=PROTOCOLS, default="http", help="KServe v2 protocol to send with")
    serve.add_argument("--requests", type=int, default=1000, help="requests to send in all")
    serve.add_argument("--concurrency", type=int, default=32, help="concurrent clients, one connection each")
    serve.add_argument(
        "--mix",
        choices=MIXES,
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
    serve.add_argument("--json", action="store_true", help="print one JSON object")
    add_results_options(serve)

    plot = sub.add_parser("plot", help="draw the results file's p50s, per what/backend, grouped by benchmark")
    plot.add_argument("--results", default=None, metavar="FILE", help="the results file (default: as the benchmarks)")
    plot.add_argument("--out", required=True, metavar="FILE.png", help="where to write the PNG")
    plot.add_argument(
        "--benchmark", nargs="+", default=None, help="only these benchmarks, e.g. 'fastdaf-bench head' (default: all)"
    )
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
            f"fastdaf-bench serve: {summary['requests']} {args.mix} requests ({summary['bad_requests_sent']} bad) over "
            f"{args.protocol} from {summary['concurrency']} clients to {summary['url']}: {summary['requests_per_s']} "
            f"requests/s, latency of good requests p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms; "
            f"{summary['succeeded']} succeeded, {summary['failed']} failed"
        )
    return _write([serve_bench_row(summary, records, bad_every=args.bad_every)] if summary["requests"] else [], args)


def main_plot(args: argparse.Namespace) -> int:
    path = args.results or default_results() or DEFAULT_RESULTS
    try:
        out = plot_rows(path, args.out, benchmarks=args.benchmark)
    except FastDAFError as exc:
        print(f"fastdaf-bench: error: {exc}", file=sys.stderr)
        return 2
    print(f"fastdaf-bench plot: {out} (from {path})")
    return 0


def _write(rows: list[BenchRow], args: argparse.Namespace) -> int:
    try:
        write_results(rows, args, prog="fastdaf-bench")
    except FastDAFError as exc:
        print(f"fastdaf-bench: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mode == "serve":
        return main_serve(args)
    if args.mode == "plot":
        return main_plot(args)
    load_before = machine_load()
    try:
        if getattr(args, "plot", None):
            require("matplotlib", "fastdaf-bench e2e --plot")  # refused before minutes of timing, not after
        device = pick_device(args.device)
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
                dtype=None if args.dtype == "auto" else DTYPES[args.dtype],
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
            results = e2e_bench_rows(rows, device, warmup=args.warmup, iters=args.iters)
        else:
            cpu_backends = [b for b in BACKENDS if b not in CUDA_ONLY]
            backends = args.backends or (list(BACKENDS) if device.type == "cuda" else cpu_backends)
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
            results = head_bench_rows(rows, head_config, device, warmup=args.warmup, iters=args.iters)
    except FastDAFError as exc:
        print(f"fastdaf-bench: error: {exc}", file=sys.stderr)
        return 2
    env = environment(device)
    machine = {"before": load_before, "after": machine_load()}
    warnings = reliability_warnings(results, load_before, machine["after"])
    for warning in warnings:
        print(f"fastdaf-bench: warning: {warning}", file=sys.stderr)
    if getattr(args, "plot", None):
        plot_e2e(rows, args.plot)
    if args.json:
        report = {"mode": args.mode, "environment": env, "machine": machine, "warnings": warnings}
        print(json.dumps({**report, "config": config, "results": rows}, indent=2))
    else:
        print(
            f"fastdaf-bench {args.mode} on {env['device']} (torch {env['torch']}, triton {env['triton']}; "
            f"{load_before['cpu_count']} CPUs, load {load_before['load_1m']} -> {machine['after']['load_1m']}): "
            f"{config}"
        )
        print(format_e2e(rows) if args.mode == "e2e" else format_rows(rows))
    return _write(results, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
