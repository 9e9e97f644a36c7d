"""Utterances per second of `fastdaf extract` with the default encoders (MiniLM text + built-in acoustic).

Builds a manifest of the six real CMU ARCTIC clips with their prompts, repeated, and extracts it
three ways (text only, audio only, both) with the same code path as `fastdaf extract`:

    python benchmarks/extract_speed.py [--repeat 25] [--device cpu] [--results FILE | --no-results]

Each way is one timed pass (after a warm-up pass), so its benchmark row (fastdaf.bench_rows,
appended to benchmarks/results.jsonl) carries the throughput and the pass's seconds in `extra`,
and no latency percentiles.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

from fastdaf.bench_rows import add_results_options, bench_row, write_results
from fastdaf.choices import DEFAULT_ENCODER_BACKEND
from fastdaf.encoders.base import pick_device
from fastdaf.examples import ARCTIC_PROMPTS as PROMPTS
from fastdaf.extractor import FeatureExtractor, extract_manifest

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech"
BENCHMARK = "benchmarks/extract_speed.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None)
    add_results_options(parser)
    args = parser.parse_args(argv)
    results = {
        "device": str(pick_device(args.device)),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "runs": {},
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, text_enc, audio_enc in (
            ("text", "default", None),
            ("audio", None, "acoustic"),
            ("text+audio", "default", "acoustic"),
        ):
            manifest = Path(tmp) / f"{label}.csv"
            with manifest.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["id", "text", "audio"])
                for r in range(args.repeat):
                    for name, text in PROMPTS.items():
                        wav = SPEECH / f"cmu_arctic_us_{name}.wav"
                        writer.writerow([f"{name}-{r}", text if text_enc else "", wav if audio_enc else ""])
            extractor = FeatureExtractor(text_enc, audio_enc, device=args.device)
            extract_manifest(
                manifest, Path(tmp) / f"warm-{label}.safetensors", extractor, batch_size=args.batch_size, progress=False
            )
            summary = extract_manifest(
                manifest, Path(tmp) / f"{label}.safetensors", extractor, batch_size=args.batch_size, progress=False
            )
            results["runs"][label] = {
                "utterances": summary["succeeded"],
                "seconds": summary["seconds"],
                "utterances_per_s": summary["utterances_per_s"],
            }
            rows.append(
                bench_row(
                    BENCHMARK,
                    f"fastdaf extract ({label})",
                    device=pick_device(args.device),
                    backend=DEFAULT_ENCODER_BACKEND,
                    shape={"utterances": summary["succeeded"], "batch": args.batch_size},
                    throughput=summary["utterances_per_s"],
                    throughput_unit="utterances/s",
                    extra={
                        "seconds": summary["seconds"],
                        "encoders": {"text": text_enc, "audio": audio_enc},
                        "repeat": args.repeat,
                        "timing": "one pass after a warm-up pass, audio files read and checked",
                    },
                )
            )
    print(json.dumps(results, indent=2))
    write_results(rows, args, prog="extract_speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
