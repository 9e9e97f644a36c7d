"""Prediction on this machine: cold start of `fastdaf predict`, warm latency of one utterance, batch throughput.

    python benchmarks/predict_latency.py [--runs 5] [--iters 50]

- cold start: wall time from launching `fastdaf predict --text ... --audio ...` (a new process, the
  bundled model, the 3.9 s CMU ARCTIC clip aew_a0001 and its sentence) to its exit after printing;
- warm latency: `SentimentPredictor.predict(sentence, path)` for the same clip, p50/p90 after warm-up;
- throughput: utterances/s of `predict_batch` at batch 32 (the six clips with their sentences, repeated).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fastdaf.examples import ARCTIC_PROMPTS as PROMPTS

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()
    clip = str(SPEECH / "cmu_arctic_us_aew_a0001.wav")
    sentence = PROMPTS["aew_a0001"]
    exe = Path(sys.executable).with_name("fastdaf")
    cold = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run(
            [str(exe), "predict", "--text", sentence, "--audio", clip],
            check=True,
            capture_output=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        cold.append(time.perf_counter() - start)

    import torch

    from fastdaf import SentimentPredictor

    predictor = SentimentPredictor()
    for _ in range(5):
        predictor.predict(sentence, clip)
    warm = []
    for _ in range(args.iters):
        start = time.perf_counter()
        predictor.predict(sentence, clip)
        warm.append((time.perf_counter() - start) * 1000)
    warm.sort()
    names = list(PROMPTS) * 6
    texts = [PROMPTS[n] for n in names][:32]
    audios = [str(SPEECH / f"cmu_arctic_us_{n}.wav") for n in names][:32]
    predictor.predict_batch(texts, audios)
    batch_times = []
    for _ in range(5):
        start = time.perf_counter()
        predictor.predict_batch(texts, audios)
        batch_times.append(time.perf_counter() - start)
    report = {
        "torch_threads": torch.get_num_threads(),
        "cold_start_s": {"median": statistics.median(cold), "min": min(cold), "max": max(cold), "runs": len(cold)},
        "warm_latency_ms": {"p50": statistics.median(warm), "p90": warm[int(0.9 * len(warm))], "iters": len(warm)},
        "batch32_utterances_per_s": 32 / statistics.median(batch_times),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
