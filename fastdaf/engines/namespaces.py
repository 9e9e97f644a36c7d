"""A private network and process namespace for the local Ray instance fastdaf starts (standard library only).

Why: Ray 2.60 binds its GCS, raylet, driver and workers to every interface (`*:port`) and has no loopback-only
option, and after the driver is killed with SIGKILL its agents live on for a minute or more. Run inside new
Linux namespaces, both go away: the network namespace has only a loopback interface, so nothing Ray opens can be
reached from another machine or from this machine's own network; the process starts as pid 1 of a new PID
namespace, and when pid 1 ends, however it ends, the kernel kills every process left in the namespace.

Run as a script by fastdaf.engines.isolation, in a fresh interpreter (unshare(2) with a new user namespace
refuses a process with more than one thread, and importing torch starts one):

    python -c "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')" \
        namespaces.py PARENT_PID PAYLOAD_FD RESULT_FD

The process (the "keeper") dies with its parent (PR_SET_PDEATHSIG), enters new user (unless it runs as root),
network, mount and PID namespaces, forks pid 1, forwards SIGTERM/SIGINT/SIGHUP to it and exits with its status.
Pid 1 dies with the keeper, makes its mounts private, mounts its own /proc (Ray and psutil read /proc by pid),
brings the loopback interface up, then imports fastdaf and runs the job (fastdaf.engines.isolation.run_child).
If a namespace cannot be made (user namespaces disabled by the administrator or a container's seccomp profile),
the keeper writes why to RESULT_FD as one JSON line {"unavailable": "..."} and exits 3.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
UNAVAILABLE_EXIT = 3

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def die_with_parent() -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def enter_namespaces() -> None:
    """New network, mount and PID namespaces (the PID one for the next child), in a new user namespace that maps
    this user to itself unless running as root, who needs none."""
    uid, gid = os.geteuid(), os.getegid()
    # FASTDAF_USER_NAMESPACE=1: root too, as every other user does (how the tests run that path as root)
    own_user = uid != 0 or os.environ.get("FASTDAF_USER_NAMESPACE") == "1"
    flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | (CLONE_NEWUSER if own_user else 0)
    _check(_libc.unshare(flags), "unshare(user, network, mount, pid namespaces)")
    if own_user:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")


def private_mounts_and_proc() -> None:
    """Mounts made here stay here; /proc shows this PID namespace's processes."""
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    _check(_libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount proc /proc")


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))


def _exit_status(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def keeper(parent_pid: int, payload_fd: int, result_fd: int) -> int:
    die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        return 1
    try:
        enter_namespaces()
    except OSError as exc:
        with os.fdopen(result_fd, "w") as f:
            f.write(json.dumps({"unavailable": str(exc.strerror or exc)}) + "\n")
        return UNAVAILABLE_EXIT
    child = os.fork()
    if child == 0:
        os._exit(_pid_one(payload_fd, result_fd))
    os.close(payload_fd)
    os.close(result_fd)  # the parent sees the end of the result when pid 1 is gone

    def forward(signum, frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass  # it has just ended: waitpid below collects it

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, forward)
    _, status = os.waitpid(child, 0)  # retried after each forwarded signal (PEP 475)
    return _exit_status(status)


def _exit_now(signum, frame):
    os._exit(128 + signum)


def _pid_one(payload_fd: int, result_fd: int) -> int:
    try:
        die_with_parent()
        private_mounts_and_proc()
        loopback_up()
    except OSError as exc:
        with os.fdopen(result_fd, "w") as f:
            f.write(json.dumps({"unavailable": str(exc.strerror or exc)}) + "\n")
        return UNAVAILABLE_EXIT
    # pid 1 ignores every signal it has no handler for; until the job sets its own, a stop ends it at once (nothing
    # has started that would need cleaning up)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _exit_now)
    from fastdaf.engines.isolation import run_child  # noqa: PLC0415 - only now: this file runs before any import

    return run_child(payload_fd, result_fd)


if __name__ == "__main__":
    sys.exit(keeper(*(int(a) for a in sys.argv[1:4])))
