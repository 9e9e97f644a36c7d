"""fastdaf serve: nothing reachable over the network or from a local process can load, unload or
replace a model (issue 13, finding 1: PyTriton's repository-API token was readable by any local user
in /proc/<pid>/cmdline, and with it an uploaded model.py ran)."""

from __future__ import annotations

import json
import re
import socket
import struct
from pathlib import Path

import pytest
from builders import exchange

from fastdaf.serving import MODEL_NAME, SEALED_HEADER, ServerProcess
from fastdaf.serving.client import TritonClient


def process_tree(root: int) -> list[int]:
    """`root` and every process below it (from /proc/*/stat: no children file needed)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
            parents.setdefault(int(rest.rsplit(") ", 1)[1].split()[1]), []).append(int(pid))
        except (OSError, ValueError, IndexError):
            continue  # a process that ended while we looked
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def read_proc(pid: int, name: str) -> list[str]:
    try:
        return [s.decode(errors="replace") for s in (Path("/proc") / str(pid) / name).read_bytes().split(b"\0") if s]
    except OSError:
        return []


def secrets_in(items: list[str]) -> tuple[set[str], set[str]]:
    """(token-like values, header names) found: every long word, and both sides of `<apis>:<key>=<value>` flags."""
    values, keys = set(), {"triton-access-token"}  # PyTriton's header
    for item in items:
        values.update(re.findall(r"[A-Za-z0-9_\-+/.~]{16,}", item))
        if "restricted" in item and ":" in item:
            key, _, value = item.split(":", 1)[1].partition("=")
            keys.add(key)
            values.add(value)
    return values, keys


def evil_model_py(marker: Path) -> bytes:
    return (
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
        "class TritonPythonModel:\n    def initialize(self, args):\n"
        f"        pathlib.Path({str(marker)!r}).touch()\n    def execute(self, requests):\n        return []\n"
    ).encode()


EVIL_CONFIG = json.dumps(
    {
        "name": MODEL_NAME,
        "backend": "python",
        "max_batch_size": 0,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [1]}],
        "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}],
    }
)


def repository_tries(protocol: str, url: str, headers: dict[str, str], model_py: bytes) -> dict[str, bool]:
    """Index, unload and load (replacing the served model with `model_py`) over "http" or "grpc"; True where the
    server accepted."""
    import importlib

    client = importlib.import_module(f"tritonclient.{protocol}").InferenceServerClient(url)
    calls = {
        "index": lambda: client.get_model_repository_index(headers=headers),
        "unload": lambda: client.unload_model(MODEL_NAME, headers=headers),
        "load": lambda: client.load_model(
            MODEL_NAME, headers=headers, config=EVIL_CONFIG, files={"file:1/model.py": model_py}
        ),
    }
    return {name: _accepted(call) for name, call in calls.items()}


def _accepted(call) -> bool:
    try:
        call()
    except Exception:  # noqa: BLE001 - refused by the server, or not sendable at all: either way not accepted
        return False
    return True


def raw_http(port: int, header_lines: bytes) -> bytes:
    """POST /v2/repository/index with hand-written header lines, past any client's header checks."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\n" + header_lines + b"\r\nContent-Length: 0\r\n\r\n"
        )
        try:
            return s.recv(4096)
        except OSError:
            return b""


def raw_grpc_index(port: int, key: bytes, value: bytes) -> bytes:
    """A gRPC RepositoryIndex call in hand-made HTTP/2 frames (literal HPACK headers), past grpc's own checks."""

    def frame(kind: int, flags: int, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))[1:]
            + bytes([kind, flags])
            + struct.pack(">I", 0 if kind == 4 else 1)
            + payload
        )

    def literal(name: bytes, val: bytes) -> bytes:
        assert len(name) < 127 and len(val) < 127
        return b"\x00" + bytes([len(name)]) + name + bytes([len(val)]) + val

    headers = b"".join(
        literal(k, v)
        for k, v in [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/inference.GRPCInferenceService/RepositoryIndex"),
            (b":authority", b"x"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (key, value),
        ]
    )
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    return exchange(port, preface + frame(4, 0, b"") + frame(1, 4, headers) + frame(0, 1, b"\x00" * 5))


@pytest.fixture(scope="module")
def server():
    with ServerProcess("--device", "cpu", "--exit-timeout", "5") as srv:
        yield srv


def test_no_token_from_any_process_lets_a_client_load_unload_or_list_models(server, tmp_path):
    from fastdaf.pipeline import SentimentPredictor

    marker = tmp_path / "uploaded-code-ran"
    model_py = evil_model_py(marker)
    tree = process_tree(server.proc.pid)
    assert len(tree) >= 2, "found no tritonserver below fastdaf serve"
    found: list[str] = []
    for pid in tree:
        found += read_proc(pid, "cmdline") + read_proc(pid, "environ")
    values, keys = secrets_in(found)
    print(f"{len(tree)} processes, {len(values)} token-like values, header names {sorted(keys)}")
    assert values, "read nothing from /proc: nothing was tested"
    tries = [{}] + [{key: value} for value in sorted(values) for key in sorted(keys)]
    accepted = []
    for headers in tries:
        grpc_headers = {
            **headers,
            **{f"triton-grpc-protocol-{k}": v for k, v in headers.items()},
        }  # Triton's gRPC prefix
        for protocol, result in (
            ("http", repository_tries("http", server.http, headers, model_py)),
            ("grpc", repository_tries("grpc", server.grpc, grpc_headers, model_py)),
        ):
            accepted += [(protocol, call, headers) for call, ok in result.items() if ok]
    assert not accepted, accepted[:5]
    assert not marker.exists(), "the uploaded model.py ran"
    # the repository is read once at startup: even with the right header, Triton loads nothing
    tritonserver = next(
        args for args in map(lambda pid: read_proc(pid, "cmdline"), tree) if args and args[0].endswith("/tritonserver")
    )
    assert "--model-control-mode=none" in tritonserver
    # the sealed header cannot be sent even by hand: HTTP/1.1 ends a header value at the line break...
    name, value = (s.encode() for s in SEALED_HEADER)
    first, second = value.split(b"\n")
    for lines in (
        name + b": " + value,
        name + b": " + first + b"\r\n " + second,
        name + b": " + first + b"\r" + second,
    ):
        assert not raw_http(server.http_port, lines).startswith(b"HTTP/1.1 200"), lines
    # ...and gRPC refuses a header name with a space, whatever the value
    answer = raw_grpc_index(server.grpc_port, b"triton-grpc-protocol-" + name, value)
    assert answer and b"READY" not in answer, answer[-200:]
    # the served model is untouched and still answers as in process
    with TritonClient(server.http) as client:
        assert client.client.is_model_ready(MODEL_NAME)
        got = client.predict("a wonderful, kind and generous host")
    want = SentimentPredictor(device="cpu").predict("a wonderful, kind and generous host")
    assert got["score"] == pytest.approx(want.score, abs=1e-4) and got["label"] == want.label
    assert not marker.exists()
