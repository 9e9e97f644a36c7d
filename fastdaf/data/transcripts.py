"""CMU-MOSEI transcript CSVs, read into `TranscriptRow`s; every malformed file raises `FeatureFileError`
naming the file and line.

The CMU-MOSEI release of the CMU-MultimodalSDK, as comma-separated files (`train.csv`, `valid.csv`):
an unnamed first column with the segment id `<video_id>[<segment_index>]` (e.g. `hh04W3xXa5s[0]`),
`sentence` (raw lower-cased ASR-style text; the token `sp` marks a pause and is kept here: strip it
with `fastdaf.encoders.normalize_mosei` before encoding), `polarity` (sentiment in [-3, 3]), then
`happiness sadness anger surprise disgust fear` (each in [0, 3]). Each row becomes a `TranscriptRow`
(`id`, `video` = the id before `[`, raw `text`, `label` = polarity, `emotions`, `split`).
The split is the caller's `split` argument, else the file name stem ("train", "valid").
The published values are rounded to two decimals (-0.33, 0.67) and a few are multiples of 1/6
(0.17, 0.5): they are kept exactly as written, never snapped to a grid.
`read_transcript_csv` reads the same shape in general: id column `id` (or `segment_id`) or an unnamed
first column, text column `sentence` or `text`, label column `polarity` or `label`, an optional
`split` column (used when no `split` argument is given; the file stem otherwise), and whichever of the
six emotion columns are present. `read_mosei_transcripts` is the strict variant: all six emotion
columns, ids shaped `video[k]`, labels in [-3, 3] and emotions in [0, 3]. Duplicate ids, missing
columns, short rows and non-numeric or non-finite numbers are errors naming the line (CSV line
numbers, header = line 1). `read_transcript_dir` reads every `*.csv` of a folder, each file a split
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import FeatureFileError

MOSEI_EMOTIONS: tuple[str, ...] = ("happiness", "sadness", "anger", "surprise", "disgust", "fear")
MOSEI_LABEL_COLUMNS: tuple[str, ...] = ("sentiment", *MOSEI_EMOTIONS)

_ID_COLUMNS = ("id", "segment_id")
_TEXT_COLUMNS = ("sentence", "text")
_LABEL_COLUMNS = ("polarity", "label")
_SEGMENT_ID = re.compile(r"^(.+)\[(\d+)\]$")


@dataclasses.dataclass
class TranscriptRow:
    """One utterance of a transcript CSV: raw text, sentiment label, optional emotion intensities."""

    id: str
    video: str
    text: str
    label: float
    emotions: dict[str, float] = dataclasses.field(default_factory=dict)
    split: str = ""


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of every non-blank row, with decode/CSV errors named by file."""
    if not path.is_file():
        raise FeatureFileError(f"no transcript CSV at {str(path)!r}")
    rows: list[tuple[int, list[str]]] = []
    line = 0
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            for cells in reader:
                line = reader.line_num
                if any(c.strip() for c in cells):
                    rows.append((line, cells))
    except UnicodeDecodeError as exc:
        raise FeatureFileError(f"{path} is not UTF-8 text: {exc}") from exc
    except csv.Error as exc:
        raise FeatureFileError(f"{path}, after line {line}: malformed CSV: {exc}") from exc
    if header is None:
        raise FeatureFileError(
            f"{path} is empty; expected a header row with id, sentence/text and polarity/label columns"
        )
    return header, rows


def _number(cell: str, path: Path, line: int, column: str) -> float:
    """A finite float from a CSV cell, or an error naming file, line and column."""
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise FeatureFileError(f"{path}, line {line}: column {column!r} is {cell!r}, expected a finite number")
    return value


def _read_transcripts(path: Path, split: str | None, strict_mosei: bool) -> list[TranscriptRow]:
    """Shared body of the generic and the strict CMU-MOSEI transcript readers."""
    header, rows = _read_csv(path)
    names = [h.strip().lower() for h in header]

    def column(candidates: Sequence[str]) -> int | None:
        return next((names.index(c) for c in candidates if c in names), None)

    id_col = column(_ID_COLUMNS)
    if id_col is None and names and names[0] == "":
        id_col = 0
    text_col, label_col, split_col = column(_TEXT_COLUMNS), column(_LABEL_COLUMNS), column(("split",))
    missing = [
        what
        for what, col in (
            ("an id column ('id' or an unnamed first column)", id_col),
            ("a text column ('sentence' or 'text')", text_col),
            ("a label column ('polarity' or 'label')", label_col),
        )
        if col is None
    ]
    emotion_cols = {e: names.index(e) for e in MOSEI_EMOTIONS if e in names}
    if strict_mosei and len(emotion_cols) < len(MOSEI_EMOTIONS):
        missing.append("emotion columns " + ", ".join(repr(e) for e in MOSEI_EMOTIONS if e not in emotion_cols))
    if missing:
        raise FeatureFileError(f"{path}: header {header} lacks {'; '.join(missing)}")
    assert id_col is not None and text_col is not None and label_col is not None
    label_name = header[label_col].strip()

    out: list[TranscriptRow] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        if len(cells) != len(header):
            raise FeatureFileError(f"{path}, line {line}: {len(cells)} fields, expected {len(header)} as in the header")
        seg = cells[id_col].strip()
        if not seg:
            raise FeatureFileError(f"{path}, line {line}: empty id")
        if seg in seen:
            raise FeatureFileError(f"{path}, line {line}: duplicate id {seg!r} (first on line {seen[seg]})")
        seen[seg] = line
        match = _SEGMENT_ID.match(seg)
        if strict_mosei and match is None:
            raise FeatureFileError(f"{path}, line {line}: id {seg!r} is not shaped '<video_id>[<segment_index>]'")
        label = _number(cells[label_col], path, line, label_name)
        emotions = {e: _number(cells[c], path, line, e) for e, c in emotion_cols.items()}
        if strict_mosei:
            if not -3.0 <= label <= 3.0:
                raise FeatureFileError(f"{path}, line {line}: {label_name} {label} is outside [-3, 3]")
            bad = {e: v for e, v in emotions.items() if not 0.0 <= v <= 3.0}
            if bad:
                raise FeatureFileError(f"{path}, line {line}: emotion intensities {bad} outside [0, 3]")
        row_split = split or (cells[split_col].strip() if split_col is not None else "") or path.stem
        out.append(TranscriptRow(seg, match.group(1) if match else seg, cells[text_col], label, emotions, row_split))
    return out


def read_transcript_csv(path: str | Path, *, split: str | None = None) -> list[TranscriptRow]:
    """Rows of any transcript CSV of the MOSEI shape (id, sentence/text, polarity/label, optional split/emotions).

    Lets other corpora laid out like the CMU-MOSEI CSVs (e.g. CMU-MOSI exports) be read without the
    MOSEI-specific range checks. `split` overrides a `split` column; without either the file stem is used.
    """
    return _read_transcripts(Path(path), split, strict_mosei=False)


def read_mosei_transcripts(path: str | Path, *, split: str | None = None) -> list[TranscriptRow]:
    """Rows of a CMU-MOSEI transcript CSV, checked strictly (six emotions, `video[k]` ids, value ranges).

    Strictness catches a wrong or truncated file early, before hours of feature extraction.
    """
    return _read_transcripts(Path(path), split, strict_mosei=True)


def read_transcript_dir(path: str | Path, *, strict_mosei: bool = False) -> list[TranscriptRow]:
    """Rows of every `*.csv` in a folder, each file one split named by its stem (train.csv -> "train").

    The shared CMU-MOSEI data ships as one file per fold; reading the folder gives all rows with their
    fold. An id present in two files is an error, as it would leak between splits.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FeatureFileError(f"no transcript folder at {str(folder)!r}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not files:
        raise FeatureFileError(f"{folder} holds no .csv transcript files")
    reader = read_mosei_transcripts if strict_mosei else read_transcript_csv
    out: list[TranscriptRow] = []
    where: dict[str, str] = {}
    for file in files:
        for row in reader(file, split=file.stem):
            if row.id in where:
                raise FeatureFileError(f"id {row.id!r} is in both {where[row.id]} and {file.name} (folder {folder})")
            where[row.id] = file.name
            out.append(row)
    return out
