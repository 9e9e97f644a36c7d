"""Manifests: the CSV/JSONL lists of utterances (id, text, audio, label, split) that `fastdaf extract`
and `fastdaf predict --manifest` work through, and resumption by id."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from ..encoders.text import check_unicode
from ..errors import ManifestError


@dataclasses.dataclass
class ManifestRow:
    line: int
    id: str
    text: str | None
    audio: str | None
    label: float | None
    split: str | None


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    value = str(value)
    return value if value.strip() else None


def read_manifest(path: str | Path, *, allow_duplicate_ids: bool = False) -> list[ManifestRow]:
    """Rows of a CSV or JSONL manifest (columns id,text,audio,label,split; audio paths relative to the manifest).

    A UTF-8 byte-order mark (as Excel writes) is accepted. Outputs and resumption go by id, so rows
    without an id, and repeated ids unless `allow_duplicate_ids`, are refused before any work.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"no manifest at {str(path)!r}")
    suffix = path.suffix.lower()
    records: list[tuple[int, dict[str, Any]]] = []
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                columns = set(reader.fieldnames or [])
                records = [(k + 2, row) for k, row in enumerate(reader)]
        elif suffix in (".jsonl", ".ndjson"):
            columns = set()
            for k, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ManifestError(f"{path}:{k}: not valid JSON ({exc})") from exc
                if not isinstance(obj, dict):
                    raise ManifestError(f"{path}:{k}: each line must be a JSON object, got {type(obj).__name__}")
                columns |= set(obj)
                records.append((k, obj))
        else:
            raise ManifestError(f"{path}: manifests are .csv or .jsonl files, got {suffix or 'no extension'!r}")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text ({exc})") from exc
    if "id" not in columns or not columns & {"text", "audio"}:
        raise ManifestError(
            f"{path}: needs an 'id' column and a 'text' and/or 'audio' column (optional: label, split); found "
            f"{sorted(columns)}"
        )
    rows = []
    for line, rec in records:
        audio = _cell(rec.get("audio"))
        if audio is not None and not Path(audio).is_absolute():
            audio = str((path.parent / audio).resolve())
        label = _cell(rec.get("label"))
        try:
            label_value = None if label is None else float(label)
        except ValueError:
            label_value = math.nan  # reported as a bad row
        rows.append(
            ManifestRow(
                line, _cell(rec.get("id")) or "", _cell(rec.get("text")), audio, label_value, _cell(rec.get("split"))
            )
        )
    _check_ids(path, rows, allow_duplicate_ids)
    return rows


def _check_ids(path: Path, rows: list[ManifestRow], allow_duplicates: bool) -> None:
    """Refuse rows without an id, and repeated ids unless allowed, naming their lines."""
    empty = [r.line for r in rows if not r.id]
    if empty:
        raise ManifestError(
            f"{path}: {len(empty)} row(s) have an empty id (line {_some(empty)}); every row needs an id"
        )
    for r in rows:
        check_unicode(r.id, f"{path}:{r.line}: id")  # ids are written to the outputs as UTF-8
    if allow_duplicates:
        return
    lines: dict[str, list[int]] = {}
    for r in rows:
        lines.setdefault(r.id, []).append(r.line)
    repeated = [f"{i!r} on lines {_some(ls)}" for i, ls in lines.items() if len(ls) > 1]
    if repeated:
        raise ManifestError(
            f"{path}: {len(repeated)} id(s) appear more than once ({_some(repeated, sep='; ')}); make ids unique, "
            "or allow repeats with --allow-duplicate-ids (allow_duplicate_ids=True)"
        )


def _some(items: list, *, sep: str = ", ", limit: int = 10) -> str:
    """The first `limit` items joined, then how many more: messages stay readable for huge manifests."""
    more = f"{sep}and {len(items) - limit} more" if len(items) > limit else ""
    return sep.join(str(x) for x in items[:limit]) + more


def pending_rows(rows: list[ManifestRow], done_ids: list[str]) -> list[ManifestRow]:
    """The rows still to do, given the ids of the rows already in an output file (resumption).

    An id present k times in the output accounts for its first k rows in the manifest, so repeated
    ids (allowed on request) resume correctly too.
    """
    done = Counter(done_ids)
    todo = []
    for row in rows:
        if done[row.id] > 0:
            done[row.id] -= 1
        else:
            todo.append(row)
    return todo
