"""The local engine: `fastdaf predict --manifest` scored in this process, its rows written as they finish to
JSONL on stdout or to a .csv/.jsonl file that a rerun resumes (`predict_rows`, `ResultsFile`). It holds the lock
of fastdaf.outputs on that file and records, and checks, its provenance there; the Ray engine
(fastdaf.engines.ray) writes the same records (fastdaf.records) to a folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..data.manifests import pending_rows
from ..errors import InputError
from ..outputs import check_resume, provenance_path, write_provenance
from ..pipeline import SentimentPredictor
from ..records import flatten_record, record_columns, record_keys


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
