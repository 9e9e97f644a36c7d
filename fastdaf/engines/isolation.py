"""The local Ray instance of `--engine ray`, run in a private network and PID namespace (issue 24, items 6 and 9).

Why: Ray 2.60 listens on every interface and cannot be told to bind loopback only; and after its driver is killed
with SIGKILL, agents it started live on for a minute or more. So a run that starts its own Ray instance runs the
whole job, driver included, in a child process inside new Linux namespaces (fastdaf.engines.namespaces): its
network holds only a loopback interface, reachable from nowhere else, and it is pid 1 of its own PID namespace,
so when it ends, however it ends (even SIGKILL of the process that started it), the kernel kills every Ray
process with it. The price: the job cannot reach the network (a remote manifest needs `ray_network="host"` or a
cluster `address`), and needs Linux user namespaces (or root); where they are disabled it says so and names the
two ways on.

This process keeps the output lock, sends the job's arguments to the child as JSON and gets back the summary or
the error (type and message) as JSON; SIGTERM and SIGINT are passed on, and the run's Ray session folder, made
here, is removed here whatever became of the child.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import errors
from ..errors import FastDAFError, Interrupted, UnsupportedError

NETWORKS = ("private", "host")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEFAULT_NETWORK = "private"
# True in the child: the job runs here, under the lock its parent holds
INSIDE = False
# Ray's session folder: under /tmp, as Ray's own default (a long $TMPDIR pushes its socket paths past 107 bytes)
RAY_TEMP_PARENT = "/tmp" if os.path.isdir("/tmp") else None
_OWNER = ".fastdaf-owner"  # in each such folder, locked by the run that uses it
_NAMESPACES = Path(__file__).with_name("namespaces.py")
# runs the namespace keeper by path, in a fresh interpreter that has imported nothing of fastdaf (nor torch)
_BOOT = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


@contextlib.contextmanager
def ray_temp_dir() -> Iterator[str]:
    """A folder for a Ray instance's session files, removed at the end; one that a run killed with SIGKILL left
    behind is removed by the next run (its owner lock is free: fcntl locks end with their process)."""
    _remove_abandoned()
    path = tempfile.mkdtemp(prefix="fastdaf-ray-", dir=RAY_TEMP_PARENT)
    owner = os.open(os.path.join(path, _OWNER), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(owner)


def _remove_abandoned() -> None:
    for folder in Path(RAY_TEMP_PARENT or tempfile.gettempdir()).glob("fastdaf-ray-*"):
        try:
            fd = os.open(folder / _OWNER, os.O_RDONLY)
        except OSError:
            continue  # not ours, or not readable: left alone
        try:
            # a folder whose owner is younger than a minute may be between its creation and its lock
            if time.time() - os.fstat(fd).st_mtime > 60:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # locked: its run is alive
        finally:
            os.close(fd)


def run_isolated(kwargs: dict[str, Any]) -> dict[str, Any]:
    """predict_manifest(**kwargs) in a child in private namespaces; its summary, or its error raised here."""
    with ray_temp_dir() as temp_dir:
        return _run_isolated(kwargs, temp_dir)


def _run_isolated(kwargs: dict[str, Any], temp_dir: str) -> dict[str, Any]:
    payload_r, payload_w = os.pipe()
    result_r, result_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(_NAMESPACES), str(os.getpid()), str(payload_r), str(result_w)],
            pass_fds=(payload_r, result_w),
        )
    except BaseException:
        for fd in (payload_r, payload_w, result_r, result_w):
            os.close(fd)
        raise
    os.close(payload_r)
    os.close(result_w)
    stops: list[int] = []
    try:
        with _passed_on(proc, stops):
            with contextlib.suppress(BrokenPipeError), os.fdopen(payload_w, "w", encoding="utf-8") as f:
                f.write(json.dumps({**kwargs, "_ray_temp_dir": temp_dir}))
            with os.fdopen(result_r, encoding="utf-8") as f:
                reply = f.read()
            status = proc.wait()
    finally:
        if proc.poll() is None:  # this process is being torn down (an exception here): the child goes too
            proc.kill()
            proc.wait()
    return _outcome(reply, status, stops)


def _outcome(reply: str, status: int, stops: list[int]) -> dict[str, Any]:
    message = json.loads(reply) if reply.strip() else {}
    if "summary" in message:
        return message["summary"]
    if "unavailable" in message:
        raise UnsupportedError(
            f"cannot run Ray in a private network ({message['unavailable']}: Linux user namespaces are needed, and "
            "this machine or container does not allow them); pass --ray-network host (API: ray_network='host') to "
            "let the local Ray instance listen on every interface, guarded by its token, or --address to use a Ray "
            "cluster you secured"
        )
    if "error" in message:
        raise _rebuilt(message["error"])
    if stops:
        raise Interrupted(stops[0])
    how = f"killed by {signal.Signals(status - 128).name}" if status > 128 else f"exit status {status}"
    raise FastDAFError(f"the Ray run ended without a result ({how}); its Ray processes were stopped with it")


def _rebuilt(error: dict[str, Any]) -> BaseException:
    """The child's exception as this process raises it: fastdaf's own types by name, anything else named."""
    cls = getattr(errors, error["type"], None)
    if cls is Interrupted:
        return Interrupted(error["signum"])
    if isinstance(cls, type) and issubclass(cls, FastDAFError):
        rebuilt = cls.__new__(cls)  # as raised, message and all, whatever the type's own arguments
        Exception.__init__(rebuilt, error["message"])
        return rebuilt
    return RuntimeError(f"{error['type']} in the Ray run: {error['message']}\n{error.get('traceback', '')}")


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """`handler` for SIGTERM and SIGINT during the block, in the main thread (elsewhere signals cannot be handled:
    the block runs without); the previous handlers afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _passed_on(proc: subprocess.Popen, stops: list[int]) -> contextlib.AbstractContextManager:
    """SIGTERM and SIGINT go on to the child, which stops cleanly and reports; this process waits for it."""

    def pass_on(signum, frame):
        stops.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    return on_stop_signals(pass_on)


# ------------------------------------------------------------------------------------------- in the child
def run_child(payload_fd: int, result_fd: int) -> int:
    """Pid 1 of the private namespaces: run the job sent on payload_fd, write its outcome to result_fd."""
    global INSIDE
    INSIDE = True
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _interrupt)
    with os.fdopen(result_fd, "w", encoding="utf-8") as out:
        try:
            with os.fdopen(payload_fd, encoding="utf-8") as f:
                kwargs = json.load(f)
            from .ray import predict_manifest  # noqa: PLC0415 - the job's module imports this one

            out.write(json.dumps({"summary": predict_manifest(**kwargs)}))
            return 0
        except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the parent, which raises it
            out.write(json.dumps({"error": _described(exc)}))
            return 128 + exc.signum if isinstance(exc, Interrupted) else 2


def _interrupt(signum: int, frame: Any) -> None:
    # once: Ctrl-C reaches this process both from the terminal and passed on by its parent
    for s in (*STOP_SIGNALS, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


def _described(exc: BaseException) -> dict[str, Any]:
    described: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, Interrupted):
        described["signum"] = exc.signum
    elif not isinstance(exc, FastDAFError):
        described["traceback"] = "".join(traceback.format_exception(exc))
    return described

