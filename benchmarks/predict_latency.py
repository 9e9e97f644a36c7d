"""Prediction on this machine: cold start of `fastdaf predict`, warm latency of one utterance, batch throughput.

    python benchmarks/predict_latency.py [--checkpoint default|fast|DIR] [--runs 5] [--iters 50] [--batch-size 32]
                                         [--batch-runs 5] [--results FILE | --no-results]

- cold start: wall time from launching `fastdaf predict --text ... --audio ...` (a new process, the
  bundled model, the 3.9 s CMU ARCTIC clip aew_a0001 and its sentence) to its exit after printing;
- warm latency: `SentimentPredictor.predict(sentence, path)` for the same clip, p50/p90 after warm-up;
- throughput: utterances/s of `predict_batch` at batch 32 (the six clips with their sentences, repeated),
  from the median of --batch-runs calls.

Each of the three is also a benchmark row (fastdaf.bench_rows, appended to benchmarks/results.jsonl),
its percentiles over the runs, iterations and batch calls respectively.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path

from fastdaf.bench_rows import add_results_options, bench_row, write_results
from fastdaf.choices import DEFAULT_ENCODER_BACKEND
from fastdaf.examples import ARCTIC_PROMPTS as PROMPTS

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
BENCHMARK = "benchmarks/predict_latency.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="default", help="a bundled model (default, fast) or a folder")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batch-runs", type=int, default=5)
    add_results_options(parser)
    args = parser.parse_args(argv)
    clip = str(SPEECH / "cmu_arctic_us_aew_a0001.wav")
    sentence = PROMPTS["aew_a0001"]
    exe = Path(sys.executable).with_name("fastdaf")
    cold = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run(
            [str(exe), "predict", "--text", sentence, "--audio", clip, "--checkpoint", args.checkpoint],
            check=True,
            capture_output=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        cold.append(time.perf_counter() - start)

    import torch

    from fastdaf import SentimentPredictor
    from fastdaf.encoders.base import pick_dtype

    predictor = SentimentPredictor(args.checkpoint)
    for _ in range(5):
        predictor.predict(sentence, clip)
    warm = []
    for _ in range(args.iters):
        start = time.perf_counter()
        predictor.predict(sentence, clip)
        warm.append((time.perf_counter() - start) * 1000)
    warm.sort()
    n = args.batch_size
    names = list(PROMPTS) * (n // len(PROMPTS) + 1)
    texts = [PROMPTS[name] for name in names][:n]
    audios = [str(SPEECH / f"cmu_arctic_us_{name}.wav") for name in names][:n]
    predictor.predict_batch(texts, audios)
    batch_times = []
    for _ in range(args.batch_runs):
        start = time.perf_counter()
        predictor.predict_batch(texts, audios)
        batch_times.append(time.perf_counter() - start)
    report = {
        "torch_threads": torch.get_num_threads(),
        "cold_start_s": {"median": statistics.median(cold), "min": min(cold), "max": max(cold), "runs": len(cold)},
        "warm_latency_ms": {"p50": statistics.median(warm), "p90": warm[int(0.9 * len(warm))], "iters": len(warm)},
        f"batch{n}_utterances_per_s": n / statistics.median(batch_times),
    }
    print(json.dumps(report, indent=2))

    with wave.open(clip) as w:
        clip_seconds = round(w.getnframes() / w.getframerate(), 2)
    common = dict(
        device=predictor.device,
        backend=DEFAULT_ENCODER_BACKEND,
        dtype=pick_dtype(None, predictor.device),  # the encoders' default, which the predictor uses
    )
    extra = {"head": predictor.head_backend, "model": args.checkpoint}
    rows = [
        bench_row(
            BENCHMARK,
            "fastdaf predict, cold start (new process to exit)",
            shape={"batch": 1, "audio_seconds": clip_seconds},
            samples_ms=[s * 1000 for s in cold],
            extra={**extra, "clip": "aew_a0001"},
            **common,
        ),
        bench_row(
            BENCHMARK,
            "SentimentPredictor.predict, warm",
            shape={"batch": 1, "audio_seconds": clip_seconds},
            samples_ms=warm,
            throughput=1000 / statistics.median(warm),
            throughput_unit="utterances/s",
            extra={**extra, "clip": "aew_a0001"},
            **common,
        ),
        bench_row(
            BENCHMARK,
            "SentimentPredictor.predict_batch, warm",
            shape={"batch": n},
            samples_ms=[s * 1000 for s in batch_times],
            throughput=n / statistics.median(batch_times),
            throughput_unit="utterances/s",
            extra={**extra, "clips": "the six CMU ARCTIC clips, repeated"},
            **common,
        ),
    ]
    write_results(rows, args, prog="predict_latency")
    return 0


if __name__ == "__main__":
    sys.exit(main())
