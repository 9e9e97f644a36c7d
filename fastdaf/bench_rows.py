"""One row schema for every benchmark (`BenchRow`) and one results file: writing, reading, and the warnings
that say when a run's figures deserve distrust.

`fastdaf-bench` (head, e2e, serve) and every timing script in benchmarks/ append their measurements,
one JSON object per line, to ONE results file: `benchmarks/results.jsonl` under the current directory (the
checkout's, when run from its root as the commands in benchmarks/RESULTS.md are).
`--results FILE` writes elsewhere, `--no-results` writes nothing; the environment variable
FASTDAF_BENCH_RESULTS sets the default (`none`: write nothing unless --results is given); the test suite sets
it to `none` (tests/conftest.py, inherited by subprocesses), so test runs never append to the checkout's results.
`fastdaf-bench plot [--results FILE] --out FILE.png` draws the p50 of every timed row, per what and
backend, grouped by benchmark (fastdaf.bench_charts.plot_rows).

A row says which benchmark wrote it (`benchmark`), what was timed (`what`), on which `backend`, at
which `shape` (batch, text length, audio seconds, projection, ...) and `dtype`; the latency
percentiles in milliseconds (`p50_ms`, `p90_ms`, `p99_ms`: null where the benchmark times no
distribution, e.g. a single pass, or measures errors rather than times); a `throughput` and its
`throughput_unit`; the `device`, the `versions` (torch, triton, python, fastdaf), the checkout's git
`commit` (null outside a git checkout; suffixed `-dirty` when tracked files differ from it) and the
UTC `date`; and `extra`, a dict of the benchmark's own numbers.

Percentiles (`percentiles`) have one implementation, which `fastdaf.bench_head.time_calls` uses too:
p50 is the median, p90 and p99 the sample at rank int(q * n) of the sorted samples (the largest
sample when there are fewer than 10 or 100).

Only the standard library and torch are imported here (benchmarks/gpu_check.py runs on a bare GPU
machine); the charts, which need matplotlib, are in fastdaf.bench_charts.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from .dtypes import dtype_name as _dtype_name
from .errors import InputError
from .version import __version__

# where this code lives: its git commit is recorded in every row (none outside a git checkout)
CHECKOUT = Path(__file__).resolve().parents[1]
RESULTS_ENV = "FASTDAF_BENCH_RESULTS"
# relative to the current directory: run from a checkout's root (as benchmarks/RESULTS.md's commands are), the
# rows land in its benchmarks/ folder; no checkout path is assumed
DEFAULT_RESULTS = Path("benchmarks") / "results.jsonl"


@dataclasses.dataclass
class BenchRow:
    """One measurement: see the module docstring. Times in milliseconds; null where not measured."""

    benchmark: str  # which script or command wrote it: "fastdaf-bench head", "benchmarks/extract_speed.py", ...
    what: str  # what was timed: "DAF head", "e2e total", "served request (mixed)", ...
    backend: str | None  # how it ran: a head backend, an encoder backend, a protocol, ...
    shape: dict[str, Any]  # the sizes: batch, tokens, audio_seconds, projection, modalities, ...
    dtype: str | None  # fp32 / fp16 / bf16, null where it does not apply
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    throughput: float | None
    throughput_unit: str | None  # "rows/s", "utterances/s", "requests/s", ...
    device: str  # "NVIDIA H100 80GB HBM3", "CPU x86_64 (2 threads)"
    versions: dict[str, str | None]  # torch, triton, python, fastdaf
    commit: str | None  # git commit of the checkout ("<sha>-dirty" with uncommitted changes), null outside one
    date: str  # UTC, ISO 8601
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # the benchmark's own numbers

    def to_dict(self) -> dict[str, Any]:
        return _finite(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "row") -> BenchRow:
        """A row from its JSON object, every field checked (present, no unknown one, of its type)."""
        if not isinstance(data, dict):
            raise InputError(f"{where}: a benchmark row is a JSON object, got {type(data).__name__}")
        missing = [f for f in FIELDS if f not in data and f != "extra"]
        unknown = sorted(set(data) - set(FIELDS))
        if missing or unknown:
            raise InputError(f"{where}: benchmark row fields missing {missing}, unknown {unknown}")
        for name, types in FIELD_TYPES.items():
            value = data.get(name, {} if name == "extra" else None)
            if not isinstance(value, types) or isinstance(value, bool):
                allowed = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise InputError(f"{where}: field {name!r} must be {allowed}, got {value!r}")
        return cls(**{"extra": {}, **data})


FIELDS = tuple(f.name for f in dataclasses.fields(BenchRow))
_NUMBER = (int, float, type(None))
_TEXT = (str, type(None))
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "benchmark": (str,),
    "what": (str,),
    "backend": _TEXT,
    "shape": (dict,),
    "dtype": _TEXT,
    "p50_ms": _NUMBER,
    "p90_ms": _NUMBER,
    "p99_ms": _NUMBER,
    "throughput": _NUMBER,
    "throughput_unit": _TEXT,
    "device": (str,),
    "versions": (dict,),
    "commit": _TEXT,
    "date": (str,),
    "extra": (dict,),
}
assert set(FIELD_TYPES) == set(FIELDS)


def _finite(obj: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None, tuples lists, other objects their str()."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


# ------------------------------------------------------------------------------------------ timings
def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50 (median), p90, p99 (the sample at rank int(q * n), sorted) and mean of samples, in their unit."""
    if not samples:
        raise InputError("no samples to take percentiles of")
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": statistics.median(ordered),
        "p90": pick(0.90),
        "p99": pick(0.99),
        "mean": statistics.fmean(ordered),
    }


# ---------------------------------------------------------------------------------------- environment
def describe_device(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    return {
        "torch": torch.__version__,
        "triton": _version("triton"),
        "python": platform.python_version(),
        "fastdaf": __version__,
    }


def environment(device: torch.device | str) -> dict[str, Any]:
    """torch, triton and python versions and the device, as `fastdaf-bench --json` and gpu_check.json report them."""
    return {
        "torch": torch.__version__,
        "triton": _version("triton"),
        "python": platform.python_version(),
        "device": describe_device(device),
    }


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit, "-dirty" appended when tracked files differ from it; None outside a git checkout."""
    if not (CHECKOUT / ".git").exists():
        return None

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha or None


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def dtype_name(dtype: torch.dtype | str | None) -> str | None:
    """fp32 / fp16 / bf16 / fp64 for torch dtypes and their names ("float16", "torch.float16"); other text as it is."""
    if isinstance(dtype, str):
        found = getattr(torch, dtype.removeprefix("torch."), None)
        dtype = found if isinstance(found, torch.dtype) else dtype
    if dtype is None or isinstance(dtype, str):
        return dtype
    return "fp64" if dtype == torch.float64 else _dtype_name(dtype)


# When figures deserve distrust: a p99 more than SPREAD_WARNING times the p50 (some calls ran far slower than
# the median: other work, clock changes, allocation), or more runnable tasks than cores (1-minute load average
# above the CPU count) before or after the run. Both bounds are choices, not measured limits: figures on a
# loaded 2-core machine were seen to change 10-60x (the issue that asked for these warnings).
SPREAD_WARNING = 3.0


def machine_load() -> dict[str, Any]:
    """The CPU count and 1-minute load average, recorded beside every figure."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu_count": os.cpu_count(), "load_1m": None if load is None else round(load, 2)}


def reliability_warnings(
    rows: Sequence[BenchRow], before: dict[str, Any], after: dict[str, Any] | None = None
) -> list[str]:
    """Why this run's figures may not be reliable, in words (empty when nothing says so)."""
    warnings = []
    cpus = before.get("cpu_count") or 1
    for when, load in (("before", before), ("after", after or {})):
        if load.get("load_1m") is not None and load["load_1m"] > cpus:
            warnings.append(
                f"the machine was busy {when} the run (load {load['load_1m']} on {cpus} CPUs): other work competes "
                "for the cores, figures can be several times too slow; rerun on a quiet machine"
            )
    spread = [r for r in rows if r.p50_ms and r.p99_ms and r.p99_ms / r.p50_ms > SPREAD_WARNING]
    if spread:
        worst = max(spread, key=lambda r: r.p99_ms / r.p50_ms)
        warnings.append(
            f"{len(spread)} figure(s) have p99/p50 above {SPREAD_WARNING:g} (worst {worst.p99_ms / worst.p50_ms:.1f}: "
            f"{row_label(worst)}): some calls ran far slower than the median; use more --iters or a quieter machine"
        )
    return warnings


def bench_row(
    benchmark: str,
    what: str,
    *,
    device: torch.device | str,
    backend: str | None = None,
    shape: dict[str, Any] | None = None,
    dtype: torch.dtype | str | None = None,
    samples_ms: Sequence[float] | None = None,
    p50_ms: float | None = None,
    p90_ms: float | None = None,
    p99_ms: float | None = None,
    throughput: float | None = None,
    throughput_unit: str | None = None,
    extra: dict[str, Any] | None = None,
) -> BenchRow:
    """A row of this run's environment. With samples_ms (latencies in ms) its percentiles are taken here
    (and its mean and count go to extra); else p50_ms/p90_ms/p99_ms as given (None: not measured).
    device: a torch device (described here) or a description."""
    extra = dict(extra or {})
    extra.setdefault("machine", machine_load())
    if samples_ms is not None:
        stats = percentiles(samples_ms)
        p50_ms, p90_ms, p99_ms = stats["p50"], stats["p90"], stats["p99"]
        extra.setdefault("mean_ms", stats["mean"])
        extra.setdefault("samples", len(samples_ms))
    return BenchRow(
        benchmark=benchmark,
        what=what,
        backend=backend,
        shape=dict(shape or {}),
        dtype=dtype_name(dtype),
        p50_ms=p50_ms,
        p90_ms=p90_ms,
        p99_ms=p99_ms,
        throughput=throughput,
        throughput_unit=throughput_unit if throughput is not None else None,
        device=device if isinstance(device, str) else describe_device(device),
        versions=versions(),
        commit=git_commit(),
        date=utc_now(),
        extra=extra,
    )


# --------------------------------------------------------------------------------------- results file
def append_rows(rows: Iterable[BenchRow | dict[str, Any]], path: str | Path = DEFAULT_RESULTS) -> Path:
    """Append rows to the results file, one JSON object per line (folders made as needed); returns the path."""
    path = Path(path)
    lines = []
    for i, row in enumerate(rows):
        row = row if isinstance(row, BenchRow) else BenchRow.from_dict(row, f"row {i}")
        lines.append(json.dumps(row.to_dict(), sort_keys=False) + "\n")
    if not lines:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write("".join(lines))
    except OSError as exc:
        raise InputError(f"cannot append benchmark rows to {path}: {exc}") from exc
    return path


def read_rows(path: str | Path = DEFAULT_RESULTS) -> list[BenchRow]:
    """Every row of a results file, checked against the schema (blank lines skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the results file {path}: {exc}") from exc
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: not a JSON object: {exc}") from exc
        rows.append(BenchRow.from_dict(data, f"{path}:{n}"))
    return rows


# ------------------------------------------------------------------------------------- command line
def add_results_options(parser: argparse.ArgumentParser, default: str | Path | None = None) -> None:
    """--results FILE and --no-results; default: `default`, else FASTDAF_BENCH_RESULTS, else DEFAULT_RESULTS."""
    where = default if default is not None else f"${RESULTS_ENV}, else {DEFAULT_RESULTS}"
    parser.add_argument(
        "--results",
        default=None,
        metavar="FILE",
        help=f"append the benchmark rows (JSON lines) here (default: {where})",
    )
    parser.add_argument("--no-results", action="store_true", help="write no benchmark rows")


def default_results() -> Path | None:
    """FASTDAF_BENCH_RESULTS (none/off/empty: no file); else DEFAULT_RESULTS."""
    env = os.environ.get(RESULTS_ENV)
    if env is None:
        return DEFAULT_RESULTS
    return None if env.strip().lower() in ("", "none", "off") else Path(env)


def results_path(args: argparse.Namespace, default: str | Path | None = None) -> Path | None:
    """Where add_results_options' arguments say rows go; None for --no-results."""
    if args.no_results:
        return None
    if args.results:
        return Path(args.results)
    return Path(default) if default is not None else default_results()


def write_results(
    rows: Sequence[BenchRow], args: argparse.Namespace, *, prog: str, default: str | Path | None = None
) -> Path | None:
    """Append rows where the command line says (a line on stderr names the file); None when nothing was written."""
    path = results_path(args, default)
    if path is None or not rows:
        return None
    append_rows(rows, path)
    print(f"{prog}: {len(rows)} benchmark row(s) appended to {path}", file=sys.stderr)
    return path


# ---------------------------------------------------------------------------------------- row labels
def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return "+".join(f"{k}{_compact(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(_compact(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def row_label(row: BenchRow, with_device: bool = False) -> str:
    """A row named by what was timed, its backend, shape and dtype (and device): in warnings and on the chart."""
    parts = [row.what, row.backend or "-"]
    shape = " ".join(f"{k}={_compact(v)}" for k, v in row.shape.items())
    parts += [p for p in (shape, row.dtype, row.device if with_device else None) if p]
    label = " | ".join(parts)
    return label if len(label) <= 110 else label[:107] + "..."
