"""What fastdaf does to an `--out` before and while writing it: refused up front when it cannot be written
(`check_out_file`, `check_out_folder`: the commands check before any work) or is a symbolic link, locked while
written (one writer per output), and with the provenance a resumed output must match. Both manifest engines
(fastdaf.engines: local and ray) hold the lock and record the provenance.

Lock: `--out runs/scores.csv` (or the folder `--out runs/ray`) is locked through a hidden file beside it
(`runs/.scores.csv.lock`) with an exclusive `flock`, held for the whole run and released by the kernel
when the process ends however it ends (kill -9 leaves no stale lock). A second run on the same output is
refused at once, naming the holder's pid, host and start time. `flock` does not reach across machines
on every network file system: two hosts writing one shared output are not protected.

Provenance: beside the output, `<out>.provenance.json` (in the Ray engine's folder, `provenance.json`)
records what made it: fastdaf's version, the checkpoint's digest (its config, weights and the encoder
weights it carries), the manifest's digest, and the options that change scores (head, encoder backend,
device, batch size). A resumed output must match all of it; a file without it is not resumed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .checkpoint import CONFIG_FILE, WEIGHTS_FILE, local_encoder_folders, read_config
from .errors import InputError, OutputBusyError
from .version import __version__

PROVENANCE_SUFFIX = ".provenance.json"


def lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def refuse_symlink(target: Path) -> None:
    """An --out that is a symbolic link (dangling or not) is refused: writes would land wherever it points."""
    if target.is_symlink():
        raise InputError(
            f"--out {str(target)!r} is a symbolic link (to {os.readlink(target)!r}); give the real path: fastdaf "
            "does not write through links"
        )


def check_out_file(path: Path, suffixes: tuple[str, ...], accepted: str, *, create_folder: bool = False) -> None:
    """Refuse an --out that cannot be written before any work (it used to fail after the last row)."""
    if path.suffix.lower() not in suffixes:
        raise InputError(f"--out must end in {accepted}, got {path.name!r}")
    refuse_symlink(path)
    if path.is_dir():
        raise InputError(f"--out {str(path)!r} is a folder; give a file name ending in {accepted}")
    if create_folder:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"--out {str(path)!r}: cannot create the folder {str(path.parent)!r} ({exc.strerror})"
            ) from exc
    if not path.parent.is_dir():
        raise InputError(f"--out {str(path)!r}: the folder {str(path.parent)!r} does not exist; create it first")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"--out {str(path)!r} is not writable")


def check_out_folder(path: Path) -> None:
    """A checkpoint/report folder: refused up front if a file is in the way (it used to fail after training)."""
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {str(path)!r} is a file; give a folder (it is created if missing)")


@contextlib.contextmanager
def output_lock(target: Path) -> Iterator[None]:
    """Hold the exclusive lock on `target` for the block (see the module docstring); OutputBusyError if another
    process holds it."""
    path = lock_path(target)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputBusyError(
                f"--out {str(target)!r} is being written by another fastdaf run ({holder}); wait for it to finish "
                "or give another --out"
            ) from None
        # the holder before us may have removed the file after we opened it: lock the file the path names now
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still holding it: a waiting opener then sees another inode and retries
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def checkpoint_digest(checkpoint: str | Path) -> str:
    """sha256 over the checkpoint's config and weights and the files of the encoder folders it carries."""
    folder = Path(checkpoint)
    _, extra = read_config(folder)
    files = [folder / CONFIG_FILE, folder / WEIGHTS_FILE]
    for name in sorted(local_encoder_folders(extra).values()):
        files += sorted(p for p in (folder / name).rglob("*") if p.is_file())
    return _digest(files)


def provenance(checkpoint: str | Path, manifest: str | Path | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """What makes an output's scores: see the module docstring. manifest None: not a local file (not digested)."""
    return {
        "fastdaf": __version__,
        "checkpoint": str(Path(checkpoint).resolve()),
        "checkpoint_sha256": checkpoint_digest(checkpoint),
        "manifest_sha256": None if manifest is None else _digest([Path(manifest)]),
        "options": dict(options),
    }


def provenance_path(target: Path) -> Path:
    return target.with_name(target.name + PROVENANCE_SUFFIX)


def write_provenance(path: Path, record: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def check_resume(target: Path, record: Mapping[str, Any]) -> None:
    """Refuse to resume `target` unless its provenance file says this very run made it."""
    path = provenance_path(target)
    try:
        found = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(
            f"--out {str(target)!r} exists but has no {path.name} saying what made it, so it cannot be resumed: "
            "give a new file, or delete it to start over"
        ) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"--out {str(target)!r}: its {path.name} is unreadable ({exc}); delete both to start over")
    names = {
        "fastdaf": "fastdaf version",
        "checkpoint_sha256": "checkpoint (its weights)",
        "manifest_sha256": "manifest",
        "options": "options that change scores",
    }
    differ = [
        f"{label}: {found.get(key)!r} then, {record[key]!r} now"
        for key, label in names.items()
        if found.get(key) != record[key]
    ]
    if differ:
        raise InputError(
            f"--out {str(target)!r} was written by another run ({'; '.join(differ)}); resuming would mix its "
            "scores with these: give a new file, or delete it (and its provenance file) to start over"
        )
