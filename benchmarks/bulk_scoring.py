"""Rows per second of `fastdaf predict --manifest` on one machine: the single-process path (--engine local)
against Ray Data (--engine ray, a local Ray instance), on the same manifest, in the same run.

The manifest (JSONL) holds the first --rows CMU-MOSEI train transcripts; --audio-rows of them, evenly
spread, also carry one of the six real CMU ARCTIC clips (in turn). Each engine runs as its own
`fastdaf predict` process (python -m fastdaf.cli), timed from start to exit: imports, model loading
(once per Ray worker), Ray's start and stop and the writing of the outputs are all in the time, as a user
sees them. The two outputs are then compared row by row (same ids in order, scores within 1e-4, same errors).

    python benchmarks/bulk_scoring.py [--rows 2000] [--audio-rows 100] [--small-rows 200] [--workers N]
                                      [--batch-size 32] [--results FILE | --no-results]

Both engines also run on the first --small-rows rows, so that the rate beyond a run's fixed costs
(imports, model loads, Ray's start and stop) shows: marginal rows/s = (rows - small) / (t(rows) - t(small)).
Prints one JSON object (rows/s of both and their ratio, end to end and marginal; for Ray also
`job_seconds`, the time inside fastdaf.engines.ray.predict_manifest from Ray's start to the outputs written) and
appends one benchmark row per engine (fastdaf.bench_rows) to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastdaf.bench_rows import add_results_options, bench_row, write_results
from fastdaf.examples import ARCTIC_PROMPTS

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BENCHMARK = "benchmarks/bulk_scoring.py"


def build_manifest(path: Path, n_rows: int, audio_rows: int) -> None:
    with (SHARED / "cmu-mosei-text" / "train.csv").open(newline="", encoding="utf-8") as f:
        texts = [(r[""], r["sentence"]) for r in itertools.islice(csv.DictReader(f), n_rows)]
    if len(texts) < n_rows:
        raise SystemExit(f"only {len(texts)} transcripts in {SHARED / 'cmu-mosei-text' / 'train.csv'}")
    clips = [str(SHARED / "speech" / f"cmu_arctic_us_{name}.wav") for name in ARCTIC_PROMPTS]
    step = n_rows // audio_rows if audio_rows else 0
    with path.open("w", encoding="utf-8") as f:
        for k, (row_id, text) in enumerate(texts):
            row = {"id": row_id, "text": text}
            if step and k % step == 0 and k // step < audio_rows:
                row["audio"] = clips[(k // step) % len(clips)]
            f.write(json.dumps(row) + "\n")


def run(argv: list[str]) -> tuple[float, str]:
    """Seconds from start to exit of `fastdaf predict ...` in a fresh process, and what it printed."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fastdaf.cli", "predict", *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"fastdaf predict {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def compare(local: list[dict], ray: list[dict]) -> dict:
    if [r["id"] for r in local] != [r["id"] for r in ray]:
        raise SystemExit("the engines' outputs differ in ids or order")
    errors = sum(a["error"] != b["error"] for a, b in zip(local, ray))
    diffs = [abs(a["score"] - b["score"]) for a, b in zip(local, ray) if a["score"] is not None]
    worst = max(diffs, default=0.0)
    if errors or len(diffs) != sum(b["score"] is not None for b in ray) or worst > 1e-4 + 1e-9:
        raise SystemExit(f"the engines disagree: {errors} error strings differ, max score difference {worst}")
    return {"rows_compared": len(local), "max_score_difference": worst}


def time_engines(tmp: Path, n_rows: int, args: argparse.Namespace) -> dict:
    """Both engines on one manifest of n_rows: seconds, and their outputs compared."""
    manifest = tmp / f"manifest-{n_rows}.jsonl"
    build_manifest(manifest, n_rows, round(args.audio_rows * n_rows / args.rows))
    common = ["--manifest", str(manifest), "--batch-size", str(args.batch_size), "--json"]
    local_out, ray_out = tmp / f"local-{n_rows}.jsonl", tmp / f"ray-{n_rows}"
    local_s, _ = run([*common, "--out", str(local_out)])
    workers = ["--workers", str(args.workers)] if args.workers else []
    ray_s, printed = run([*common, "--out", str(ray_out), "--engine", "ray", "--format", "parquet", "jsonl", *workers])
    local = [json.loads(line) for line in local_out.read_text().splitlines()]
    ray = [json.loads(line) for line in (ray_out / "predictions.jsonl").read_text().splitlines()]
    return {
        "local_s": local_s,
        "ray_s": ray_s,
        "job_s": json.loads(printed)["seconds"],  # predict_manifest's own time: Ray's start to the outputs written
        "failed": sum(r["error"] is not None for r in local),
        **compare(local, ray),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000, help="manifest rows (default: 2000)")
    parser.add_argument("--audio-rows", type=int, default=100, help="rows that also carry a clip (default: 100)")
    parser.add_argument(
        "--small-rows",
        type=int,
        default=200,
        help="also time both engines on the first N rows: (rows - N) / (t(rows) - t(N)) is the rate without the "
        "fixed costs of a run (imports, model loads, Ray's start); 0: skip (default: 200)",
    )
    parser.add_argument("--workers", type=int, default=None, help="Ray workers (default: one per CPU)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows scored together, both engines (default: 32)")
    add_results_options(parser)
    args = parser.parse_args(argv)
    cpus = os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="fastdaf-bulk-bench-") as tmp:
        full = time_engines(Path(tmp), args.rows, args)
        small = time_engines(Path(tmp), args.small_rows, args) if args.small_rows else None
    result = {
        "rows": args.rows,
        "audio_rows": args.audio_rows,
        "failed_rows": full["failed"],
        "batch_size": args.batch_size,
        "machine": f"{platform.machine()} CPU, {cpus} cores",
        "local": {"seconds": round(full["local_s"], 2), "rows_per_s": round(args.rows / full["local_s"], 1)},
        "ray": {
            "seconds": round(full["ray_s"], 2),
            "rows_per_s": round(args.rows / full["ray_s"], 1),
            "workers": args.workers or cpus,
            "job_seconds": full["job_s"],
        },
        "ray_over_local": round(full["local_s"] / full["ray_s"], 3),
        "rows_compared": full["rows_compared"],
        "max_score_difference": full["max_score_difference"],
        "timing": "one run each, a fresh `fastdaf predict` process timed from start to exit",
    }
    if small:
        extra_rows = args.rows - args.small_rows
        for engine in ("local", "ray"):
            result[engine]["seconds_small"] = round(small[f"{engine}_s"], 2)
            result[engine]["marginal_rows_per_s"] = round(extra_rows / (full[f"{engine}_s"] - small[f"{engine}_s"]), 1)
        result["marginal_ray_over_local"] = round(
            result["ray"]["marginal_rows_per_s"] / result["local"]["marginal_rows_per_s"], 3
        )
    print(json.dumps(result, indent=2))
    shape = {"rows": args.rows, "audio_rows": args.audio_rows, "batch": args.batch_size}
    rows = [
        bench_row(
            BENCHMARK,
            "fastdaf predict --manifest (process start to exit)",
            device=f"CPU {platform.machine()} ({cpus} cores)",
            backend=engine,
            shape={**shape, **({"workers": result["ray"]["workers"]} if engine == "ray" else {})},
            dtype="fp32",
            throughput=result[engine]["rows_per_s"],
            throughput_unit="rows/s",
            extra={
                **{k: v for k, v in result[engine].items() if k not in ("rows_per_s", "workers")},
                "ray_over_local": result["ray_over_local"],
                **({"small_rows": args.small_rows} if small else {}),
            },
        )
        for engine in ("local", "ray")
    ]
    write_results(rows, args, prog="bulk_scoring")
    return 0


if __name__ == "__main__":
    sys.exit(main())
