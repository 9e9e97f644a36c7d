"""The request-size gate of `fastdaf serve` (fastdaf.serving.gate): what it costs and what it saves, in one run.

Starts `fastdaf serve` (CPU, defaults), reads Triton's own ports off its command line, warms both paths, then
1. cost: for `--rounds` rounds, in alternating order, `--requests` sequential text-only requests ("this was fine")
   over HTTP and over gRPC through the public ports (the gate) and straight to Triton's; the median and p90
   latency of each path and the gate's median over Triton's;
2. memory: three requests with 100 MB of float32 audio over HTTP, then three over gRPC, through the gate (each
   refused), then five small ones; after each step the size of the server's /dev/shm regions and the resident
   memory (VmRSS, RssAnon, RssShmem) of fastdaf serve (the gate), tritonserver and the Python-backend stub.

    python benchmarks/serve_gate.py [--requests 200] [--rounds 5] [--results FILE | --no-results]

The latencies are also benchmark rows (fastdaf.bench_rows, appended to benchmarks/results.jsonl): one per path and
protocol, with the memory steps in the gate rows' extra.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from fastdaf.bench_rows import add_results_options, bench_row, git_commit, write_results
from fastdaf.serving import ServerProcess
from fastdaf.serving.client import ServerError, TritonClient


def triton_ports(serve_pid: int) -> dict[str, int]:
    """Triton's own --http-port and --grpc-port, from the command line of the tritonserver below `serve_pid`."""
    for child in Path(f"/proc/{serve_pid}/task/{serve_pid}/children").read_text().split():
        args = Path(f"/proc/{child}/cmdline").read_bytes().decode().split("\0")
        if args[0].endswith("tritonserver"):
            found = dict(a[2:].split("=", 1) for a in args if a.startswith(("--http-port=", "--grpc-port=")))
            return {"http": int(found["http-port"]), "grpc": int(found["grpc-port"])}
    raise RuntimeError("no tritonserver below the fastdaf serve process")


def memory(serve_pid: int) -> dict[str, Any]:
    """The server's /dev/shm regions (MB) and the resident memory (kB) of its three processes."""

    def status(pid: int) -> dict[str, int]:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines) if k in KEYS}

    def children(pid: int) -> list[int]:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    triton = children(serve_pid)[0]
    regions = sum(os.path.getsize(p) for p in glob.glob(f"/dev/shm/fastdaf{serve_pid}_*"))
    return {
        "shm_MB": round(regions / 2**20, 1),
        "fastdaf serve": status(serve_pid),
        "tritonserver": status(triton),
        "stub": status(children(triton)[0]),
    }


KEYS = ("VmRSS", "RssAnon", "RssShmem")


def latencies_ms(client: TritonClient, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        client.predict("this was fine", None, None)
        out.append((time.perf_counter() - started) * 1e3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    add_results_options(parser)
    args = parser.parse_args()
    with ServerProcess() as server:
        serve_pid = server.proc.pid
        inner = triton_ports(serve_pid)
        clients = {
            ("gate", "http"): TritonClient(server.http),
            ("gate", "grpc"): TritonClient(server.grpc, protocol="grpc"),
            ("triton", "http"): TritonClient(f"127.0.0.1:{inner['http']}"),
            ("triton", "grpc"): TritonClient(f"127.0.0.1:{inner['grpc']}", protocol="grpc"),
        }
        for client in clients.values():
            latencies_ms(client, 20)  # warm
        samples: dict[tuple[str, str], list[float]] = {key: [] for key in clients}
        for r in range(args.rounds):
            order = ["gate", "triton"] if r % 2 == 0 else ["triton", "gate"]
            for path in order:
                for protocol in ("http", "grpc"):
                    samples[(path, protocol)] += latencies_ms(clients[(path, protocol)], args.requests)
        steps = [{"after": "start", **memory(serve_pid)}]
        big = np.zeros(25_000_000, np.float32)  # 100 MB
        for protocol in ("http", "grpc"):
            for _ in range(3):
                try:
                    clients[("gate", protocol)].predict("hello there", big, 16000)
                    refusal = "answered"
                except ServerError as exc:
                    refusal = str(exc)[:110]
            steps.append({"after": f"3 x 100 MB over {protocol}: {refusal}", **memory(serve_pid)})
        latencies_ms(clients[("gate", "http")], 5)
        steps.append({"after": "5 small", **memory(serve_pid)})
    result = {
        "machine": platform.processor() or platform.machine(),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d"),
        "requests_per_path": args.requests * args.rounds,
    }
    for protocol in ("http", "grpc"):
        for path in ("gate", "triton"):
            ms = sorted(samples[(path, protocol)])
            result[f"{protocol} {path} p50 ms"] = round(statistics.median(ms), 3)
            result[f"{protocol} {path} p90 ms"] = round(ms[int(0.9 * (len(ms) - 1))], 3)
        result[f"{protocol} gate/triton p50"] = round(
            result[f"{protocol} gate p50 ms"] / result[f"{protocol} triton p50 ms"], 3
        )
    result["memory"] = steps
    print(json.dumps(result, indent=2))
    rows = [
        bench_row(
            "benchmarks/serve_gate.py",
            f"text-only request, {protocol}, {'through the gate' if path == 'gate' else 'straight to Triton'}",
            device="cpu",
            backend=f"serve {protocol} {path}",
            shape={"requests": args.requests * args.rounds, "rounds": args.rounds},
            samples_ms=samples[(path, protocol)],
            extra={"memory": steps} if path == "gate" else None,
        )
        for protocol in ("http", "grpc")
        for path in ("gate", "triton")
    ]
    write_results(rows, args, prog="serve_gate")


if __name__ == "__main__":
    main()
