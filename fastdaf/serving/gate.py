"""The request-size gate in front of Triton (`fastdaf serve`): oversized requests are refused before they are read.

Why: the bundled tritonserver (2.51) reads any HTTP body and any gRPC message whole, and its Python backend copies
a request's tensors into a shared-memory pool that grows to the largest request it has seen and never shrinks: one
refused 100 MB request left 100 MB resident for the server's life (benchmarks/RESULTS.md, "Where a refused oversized
request's memory goes"). Neither has a size option. So `fastdaf serve` runs Triton on loopback ports of its own and
listens on the public ones itself, passing each request on unchanged unless it is larger than `max_request_bytes`:

- HTTP/1.1: the request head is read (at most 64 KiB), its Content-Length checked and the body passed on as it
  arrives; a body over the limit gets 413 with a JSON error before a byte of it is read, and the connection closes.
  Chunked request bodies are refused (411): their size is not known up front, and Triton's clients send a length.
  Responses come back as Triton sends them.
- gRPC: a server of its own forwards every method as raw bytes to Triton's, with gRPC's receive limit set to
  `max_request_bytes`, so a larger message fails with RESOURCE_EXHAUSTED when its length prefix arrives.

Costs one more loopback hop per request (benchmarks/RESULTS.md, "The request-size gate"). Local users who can reach
Triton's own loopback ports could still bypass it: the gate guards what the server exposes (`--host`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

MAX_HEAD_BYTES = 64 * 1024
# 64 MiB: 60 s of float32 audio at 48 kHz is 11 MiB (at 384 kHz, the highest rate fastdaf reads, 88 MiB: raise it)
DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20
_CHUNK = 256 * 1024
# how long a client that stopped sending (half-closed) is still owed the answers to what it sent
DRAIN_S = 300.0


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason

    def response(self) -> bytes:
        body = json.dumps({"error": str(self)}).encode()
        head = (
            f"HTTP/1.1 {self.status} {self.reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode("latin-1") + body


def body_length(head: bytes, max_body: int) -> int:
    """The body size a request head announces; _Refusal if it is over `max_body`, unknown, or ambiguous."""
    lengths, chunked = set(), False
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"content-length":
            lengths.add(value.strip())
        elif name == b"transfer-encoding":
            chunked = True
    if chunked:
        raise _Refusal(411, "Length Required", "send the body with a Content-Length (chunked bodies are refused)")
    if len(lengths) > 1:
        raise _Refusal(400, "Bad Request", "the request has Content-Length headers that disagree")
    if not lengths:
        return 0
    text = next(iter(lengths))
    if not text.isdigit():
        raise _Refusal(400, "Bad Request", f"Content-Length {text.decode('latin-1')!r} is not a byte count")
    length = int(text)
    if length > max_body:
        raise _Refusal(
            413,
            "Payload Too Large",
            f"the request body holds {length} bytes; this server accepts at most {max_body} "
            f"(fastdaf serve --max-request-mb {max_body / 2**20:g})",
        )
    return length


class HttpGate:
    """HTTP/1.1 on (host, port), passed on to Triton at 127.0.0.1:backend_port (see the module docstring)."""

    def __init__(self, backend_port: int, max_body: int) -> None:
        self.backend_port, self.max_body = backend_port, max_body
        self._connections: set[asyncio.Task] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        backend: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        responses: asyncio.Task | None = None
        draining: list[bool] = []  # set once the answers still on their way are awaited before closing
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    # the client is done sending; it may still wait for answers (a half-closed connection)
                    await _drain(backend, responses, draining, DRAIN_S)
                    break
                except asyncio.LimitOverrunError:
                    raise _Refusal(431, "Request Header Fields Too Large", f"request head over {MAX_HEAD_BYTES} bytes")
                length = body_length(head, self.max_body)
                if backend is None:
                    backend = await asyncio.open_connection("127.0.0.1", self.backend_port)
                    responses = asyncio.create_task(_pump(backend[0], writer, task, draining))
                backend[1].write(head)
                while length > 0:
                    chunk = await reader.read(min(length, _CHUNK))
                    if not chunk:
                        return
                    length -= len(chunk)
                    backend[1].write(chunk)
                    await backend[1].drain()
                await backend[1].drain()
        except _Refusal as refusal:
            await _drain(backend, responses, draining, 30)  # answers still on their way go first
            with contextlib.suppress(OSError):
                writer.write(refusal.response())
                await writer.drain()
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            if backend is not None:
                backend[1].close()
            if responses is not None:
                responses.cancel()
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()
            self._connections.discard(task)

    async def close_connections(self) -> None:
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)


async def _pump(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, handler: asyncio.Task, draining: list[bool]
) -> None:
    """Triton's responses to the client, byte for byte; when Triton closes, so does the client's connection (unless
    the handler is waiting for this to finish)."""
    with contextlib.suppress(OSError):
        while chunk := await source.read(_CHUNK):
            sink.write(chunk)
            await sink.drain()
    if not draining:
        handler.cancel()


async def _drain(
    backend: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    responses: asyncio.Task | None,
    draining: list[bool],
    timeout_s: float,
) -> None:
    """Tell Triton no more requests come on this connection and wait (at most timeout_s) for its last answers."""
    draining.append(True)
    if backend is None or responses is None:
        return
    with contextlib.suppress(OSError):
        backend[1].write_eof()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(responses), timeout_s)


class _ForwardAll:
    """A gRPC handler for every method: the request's bytes to Triton, Triton's answer or status back."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def service(self, details: Any) -> Any:
        import grpc  # noqa: PLC0415 - serve extra

        method = details.method
        if method.endswith("/ModelStreamInfer"):
            call = self.channel.stream_stream(method)

            def stream(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
                try:
                    yield from call(requests, metadata=_metadata(context))
                except grpc.RpcError as exc:
                    context.abort(exc.code(), exc.details())

            return grpc.stream_stream_rpc_method_handler(stream)
        call = self.channel.unary_unary(method)

        def unary(request: bytes, context: Any) -> bytes:
            try:
                return call(request, metadata=_metadata(context), timeout=_timeout(context))
            except grpc.RpcError as exc:
                context.abort(exc.code(), exc.details())

        return grpc.unary_unary_rpc_method_handler(unary)


def _timeout(context: Any) -> float | None:
    """The caller's deadline, passed on; none when it set none (grpcio then reports a huge remaining time)."""
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 10**6 else None


def _metadata(context: Any) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in context.invocation_metadata() if not k.startswith(("grpc-", ":")) and k != "user-agent"]


class Gate:
    """Both gates, run in a thread of their own until `stop`."""

    def __init__(self, host: str, http_port: int, grpc_port: int, backend_http: int, backend_grpc: int, max_body: int):
        self.host, self.http_port, self.grpc_port = host, http_port, grpc_port
        self.http = HttpGate(backend_http, max_body)
        self.max_body, self.backend_grpc = max_body, backend_grpc
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._grpc: Any = None
        self._channel: Any = None
        self._grpc_stopped: Any = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fastdaf-gate", daemon=True)

    def start(self) -> None:
        """Listen on the public ports (OSError if one is taken)."""
        import grpc  # noqa: PLC0415 - serve extra

        self._server = self._loop.run_until_complete(
            asyncio.start_server(self.http.handle, self.host, self.http_port, limit=MAX_HEAD_BYTES, reuse_address=True)
        )
        self._thread.start()
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        self._channel = grpc.insecure_channel(f"127.0.0.1:{self.backend_grpc}", options=options)
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="fastdaf-gate-grpc"),
            handlers=[_ForwardAll(self._channel)],
            options=[
                ("grpc.max_receive_message_length", self.max_body),
                ("grpc.max_send_message_length", -1),
                # a fixed 1 MiB receive window a stream instead of one that grows with bandwidth probing: an oversized
                # message is refused with little of it read (refused 100 MB messages left ~30 MB in this process with
                # probing, 8 MB after 60 without); still 20 MB/s a stream at 50 ms of round trip
                ("grpc.http2.bdp_probe", 0),
                ("grpc.http2.lookahead_bytes", 2**20),
            ],
        )
        address = f"[{self.host}]:{self.grpc_port}" if ":" in self.host else f"{self.host}:{self.grpc_port}"
        if self._grpc.add_insecure_port(address) == 0:
            raise OSError(f"cannot listen on {address} for gRPC")
        self._grpc.start()

    def stop_listening(self, grace_s: float) -> None:
        """No new connections; those open go on for `grace_s` (Triton finishes the requests it accepted)."""
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        if self._grpc is not None:
            self._grpc_stopped = self._grpc.stop(grace=grace_s)

    def close(self) -> None:
        if self._grpc is not None:
            (self._grpc_stopped or self._grpc.stop(grace=None)).wait()
            self._channel.close()
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.http.close_connections(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()
