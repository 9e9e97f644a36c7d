"""Running tritonserver on a model repository (`fastdaf serve`), sealed, and `ServerProcess` for scripts beside it."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..engines.isolation import on_stop_signals
from ..errors import InputError, ServeError
from .gate import DEFAULT_MAX_REQUEST_BYTES, Gate
from .repository import MODEL_NAME, ServeOptions, validate_checkpoint, write_model_repository


def model_ready(url: str, name: str = MODEL_NAME, timeout_s: float = 1.0) -> bool:
    """True when Triton at `url` (http://host:port) reports the model ready (server readiness alone is not enough)."""
    try:
        with urllib.request.urlopen(f"{url}/v2/models/{name}/ready", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


# The APIs that change or expose the server's state are restricted to this header, which no client
# can send: its name holds a space (HTTP/1.1 and HTTP/2 header names are tokens; Triton's HTTP and
# gRPC frontends refuse a request carrying one) and its value a line break (no header value holds
# one). Unlike a random token, reading it in /proc/<pid>/cmdline gives nothing. Statistics stay open:
# operators and benchmarks read batch sizes and queue times there.
SEALED_HEADER = ("fastdaf sealed", "no client\ncan send this")
SEALED_APIS = ("model-repository", "shared-memory", "trace", "logging")


def shm_prefix() -> str:
    """This server's /dev/shm region names start with it: servers side by side share no region."""
    return f"fastdaf{os.getpid()}_"


def tritonserver_command(
    repository: Path, backends: Path, *, host: str, http_port: int, grpc_port: int, exit_timeout_s: int, verbose: bool
) -> list[str]:
    """The tritonserver command line: the repository loaded once (model control off), nothing secret in it."""
    from pytriton.utils.distribution import get_root_module_path  # noqa: PLC0415 - serve extra: only to locate the bundled tritonserver

    sealed = f"{','.join(SEALED_APIS)}:{SEALED_HEADER[0]}={SEALED_HEADER[1]}"
    return [
        str(get_root_module_path() / "tritonserver" / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        "--model-control-mode=none",
        "--exit-on-error=true",
        f"--backend-directory={backends}",
        # a prefix of this server's own, so that servers side by side share no region
        f"--backend-config=python,shm-region-prefix-name={shm_prefix()}",
        "--backend-config=python,shm-default-byte-size=4194304",
        "--backend-config=python,shm-growth-byte-size=1048576",
        f"--http-address={host}",
        f"--http-port={http_port}",
        f"--http-restricted-api={sealed}",
        f"--grpc-address={host}",
        f"--grpc-port={grpc_port}",
        f"--grpc-restricted-protocol={sealed}",
        "--allow-metrics=false",
        f"--exit-timeout-secs={exit_timeout_s}",
        f"--log-verbose={1 if verbose else 0}",
    ]


def _prepare_backends(directory: Path) -> Path:
    """Triton's Python backend with the stub for this interpreter's version, as PyTriton lays it out."""
    from pytriton.utils.distribution import get_root_module_path, get_stub_path  # noqa: PLC0415 - serve extra: only to locate the bundled tritonserver

    backends = directory / "backends"
    shutil.copytree(
        get_root_module_path() / "tritonserver" / "backends", backends, ignore=shutil.ignore_patterns("__pycache__")
    )
    stub = get_stub_path(f"{sys.version_info[0]}.{sys.version_info[1]}")
    if not stub.is_file():
        raise ServeError(
            f"nvidia-pytriton bundles no Python-backend stub for Python {sys.version_info[0]}.{sys.version_info[1]} "
            f"({stub})"
        )
    shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    return backends


def _server_environment() -> dict[str, str]:
    # Triton's own libraries ship beside PyTriton; the Python-backend stub embeds libpython, and
    # without LIBDIR first it may load the system's instead of the one behind this interpreter
    # (and so miss this environment's packages); it finds the interpreter's prefix on PATH.

    from pytriton.utils.distribution import get_libs_path  # noqa: PLC0415 - serve extra: only to locate the bundled tritonserver

    env = dict(os.environ)
    libs = [d for d in (sysconfig.get_config_var("LIBDIR"), str(get_libs_path()), env.get("LD_LIBRARY_PATH")) if d]
    env["LD_LIBRARY_PATH"] = ":".join(libs)
    env["PATH"] = f"{Path(sys.exec_prefix) / 'bin'}:{env.get('PATH', '')}"
    return env


def _server_preexec() -> Callable[[], None]:
    """For Popen's preexec_fn: tritonserver gets SIGTERM (a graceful stop) if fastdaf dies, even by SIGKILL; and
    what it creates (the Python backend's /dev/shm regions, which hold request data) is readable by this user only."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the forked child only calls it

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        os.umask(0o077)

    return preexec


# `fastdaf serve` exits with this when the model's backend process died (killed, or out of memory): Triton keeps
# answering "ready" but fails every request then, so the server is stopped for a supervisor to restart it.
BACKEND_DIED_EXIT = 3


def _stub_pids(server_pid: int) -> set[int]:
    """The Python-backend stub processes (one per model instance) tritonserver runs."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server_pid and b"triton_python_backend_stub" in cmdline:
            pids.add(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    """Running, not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _make_shared_memory_private(prefix: str) -> None:
    """The Python backend creates its regions (request data in them) readable by every user (0644, whatever the
    umask): made 0600 as soon as they are seen, at readiness and every half second after."""
    for region in Path("/dev/shm").glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            if region.stat().st_mode & 0o077:
                region.chmod(0o600)


def _remove_orphaned_shared_memory() -> None:
    """Regions of fastdaf servers that no longer run (killed with SIGKILL, they could not remove their own)."""
    for region in Path("/dev/shm").glob("fastdaf*_*"):
        pid = region.name[len("fastdaf") :].split("_", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(OSError):
                region.unlink()


def _remove_shared_memory(prefix: str) -> None:
    """The Python backend's regions of this server: a killed stub or server leaves them (with request data)."""
    for region in Path("/dev/shm").glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            region.unlink()


def serve(
    checkpoint: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    http_port: int = 8000,
    grpc_port: int = 8001,
    options: ServeOptions = ServeOptions(),
    exit_timeout_s: int = 20,
    startup_timeout_s: float = 300.0,
    verbose: bool = False,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
    max_request_bytes: int | None = DEFAULT_MAX_REQUEST_BYTES,
) -> int:
    """Run Triton (bundled with nvidia-pytriton) on a fastdaf model repository until SIGTERM/SIGINT or `stop`.

    The checkpoint is loaded and validated first. On a stop signal Triton stops taking new
    connections and finishes the requests it accepted (for at most `exit_timeout_s`); it is killed
    if it has not exited 10 s after that. Returns 0 after a clean stop, 1 if the server died,
    BACKEND_DIED_EXIT (3) if the model's backend process died (Triton is then stopped: it would keep
    reporting ready while failing every request). Either way its /dev/shm regions are removed.

    Triton listens on loopback ports of its own; `host`, `http_port` and `grpc_port` are the request-size gate's
    (fastdaf.serving.gate), which refuses a request over `max_request_bytes` before reading it. None: no gate,
    Triton listens on them itself (one hop less; any request size is read, e.g. behind a proxy that limits it).
    """

    try:
        import pytriton.utils.distribution  # noqa: PLC0415, F401 - only to locate the bundled tritonserver
    except ImportError as exc:
        raise ServeError(
            f"fastdaf serve needs nvidia-pytriton, which is not importable ({exc}); install it with: pip install "
            "'fastdaf[serve]'"
        ) from None
    if not 1 <= exit_timeout_s <= 25:
        raise InputError(f"exit_timeout_s must be in 1..25, got {exit_timeout_s}")
    if max_request_bytes is not None and (
        isinstance(max_request_bytes, bool) or not isinstance(max_request_bytes, int) or max_request_bytes < 1024
    ):
        raise InputError(f"max_request_bytes must be an integer >= 1024 (or None: no limit), got {max_request_bytes!r}")
    validate_checkpoint(checkpoint)
    _remove_orphaned_shared_memory()
    stop = stop or threading.Event()
    url = f"http://{host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{http_port}"
    with tempfile.TemporaryDirectory(
        prefix="fastdaf-triton-"
    ) as tmp:  # mode 0700: no other user can change the repository
        repository = write_model_repository(Path(tmp) / "models", checkpoint, options)
        gate = None
        if max_request_bytes is not None:
            triton_http, triton_grpc = free_port(), free_port()
            gate = Gate(host, http_port, grpc_port, triton_http, triton_grpc, max_request_bytes)
        command = tritonserver_command(
            repository,
            _prepare_backends(Path(tmp)),
            host="127.0.0.1" if gate else host,
            http_port=triton_http if gate else http_port,
            grpc_port=triton_grpc if gate else grpc_port,
            exit_timeout_s=exit_timeout_s,
            verbose=verbose,
        )
        log_file = None if verbose else Path(tmp) / "tritonserver.log"

        def failure(what: str) -> ServeError:
            tail = (
                log_file.read_text(errors="replace").strip().splitlines()[-15:]
                if log_file and log_file.exists()
                else []
            )
            hint = (
                ("; the server log ends with:\n  " + "\n  ".join(tail))
                if tail
                else "; rerun with --verbose for the server log"
            )
            return ServeError(what + hint)

        # the handler only notes the signal, which the loops below read: setting `stop` (an Event, whose lock the
        # handler would take) deadlocked when a second SIGTERM arrived inside the first one's Event.set (seen with
        # `timeout` passing its own SIGTERM on beside a pkill)
        signals_seen: list[int] = []

        def _note_signal(signum: int, frame: Any) -> None:
            signals_seen.append(signum)

        # SIGINT set explicitly too: a backgrounded process inherits it ignored
        with on_stop_signals(_note_signal):
            log = open(log_file, "wb") if log_file else None  # closed below, after the server
            server = None
            try:
                started = time.perf_counter()
                try:
                    server = subprocess.Popen(
                        command,
                        env=_server_environment(),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT if log else None,
                        preexec_fn=_server_preexec(),
                    )
                except OSError as exc:
                    raise failure(f"Triton did not start ({type(exc).__name__}: {exc})") from None
                try:  # after the fork: gRPC's threads and a fork do not mix
                    if gate is not None:
                        gate.start()
                except OSError as exc:
                    raise ServeError(f"cannot listen on {host} (HTTP {http_port}, gRPC {grpc_port}): {exc}") from None
                while not model_ready(url):
                    if server.poll() is not None or stop.is_set() or signals_seen:
                        raise failure("Triton stopped before the model was ready")
                    if time.perf_counter() - started > startup_timeout_s:
                        raise failure(f"the model was not ready after {startup_timeout_s:.0f} s")
                    time.sleep(0.1)
                if on_ready is not None:
                    on_ready(
                        {
                            "model": MODEL_NAME,
                            "http": url,
                            "grpc": f"{host}:{grpc_port}",
                            "pid": os.getpid(),
                            "startup_s": round(time.perf_counter() - started, 2),
                        }
                    )
                stubs = _stub_pids(server.pid)
                _make_shared_memory_private(shm_prefix())
                while not stop.wait(0.5) and not signals_seen:
                    _make_shared_memory_private(shm_prefix())
                    if server.poll() is not None:
                        return 1
                    if not all(_alive(pid) for pid in stubs):
                        print(
                            "fastdaf serve: the model's backend process died (killed, or out of memory); Triton "
                            "would fail every request while reporting ready, so it is stopped (exit "
                            f"{BACKEND_DIED_EXIT}) for a supervisor to restart",
                            file=sys.stderr,
                            flush=True,
                        )
                        return BACKEND_DIED_EXIT
                return 0
            finally:
                if gate is not None:
                    gate.stop_listening(exit_timeout_s)
                if server is not None and server.poll() is None:
                    server.send_signal(signal.SIGINT)  # it stops taking connections, drains the open ones, exits
                    try:
                        server.wait(exit_timeout_s + 10)
                    except subprocess.TimeoutExpired:
                        server.kill()
                        server.wait()
                if gate is not None:
                    gate.close()
                _remove_shared_memory(shm_prefix())
                if log is not None:
                    log.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerProcess:
    """`fastdaf serve --json` in a child process of its own session, ready when the constructor returns.

    For tests, benchmarks and scripts that need a server beside them; `stop()` sends SIGTERM (the
    graceful path) and returns the exit code. Ports default to free loopback ports.
    """

    def __init__(
        self,
        *serve_args: str,
        http_port: int | None = None,
        grpc_port: int | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 300.0,
    ) -> None:
        self.http_port, self.grpc_port = http_port or free_port(), grpc_port or free_port()
        self.http, self.grpc = f"127.0.0.1:{self.http_port}", f"127.0.0.1:{self.grpc_port}"
        command = [
            sys.executable,
            "-m",
            "fastdaf.cli",
            "serve",
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            "--json",
            *serve_args,
        ]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, **(env or {})),
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._terminated = False
        threading.Thread(target=self._read, daemon=True).start()
        # ready means what a client needs: the model answers its readiness probe (not a line of output)
        deadline = time.monotonic() + startup_timeout_s
        while not model_ready(f"http://{self.http}", timeout_s=0.5):
            time.sleep(0.2)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                time.sleep(0.2)  # let the reader take the last lines
                raise ServeError(
                    "fastdaf serve did not become ready; its output ends with:\n" + "".join(self.lines[-30:])
                )

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith('{"event"')]

    def terminate(self) -> None:
        """SIGTERM, once: the server stops taking connections and finishes the accepted requests.

        Not twice: a second SIGTERM after `serve` has put back the default handlers, while the
        process exits, would kill it (exit code -15) instead of letting it finish.
        """
        if self.proc.poll() is None and not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 60.0) -> int:
        self.terminate()
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServeError(f"fastdaf serve did not stop within {timeout_s:.0f} s of SIGTERM; killed it") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> ServerProcess:  # not typing.Self: it needs Python 3.11; fastdaf supports 3.10
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc.poll() is None:
            try:
                self.stop()
            finally:
                self.kill()
