"""fastdaf serve's request-size gate (fastdaf.serving.gate): an oversized request is refused before it is read, so
the server's memory stays where it was (issue 24, item 8: one refused 100 MB request used to leave Triton's
shared-memory pool at 100 MB for the server's life)."""

from __future__ import annotations

import glob
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from builders import exchange

from fastdaf.cli import main as cli_main
from fastdaf.errors import InputError
from fastdaf.serving import ServerProcess, serve
from fastdaf.serving.client import ServerError, TritonClient
from fastdaf.serving.gate import _Refusal, body_length

pytest.importorskip("pytriton")

MB = 2**20


def head(*lines: str) -> bytes:
    return ("POST /v2/models/fastdaf/infer HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


@pytest.mark.parametrize(
    "lines, status, says",
    [
        (["Content-Length: 2000"], 413, "the request body holds 2000 bytes; this server accepts at most 1024"),
        (["Transfer-Encoding: chunked"], 411, "send the body with a Content-Length"),
        (["Content-Length: 10", "content-length: 12"], 400, "Content-Length headers that disagree"),
        (["Content-Length: -1"], 400, "Content-Length '-1' is not a byte count"),
    ],
)
def test_body_length_refuses_what_it_cannot_bound(lines, status, says):
    with pytest.raises(_Refusal, match=says) as refused:
        body_length(head(*lines), 1024)
    assert refused.value.status == status
    assert refused.value.response().startswith(f"HTTP/1.1 {status} ".encode())


def test_body_length_passes_what_fits():
    assert body_length(head("Content-Length: 1024", "Host: x"), 1024) == 1024
    assert body_length(head("Content-Length: 7", "Content-Length: 7"), 1024) == 7
    assert body_length(head(), 1024) == 0


@pytest.fixture(scope="module")
def server():
    with ServerProcess("--device", "cpu", "--exit-timeout", "5", "--max-request-mb", "1") as srv:
        yield srv


def shared_memory(server) -> tuple[int, int]:
    """Bytes of the server's /dev/shm regions, and the kB of shared memory resident in its processes."""
    regions = sum(os.path.getsize(p) for p in glob.glob(f"/dev/shm/fastdaf{server.proc.pid}_*"))
    resident = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"\nPPid:\t{server.proc.pid}\n" in text or "triton_python_backend_stub" in _cmdline(status.parent):
            resident += next((int(line.split()[1]) for line in text.splitlines() if line.startswith("RssShmem")), 0)
    return regions, resident


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_oversized_requests_are_refused_unread_and_leave_memory_where_it_was(server):
    http, grpc = TritonClient(server.http), TritonClient(server.grpc, protocol="grpc")
    want = http.predict("this was fine", None, None)
    assert grpc.predict("this was fine", None, None) == want
    before = shared_memory(server)
    audio = np.zeros(2_000_000, np.float32)  # 8 MB: over the limit of 1 MiB (and 125 s: the model would refuse it)
    for _ in range(2):
        with pytest.raises(ServerError, match=r"holds 8000\d+ bytes; this server accepts at most 1048576 \(fastdaf"):
            http.predict("hello there", audio, 16000)
        with pytest.raises(ServerError, match=r"Received message larger than max \(8000\d+ vs. 1048576\)"):
            grpc.predict("hello there", audio, 16000)
    time.sleep(1)
    assert shared_memory(server) == before  # the 4 MiB region and nothing more resident: the payload never got in
    assert before[0] == 4 * MB
    assert http.predict("this was fine", None, None) == grpc.predict("this was fine", None, None) == want


def test_refusals_on_the_wire(server):
    body = b'{"inputs": []}'
    # a body announced too large is refused at once, before it is sent (curl sends Expect: 100-continue)
    answer = exchange(server.http_port, head("Host: x", f"Content-Length: {2 * MB}", "Expect: 100-continue"))
    assert answer.startswith(b"HTTP/1.1 413 Payload Too Large\r\n") and b"at most 1048576" in answer
    answer = exchange(server.http_port, head("Host: x", "Transfer-Encoding: chunked") + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 Length Required\r\n")
    # pipelined on one connection: the good request's answer comes first, then the refusal
    good = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    answer = exchange(server.http_port, good + head("Host: x", f"Content-Length: {len(body) + 2 * MB}") + body)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"HTTP/1.1 413 Payload Too Large\r\n" in answer
    # a client that half-closes after its request still gets the answer (as from Triton itself)
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as s:
        s.sendall(good)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    # keep-alive: requests one after another on one connection are each answered (Triton itself does not answer
    # requests pipelined in one packet, so neither does the gate)
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as s:
        for _ in range(3):
            s.sendall(good)
            assert s.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


def test_no_gate_when_the_limit_is_off():
    """--max-request-mb 0: Triton listens on the public ports itself (one hop less; sizes unchecked)."""
    with ServerProcess("--device", "cpu", "--exit-timeout", "5", "--max-request-mb", "0") as srv:
        tritonserver = next(
            c for c in map(_cmdline, Path("/proc").glob("[0-9]*")) if "tritonserver" in c and "--http-port" in c
            and f"fastdaf{srv.proc.pid}_" in c
        )
        assert f"--http-port={srv.http_port}" in tritonserver and f"--grpc-port={srv.grpc_port}" in tritonserver
        assert TritonClient(srv.http).predict("this was fine", None, None)["label"]


@pytest.mark.parametrize("bad", [0, 1023, 2.5, True, "64"])
def test_a_request_limit_that_is_not_a_byte_count_is_refused_naming_it(bad):
    with pytest.raises(InputError, match=r"max_request_bytes must be an integer >= 1024 \(or None: no limit\), got "):
        serve(max_request_bytes=bad)


def test_max_request_mb_refuses_negative_and_infinite_values(capsys):
    for bad in ("-1", "inf", "nan"):
        with pytest.raises(SystemExit) as exit_:
            cli_main(["serve", "--max-request-mb", bad])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert f"argument --max-request-mb: {bad!r} is not accepted; give a finite number >= 0" in err
