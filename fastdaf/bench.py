"""`fastdaf-bench`: latency benchmarks on whatever device is present; `--json` for machines.

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

from .config import DAFConfig
from .errors import FastDAFError, InputError
from .head import DAFHead

BACKENDS = ("eager", "cudagraph", "compile", "fused", "fused-cudagraph")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def environment(device: torch.device) -> dict[str, Any]:
    import triton

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
    return {"p50_us": statistics.median(samples), "p90_us": pick(0.90), "p99_us": pick(0.99), "mean_us": statistics.fmean(samples)}


def random_head(config: DAFConfig, device: torch.device, seed: int = 0) -> DAFHead:
    """A head with random (non-zero) weights and standardisation: timing never runs on zeros."""
    g = torch.Generator().manual_seed(seed)
    head = DAFHead(config)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, 0.05, generator=g)
        for m, d in config.modalities.items():
            head.set_input_stats(m, torch.randn(d, generator=g), torch.rand(d, generator=g) + 0.5)
    return head.to(device).eval()


def random_features(config: DAFConfig, batch: int, dtype: torch.dtype, device: torch.device, seed: int = 1):
    g = torch.Generator(device=device).manual_seed(seed)
    feats = {m: torch.randn(batch, d, generator=g, device=device, dtype=torch.float32).to(dtype) for m, d in config.modalities.items()}
    present = torch.rand(batch, config.n_modalities, generator=g, device=device) < 0.9
    present[:, 0] = True
    return feats, present


def capture_graph(fn: Callable[[], Any], device: torch.device) -> Callable[[], None]:
    """Capture fn (already warmed up) in a CUDA graph and return its replay."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
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
            with torch.no_grad():
                calls["cudagraph"] = capture_graph(lambda: head(feats, present, check=False), device)
        if "compile" in backends:
            compiled = torch.compile(lambda f, p: head(f, p, check=False), mode=compile_mode)
            calls["compile"] = lambda: compiled(feats, present)
        if "fused" in backends or "fused-cudagraph" in backends:
            from .fused import FusedDAFHead

            fused = FusedDAFHead.from_head(head)
            B = present.shape[0]
            out = (torch.empty(B, head.config.n_outputs, device=device), torch.empty(B, head.config.n_modalities, device=device))
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
            row = {"batch": batch, "backend": name, "dtype": str(dtype).replace("torch.", ""), **t,
                   "rows_per_s": batch / (t["p50_us"] * 1e-6)}
            if base is not None:
                row["speedup_vs_eager"] = base["p50_us"] / t["p50_us"]
            rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    header = f"{'batch':>7} {'backend':>16} {'dtype':>9} {'p50 us':>10} {'p90 us':>10} {'p99 us':>10} {'rows/s':>12} {'x eager':>8}"
    lines = [header]
    for r in rows:
        speed = f"{r['speedup_vs_eager']:8.2f}" if "speedup_vs_eager" in r else f"{'-':>8}"
        lines.append(f"{r['batch']:>7} {r['backend']:>16} {r['dtype']:>9} {r['p50_us']:10.1f} {r['p90_us']:10.1f} {r['p99_us']:10.1f} {r['rows_per_s']:12.0f} {speed}")
    return "\n".join(lines)


def parse_modalities(text: str) -> dict[str, int]:
    """'text=768,audio=74' -> {'text': 768, 'audio': 74}."""
    out: dict[str, int] = {}
    for part in text.split(","):
        name, _, dim = part.partition("=")
        if not name or not dim.strip().isdigit():
            raise InputError(f"--modalities takes name=dim pairs separated by commas (e.g. text=768,audio=74), got {text!r}")
        out[name.strip()] = int(dim)
    return out


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
    head.add_argument("--backends", nargs="+", choices=BACKENDS, default=None,
                      help="default: every backend the device supports")
    head.add_argument("--compile-mode", default="default", help="torch.compile mode for the compile backend")
    head.add_argument("--warmup", type=int, default=20)
    head.add_argument("--iters", type=int, default=200)
    head.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but no CUDA device is available; use --device cpu")
        if min(args.batch_sizes) < 1 or args.warmup < 0 or args.iters < 1:
            raise InputError("batch sizes and --iters must be >= 1, --warmup >= 0")
        backends = args.backends or (list(BACKENDS) if device.type == "cuda" else ["eager", "compile"])
        config = DAFConfig(parse_modalities(args.modalities), projection_size=args.projection_size, attention_size=args.attention_size,
                           hidden_size=args.hidden_size, fusion=args.fusion)
        rows = bench_head(config, args.batch_sizes, DTYPES[args.dtype], device, backends,
                          warmup=args.warmup, iters=args.iters, compile_mode=args.compile_mode)
    except FastDAFError as exc:
        print(f"fastdaf-bench: error: {exc}", file=sys.stderr)
        return 2
    env = environment(device)
    if args.json:
        print(json.dumps({"mode": "head", "environment": env, "config": config.to_dict(), "results": rows}, indent=2))
    else:
        print(f"fastdaf-bench head on {env['device']} (torch {env['torch']}, triton {env['triton']}), "
              f"modalities {dict(config.modalities)}, projection {config.projection_size}")
        print(format_rows(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
