"""`fastdaf-bench head`: the DAF head timed per backend, side by side in one process; and the timing loop
(`time_calls`) every fastdaf-bench mode uses.

Each backend is a head of fastdaf.choices.HEADS and how it runs:
- `reference`: the reference DAFHead (PyTorch);
- `reference-cudagraph`: the reference replayed from a CUDA graph (CUDA only);
- `reference-compile`: the reference under torch.compile;
- `fused`: the fused Triton head (CUDA only);
- `fused-cudagraph`: the fused head replayed from a CUDA graph (CUDA only).

Each call is timed wall-clock (host clock around the call and a device synchronise), after warm-up (compilation,
autotuning and graph capture stay out of the numbers); p50/p90/p99 over the iterations
(fastdaf.bench_rows.percentiles), throughput = batch / p50.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from .bench_rows import BenchRow, bench_row, percentiles
from .config import DAFConfig
from .encoders.runners import capture_cuda_graph
from .errors import InputError
from .fused import FusedDAFHead
from .head import DAFHead
from .reference_check import random_head

# Head backends: a head of choices.HEADS ("reference": fastdaf.head.DAFHead, "fused": the Triton head), run
# as it is or replayed from a CUDA graph / under torch.compile.
BACKENDS = ("reference", "reference-cudagraph", "reference-compile", "fused", "fused-cudagraph")
CUDA_ONLY = ("reference-cudagraph", "fused", "fused-cudagraph")


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
