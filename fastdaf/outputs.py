"""Where `fastdaf predict --manifest` results go: the local engine's resumable CSV/JSONL writer
(`predict_rows`, `ResultsFile`), the lock both manifest engines hold on their `--out` (one writer per output),
and the provenance a resumed output must match. The Ray engine (fastdaf.bulk) writes its folder with the same
lock and provenance.

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
import csv
import fcntl
import hashlib
import io
import json
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .checkpoint import CONFIG_FILE, WEIGHTS_FILE, local_encoder_folders, read_config
from .data.manifests import pending_rows
from .errors import InputError, OutputBusyError
from .pipeline import SentimentPredictor
from .records import flatten_record, record_columns, record_keys
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


# ------------------------------------------------------------------- the local engine's results file
def _whole_records(data: bytes, *, quoted: bool) -> int:
    """Length of the complete records at the start of `data`: a run killed mid-write leaves a partial last one.

    A record ends at a newline; in CSV only at one outside quotes (an even number of quotes so far).
    """
    end = pos = quotes = 0
    while (newline := data.find(b"\n", pos)) != -1:
        if quoted:
            quotes += data.count(b'"', pos, newline)
        pos = newline + 1
        if quotes % 2 == 0:
            end = pos
    return end


class ResultsFile:
    """Where `predict --manifest` rows go, a batch at a time and flushed: JSONL on stdout, or a .csv/.jsonl
    file that a rerun resumes (its rows are skipped; a partial last row left by a kill is cut off and redone)."""

    def __init__(self, target: Path | None, predictor: SentimentPredictor, made_by: dict[str, Any], rows: list) -> None:
        self.target, self.predictor = target, predictor
        self.csv = target is not None and target.suffix.lower() == ".csv"
        # a CSV has the flattened columns, JSON lines the record's keys (fastdaf.records)
        if self.csv:
            self.columns = record_columns(predictor.modalities, predictor.output_names)
        else:
            self.columns = record_keys(predictor.output_names)
        resuming = target is not None and target.exists() and target.stat().st_size > 0
        if resuming:
            check_resume(target, made_by)  # what made it, before its rows are read
        self.done_ids = self._resume(rows) if resuming else []
        if target is None:
            self.file = sys.stdout
            return
        if not resuming:
            write_provenance(provenance_path(target), made_by)
        fresh = target.stat().st_size == 0 if target.exists() else True
        self.file = target.open("a", newline="", encoding="utf-8")
        if self.csv and fresh:
            self._write(self._header())

    def _header(self) -> str:
        buf = io.StringIO()
        csv.writer(buf).writerow(self.columns)
        return buf.getvalue()

    def _resume(self, rows: list) -> list[str]:
        """Ids already in the output; the file is refused untouched unless it is this command's output with these
        columns, holding no id more often than the manifest does."""
        target = self.target
        data = target.read_bytes()
        start = self._header().encode() if self.csv else b'{"id": '
        whole = _whole_records(data, quoted=self.csv)
        try:
            if not (data.startswith(start) or start.startswith(data)):
                raise ValueError("it does not start like one")
            text = data[:whole].decode("utf-8")
            if self.csv:
                records = list(csv.reader(io.StringIO(text)))[1:]
                if any(len(r) != len(self.columns) for r in records):
                    raise ValueError("a row has another number of columns")
                ids = [r[0] for r in records]
            else:
                objects = [json.loads(line) for line in text.splitlines()]
                if any(list(obj) != self.columns for obj in objects):
                    raise ValueError(f"a row has other fields than {self.columns}")
                ids = [obj["id"] for obj in objects]
        except (ValueError, TypeError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise InputError(
                f"--out {str(target)!r} exists but is not `fastdaf predict` output of this model ({exc}); "
                "give a new file, or delete it to start over"
            ) from exc
        wanted = Counter(r.id for r in rows)
        extra = [(i, n) for i, n in Counter(ids).items() if n > wanted[i]]
        if extra:
            shown = ", ".join(f"{i!r} {n} times (the manifest has {wanted[i]})" for i, n in extra[:3])
            more = ", ..." if len(extra) > 3 else ""
            raise InputError(
                f"--out {str(target)!r} holds ids more often than the manifest ({shown}{more}); rows were written "
                "twice (two runs at once?): give a new file, or delete it to start over"
            )
        if whole < len(data):
            os.truncate(target, whole)  # the partial row is redone (a partial CSV header is written again)
        return ids

    def _write(self, text: str) -> None:
        self.file.write(text)
        self.file.flush()

    def write(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        if self.csv:
            flat = [flatten_record(r, self.predictor.modalities, self.predictor.output_names) for r in rows]
            csv.DictWriter(buf, fieldnames=self.columns).writerows(flat)
        else:
            buf.writelines(json.dumps(r) + "\n" for r in rows)
        self._write(buf.getvalue())

    def close(self) -> None:
        if self.file is not sys.stdout:
            self.file.close()


def predict_rows(predictor, rows: list, target: Path | None, made_by: dict[str, Any], *, progress: bool) -> int:
    """Predict the rows not yet in `target`, writing each batch as it finishes (a killed run loses at most one
    batch).

    The rows being predicted are named in a marker beside the output (`.<name>.inflight`) until they are written:
    a run that dies with it there (kill -9, the OOM killer, a crash inside a library) left those rows undone, and
    the next run predicts them one at a time first; a row that was alone in flight when the process died is
    recorded as failed (ProcessDiedError), not tried again, so a row that kills the process cannot stop every
    rerun. An exception (Ctrl-C included) removes the marker: only a dead process leaves it."""

    results = ResultsFile(target, predictor, made_by, rows)
    todo = {r.line for r in pending_rows(rows, results.done_ids)}
    marker = None if target is None else target.with_name(f".{target.name}.inflight")
    died = _inflight(marker) & todo
    counts = {"predicted": 0, "failed": 0}
    bar = tqdm(total=len(todo), desc="predicting", unit="utt", disable=None if progress else True)

    def run(chunk: list) -> None:
        names = [f"id {r.id!r} (line {r.line})" for r in chunk]
        if marker is not None:
            marker.write_text(json.dumps([r.line for r in chunk]))
        if len(died) == 1 and [r.line for r in chunk] == list(died):
            out = [f"ProcessDiedError: {names[0]}: the process died while predicting this row alone (killed, or out "
                   "of memory) in an earlier run; it is not tried again"]  # fmt: skip
        else:
            out = predictor.predict_each([r.text for r in chunk], [r.audio for r in chunk], names=names)
        results.write([predictor.record(res, r.id) for r, res in zip(chunk, out)])
        if marker is not None:
            marker.unlink()
        failed = sum(isinstance(res, str) for res in out)
        counts["failed"] += failed
        counts["predicted"] += len(chunk) - failed
        bar.update(len(chunk))

    try:
        for row in (r for r in rows if r.line in died):  # what a dead process left in flight, one at a time
            run([row])
        todo -= died
        # batches keep the boundaries of an uninterrupted run, so a resumed run gives the very same numbers
        for start in range(0, len(rows), predictor.batch_size):
            chunk = [r for r in rows[start : start + predictor.batch_size] if r.line in todo]
            if chunk:
                run(chunk)
    finally:
        bar.close()
        results.close()
        if marker is not None:
            marker.unlink(missing_ok=True)
    skipped = len(rows) - len(todo) - len(died)
    print(
        f"{counts['predicted']} predicted, {counts['failed']} failed, of {len(rows)} rows"
        + (f"; {skipped} were already in the output" if skipped else "")
        + (f"; {len(died)} left in flight by a process that died, predicted one at a time" if died else "")
        + (f" -> {target}" if target else ""),
        file=sys.stderr,
    )
    return 0


def _inflight(marker: Path | None) -> set[int]:
    """Manifest lines a dead process was predicting (see predict_rows)."""
    if marker is None or not marker.exists():
        return set()
    try:
        return {int(line) for line in json.loads(marker.read_text())}
    except (OSError, ValueError, TypeError):
        return set()
