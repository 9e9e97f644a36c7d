"""ONE script for a short GPU lease: is the fused DAF head right, and does it meet its targets?

    python3 benchmarks/gpu_check.py --out DIR [--deadline 300]  # GPU machine, plain checkout: DIR/gpu_check.json
    python3 benchmarks/gpu_check.py --smoke --out DIR           # CPU dry run of the same code (TRITON_INTERPRET=1)
    python3 benchmarks/gpu_check.py --prebuild DIR              # CPU, beforehand: compile its sm_90 kernels into DIR
    python3 benchmarks/gpu_check.py --triton-cache DIR --out OUT  # GPU: launch those instead of compiling them

It needs only torch, triton, transformers and numpy (a lent GPU machine has these and torchaudio): the
script puts its checkout on sys.path (kernels/ has no __init__.py, so it never shadows an installed `kernels`),
and fastdaf registers kernels/ as fastdaf.kernels there
(fastdaf/__init__.py); nothing is installed, and soundfile & co are imported only where used.

Sections, in priority order, inside one total deadline (--deadline, default 300 s, counted from
the script's start). A section stops when its window closes (validation may use the deadline up to
its last 45%, timing up to its last 20%, end to end the rest; time a section leaves over goes to
the next) and records each case it did not start as {"skipped": "deadline ..."}:

0. preflight (seconds): versions (torch, triton, transformers, CUDA, driver), the card's name and
   nominal HBM bandwidth class, a C compiler and Python's headers (Triton builds its launcher with them
   on the first launch), an empty Triton launch, a one-node CUDA graph capture and replay, and
   `from transformers import AutoModel`. A failed probe skips the sections that need it
   (SECTION_NEEDS) with its reason, instead of failing case by case. Then the bounds used below and
   the fused head's predicted memory traffic (kernels/daf_head_traffic.py) are printed.
1. validation: 16 compiled variants of the kernel, a 4x4 covering design (row: input dtype
   fp32-tf32/fp32-ieee/fp16/bf16; column: 1-4 modalities; a Latin square picks the fusion, another
   assignment the mask, so every pair of those factors occurs and none moves in lock-step),
   projection sizes 16..512 spread over the cells, each with a pinned tile from
   fastdaf.kernels.daf_head.feasible_tiles; plus two autotuned cases. Each output is poisoned with
   NaN first (every element must be written), and compared with the reference head evaluated in
   float64 on the GPU: the componentwise error of every score and modality weight over the size that
   rounding gives it (fastdaf.reference_check.error_scales64), which a score cancelling near zero
   cannot inflate, against COMPONENTWISE_TOLERANCE (the tf32 bound from a model of tf32 truncation,
   benchmarks/gpu_check_bounds.py); the norm-wise errors are recorded beside.
2. head timing at the target shapes (text 768 + audio 74; projection 128 and 256; B = 1, 64, 65536;
   fp16 and fp32; B=1 first): eager reference, reference under a CUDA graph, fused, fused under a
   CUDA graph, and an empty Triton launch; torch.compile of the reference only if time is left.
   The autotuned fused head is also checked against float64 at each timed shape. Ceilings measured
   in this run: device copy bandwidth (bytes read + written) and the fp16/tf32 rate of an 8192^3
   matrix product. Each backend gets wall-clock percentiles per call (what a caller waits for; the
   speed-up targets) and its device time by CUDA events over back-to-back calls (graph replays for
   the graph backends). Roofline fractions divide the fewest bytes the head must move by the
   measured copy bandwidth and by the card's nominal HBM bandwidth, over the fused head's device
   time under a graph, with the traffic model's prediction for the shape beside them.
3. end to end (fastdaf.bench.bench_e2e): CUDA-graph encoder cores first checked against eager, then
   the default encoders (MiniLM-L6-size text encoder with random weights, its 1..6 layer mix, and
   the built-in acoustic features; 64 tokens, 10 s of audio) at B=1 and 64 with the fastest
   backends, the all-eager baseline (eager encoders and the eager reference head) at B=1, and
   HuBERT-base + BERT-base at B=1 (HuBERT on CUDA graphs captured per exact input shape).

Measurement: latencies are wall clock per call (host clock around the call and a device
synchronise: what a caller waits for), p50 (and p90) over --iters calls after warm-up, so
compilation, autotuning and graph capture stay out; head rows add the device time by CUDA events;
the backends of one shape are timed side by side in one process on one card, and the head targets
are ratios within this run.

Output: DIR/gpu_check.json, rewritten after every validation case and every section, with
"targets": one {"name", "value", "threshold", "pass", "source"} per target of issue 12 (value and
pass null where its part did not run), also printed as a table. Every case is fail-soft: an
exception is recorded as {"error": "<type>: <message>"} and the run goes on. The exit code reflects
correctness only: 1 if a validation case failed or raised, a graph encoder disagreed with eager, a
preflight probe failed, or any case could not import what it needs (an ImportError means a broken
environment, such as a package shadowed by a folder of the checkout, and every end-to-end row would fail
the same way); other timing and end-to-end errors are printed and recorded, not judged. gpu_check.json keeps its format
(other tools read it): a head timing row's keys name the head backends of `fastdaf-bench head` by their
former names, `eager_*` for `reference`, `cudagraph_*` for `reference-cudagraph`, `compile_*` for
`reference-compile` (JSON_NAMES).

Besides, every timing (head timing, empty launch, ceilings, torch.compile, end to end) is appended as
benchmark rows (fastdaf.bench_rows.BenchRow, the schema of benchmarks/results.jsonl) to
DIR/results.jsonl as it is measured (`--results FILE` elsewhere, `--no-results` none); validation
errors are accuracy, in gpu_check.json only.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the GPU machine runs a plain checkout, nothing installed
if __name__ == "__main__" and "--smoke" in sys.argv[1:]:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must be set before triton is imported

import torch  # noqa: E402
import triton  # noqa: E402

from fastdaf import DAFConfig, DAFHead  # noqa: E402
from fastdaf.bench_head import head_callables, random_features, time_calls  # noqa: E402
from fastdaf.bench_rows import BenchRow, append_rows, bench_row, environment  # noqa: E402
from fastdaf.dtypes import DTYPES  # noqa: E402
from fastdaf.fused import FusedDAFHead  # noqa: E402
from fastdaf.reference_check import (  # noqa: E402  (bounds explained there)
    COMPONENTWISE_TOLERANCE,
    componentwise_error,
    error_scales64,
    random_head,
    reference64,
    relative_error,
)

DEFAULT_TILE = {"BLOCK_B": 16, "BLOCK_K": 32, "num_warps": 4, "num_stages": 2}
# fraction of the deadline each section leaves to the sections after it
WINDOWS = {"validation": 0.45, "timing": 0.20, "e2e": 0.0}
TIMING_MODALITIES = {"text": 768, "audio": 74}
TIMING_BACKENDS = ("reference", "reference-cudagraph", "fused", "fused-cudagraph")  # fastdaf.bench_head.BACKENDS
# the name of a head backend in gpu_check.json's keys: the former names, which readers of the report expect
JSON_NAMES = {"reference": "eager", "reference-cudagraph": "cudagraph", "reference-compile": "compile"}
BENCHMARK = "benchmarks/gpu_check.py"


@triton.jit
def _empty_kernel(x_ptr):
    pass


# ------------------------------------------------------------------------------------------- helpers
class Clock:
    """The run's deadline, and the window each section may use of it."""

    def __init__(self, deadline_s: float, started: float) -> None:
        self.deadline_s, self.started = deadline_s, started
        self.end = started + deadline_s
        self.margin = min(5.0, 0.05 * deadline_s)  # to write the report and print

    def left(self, section: str) -> float:
        return self.end - self.deadline_s * WINDOWS[section] - self.margin - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def attempt(name: str, fn: Callable[[], dict], clock: Clock, section: str, need_s: float) -> dict:
    """fn() as one fail-soft case: skipped when the section's window has less than need_s left,
    an exception recorded as {"error": ...} (traceback on stderr), the duration recorded."""
    left = clock.left(section)
    if left < need_s:
        return {
            "name": name,
            "skipped": f"deadline: {max(left, 0):.0f} s left in the {section} window, about {need_s:.0f} s needed",
        }
    start = time.monotonic()
    try:
        row = {"name": name, **fn()}
    except Exception as exc:  # noqa: BLE001 - fail-soft by design: record and go on
        traceback.print_exc()
        row = {"name": name, "error": error_text(exc)}
        if isinstance(exc, ImportError):
            row["import_error"] = True  # the environment is broken, not slow: judged (see failures)
    row["seconds"] = time.monotonic() - start
    return row


class Results:
    """Where benchmark rows go (None: nowhere); appended as they are measured, fail-soft."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.written = path, 0

    def add(self, rows: list[BenchRow]) -> None:
        if self.path is None or not rows:
            return
        try:
            append_rows(rows, self.path)
            self.written += len(rows)
        except Exception as exc:  # noqa: BLE001 - fail-soft: the report still has every number
            print(f"gpu_check: benchmark rows not written: {error_text(exc)}", file=sys.stderr)


def finite(obj: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def save(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(finite(report), indent=2, default=str))
    tmp.replace(out / "gpu_check.json")


def check_fused(fused: FusedDAFHead, head: DAFHead, feats: dict, present: torch.Tensor | None) -> dict:
    """Errors of the fused head against float64 on NaN-poisoned outputs, and whether every element was written.

    Judged: the componentwise error of each score and modality weight over the size rounding gives it
    (fastdaf.reference_check.error_scales64), which no cancellation can blow up. Recorded besides: the
    norm-wise relative errors (a lone score near zero can make those large without any bug)."""
    cfg = head.config
    B = next(iter(feats.values())).shape[0]
    device = next(iter(feats.values())).device
    score = torch.full((B, cfg.n_outputs), float("nan"), device=device)
    weights = torch.full((B, cfg.n_modalities), float("nan"), device=device)
    with torch.no_grad():
        out = fused(feats, present, out=(score, weights))
    want_score, want_weights = reference64(head, feats, present)
    score_scale, weight_scale = error_scales64(head, feats, present)
    return {
        "score_err": componentwise_error(out.score, want_score, score_scale),
        "weight_err": componentwise_error(out.weights, want_weights, weight_scale),
        "score_norm_err": relative_error(out.score, want_score),
        "weight_norm_err": relative_error(out.weights, want_weights),
        "all_written": bool(torch.isfinite(score).all() and torch.isfinite(weights).all()),
    }


def judged(errors: dict, tol: float) -> dict:
    return {
        **errors,
        "tolerance": tol,
        "ok": errors["all_written"] and errors["score_err"] <= tol and errors["weight_err"] <= tol,
    }


# ------------------------------------------------------------------------------------------- preflight
# Nominal HBM bandwidth (datasheets), bytes/s: the first entry whose key the device's name contains.
NOMINAL_HBM_BANDWIDTH = (
    ("H200", 4.8e12),
    ("H100 NVL", 3.9e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),  # SXM5, HBM3 (e.g. "NVIDIA H100 80GB HBM3")
    ("A100-SXM4-80GB", 2.039e12),
    ("A100 80GB PCIe", 1.935e12),
    ("A100", 1.555e12),
)
# the preflight probes each later section needs; a failed one skips the section with its reason
SECTION_NEEDS = {
    "validation": ("compiler", "triton_launch"),
    "timing": ("compiler", "triton_launch", "cuda_graph"),
    "e2e": ("compiler", "triton_launch", "cuda_graph", "transformers"),
}


def nominal_hbm_bandwidth(name: str) -> tuple[str | None, float | None]:
    """(bandwidth class, bytes/s) of a card by its name; (None, None) for a card not in the table."""
    for key, bandwidth in NOMINAL_HBM_BANDWIDTH:
        if key in name:
            return key, bandwidth
    return None, None


def probe(fn: Callable[[], dict | None]) -> dict:
    """One preflight probe, fail-soft: {"ok": True, ...} or {"ok": False, "error": ...}."""
    try:
        return {"ok": True, **(fn() or {})}
    except Exception as exc:  # noqa: BLE001 - a probe reports, it never stops the run
        traceback.print_exc()
        return {"ok": False, "error": error_text(exc)}


def one_node_graph(device: torch.device) -> dict:
    """Capture x += 1 in a CUDA graph and replay it twice (what every graph backend relies on)."""
    x = torch.zeros(1, device=device)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        x.add_(1)  # warm-up outside the capture, as torch asks
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        x.add_(1)
    graph.replay()
    graph.replay()
    torch.cuda.synchronize()
    if x.item() != 3.0:  # the warm-up and two replays (a capture records the work without running it)
        raise RuntimeError(f"a replayed graph computed {x.item()}, expected 3.0")
    return {}


def run_preflight(report: dict, device: torch.device) -> None:
    """Versions, the card, and what the later sections need, each probed once (report["preflight"])."""
    from fastdaf import environment

    cuda = device.type == "cuda"
    probes = report["preflight"] = {}
    status = environment.cuda_status()
    probes["versions"] = {
        "ok": True,
        **{name: environment.package_status(name).get("version") for name in ("torch", "triton", "transformers")},
        "cuda": torch.version.cuda,
        "driver": status.get("driver"),
    }
    if cuda:
        props = torch.cuda.get_device_properties(device)
        bandwidth_class, nominal = nominal_hbm_bandwidth(props.name)
        probes["card"] = {
            "ok": True,
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "bandwidth_class": bandwidth_class,
            "nominal_hbm_bytes_per_s": nominal,
        }
    else:
        probes["card"] = {"ok": None, "why": "no CUDA device (smoke run)"}
    compiler = environment.compiler_status()
    found = bool(compiler["c_compiler"] and compiler["python_headers"])
    # Triton builds its C launcher with them on the first launch on a GPU; the interpreter needs neither
    probes["compiler"] = {"ok": found if cuda else None, **compiler}
    if cuda and not found:
        probes["compiler"]["error"] = "Triton's launcher needs a C compiler ($CC, gcc or clang) and Python.h"

    def empty_launch() -> dict:
        x = torch.zeros(1, device=device)
        _empty_kernel[(1,)](x)
        if cuda:
            torch.cuda.synchronize()
        return {}

    probes["triton_launch"] = probe(empty_launch)
    probes["cuda_graph"] = probe(lambda: one_node_graph(device)) if cuda else {"ok": None, "why": "no CUDA device"}

    def transformers_imports() -> dict:
        import transformers
        from transformers import AutoConfig, AutoModel  # noqa: F401 - the imports are the probe

        return {"from": str(Path(transformers.__file__).parent)}

    probes["transformers"] = probe(transformers_imports)
    for name, result in probes.items():
        verdict = {True: "ok", False: "FAILED", None: "n/a"}[result.get("ok")]
        shown = {k: v for k, v in result.items() if k != "ok"}
        print(f"preflight {name}: {verdict} {json.dumps(shown, default=str)}", flush=True)


def preflight_blocks(report: dict, section: str) -> str | None:
    """Why `section` cannot run after this preflight (None: it can)."""
    failed = [name for name in SECTION_NEEDS[section] if report.get("preflight", {}).get(name, {}).get("ok") is False]
    if not failed:
        return None
    first = report["preflight"][failed[0]]
    return f"preflight failed: {', '.join(failed)} ({first.get('error', '')})"


# ---------------------------------------------------------------------------------------- validation
DTYPE_ROWS = (("fp32", "tf32"), ("fp32", "ieee"), ("fp16", None), ("bf16", None))
FUSIONS = ("dynamic", "static", "mean", "dynamic")
PROJECTIONS = (16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 480, 512)
NAMES = ("text", "audio", "video", "extra")


def tiles_for(cfg: DAFConfig, dtype: torch.dtype) -> list[dict]:
    """Tiles that fit in an H100's shared memory for this head, from the kernel module (DEFAULT_TILE if it offers
    none)."""
    from fastdaf.kernels import daf_head

    feasible = getattr(daf_head, "feasible_tiles", None)
    tiles = (
        []
        if feasible is None
        else feasible(
            cfg.projection_size,
            dtype,
            n_modalities=cfg.n_modalities,
            attention_size=cfg.attention_size,
            hidden_size=cfg.hidden_size,
            n_outputs=cfg.n_outputs,
        )
    )
    return [dict(t) for t in tiles] or [dict(DEFAULT_TILE)]


def validation_cases(smoke: bool) -> list[dict]:
    """16 pinned-tile variants in a 4x4 covering design, then 2 autotuned ones (see the module docstring).

    Cell (r, c): dtype r, c+1 modalities, fusion FUSIONS[(r + c) % 4] (a Latin square: each fusion
    meets every dtype and modality count), mask (r // 2 + c) % 2 (each value meets every dtype,
    count and fusion), projection PROJECTIONS[5i % 16] for cell i = 4r + c (a permutation: every
    dtype sees small and large sizes). Smoke: the same design at interpreter-sized shapes.
    """
    cases = []
    for r, (dtype, precision) in enumerate(DTYPE_ROWS):
        for c in range(4):
            i = 4 * r + c
            batch = (1, 37, 1000, 20000)[(r + 3 * c) % 4] if not smoke else (1, 5, 17, 33)[(r + 3 * c) % 4]
            dims = ((768, 74, 35, 17), (384, 88, 47, 5))[i % 2] if not smoke else ((40, 7, 9, 5), (24, 9, 35, 3))[i % 2]
            cases.append(
                dict(
                    mods=dict(zip(NAMES, dims[: c + 1])),
                    dtype=dtype,
                    precision=precision,
                    fusion=FUSIONS[(r + c) % 4],
                    mask=bool((r // 2 + c) % 2),
                    P=PROJECTIONS[(5 * i) % 16] if not smoke else (16, 24, 32)[i % 3],
                    A=(16, 40, 64, 100)[(i + r) % 4] if not smoke else 16,
                    H=(16, 64, 128, 144)[(i + 2) % 4] if not smoke else 16,
                    NO=7 if batch == 1 else (1, 2)[i % 2],
                    B=batch,
                    autotune=False,
                    cell=i,
                )
            )
    autotuned = [
        dict(
            mods={"text": 768, "audio": 74},
            dtype="fp16",
            precision=None,
            fusion="dynamic",
            mask=True,
            P=256,
            A=64,
            H=128,
            NO=1,
            B=64,
        ),
        dict(
            mods={"text": 768, "audio": 74, "video": 35},
            dtype="fp32",
            precision="tf32",
            fusion="static",
            mask=False,
            P=128,
            A=64,
            H=128,
            NO=2,
            B=4097,
        ),
    ]
    if smoke:
        autotuned = [dict(c, mods={"text": 40, "audio": 7}, P=16, A=16, H=16, B=9) for c in autotuned[:1]]
    cases += [dict(c, autotune=True, cell=16 + k) for k, c in enumerate(autotuned)]
    for case in cases:
        prec = f"-{case['precision']}" if case["precision"] else ""
        case["name"] = (
            f"{'auto' if case['autotune'] else 'v'}{case['cell']:02d}-{case['dtype']}{prec}-{case['fusion']}"
            f"-m{len(case['mods'])}"
            f"-{'mask' if case['mask'] else 'nomask'}-P{case['P']}-B{case['B']}"
        )
    return cases


def run_case(case: dict, device: torch.device, smoke: bool) -> dict:
    """One validation case: build the head, pick its tile, run the fused head, compare with float64."""
    cfg = DAFConfig(
        case["mods"],
        projection_size=case["P"],
        attention_size=case["A"],
        hidden_size=case["H"],
        n_outputs=case["NO"],
        fusion=case["fusion"],
    )
    head = random_head(cfg, device, seed=case["cell"])
    with torch.no_grad():
        for p in head.parameters():
            p.mul_(8.0)  # weights ~N(0, 0.4): non-trivial modality weights, as in the interpreter tests
    dtype = DTYPES[case["dtype"]]
    tile = None
    if not case["autotune"]:
        tiles = tiles_for(cfg, dtype)
        # the interpreter runs the smallest tile fast; the GPU walks through the feasible ones
        tile = min(tiles, key=lambda t: t["BLOCK_B"] * t["BLOCK_K"]) if smoke else tiles[case["cell"] % len(tiles)]
    fused = FusedDAFHead.from_head(head, precision=case["precision"] or "tf32", block_config=tile)
    feats, present = random_features(cfg, case["B"], dtype, device, seed=100 + case["cell"])
    if case["mask"]:
        g = torch.Generator(device=device).manual_seed(200 + case["cell"])
        present &= torch.rand(present.shape, generator=g, device=device) < 0.7
        present[:, -1] |= ~present.any(dim=1)
    else:
        present = None
    result = judged(
        check_fused(fused, head, feats, present), COMPONENTWISE_TOLERANCE[(case["dtype"], case["precision"])]
    )
    return {"tile": tile, **result}


def run_validation(report: dict, device: torch.device, smoke: bool, clock: Clock, out: Path) -> None:
    rows = report["validation"] = []
    need = {False: 2.0 if smoke else 8.0, True: 2.0 if smoke else 30.0}  # rough cost of a compile / an autotune
    for case in validation_cases(smoke):
        row = attempt(case["name"], lambda: run_case(case, device, smoke), clock, "validation", need[case["autotune"]])
        row["case"] = {k: v for k, v in case.items() if k != "name"}
        if "ok" in row:  # the next case of this kind likely costs what this one did
            need[case["autotune"]] = max(need[case["autotune"]], 1.2 * row["seconds"])
        rows.append(row)
        status = "ok" if row.get("ok") else "SKIPPED" if "skipped" in row else "FAILED"
        shown = {k: row[k] for k in ("score_err", "weight_err", "tolerance", "error", "skipped") if k in row}
        print(f"validation {row['name']}: {status} {json.dumps(shown)}", flush=True)
        save(report, out)


# -------------------------------------------------------------------------------------------- timing
def event_time_us(fn: Callable[[], Any], reps: int = 15, per_rep: int = 20) -> float:
    """Device time of one call, by CUDA events around `per_rep` back-to-back calls (for the graph backends,
    graph replays, so launch gaps shrink to what the GPU itself spends), median over `reps`."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(per_rep):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / per_rep)
    return sorted(times)[reps // 2]


def measure_ceilings(device: torch.device) -> dict[str, float]:
    """Copy bandwidth (bytes read + written) and fp16/tf32 matrix-product rates, by CUDA events."""

    def median_ms(fn: Callable[[], Any]) -> float:
        return event_time_us(fn, reps=10, per_rep=1) / 1e3

    src = torch.randn(256 * 1024 * 1024, device=device)  # 1 GiB of fp32
    dst = torch.empty_like(src)
    copy_ms = median_ms(lambda: dst.copy_(src))
    src = dst = None  # free the 2 GiB before the matrix products
    n = 8192
    a16, b16 = (
        torch.randn(n, n, device=device, dtype=torch.float16),
        torch.randn(n, n, device=device, dtype=torch.float16),
    )
    fp16_ms = median_ms(lambda: a16 @ b16)
    a32, b32 = a16.float(), b16.float()
    allowed = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    tf32_ms = median_ms(lambda: a32 @ b32)
    torch.backends.cuda.matmul.allow_tf32 = allowed
    return {
        "copy_bytes_per_s": 2 * 1024**3 / (copy_ms * 1e-3),
        "fp16_flops_per_s": 2 * n**3 / (fp16_ms * 1e-3),
        "tf32_flops_per_s": 2 * n**3 / (tf32_ms * 1e-3),
    }


def head_cost(cfg: DAFConfig, batch: int, elt_bytes: int) -> tuple[float, float]:
    """FLOPs of the head's matrix products and the fewest bytes it must move (inputs, mask, outputs, weights once)."""
    P, A, H, NO, M = cfg.projection_size, cfg.attention_size, cfg.hidden_size, cfg.n_outputs, cfg.n_modalities
    K = sum(cfg.modalities.values())
    flops = 2.0 * batch * (K * P + M * (P * A + A) + P * H + H * NO)
    weights = (K * P + P * A + P * H + H * NO) * elt_bytes
    moved = batch * K * elt_bytes + batch * M + batch * (NO + M) * 4 + weights
    return flops, float(moved)


def timing_cases(smoke: bool) -> list[dict]:
    """The target shapes, B=1 first, then B=65536 fp16 (the other targets), then the rest."""
    if smoke:
        return [dict(mods={"text": 40, "audio": 7}, P=16, B=b, dtype="fp32") for b in (1, 3)]
    cases = [
        dict(mods=TIMING_MODALITIES, P=P, B=B, dtype=d)
        for B in (1, 65536, 64)
        for d in ("fp16", "fp32")
        for P in (128, 256)
    ]
    return sorted(cases, key=lambda c: 0 if c["B"] == 1 else 1 if (c["B"], c["dtype"]) == (65536, "fp16") else 2)


def time_case(
    case: dict,
    device: torch.device,
    backends: tuple[str, ...],
    iters: int,
    ceilings: dict,
    report: dict,
    results: Results | None = None,
) -> dict:
    """p50/p90 per backend at one shape (each backend fail-soft on its own), the autotuned fused head's
    error at this shape (appended to the validation rows), ratios and roofline fractions; each backend's
    timing also as a benchmark row to `results`."""
    cfg = DAFConfig(case["mods"], projection_size=case["P"], attention_size=64, hidden_size=128)
    head = random_head(cfg, device)
    feats, present = random_features(cfg, case["B"], DTYPES[case["dtype"]], device)
    row: dict[str, Any] = {
        "modalities": dict(case["mods"]),
        "projection_size": case["P"],
        "dtype": case["dtype"],
        "batch": case["B"],
    }
    n = iters if case["B"] < 65536 else max(20, iters // 5)
    if "fused" in backends:
        name = f"timed-{case['dtype']}-P{case['P']}-B{case['B']}"
        check = {"name": name, "case": {**case, "autotune": True}}
        try:
            precision = "tf32" if case["dtype"] == "fp32" else None
            check.update(
                judged(
                    check_fused(FusedDAFHead.from_head(head), head, feats, present),
                    COMPONENTWISE_TOLERANCE[(case["dtype"], precision)],
                )
            )
        except Exception as exc:  # noqa: BLE001 - fail-soft: the check records its error
            check["error"] = error_text(exc)
        report["validation"].append(check)
    timed = []
    for backend in backends:
        key = JSON_NAMES.get(backend, backend)
        try:
            with torch.no_grad():
                fn = head_callables(head, feats, present, [backend])[backend]
                t = time_calls(fn, device, warmup=20, iters=n)
                if device.type == "cuda":
                    row[f"{key}_device_us"] = event_time_us(fn, per_rep=3 if case["B"] >= 65536 else 20)
            row[f"{key}_p50_us"], row[f"{key}_p90_us"] = t["p50_us"], t["p90_us"]
            timed.append(
                bench_row(
                    BENCHMARK,
                    "DAF head",
                    device=device,
                    backend=backend,
                    shape={
                        "batch": case["B"],
                        "modalities": dict(case["mods"]),
                        "projection": case["P"],
                        "attention": cfg.attention_size,
                        "hidden": cfg.hidden_size,
                    },
                    dtype=case["dtype"],
                    p50_ms=t["p50_us"] / 1e3,
                    p90_ms=t["p90_us"] / 1e3,
                    p99_ms=t["p99_us"] / 1e3,
                    throughput=case["B"] / (t["p50_us"] * 1e-6),
                    throughput_unit="rows/s",
                    extra={"mean_ms": t["mean_us"] / 1e3, "iters": n, "fusion": cfg.fusion},
                )
            )
        except Exception as exc:  # noqa: BLE001 - fail-soft: the row records its error
            traceback.print_exc()
            row[f"{key}_error"] = error_text(exc)
    add_ratios(row, cfg, ceilings)
    if results is not None:
        results.add(timed)
    return row


def add_ratios(row: dict, cfg: DAFConfig, ceilings: dict) -> None:
    """Speed-ups (wall-clock p50s: what a caller waits for) and roofline fractions (device time of the
    fused head under a CUDA graph, by events) against the measured copy bandwidth and the card's nominal
    HBM bandwidth, with the traffic model's prediction for this shape beside them."""

    def p50(backend: str) -> float | None:
        return row.get(f"{backend}_p50_us")

    if p50("eager") and p50("fused"):
        row["fused_speedup_vs_eager"] = p50("eager") / p50("fused")
    if p50("cudagraph") and p50("fused-cudagraph"):
        row["graph_fused_speedup_vs_graph_reference"] = p50("cudagraph") / p50("fused-cudagraph")
    fused_us = row.get("fused-cudagraph_device_us") or p50("fused-cudagraph")
    if not fused_us:
        return
    flops, moved = head_cost(cfg, row["batch"], 2 if row["dtype"] == "fp16" else 4)
    row.update(flops=flops, bytes=moved, roofline_timing="CUDA events over graph replays"
               if row.get("fused-cudagraph_device_us") else "wall-clock p50")  # fmt: skip
    if ceilings.get("copy_bytes_per_s"):
        rate = ceilings["fp16_flops_per_s"] if row["dtype"] == "fp16" else ceilings["tf32_flops_per_s"]
        hbm_us = moved / ceilings["copy_bytes_per_s"] * 1e6
        floor_us = max(hbm_us, flops / rate * 1e6)
        row.update(
            roofline_hbm_us=hbm_us,
            roofline_us=floor_us,
            roofline_fraction_hbm=hbm_us / fused_us,
            roofline_fraction=floor_us / fused_us,
        )
    if ceilings.get("nominal_hbm_bytes_per_s"):
        row["roofline_fraction_hbm_nominal"] = moved / ceilings["nominal_hbm_bytes_per_s"] * 1e6 / fused_us
    try:
        from fastdaf.kernels.daf_head_traffic import best_fraction

        dtype = {"fp16": "fp16", "fp32": "fp32"}[row["dtype"]]
        row["predicted_fraction_hbm_nominal"] = best_fraction(cfg.projection_size, row["batch"], dtype)["fraction"]
    except Exception as exc:  # noqa: BLE001 - a prediction is a note beside the measurement
        row["predicted_fraction_error"] = error_text(exc)


def ceiling_rows(ceilings: dict, device: torch.device) -> list[BenchRow]:
    """The measured ceilings as benchmark rows: rates only (throughput), no latency."""
    what = {
        "copy_bytes_per_s": ("device copy, 1 GiB fp32 (bytes read + written)", "bytes/s", {"bytes": 2 * 1024**3}),
        "fp16_flops_per_s": ("matrix product 8192^3", "FLOP/s", {"n": 8192}),
        "tf32_flops_per_s": ("matrix product 8192^3", "FLOP/s", {"n": 8192}),
    }
    return [
        bench_row(
            BENCHMARK,
            name,
            device=device,
            backend="torch",
            shape=shape,
            dtype=key.split("_")[0] if "flops" in key else None,
            throughput=ceilings[key],
            throughput_unit=unit,
            extra={"timing": "median of 10 by CUDA events"},
        )
        for key, (name, unit, shape) in what.items()
        if isinstance(ceilings.get(key), (int, float))
    ]


def run_timing(
    report: dict, device: torch.device, smoke: bool, iters: int, clock: Clock, out: Path, results: Results | None = None
) -> None:
    results = results or Results(None)
    cuda = device.type == "cuda"
    if cuda:
        report["ceilings"] = attempt("ceilings", lambda: measure_ceilings(device), clock, "timing", 10.0)
        results.add(ceiling_rows(report["ceilings"], device))
        x = torch.empty(1, device=device)
        report["empty_launch"] = attempt(
            "empty Triton launch",
            lambda: time_calls(lambda: _empty_kernel[(1,)](x), device, warmup=20, iters=iters),
            clock,
            "timing",
            5.0,
        )
        empty = report["empty_launch"]
        if "p50_us" in empty:
            results.add(
                [
                    bench_row(
                        BENCHMARK,
                        "empty Triton launch",
                        device=device,
                        backend="triton",
                        shape={"grid": 1},
                        p50_ms=empty["p50_us"] / 1e3,
                        p90_ms=empty["p90_us"] / 1e3,
                        p99_ms=empty["p99_us"] / 1e3,
                        throughput=1e6 / empty["p50_us"],
                        throughput_unit="launches/s",
                        extra={"mean_ms": empty["mean_us"] / 1e3, "iters": iters},
                    )
                ]
            )
        save(report, out)
    ceilings = dict(report.get("ceilings", {}))
    ceilings["nominal_hbm_bytes_per_s"] = report.get("preflight", {}).get("card", {}).get("nominal_hbm_bytes_per_s")
    backends = TIMING_BACKENDS if cuda else ("reference",)
    rows = report["timing"] = []
    need = 2.0 if smoke else 20.0
    for case in timing_cases(smoke):
        name = f"{case['dtype']}-P{case['P']}-B{case['B']}"
        row = attempt(
            name, lambda: time_case(case, device, backends, iters, ceilings, report, results), clock, "timing", need
        )
        if "seconds" in row and "error" not in row:
            need = max(need, 1.2 * row["seconds"])
        rows.append(row)
        print("timing", json.dumps(finite(row)), flush=True)
        save(report, out)
    if cuda:  # torch.compile of the reference: slow to compile, so only with the time that is left
        for row in rows:
            if "batch" not in row:
                continue
            case = {"mods": row["modalities"], "P": row["projection_size"], "B": row["batch"], "dtype": row["dtype"]}
            extra = attempt(
                row["name"],
                lambda: time_case(case, device, ("reference-compile",), iters, ceilings, report, results),
                clock,
                "timing",
                60.0,
            )
            timed = {k: v for k, v in extra.items() if k.startswith("compile_")}
            row.update(timed or {"compile_skipped": extra.get("skipped") or extra.get("error")})
            if "skipped" in extra:
                break
        save(report, out)


# ------------------------------------------------------------------------------------------- end to end
def check_encoder_graphs(device: torch.device, which: str) -> dict:
    """A CUDA-graph encoder core against its eager twin on random inputs (norm-wise relative error);
    'hubert' exercises the per-exact-shape graphs of a core that is not padding-invariant."""
    from fastdaf.bench import audio_core, text_core

    def build(backend: str):
        if which == "text":
            return text_core("minilm", device, torch.float16, backend, 128)[0]
        if which == "acoustic":
            return audio_core("acoustic", device, torch.float32, backend, 10.0)[0]
        return audio_core("hubert-base", device, torch.float16, backend, 10.0)[0]

    sizes, tol = {
        "text": (((1, 37), (5, 64), (3, 100)), 1e-2),
        "acoustic": (((1, 37), (5, 64), (3, 100)), 1e-3),
    }.get(which, (((1, 100), (2, 50)), 1e-2))
    eager = build("eager")
    graph = build("cudagraph")
    graph.core = eager.core  # one set of random weights for both
    errors = []
    for batch, size in sizes:
        if which == "text":
            inputs = {
                "input_ids": torch.randint(1000, 2000, (batch, size), device=device),
                "attention_mask": torch.ones(batch, size, dtype=torch.long, device=device),
            }
            inputs["attention_mask"][0, size // 2 :] = 0
        else:
            n = size * 1600
            wave = torch.randn(batch, n, device=device) * 0.1
            inputs = (
                {"waveforms": wave, "lengths": torch.full((batch,), n, device=device)}
                if which == "acoustic"
                else {"inputs": wave.half(), "frames": torch.full((batch,), (n - 400) // 320 + 1, device=device)}
            )
        with torch.inference_mode():
            want, got = eager(inputs), graph(inputs)
        want, got = (want[0], got[0]) if isinstance(want, tuple) else (want, got)
        errors.append(relative_error(got.float(), want.double()))
    return {"errors": errors, "tolerance": tol, "ok": max(errors) <= tol}


def e2e_plan(smoke: bool) -> list[dict]:
    """What the end-to-end section runs, in priority order: checks (graphs vs eager) and timed rows."""
    default = dict(text_model="minilm", audio_model="acoustic", tokens=64, seconds=10.0)
    if smoke:  # eager only, tiny: the code path, not a measurement
        return [
            dict(
                name="default-all-eager",
                backends=["eager"],
                head="reference",
                batches=[1],
                **dict(default, tokens=8, seconds=0.5),
            )
        ]
    big = dict(text_model="bert-base", audio_model="hubert-base", tokens=64, seconds=10.0)
    return [
        dict(name="check-text-graphs", check="text"),
        dict(name="check-acoustic-graphs", check="acoustic"),
        dict(name="default-fast", backends=["cudagraph"], head="auto", batches=[1, 64], **default),
        dict(name="default-all-eager", backends=["eager"], head="reference", batches=[1], **default),
        dict(name="check-hubert-exact-graphs", check="hubert"),
        dict(name="hubert-bert-fast", backends=["cudagraph"], head="auto", batches=[1], **big),
        dict(name="default-tensorrt", backends=["tensorrt"], head="auto", batches=[1, 64], **default),
        dict(name="hubert-bert-eager", backends=["eager"], head="auto", batches=[1], **big),
    ]


def run_e2e(
    report: dict, device: torch.device, smoke: bool, iters: int, clock: Clock, out: Path, results: Results | None = None
) -> None:
    from fastdaf.bench import bench_e2e, e2e_bench_rows, format_e2e

    results = results or Results(None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # measured faster for HuBERT's convolutions
    report["encoder_checks"], report["e2e"] = [], []
    for item in e2e_plan(smoke):
        if "check" in item:
            row = attempt(item["name"], lambda: check_encoder_graphs(device, item["check"]), clock, "e2e", 30.0)
            report["encoder_checks"].append(row)
            print("encoder check", json.dumps(finite(row)), flush=True)
        else:
            options = {k: item[k] for k in ("text_model", "audio_model", "tokens", "seconds", "head")}
            row = attempt(
                item["name"],
                lambda: {
                    "rows": bench_e2e(
                        device, item["backends"], item["batches"], warmup=3 if smoke else 10, iters=iters, **options
                    )
                },
                clock,
                "e2e",
                5.0 if smoke else 30.0,
            )
            if "rows" in row:
                report["e2e"] += [{"plan": item["name"], **r} for r in row["rows"]]
                print(format_e2e(row["rows"]), flush=True)
                try:
                    results.add(e2e_bench_rows(row["rows"], device, benchmark=BENCHMARK, plan=item["name"]))
                except Exception as exc:  # noqa: BLE001 - fail-soft: the report has the rows
                    print(f"gpu_check: e2e benchmark rows not made: {error_text(exc)}", file=sys.stderr)
            else:
                report["e2e"].append({"plan": item["name"], **row})
                print("e2e", json.dumps(finite(row)), flush=True)
        save(report, out)


# ------------------------------------------------------------------------------------------- targets
def target(name: str, value: float | None, row: str, threshold: float, at_most: bool, measure: str) -> dict:
    """One judged target; `source` says what was measured and which row it came from."""
    passed = None if value is None else (value <= threshold if at_most else value >= threshold)
    return {
        "name": name,
        "value": value,
        "threshold": threshold,
        "pass": passed,
        "compare": "<=" if at_most else ">=",
        "source": f"{measure}; {row}",
    }


def judge_targets(report: dict) -> list[dict]:
    """One object per target of issue 12, from this run's rows (value/pass None where not measured).
    Head targets take the worst row of their batch (and dtype); end-to-end ones the best fast row."""
    timing = [r for r in report.get("timing", []) if "batch" in r]
    empty = (report.get("empty_launch") or {}).get("p50_us")
    e2e = [r for r in report.get("e2e", []) if "total_p50_us" in r]

    def pick(
        rows: list[dict], key: Callable[[dict], float | None], choose: Callable, label: Callable[[dict], str]
    ) -> tuple[float | None, str]:
        """(value, where it came from) of the row `choose` (min or max) selects; (None, 'not measured') without one."""
        vals = [(v, label(r)) for r in rows if (v := key(r)) is not None]
        return choose(vals) if vals else (None, "not measured")

    def head(rows: list[dict], key: Callable[[dict], float | None], at_most: bool) -> tuple[float | None, str]:
        value, name = pick(rows, key, max if at_most else min, lambda r: r["name"])  # the worst row
        return value, f"worst row {name}" if value is not None else name

    def e2e_rows(plans: tuple[str, ...], batch: int) -> list[dict]:
        return [r for r in e2e if r["plan"] in plans and r["batch"] == batch]

    def e2e_label(r: dict) -> str:
        return f"{r['plan']}: encoders {r['backend']}, head {r['head']}, B={r['batch']}"

    def p50(r: dict, backend: str) -> float | None:
        return r.get(f"{backend}_p50_us")

    b1 = [r for r in timing if r["batch"] == 1]
    big = [r for r in timing if r["batch"] == 65536 and r["dtype"] == "fp16"]
    fast = ("default-fast", "default-tensorrt")
    e2e_b1, src_b1 = pick(e2e_rows(fast, 1), lambda r: r["total_p50_us"] / 1000, min, e2e_label)
    all_eager = e2e_rows(("default-all-eager",), 1)
    speedup, src_speedup = None, "not measured"
    if e2e_b1 is not None and all_eager:
        speedup = all_eager[0]["total_p50_us"] / 1000 / e2e_b1
        src_speedup = f"total p50 of {e2e_label(all_eager[0])} / of {src_b1}"
    hubert, src_hubert = pick(e2e_rows(("hubert-bert-fast",), 1), lambda r: r["total_p50_us"] / 1000, min, e2e_label)
    rate64, src_rate64 = pick(e2e_rows(fast, 64), lambda r: r["utterances_per_s"], max, e2e_label)
    return [
        target(
            "head_b1_fused_over_empty_launch",
            *head(b1, lambda r: p50(r, "fused") / empty if p50(r, "fused") and empty else None, True),
            1.5,
            True,
            "fused p50 / empty Triton launch p50",
        ),
        target(
            "head_b1_fused_speedup_vs_eager",
            *head(b1, lambda r: r.get("fused_speedup_vs_eager"), False),
            5.0,
            False,
            "eager reference p50 / fused p50",
        ),
        target(
            "head_b1_graph_fused_speedup_vs_graph_reference",
            *head(b1, lambda r: r.get("graph_fused_speedup_vs_graph_reference"), False),
            1.5,
            False,
            "reference under a CUDA graph p50 / fused under a CUDA graph p50",
        ),
        target(
            "head_b65536_fp16_fused_speedup_vs_eager",
            *head(big, lambda r: r.get("fused_speedup_vs_eager"), False),
            3.0,
            False,
            "eager reference p50 / fused p50",
        ),
        target(
            "head_b65536_fp16_roofline_fraction_hbm",
            *head(big, lambda r: r.get("roofline_fraction_hbm"), False),
            0.5,
            False,
            "(bytes moved / measured copy bandwidth) / fused-under-graph device time (CUDA events)",
        ),
        target(
            "head_b65536_fp16_roofline_fraction_hbm_nominal",
            *head(big, lambda r: r.get("roofline_fraction_hbm_nominal"), False),
            0.5,
            False,
            "(bytes moved / the card's nominal HBM bandwidth) / fused-under-graph device time",
        ),
        target(
            "head_b65536_fp16_roofline_fraction_max_hbm_flop",
            *head(big, lambda r: r.get("roofline_fraction"), False),
            0.5,
            False,
            "max(HBM floor, FLOPs / measured fp16 matmul rate) / fused-under-graph device time (CUDA events)",
        ),
        target("e2e_default_b1_latency_ms", e2e_b1, src_b1, 1.5, True, "total p50, ms; the fastest backend row"),
        target(
            "e2e_default_b1_speedup_vs_all_eager",
            speedup,
            src_speedup,
            5.0,
            False,
            "all-eager total p50 / fastest total p50",
        ),
        target("e2e_hubert_bert_base_b1_latency_ms", hubert, src_hubert, 4.0, True, "total p50, ms"),
        target(
            "e2e_default_b64_utterances_per_s",
            rate64,
            src_rate64,
            10000.0,
            False,
            "batch / total p50; the fastest backend row",
        ),
    ]


def format_targets(targets: list[dict]) -> str:
    lines = [f"{'target':>50} {'value':>10} {'':>2} {'threshold':>9} {'pass':>5}  source"]
    for t in targets:
        value = "-" if t["value"] is None else f"{t['value']:.3g}"
        verdict = "-" if t["pass"] is None else ("yes" if t["pass"] else "NO")
        lines.append(f"{t['name']:>50} {value:>10} {t['compare']:>2} {t['threshold']:>9g} {verdict:>5}  {t['source']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ prebuilt kernels
# The sm_90 kernels this script launches, compiled on a CPU beforehand (--prebuild DIR, no GPU) and
# carried to the GPU machine (--triton-cache DIR), so that a short lease measures instead of compiling.
# Triton keys its cache by a hash of its own files and of its compiled library, which differs between
# builds of one release for two Python versions (3.11 here, 3.12 on the GPU machine), so a cache built
# here would never be hit there: --triton-cache pins the key to the one the cache was built with, and
# only when the Triton release and the target are the same (the compiler's code is; its output for
# one target does not depend on the Python it runs under). Validation then checks what was loaded.
PREBUILT_ARCH = 90


def prebuild_cases() -> list[tuple[DAFConfig, str, str | None, dict | None, int, bool]]:
    """(config, dtype, precision, tile or None for autotuned, batch, mask) of every fused-head call in a GPU
    run's validation and timing, with the tiles it will pin."""
    cases = []
    for case in validation_cases(smoke=False):
        cfg = DAFConfig(case["mods"], projection_size=case["P"], attention_size=case["A"], hidden_size=case["H"],
                        n_outputs=case["NO"], fusion=case["fusion"])  # fmt: skip
        tile = None
        if not case["autotune"]:
            tiles = tiles_for(cfg, DTYPES[case["dtype"]])
            tile = tiles[case["cell"] % len(tiles)]
        cases.append((cfg, case["dtype"], case["precision"], tile, case["B"], case["mask"]))
    for case in timing_cases(smoke=False):
        cfg = DAFConfig(case["mods"], projection_size=case["P"], attention_size=64, hidden_size=128)
        cases.append((cfg, case["dtype"], "tf32" if case["dtype"] == "fp32" else None, None, case["B"], True))
    return cases


def prebuild(out: Path, cases: list | None = None) -> dict:
    """Compile every kernel a GPU run launches (or those of `cases`, from prebuild_cases) for sm_90 on this
    machine into out/triton, with a manifest."""
    from triton.runtime.cache import triton_key

    from fastdaf.kernels.daf_head import daf_head_kernel, daf_head_kernel_tuned
    from fastdaf.kernels.offline import offline_target

    cache = out / "triton"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["TRITON_CACHE_DIR"] = str(cache)
    start = time.monotonic()
    timings = []
    for cfg, dtype, precision, tile, batch, mask in prebuild_cases() if cases is None else cases:
        head = random_head(cfg, torch.device("cpu"))
        fused = FusedDAFHead.from_head(head, precision=precision or "tf32", block_config=tile)
        feats, present = random_features(cfg, batch, DTYPES[dtype], torch.device("cpu"))
        case_start = time.monotonic()
        with offline_target(PREBUILT_ARCH, daf_head_kernel, daf_head_kernel_tuned), torch.no_grad():
            fused(feats, present if mask else None)
        timings.append(time.monotonic() - case_start)
    manifest = {
        "triton": triton.__version__,
        "triton_key": triton_key(),
        "arch": PREBUILT_ARCH,
        "python": sys.version.split()[0],
        "fused_calls": len(timings),
        "kernels": len([p for p in cache.iterdir() if any(p.glob("*.cubin"))]),
        "compile_seconds": round(sum(timings), 1),
        "seconds": round(time.monotonic() - start, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def use_prebuilt(folder: Path) -> dict:
    """Point Triton's cache at a copy of a prebuilt one (see above); what was done, or why not."""
    import shutil
    import tempfile

    import triton.runtime.cache as triton_cache

    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        return {"used": False, "why": f"no prebuilt cache manifest: {error_text(exc)}"}
    if manifest.get("triton") != triton.__version__:
        return {"used": False, "why": f"built with Triton {manifest.get('triton')}, this is {triton.__version__}"}
    copy = Path(tempfile.mkdtemp(prefix="gpu-check-triton-"))
    shutil.copytree(folder / "triton", copy, dirs_exist_ok=True)
    os.environ["TRITON_CACHE_DIR"] = str(copy)
    own = triton_cache.triton_key()
    pinned = own != manifest["triton_key"]
    if pinned:
        triton_cache.triton_key = lambda: manifest["triton_key"]
    return {"used": True, "cache": str(copy), "kernels": manifest.get("kernels"), "key_pinned": pinned,
            "built_with_python": manifest.get("python")}  # fmt: skip


# ---------------------------------------------------------------------------------------------- main
def print_bounds_and_traffic(report: dict) -> None:
    """The correctness bounds this run judges by, and the fused head's predicted memory traffic (a CPU
    model, kernels/daf_head_traffic.py) that the B=65536 timings are read against; both in the report."""
    from fastdaf.kernels.daf_head_traffic import BANDWIDTH, format_rows, traffic_rows

    report["bounds"] = {f"{d}-{p}" if p else d: tol for (d, p), tol in COMPONENTWISE_TOLERANCE.items()}
    print("bounds (componentwise error over the size rounding gives each output):", json.dumps(report["bounds"]))
    report["traffic_prediction"] = {"bandwidth_bytes_per_s": BANDWIDTH, "rows": traffic_rows()}
    print("predicted traffic of the fused head at B=65536, text 768 + audio 74 (H100 figures):")
    print(format_rows(report["traffic_prediction"]["rows"]), flush=True)


def failures(report: dict) -> list[dict]:
    """The correctness failures that set the exit code (see the module docstring)."""
    bad = [r for r in report.get("validation", []) if "skipped" not in r and not r.get("ok")]
    bad += [r for r in report.get("encoder_checks", []) if r.get("ok") is False or r.get("import_error")]
    bad += [{"name": f"preflight {k}", **v} for k, v in report.get("preflight", {}).items() if v.get("ok") is False]
    return bad + [r for section in ("timing", "e2e") for r in report.get(section, []) if r.get("import_error")]


def run_section(report: dict, name: str, fn: Callable[[], None], skip: str | None, out: Path) -> None:
    """A section, fail-soft as a whole too; its status and duration go in report["sections"]."""
    start = time.monotonic()
    if skip:
        report["sections"][name] = {"status": "skipped", "why": skip}
    else:
        try:
            fn()
            report["sections"][name] = {"status": "done"}
        except Exception as exc:  # noqa: BLE001 - fail-soft: the section records its error, the next runs
            traceback.print_exc()
            report["sections"][name] = {"status": "error", "error": error_text(exc)}
    report["sections"][name]["seconds"] = time.monotonic() - start
    report["targets"] = judge_targets(report)
    save(report, out)


def main(argv: list[str] | None = None, *, started: float | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU dry run in the Triton interpreter")
    parser.add_argument("--deadline", type=float, default=300.0, help="total seconds for the run (default 300)")
    parser.add_argument("--iters", type=int, default=200, help="timed calls per backend and shape (after warm-up)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true", help="skip the encoder checks and end-to-end timing")
    parser.add_argument(
        "--results", type=Path, default=None, help="append the benchmark rows here (default: OUT/results.jsonl)"
    )
    parser.add_argument("--no-results", action="store_true", help="write no benchmark rows")
    parser.add_argument(
        "--prebuild", type=Path, default=None, metavar="DIR",
        help="compile the sm_90 kernels a GPU run launches into DIR, on this machine (no GPU), and exit",
    )  # fmt: skip
    parser.add_argument(
        "--triton-cache", type=Path, default=None, metavar="DIR", help="use kernels prebuilt by --prebuild DIR"
    )
    args = parser.parse_args(argv)
    if args.prebuild is not None:
        if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
            print(
                "gpu_check: --prebuild compiles: run it without TRITON_INTERPRET (and without --smoke)", file=sys.stderr
            )
            return 2
        manifest = prebuild(args.prebuild)
        print(json.dumps(manifest))
        return 0
    prebuilt = use_prebuilt(args.triton_cache) if args.triton_cache is not None else None
    results = Results(None if args.no_results else args.results or args.out / "results.jsonl")
    clock = Clock(args.deadline, time.monotonic() if started is None else started)
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; run with --smoke for a CPU dry run", file=sys.stderr)
        return 2
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        print(
            "gpu_check: --smoke runs the Triton interpreter: set TRITON_INTERPRET=1 before triton is imported",
            file=sys.stderr,
        )
        return 2
    report: dict[str, Any] = {
        "environment": environment(device),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "deadline_s": args.deadline,
        "sections": {},
        "validation": [],
        "targets": [],
    }
    report["environment"]["fastdaf_from"] = str(Path(sys.modules["fastdaf"].__file__).parent.parent)
    if prebuilt is not None:
        report["prebuilt_kernels"] = prebuilt
        print("prebuilt kernels", json.dumps(prebuilt), flush=True)
    print("environment", json.dumps(report["environment"]), flush=True)
    report["targets"] = judge_targets(report)
    save(report, args.out)
    run_section(report, "preflight", lambda: run_preflight(report, device), None, args.out)
    print_bounds_and_traffic(report)
    run_section(
        report,
        "validation",
        lambda: run_validation(report, device, args.smoke, clock, args.out),
        preflight_blocks(report, "validation"),
        args.out,
    )
    run_section(
        report,
        "timing",
        lambda: run_timing(report, device, args.smoke, args.iters, clock, args.out, results),
        "--skip-timing" if args.skip_timing else preflight_blocks(report, "timing"),
        args.out,
    )
    e2e_iters = args.iters if args.smoke else max(20, args.iters // 4)
    run_section(
        report,
        "e2e",
        lambda: run_e2e(report, device, args.smoke, e2e_iters, clock, args.out, results),
        "--skip-e2e" if args.skip_e2e else preflight_blocks(report, "e2e"),
        args.out,
    )
    report["seconds"] = clock.elapsed()
    bad = failures(report)
    report["correctness_failures"] = [r["name"] for r in bad]
    save(report, args.out)

    checks = [r for r in report["validation"] if "skipped" not in r]
    skipped = len(report["validation"]) - len(checks)
    print(
        f"\nvalidation: {sum(bool(r.get('ok')) for r in checks)}/{len(checks)} cases within tolerance, "
        f"{skipped} skipped for lack of time"
    )
    for r in bad:
        print("FAILED", json.dumps(finite(r)))
    for section in ("timing", "e2e"):
        errors = [r for r in report.get(section, []) if "error" in r] + [
            {"name": r.get("name"), "error": v}
            for r in report.get(section, [])
            for k, v in r.items()
            if k.endswith("_error")
        ]
        for r in errors:
            print(f"{section} error (not judged): {r['name']}: {r['error']}")
    print("\n" + format_targets(report["targets"]))
    print(
        f"\ngpu_check: {report['seconds']:.0f} s of a {args.deadline:.0f} s deadline, "
        f"report in {args.out / 'gpu_check.json'}"
        + (f", {results.written} benchmark rows appended to {results.path}" if results.written else "")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(started=STARTED))
