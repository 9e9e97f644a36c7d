"""Readers for the public multimodal-sentiment dataset formats, turned into fastdaf rows.

Three sources are read. Every malformed file raises `FeatureFileError` (or a subclass) whose message
names the file, the place in it (line, split, video, row) and what was expected against what was found;
bad arguments raise `InputError`.

1. CMU-MOSEI transcript CSVs (`read_mosei_transcripts`, `read_transcript_csv`, `read_transcript_dir`)
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
   named by its stem; an id found in two files is an error.

2. MMSA processed pickles (`load_mmsa_pickle`), thuiar/MMSA `aligned_50.pkl` / `unaligned_50.pkl`
   A dict with `train` / `valid` / `test` (at least one of them must be there; other keys are ignored),
   each a dict with `text` (N, L, 768 BERT features), `text_bert` (N, 3, L: input ids / attention mask /
   segment ids), `audio` (N, La, 74 COVAREP), `vision` (N, Lv, 35 FACET), `audio_lengths` /
   `vision_lengths` (unaligned files only; ints), `regression_labels` (N,), `id` (N strings) and
   `raw_text` (not used). The result has modalities `text`, `audio`, `video` (the file's `vision`),
   splits "train"/"valid"/"test" in that order, labels = `regression_labels`, ids = `id`.
   Pooling is a masked mean over time, so padding never leaks into it:
   - text over the positions where the attention mask `text_bert[:, 1, :]` is non-zero;
   - audio / vision over their first `audio_lengths` / `vision_lengths` frames when the file has them
     (unaligned), else (aligned files) over the text attention-mask positions, which requires their time
     axis to have the text length L (they are aligned to the text tokens);
   - `-inf` in audio is replaced by 0 before pooling, as MMSA does (`audio[audio == -np.inf] = 0`);
     any other non-finite value at a pooled position is an error naming split, modality and row
     (non-finite values in padding are ignored, as the padding itself is);
   - a row with nothing to pool for a modality (length 0, empty mask) is marked absent for it
     (present=False, zeros).
   Feature widths are taken from the file (768/74/35 in the MMSA releases) and must agree across splits.
   Reading a pickle can run code, so the file is read by `SafeUnpickler`, which admits only what numpy
   arrays, lists, dicts, sets, tuples, strings and numbers need and refuses every other global with an
   `UnsafePickleError` naming the refused `module.name`, before anything of it runs. Object-dtype arrays
   holding anything but `str` are refused too. Admitted constructors build only from data in the file
   (`bytes(n)`, `bytearray(n)`, `numpy.ndarray(shape)` would allocate from a count and are refused). The
   loaded structure is then walked once, each shared sub-object once, and refused if it has a cycle,
   nests deeper than `MAX_PICKLE_DEPTH` (64) or holds more than `MAX_PICKLE_ITEMS` (10,000,000)
   list/tuple/set/dict items counting a shared sub-object at each use (numpy and repr would expand it).

3. CMU-MultimodalSDK computational sequences (`load_csd_folder`)
   Each `.csd` file is HDF5: one top-level group `<root>` holding `data/<video_id>/features` ([T, D]
   numbers) and `data/<video_id>/intervals` ([T, 2] start/end seconds), and optionally `metadata/`
   (attributes or datasets holding JSON-ish strings; informational, copied into `info["metadata"]`,
   its absence is fine). A folder holds one file per modality plus one labels file. Without an explicit
   `modalities` mapping (role -> file), roles come from the file names, case-insensitively: "label" ->
   labels (checked first), "covarep"/"audio" -> audio, "facet"/"openface"/"visual"/"video" -> video,
   "glove"/"word"/"bert"/"text" -> text; a file matching no role or several, or two files for one role,
   is an error listing the files and asking for an explicit mapping (the full SDK download has both
   FACET and OpenFace, and both TimestampedWords and TimestampedWordVectors, so it needs one).
   Utterances are the label intervals: row k of video v's label `intervals` is segment `f"{v}[{k}]"`
   (the id style of the transcript CSVs), with label vector `features[k]` (CMU-MOSEI: 7 columns,
   sentiment then the six emotions); rows follow the videos in HDF5 name order, then k. `labels` is column `label_column` (default 0, sentiment)
   as [N]; the width and column names are in `info`. For each segment and modality the feature rows whose
   interval overlaps the segment by more than 0 seconds are averaged; a segment with no such row (or a
   video missing from that modality's file) is marked absent (present=False, zeros), never filled in.
   `-inf` is replaced by 0 in the modalities listed in `zero_neg_inf` (default: audio, as MMSA does);
   any other non-finite value in a pooled row is an error naming file, video and row.
   Folds: `folds` maps split name -> video ids; videos listed in no fold are left out (counted in
   `info`). Without `folds`, the transcript CSVs define them: a video found in `<dir>/train.csv` is
   "train", in `valid.csv` "valid" (each `*.csv` is a split named by its stem), any other video is
   "test". With the shared CMU-MOSEI CSVs this reproduces the SDK's standard train/valid folds; the
   standard test fold is whatever remains. The default folder is `../shared/data/cmu-mosei-text`
   relative to the repository root; if it is missing (and no folds or folder were given), every video is
   put in "train" and `info["folds"]` says so. A folder passed explicitly must exist.
   Limits, checked from the HDF5 metadata before anything is read (a small file can claim huge
   datasets): no soft or external links and no dataset stored outside the file (external storage,
   virtual datasets), anywhere in the file; per video at most `MAX_CSD_VALUES` (2**26) feature values
   and `MAX_INPUT_DIM` (65,536) columns; at most `MAX_CSD_SEGMENTS` (200,000) labelled segments and
   `MAX_CSD_LABEL_COLUMNS` (64) label columns; segments x columns of a pooled modality at most
   `MAX_CSD_POOLED_VALUES` (2**28). Metadata entries over `MAX_CSD_METADATA_BYTES` (1 MiB) are skipped.

`detect_dataset_kind(path)` tells the CLI which of these readers (or `FeatureSet.load`) fits a path.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import contextlib
import csv
import dataclasses
import io
import math
import pickle
import re
import reprlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import MAX_INPUT_DIM
from .errors import FeatureFileError, InputError
from .features import FeatureSet

MOSEI_EMOTIONS: tuple[str, ...] = ("happiness", "sadness", "anger", "surprise", "disgust", "fear")
MOSEI_LABEL_COLUMNS: tuple[str, ...] = ("sentiment", *MOSEI_EMOTIONS)
DEFAULT_TRANSCRIPT_DIR: Path = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmu-mosei-text"
MMSA_SPLITS: tuple[str, ...] = ("train", "valid", "test")
DATASET_KINDS: tuple[str, ...] = ("features", "mmsa", "csd", "transcripts")
CSD_KEYWORDS: dict[str, tuple[str, ...]] = {
    "audio": ("covarep", "audio"),
    "video": ("facet", "openface", "visual", "video"),
    "text": ("glove", "word", "bert", "text"),
}

_ID_COLUMNS = ("id", "segment_id")
_TEXT_COLUMNS = ("sentence", "text")
_LABEL_COLUMNS = ("polarity", "label")
_SEGMENT_ID = re.compile(r"^(.+)\[(\d+)\]$")
_POOL_BYTES = 1 << 26  # float64 working set per pooling chunk
MAX_PICKLE_DEPTH = 64  # nesting of containers in a data pickle (MMSA files nest 3 levels)
MAX_PICKLE_ITEMS = 10_000_000  # list/dict/set items, shared sub-objects counted at each use (MMSA: ~10**5)
# .csd limits, checked from HDF5 metadata before anything is read (a small file can claim huge datasets).
# CMU-MOSEI: 23,453 segments, 7 label columns, <= 709 feature columns, videos of <= ~60k rows.
MAX_CSD_VALUES = 1 << 26  # values in one video's features (67,108,864: 512 MiB as float64)
MAX_CSD_SEGMENTS = 200_000  # labelled segments in a folder
MAX_CSD_LABEL_COLUMNS = 64  # columns of the labels file
MAX_CSD_POOLED_VALUES = 1 << 28  # segments x feature columns of one pooled modality (1 GiB as float32)
MAX_CSD_METADATA_BYTES = 1 << 20  # one metadata entry; larger ones are skipped (metadata is informational)
_CSD_PLAIN = ".csd entries must be plain groups and datasets inside the file (links are never followed)"
_SHORT = reprlib.Repr()  # bounded reprs of pickle data in messages: a key may be a huge nested tuple
_SHORT.maxstring = _SHORT.maxother = 60


class UnsafePickleError(FeatureFileError):
    """A pickle asks for something other than plain data (a callable, a class instance): refused unrun."""


# ============================================================================ transcripts
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
        raise FeatureFileError(f"{path} is empty; expected a header row with id, sentence/text and polarity/label columns")
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
        for what, col in (("an id column ('id' or an unnamed first column)", id_col),
                          ("a text column ('sentence' or 'text')", text_col),
                          ("a label column ('polarity' or 'label')", label_col))
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


# ============================================================================ restricted unpickling
def _numpy_internals() -> dict[str, Any]:
    """numpy's pickle helpers, found under numpy._core (numpy 2) or numpy.core (numpy 1)."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x without the numpy._core alias
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    return {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar, "_frombuffer": numeric._frombuffer}


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """What protocol-2 pickles use to rebuild `bytes` (`_codecs.encode(str, 'latin1')`), and nothing more."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "").replace("_", "") != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is admitted only to rebuild bytes from latin-1 text")
    return text.encode("latin-1")


def _from_bytes(kind: type) -> Any:
    """`bytes` / `bytearray` rebuilt from data in the file; `bytes(n)` would allocate n bytes from a few."""

    def build(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError(f"{kind.__name__}({args[0]}) allocates from a count, not data; refused")
        return kind(*args)

    return build


class _ArrayType:
    """Stands in for `numpy.ndarray`, which a data pickle names only as `_reconstruct`'s first argument."""

    def __call__(self, *args: Any) -> Any:
        raise pickle.UnpicklingError("numpy.ndarray(...) allocates from a shape, not data; refused")


_ARRAY_TYPE = _ArrayType()


def _empty_array(numpy_reconstruct: Any) -> Any:
    """numpy's `_reconstruct`, admitted as numpy pickles use it: an empty array that the file's bytes then fill.

    A non-empty shape would allocate memory the file does not hold (a few bytes asking for gigabytes).
    """

    def build(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not _ARRAY_TYPE or not isinstance(shape, tuple) or 0 not in shape:
            raise pickle.UnpicklingError(f"_reconstruct is admitted only for an empty numpy.ndarray, got shape {shape!r}")
        return numpy_reconstruct(np.ndarray, shape, dtype)

    return build


def _safe_globals() -> dict[tuple[str, str], Any]:
    """The only globals a data pickle may name: numpy array rebuilding, plain containers, numbers, strings.

    Each admitted callable builds only from data present in the file, so memory use stays bounded by it.
    """
    np_int = _numpy_internals()
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _ARRAY_TYPE, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = _empty_array(np_int["_reconstruct"])
        table[(f"{core}.multiarray", "scalar")] = np_int["scalar"]
        table[(f"{core}.numeric", "_frombuffer")] = np_int["_frombuffer"]
    for name in ("list", "dict", "set", "frozenset", "tuple", "str", "int", "float", "complex", "bool"):
        table[("builtins", name)] = getattr(builtins, name)
    table[("builtins", "bytes")] = _from_bytes(bytes)
    table[("builtins", "bytearray")] = _from_bytes(bytearray)
    table[("collections", "OrderedDict")] = collections.OrderedDict
    table[("_codecs", "encode")] = _latin1_bytes
    return table


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only plain-data globals; anything else is refused before it can run."""

    def __init__(self, file: io.BufferedIOBase, *, source: str = "<pickle>") -> None:
        super().__init__(file)
        self.source = source
        self._allowed = _safe_globals()

    def find_class(self, module: str, name: str) -> Any:
        """Look the global up in the allow-list; refuse with the name and the rule otherwise."""
        key = (module, name)
        if key in _compat_pickle.NAME_MAPPING:  # Python 2 names, written by protocols 0-2 (e.g. __builtin__.complex)
            key = _compat_pickle.NAME_MAPPING[key]
        elif module in _compat_pickle.IMPORT_MAPPING:
            key = (_compat_pickle.IMPORT_MAPPING[module], name)
        found = self._allowed.get(key)
        if found is None:
            raise UnsafePickleError(
                f"{self.source}: refused to load {module}.{name}: only numpy arrays, lists, dicts, strings and numbers "
                f"are admitted in a data pickle (a pickle naming other globals can run code when loaded)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        """Persistent references point outside the file: refused like any other non-data global."""
        raise UnsafePickleError(f"{self.source}: refused a persistent reference {pid!r}: only plain data is admitted")


def _check_object_array(arr: np.ndarray, source: str, where: str) -> None:
    """Object arrays may hold only strings (anything else is not plain data)."""
    for i, item in enumerate(arr.reshape(-1).tolist()):
        if not isinstance(item, str):
            raise UnsafePickleError(
                f"{source}: object array at {where} holds a {type(item).__name__} at flat index {i}; "
                "object arrays may hold only strings"
            )


def _members(obj: Any) -> Any:
    """(child, step) of a container, the step naming it lazily; dict keys are walked too (a key can be a nested tuple)."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            yield key, (" key ", key)
            yield value, ("/", key)
    else:
        for i, value in enumerate(obj):
            yield value, ("[", i)


def _place(where: str, step: tuple[str, Any] | None) -> str:
    """`where` extended by one step (if any), with a bounded rendering of the key."""
    if step is None:
        return where
    sep, name = step
    if sep == "[":
        return f"{where}[{name}]"
    return where + sep + (name if isinstance(name, str) and len(name) <= 60 else _SHORT.repr(name))


def _check_plain_data(obj: Any, source: str, where: str) -> None:
    """Check a loaded pickle is plain data that readers can walk: no cycles, bounded depth and size.

    A pickle stores a shared sub-object once, so 40 levels of `[x, x]` fit in a few hundred bytes but
    stand for 2**40 items to anything that walks them as a tree (numpy, repr). Each container is
    therefore visited once (by id, with an explicit stack, so depth cannot exhaust Python's), and its
    depth and unshared size are computed from its members' and bounded by `MAX_PICKLE_DEPTH` and
    `MAX_PICKLE_ITEMS`. Object arrays may hold only strings.
    """
    done: dict[int, tuple[int, int]] = {}  # id -> (depth, unshared size) of each finished container
    open_ids: set[int] = set()  # containers on the current path: meeting one again is a cycle
    frames: list[list[Any]] = []  # [container, where, members, depth, size]

    def visit(node: Any, where: str, step: tuple[str, Any] | None) -> tuple[int, int] | None:
        """(depth, size) of a leaf or a finished container; None once a new container is pushed.

        The place is put into words only when needed: most members are leaves."""
        if isinstance(node, np.ndarray):
            if node.dtype.kind == "O" and id(node) not in done:
                _check_object_array(node, source, _place(where, step))
                done[id(node)] = (0, 1)
            return 0, 1
        if not isinstance(node, (Mapping, list, tuple, set, frozenset)):
            return 0, 1
        if id(node) in done:
            return done[id(node)]
        if id(node) in open_ids:
            raise FeatureFileError(f"{source}: {_place(where, step)} contains itself; plain data holds no cycles")
        if len(frames) >= MAX_PICKLE_DEPTH:
            raise FeatureFileError(f"{source}: data nested deeper than {MAX_PICKLE_DEPTH} levels at {_place(where, step)}")
        open_ids.add(id(node))
        frames.append([node, _place(where, step), _members(node), 0, 1])
        return None

    visit(obj, where, None)
    while frames:
        frame = frames[-1]
        child, step = next(frame[2], (None, None))
        if step is not None:
            found = visit(child, frame[1], step)
        else:
            frames.pop()
            open_ids.discard(id(frame[0]))
            found = done[id(frame[0])] = (frame[3] + 1, frame[4])
            if not frames:
                return
            frame = frames[-1]
        if found is None:
            continue
        depth, size = found
        frame[3], frame[4] = max(frame[3], depth), frame[4] + size
        if len(frames) + depth > MAX_PICKLE_DEPTH:
            raise FeatureFileError(f"{source}: data nested deeper than {MAX_PICKLE_DEPTH} levels at {frame[1]}")
        if frame[4] > MAX_PICKLE_ITEMS:
            raise FeatureFileError(
                f"{source}: {frame[1]} stands for more than {MAX_PICKLE_ITEMS:,} items once the sub-objects it shares "
                "are counted each time they are used; data pickles hold numpy arrays, not such lists"
            )


def safe_load_pickle(path: str | Path) -> Any:
    """Load a pickle of plain data (numpy arrays, containers, numbers, strings) without running its code.

    Published feature pickles are an attack surface: a plain `pickle.load` executes whatever the file
    asks for. This never resolves a global outside the data allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"no pickle file at {str(path)!r}")
    try:
        with path.open("rb") as f:
            obj = SafeUnpickler(f, source=str(path)).load()
    except FeatureFileError:
        raise
    except Exception as exc:  # truncated, corrupt, or an admitted constructor rejecting its arguments
        raise FeatureFileError(f"{path} is not a readable pickle of plain data: {type(exc).__name__}: {exc}") from exc
    _check_plain_data(obj, str(path), "<top>")
    return obj


# ============================================================================ pooling
def _masked_mean(x: np.ndarray, mask: np.ndarray, *, zero_neg_inf: bool, describe: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean of x[n, t] over t where mask[n, t]; rows with an empty mask are absent (zeros).

    Accumulates in float64 in bounded chunks; values outside the mask never enter the sum (not even
    NaN or inf, which `0 * x` would let through). `describe(row, t, col, value)` words an error.
    """
    n, t, d = x.shape
    out = np.zeros((n, d), dtype=np.float32)
    counts = mask.sum(axis=1)
    step = max(1, _POOL_BYTES // max(1, t * d * 8))
    for lo in range(0, n, step):
        xs = np.array(x[lo : lo + step], dtype=np.float64)
        ms = mask[lo : lo + step, :, None]
        if zero_neg_inf:
            xs[xs == -np.inf] = 0.0
        bad = ~np.isfinite(xs) & ms
        if bad.any():
            r, ti, c = (int(v) for v in np.argwhere(bad)[0])
            raise FeatureFileError(describe(lo + r, ti, c, xs[r, ti, c]))
        sums = np.where(ms, xs, 0.0).sum(axis=1)
        cnt = counts[lo : lo + step, None]
        out[lo : lo + step] = np.where(cnt > 0, sums / np.maximum(cnt, 1), 0.0)
    return out, counts > 0


# ============================================================================ MMSA pickles
def _mmsa_array(part: Mapping[str, Any], key: str, path: Path, split: str, *, ndim: int | None = None, numeric: bool = True) -> np.ndarray:
    """One array of an MMSA split, with its presence, rank and numeric dtype checked."""
    if key not in part:
        raise FeatureFileError(
            f"{path}: split {split!r} has no {key!r} (found keys {sorted(map(str, part))}); expected MMSA processed data "
            "with text, text_bert, audio, vision, regression_labels and id"
        )
    try:
        arr = np.asarray(part[key])
    except (ValueError, TypeError) as exc:
        raise FeatureFileError(f"{path}: split {split!r}, {key!r} is not a rectangular array: {exc}") from exc
    if numeric and arr.dtype.kind not in "biuf":
        raise FeatureFileError(f"{path}: split {split!r}, {key!r} has dtype {arr.dtype}, expected numbers")
    if ndim is not None and arr.ndim != ndim:
        raise FeatureFileError(f"{path}: split {split!r}, {key!r} has shape {list(arr.shape)}, expected {ndim} dimensions")
    return arr


def _mmsa_lengths(part: Mapping[str, Any], key: str, n: int, frames: int, path: Path, split: str) -> np.ndarray:
    """Per-row valid frame counts of an unaligned MMSA split, as ints within [0, frames]."""
    raw = _mmsa_array(part, key, path, split)
    lengths = raw.reshape(-1) if raw.ndim == 2 and raw.shape[1] == 1 else raw
    if lengths.ndim != 1 or lengths.shape[0] != n:
        raise FeatureFileError(f"{path}: split {split!r}, {key!r} has shape {list(raw.shape)}, expected ({n},)")
    if lengths.dtype.kind == "f" and not np.all(np.isfinite(lengths) & (lengths == np.round(lengths))):
        row = int(np.argwhere(~(np.isfinite(lengths) & (lengths == np.round(lengths))))[0, 0])
        raise FeatureFileError(f"{path}: split {split!r}, {key!r} row {row} is {lengths[row]!r}, expected a whole number")
    lengths = lengths.astype(np.int64)
    bad = np.argwhere((lengths < 0) | (lengths > frames))
    if bad.size:
        row = int(bad[0, 0])
        raise FeatureFileError(f"{path}: split {split!r}, {key!r} row {row} is {lengths[row]}, expected 0..{frames} (the time axis)")
    return lengths


def _pool_mmsa_split(path: Path, split: str, part: Mapping[str, Any]) -> dict[str, Any]:
    """Pooled text/audio/video, presence, labels and ids of one MMSA split, with the pooling rule used."""
    text = _mmsa_array(part, "text", path, split, ndim=3)
    n, length, _ = text.shape
    text_bert = _mmsa_array(part, "text_bert", path, split, ndim=3)
    if text_bert.shape[0] != n or text_bert.shape[1] != 3 or text_bert.shape[2] != length:
        raise FeatureFileError(
            f"{path}: split {split!r}, 'text_bert' has shape {list(text_bert.shape)}, expected [{n}, 3, {length}] "
            "(input ids / attention mask / segment ids for each text position)"
        )
    text_mask = text_bert[:, 1, :] != 0
    ids_raw = part.get("id")
    if ids_raw is None:
        raise FeatureFileError(f"{path}: split {split!r} has no 'id' (found keys {sorted(map(str, part))})")
    ids_list = list(np.asarray(ids_raw, dtype=object).reshape(-1)) if not isinstance(ids_raw, list) else ids_raw
    if len(ids_list) != n:
        raise FeatureFileError(f"{path}: split {split!r} has {len(ids_list)} ids for {n} rows of 'text'")
    for i, v in enumerate(ids_list):
        if not isinstance(v, str):
            raise FeatureFileError(f"{path}: split {split!r}, id of row {i} is a {type(v).__name__} ({_SHORT.repr(v)}), expected a string")
    labels = _mmsa_array(part, "regression_labels", path, split).astype(np.float64)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (n,):
        raise FeatureFileError(f"{path}: split {split!r}, 'regression_labels' has shape {list(labels.shape)}, expected ({n},)")
    if not np.all(np.isfinite(labels)):
        row = int(np.argwhere(~np.isfinite(labels))[0, 0])
        raise FeatureFileError(f"{path}: split {split!r}, 'regression_labels' row {row} is {labels[row]}, expected a finite number")

    features: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    rules: dict[str, str] = {"text": "mean over text_bert attention mask"}
    for modality, key in (("text", "text"), ("audio", "audio"), ("video", "vision")):
        x = text if key == "text" else _mmsa_array(part, key, path, split, ndim=3)
        if x.shape[0] != n:
            raise FeatureFileError(f"{path}: split {split!r}, {key!r} has {x.shape[0]} rows, 'text' has {n}")
        if key == "text":
            mask = text_mask
        elif f"{key}_lengths" in part:
            lengths = _mmsa_lengths(part, f"{key}_lengths", n, x.shape[1], path, split)
            mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
            rules[modality] = f"mean over the first {key}_lengths frames (unaligned)"
        elif x.shape[1] == length:
            mask = text_mask
            rules[modality] = "mean over text_bert attention mask (aligned to text)"
        else:
            raise FeatureFileError(
                f"{path}: split {split!r} has no {key}_lengths and {key!r} has {x.shape[1]} time steps, not the text "
                f"length {length}: expected {key}_lengths (unaligned file) or a time axis aligned to the text (aligned file)"
            )

        def describe(row: int, t: int, col: int, value: float, _m: str = modality) -> str:
            note = "; -inf is replaced by 0 only in audio, as MMSA does" if _m != "audio" or value != -np.inf else ""
            return (f"{path}: split {split!r}, modality {_m!r}, row {row} (id {ids_list[row]!r}): non-finite value {value} "
                    f"at time step {t}, column {col}{note}")

        features[modality], present[modality] = _masked_mean(x, mask, zero_neg_inf=modality == "audio", describe=describe)
    return {"features": features, "present": present, "labels": labels, "ids": [str(v) for v in ids_list], "rules": rules}


def load_mmsa_pickle(path: str | Path) -> FeatureSet:
    """Pooled features of an MMSA `aligned_50.pkl` / `unaligned_50.pkl`, read without running pickle code.

    MMSA's processed CMU-MOSI/MOSEI/SIMS files are the common benchmark inputs; pooling them lets the
    fastdaf heads train and be compared on the same features as published baselines.
    """
    path = Path(path)
    data = safe_load_pickle(path)
    if not isinstance(data, Mapping):
        raise FeatureFileError(f"{path}: top level is a {type(data).__name__}, expected a dict with 'train'/'valid'/'test'")
    splits = [s for s in MMSA_SPLITS if s in data]
    if not splits:
        raise FeatureFileError(f"{path}: found keys {sorted(map(str, data))}, expected 'train', 'valid' and/or 'test'")
    parts = []
    for split in splits:
        if not isinstance(data[split], Mapping):
            raise FeatureFileError(f"{path}: split {split!r} is a {type(data[split]).__name__}, expected a dict of arrays")
        parts.append(_pool_mmsa_split(path, split, data[split]))
    for modality in ("text", "audio", "video"):
        dims = {s: p["features"][modality].shape[1] for s, p in zip(splits, parts)}
        if len(set(dims.values())) > 1:
            raise FeatureFileError(f"{path}: {modality} feature width differs between splits: {dims}")
    features = {m: torch.from_numpy(np.concatenate([p["features"][m] for p in parts])) for m in ("text", "audio", "video")}
    present = torch.from_numpy(np.stack([np.concatenate([p["present"][m] for p in parts]) for m in features], axis=1))
    split_col = [s for s, p in zip(splits, parts) for _ in p["ids"]]
    return FeatureSet(
        features=features,
        present=present,
        labels=torch.from_numpy(np.concatenate([p["labels"] for p in parts]).astype(np.float32)),
        ids=[i for p in parts for i in p["ids"]],
        splits=split_col,
        label_names=["sentiment"],
        info={
            "source": "mmsa",
            "file": path.name,
            "pooling": {s: p["rules"] for s, p in zip(splits, parts)},
            "absent": {m: int((~present[:, j]).sum()) for j, m in enumerate(features)},
        },
    )


# ============================================================================ CMU-MultimodalSDK .csd
def _h5py() -> Any:
    """h5py, imported only when .csd files are read (it is not needed for anything else)."""
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is installed with the project environment
        raise FeatureFileError("reading CMU-MultimodalSDK .csd files needs h5py (pip install h5py)") from exc
    return h5py


def _csd_files(folder: Path) -> list[Path]:
    """The .csd files of a folder, sorted by name (suffix matched case-insensitively)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csd")


def _csd_role(name: str) -> list[str]:
    """The roles a file name suggests: ["labels"], one modality, several (ambiguous) or none."""
    low = name.lower()
    if "label" in low:
        return ["labels"]
    return [m for m, words in CSD_KEYWORDS.items() if any(w in low for w in words)]


def infer_csd_modalities(folder: str | Path) -> dict[str, Path]:
    """Role -> file ("labels", "text", "audio", "video") from the .csd file names of a folder.

    Saves writing a mapping for the usual SDK names (CMU_MOSEI_COVAREP.csd, ..._Labels.csd); refuses to
    guess when a name fits no role or several, or two files fit one role.
    """
    folder = Path(folder)
    files = _csd_files(folder) if folder.is_dir() else []
    if not files:
        raise FeatureFileError(f"no .csd files in {str(folder)!r}")
    guesses = {f: _csd_role(f.stem) for f in files}
    by_role: dict[str, list[Path]] = {}
    for f, roles in guesses.items():
        if len(roles) == 1:
            by_role.setdefault(roles[0], []).append(f)
    problems = [f"{f.name} fits no role" for f, r in guesses.items() if not r]
    problems += [f"{f.name} fits several roles ({', '.join(r)})" for f, r in guesses.items() if len(r) > 1]
    problems += [f"{len(fs)} files fit {role} ({', '.join(f.name for f in fs)})" for role, fs in by_role.items() if len(fs) > 1]
    if "labels" not in by_role:
        problems.append("no file name contains 'label'")
    if not set(by_role) - {"labels"}:
        problems.append("no modality file (covarep/audio, facet/openface/visual/video, glove/word/bert/text)")
    if problems:
        listing = ", ".join(f"{f.name} -> {'/'.join(r) or '?'}" for f, r in guesses.items())
        raise FeatureFileError(
            f"cannot tell the .csd files of {folder} apart: {'; '.join(problems)}. Files: {listing}. "
            "Pass an explicit mapping, e.g. modalities={'labels': 'CMU_MOSEI_Labels.csd', 'audio': 'CMU_MOSEI_COVAREP.csd', "
            "'video': 'CMU_MOSEI_VisualFacet42.csd', 'text': 'CMU_MOSEI_TimestampedWordVectors.csd'}"
        )
    return {role: fs[0] for role, fs in by_role.items()}


def _metadata_text(value: Any) -> str:
    """A metadata value as text: h5py returns vlen strings as bytes, 1-element arrays, or str."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1).tolist()
        value = value[0] if len(value) == 1 else value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else repr(value)


def _csd_nbytes(shape: Any, dtype: np.dtype) -> int:
    """Bytes that reading an HDF5 dataset or attribute of this shape would take (shape is metadata)."""
    return math.prod(shape or ()) * dtype.itemsize


def _csd_entry(group: Any, name: str, path: Path) -> Any:
    """`group[name]` (None when absent), refusing links and data kept outside the file before following them.

    Following them would read another file (another HDF5 file silently, /etc/passwd, any file named by
    an external storage list); the CMU-MultimodalSDK writes only plain groups and datasets. The link
    is inspected with the low-level API, which (unlike `name in group`) never resolves it.
    """
    h5py = _h5py()
    key = name.encode("utf-8")
    if not group.id.links.exists(key):
        return None
    kind = group.id.links.get_info(key).type
    if kind != h5py.h5l.TYPE_HARD:
        where = f"{group.name.rstrip('/')}/{name}"
        if kind == h5py.h5l.TYPE_EXTERNAL:
            filename, target = (v.decode("utf-8", "replace") for v in group.id.links.get_val(key))
            raise FeatureFileError(f"{path}: {where} is an external link to {filename}:{target}; {_CSD_PLAIN}")
        if kind == h5py.h5l.TYPE_SOFT:
            raise FeatureFileError(f"{path}: {where} is a soft link to {group.id.links.get_val(key).decode('utf-8', 'replace')}; {_CSD_PLAIN}")
        raise FeatureFileError(f"{path}: {where} is a user-defined link (type {kind}); {_CSD_PLAIN}")
    entry = group[name]
    if isinstance(entry, h5py.Dataset) and (entry.is_virtual or entry.external):
        raise FeatureFileError(
            f"{path}: dataset {entry.name} keeps its data in other files (external storage or a virtual dataset); {_CSD_PLAIN}"
        )
    return entry


@dataclasses.dataclass
class _CsdVideo:
    """One video's `features` [T, D] and `intervals` [T, 2] datasets, shapes and dtypes checked but not read."""

    features: Any
    intervals: Any
    where: str

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """features (float64) and intervals (float64, finite)."""
        feats, intervals = self.features[()].astype(np.float64), self.intervals[()].astype(np.float64)
        if not np.all(np.isfinite(intervals)):
            raise FeatureFileError(f"{self.where}/intervals row {int(np.argwhere(~np.isfinite(intervals))[0, 0])} is not finite")
        return feats, intervals


@dataclasses.dataclass
class _CsdFile:
    """An open computational sequence: its `data` group, root name and metadata strings."""

    path: Path
    root: str
    data: Any
    metadata: dict[str, str]

    def open(self, vid: str) -> _CsdVideo:
        """A video's datasets (a name under `data`), checked from HDF5 metadata before anything is read."""
        group = _csd_entry(self.data, vid, self.path)
        where = f"{self.path}: /{self.root}/data/{vid}"
        h5py = _h5py()
        feats = _csd_entry(group, "features", self.path) if isinstance(group, h5py.Group) else None
        intervals = _csd_entry(group, "intervals", self.path) if isinstance(group, h5py.Group) else None
        if feats is None or intervals is None:
            found = sorted(group.keys()) if isinstance(group, h5py.Group) else type(group).__name__
            raise FeatureFileError(f"{where} must be a group with 'features' and 'intervals', found {found}")
        for name, ds, expected in (("features", feats, "numbers [T, D]"), ("intervals", intervals, "numbers [T, 2] (start, end seconds)")):
            if not isinstance(ds, h5py.Dataset):
                raise FeatureFileError(f"{where}/{name} is a {type(ds).__name__}, expected a dataset of {expected}")
        if feats.dtype.kind not in "biuf" or feats.ndim != 2:
            raise FeatureFileError(f"{where}/features is {feats.dtype} with shape {list(feats.shape)}, expected numbers [T, D]")
        if intervals.dtype.kind not in "biuf" or intervals.ndim != 2 or intervals.shape != (feats.shape[0], 2):
            raise FeatureFileError(
                f"{where}/intervals is {intervals.dtype} {list(intervals.shape)}, expected numbers [{feats.shape[0]}, 2] (start, end seconds)"
            )
        if feats.shape[1] > MAX_INPUT_DIM or feats.size > MAX_CSD_VALUES:
            raise FeatureFileError(
                f"{where}/features has shape {list(feats.shape)}; accepted: at most {MAX_INPUT_DIM:,} columns and "
                f"{MAX_CSD_VALUES:,} values per video (checked before reading)"
            )
        return _CsdVideo(feats, intervals, where)


def _csd_metadata(meta: Any, path: Path) -> dict[str, str]:
    """Metadata strings of a .csd; informational, so unreadable or oversized entries are skipped (links are refused)."""
    h5py = _h5py()
    out: dict[str, str] = {}
    with contextlib.suppress(Exception):  # never fail a load over metadata attributes
        for k in meta.attrs:
            attr = meta.attrs.get_id(k)
            if _csd_nbytes(attr.shape, attr.dtype) <= MAX_CSD_METADATA_BYTES:
                out[str(k)] = _metadata_text(meta.attrs[k])
    for k in meta:
        entry = _csd_entry(meta, k, path)
        if isinstance(entry, h5py.Dataset) and _csd_nbytes(entry.shape, entry.dtype) <= MAX_CSD_METADATA_BYTES:
            with contextlib.suppress(Exception):
                out[str(k)] = _metadata_text(entry[()])
    return out


def _open_csd(path: Path, stack: contextlib.ExitStack) -> _CsdFile:
    """Open a .csd file (kept open by `stack`) and locate its single `<root>/data` group."""
    h5py = _h5py()
    if not path.is_file():
        raise FeatureFileError(f"no .csd file at {str(path)!r}")
    try:
        handle = stack.enter_context(h5py.File(path, "r"))
    except OSError as exc:
        raise FeatureFileError(f"{path} is not a readable HDF5 (.csd) file: {exc}") from exc
    roots = {}
    for name in handle:
        top = _csd_entry(handle, name, path)
        data = _csd_entry(top, "data", path) if isinstance(top, h5py.Group) else None
        if isinstance(data, h5py.Group):
            roots[name] = (top, data)
    if len(roots) != 1:
        raise FeatureFileError(
            f"{path}: expected exactly one top-level group holding 'data' (/<root>/data/<video>/features), "
            f"found top-level keys {list(handle.keys())}"
        )
    root, (top, data) = next(iter(roots.items()))
    meta = _csd_entry(top, "metadata", path)
    return _CsdFile(path, root, data, _csd_metadata(meta, path) if isinstance(meta, h5py.Group) else {})


def _overlap_masks(seg: np.ndarray, intervals: np.ndarray) -> Any:
    """(first segment, mask [segments, T]) in chunks of about 4M cells: which rows overlap each segment by > 0 s."""
    step = max(1, (1 << 22) // max(1, intervals.shape[0]))
    for lo in range(0, seg.shape[0], step):
        s = seg[lo : lo + step]
        yield lo, np.minimum(s[:, 1:2], intervals[None, :, 1]) - np.maximum(s[:, 0:1], intervals[None, :, 0]) > 0


def _overlap_means(seg: np.ndarray, feats: np.ndarray, intervals: np.ndarray, describe: Any, zero_neg_inf: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the feature rows overlapping each segment by > 0 s; segments with none are absent.

    Works chunk by chunk, so memory stays bounded however many segments and rows a video has.
    """
    if zero_neg_inf:
        feats[feats == -np.inf] = 0.0
    used = np.zeros(feats.shape[0], dtype=bool)
    for _, mask in _overlap_masks(seg, intervals):
        used |= mask.any(axis=0)
    bad = ~np.isfinite(feats)
    bad_used = np.argwhere(bad & used[:, None])
    if bad_used.size:
        r, c = (int(v) for v in bad_used[0])
        raise FeatureFileError(describe(r, c, feats[r, c]))
    feats[bad] = 0.0  # rows no segment uses: keep them out of the matrix product (0 * nan = nan)
    means = np.zeros((seg.shape[0], feats.shape[1]))
    counts = np.zeros(seg.shape[0], dtype=np.int64)
    for lo, mask in _overlap_masks(seg, intervals):
        hits = mask.sum(axis=1)
        counts[lo : lo + len(hits)] = hits
        means[lo : lo + len(hits)] = (mask.astype(np.float64) @ feats) / np.maximum(hits, 1)[:, None]
    return means, counts > 0


def _default_folds(transcripts: Path, explicit: bool) -> tuple[dict[str, str] | None, str]:
    """video -> split from a transcript folder, with a note for info; None when the default folder is missing."""
    if not transcripts.is_dir():
        if explicit:
            raise FeatureFileError(f"no transcript folder at {str(transcripts)!r} to take the folds from")
        return None, f"no transcript folder at {transcripts}: every video is in split 'train'"
    video_split: dict[str, str] = {}
    for row in read_transcript_dir(transcripts):
        prev = video_split.setdefault(row.video, row.split)
        if prev != row.split:
            raise FeatureFileError(f"{transcripts}: video {row.video!r} has segments in both split {prev!r} and {row.split!r} ({row.id})")
    names = sorted(set(video_split.values()))
    return video_split, f"from the transcript CSVs in {transcripts} ({', '.join(names)}); other videos are 'test'"


def _pooled_matrix(n: int, width: int, path: Path) -> np.ndarray:
    """The zeroed [segments, width] float32 result of one modality, refused before allocation when too big."""
    if n * width > MAX_CSD_POOLED_VALUES:
        raise FeatureFileError(
            f"{path}: {n:,} segments x {width:,} feature columns exceed the {MAX_CSD_POOLED_VALUES:,} pooled values accepted"
        )
    return np.zeros((n, width), dtype=np.float32)


def load_csd_folder(
    folder: str | Path,
    *,
    modalities: Mapping[str, str | Path] | None = None,
    folds: Mapping[str, Sequence[str]] | None = None,
    transcripts: str | Path | None = None,
    label_column: int = 0,
    zero_neg_inf: Sequence[str] = ("audio",),
) -> FeatureSet:
    """Segment-level pooled features from a folder of CMU-MultimodalSDK computational sequences.

    The SDK's raw .csd downloads are the original CMU-MOSI/MOSEI features; pooling each modality over
    the labelled segments turns them into fastdaf rows with the same ids as the transcript CSVs.
    `modalities`: role -> file name in `folder` (or a path); must include "labels". `folds`: split ->
    video ids (videos in no fold are left out). `transcripts`: folder whose CSVs define the default folds
    (default `DEFAULT_TRANSCRIPT_DIR`). `label_column`: which label column becomes `labels`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FeatureFileError(f"no .csd folder at {str(folder)!r}")
    if modalities is None:
        roles = infer_csd_modalities(folder)
    else:
        if not isinstance(modalities, Mapping) or "labels" not in modalities:
            raise InputError(f"modalities must map roles to .csd files and include 'labels', got {modalities!r}")
        roles = {str(r): (folder / f if not Path(f).is_absolute() else Path(f)) for r, f in modalities.items()}
        if any(not r for r in roles):
            raise InputError(f"modalities has an empty role name: {modalities!r}")
        if len(set(roles.values())) != len(roles):
            raise InputError(f"modalities names the same file for two roles: {modalities!r}")
        if len(roles) < 2:
            raise InputError(f"modalities names only the labels file; add at least one modality: {modalities!r}")
    order = [m for m in ("text", "audio", "video") if m in roles] + [m for m in roles if m not in ("labels", "text", "audio", "video")]

    video_split: dict[str, str] | None
    if folds is not None:
        if not isinstance(folds, Mapping):
            raise InputError(f"folds must map split names to lists of video ids, got {type(folds).__name__}")
        video_split = {}
        for name, videos in folds.items():
            if isinstance(videos, str) or not all(isinstance(v, str) for v in videos):
                raise InputError(f"folds[{name!r}] must be a list of video ids (strings)")
            for v in videos:
                if video_split.setdefault(v, str(name)) != name:
                    raise InputError(f"video {v!r} is in folds {video_split[v]!r} and {name!r}")
        fold_note, fallback = "given by the caller; videos in no fold are left out", None
    else:
        video_split, fold_note = _default_folds(Path(transcripts) if transcripts is not None else DEFAULT_TRANSCRIPT_DIR, transcripts is not None)
        fallback = "test" if video_split is not None else "train"
        video_split = video_split or {}

    with contextlib.ExitStack() as stack:
        files = {role: _open_csd(path, stack) for role, path in roles.items()}
        labels_file = files["labels"]
        seg_ids: list[str] = []
        seg_splits: list[str] = []
        seg_labels: list[np.ndarray] = []
        seg_video: list[tuple[str, np.ndarray, int]] = []  # (video, label intervals, first row)
        left_out: list[str] = []
        width: int | None = None
        for vid in labels_file.data:
            split = video_split.get(vid, fallback)
            if split is None:
                left_out.append(vid)
                continue
            video = labels_file.open(vid)
            rows, columns = video.features.shape
            if len(seg_ids) + rows > MAX_CSD_SEGMENTS or columns > MAX_CSD_LABEL_COLUMNS:
                raise FeatureFileError(
                    f"{labels_file.path}: video {vid!r} has labels [{rows}, {columns}] after {len(seg_ids):,} segments; "
                    f"accepted: at most {MAX_CSD_SEGMENTS:,} labelled segments in all and {MAX_CSD_LABEL_COLUMNS} label columns"
                )
            vec, intervals = video.read()
            if width is None:
                width = vec.shape[1]
            elif vec.shape[1] != width:
                raise FeatureFileError(f"{labels_file.path}: video {vid!r} has {vec.shape[1]} label columns, earlier videos {width}")
            if not np.all(np.isfinite(vec)):
                row = int(np.argwhere(~np.isfinite(vec))[0, 0])
                raise FeatureFileError(f"{labels_file.path}: video {vid!r}, label row {row} is not finite: {vec[row].tolist()}")
            seg_video.append((vid, intervals, len(seg_ids)))
            seg_ids += [f"{vid}[{k}]" for k in range(vec.shape[0])]
            seg_splits += [split] * vec.shape[0]
            seg_labels.append(vec)
        if not seg_ids or width is None:
            raise FeatureFileError(f"{labels_file.path}: no labelled segments" + (f" in the given folds ({len(left_out)} videos in none)" if left_out else ""))
        if not 0 <= label_column < width:
            raise InputError(f"label_column {label_column} is out of range: {labels_file.path} has {width} label columns")
        n = len(seg_ids)

        features: dict[str, np.ndarray] = {}
        present: dict[str, np.ndarray] = {}
        for modality in order:
            csd = files[modality]
            out: np.ndarray | None = None
            has = np.zeros(n, dtype=bool)
            videos = set(csd.data)  # names only: nothing is followed or read
            for vid, seg, first in seg_video:
                if vid not in videos:
                    continue
                feats, intervals = csd.open(vid).read()
                if out is None:
                    out = _pooled_matrix(n, feats.shape[1], csd.path)
                elif feats.shape[1] != out.shape[1]:
                    raise FeatureFileError(f"{csd.path}: video {vid!r} has {feats.shape[1]} feature columns, earlier videos {out.shape[1]}")

                def describe(row: int, col: int, value: float, _p: Path = csd.path, _v: str = vid, _m: str = modality) -> str:
                    return (f"{_p}: video {_v!r}, feature row {row}, column {col} is {value} (modality {_m!r}); "
                            f"only -inf is replaced (by 0), and only in {list(zero_neg_inf)}")

                means, ok = _overlap_means(seg, feats, intervals, describe, modality in zero_neg_inf)
                out[first : first + seg.shape[0]] = means
                has[first : first + seg.shape[0]] = ok
            if out is None:
                first_video = next(iter(csd.data), None)
                if first_video is None:
                    raise FeatureFileError(f"{csd.path}: no videos under /{csd.root}/data")
                out = _pooled_matrix(n, csd.open(first_video).features.shape[1], csd.path)
            features[modality], present[modality] = out, has
        metadata = {role: f.metadata for role, f in files.items() if f.metadata}
        file_names = {role: f.path.name for role, f in files.items()}

    labels = np.concatenate(seg_labels)
    if width == len(MOSEI_LABEL_COLUMNS):
        label_name = MOSEI_LABEL_COLUMNS[label_column]
    else:
        label_name = "sentiment" if label_column == 0 else f"label_{label_column}"
    return FeatureSet(
        features={m: torch.from_numpy(x) for m, x in features.items()},
        present=torch.from_numpy(np.stack([present[m] for m in features], axis=1)),
        labels=torch.from_numpy(labels[:, label_column].astype(np.float32)),
        ids=seg_ids,
        splits=seg_splits,
        label_names=[label_name],
        info={
            "source": "csd",
            "folder": str(folder),
            "files": file_names,
            "label_column": label_column,
            "label_width": width,
            "label_vector_columns": list(MOSEI_LABEL_COLUMNS) if width == len(MOSEI_LABEL_COLUMNS) else None,
            "pooling": "mean of the feature rows whose interval overlaps the segment interval by more than 0 s",
            "zero_neg_inf": list(zero_neg_inf),
            "absent": {m: int((~present[m]).sum()) for m in features},
            "folds": fold_note,
            "videos_without_fold": len(left_out),
            "metadata": metadata,
        },
    )


# ============================================================================ dispatch help
def detect_dataset_kind(path: str | Path) -> str:
    """Which reader fits a path: "features", "mmsa", "csd" or "transcripts" (see DATASET_KINDS).

    Lets the CLI accept any supported dataset path without a format flag. A folder holding .csd files is
    "csd" even if it also holds .csv files (e.g. fold lists next to the sequences).
    """
    p = Path(path)
    accepted = ("accepted: a .safetensors fastdaf feature file (features), an MMSA .pkl (mmsa), a folder of "
                "CMU-MultimodalSDK .csd files (csd), a transcript .csv or a folder of them (transcripts)")
    if p.is_file():
        suffix = p.suffix.lower()
        kind = {".safetensors": "features", ".pkl": "mmsa", ".pickle": "mmsa", ".csv": "transcripts"}.get(suffix)
        if kind:
            return kind
        hint = "; pass the folder holding the .csd files and the labels file" if suffix == ".csd" else ""
        raise FeatureFileError(f"cannot tell what kind of dataset {p} is (suffix {suffix or 'none'!r}){hint}; {accepted}")
    if p.is_dir():
        suffixes = {c.suffix.lower() for c in p.iterdir() if c.is_file()}
        if ".csd" in suffixes:
            return "csd"
        if ".csv" in suffixes:
            return "transcripts"
        raise FeatureFileError(f"{p} is a folder with no .csd or .csv files; {accepted}")
    raise FeatureFileError(f"no dataset at {str(p)!r}; {accepted}")



def load_data(
    path: str | Path,
    *,
    encoders: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> FeatureSet:
    """Any dataset fastdaf reads, as pooled features: the one dispatch the CLI uses.

    Feature files, MMSA pickles and .csd folders hold features already. Transcript CSVs hold text:
    it is encoded with `encoders["text"]` (a spec as recorded in a checkpoint; default: the default
    text encoder), and any other modality of `encoders` is stored as absent for every row.
    """
    kind = detect_dataset_kind(path)
    if kind == "features":
        return FeatureSet.load(path)
    if kind == "mmsa":
        return load_mmsa_pickle(path)
    if kind == "csd":
        return load_csd_folder(path)
    from .extractor import FeatureExtractor

    rows = read_transcript_dir(path) if Path(path).is_dir() else read_transcript_csv(path)
    encoders = dict(encoders or {"text": "default"})
    if "text" not in encoders:
        raise InputError(f"{path} holds transcripts, but the model has no text encoder (it has {sorted(encoders)})")
    extractor = FeatureExtractor(encoders["text"], encoders.get("audio"))
    texts = [r.text for r in rows]
    vectors, present, keep = [], [], []
    iterator = range(0, len(rows), 256)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="encoding transcripts", unit="batch", disable=None)
    for start in iterator:
        out = extractor.extract(texts[start : start + 256], None, names=[r.id for r in rows[start : start + 256]], strict=False)
        ok = [k for k, err in enumerate(out.errors) if err is None]
        vectors.append({m: x[ok] for m, x in out.features.items()})
        present.append(out.present[ok])
        keep += [start + k for k in ok]
    features = {m: torch.cat([v[m] for v in vectors]) for m in extractor.modalities}
    return FeatureSet(
        features=features,
        present=torch.cat(present),
        labels=torch.tensor([rows[i].label for i in keep], dtype=torch.float32),
        ids=[rows[i].id for i in keep],
        splits=[rows[i].split for i in keep],
        info={"encoders": extractor.spec(), "dropped_rows": len(rows) - len(keep), "source": str(path)},
    )
