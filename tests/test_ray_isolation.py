"""The local Ray instance of `fastdaf predict --engine ray` in private namespaces (fastdaf.engines.isolation):
nothing it listens on is reachable from this machine's network, and every Ray process ends with the run, even
when the run is killed with SIGKILL (issue 24, items 6 and 9)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from builders import SHARED_DATA

pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

REPO = Path(__file__).resolve().parents[1]


def processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time), from /proc as this process sees it."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
        found[int(entry.name)] = (int(fields[1]), fields[0], fields[19])
    return found


def descendants(pid: int) -> dict[int, str]:
    """pid -> start time of every live process below `pid`."""
    table = processes()
    below, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, state, start) in table.items():
            if ppid == parent and child not in below and state != "Z":
                below[child] = start
                todo.append(child)
    return below


def alive(pid: int, start: str) -> bool:
    info = processes().get(pid)
    return info is not None and info[1] != "Z" and info[2] == start


def command(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path("/proc") / str(pid) / "fd"
    try:
        links = [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)]
    except OSError:
        return inodes
    for link in links:
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def listening(net_dir: Path) -> dict[str, str]:
    """inode -> local address of every listening TCP socket in the network namespace net_dir belongs to."""
    found = {}
    for name in ("tcp", "tcp6"):
        lines = (net_dir / name).read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                found[fields[9]] = fields[1]
    return found


def start_run(manifest: Path, out: Path, env: dict | None = None) -> subprocess.Popen:
    """`fastdaf predict --engine ray` in a new process; its stderr goes to a file beside `out` (a pipe nobody
    reads could fill and stall it)."""
    with (out.parent / "stderr.txt").open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "fastdaf.cli", "predict", "--manifest", str(manifest), "--engine", "ray",
             "--out", str(out), "--workers", "1", "--batch-size", "4", "--json"],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=REPO, env=env,
        )  # fmt: skip


def stderr_of(out: Path) -> str:
    return (out.parent / "stderr.txt").read_text(errors="replace")


def wait_for_a_worker(proc: subprocess.Popen) -> dict[int, str]:
    """pid -> command line of every process below the run, once Ray is up and a worker scores rows."""
    deadline = time.monotonic() + 180
    while True:
        names = {pid: command(pid) for pid in descendants(proc.pid)}
        if any("gcs_server" in c for c in names.values()) and any("MapWorker" in c for c in names.values()):
            return names
        assert proc.poll() is None, "the run ended before a worker was seen"
        assert time.monotonic() < deadline, "no Ray worker within 180 s"
        time.sleep(0.2)


@pytest.fixture
def long_manifest(tmp_path):
    """2,000 MOSEI transcripts: a run that lasts long enough to be looked at and killed."""
    mosei = SHARED_DATA / "cmu-mosei-text" / "train.csv"
    if not mosei.is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    with mosei.open(newline="", encoding="utf-8") as f:
        rows = [{"id": f"r{k}", "text": r["sentence"]} for k, r in zip(range(2000), csv.DictReader(f))]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


def test_local_ray_listens_on_a_private_loopback_and_dies_with_a_killed_run(long_manifest, tmp_path):
    before = {p.name for p in Path("/tmp").glob("fastdaf-ray-*")}
    proc = start_run(long_manifest, tmp_path / "out")
    try:
        names = wait_for_a_worker(proc)
        below = descendants(proc.pid)
        gcs = next(pid for pid, c in names.items() if "gcs_server" in c)

        # nothing any of them holds listens in this machine's network namespace ...
        host_listeners = listening(Path("/proc/self/net"))
        exposed = {
            f"{names[pid][:60]} on {host_listeners[inode]}"
            for pid in below
            for inode in socket_inodes(pid) & host_listeners.keys()
        }
        assert not exposed, exposed
        # ... while the GCS does listen, in a network whose only interface is loopback
        assert socket_inodes(gcs) & listening(Path("/proc") / str(gcs) / "net").keys()
        interfaces = (Path("/proc") / str(gcs) / "net" / "dev").read_text().splitlines()[2:]
        assert [line.split(":")[0].strip() for line in interfaces] == ["lo"]
        assert os.readlink(f"/proc/{gcs}/ns/net") != os.readlink("/proc/self/ns/net")

        # SIGKILL of the run: every process it started is gone within seconds (Ray's own agents outlived a killed
        # driver by 80 s and more), and nothing is left to hold the output
        below = descendants(proc.pid)
        assert len(below) >= 4, [command(pid) for pid in below]
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 15
        while left := [command(pid) or str(pid) for pid, start in below.items() if alive(pid, start)]:
            assert time.monotonic() < deadline, f"left running 15 s after SIGKILL: {left}"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # its Ray session folder stays (nothing of the run was left to remove it) until the next run starts
    folders = [p for p in Path("/tmp").glob("fastdaf-ray-*") if p.name not in before]
    assert len(folders) == 1
    os.utime(folders[0] / ".fastdaf-owner", (time.time() - 120, time.time() - 120))  # as if killed 2 minutes ago
    from fastdaf.engines.isolation import ray_temp_dir

    with ray_temp_dir() as fresh:
        assert not folders[0].exists() and Path(fresh).is_dir()
    assert not Path(fresh).exists()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_reaches_the_job_inside(long_manifest, tmp_path, stop):
    """The run's own process passes SIGTERM/SIGINT on to the job in the namespaces, which stops cleanly (exit
    128 + the signal, the usual message) and takes its Ray processes with it."""
    out = tmp_path / "out"
    proc = start_run(long_manifest, out)
    wait_for_a_worker(proc)
    below = descendants(proc.pid)
    proc.send_signal(stop)
    proc.wait(timeout=120)
    err = stderr_of(out)
    assert proc.returncode == 128 + stop, err[-3000:]
    assert f"fastdaf predict: stopped by {stop.name}" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == []  # no partial file, no lock file
    assert not [pid for pid, start in below.items() if alive(pid, start)]


def test_a_job_killed_inside_is_reported_and_takes_ray_with_it(long_manifest, tmp_path):
    """The job itself (pid 1 of its namespace) killed, as the OOM killer would: the command says how it ended
    (exit 2, no traceback) and no Ray process outlives it."""
    out = tmp_path / "out"
    proc = start_run(long_manifest, out)
    names = wait_for_a_worker(proc)
    below = descendants(proc.pid)
    job = processes()[next(pid for pid, c in names.items() if "gcs_server" in c)][0]  # the GCS's parent: the job
    assert job != proc.pid and job in below
    os.kill(job, signal.SIGKILL)
    proc.wait(timeout=60)
    err = stderr_of(out)
    assert proc.returncode == 2, err[-3000:]
    assert "error: the Ray run ended without a result (killed by SIGKILL)" in err and "Traceback" not in err
    deadline = time.monotonic() + 15
    while left := [command(pid) for pid, start in below.items() if alive(pid, start)]:
        assert time.monotonic() < deadline, f"left running 15 s after the job was killed: {left}"
        time.sleep(0.2)


def test_the_user_namespace_path(tmp_path):
    """What a user other than root gets: a user namespace mapping them to themselves (root needs none;
    FASTDAF_USER_NAMESPACE=1 makes root take that path too). The scores match the in-process engine's."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text\na,this was fine\nb,i hated every minute of it\n", encoding="utf-8")
    proc = start_run(manifest, tmp_path / "out", env={**os.environ, "FASTDAF_USER_NAMESPACE": "1"})
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr_of(tmp_path / "out")[-3000:]
    assert json.loads(stdout)["predicted"] == 2
    local = tmp_path / "local.jsonl"
    assert subprocess.run(
        [sys.executable, "-m", "fastdaf.cli", "predict", "--manifest", str(manifest), "--out", str(local), "--json"],
        cwd=REPO, capture_output=True,
    ).returncode == 0
    want = [json.loads(line)["score"] for line in local.read_text().splitlines()]
    got = pq.read_table(tmp_path / "out" / "predictions.parquet").column("score").to_pylist()
    assert got == pytest.approx(want, abs=1e-4)


def test_a_remote_manifest_needs_the_host_network(tmp_path, capsys):
    from fastdaf.cli import main as cli_main

    argv = ["predict", "--manifest", "s3://bucket/manifest.csv", "--engine", "ray", "--out", str(tmp_path / "out")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "is remote, and the local Ray instance runs in a private network" in err and "--ray-network host" in err
    assert cli_main([*argv, "--address", "auto", "--ray-network", "host"]) == 2
    assert "--ray-network is for the Ray instance fastdaf starts" in capsys.readouterr().err
