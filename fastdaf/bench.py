"""`fastdaf-bench`: latency benchmarks on whatever device is present; `--json` for machines. This module runs
the mode the command line names (fastdaf.bench_parser) and holds the `e2e` and `serve` benchmarks; `head` is
fastdaf.bench_head, the charts fastdaf.bench_charts.

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
`--backends eager --head reference` is the all-eager baseline. Calls are timed as `head` times them
(fastdaf.bench_head.time_calls).

`serve` sends a load to a served model (`fastdaf serve`, or Triton with an `export-triton`
repository) from concurrent clients and reports requests/s and latency percentiles
(fastdaf.serving.client.run_load); `--records` keeps every request's outcome.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import sys
from collections.abc import Sequence
from typing import Any

import torch

from .audio.acoustic import FEATURE_DIM, SAMPLE_RATE
from .bench_charts import plot_e2e, plot_rows
from .bench_head import (
    BACKENDS,
    CUDA_ONLY,
    bench_head,
    format_rows,
    head_bench_rows,
    head_callables,
    parse_modalities,
    progress_bar,
    time_calls,
)
from .bench_parser import E2E_BACKENDS, build_parser
from .bench_rows import (
    DEFAULT_RESULTS,
    BenchRow,
    bench_row,
    default_results,
    environment,
    machine_load,
    reliability_warnings,
    write_results,
)
from .choices import DEFAULT_HEAD, HEADS
from .config import DAFConfig
from .dtypes import DTYPES
from .encoders.acoustic import AcousticCore, acoustic_buckets
from .encoders.base import pick_device, pick_dtype
from .encoders.bert import NativeBert
from .encoders.runners import InputSpec, make_runner
from .encoders.speech import SpeechCore, SpeechEncoder, speech_buckets
from .encoders.text import TextCore, text_buckets
from .errors import FastDAFError, InputError, UnsupportedError
from .extras import require
from .pipeline import choose_head
from .reference_check import random_head
from .serving.client import run_load

MINILM_L6 = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
)
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
                text_call = functools.partial(text_run, {"input_ids": ids, "attention_mask": mask})
                audio_call = functools.partial(audio_run, audio_inputs)

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
