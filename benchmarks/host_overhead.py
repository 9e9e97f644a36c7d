"""Host cost of one FusedDAFHead call, launch stubbed: Triton's dispatch against the direct launch.

At batch 1 the fused head's target is "within 1.5x of an empty Triton launch", so every microsecond
of Python before the driver's launch counts. This runs on a CPU: the kernel is compiled for sm_90
with Triton's real compiler (fastdaf.kernels.offline) and the launch itself is a no-op, so what is
timed is fastdaf's checks and binding plus either Triton's autotuner dispatch and argument binder
(`triton_dispatch`: FusedDAFHead.direct_launch = False, what every call cost before) or the cached
direct launch (`direct`), side by side in one process, best of 5 rounds of 3000 calls.

    python benchmarks/host_overhead.py [--rounds 5] [--calls 3000] [--results FILE | --no-results]
    # TRITON_INTERPRET must be unset

The printed figures are the best round's mean per call. The benchmark rows (fastdaf.bench_rows,
appended to benchmarks/results.jsonl) carry the percentiles over the rounds' means per call (with
5 rounds, p90 and p99 are the slowest round) and the best round in `extra`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    sys.exit("host_overhead: unset TRITON_INTERPRET (the kernel must be compiled, not interpreted)")

import torch

from fastdaf import DAFConfig, DAFHead
from fastdaf.bench_rows import add_results_options, bench_row, environment, write_results
from fastdaf.fused import FusedDAFHead
from fastdaf.kernels.offline import NoLaunch, offline_target

BENCHMARK = "benchmarks/host_overhead.py"


def rounds_of(call, *, reps: int = 5, n: int = 3000) -> list[float]:
    """Mean us per call of each of `reps` rounds of n calls (after 200 warm-up calls)."""
    for _ in range(200):
        call()
    means = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(n):
            call()
        means.append((time.perf_counter() - start) / n * 1e6)
    return means


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000, help="calls per round")
    add_results_options(parser)
    args = parser.parse_args(argv)
    cfg = DAFConfig({"text": 768, "audio": 74}, projection_size=256)
    head = DAFHead(cfg).eval()
    feats = {"text": torch.randn(1, 768), "audio": torch.randn(1, 74)}
    present = torch.ones(1, 2, dtype=torch.bool)
    out = (torch.empty(1, 1), torch.empty(1, 2))
    result = {"environment": environment(torch.device("cpu")), "unit": "us per call, launch stubbed"}
    rows = []
    with offline_target(90), torch.no_grad():
        heads = {"triton_dispatch": FusedDAFHead.from_head(head), "direct": FusedDAFHead.from_head(head)}
        heads["triton_dispatch"].direct_launch = False
        for name, fused in heads.items():
            fused(feats, out=out, check=False)  # compiles (and "autotunes") once
            fused(feats, present, out=out, check=False)
            before = NoLaunch.launches
            calls = {
                "no_mask": lambda: fused(feats, out=out, check=False),
                "mask": lambda: fused(feats, present, out=out, check=False),
                "mask_checked": lambda: fused(feats, present, out=out),
            }
            result[name] = {}
            for variant, call in calls.items():
                means = rounds_of(call, reps=args.rounds, n=args.calls)
                result[name][variant] = min(means)
                rows.append(
                    bench_row(
                        BENCHMARK,
                        f"fused head host cost, launch stubbed ({variant.replace('_', ', ')})",
                        device=torch.device("cpu"),
                        backend=name,
                        shape={"batch": 1, "modalities": {"text": 768, "audio": 74}, "projection": 256},
                        dtype="fp32",
                        samples_ms=[m / 1e3 for m in means],
                        throughput=1e6 / min(means),
                        throughput_unit="calls/s",
                        extra={
                            "best_us": min(means),
                            "rounds": args.rounds,
                            "calls_per_round": args.calls,
                            "target": "sm_90, compiled offline",
                        },
                    )
                )
            assert NoLaunch.launches > before, "the stubbed launch was never reached"
    result["ratio_dispatch_over_direct"] = {
        k: result["triton_dispatch"][k] / result["direct"][k] for k in result["direct"]
    }
    print(json.dumps(result, indent=1))
    write_results(rows, args, prog="host_overhead")
    return 0


if __name__ == "__main__":
    sys.exit(main())
