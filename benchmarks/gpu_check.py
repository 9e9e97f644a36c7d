"""ONE script for a short GPU lease: is the fused DAF head right, and does it meet its targets?

    python3 benchmarks/gpu_check.py --out DIR [--deadline 300]  # GPU machine, plain checkout: DIR/gpu_check.json
    python3 benchmarks/gpu_check.py --smoke --out DIR           # CPU dry run of the same code (TRITON_INTERPRET=1)

It needs only torch, triton, transformers and numpy (a lent GPU machine has these and torchaudio): the
script puts its checkout on sys.path (kernels/ has no __init__.py, so it never shadows an installed `kernels`),
and fastdaf registers kernels/ as fastdaf.kernels there
(fastdaf/__init__.py); nothing is installed, and soundfile & co are imported only where used.

Sections, in priority order, inside one total deadline (--deadline, default 300 s, counted from
the script's start). A section stops when its window closes (validation may use the deadline up to
its last 45%, timing up to its last 20%, end to end the rest; time a section leaves over goes to
the next) and records each case it did not start as {"skipped": "deadline ..."}:

1. validation: 16 compiled variants of the kernel, a 4x4 covering design (row: input dtype
   fp32-tf32/fp32-ieee/fp16/bf16; column: 1-4 modalities; a Latin square picks the fusion, another
   assignment the mask, so every pair of those factors occurs and none moves in lock-step),
   projection sizes 16..512 spread over the cells, each with a pinned tile from
   fastdaf.kernels.daf_head.feasible_tiles; plus two autotuned cases. Each output is poisoned with
   NaN first (every element must be written), and compared with the reference head evaluated in
   float64 on the GPU: norm-wise relative error of scores and of modality weights (TOLERANCE).
2. head timing at the target shapes (text 768 + audio 74; projection 128 and 256; B = 1, 64, 65536;
   fp16 and fp32; B=1 first): eager reference, reference under a CUDA graph, fused, fused under a
   CUDA graph, and an empty Triton launch; torch.compile of the reference only if time is left.
   The autotuned fused head is also checked against float64 at each timed shape. Ceilings measured
   in this run: device copy bandwidth (bytes read + written) and the fp16/tf32 rate of an 8192^3
   matrix product; the roofline floor of the fused head is bytes moved / copy bandwidth (HBM only)
   and max(that, FLOPs / matmul rate).
3. end to end (fastdaf.bench.bench_e2e): CUDA-graph encoder cores first checked against eager, then
   the default encoders (MiniLM-L6-size text encoder with random weights, its 1..6 layer mix, and
   the built-in acoustic features; 64 tokens, 10 s of audio) at B=1 and 64 with the fastest
   backends, the all-eager baseline (eager encoders and the eager reference head) at B=1, and
   HuBERT-base + BERT-base at B=1 (HuBERT on CUDA graphs captured per exact input shape).

Measurement: every latency is wall clock per call (host clock around the call and a device
synchronise: what a caller waits for), p50 (and p90) over --iters calls after warm-up, so
compilation, autotuning and graph capture stay out; the backends of one shape are timed side by
side in one process on one card, and the head targets are ratios of p50s within this run.

Output: DIR/gpu_check.json, rewritten after every validation case and every section, with
"targets": one {"name", "value", "threshold", "pass", "source"} per target of issue 12 (value and
pass null where its part did not run), also printed as a table. Every case is fail-soft: an
exception is recorded as {"error": "<type>: <message>"} and the run goes on. The exit code reflects
correctness only: 1 if a validation case failed or raised, a graph encoder disagreed with eager, or any
case could not import what it needs (an ImportError means a broken environment, such as a package shadowed
by a folder of the checkout, and every end-to-end row would fail the same way); other timing and end-to-end
errors are printed and recorded, not judged. gpu_check.json keeps its format
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
from fastdaf.bench import head_callables, random_features, random_head, time_calls  # noqa: E402
from fastdaf.bench_rows import BenchRow, append_rows, bench_row, environment  # noqa: E402
from fastdaf.fused import FusedDAFHead  # noqa: E402
from fastdaf.reference_check import TOLERANCE, reference64, relative_error  # noqa: E402  (tolerances explained there)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_TILE = {"BLOCK_B": 16, "BLOCK_K": 32, "num_warps": 4, "num_stages": 2}
# fraction of the deadline each section leaves to the sections after it
WINDOWS = {"validation": 0.45, "timing": 0.20, "e2e": 0.0}
TIMING_MODALITIES = {"text": 768, "audio": 74}
TIMING_BACKENDS = ("reference", "reference-cudagraph", "fused", "fused-cudagraph")  # fastdaf.bench.BACKENDS
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
    """Errors of the fused head against float64 on NaN-poisoned outputs, and whether every element was written."""
    cfg = head.config
    B = next(iter(feats.values())).shape[0]
    device = next(iter(feats.values())).device
    score = torch.full((B, cfg.n_outputs), float("nan"), device=device)
    weights = torch.full((B, cfg.n_modalities), float("nan"), device=device)
    with torch.no_grad():
        out = fused(feats, present, out=(score, weights))
    want_score, want_weights = reference64(head, feats, present)
    return {
        "score_err": relative_error(out.score, want_score),
        "weight_err": relative_error(out.weights, want_weights),
        "all_written": bool(torch.isfinite(score).all() and torch.isfinite(weights).all()),
    }


def judged(errors: dict, tol: float) -> dict:
    return {
        **errors,
        "tolerance": tol,
        "ok": errors["all_written"] and errors["score_err"] <= tol and errors["weight_err"] <= tol,
    }


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
    result = judged(check_fused(fused, head, feats, present), TOLERANCE[(case["dtype"], case["precision"])])
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
def measure_ceilings(device: torch.device) -> dict[str, float]:
    """Copy bandwidth (bytes read + written) and fp16/tf32 matrix-product rates, by CUDA events."""

    def median_ms(fn: Callable[[], Any], reps: int = 10) -> float:
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return sorted(times)[reps // 2]

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
                    TOLERANCE[(case["dtype"], precision)],
                )
            )
        except Exception as exc:  # noqa: BLE001
            check["error"] = error_text(exc)
        report["validation"].append(check)
    timed = []
    for backend in backends:
        key = JSON_NAMES.get(backend, backend)
        try:
            with torch.no_grad():
                fn = head_callables(head, feats, present, [backend])[backend]
                t = time_calls(fn, device, warmup=20, iters=n)
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
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            row[f"{key}_error"] = error_text(exc)
    add_ratios(row, cfg, ceilings)
    if results is not None:
        results.add(timed)
    return row


def add_ratios(row: dict, cfg: DAFConfig, ceilings: dict) -> None:
    p50 = lambda b: row.get(f"{b}_p50_us")  # noqa: E731
    if p50("eager") and p50("fused"):
        row["fused_speedup_vs_eager"] = p50("eager") / p50("fused")
    if p50("cudagraph") and p50("fused-cudagraph"):
        row["graph_fused_speedup_vs_graph_reference"] = p50("cudagraph") / p50("fused-cudagraph")
    if p50("fused-cudagraph") and ceilings.get("copy_bytes_per_s"):
        flops, moved = head_cost(cfg, row["batch"], 2 if row["dtype"] == "fp16" else 4)
        rate = ceilings["fp16_flops_per_s"] if row["dtype"] == "fp16" else ceilings["tf32_flops_per_s"]
        hbm_us = moved / ceilings["copy_bytes_per_s"] * 1e6
        floor_us = max(hbm_us, flops / rate * 1e6)
        row.update(
            flops=flops,
            bytes=moved,
            roofline_hbm_us=hbm_us,
            roofline_us=floor_us,
            roofline_fraction_hbm=hbm_us / p50("fused-cudagraph"),
            roofline_fraction=floor_us / p50("fused-cudagraph"),
        )


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
    ceilings = report.get("ceilings", {})
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

    if which == "text":
        build = lambda backend: text_core("minilm", device, torch.float16, backend, 128)[0]  # noqa: E731
        sizes, tol = ((1, 37), (5, 64), (3, 100)), 1e-2
    elif which == "acoustic":
        build = lambda backend: audio_core("acoustic", device, torch.float32, backend, 10.0)[0]  # noqa: E731
        sizes, tol = ((1, 37), (5, 64), (3, 100)), 1e-3
    else:
        build = lambda backend: audio_core("hubert-base", device, torch.float16, backend, 10.0)[0]  # noqa: E731
        sizes, tol = ((1, 100), (2, 50)), 1e-2
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

    p50 = lambda r, b: r.get(f"{b}_p50_us")  # noqa: E731
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
            "(bytes moved / measured copy bandwidth) / fused-under-graph p50",
        ),
        target(
            "head_b65536_fp16_roofline_fraction_max_hbm_flop",
            *head(big, lambda r: r.get("roofline_fraction"), False),
            0.5,
            False,
            "max(HBM floor, FLOPs / measured fp16 matmul rate) / fused-under-graph p50",
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


# ---------------------------------------------------------------------------------------------- main
def failures(report: dict) -> list[dict]:
    """The correctness failures that set the exit code (see the module docstring)."""
    bad = [r for r in report.get("validation", []) if "skipped" not in r and not r.get("ok")]
    bad += [r for r in report.get("encoder_checks", []) if r.get("ok") is False or r.get("import_error")]
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
        except Exception as exc:  # noqa: BLE001
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
    args = parser.parse_args(argv)
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
    print("environment", json.dumps(report["environment"]), flush=True)
    report["targets"] = judge_targets(report)
    save(report, args.out)
    run_section(
        report, "validation", lambda: run_validation(report, device, args.smoke, clock, args.out), None, args.out
    )
    run_section(
        report,
        "timing",
        lambda: run_timing(report, device, args.smoke, args.iters, clock, args.out, results),
        "--skip-timing" if args.skip_timing else None,
        args.out,
    )
    e2e_iters = args.iters if args.smoke else max(20, args.iters // 4)
    run_section(
        report,
        "e2e",
        lambda: run_e2e(report, device, args.smoke, e2e_iters, clock, args.out, results),
        "--skip-e2e" if args.skip_e2e else None,
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
