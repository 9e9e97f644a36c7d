"""Requests/s and latency of `fastdaf serve` on this machine, beside in-process prediction of the same utterances.

Starts `fastdaf serve` (CPU, default options unless given), warms it, then in one run, for three
workloads of distinct real utterances (fastdaf.serving.client.load_request): `mixed` (text only,
audio only and text+audio in turn), the same with missing inputs sent marked absent, and
`text+audio`: HTTP from 1 client, HTTP and gRPC from 32 clients; then SentimentPredictor.predict_batch
in batches of 32 on the same utterances in this process. Triton's dynamic batcher batches only
requests that carry the same inputs, which the workloads show. The server and the clients share
the machine's cores, so on a small CPU the served figures include the clients' own work.

    python benchmarks/serve_throughput.py [--requests 1000] [--out serve_throughput.json]
        [--results FILE | --no-results] [-- extra fastdaf serve options]

Every line of the table is also a benchmark row (fastdaf.bench_rows, appended to
benchmarks/results.jsonl): served rows with the percentiles of the good requests' latencies (as
`fastdaf-bench serve` writes them), in-process rows with the percentiles of the predict_batch calls.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from fastdaf.bench import serve_bench_row
from fastdaf.bench_rows import BenchRow, add_results_options, bench_row, git_commit, write_results
from fastdaf.pipeline import SentimentPredictor
from fastdaf.serving import ServerProcess
from fastdaf.serving.client import load_request, run_load

BENCHMARK = "benchmarks/serve_throughput.py"


def in_process_row(mix: str, requests: int, seconds: float, call_ms: list[float], serve_args: list[str]) -> BenchRow:
    """The in-process baseline as a benchmark row: percentiles of the predict_batch(32) calls."""
    return bench_row(
        BENCHMARK,
        f"predict_batch(32) ({mix})",
        device=torch.device("cpu"),
        backend="in process",
        shape={"batch": 32, "requests": requests},
        samples_ms=call_ms,
        throughput=round(requests / seconds, 2),
        throughput_unit="requests/s",
        extra={"seconds": seconds, "serve_args": serve_args},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    add_results_options(parser)
    parser.add_argument("serve_args", nargs="*", help="extra `fastdaf serve` options (after --)")
    args = parser.parse_args(argv)

    rows, bench_rows = [], []
    mixes = ("mixed", "mixed, marked absent", "text+audio")
    with ServerProcess("--device", "cpu", *args.serve_args) as server:
        run_load(server.http, 64, concurrency=8)  # warm-up
        for mix in mixes:
            for protocol, url, clients, n in (
                ("http", server.http, 1, min(200, args.requests)),
                ("http", server.http, 32, args.requests),
                ("grpc", server.grpc, 32, args.requests),
            ):
                summary, records = run_load(
                    url, n, concurrency=clients, protocol=protocol, mix=mix.split(",")[0], mark_absent="marked" in mix
                )
                assert summary["failed"] == 0, summary
                rows.append(
                    {
                        "path": f"fastdaf serve, {protocol}",
                        "mix": mix,
                        "clients": clients,
                        "requests": n,
                        "per_s": summary["requests_per_s"],
                        "p50_ms": summary["latency_ms_good"]["p50"],
                        "p99_ms": summary["latency_ms_good"]["p99"],
                        "mean_batch": summary.get("server_mean_batch"),
                    }
                )
                bench_rows.append(
                    serve_bench_row(summary, records, benchmark=BENCHMARK, serve_args=args.serve_args, server="cpu")
                )
    predictor = SentimentPredictor(device="cpu")
    for mix in ("mixed", "text+audio"):
        requests = [load_request(i, mix=mix) for i in range(args.requests)]
        predictor.predict_batch(
            [r.text for r in requests[:32]], [r.audio for r in requests[:32]], [r.sampling_rate for r in requests[:32]]
        )
        calls = []
        started = time.perf_counter()
        for k in range(0, len(requests), 32):
            chunk = requests[k : k + 32]
            call_started = time.perf_counter()
            predictor.predict_batch([r.text for r in chunk], [r.audio for r in chunk], [r.sampling_rate for r in chunk])
            calls.append((time.perf_counter() - call_started) * 1e3)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "path": "in process, predict_batch(32)",
                "mix": mix,
                "clients": 1,
                "requests": len(requests),
                "per_s": round(len(requests) / seconds, 2),
                "p50_ms": None,
                "p99_ms": None,
                "mean_batch": 32,
            }
        )
        bench_rows.append(in_process_row(mix, len(requests), seconds, calls, args.serve_args))
    env = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "commit": (git_commit() or "")[:7],
        "date": time.strftime("%Y-%m-%d"),
        "serve_args": args.serve_args,
    }
    print(
        f"{env}\n\n| path | workload | clients | requests | requests/s | p50 ms | p99 ms | mean batch |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    for r in sorted(rows, key=lambda r: r["mix"]):
        print(
            f"| {r['path']} | {r['mix']} | {r['clients']} | {r['requests']} | {r['per_s']} | {r['p50_ms'] or '-'} "
            f"| {r['p99_ms'] or '-'} | {r['mean_batch']} |"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"environment": env, "results": rows}, f, indent=2)
    write_results(bench_rows, args, prog="serve_throughput")


if __name__ == "__main__":
    main()
