"""The `fastdaf-bench` command line: every mode (head, e2e, serve, plot) and its options, each with help that
states its default (fastdaf.options.CommandParser); fastdaf.bench runs what it parses."""

from __future__ import annotations

import argparse

from .bench_head import BACKENDS
from .bench_rows import add_results_options
from .choices import DEFAULT_HEAD, ENCODER_BACKENDS, HEADS
from .dtypes import DTYPES
from .fused import SUPPORTED_FUSION
from .options import CommandParser, device_option
from .serving.client import MIXES, PROTOCOLS

E2E_BACKENDS = tuple(b for b in ENCODER_BACKENDS if b != "auto")  # e2e --backends: each concrete encoder backend


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
        choices=BACKENDS,
        default=None,
        help="default: every backend the device supports",
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
