"""What the request-size gate costs: the same served model asked through `fastdaf serve`'s public ports (the gate,
fastdaf.serving.gate) and through Triton's own loopback ports behind it, side by side in one run.

Starts `fastdaf serve` (CPU, defaults), reads Triton's own ports off its command line, warms both paths, then for
`--rounds` rounds, in alternating order, sends `--requests` sequential text-only requests ("this was fine") over
HTTP and over gRPC to each; prints the median and p90 latency of each path and the gate's median over Triton's.

    python benchmarks/gate_overhead.py [--requests 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from fastdaf.bench_rows import git_commit
from fastdaf.serving import ServerProcess
from fastdaf.serving.client import TritonClient


def triton_ports(serve_pid: int) -> dict[str, int]:
    """Triton's own --http-port and --grpc-port, from the command line of the tritonserver below `serve_pid`."""
    for child in Path(f"/proc/{serve_pid}/task/{serve_pid}/children").read_text().split():
        args = Path(f"/proc/{child}/cmdline").read_bytes().decode().split("\0")
        if args[0].endswith("tritonserver"):
            found = dict(a[2:].split("=", 1) for a in args if a.startswith(("--http-port=", "--grpc-port=")))
            return {"http": int(found["http-port"]), "grpc": int(found["grpc-port"])}
    raise RuntimeError("no tritonserver below the fastdaf serve process")


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
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
