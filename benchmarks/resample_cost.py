"""What resampling a clip to 16 kHz costs, fastdaf.audio.dsp against torchaudio (when installed), at common rates
and at rates whose gcd with 16 kHz is small (16,001 Hz; 24,414 Hz, TESS's native rate), where torchaudio's
polyphase kernel grows with the rates rather than the clip:

    python benchmarks/resample_cost.py [--seconds 10] [--repeats 5] [--results FILE | --no-results]

Per rate and implementation, in a fresh process each (so one's memory does not hide another's): the median wall
time of --repeats calls on a --seconds clip of noise after one warm-up call on its first second, and the growth of
the process's peak resident memory over the warm-up and the calls (ru_maxrss), beyond the clip itself. One benchmark
row per case (fastdaf.bench_rows); a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from fastdaf.bench_rows import add_results_options, bench_row, write_results

BENCHMARK = "benchmarks/resample_cost.py"
RATES = (8000, 22050, 44100, 48000, 16001, 24414)
TARGET = 16000


def measure(impl: str, rate: int, seconds: float, repeats: int) -> dict:
    """One case, in this process: median seconds per call and peak-memory growth."""
    if impl == "torchaudio":
        from torchaudio.functional import resample
    else:
        from fastdaf.audio.dsp import resample
    clip = torch.randn(int(rate * seconds), generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the clip is allocated: count what resample adds
    resample(clip[:rate], rate, TARGET)  # warm-up on one second
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        resample(clip, rate, TARGET)
        times.append(time.perf_counter() - start)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    return {"seconds_per_call": statistics.median(times), "times": times, "peak_growth_bytes": grown}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case (default 5)")
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES), help="source rates, resampled to 16 kHz")
    parser.add_argument("--one", nargs=2, metavar=("IMPL", "RATE"), help=argparse.SUPPRESS)  # a child process
    add_results_options(parser)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.seconds, args.repeats)))
        return 0
    try:
        import torchaudio.functional  # noqa: F401

        impls = ("fastdaf", "torchaudio")
    except Exception:  # noqa: BLE001 - torchaudio is optional (fastdaf[audio-reference]): absent, or installed and not loading
        impls = ("fastdaf",)
    rows, table = [], []
    for rate in args.rates:
        for impl in impls:
            child = [sys.executable, __file__, "--one", impl, str(rate), "--seconds", str(args.seconds)]
            done = subprocess.run(child + ["--repeats", str(args.repeats)], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{impl} at {rate} Hz failed: {done.stderr[-500:]}", file=sys.stderr)
                continue
            got = json.loads(done.stdout)
            table.append((rate, impl, got["seconds_per_call"], got["peak_growth_bytes"]))
            rows.append(
                bench_row(
                    BENCHMARK,
                    f"resample to {TARGET} Hz",
                    device="cpu",
                    backend=impl,
                    shape={"rate": rate, "seconds": args.seconds},
                    dtype="fp32",
                    samples_ms=[t * 1e3 for t in got["times"]],
                    throughput=args.seconds / got["seconds_per_call"],
                    throughput_unit="audio s/s",
                    extra={"peak_growth_mb": got["peak_growth_bytes"] / 2**20},
                )
            )
    print(f"{'rate':>7} {'impl':>11} {'ms/call':>9} {'peak +MB':>9}  ({args.seconds:g} s clip)")
    for rate, impl, secs, grown in table:
        print(f"{rate:>7} {impl:>11} {secs * 1e3:>9.1f} {grown / 2**20:>9.1f}")
    write_results(rows, args, prog=BENCHMARK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
